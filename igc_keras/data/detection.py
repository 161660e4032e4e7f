"""COCO-format detection input: images + ``instances_*.json`` -> tf.data.

Each example is decoded (grayscale expanded to RGB), optionally flipped
horizontally with its boxes, resized to the model's square size and turned
into SSD targets against the model's anchors, all in TF ops:
``(image (S, S, 3) float32 0..255, {"boxes": (A, 4), "classes": (A,)})``.
Annotations go through :func:`igc_keras.detection.coco.load_coco_annotations`
(clipped / dropped degenerate boxes, crowd regions kept apart, unknown
categories refused). Training adds the SSD random crop
(:func:`ssd_random_crop`) before the flip; expand and colour augmentations
are still to come.
"""

import os

import tensorflow as tf

from igc_keras.detection.box_coding import encode_targets
from igc_keras.detection.coco import load_coco_annotations


#: The SSD / TF OD API ``ssd_random_crop`` settings.
MIN_OBJECT_COVERED = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def ssd_random_crop(image, boxes, labels, seed=None):
    """SSD's random crop: a window keeping at least a random fraction of one
    object, area 10-100%, aspect 1/2-2; objects whose centre leaves the
    window are dropped, the rest clipped and re-expressed in the window.

    Args:
        image: ``(H, W, 3)``.
        boxes: ``(N, 4)`` normalised ``yxyx``; labels ``(N,)``.

    Returns:
        ``(image, boxes, labels)`` of the crop (``N`` may shrink, to 0).
    """
    choice = tf.random.uniform([], 0, len(MIN_OBJECT_COVERED), tf.int32,
                               seed=seed)
    covered = tf.gather(tf.constant(MIN_OBJECT_COVERED), choice)
    begin, size, window = tf.image.sample_distorted_bounding_box(
        tf.shape(image), boxes[None], min_object_covered=covered,
        aspect_ratio_range=(0.5, 2.0), area_range=(0.1, 1.0), max_attempts=100,
        use_image_if_no_bounding_boxes=True, seed=seed or 0)
    image = tf.slice(image, begin, size)
    window = window[0, 0]  # (ymin, xmin, ymax, xmax) of the crop
    centre_y = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_x = (boxes[:, 1] + boxes[:, 3]) / 2
    keep = ((centre_y > window[0]) & (centre_y < window[2]) &
            (centre_x > window[1]) & (centre_x < window[3]))
    offset = tf.stack([window[0], window[1], window[0], window[1]])
    scale = tf.stack([window[2] - window[0], window[3] - window[1]] * 2)
    moved = tf.clip_by_value((tf.boolean_mask(boxes, keep) - offset) / scale,
                             0.0, 1.0)
    labels = tf.boolean_mask(labels, keep)
    valid = (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
    return (image, tf.boolean_mask(moved, valid),
            tf.boolean_mask(labels, valid))


def coco_detection_dataset(image_dir, annotation_path, anchors, image_size=320,
                           batch_size=8, training=True, shuffle_buffer=1000,
                           seed=0, image_ids=None, crop=True):
    """Batched SSD training / evaluation data from a COCO-format folder.

    Args:
        image_dir: folder of the images named in the annotation file.
        annotation_path: COCO ``instances_*.json``.
        anchors: ``(A, 4)`` the model's anchors (``SSDLite.anchors``).
        training: shuffle, repeat, SSD random crop (``crop``), random
            horizontal flip, drop the remainder.
        image_ids: restrict to these images (default: all in the file).

    Returns:
        ``(dataset, annotations)`` — the ``tf.data.Dataset`` and the parsed
        :class:`~igc_keras.detection.coco.CocoAnnotations`.
    """
    coco = load_coco_annotations(annotation_path)
    records = [r for r in coco.images
               if image_ids is None or r.image_id in set(image_ids)]
    if not records:
        raise ValueError(f"annotation_path={annotation_path!r}: no images "
                         f"selected (image_ids={image_ids}).")
    missing = [r.file_name for r in records
               if not os.path.isfile(os.path.join(image_dir, r.file_name))]
    if missing:
        raise ValueError(f"image_dir={image_dir!r} lacks {len(missing)} of the "
                         f"annotated images, e.g. {missing[:3]}.")
    paths = tf.constant([os.path.join(image_dir, r.file_name) for r in records])
    boxes = tf.ragged.constant([r.boxes.tolist() for r in records],
                               ragged_rank=1, inner_shape=(4,),
                               dtype=tf.float32)
    labels = tf.ragged.constant([r.labels.tolist() for r in records],
                                dtype=tf.int32)
    anchors = tf.constant(anchors, tf.float32)
    size = (image_size, image_size)

    def load(path, box, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                   expand_animations=False)
        box = box.to_tensor() if isinstance(box, tf.RaggedTensor) else box
        if training and crop:
            image, box, label = ssd_random_crop(image, box, label)
        image = tf.image.resize(tf.cast(image, tf.float32), size)
        if training:
            flip = tf.random.uniform([], seed=seed) < 0.5
            image = tf.where(flip, tf.image.flip_left_right(image), image)
            flipped = tf.stack([box[:, 0], 1.0 - box[:, 3], box[:, 2],
                                1.0 - box[:, 1]], axis=-1)
            box = tf.where(flip, flipped, box)
        deltas, classes = encode_targets(box, label, anchors)
        return image, {"boxes": deltas, "classes": classes}

    dataset = tf.data.Dataset.from_tensor_slices((paths, boxes, labels))
    if training:
        dataset = dataset.shuffle(min(shuffle_buffer, len(records)), seed=seed,
                                  reshuffle_each_iteration=True).repeat()
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    return dataset.prefetch(tf.data.AUTOTUNE), coco
