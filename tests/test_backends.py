"""The models on every Keras backend (TensorFlow, JAX, PyTorch).

Networks are built and saved under TensorFlow (this process); each other
backend runs in its own subprocess (``KERAS_BACKEND`` is read once per
process) on the same files and real photos, and must give TensorFlow's
outputs to float32 rounding, without importing TensorFlow; an authors'-
format checkpoint written by MXNet must give MXNet's logits there. The
keras.applications harness (tests/test_applications.py) runs there too.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import backend_outputs
from conftest import DATA
from random_weights import randomize_weights

HERE = os.path.dirname(__file__)
BACKENDS = {"jax": "jax", "torch": "torch"}  # backend -> its package


def _needs(backend):
    """The backend's package comes with the test extra; a machine without it
    says so (not a silent pass)."""
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        pytest.skip(f"{BACKENDS[backend]} is not installed (pip install -e "
                    f"'.[test]' installs it)")


def _run(backend, args, timeout):
    env = {**os.environ, "KERAS_BACKEND": backend,
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable] + args, capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=HERE)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A folder with real photos at each size and every network saved under
    TensorFlow (random He-scaled weights, BatchNorm statistics not trivial),
    and TensorFlow's own outputs."""
    from igc_keras.data.classification import read_images
    folder = str(tmp_path_factory.mktemp("backends"))
    photos = os.path.join(DATA, "imagenet", "val_samples")
    sizes = {size for _, _, size in backend_outputs.NETWORKS.values()}
    np.savez(f"{folder}/images.npz", **{
        f"size{size}": read_images(photos, (size, size), 3) / 127.5 - 1
        for size in sizes})
    for seed, name in enumerate(backend_outputs.NETWORKS):
        model = randomize_weights(backend_outputs.build(name), seed=seed)
        model.save(f"{folder}/{name}.keras")
        model.save_weights(f"{folder}/{name}.weights.h5")
    backend_outputs.save_hub_preset(folder)
    reference = {f"{name}/{key}": value
                 for name in backend_outputs.NETWORKS
                 for key, value in backend_outputs.compute(folder,
                                                           name).items()}
    reference.update(backend_outputs.hub_outputs(folder))
    return folder, reference


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_same_weights_give_tensorflows_outputs(backend, saved,
                                              mxnet_reference):
    _needs(backend)
    folder, reference = saved
    authors = mxnet_reference("igcv3_1.0")
    run = _run(backend, [os.path.join(HERE, "backend_outputs.py"), folder,
                         str(authors / "model-0000.params")], timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert not report["tensorflow_imported"], (
        f"importing igc_keras / applications / design / fuse, or building "
        f"and running IGCV3, imported TensorFlow on {backend}")
    assert report["tensorflow_only_error"] == (
        f"igc_keras.training (tf.data, tf.distribute) runs on the TensorFlow "
        f"backend only; Keras runs on {backend!r} here: start the process "
        f"with KERAS_BACKEND=tensorflow.")
    outputs = np.load(f"{folder}/outputs-{backend}.npz")
    # the authors' checkpoint format, converted there: MXNet's float64 logits
    mxnet = np.load(authors / "reference.npz")["logits"]
    np.testing.assert_allclose(outputs["authors/logits"], mxnet, rtol=0,
                               atol=1e-4 * np.abs(mxnet).max())
    assert sorted(set(outputs.files) - {"authors/logits"}) == sorted(
        reference)
    worst = max((np.abs(outputs[k] - v).max() / np.abs(v).max(), k)
                for k, v in reference.items() if not k.endswith("/counts"))
    print(f"{backend}: largest difference to TensorFlow {worst[0]:.2e} of "
          f"the output's scale ({worst[1]})")
    for key, expected in reference.items():
        if key.endswith("/counts"):
            np.testing.assert_array_equal(outputs[key], expected, key)
            continue
        scale = np.abs(expected).max()
        assert scale > 0.1, key  # the network computes something
        np.testing.assert_allclose(outputs[key], expected, rtol=0,
                                   atol=1e-4 * scale, err_msg=key)
    # the fused forms keep every photo's class
    for name in backend_outputs.NETWORKS:
        logits = reference[f"{name}/logits"]
        assert (outputs[f"{name}/fused_dense"].argmax(-1)
                == logits.argmax(-1)).all(), name


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_application_harness_passes(backend):
    """tests/test_applications.py, whole, on ``backend``."""
    _needs(backend)
    run = _run(backend, ["-m", "pytest", "-q", "-n0", "-p", "no:cacheprovider",
                         os.path.join(HERE, "test_applications.py")],
               timeout=1500)
    tail = run.stdout[-3000:]
    assert run.returncode == 0, tail + run.stderr[-2000:]
    assert " passed" in tail and " failed" not in tail, tail


def test_tensorflow_only_command_says_so_in_one_line():
    """``igc-keras train`` under JAX: one line, exit status 2."""
    _needs("jax")
    run = _run("jax", ["-c", "import sys; from igc_keras_cli import main; "
                             "sys.exit(main(['train', %r]))" % os.path.join(
                                 HERE, os.pardir, "recipes",
                                 "quickstart.yaml")], timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [l for l in run.stderr.splitlines() if l.startswith("igc-keras")]
    assert lines == [
        "igc-keras train: error: igc_keras.training (tf.data, "
        "tf.distribute) runs on the TensorFlow backend only; Keras runs on "
        "'jax' here: start the process with KERAS_BACKEND=tensorflow."], (
        run.stderr[-2000:])
    assert "Traceback" not in run.stderr
