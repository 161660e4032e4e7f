"""IGCV3-1.0 vs keras.applications MobileNetV2-1.0 in the TFLite interpreter.

Both models are built at the same input size, wrapped with their own input
normalisation (RGB 0..255 in), exported with :func:`igc_keras.optimize.
export_tflite` as float32 and as full int8 (calibrated on the real ImageNet
validation JPEGs in ``../shared/data/imagenet/val_samples``), and timed at
batch 1 in the same run, alternating models, median of ``--runs``. The
printed ratio is IGCV3 / MobileNetV2 (< 1: IGCV3 is faster); only ratios
are meant to be quoted. Weights are random (latency does not depend on
them).

    python benchmarks/tflite_latency.py [--size 224] [--runs 50] [--threads 2]
                                        [--no-fuse]
"""

import argparse
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import igc_keras  # noqa: E402
from igc_keras.applications.imagenet_utils import \
    classifier_with_preprocessing  # noqa: E402
from igc_keras.data.classification import read_images  # noqa: E402
from igc_keras.optimize.tflite_export import export_tflite  # noqa: E402
from igc_keras.optimize.tflite_interpreter import tflite_latency  # noqa: E402

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                       os.pardir, "shared", "data", "imagenet", "val_samples")


def models(size, classes=1000):
    """``{name: keras.Model}`` taking RGB 0..255 at ``size``."""
    igcv3 = igc_keras.create_model("igcv3_1.0", input_shape=(size, size, 3),
                                   classes=classes)
    mobilenet = keras.applications.MobileNetV2(input_shape=(size, size, 3),
                                               weights=None, classes=classes)
    return {
        "igcv3_1.0": classifier_with_preprocessing(igcv3, "igcv3_1.0"),
        "mobilenet_v2_1.0": classifier_with_preprocessing(
            mobilenet, "mobilenet_v2_1.0"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-fuse", action="store_true",
                        help="convert the models as built (default: fused, "
                        "as export_tflite does)")
    args = parser.parse_args(argv)
    calibration = read_images(SAMPLES, (args.size, args.size), 100,
                              key="calibration")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        files = {}
        for name, model in models(args.size).items():
            for quantization in ("float32", "int8"):
                path = os.path.join(directory, f"{name}_{quantization}.tflite")
                info = export_tflite(model, path, quantization, calibration,
                                     fuse=not args.no_fuse)
                files[(name, quantization)] = info
        for quantization in ("float32", "int8"):
            latency = {}
            for _ in range(2):  # alternate, keep each model's best median
                for name in ("igcv3_1.0", "mobilenet_v2_1.0"):
                    value = tflite_latency(files[(name, quantization)]["path"],
                                           args.runs, threads=args.threads)
                    latency[name] = min(latency.get(name, value), value)
            rows.append({
                "quantization": quantization,
                "igcv3_ms": latency["igcv3_1.0"],
                "mobilenet_v2_ms": latency["mobilenet_v2_1.0"],
                "ratio": latency["igcv3_1.0"] / latency["mobilenet_v2_1.0"],
                "igcv3_bytes": files[("igcv3_1.0", quantization)]["bytes"],
                "mobilenet_v2_bytes":
                    files[("mobilenet_v2_1.0", quantization)]["bytes"],
                "igcv3_group_conv": files[("igcv3_1.0", quantization)][
                    "group_conv_implementation"]})
    print(f"TFLite interpreter, batch 1, {args.size}x{args.size}, threads="
          f"{args.threads or 'default'}")
    print(f"{'quantization':12s} {'IGCV3 ms':>9s} {'MNv2 ms':>9s} "
          f"{'ratio':>6s} {'IGCV3 MB':>9s} {'MNv2 MB':>8s}  group conv")
    for row in rows:
        print(f"{row['quantization']:12s} {row['igcv3_ms']:9.2f} "
              f"{row['mobilenet_v2_ms']:9.2f} {row['ratio']:6.2f} "
              f"{row['igcv3_bytes'] / 1e6:9.2f} "
              f"{row['mobilenet_v2_bytes'] / 1e6:8.2f}  "
              f"{row['igcv3_group_conv']}")
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
