"""igc_keras.optimize.export: every format runs in its own runtime (ONNX
Runtime, OpenVINO, TensorFlow, the TFLite interpreter — called here
directly, not through the package) with the Keras model's outputs on real
photos (``../shared/data``), for IGCV1, IGCV2, IGCV3, a fine-tuned
classifier and SSDLite detectors; ONNX int8 keeps the top-1 on real
CIFAR-10 images; bad input is refused in one line before any work."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from random_weights import randomize_weights

from igc_keras.applications import IGCV3
from igc_keras.applications.imagenet_utils import (
    classifier_with_preprocessing, preprocessing_layer)
from igc_keras.data.classification import read_images
from igc_keras.errors import ConfigError, MissingExtraError
from igc_keras.optimize import export

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                    os.pardir, "shared", "data")
PHOTOS = os.path.join(DATA, "imagenet", "val_samples")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _network(name, size, classes=10):
    import igc_keras
    from igc_keras.layers import group_conv_implementation
    with group_conv_implementation("native"):  # as built: grouped convs
        network = igc_keras.create_model(
            name, input_shape=(size, size, 3), classes=classes,
            classifier_activation=None, weights=None)
    return classifier_with_preprocessing(network, name)


@pytest.fixture(scope="module")
def photos():
    return read_images(PHOTOS, (96, 96), 12)


@pytest.fixture(scope="module")
def cifar_photos():
    test = np.load(os.path.join(DATA, "cifar10", "original_test_first932.npz"))
    return test["x"].astype("float32")


def _run_in_runtime(path, format, images):
    """The file's outputs, from its runtime's own API."""
    if format == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(
            path, providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(["outputs"], {"images": x[None]})[0]
                               for x in images])
    if format == "openvino":
        import openvino
        compiled = openvino.Core().compile_model(
            path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.concatenate([compiled(x[None])[compiled.output("outputs")]
                               for x in images])
    if format == "saved_model":
        import tensorflow as tf
        serve = tf.saved_model.load(path).signatures["serve"]
        return serve(images=tf.constant(images))["outputs"].numpy()
    import tensorflow as tf
    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    found = []
    for x in images:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                               x[None])
        interpreter.invoke()
        found.append(interpreter.get_tensor(
            interpreter.get_output_details()[0]["index"]))
    return np.concatenate(found)


def _target(tmp_path, format):
    return str(tmp_path / {"onnx": "m.onnx", "openvino": "ir/m.xml",
                           "tflite": "m.tflite",
                           "saved_model": "m_savedmodel"}[format])


def _assert_same_outputs(model, path, format, images, report):
    expected = model.predict(images, verbose=0)
    found = _run_in_runtime(path, format, images)
    scale = np.abs(expected).max()
    assert np.abs(found - expected).max() <= 1e-4 * scale, (
        np.abs(found - expected).max(), scale)
    assert (found.argmax(-1) == expected.argmax(-1)).all()
    assert report["check"]["inputs"] == "real"
    assert report["check"]["top1_agreement"] == 1.0
    assert report["check"]["max_abs_diff"] <= 1e-4 * scale


@pytest.mark.parametrize("format", ["onnx", "openvino", "saved_model",
                                    "tflite"])
def test_igcv3_as_built_exports_to_every_runtime_with_its_outputs(
        photos, tmp_path, format):
    model = randomize_weights(classifier_with_preprocessing(
        IGCV3(input_shape=(96, 96, 3), weights=None,
              classifier_activation=None), "igcv3_1.0"), seed=1)
    path = _target(tmp_path, format)
    if format == "openvino":
        os.makedirs(os.path.dirname(path))
    report = export(model, path, format=format, check_data=photos)
    assert report["fused"] and report["group_convolutions"] == "dense"
    _assert_same_outputs(model, path, format, photos, report)
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".export")]
    assert not leftovers, leftovers
    if format == "openvino":
        assert os.path.exists(str(tmp_path / "ir" / "m.bin"))


def _fine_tuned(size):
    backbone = IGCV3(input_shape=(size, size, 3), include_top=False,
                     pooling="avg", weights=None)
    head = keras.Sequential([keras.layers.Dropout(0.2),
                             keras.layers.Dense(5, name="flowers")])
    return classifier_with_preprocessing(backbone, "igcv3_1.0", head=head)


@pytest.mark.parametrize("name", ["igcv1_cifar_l24m2_d20", "igcv2_cifar_igcv2_c64_d8",
                                  "fine_tuned"])
@pytest.mark.parametrize("format", ["onnx", "openvino"])
def test_igcv1_igcv2_and_a_fine_tuned_classifier_export(
        cifar_photos, tmp_path, name, format):
    model = _fine_tuned(32) if name == "fine_tuned" else _network(name, 32)
    model = randomize_weights(model, seed=3)
    images = cifar_photos[:12]
    path = _target(tmp_path, format)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    report = export(model, path, format=format, check_data=images)
    _assert_same_outputs(model, path, format, images, report)


@pytest.mark.parametrize("format", ["onnx", "openvino"])
def test_int8_keeps_the_top1_of_the_float_model(cifar_photos, tmp_path,
                                                 format):
    """ONNX Runtime static quantization / OpenVINO NNCF, calibrated on 100
    real CIFAR-10 images, checked on 200 others."""
    model = randomize_weights(_network("igcv3_1.0", 32), seed=2)
    calibration, check = cifar_photos[:100], cifar_photos[100:300]
    suffix = ".onnx" if format == "onnx" else ".xml"
    float32 = export(model, str(tmp_path / f"f{suffix}"), format)
    int8 = export(model, str(tmp_path / f"q{suffix}"), format, "int8",
                  representative_data=calibration, check_data=check)
    assert int8["bytes"] < 0.4 * float32["bytes"], (int8, float32)
    found = _run_in_runtime(int8["path"], format, check)
    agreement = np.mean(found.argmax(-1) == model.predict(
        check, verbose=0).argmax(-1))
    assert agreement >= 0.9 and int8["check"]["top1_agreement"] == agreement


def _detector():
    from igc_keras.detection import SSDLite
    detector = SSDLite("igcv3_1.0", num_classes=3, image_size=128,
                       backbone_weights=None, score_threshold=0.05,
                       max_detections=20)
    return randomize_weights(detector, seed=4)


@pytest.mark.parametrize("format", ["onnx", "openvino"])
def test_ssdlite_exports_with_its_detections_inside_the_file(tmp_path,
                                                             format):
    from igc_keras.optimize.deploy import detection_agreement
    detector = _detector()
    images = read_images(os.path.join(DATA, "coco_mini", "val2017"),
                         (128, 128), 4)
    path = _target(tmp_path, format)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    report = export(detector, path, format=format, check_data=images)
    if format == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(path)
        assert {n.op_type for n in __import__("onnx").load(path).graph.node} >= {
            "NonMaxSuppression"}
        runs = [dict(zip([o.name for o in session.get_outputs()],
                         session.run(None, {"images": x[None]})))
                for x in images]
    else:
        import openvino
        compiled = openvino.Core().compile_model(
            path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        runs = [{key: compiled(x[None])[compiled.output(key)]
                 for key in ("boxes", "scores", "classes", "num_detections")}
                for x in images]
    found = [{key: run[key][0, :int(run["num_detections"][0])]
              for key in ("boxes", "scores", "classes")} for run in runs]
    decoded = detector.predict(images, verbose=0)
    expected = [{key: decoded[key][i, :int(decoded["num_detections"][i])]
                 for key in ("boxes", "scores", "classes")}
                for i in range(len(images))]
    agreement = detection_agreement(expected, found)
    assert agreement["detections"] > 0
    assert agreement["matched"] >= 0.95 and agreement[
        "max_score_diff"] < 1e-4, agreement
    assert report["check"]["matched"] >= 0.95, report


def test_bad_exports_are_refused_naming_what_to_fix(tmp_path, monkeypatch):
    model = _network("igcv2_cifar_igcv2_c64_d8", 32)
    cases = [
        (dict(path=tmp_path / "m.onnx", format="onnnx"), "format='onnnx'"),
        (dict(path=tmp_path / "m.onnx", format="onnx", quantization="float16"),
         "quantization='float16' for format='onnx'"),
        (dict(path=tmp_path / "m.onnx", format="onnx", quantization="int8"),
         "needs representative_data"),
        (dict(path=tmp_path / "m.xml.tmp", format="openvino"), "ends with '.xml'"),
        (dict(path=tmp_path / "no" / "m.onnx", format="onnx"), "does not exist"),
        (dict(path=tmp_path / "m.onnx", format="onnx",
              group_convolutions="grouped"), "group_convolutions='grouped'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            export(model, **kwargs)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'igc_keras\[deploy\]'"):
        export(model, tmp_path / "m.onnx", format="onnx")
    assert not os.listdir(tmp_path)


def test_a_layer_onnx_cannot_express_is_named(tmp_path):
    import tensorflow as tf

    class HostCall(keras.layers.Layer):
        def call(self, x):
            return tf.ensure_shape(tf.numpy_function(
                lambda a: a * 2, [x], tf.float32, stateful=False), x.shape)

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3)(preprocessing_layer("igcv3_1.0")(inputs))
    x = HostCall(name="host_call")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ConfigError, match="cannot take layer 'host_call' "
                       r"\(HostCall\).*PyFunc"):
        export(model, str(tmp_path / "m.onnx"), "onnx")
    assert not os.listdir(tmp_path)  # nothing half-written is left


def test_cli_exports_onnx_and_benches_it_beside_mobilenet_v2(tmp_path):
    model = randomize_weights(_network("igcv2_cifar_igcv2_c64_d8", 32))
    path = str(tmp_path / "model.keras")
    model.save(path)
    run = subprocess.run(
        [sys.executable, "-m", "igc_keras_cli", "export", path, "--format",
         "onnx", "-o", str(tmp_path / "m.onnx")],
        capture_output=True, text=True, env=ENV)
    assert run.returncode == 0, run.stderr[-2000:]
    assert '"inputs": "random"' in run.stdout
    bench = subprocess.run(
        [sys.executable, "-m", "igc_keras_cli", "bench",
         str(tmp_path / "m.onnx"), "--runs", "5", "--batch-size", "2"],
        capture_output=True, text=True, env=ENV)
    assert bench.returncode == 0, bench.stderr[-2000:]
    import json
    row = json.loads(bench.stdout[bench.stdout.index("{"):])
    assert row["format"] == "onnx" and row["batch_size"] == 2
    assert row["ratio_to_mobilenet_v2"] > 0
    for extra, message in (
            (["--format", "openvino", "-o", str(tmp_path / "m.onnx")],
             "ends with '.xml'"),
            (["--format", "onnx", "-o", str(tmp_path / "no" / "m.onnx")],
             "does not exist")):
        bad = subprocess.run(
            [sys.executable, "-m", "igc_keras_cli", "export", path] + extra,
            capture_output=True, text=True, env=ENV)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
