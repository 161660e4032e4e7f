"""ONNX and OpenVINO files: writing them and running them.

:func:`write_onnx` converts the serving SavedModel
(:func:`~igc_keras.optimize.serving.write_serving`) with tf2onnx — the
converter Keras' own ``model.export(format="onnx")`` uses — naming the
input ``images`` and the outputs as the SavedModel does; ``int8`` then
quantizes it with ONNX Runtime's static quantization (QDQ, per-channel
int8 weights, activations calibrated on real images).
:func:`write_openvino` reads that ONNX file with OpenVINO's converter and
saves the IR (``.xml`` + ``.bin``, float32 weights; ``int8``: NNCF
post-training quantization; why through ONNX:
:mod:`igc_keras.optimize.runtimes`).

:func:`run_onnx` / :func:`run_openvino` run a file on images and return its
outputs by name; :func:`latency` times one. Every optional package is
imported when a function needs it (:func:`~igc_keras.optimize.runtimes.
require`).
"""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.optimize.onnx_export")

import os
import re
import shutil
import tempfile
import time

import numpy as np

from igc_keras.errors import ConfigError
from igc_keras.optimize.runtimes import require

#: OpenVINO's CPU plugin computes in bf16 where the CPU has it; checks and
#: the default benchmarks ask for float32.
OPENVINO_PRECISIONS = ("f32", "bf16")


def write_onnx(saved_model, path, model, format="onnx", opset=17):
    """Converts the serving SavedModel at ``saved_model`` (of ``model``) to
    ``path``; a TensorFlow op with no ONNX conversion is refused naming the
    layer of ``model`` it comes from."""
    onnx = require("onnx", f"export(format={format!r})")
    tf2onnx = require("tf2onnx", f"export(format={format!r})")
    from tf2onnx import tf_loader
    graph, inputs, outputs, renames = tf_loader.from_saved_model(
        saved_model, None, None, signatures=["serve"],
        return_tensors_to_rename=True)
    proto, _ = tf2onnx.convert.from_graph_def(
        graph, input_names=inputs, output_names=outputs, opset=opset,
        tensors_to_rename=renames, output_path=path)
    # tf2onnx logs an op it cannot convert and keeps it in the file
    unknown = [node for node in proto.graph.node
               if not onnx.defs.has(node.op_type, node.domain or "")]
    if unknown:
        layer = _layer_of(unknown[0], model)
        hint = (" Keras runs a grouped convolution as an XLA call, which "
                "tf2onnx cannot read: export with group_convolutions="
                "'dense' or 'split'." if "(GroupConv2D)" in layer else "")
        raise UnsupportedLayerError(
            f"format={format!r} cannot take {layer}: its TensorFlow op "
            f"{unknown[0].op_type!r} has no ONNX conversion "
            f"({len(unknown)} such op(s) in the model).{hint}")
    return path


class UnsupportedLayerError(ConfigError):
    """A model holds a layer the export format cannot express."""


def _layer_of(node, model):
    from igc_keras.walk import walk_layers
    layers = {layer.name: type(layer).__name__ for layer in walk_layers(model)}
    for part in reversed(node.name.split("/")):
        name = re.sub(r"_\d+$", "", part)
        for candidate in (part, name):
            if candidate in layers:
                return f"layer {candidate!r} ({layers[candidate]})"
    return f"op {node.name!r}"


class _Calibration:
    """ONNX Runtime's ``CalibrationDataReader`` over real images."""

    def __init__(self, images, input_name):
        self._images = iter(np.asarray(images, "float32"))
        self._name = input_name

    def get_next(self):
        image = next(self._images, None)
        return None if image is None else {self._name: image[None]}


def quantize_onnx(path, output, representative_data, per_channel=True):
    """ONNX Runtime static int8 quantization of ``path`` into ``output``:
    QDQ format, int8 weights (per output channel unless ``per_channel=
    False``) and activations calibrated on ``representative_data`` (the
    first 100 images)."""
    require("onnxruntime", "ONNX int8 quantization")
    from onnxruntime import quantization
    with tempfile.TemporaryDirectory() as directory:
        prepared = os.path.join(directory, "prepared.onnx")
        quantization.shape_inference.quant_pre_process(path, prepared)
        quantization.quantize_static(
            prepared, output,
            _Calibration(np.asarray(representative_data)[:100], "images"),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=quantization.QuantType.QInt8,
            weight_type=quantization.QuantType.QInt8)
    return output


