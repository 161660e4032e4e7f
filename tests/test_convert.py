"""The converted authors' checkpoints compute what MXNet computes.

A fixture (tests/mxnet_fixture/make_reference.py, run with MXNet 1.9.1 in its
own venv) loads the authors' released graph, writes a checkpoint with random
weights through MXNet itself, and records the graph's float64 logits on real
ImageNet validation images. The checkpoint is then converted with
``igc-keras convert`` and the Keras model, run in float64, must give the same
logits. (With random weights a deep net is chaotic in float32, so both sides
compute in float64.)
"""

import os

import keras
import numpy as np
import pytest

import igc_keras
from conftest import make_mxnet_reference
from igc_keras.applications import pretrained
from igc_keras.cli import main as cli

CASES = {"igcv3_1.0": "igcv3-symbol.json",
         "igcv1_l4m32": "igcv1-IGC-L4M32-symbol.json"}


@pytest.fixture(scope="module")
def references(mxnet_python, tmp_path_factory):
    out = {}
    for name, symbol in CASES.items():
        folder = tmp_path_factory.mktemp(name.replace(".", "_"))
        make_mxnet_reference(mxnet_python, symbol, folder)
        out[name] = folder
    return out


def _float64_logits_model(name):
    keras.config.set_floatx("float64")           # the Input's dtype
    keras.config.set_dtype_policy("float64")     # every layer's variables/compute
    try:
        return igc_keras.create_model(name, classifier_activation=None)
    finally:
        keras.config.set_dtype_policy("float32")
        keras.config.set_floatx("float32")


@pytest.mark.parametrize("name", sorted(CASES))
def test_converted_checkpoint_matches_mxnet_in_float64(name, references,
                                                       tmp_path):
    folder = references[name]
    reference = np.load(os.path.join(folder, "reference.npz"))
    assert str(reference["dtype"]) == "float64"
    weights = str(tmp_path / f"{name}.weights.h5")
    assert cli(["convert", str(folder / "model-0000.params"), "--model", name,
                "-o", weights]) == 0
    model = _float64_logits_model(name)
    model.load_weights(weights)
    ours = np.asarray(model(reference["images_nhwc"]))
    theirs = reference["logits"]
    assert ours.dtype == np.float64
    scale = np.abs(theirs).max()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9 * scale)
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def test_weights_imagenet_downloads_verifies_converts_and_caches(
        references, tmp_path, monkeypatch):
    """The real weights="imagenet" path, with the release served from file://."""
    folder = references["igcv3_1.0"]
    release = str(folder / "model-0000.params")
    config = pretrained.PRETRAINED["igcv3_1.0"]
    fake = pretrained.PretrainedConfig(**{
        **config.__dict__, "origin": "file://" + release,
        "git_blob_sha1": pretrained.git_blob_sha1(release)})
    monkeypatch.setitem(pretrained.PRETRAINED, "igcv3_1.0", fake)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    reference = np.load(os.path.join(folder, "reference.npz"))
    images = reference["images_nhwc"].astype("float32")

    model = igc_keras.create_model("igcv3_1.0", weights="imagenet")
    probs = np.asarray(model(images))
    expected = keras.ops.softmax(reference["logits"]).numpy()
    np.testing.assert_allclose(probs, expected, atol=2e-3)
    home = str(tmp_path / "keras_home")
    cached = os.path.join(home, "models", "igc_keras", fake.keras_file_name)
    assert os.path.exists(cached)
    assert os.path.exists(os.path.join(home, "models", "igc_keras", "authors",
                                       fake.file_name))

    # features only: every weight but the classifier's, any input size
    features = igc_keras.create_model("igcv3_1.0", weights="imagenet",
                                      include_top=False, pooling="avg",
                                      input_shape=(160, 160, 3))
    np.testing.assert_array_equal(
        features.get_layer("last_conv").get_weights()[0],
        model.get_layer("last_conv").get_weights()[0])


def test_tampered_release_is_refused_before_parsing(references, tmp_path,
                                                    monkeypatch):
    folder = references["igcv3_1.0"]
    data = bytearray((folder / "model-0000.params").read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered = tmp_path / "tampered.params"
    tampered.write_bytes(bytes(data))
    config = pretrained.PRETRAINED["igcv3_1.0"]
    fake = pretrained.PretrainedConfig(**{
        **config.__dict__, "origin": "file://" + str(tampered),
        "git_blob_sha1": pretrained.git_blob_sha1(
            str(folder / "model-0000.params"))})
    monkeypatch.setitem(pretrained.PRETRAINED, "igcv3_1.0", fake)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match="failed its integrity check"):
        igc_keras.create_model("igcv3_1.0", weights="imagenet")
    assert not os.path.exists(os.path.join(str(tmp_path / "home"), "models",
                                           "igc_keras", fake.keras_file_name))


def test_missing_release_is_a_clear_error(tmp_path, monkeypatch):
    config = pretrained.PRETRAINED["igcv1_l4m32"]
    fake = pretrained.PretrainedConfig(**{
        **config.__dict__, "origin": "file://" + str(tmp_path / "nothing")})
    monkeypatch.setitem(pretrained.PRETRAINED, "igcv1_l4m32", fake)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match="could not download the igcv1_l4m32"):
        igc_keras.create_model("igcv1_l4m32", weights="imagenet")


def test_imagenet_argument_errors():
    with pytest.raises(ValueError, match="not available for 'igcv2_1.0'"):
        igc_keras.create_model("igcv2_1.0", weights="imagenet")
    with pytest.raises(ValueError, match="`classes` must be 1000"):
        igc_keras.create_model("igcv3_1.0", weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="`classifier_activation` must be"):
        igc_keras.create_model("igcv3_1.0", weights="imagenet",
                               classifier_activation="sigmoid")
    with pytest.raises(ValueError, match="needs 3 input channels"):
        igc_keras.create_model("igcv3_1.0", weights="imagenet",
                               include_top=False, input_shape=(224, 224, 1))


def test_checkpoint_that_does_not_fit_is_refused(references, tmp_path):
    params = str(references["igcv1_l4m32"] / "model-0000.params")
    with pytest.raises(ValueError, match="has no arg:|checkpoint has no"):
        cli(["convert", params, "--model", "igcv3_1.0",
             "-o", str(tmp_path / "x.weights.h5")])
