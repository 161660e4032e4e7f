"""Image-classification input pipelines: TFDS, image folders, TFRecords.

Training images get Model Garden's ImageNet augmentation: a fused
decode-and-crop of a random box covering ``min_crop_area``..1 of the image
with aspect ratio 3/4..4/3 (``tf.image.sample_distorted_bounding_box``), a
resize to the model's size and a horizontal flip; evaluation images are
centre-cropped to ``crop_fraction`` of the shorter side and resized. The
``cifar`` augmentation pads 4 pixels and random-crops back, then flips.
Everything runs in TensorFlow ops (no Python in the hot path); images come
out as float32 RGB in 0..255, labels as int32. Normalisation is the model's
own preprocessing layer.
"""

import os

import numpy as np
import tensorflow as tf

from igc_keras.data.folders import (IMAGE_EXTENSIONS, class_image_files,
                                   scan_image_folder)
from igc_keras.data.sharding import shard_dataset
from igc_keras.errors import DataError

#: ``augmentation: light``: the Keras transfer-learning guide's random
#: horizontal flip, translation and zoom (fractions of the image size).
LIGHT_TRANSLATION, LIGHT_ZOOM = 0.1, 0.1


def read_images(directory, size, limit=None, key="directory"):
    """Every image under ``directory`` (sorted; the first ``limit``),
    centre-cropped to the aspect of ``size`` and resized, as a float32
    ``(N, height, width, 3)`` array of RGB 0..255: calibration and check
    images for export. Errors name ``key``, the folder or the bad file."""
    if not os.path.isdir(directory):
        raise DataError(f"{key}={directory!r} is not a folder.")
    files = class_image_files(directory)[:limit]
    if not files:
        raise DataError(f"{key}={directory!r} holds no images "
                         f"({', '.join(IMAGE_EXTENSIONS)}).")
    images = []
    for path in files:
        try:
            image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                       expand_animations=False)
        except tf.errors.OpError as error:
            raise DataError(f"{key}: {path!r} is not a readable image "
                             f"({error.message}).") from error
        images.append(_resize_crop(image, size))
    return np.stack([np.asarray(i, "float32") for i in images])


def _resize_crop(image, size):
    """Centre crop to ``size``'s aspect ratio, then resize to ``size``."""
    height, width = int(image.shape[0]), int(image.shape[1])
    target = size[0] / size[1]
    if height / width > target:
        crop_h, crop_w = int(round(width * target)), width
    else:
        crop_h, crop_w = height, int(round(height / target))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    image = image[top:top + crop_h, left:left + crop_w]
    return tf.image.resize(tf.cast(image, tf.float32), size)