def write_openvino(onnx_path, path, representative_data=None):
    """Converts an ONNX file to OpenVINO IR at ``path`` (``.xml``; the
    weights go to the ``.bin`` beside it), float32 weights; with
    ``representative_data`` (real images) NNCF's post-training int8
    quantization calibrates it on the first 100."""
    ov = require("openvino", "OpenVINO export")
    model = ov.convert_model(onnx_path)
    if representative_data is not None:
        nncf = require("nncf", "OpenVINO int8 quantization")
        images = np.asarray(representative_data, "float32")[:100]
        model = nncf.quantize(model, nncf.Dataset(
            [image[None] for image in images]), subset_size=len(images))
    ov.save_model(model, path, compress_to_fp16=False)
    return path


def openvino_files(path):
    """The IR's two files (``.xml``, ``.bin``)."""
    return [path, os.path.splitext(path)[0] + ".bin"]


def _onnx_session(path, threads=None):
    ort = require("onnxruntime", "Running an ONNX file")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options,
                                   providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return (lambda batch: dict(zip(names, session.run(
        None, {session.get_inputs()[0].name: batch})))), names


def _openvino_model(path, precision="f32", threads=None):
    ov = require("openvino", "Running an OpenVINO file")
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"precision={precision!r}; allowed: "
                         f"{OPENVINO_PRECISIONS}.")
    config = {"INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    # an output's name: the SavedModel's (``outputs``, ``boxes``, ...)
    names = []
    for output in compiled.outputs:
        known = sorted(output.get_names(), key=len)
        names.append(known[0] if known else output.get_any_name())

    def run(batch):
        result = compiled(batch)
        return {name: np.asarray(result[output])
                for name, output in zip(names, compiled.outputs)}
    return run, names


def runner(path, precision="f32", threads=None):
    """``(run, output names)`` for an ``.onnx`` (ONNX Runtime) or ``.xml``
    (OpenVINO, ``precision``) file; ``run(batch)`` -> ``{name: array}``."""
    if str(path).endswith(".xml"):
        return _openvino_model(path, precision, threads)
    return _onnx_session(path, threads)


def run_file(path, images, batch_size=1, precision="f32"):
    """Runs an ONNX / OpenVINO file on ``images`` (float 0..255), one batch
    at a time; returns ``{output name: concatenated array}``."""
    run, names = runner(path, precision)
    images = np.asarray(images, "float32")
    parts = {name: [] for name in names}
    for start in range(0, len(images), batch_size):
        for name, value in run(images[start:start + batch_size]).items():
            parts[name].append(value)
    return {name: np.concatenate(value) for name, value in parts.items()}


def latency(path, batch_size=1, runs=30, warmup=3, precision="f32",
            threads=None, shape=None):
    """Median latency in milliseconds of one batch of ``batch_size`` random
    images of ``shape`` ``(H, W, 3)`` in the file's runtime."""
    run, _ = runner(path, precision, threads)
    batch = np.random.default_rng(0).uniform(
        0, 255, (batch_size,) + tuple(shape)).astype("float32")
    times = []
    for index in range(warmup + runs):
        began = time.perf_counter()
        run(batch)
        if index >= warmup:
            times.append(time.perf_counter() - began)
    return 1000 * float(np.median(times))


def describe(path):
    """``format`` (``onnx`` / ``openvino``), ``input_shape`` (batch None),
    ``quantization`` (``int8`` where the file quantizes its activations)
    and ``bytes`` of an ONNX / OpenVINO file."""
    if str(path).endswith(".xml"):
        ov = require("openvino", "Reading an OpenVINO file")
        model = ov.Core().read_model(str(path))
        shape = [None if d.is_dynamic else d.get_length()
                 for d in model.inputs[0].get_partial_shape()]
        kinds = {op.get_type_name() for op in model.get_ops()}
        return {"format": "openvino", "input_shape": [None] + shape[1:],
                "quantization": "int8" if "FakeQuantize" in kinds
                else "float32", "bytes": file_bytes(path)}
    onnx = require("onnx", "Reading an ONNX file")
    graph = onnx.load(str(path), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    kinds = {node.op_type for node in graph.node}
    return {"format": "onnx", "input_shape": [None] + shape[1:],
            "quantization": "int8" if "QuantizeLinear" in kinds
            else "float32", "bytes": file_bytes(path)}


def file_bytes(path):
    """Bytes on disk of an export (a folder: everything in it; an IR: both
    files)."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name))
                   for root, _, names in os.walk(path) for name in names)
    if str(path).endswith(".xml"):
        return sum(os.path.getsize(p) for p in openvino_files(path)
                   if os.path.exists(p))
    return os.path.getsize(path)


def replace(source, target):
    """Moves a finished file or folder into place (the target is replaced
    only once the new one is complete)."""
    if os.path.isdir(target):
        shutil.rmtree(target)
    shutil.move(source, target)
