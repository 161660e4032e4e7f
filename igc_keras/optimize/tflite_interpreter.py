"""TFLite interpreter tools: run a ``.tflite`` file, check it against its
Keras model, describe it, time it.

:func:`run_tflite` runs a file in the TFLite interpreter (quantizing int8
inputs and dequantizing outputs with the file's own scales) and
:func:`compare_tflite` reports top-1 agreement, the largest output
difference and the file size against the Keras model on real images.
"""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.optimize.run_tflite")

import os

import numpy as np
import tensorflow as tf


def run_tflite(path, images, batch_size=1):
    """Runs a ``.tflite`` file on ``images`` (float 0..255) in the TFLite
    interpreter, one batch at a time.

    Returns:
        ``(N, outputs)`` float32 (int8 outputs dequantized).
    """
    interpreter = tf.lite.Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    images = np.asarray(images, "float32")
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        interpreter.resize_tensor_input(detail["index"], chunk.shape)
        interpreter.allocate_tensors()
        if detail["dtype"] in (np.int8, np.uint8):
            scale, zero = detail["quantization"]
            info = np.iinfo(detail["dtype"])
            chunk = np.clip(np.round(chunk / scale + zero), info.min,
                            info.max).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], chunk)
        interpreter.invoke()
        out_detail = interpreter.get_output_details()[0]
        out = interpreter.get_tensor(out_detail["index"])
        if out_detail["dtype"] in (np.int8, np.uint8):
            scale, zero = out_detail["quantization"]
            out = (out.astype("float32") - zero) * scale
        outputs.append(np.asarray(out, "float32"))
    return np.concatenate(outputs)


def compare_tflite(model, path, images, batch_size=32):
    """Agreement of a ``.tflite`` file with ``model`` on real ``images``.

    Returns:
        dict: ``images``, ``top1_agreement`` (fraction of images whose
        top-1 class is the same), ``max_abs_diff`` (largest output
        difference), ``bytes`` (file size).
    """
    expected = np.asarray(model.predict(np.asarray(images, "float32"),
                                        batch_size=batch_size, verbose=0))
    found = run_tflite(path, images, batch_size=1)
    return {"images": int(len(images)),
            "top1_agreement": float(np.mean(
                expected.argmax(-1) == found.argmax(-1))),
            "max_abs_diff": float(np.abs(expected - found).max()),
            "bytes": os.path.getsize(path)}


def describe_tflite(path):
    """What a ``.tflite`` file holds: ``quantization`` (``int8`` when the
    convolutions run on int8 activations, ``dynamic`` when only weights are
    int8, ``float16``, ``float32``) and ``input_shape``."""
    interpreter = tf.lite.Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kinds = set()
    for op in interpreter._get_ops_details():  # no public op listing
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D",
                             "FULLY_CONNECTED"):
            activation = tensors[op["inputs"][0]]["dtype"]
            weights = tensors[op["inputs"][1]]["dtype"]
            kinds.add("int8" if activation == np.int8 else
                      "dynamic" if weights == np.int8 else
                      "float16" if weights == np.float16 else "float32")
    if not kinds:
        kinds = {"float32"}
    if any(t["dtype"] == np.float16 for t in tensors.values()):
        kinds.add("float16")
    order = ("int8", "dynamic", "float16", "float32")
    return {"quantization": next(k for k in order if k in kinds),
            "input_shape": [int(d) for d in
                            interpreter.get_input_details()[0]["shape"]]}


def tflite_latency(path, runs=50, warmup=5, threads=None):
    """Median batch-1 latency of a ``.tflite`` file in the interpreter, in
    milliseconds (random input of the file's shape and type)."""
    import time
    interpreter = tf.lite.Interpreter(model_path=str(path),
                                      num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        data = rng.integers(info.min, info.max, detail["shape"]).astype(
            detail["dtype"])
    else:
        data = rng.uniform(0, 255, detail["shape"]).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], data)
    times = []
    for i in range(warmup + runs):
        began = time.perf_counter()
        interpreter.invoke()
        if i >= warmup:
            times.append(time.perf_counter() - began)
    return 1000 * float(np.median(times))