def decode_and_random_crop(image_bytes, size, min_area=0.08):
    """Random box (area ``min_area``..1, aspect 3/4..4/3), decoded fused; -> size."""
    shape = tf.image.extract_jpeg_shape(image_bytes)
    begin, box_size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=tf.zeros([1, 0, 4]), min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(min_area, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    offset_y, offset_x, _ = tf.unstack(begin)
    height, width, _ = tf.unstack(box_size)
    window = tf.stack([offset_y, offset_x, height, width])
    image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
    return tf.image.resize(image, size, method="bilinear")


def decode_and_center_crop(image_bytes, size, crop_fraction=0.875):
    """Centre crop of ``crop_fraction`` x the shorter side, decoded fused; -> size."""
    shape = tf.image.extract_jpeg_shape(image_bytes)
    height, width = shape[0], shape[1]
    crop = tf.cast(crop_fraction * tf.cast(tf.minimum(height, width),
                                           tf.float32), tf.int32)
    window = tf.stack([(height - crop + 1) // 2, (width - crop + 1) // 2, crop,
                       crop])
    image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
    return tf.image.resize(image, size, method="bilinear")


def _decode_any(image_bytes, size):
    """Any image format, centre-cropped to ``size``'s aspect ratio and
    resized (no distortion; ``crop_to_aspect_ratio`` in Keras' readers)."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    target = size[0] / size[1]
    crop_h = tf.minimum(shape[0], shape[1] * target)
    crop_w = tf.minimum(shape[1], shape[0] / target)
    crop = tf.cast(tf.round(tf.stack([crop_h, crop_w])), tf.int32)
    offset = (tf.shape(image)[:2] - crop) // 2
    image = tf.image.crop_to_bounding_box(image, offset[0], offset[1], crop[0],
                                          crop[1])
    return tf.image.resize(image, size, method="bilinear")


def light_augmentation(seed=0):
    """``augmentation: light`` as Keras preprocessing layers (random flip,
    translation, zoom; reflected borders), run in the ``tf.data`` pipeline."""
    import keras
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomTranslation(LIGHT_TRANSLATION, LIGHT_TRANSLATION,
                                       fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomZoom(LIGHT_ZOOM, fill_mode="reflect",
                                seed=seed + 2),
    ], name="augmentation")


def _cifar_augment(image_bytes, size):
    image = _decode_any(image_bytes, size)
    image = tf.image.resize_with_crop_or_pad(image, size[0] + 8, size[1] + 8)
    return tf.image.random_crop(image, [size[0], size[1], 3])


#: The quickstart's split of scikit-learn's 1,797 digits: a fixed shuffle
#: (seed 0), the last 297 images held out.
DIGITS_VALIDATION_SIZE = 297


def digits_arrays(split, key="source"):
    """``(images, labels)`` of scikit-learn's bundled UCI digits.

    Args:
        split: ``train`` (1,500 images) or ``validation`` / ``test`` (297).

    Returns:
        ``(N, 8, 8)`` uint8 images scaled from 0..16 to 0..255, ``(N,)`` int32
        labels 0..9.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - a dependency
        raise DataError(f"{key}='digits' needs scikit-learn (pip install "
                         f"scikit-learn).") from error
    if split not in ("train", "validation", "test"):
        raise DataError(f"{key}: the digits dataset has splits 'train' and "
                         f"'validation' (alias 'test'); got split={split!r}.")
    digits = load_digits()
    order = np.random.RandomState(0).permutation(len(digits.target))
    order = (order[DIGITS_VALIDATION_SIZE:] if split == "train" else
             order[:DIGITS_VALIDATION_SIZE])
    images = np.round(digits.images[order] * (255.0 / 16.0)).astype(np.uint8)
    return images, digits.target[order].astype(np.int32)


def folder_examples(config, key, scan=None, seed=0):
    """``(paths, labels)`` a folder ``DataConfig`` reads: the readable
    images of ``scan`` (scanned here when None), its ``split`` part when
    ``validation_split`` holds some out (seeded by ``seed``)."""
    scan = scan or scan_image_folder(config.data_dir, f"{key}.data_dir")
    return scan.examples(config.split if config.validation_split else None,
                         config.validation_split, seed)


def dataset_size(config, key="task.train_data", scan=None, seed=0):
    """The number of examples a ``DataConfig`` reads, or None if not stored.

    A TFDS source with ``download: true`` is downloaded and prepared here
    first if it is not yet.
    """
    if config.source == "digits":
        return len(digits_arrays(config.split, f"{key}.source")[1])
    if config.source == "folder":
        return len(folder_examples(config, key, scan, seed)[0])
    if config.source == "tfds":
        import tensorflow_datasets as tfds
        try:
            builder = tfds.builder(config.name, data_dir=config.data_dir)
            if config.download:
                builder.download_and_prepare()
            return builder.info.splits[config.split].num_examples
        except Exception as error:
            raise DataError(_tfds_message(config, key, error)) from error
    return None


def _tfds_message(config, key, error):
    return (f"{key}: TFDS dataset name={config.name!r} split={config.split!r} "
            f"could not be loaded from data_dir={config.data_dir!r} ({error}). "
            f"ImageNet needs a manual download prepared with tfds.")


def _tfrecord_example(serialized):
    features = tf.io.parse_single_example(serialized, {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64)})
    return features["image/encoded"], tf.cast(features["image/class/label"],
                                              tf.int32)


