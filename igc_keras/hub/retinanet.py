"""KerasHub's RetinaNet on an IGCV3 backbone, trained and scored on a COCO
folder: the second detector family beside SSDLite
(:mod:`igc_keras.detection`).

    from igc_keras.hub import retinanet
    detector = retinanet.igcv3_retinanet(num_classes=80, image_size=320)
    data = retinanet.coco_dataset("coco/train2017",
                                  "coco/annotations/instances_train2017.json",
                                  image_size=320, batch_size=8)
    detector.fit(data, epochs=12)
    print(retinanet.evaluate(detector, "coco/val2017",
                             "coco/annotations/instances_val2017.json"))

The network is KerasHub's: ``RetinaNetBackbone`` (FPN on the backbone's
``P3``..``P5``, levels 3..7), ``RetinaNetObjectDetector`` (focal loss,
Huber box loss, NMS decoding). Images are read by the package's one COCO
reader (:mod:`igc_keras.data.detection`) and scored by pycocotools
(:func:`igc_keras.detection.coco.evaluate_coco`), so this part needs the
TensorFlow backend.
"""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.hub.retinanet (tf.data COCO reader)")

import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from igc_keras.applications.pretrained import IGCV3_PREPROCESSING  # noqa
from igc_keras.data.detection import coco_folder_examples  # noqa: E402
from igc_keras.detection.coco import (evaluate_coco,  # noqa: E402
                                      load_coco_annotations, to_coco_results)
from igc_keras.hub.backbones import IGCV3Backbone  # noqa: E402

#: boxes in the detector's input pixels, (ymin, xmin, ymax, xmax)
BOX_FORMAT = "yxyx"


def igcv3_retinanet(num_classes=80, image_size=320, backbone=None,
                    **backbone_kwargs):
    """``RetinaNetObjectDetector`` on an IGCV3 backbone.

    Args:
        num_classes: object classes (COCO: 80).
        image_size: the square input side (a multiple of 128: level 7).
        backbone: an :class:`~igc_keras.hub.IGCV3Backbone` (e.g. from a
            preset) built for ``(image_size, image_size, 3)``; default a new
            one with ``backbone_kwargs`` (``alpha``, ``weights``, ...).

    Returns:
        The detector; its preprocessor takes RGB 0..255 at ``image_size``
        and applies IGCV3's ImageNet normalisation.
    """
    if not isinstance(image_size, int) or image_size < 128 or image_size % 128:
        raise ValueError(f"`image_size` must be a positive multiple of 128 "
                         f"(RetinaNet's level 7); got image_size="
                         f"{image_size!r}.")
    if backbone is None:
        backbone = IGCV3Backbone(image_shape=(image_size, image_size, 3),
                                 **backbone_kwargs)
    pyramid = keras_hub.models.RetinaNetBackbone(
        image_encoder=backbone, min_level=3, max_level=7, use_p5=False,
        image_shape=(image_size, image_size, 3))
    converter = keras_hub.layers.RetinaNetImageConverter(
        image_size=(image_size, image_size), scale=1.0,
        offset=[-m for m in IGCV3_PREPROCESSING.mean],
        bounding_box_format=BOX_FORMAT)
    preprocessor = keras_hub.models.RetinaNetObjectDetectorPreprocessor(
        image_converter=converter)
    # COCO scoring's convention: up to 100 detections scored >= 0.05
    decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format=BOX_FORMAT, from_logits=True, iou_threshold=0.5,
        confidence_threshold=0.05, max_detections=100)
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=pyramid, num_classes=num_classes,
        bounding_box_format=BOX_FORMAT, preprocessor=preprocessor,
        prediction_decoder=decoder)


def coco_dataset(image_dir, annotation_path, image_size=320, batch_size=8,
                 training=True, image_ids=None, max_boxes=100, seed=0):
    """A COCO-format folder as RetinaNet batches: ``(images (B, S, S, 3)
    RGB 0..255, {"boxes": (B, max_boxes, 4) pixels yxyx, "labels": (B,
    max_boxes)})``, padding labelled -1. ``training``: shuffled, repeated,
    random horizontal flips."""
    dataset, _, records, load = coco_folder_examples(
        image_dir, annotation_path, image_ids, check_files=True)

    def prepare(path, boxes, labels, size):
        image, boxes, labels = load(path, boxes, labels, size)
        image = tf.image.resize(tf.cast(image, tf.float32),
                                (image_size, image_size))
        if training:
            flip = tf.random.uniform(()) < 0.5
            image = tf.where(flip, image[:, ::-1], image)
            boxes = tf.where(flip, tf.stack(
                [boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]],
                -1), boxes)
        boxes, labels = boxes[:max_boxes], labels[:max_boxes]
        pad = max_boxes - tf.shape(labels)[0]
        boxes = tf.pad(boxes * image_size, [[0, pad], [0, 0]])
        labels = tf.pad(tf.cast(labels, tf.float32), [[0, pad]],
                        constant_values=-1)
        return image, {"boxes": boxes, "labels": labels}

    if training:
        dataset = dataset.shuffle(len(records), seed=seed).repeat()
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=training).prefetch(2)


def coco_results(records, detections, image_size, categories):
    """COCO result dicts of batched detections (``boxes`` in input pixels,
    ``confidence``, ``labels``, ``num_detections``, as
    ``RetinaNetObjectDetector.predict`` returns them) of ``records``."""
    results = []
    for i, record in enumerate(records):
        count = int(detections["num_detections"][i])
        results += to_coco_results(
            record.image_id,
            np.asarray(detections["boxes"][i][:count]) / image_size,
            detections["confidence"][i][:count],
            detections["labels"][i][:count], record.height, record.width,
            categories)
    return results


def evaluate(detector, image_dir, annotation_path, image_ids=None,
             batch_size=8):
    """COCO box AP of ``detector`` on a COCO-format folder (pycocotools):
    the dict of :func:`~igc_keras.detection.coco.evaluate_coco`, and
    ``detections``, how many it scored."""
    coco = load_coco_annotations(annotation_path)
    records = coco.select(image_ids)
    size = detector.backbone.image_shape[0]
    # KerasHub's NMS needs the batch size known when traced: the last batch
    # is filled up with the first images, whose repeats are dropped after
    images = coco_dataset(image_dir, annotation_path, size, batch_size,
                          training=False, image_ids=image_ids).unbatch().map(
                              lambda x, y: x)
    images = images.concatenate(images.take(-len(records) % batch_size))
    predictions = detector.predict(
        images.batch(batch_size, drop_remainder=True), verbose=0)
    predictions = {key: value[:len(records)]
                   for key, value in predictions.items()}
    results = coco_results(records, predictions, size, coco.categories)
    scores = evaluate_coco(annotation_path, results,
                           [r.image_id for r in records])
    return {**scores, "detections": len(results)}
