import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                      "shared"))
REFERENCE = os.path.join(SHARED, "reference")
DATA = os.path.join(SHARED, "data")

import subprocess  # noqa: E402

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
