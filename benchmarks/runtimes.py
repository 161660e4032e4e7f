"""IGCV3-1.0 beside keras.applications MobileNetV2-1.0 in every deployment
runtime, one table, one run.

Each network (random weights behind its preprocessing, 224 px) is written
by ``igc_keras.optimize.export`` with the same options — the package's
default command, ``igc-keras export model.keras --format F`` — and timed
in its runtime at batch 1 and 32 (median of ``--runs`` / ``--runs-32``
calls, the two networks alternating call by call, random inputs; int8
calibrated on the 100 real ImageNet validation
JPEGs in ``../shared/data``):

    python3 benchmarks/runtimes.py                 # the README's table
    python3 benchmarks/runtimes.py --forms         # IGCV3 per group-conv form

``--forms`` times IGCV3 in ONNX Runtime and OpenVINO with each
``group_convolutions`` form (``native`` where it converts, ``split``,
``dense``); OpenVINO also reading the SavedModel directly: the figures
behind ``igc_keras.optimize.runtimes.FASTEST_FORMS``.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from igc_keras.applications import IGCV3  # noqa: E402
from igc_keras.applications.imagenet_utils import \
    classifier_with_preprocessing  # noqa: E402
from igc_keras.data.classification import read_images  # noqa: E402
from igc_keras.optimize import onnx_export  # noqa: E402
from igc_keras.optimize.deploy import export  # noqa: E402
from igc_keras.optimize.serving import write_serving  # noqa: E402

PHOTOS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                      "shared", "data", "imagenet", "val_samples")

#: (row name, export format, quantization, runtime precision)
ROWS = [("TF graph (SavedModel)", "saved_model", "float32", None),
        ("TFLite f32", "tflite", "float32", None),
        ("TFLite int8", "tflite", "int8", None),
        ("ONNX Runtime f32", "onnx", "float32", None),
        ("ONNX Runtime int8", "onnx", "int8", None),
        ("OpenVINO f32", "openvino", "float32", "f32"),
        ("OpenVINO bf16 (its CPU default)", "openvino", "float32", "bf16"),
        ("OpenVINO int8 (NNCF)", "openvino", "int8", "f32")]

SUFFIX = {"saved_model": "", "tflite": ".tflite", "onnx": ".onnx",
          "openvino": ".xml"}


def _timed(call, batch, runs, warmup=3):
    for _ in range(warmup):
        call(batch)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - began)
    return 1000 * float(np.median(times))


def _caller(path, format, precision, threads):
    if format == "saved_model":
        serve = tf.saved_model.load(path).signatures["serve"]
        return lambda batch: serve(images=tf.constant(batch))
    if format == "tflite":
        interpreter = tf.lite.Interpreter(model_path=path, num_threads=threads)
        detail = interpreter.get_input_details()[0]
        shape = [None]

        def run(batch):
            if shape[0] != batch.shape:
                interpreter.resize_tensor_input(detail["index"], batch.shape)
                interpreter.allocate_tensors()
                shape[0] = batch.shape
            interpreter.set_tensor(detail["index"], batch)
            interpreter.invoke()
        return run
    run, _ = onnx_export.runner(path, precision or "f32", threads)
    return run


def _networks():
    return {"IGCV3-1.0": lambda: classifier_with_preprocessing(
                IGCV3(weights=None), "igcv3_1.0"),
            "MobileNetV2-1.0": lambda: classifier_with_preprocessing(
                keras.applications.MobileNetV2(weights=None),
                "mobilenet_v2_1.0")}


def _timed_pair(calls, batch, runs, warmup=3):
    """Median ms of each call, the calls alternating run by run (so that a
    change in the machine's speed during the run reaches both alike)."""
    times = [[] for _ in calls]
    for index in range(warmup + runs):
        for call, kept in zip(calls, times):
            began = time.perf_counter()
            call(batch)
            if index >= warmup:
                kept.append(time.perf_counter() - began)
    return [1000 * float(np.median(kept)) for kept in times]


def table(args, calibration, directory):
    batches = {1: args.runs, 32: args.runs_32}
    inputs = {b: np.random.default_rng(0).uniform(
        0, 255, (b, 224, 224, 3)).astype("float32") for b in batches}
    paths = {}
    for network, build in _networks().items():
        model = build()
        for row, format, quantization, precision in ROWS:
            path = os.path.join(directory, f"{network}_{format}_"
                                f"{quantization}{SUFFIX[format]}")
            if not os.path.exists(path):
                export(model, path, format, quantization,
                       calibration if quantization == "int8" else None)
            paths[row, network] = path
    print("\n| runtime | MobileNetV2 b1 / b32 (ms) | IGCV3 b1 / b32 (ms) "
          "| ratio b1 | ratio b32 |\n|---|---|---|---|---|", flush=True)
    for row, format, quantization, precision in ROWS:
        calls = [_caller(paths[row, network], format, precision, args.threads)
                 for network in ("MobileNetV2-1.0", "IGCV3-1.0")]
        (m1, i1), (m32, i32) = (_timed_pair(calls, inputs[b], runs)
                                for b, runs in batches.items())
        print(f"| {row} | {m1:.2f} / {m32:.1f} | {i1:.2f} / {i32:.1f} | "
              f"**{i1 / m1:.2f}** | **{i32 / m32:.2f}** |", flush=True)


def forms(args, directory):
    batches = {1: args.runs, 32: args.runs_32}
    inputs = {b: np.random.default_rng(0).uniform(
        0, 255, (b, 224, 224, 3)).astype("float32") for b in batches}
    model = _networks()["IGCV3-1.0"]()
    print("| form | ONNX Runtime b1 / b32 | OpenVINO f32 (from ONNX) b1 / "
          "b32 | OpenVINO f32 (from SavedModel) b1 / b32 |\n|---|---|---|---|")
    import openvino as ov
    for form in ("native", "split", "dense"):
        cells = []
        onnx_path = os.path.join(directory, f"{form}.onnx")
        try:
            export(model, onnx_path, "onnx", group_convolutions=form)
            for precision_path in (onnx_path, None):
                if precision_path is None:
                    ir = os.path.join(directory, f"{form}.xml")
                    export(model, ir, "openvino", group_convolutions=form)
                    call = _caller(ir, "openvino", "f32", args.threads)
                else:
                    call = _caller(onnx_path, "onnx", None, args.threads)
                cells.append(" / ".join(f"{_timed(call, inputs[b], r):.1f}"
                                        for b, r in batches.items()))
        except Exception as error:  # the form does not convert
            cells = [f"- ({type(error).__name__})"] * 2
        saved = os.path.join(directory, f"{form}_saved")
        write_serving(model, saved, form)
        compiled = ov.Core().compile_model(ov.convert_model(saved), "CPU", {
            "INFERENCE_PRECISION_HINT": "f32"})
        cells.append(" / ".join(f"{_timed(compiled, inputs[b], r):.1f}"
                                for b, r in batches.items()))
        print(f"| {form} | " + " | ".join(cells) + " |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--forms", action="store_true")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--runs-32", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        if args.forms:
            forms(args, directory)
        else:
            table(args, read_images(PHOTOS, (224, 224), 100), directory)


if __name__ == "__main__":
    main()
