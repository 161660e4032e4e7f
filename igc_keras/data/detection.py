"""COCO-format detection input: images + ``instances_*.json`` -> tf.data.

Each example is decoded (grayscale expanded to RGB), optionally flipped
horizontally with its boxes, resized to the model's square size and turned
into SSD targets against the model's anchors, all in TF ops:
``(image (S, S, 3) float32 0..255, {"boxes": (A, 4), "classes": (A,)})``.
:func:`coco_detection_dataset` is the one pipeline, for direct use and for
the recipe trainer. Annotations go through
:func:`igc_keras.detection.coco.load_coco_annotations` (boxes clipped,
non-finite and empty boxes dropped, crowd regions kept apart, malformed
records refused); the selected images are checked on disk first
(:func:`igc_keras.data.coco_images.check_coco_images`: missing files and
sizes other than the records' are refused).

Training augmentation (``augment``):

* ``"ssd"`` (default) — the SSD paper's: photometric distortion
  (:func:`photometric_distort`, half the time), zoom-out
  (:func:`ssd_random_expand`, half the time), the IoU-constrained random crop
  (:func:`ssd_random_crop`), then a horizontal flip;
* ``"tf_od_api"`` — the TF OD API ``ssdlite_mobilenet_v2`` config's: random
  crop and flip only;
* ``"flip"`` — flip only; ``"none"`` — nothing (overfitting checks).
"""

import os

import tensorflow as tf

from igc_keras.data.coco_images import check_coco_images
from igc_keras.data.sharding import shard_dataset
from igc_keras.detection.box_coding import encode_targets
from igc_keras.detection.coco import load_coco_annotations
from igc_keras.errors import DataError


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


#: ``augment`` choices of :func:`coco_detection_dataset`.
AUGMENTATIONS = ("ssd", "tf_od_api", "flip", "none")


def ssd_random_expand(image, boxes, max_ratio=4.0, fill=(123.68, 116.78, 103.94),
                      seed=None):
    """SSD's zoom-out: the image placed at a random spot of a canvas
    ``ratio`` (1..``max_ratio``) times larger, filled with the mean pixel;
    the boxes follow (small objects become more frequent).

    Args:
        image: ``(H, W, 3)`` float 0..255. boxes: ``(N, 4)`` normalised yxyx.

    Returns:
        ``(image (rH, rW, 3), boxes (N, 4))``.
    """
    image = tf.cast(image, tf.float32)
    ratio = tf.random.uniform([], 1.0, max_ratio, seed=seed)
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    canvas_h, canvas_w = tf.floor(height * ratio), tf.floor(width * ratio)
    top = tf.floor(tf.random.uniform([], 0.0, 1.0, seed=seed) *
                   (canvas_h - height))
    left = tf.floor(tf.random.uniform([], 0.0, 1.0, seed=seed) *
                    (canvas_w - width))
    pad = tf.cast(tf.stack([[top, canvas_h - height - top],
                            [left, canvas_w - width - left], [0.0, 0.0]]),
                  tf.int32)
    fill = tf.constant(fill, tf.float32)
    canvas = tf.pad(image - fill, pad) + fill
    scale = tf.stack([height / canvas_h, width / canvas_w] * 2)
    offset = tf.stack([top / canvas_h, left / canvas_w] * 2)
    return canvas, boxes * scale + offset


def photometric_distort(image, seed=None):
    """SSD's colour distortion on ``(H, W, 3)`` float 0..255: brightness
    (+-32), contrast and saturation (x0.5..1.5), hue (+-18 degrees), in
    random order of contrast vs the rest; clipped to 0..255."""
    image = tf.clip_by_value(tf.image.random_brightness(image, 32.0,
                                                        seed=seed), 0.0, 255.0)

    def saturation_hue(x):
        x = tf.image.random_saturation(x / 255.0, 0.5, 1.5, seed=seed)
        return tf.image.random_hue(x, 18.0 / 360.0, seed=seed) * 255.0

    def contrast(x):
        return tf.image.random_contrast(x, 0.5, 1.5, seed=seed)

    contrast_first = tf.random.uniform([], seed=seed) < 0.5
    image = tf.cond(contrast_first, lambda: saturation_hue(contrast(image)),
                    lambda: contrast(saturation_hue(image)))
    return tf.clip_by_value(image, 0.0, 255.0)


