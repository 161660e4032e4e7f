"""preprocess_input / decode_predictions / pretrained configs, offline."""

import os

import numpy as np
import pytest

from conftest import DATA
from igc_keras.applications import checkpoint_store, imagenet_utils, pretrained

CLASS_INDEX = os.path.join(DATA, "imagenet", "imagenet_class_index.json")


def test_preprocess_input_follows_each_released_preprocessing():
    x = np.full((1, 2, 2, 3), 200.0, "float32")
    igcv3 = np.asarray(imagenet_utils.preprocess_input(x, "igcv3_1.0"))
    np.testing.assert_allclose(igcv3[0, 0, 0], [200 - 123.68, 200 - 116.779,
                                                200 - 103.939], rtol=1e-6)
    igcv1 = np.asarray(imagenet_utils.preprocess_input(x, "igcv1_l100m2"))
    np.testing.assert_allclose(
        igcv1[0, 0, 0], (200 - np.array([123.370, 112.757, 99.406])) /
        np.array([68.998, 66.093, 68.292]), rtol=1e-5)
    layer = imagenet_utils.preprocessing_layer("igcv1_l100m2")
    np.testing.assert_allclose(np.asarray(layer(x)), igcv1, rtol=1e-5)
    with pytest.raises(ValueError, match="3 channels"):
        imagenet_utils.preprocess_input(np.zeros((1, 2, 2, 4)))


def test_decode_predictions_with_the_real_class_index():
    preds = np.zeros((2, 1000), "float32")
    preds[0, 0], preds[0, 1] = 0.9, 0.1      # tench, goldfish
    preds[1, 207] = 1.0                      # golden retriever
    decoded = imagenet_utils.decode_predictions(preds, top=2,
                                                class_index_path=CLASS_INDEX)
    assert decoded[0][0] == ("n01440764", "tench", pytest.approx(0.9))
    assert decoded[0][1][:2] == ("n01443537", "goldfish")
    assert decoded[1][0][:2] == ("n02099601", "golden_retriever")
    with pytest.raises(ValueError, match=r"\(batch, 1000\)"):
        imagenet_utils.decode_predictions(np.zeros((2, 10)),
                                          class_index_path=CLASS_INDEX)


def test_every_pretrained_config_is_complete_and_consistent():
    import igc_keras
    for name, config in pretrained.PRETRAINED.items():
        assert name in igc_keras.list_models()
        assert len(config.git_blob_sha1) == 40
        assert config.origin.startswith("https://")
        assert config.origin.endswith(config.file_name)
        assert config.input_size == (224, 224, 3)
        assert 0 < config.top1 < 100 and config.licence


def test_git_blob_id_matches_git(tmp_path):
    import subprocess
    path = tmp_path / "file.bin"
    path.write_bytes(os.urandom(1000) + b"\0tail")
    expected = subprocess.run(["git", "hash-object", str(path)],
                              capture_output=True, text=True).stdout.strip()
    assert checkpoint_store.git_blob_sha1(str(path)) == expected
    with pytest.raises(ValueError, match="failed its integrity check"):
        checkpoint_store.verify_file(str(path), "0" * 40)
