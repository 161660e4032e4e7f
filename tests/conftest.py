import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                      "shared"))
REFERENCE = os.path.join(SHARED, "reference")
DATA = os.path.join(SHARED, "data")

import subprocess  # noqa: E402

import numpy  # noqa: E402
import pytest  # noqa: E402

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "mxnet_fixture")


@pytest.fixture(scope="session")
def mxnet_python():
    """Python of a separate venv with mxnet 1.9.1 (created once, cached).

    mxnet is never a dependency of the package: it pins an old numpy, so it
    lives in its own venv and only test fixtures use it. Creating the venv
    needs PyPI; a failure fails the tests that need it (no skip).
    """
    result = subprocess.run(["bash", os.path.join(FIXTURE_DIR, "setup_venv.sh")],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (
        f"could not create the MXNet venv:\n{result.stdout}\n{result.stderr}")
    python = result.stdout.strip().splitlines()[-1]
    assert os.path.exists(python), result.stdout
    return python


def make_mxnet_reference(python, symbol, out_dir, count=4, seed=0):
    """Random-weight checkpoint + float64 logits on real images, by MXNet."""
    images = os.path.join(DATA, "imagenet", "val_samples")
    result = subprocess.run(
        [python, os.path.join(FIXTURE_DIR, "make_reference.py"), "--symbol",
         os.path.join(REFERENCE, symbol), "--out", str(out_dir), "--images",
         images, "--count", str(count), "--seed", str(seed)],
        capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    return out_dir


#: the authors' released graphs, by the registry name of the variant
SYMBOLS = {"igcv3_1.0": "igcv3-symbol.json",
           "igcv1_l100m2": "igcv1-IGC-L100M2-symbol.json",
           "igcv1_l16m16": "igcv1-IGC-L16M16-symbol.json",
           "igcv1_l4m32": "igcv1-IGC-L4M32-symbol.json"}


@pytest.fixture(scope="session")
def mxnet_reference(mxnet_python, tmp_path_factory):
    """``mxnet_reference(name)``: the folder of an MXNet-written random
    checkpoint of a released variant's graph and its float64 logits on real
    images (made once per session, on first use)."""
    made = {}

    def reference(name):
        if name not in made:
            folder = tmp_path_factory.mktemp(name.replace(".", "_"))
            made[name] = make_mxnet_reference(mxnet_python, SYMBOLS[name],
                                              folder, count=2)
        return made[name]
    return reference


@pytest.fixture
def release(mxnet_reference, tmp_path, monkeypatch):
    """The IGCV3 "release": ``(path, reference.npz, cached path)``, the
    table pointing at it, an empty Keras home."""
    from igc_keras.applications import pretrained
    from igc_keras.applications.checkpoint_store import (MIRROR_ENV,
                                                         git_blob_sha1)
    folder = mxnet_reference("igcv3_1.0")
    path = str(folder / "model-0000.params")
    config = pretrained.PRETRAINED["igcv3_1.0"]
    fake = pretrained.PretrainedConfig(**{
        **config.__dict__, "origin": "file://" + path,
        "git_blob_sha1": git_blob_sha1(path)})
    monkeypatch.setitem(pretrained.PRETRAINED, "igcv3_1.0", fake)
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    cached = home / "models" / "igc_keras" / "authors" / fake.file_name
    return path, numpy.load(os.path.join(folder, "reference.npz")), cached