def detection_transform(anchors, image_size, training, augment="ssd",
                        seed=0):
    """``(image uint8 (H, W, 3|1), boxes (N, 4) normalised yxyx, labels (N,))``
    -> ``(image (S, S, 3) float32 0..255, {"boxes": (A, 4), "classes":
    (A,)})``, augmented as ``augment`` says when ``training``."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment={augment!r}; allowed: {AUGMENTATIONS}.")
    anchors = tf.constant(anchors, tf.float32)
    size = (image_size, image_size)

    def transform(image, box, label):
        if image.shape.rank == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        image = tf.cast(image, tf.float32)
        box = tf.reshape(tf.cast(box, tf.float32), [-1, 4])
        label = tf.cast(label, tf.int32)
        if training and augment == "ssd":
            image = tf.cond(tf.random.uniform([]) < 0.5,
                            lambda: photometric_distort(image), lambda: image)
            image, box = tf.cond(
                tf.random.uniform([]) < 0.5,
                lambda: ssd_random_expand(image, box),
                lambda: (image, box))
        if training and augment in ("ssd", "tf_od_api"):
            image, box, label = ssd_random_crop(image, box, label)
        image = tf.image.resize(image, size)
        if training and augment != "none":
            flip = tf.random.uniform([], seed=seed) < 0.5
            image = tf.where(flip, tf.image.flip_left_right(image), image)
            flipped = tf.stack([box[:, 0], 1.0 - box[:, 3], box[:, 2],
                                1.0 - box[:, 1]], axis=-1)
            box = tf.where(flip, flipped, box)
        deltas, classes = encode_targets(box, label, anchors)
        return image, {"boxes": deltas, "classes": classes}
    return transform


def first_image_ids(annotation_path, count):
    """The ids of the first ``count`` images of a COCO annotation file (None:
    every image)."""
    if count is None:
        return None
    return [r.image_id for r in load_coco_annotations(
        annotation_path).images[:count]]


def coco_folder_examples(image_dir, annotation_path, image_ids, check_files):
    """A COCO-format folder as ``(dataset of (path, boxes, labels, size),
    annotations, records, load)``; ``load`` decodes an element to ``(image
    uint8 (H, W, 3), boxes, labels)`` and fails, naming the file, when the
    decoded size is not the record's ``size`` (height, width)."""
    coco = load_coco_annotations(annotation_path)
    records = coco.select(image_ids)
    if not records:
        raise DataError(f"{annotation_path}: none of its {len(coco.images)} "
                        f"images is selected (image_ids={image_ids}).")
    if check_files:
        check_coco_images(coco, image_dir, records)
    paths = tf.constant([os.path.join(image_dir, r.file_name) for r in records])
    boxes = tf.ragged.constant([r.boxes.tolist() for r in records],
                               ragged_rank=1, inner_shape=(4,),
                               dtype=tf.float32)
    labels = tf.ragged.constant([r.labels.tolist() for r in records],
                                dtype=tf.int32)
    sizes = tf.constant([[r.height, r.width] for r in records], tf.int32)

    def load(path, box, label, size):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                   expand_animations=False)
        decoded = tf.shape(image)[:2]
        same = tf.debugging.Assert(tf.reduce_all(tf.equal(decoded, size)), [
            f"{annotation_path}: the image", path, "decodes to (height, "
            "width)", decoded, "but its record says", size])
        with tf.control_dependencies([same]):
            return tf.identity(image), box, label
    dataset = tf.data.Dataset.from_tensor_slices((paths, boxes, labels, sizes))
    return dataset, coco, records, load


def tfds_coco_examples(name="coco/2017", split="train", data_dir=None):
    """TFDS ``coco/2017`` as ``(image, boxes, labels)`` (crowd objects
    dropped). TFDS labels are contiguous in category-id order, the same as
    :class:`~igc_keras.detection.coco.CategoryMap`'s."""
    import tensorflow_datasets as tfds
    dataset = tfds.load(name, split=split, data_dir=data_dir,
                        download=False)

    def unpack(example):
        objects = example["objects"]
        keep = tf.logical_not(objects["is_crowd"])
        return (example["image"], tf.boolean_mask(objects["bbox"], keep),
                tf.boolean_mask(objects["label"], keep))
    return dataset.map(unpack, num_parallel_calls=tf.data.AUTOTUNE)


def coco_detection_dataset(image_dir, annotation_path, anchors, image_size=320,
                           batch_size=8, training=True, shuffle_buffer=1000,
                           seed=0, image_ids=None, augment="ssd",
                           input_context=None, cache=False,
                           drop_remainder=None, check_files=True, tfds=None):
    """Batched SSD training / evaluation data: the one detection pipeline
    (the recipe trainer's ``DetectionTask`` calls it too).

    The selected images are sharded (``input_context``), optionally cached
    decoded, shuffled (a buffer of at most the selected images) and
    repeated when ``training``, decoded, augmented, turned into SSD targets
    and batched.

    Args:
        image_dir: folder of the images named in the annotation file (with
            ``tfds``: the TFDS data dir, None for the default).
        annotation_path: COCO ``instances_*.json`` (unused with ``tfds``).
        anchors: ``(A, 4)`` the model's anchors (``SSDLite.anchors``).
        image_size: the model's square input side.
        training: shuffle, repeat, augment, drop the remainder.
        augment: one of :data:`AUGMENTATIONS` (see the module docstring);
            used only when ``training``.
        image_ids: restrict to these images (default: all in the file).
        input_context: ``tf.distribute.InputContext``: this pipeline's shard.
        cache: keep the decoded images in memory after the first epoch.
        drop_remainder: drop the last partial batch (default: when
            ``training``).
        check_files: first refuse (``DataError``) selected images that are
            missing or whose size is not their record's
            (:func:`~igc_keras.data.coco_images.check_coco_images`).
        tfds: ``(name, split)`` of TFDS ``coco/2017`` to read instead of a
            COCO-format folder.

    Returns:
        ``(dataset, annotations)`` — the ``tf.data.Dataset`` of ``(images
        (B, S, S, 3) float32 0..255, {"boxes": (B, A, 4), "classes": (B,
        A)})`` and the parsed
        :class:`~igc_keras.detection.coco.CocoAnnotations` (None with
        ``tfds``); ``annotations.counts(image_ids).summary()`` tells what
        was kept and dropped.
    """
    transform = detection_transform(anchors, image_size, training, augment,
                                    seed)
    if tfds is None:
        dataset, coco, records, load = coco_folder_examples(
            image_dir, annotation_path, image_ids, check_files)
        size = len(records)
    else:
        dataset, coco, load = tfds_coco_examples(*tfds, image_dir), None, None
        size = shuffle_buffer
    dataset = shard_dataset(dataset, input_context)
    if load is not None and cache:
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        load = None
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(min(shuffle_buffer, size), seed=seed,
                                  reshuffle_each_iteration=True).repeat()
    prepare = transform if load is None else lambda *x: transform(*load(*x))
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    drop = training if drop_remainder is None else drop_remainder
    dataset = dataset.batch(batch_size, drop_remainder=drop)
    return dataset.prefetch(tf.data.AUTOTUNE), coco
