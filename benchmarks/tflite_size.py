"""Where the bytes of a full-int8 TFLite file go: IGCV3-1.0 vs MobileNetV2.

Both models (random weights; sizes do not depend on them) are exported with
:func:`igc_keras.optimize.export_tflite` as float32 and as full int8
(calibrated on the real ImageNet validation JPEGs in
``../shared/data/imagenet/val_samples``), then each int8 file is read back
with TensorFlow's flatbuffer reader and its bytes split into int8 weights,
int32 biases, quantization parameters (a float32 scale and an int64 zero
point per output channel of every weight and bias tensor: TFLite's schema
stores zero points as int64) and the rest (graph, names, metadata).

    python benchmarks/tflite_size.py [--size 224] [--classes 1000] [--no-fuse]
                                     [--per-tensor]
"""

import argparse
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from tensorflow.lite.tools import flatbuffer_utils  # noqa: E402

from tflite_latency import SAMPLES, models  # noqa: E402

from igc_keras.data.classification import read_images  # noqa: E402
from igc_keras.optimize.tflite_export import export_tflite  # noqa: E402


def breakdown(path):
    """Bytes of ``path`` by what they hold (see the module docstring)."""
    model = flatbuffer_utils.read_model(path)
    parts = {"int8_weights": 0, "int32_biases": 0, "other_buffers": 0,
             "quantization_parameters": 0}
    counted = set()  # tensors may share a buffer
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            data = model.buffers[tensor.buffer].data
            size = 0 if data is None or tensor.buffer in counted else len(data)
            counted.add(tensor.buffer)
            kind = ("int8_weights" if tensor.type == 9 else
                    "int32_biases" if tensor.type == 2 else "other_buffers")
            parts[kind] += size
            quantization = tensor.quantization
            if quantization is not None and quantization.scale is not None:
                parts["quantization_parameters"] += (
                    4 * len(quantization.scale) +
                    8 * len(quantization.zeroPoint))
    parts["rest"] = os.path.getsize(path) - sum(parts.values())
    return parts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--no-fuse", action="store_true")
    parser.add_argument("--per-tensor", action="store_true",
                        help="int8 weights with one scale per tensor")
    args = parser.parse_args(argv)
    calibration = read_images(SAMPLES, (args.size, args.size), 100,
                              key="calibration")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name, model in models(args.size, args.classes).items():
            files = {}
            for quantization in ("float32", "int8"):
                files[quantization] = export_tflite(
                    model, os.path.join(directory, f"{name}_{quantization}"
                                        ".tflite"), quantization,
                    calibration if quantization == "int8" else None,
                    fuse=not args.no_fuse,
                    per_channel=not args.per_tensor)
            parts = breakdown(files["int8"]["path"])
            total = files["float32"]["bytes"]
            rows.append({
                "model": name, "float32_bytes": total,
                "int8_bytes": files["int8"]["bytes"],
                "int8_over_float32": round(files["int8"]["bytes"] / total, 4),
                **{k: v for k, v in parts.items()},
                **{f"{k}_over_float32": round(v / total, 4)
                   for k, v in parts.items()},
                "channels_with_parameters": int(np.round(
                    parts["quantization_parameters"] / 12))})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
