"""The builders' ``weights=``: the authors' checkpoint (``"imagenet"``, a
local ``.params`` file, a mirror) read straight into the model, verified at
every read, safe when processes race; and the builder argument checks.

The "release" is an MXNet-written checkpoint of the authors' IGCV3 graph
with random weights (tests/mxnet_fixture): the pretrained table is pointed
at it (its origin and git blob id), so every step but the GitHub download is
the real one, and the float64 MXNet logits on real ImageNet images are the
reference.
"""

import http.server
import json
import os
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest

import igc_keras
from igc_keras.applications import IGCV1, IGCV3, pretrained
from igc_keras.applications.checkpoint_store import (MIRROR_ENV,
                                                     git_blob_sha1,
                                                     verify_file)
from igc_keras_cli import main as cli
from igc_keras.convert.mxnet_params import load_params, save_params

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _assert_mxnet_logits(model, reference):
    """float32 logits of ``model`` against MXNet's float64 ones: the same
    classes, within float32 round-off."""
    images = reference["images_nhwc"].astype("float32")
    ours = np.asarray(model(images), "float64")
    theirs = reference["logits"]
    np.testing.assert_allclose(ours, theirs, rtol=0,
                               atol=1e-4 * np.abs(theirs).max())
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def test_weights_imagenet_fetches_verifies_and_loads_into_the_model(release):
    path, reference, cached = release
    model = IGCV3(weights="imagenet", classifier_activation=None)
    _assert_mxnet_logits(model, reference)
    verify_file(str(cached), git_blob_sha1(path))
    assert oct(os.stat(cached).st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(cached.parent)) == [cached.name,
                                                cached.name + ".lock"]
    # the default softmax top: probabilities of the same logits
    probs = np.asarray(igc_keras.create_model("igcv3_1.0", weights="imagenet")(
        reference["images_nhwc"].astype("float32")))
    np.testing.assert_allclose(probs, keras.ops.softmax(
        reference["logits"]).numpy(), atol=1e-5)
    # features only: every weight but the classifier's, any input size
    features = IGCV3(weights="imagenet", include_top=False, pooling="avg",
                     input_shape=(160, 160, 3))
    np.testing.assert_array_equal(
        features.get_layer("last_conv").get_weights()[0],
        model.get_layer("last_conv").get_weights()[0])


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated", "empty"])
def test_a_damaged_cached_checkpoint_is_reported_and_fetched_again(
        release, damage):
    path, reference, cached = release
    IGCV3(weights="imagenet")
    data = bytearray(cached.read_bytes())
    if damage == "flipped_byte":
        data[len(data) // 2] ^= 0x04
    cached.write_bytes({"flipped_byte": bytes(data),
                        "truncated": bytes(data[:len(data) // 3]),
                        "empty": b""}[damage])
    with pytest.warns(UserWarning, match=str(cached) + ".*failed its "
                                         "integrity check.*Fetching it again"):
        model = IGCV3(weights="imagenet", classifier_activation=None)
    _assert_mxnet_logits(model, reference)
    assert git_blob_sha1(str(cached)) == git_blob_sha1(path)


def test_a_tampered_download_is_refused_before_parsing(release, tmp_path,
                                                       monkeypatch):
    path, _, cached = release
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    tampered = tmp_path / "tampered.params"
    tampered.write_bytes(bytes(data))
    config = pretrained.PRETRAINED["igcv3_1.0"]
    monkeypatch.setitem(pretrained.PRETRAINED, "igcv3_1.0",
                        pretrained.PretrainedConfig(**{
                            **config.__dict__,
                            "origin": "file://" + str(tampered)}))
    with pytest.raises(ValueError, match="failed its integrity check"):
        IGCV3(weights="imagenet")
    assert os.listdir(cached.parent) == [cached.name + ".lock"]


def test_a_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    config = pretrained.PRETRAINED["igcv1_l4m32"]
    monkeypatch.setitem(pretrained.PRETRAINED, "igcv1_l4m32",
                        pretrained.PretrainedConfig(**{
                            **config.__dict__,
                            "origin": "file://" + str(tmp_path / "nothing")}))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    with pytest.raises(ValueError, match="could not download the igcv1_l4m32"):
        igc_keras.create_model("igcv1_l4m32", weights="imagenet")


def test_the_checkpoint_file_itself_is_converted_on_the_fly(
        release, mxnet_reference, tmp_path):
    path, reference, cached = release
    # the released file: recognised by its git blob id
    _assert_mxnet_logits(IGCV3(weights=path, classifier_activation=None),
                         reference)
    assert not cached.exists()  # read in place, nothing cached
    # another checkpoint of the same graph: converted without that check
    params = load_params(path)
    params["arg:fc_bias"] = params["arg:fc_bias"] + 1.0
    other = str(tmp_path / "finetuned-0010.params")
    save_params(other, params)
    logits = np.asarray(IGCV3(weights=other, classifier_activation=None)(
        reference["images_nhwc"].astype("float32")), "float64")
    np.testing.assert_allclose(logits, reference["logits"] + 1.0, rtol=0,
                               atol=1e-4 * np.abs(reference["logits"]).max())
    # a released file of another architecture is named as such
    with pytest.raises(ValueError, match=r"is the authors' igcv3_1.0 "
                                         r"checkpoint; build it with IGCV3\("):
        IGCV3(weights=path, alpha=0.5)
    l4m32 = str(mxnet_reference("igcv1_l4m32") / "model-0000.params")
    with pytest.raises(ValueError, match="checkpoint has no arg:.*Is it a "
                                         "igcv3 checkpoint"):
        IGCV3(weights=l4m32)


def test_a_checkpoint_holding_nan_is_refused_by_builder_and_cli(
        release, tmp_path, capsys):
    path, _, _ = release
    params = load_params(path)
    kernel = params["arg:seq-2-block1-exp-conv2d_weight"].copy()
    kernel.reshape(-1)[:1000] = np.nan
    params["arg:seq-2-block1-exp-conv2d_weight"] = kernel
    broken = str(tmp_path / "nan-0000.params")
    save_params(broken, params)
    with pytest.raises(ValueError, match=r"nan-0000.params: tensor "
                                         r"arg:seq-2-block1-exp-conv2d_weight "
                                         r"holds 1000 non-finite values"):
        IGCV3(weights=broken)
    out = tmp_path / "nan.weights.h5"
    assert cli(["convert", broken, "--model", "igcv3_1.0", "-o",
                str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "1000 non-finite values" in err and "\n" not in err
    assert not out.exists()
    # a Keras weights file holding NaN too
    model = IGCV3(weights=None)
    weights = model.get_layer("last_bn").weights[0]
    weights.assign(np.full(weights.shape, np.nan, "float32"))
    model.save_weights(str(tmp_path / "nan.weights.h5"))
    with pytest.raises(ValueError, match=r"last_bn/gamma holds 1280 "
                                         r"non-finite values"):
        IGCV3(weights=str(tmp_path / "nan.weights.h5"))


def test_cli_convert_takes_the_architecture_from_the_table(release, tmp_path,
                                                          capsys):
    path, reference, _ = release
    out = str(tmp_path / "igcv3.weights.h5")
    assert cli(["convert", path, "-o", out, "--verify"]) == 0
    assert "(igcv3_1.0, released, verified)" in capsys.readouterr().out
    model = IGCV3(classifier_activation=None)
    model.load_weights(out)
    _assert_mxnet_logits(model, reference)
    other = str(tmp_path / "mine.params")  # not a released file
    params = load_params(path)
    params["arg:fc_bias"] = params["arg:fc_bias"] + 0.5
    save_params(other, params)
    for argv in (["convert", other], ["convert", other, "--verify",
                                      "--model", "igcv3_1.0"],
                 ["convert", path, "--model", "igcv1_l4m32"]):
        assert cli(argv + ["-o", str(tmp_path / "x.weights.h5")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("igc-keras convert: error:") and "\n" not in err
    assert not os.path.exists(tmp_path / "x.weights.h5")


def test_a_mirror_folder_serves_air_gapped_sites(release, tmp_path,
                                                 monkeypatch):
    path, reference, cached = release
    config = pretrained.PRETRAINED["igcv3_1.0"]
    monkeypatch.setitem(pretrained.PRETRAINED, "igcv3_1.0",
                        pretrained.PretrainedConfig(**{
                            **config.__dict__,
                            "origin": "https://unreachable.invalid/x"}))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    with pytest.raises(ValueError, match=MIRROR_ENV + ".* has no "
                                         "'igcv3-0000.params'"):
        IGCV3(weights="imagenet")
    os.link(path, mirror / "igcv3-0000.params")
    _assert_mxnet_logits(IGCV3(weights="imagenet", classifier_activation=None),
                         reference)
    assert cached.exists()


class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the directory in 64 KiB pieces, 20 ms apart, and counts the
    downloads."""

    requests = []

    def copyfile(self, source, outputfile):
        _SlowHandler.requests.append(self.path)
        for chunk in iter(lambda: source.read(1 << 16), b""):
            outputfile.write(chunk)
            time.sleep(0.02)

    def log_message(self, *args):
        pass


#: A process asking for the weights: the table pointed at the test release
#: (as the ``release`` fixture does in-process), then ``weights="imagenet"``.
CHILD = """
import json, sys
import numpy as np
from igc_keras.applications import IGCV3, pretrained
config = pretrained.PRETRAINED["igcv3_1.0"]
pretrained.PRETRAINED["igcv3_1.0"] = pretrained.PretrainedConfig(**{
    **config.__dict__, "origin": "https://unreachable.invalid/x",
    "git_blob_sha1": sys.argv[1]})
model = IGCV3(weights="imagenet")
print(json.dumps(float(np.sum([np.abs(w).sum() for w in model.get_weights()]))))
"""


def test_processes_racing_into_an_empty_cache_all_get_the_weights(
        release, tmp_path):
    """Three processes ask at once, through a mirror URL serving the file in
    about 3 s: one download, three identical models, one verified file."""
    path, _, cached = release
    served = tmp_path / "served"
    served.mkdir()
    os.link(path, served / "igcv3-0000.params")
    _SlowHandler.requests = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: _SlowHandler(
            *a, directory=str(served), **k))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**ENV, "KERAS_HOME": os.environ["KERAS_HOME"],
           MIRROR_ENV: f"http://127.0.0.1:{server.server_address[1]}"}
    try:
        children = [subprocess.Popen(
            [sys.executable, "-c", CHILD, git_blob_sha1(path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(3)]
        outputs = [child.communicate(timeout=600) for child in children]
    finally:
        server.shutdown()
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, err[-3000:]
    sums = {json.loads(out.strip().splitlines()[-1]) for out, _ in outputs}
    assert len(sums) == 1
    assert _SlowHandler.requests == ["/igcv3-0000.params"]
    assert git_blob_sha1(str(cached)) == git_blob_sha1(path)
    assert sorted(os.listdir(cached.parent)) == [cached.name,
                                                cached.name + ".lock"]


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": float("nan")}, r"`alpha` must be a finite number > 0; got "
                              r"alpha=nan"),
    ({"alpha": float("inf")}, r"`alpha` must be a finite number > 0; got "
                              r"alpha=inf"),
    ({"alpha": 0}, r"`alpha` must be a finite number > 0"),
    ({"input_shape": "224"}, r"`input_shape` must be a tuple of 3 integers.*"
                             r"got input_shape='224'"),
    ({"input_shape": (224.0, 224, 3)}, r"`input_shape` must be a tuple of 3 "
                                       r"integers"),
    ({"input_shape": (64, 64, 3), "input_tensor": "keras_input_32"},
     r"input_shape=\(64, 64, 3\) does not match input_tensor's shape "
     r"\(32, 32, 3\)"),
    ({"input_tensor": np.zeros((32, 32, 3))}, r"`input_tensor` must be a "
                                              r"batch of images"),
    ({"weights": "saved.keras"}, r"weights=.*saved\.keras' is a whole saved "
                                 r"model \(\.keras\).*keras\.saving\."
                                 r"load_model"),
    ({"weights": "missing.weights.h5"}, r"weights=.*missing\.weights\.h5' "
                                        r"does not exist"),
    ({"weights": 3}, r"`weights` must be None, 'imagenet' or a file path"),
    ({"weights": "imagenet", "alpha": 0.5},
     r"weights='imagenet' is not available for IGCV3\(alpha=0.5.*released "
     r"IGCV3 weights: IGCV3\(alpha=1.0"),
])
def test_builder_arguments_are_checked_before_any_layer(tmp_path, kwargs,
                                                        message):
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("input_tensor"), str):
        kwargs["input_tensor"] = keras.Input((32, 32, 3))
    if kwargs.get("weights") == "saved.keras":
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(
            str(tmp_path / "saved.keras"))
    if isinstance(kwargs.get("weights"), str) and kwargs["weights"] not in (
            "imagenet",):
        kwargs["weights"] = str(tmp_path / kwargs["weights"])
    with pytest.raises(ValueError, match="IGCV3: " + message):
        IGCV3(**kwargs)


def test_every_builder_refuses_bad_alpha_and_shapes():
    for builder in (IGCV1, IGCV3):
        with pytest.raises(ValueError, match=r"`alpha` must be a finite"):
            builder(alpha=float("nan"))
    with pytest.raises(ValueError, match=r"IGCV1: weights='imagenet' is not "
                                         r"available for IGCV1\(alpha=0.5"):
        IGCV1(weights="imagenet", alpha=0.5)


def test_imagenet_argument_errors():
    with pytest.raises(ValueError, match=r"IGCV2: weights='imagenet' is not "
                                         r"available.*released IGCV2 weights: "
                                         r"none"):
        igc_keras.create_model("igcv2_1.0", weights="imagenet")
    with pytest.raises(ValueError, match="`classes` must be 1000"):
        igc_keras.create_model("igcv3_1.0", weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="`classifier_activation` must be"):
        igc_keras.create_model("igcv3_1.0", weights="imagenet",
                               classifier_activation="sigmoid")
    with pytest.raises(ValueError, match="needs 3 input channels"):
        igc_keras.create_model("igcv3_1.0", weights="imagenet",
                               include_top=False, input_shape=(224, 224, 1))
    with pytest.raises(ValueError, match=r"IGCV1CIFAR: weights='imagenet' is "
                                         r"not available"):
        igc_keras.create_model("igcv1_cifar_l24m2_d20", weights="imagenet")


def test_a_killed_download_leaves_nothing_behind_the_next_one(release):
    """A process killed mid-download leaves its temporary files in the
    cache folder; the next download of that file removes them."""
    path, reference, cached = release
    cached.parent.mkdir(parents=True)
    scratch = cached.parent / f".{cached.name}.fetch-killed"
    scratch.mkdir()
    (scratch / cached.name).write_bytes(b"half a download")
    (cached.parent / f".{cached.name}.partial").write_bytes(b"half")
    _assert_mxnet_logits(IGCV3(weights="imagenet", classifier_activation=None),
                         reference)
    assert sorted(os.listdir(cached.parent)) == [cached.name,
                                                cached.name + ".lock"]
