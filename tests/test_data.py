"""Classification input pipelines on real CIFAR-10 JPEGs."""

import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from conftest import DATA
from igc_keras.data import build_classification_dataset
from igc_keras.data.folders import scan_image_folder
from igc_keras.training.config import DataConfig


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    """Three real CIFAR-10 classes, 20 test images each, as class folders."""
    root = tmp_path_factory.mktemp("cifar")
    wanted = {"airplane", "cat", "ship"}
    counts = {}
    with tarfile.open(os.path.join(DATA, "cifar10", "cifar10_test.tar.gz")) as tar:
        for member in tar:
            parts = member.name.split("/")
            if (member.isfile() and len(parts) >= 3 and parts[-2] in wanted and
                    counts.get(parts[-2], 0) < 20):
                counts[parts[-2]] = counts.get(parts[-2], 0) + 1
                target = root / parts[-2] / parts[-1]
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    assert counts == {"airplane": 20, "cat": 20, "ship": 20}
    return str(root)


def test_folder_training_pipeline_crops_flips_and_batches(cifar_folder):
    config = DataConfig(source="folder", data_dir=cifar_folder,
                        global_batch_size=8, augmentation="imagenet")
    images, labels = next(iter(build_classification_dataset(config, (24, 24),
                                                            8)))
    assert images.shape == (8, 24, 24, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32 and set(labels.numpy()) <= {0, 1, 2}
    assert 0 <= images.numpy().min() and images.numpy().max() <= 255.5


def test_eval_pipeline_is_deterministic_centre_crop(cifar_folder):
    config = DataConfig(source="folder", data_dir=cifar_folder,
                        is_training=False, augmentation="imagenet")
    first = [b[0].numpy() for b in build_classification_dataset(
        config, (28, 28), 16, deterministic=True)]
    second = [b[0].numpy() for b in build_classification_dataset(
        config, (28, 28), 16, deterministic=True)]
    assert sum(len(b) for b in first) == 60          # nothing dropped
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))


def test_tfrecord_source_reads_model_garden_examples(cifar_folder, tmp_path):
    paths, labels = scan_image_folder(cifar_folder).examples()
    record = str(tmp_path / "train-00000-of-00001")
    with tf.io.TFRecordWriter(record) as writer:
        for path, label in zip(paths, labels):
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[open(path, "rb").read()])),
                "image/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[label]))}))
            writer.write(example.SerializeToString())
    config = DataConfig(source="tfrecord", data_dir=str(tmp_path),
                        split="train", augmentation="cifar")
    images, labels = next(iter(build_classification_dataset(config, (32, 32),
                                                            10)))
    assert images.shape == (10, 32, 32, 3)


def test_bad_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"task\.train_data\.data_dir='/nope' is "
                                         r"not an existing directory"):
        build_classification_dataset(DataConfig(source="folder",
                                                data_dir="/nope"), (8, 8), 2)
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="at least 2"):
        scan_image_folder(str(tmp_path))
    (tmp_path / "empty").mkdir()
    (tmp_path / "only" / "a.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\['empty'\] contain no images"):
        scan_image_folder(str(tmp_path))
    with pytest.raises(ValueError, match="no TFRecord files match"):
        build_classification_dataset(DataConfig(source="tfrecord",
                                                data_dir=str(tmp_path)),
                                     (8, 8), 2)
