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
from conftest import SYMBOLS
from igc_keras_cli import main as cli


def _float64_logits_model(name):
    keras.config.set_floatx("float64")           # the Input's dtype
    keras.config.set_dtype_policy("float64")     # every layer's variables/compute
    try:
        return igc_keras.create_model(name, classifier_activation=None)
    finally:
        keras.config.set_dtype_policy("float32")
        keras.config.set_floatx("float32")


@pytest.mark.parametrize("name", sorted(SYMBOLS))
def test_converted_checkpoint_matches_mxnet_in_float64(name, mxnet_reference,
                                                       tmp_path):
    """All four released variants' graphs (IGCV3-1.0, IGC-L100M2,
    IGC-L16M16, IGC-L4M32)."""
    folder = mxnet_reference(name)
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


def test_checkpoint_that_does_not_fit_is_refused(mxnet_reference, tmp_path,
                                                 capsys):
    params = str(mxnet_reference("igcv1_l4m32") / "model-0000.params")
    assert cli(["convert", params, "--model", "igcv3_1.0",
                "-o", str(tmp_path / "x.weights.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("igc-keras convert: error: ") and "\n" not in err
    assert params in err and "checkpoint has no arg:" in err
    assert not os.path.exists(tmp_path / "x.weights.h5")