def _source(config, key, scan=None, seed=0):
    if config.source == "digits":
        images, labels = digits_arrays(config.split, f"{key}.source")
        encoded = [tf.io.encode_png(image[:, :, None]).numpy()
                   for image in images]
        return tf.data.Dataset.from_tensor_slices((encoded, labels))
    if config.source == "folder":
        paths, labels = folder_examples(config, key, scan, seed)
        files = tf.data.Dataset.from_tensor_slices(
            (tf.constant(paths), tf.constant(labels, tf.int32)))
        return files.map(lambda p, y: (tf.io.read_file(p), y))
    if config.source == "tfrecord":
        pattern = (os.path.join(config.data_dir, f"{config.split}*")
                   if os.path.isdir(config.data_dir) else config.data_dir)
        names = tf.io.gfile.glob(pattern)
        if not names:
            raise DataError(f"{key}.data_dir: no TFRecord files match "
                             f"{pattern!r}.")
        return tf.data.TFRecordDataset(sorted(names)).map(_tfrecord_example)
    import tensorflow_datasets as tfds
    try:
        builder = tfds.builder(config.name, data_dir=config.data_dir)
        dataset = builder.as_dataset(
            split=config.split, as_supervised=True,
            decoders={"image": tfds.decode.SkipDecoding()})
    except Exception as error:
        raise DataError(_tfds_message(config, key, error)) from error
    return dataset.map(lambda image, label: (image, tf.cast(label, tf.int32)))


def build_classification_dataset(config, image_size, batch_size,
                                 input_context=None, key="task.train_data",
                                 deterministic=False, seed=0,
                                 drop_remainder=False, scan=None):
    """A batched ``tf.data.Dataset`` of ``(images, labels)`` for a ``DataConfig``.

    Args:
        config: :class:`~igc_keras.training.config.DataConfig`.
        image_size: ``(height, width)``.
        batch_size: per-replica batch size (the global one when not
            distributing).
        input_context: ``tf.distribute.InputContext`` (shards the input
            between pipelines).
        key: config key named in errors.
        deterministic: fixed order and seeds (slower).
        seed: shuffle seed.
        drop_remainder: also drop an evaluation set's last partial batch
            (static shapes, as TPUs need); training sets always drop it.
        scan: a folder source's :class:`~igc_keras.data.folders.FolderScan`
            (scanned here when None): its unreadable images are left out.

    Returns:
        ``(batch, H, W, 3)`` float32 images in 0..255 and ``(batch,)`` int32
        labels; training datasets repeat and drop the remainder.
    """
    size = tuple(int(s) for s in image_size)
    dataset = _source(config, key, scan, seed)
    dataset = shard_dataset(dataset, input_context)
    if config.cache:
        dataset = dataset.cache()
    if config.is_training:
        dataset = dataset.shuffle(config.shuffle_buffer, seed=seed,
                                  reshuffle_each_iteration=True).repeat()
    if config.augmentation == "imagenet" and config.is_training:
        def parse(image_bytes, label):
            image = decode_and_random_crop(image_bytes, size,
                                           config.min_crop_area)
            return tf.image.random_flip_left_right(image), label
    elif config.augmentation == "cifar" and config.is_training:
        def parse(image_bytes, label):
            image = _cifar_augment(image_bytes, size)
            return tf.image.random_flip_left_right(image), label
    elif config.augmentation == "light" and config.is_training:
        layers = light_augmentation(seed)

        def parse(image_bytes, label):
            return layers(_decode_any(image_bytes, size), training=True), label
    elif config.augmentation == "imagenet":
        def parse(image_bytes, label):
            return decode_and_center_crop(image_bytes, size,
                                          config.crop_fraction), label
    else:
        def parse(image_bytes, label):
            return _decode_any(image_bytes, size), label
    options = tf.data.Options()
    options.deterministic = deterministic
    dataset = dataset.with_options(options)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size,
                            drop_remainder=config.is_training or drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
