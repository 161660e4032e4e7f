"""IGCV3-1.0 vs keras.applications MobileNetV2-1.0: the speed table of issue 8.

Both models are measured in the same run, in the same process, on the same
inputs, each in every configuration it can be run in on that runtime; a row
compares each model's best (fastest) configuration, and the ratio is
IGCV3 / MobileNetV2 (< 1: IGCV3 is faster). Only ratios are meant to be
quoted: absolute times depend on the machine.

Configurations:

* CPU inference (``tf.function``, TF graph and XLA): IGCV3 as built
  (native grouped convolutions + permutations), ``fuse``d with grouped
  convolutions (:class:`BranchSumConv2D`) and ``fuse``d with dense
  block-structured kernels; MobileNetV2 as keras.applications ships it and
  ``fuse``d (BatchNorm folded by the same tool). The row's "vs shipped" column
  divides by MobileNetV2 as shipped.
* CPU training step (SGD, batch 32, TF graph and XLA): IGCV3 with native,
  split and dense group convolutions (:class:`GroupConv2D`
  ``implementation``), and permutation-free (``fuse(model,
  batchnorm=False)``) with dense group convolutions; MobileNetV2 as shipped.
* TFLite interpreter, batch 1, float32 and full int8 (calibrated on the real
  ImageNet validation photos in ``../shared/data``): fused IGCV3 (grouped and
  dense) vs MobileNetV2 (the converter folds its BatchNorm itself).
* GPU (only where TensorFlow sees one), batch 128, mixed_float16, XLA and
  graph: inference and a training step.

    python benchmarks/speed.py [--repeats 20] [--size 224] [--json out.json]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from igc_keras.applications import IGCV3  # noqa: E402
from igc_keras.layers import with_group_conv_implementation  # noqa: E402
from igc_keras.optimize import fuse  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tflite_latency  # noqa: E402

GOALS = {"cpu": (1.0, 1.0, 1.1), "tflite": 1.0, "gpu": 1.0}


def _median_time(fn, args, repeats, warmup=2):
    for _ in range(warmup):
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def inference_time(model, batch, size, jit, repeats, dtype="float32"):
    x = tf.constant(np.random.default_rng(0).uniform(
        -1, 1, (batch, size, size, 3)).astype(dtype))
    fn = tf.function(lambda t: model(t, training=False), jit_compile=jit)
    return _median_time(fn, (x,), repeats)


def train_step_time(model, batch, size, jit, repeats, dtype="float32"):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)).astype(dtype))
    y = tf.constant(rng.integers(0, 1000, batch))
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if dtype == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit)
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return _median_time(step, (x, y), repeats)


def _best(times):
    """``(seconds, configuration)`` of the fastest entry."""
    key = min(times, key=times.get)
    return times[key], key


def _measure(configs, measure, modes, repeats, label, rounds=2,
             xla_repeats=None):
    """``{"config, mode": seconds}``: each configuration's best median over
    ``rounds`` alternating rounds. ``xla_repeats`` (CPU): XLA gets one round
    of at most that many repeats — XLA:CPU runs these depthwise networks
    5-10x slower than the TF graph, so only its order of magnitude
    matters."""
    times = {}
    for round_ in range(rounds):
        for name, model in configs.items():
            for mode in modes:
                key = f"{name}, {mode}"
                count = repeats
                if mode == "XLA" and xla_repeats is not None:
                    if round_:
                        continue
                    count = min(repeats, xla_repeats)
                value = measure(model, mode == "XLA", count)
                times[key] = min(times.get(key, value), value)
    for key, value in times.items():
        print(f"  {label}: {key}: {1000 * value:.1f} ms", flush=True)
    return times


def _row(figure, igc_times, mnv2_times, goal, shipped=None):
    igc, igc_config = _best(igc_times)
    mnv2, mnv2_config = _best(mnv2_times)
    row = {"figure": figure, "goal": goal, "ratio": igc / mnv2,
           "igcv3_ms": 1000 * igc, "igcv3_config": igc_config,
           "mobilenet_v2_ms": 1000 * mnv2, "mobilenet_v2_config": mnv2_config,
           "all_ms": {k: 1000 * v for k, v in {**igc_times,
                                                 **mnv2_times}.items()}}
    if shipped is not None:
        row["ratio_vs_shipped"] = igc / _best(shipped)[0]
    return row


def cpu_rows(size, repeats, train_repeats):
    igcv3 = IGCV3(input_shape=(size, size, 3), weights=None)
    mobilenet = keras.applications.MobileNetV2(input_shape=(size, size, 3),
                                               weights=None)
    igc_configs = {
        "as built": igcv3,
        "fused, grouped": fuse(igcv3),
        "fused, dense": fuse(igcv3, group_convolutions="dense")}
    mnv2_configs = {"as shipped": mobilenet, "fused": fuse(mobilenet)}
    rows = []
    for batch, goal in ((1, GOALS["cpu"][0]), (32, GOALS["cpu"][1])):
        def measure(model, jit, count, batch=batch):
            return inference_time(model, batch, size, jit, count)
        label = f"CPU inference, batch {batch}"
        count = repeats if batch == 1 else max(5, repeats // 3)
        igc = _measure(igc_configs, measure, ("graph", "XLA"), count, label,
                       xla_repeats=3)
        mnv2 = _measure(mnv2_configs, measure, ("graph", "XLA"), count, label,
                        xla_repeats=3)
        rows.append(_row(label, igc, mnv2, goal, shipped={
            k: v for k, v in mnv2.items() if k.startswith("as shipped")}))

    def measure_train(model, jit, count):
        return train_step_time(model, 32, size, jit, count)
    dense = with_group_conv_implementation(igcv3, "dense")
    igc = _measure({"native": igcv3,
                    "split": with_group_conv_implementation(igcv3, "split"),
                    "dense": dense,
                    "permutation-free, dense": fuse(dense, batchnorm=False)},
                   measure_train, ("graph", "XLA"), train_repeats,
                   "CPU training step, batch 32", rounds=1, xla_repeats=3)
    mnv2 = _measure({"as shipped": mobilenet}, measure_train,
                    ("graph", "XLA"), train_repeats,
                    "CPU training step, batch 32", rounds=1, xla_repeats=3)
    rows.append(_row("CPU training step, batch 32", igc, mnv2,
                     GOALS["cpu"][2]))
    return rows


def tflite_rows(size, runs):
    from igc_keras.data.classification import read_images
    from igc_keras.optimize.tflite_export import export_tflite
    from igc_keras.optimize.tflite_interpreter import tflite_latency as run
    calibration = read_images(tflite_latency.SAMPLES, (size, size), 100,
                              key="calibration")
    built = tflite_latency.models(size)
    models = {("igcv3", "fused, grouped"): fuse(built["igcv3_1.0"]),
              ("igcv3", "fused, dense"): fuse(built["igcv3_1.0"],
                                              group_convolutions="dense"),
              ("mnv2", "as shipped"): built["mobilenet_v2_1.0"]}
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for quantization in ("float32", "int8"):
            # fuse=False: the IGCV3 models are fused already, MobileNetV2
            # is converted as shipped
            paths = {key: export_tflite(
                model, os.path.join(directory, f"{'_'.join(key)}.tflite"),
                quantization, calibration, fuse=False)["path"]
                for key, model in models.items()}
            times = {}
            for _ in range(2):   # alternate, keep each file's best median
                for key, path in paths.items():
                    value = run(path, runs) / 1000
                    times[key] = min(times.get(key, value), value)
            label = f"TFLite {quantization}, batch 1"
            for key, value in times.items():
                print(f"  {label}: {', '.join(key)}: {1000 * value:.2f} ms",
                      flush=True)
            rows.append(_row(label,
                             {k[1]: v for k, v in times.items()
                              if k[0] == "igcv3"},
                             {k[1]: v for k, v in times.items()
                              if k[0] == "mnv2"}, GOALS["tflite"]))
    return rows


def gpu_rows(size, repeats):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        igcv3 = IGCV3(input_shape=(size, size, 3), weights=None)
        mobilenet = keras.applications.MobileNetV2(
            input_shape=(size, size, 3), weights=None)
        igc_configs = {"as built": igcv3, "fused, grouped": fuse(igcv3),
                       "fused, dense": fuse(igcv3,
                                            group_convolutions="dense")}
        rows = []
        for kind in ("inference", "training step"):
            def measure(model, jit, count, kind=kind):
                if kind == "inference":
                    return inference_time(model, 128, size, jit, count,
                                          "float16")
                return train_step_time(model, 128, size, jit, count,
                                       "float16")
            label = f"GPU {kind}, batch 128, mixed precision"
            configs = igc_configs if kind == "inference" else {
                "as built": igcv3,
                "dense": with_group_conv_implementation(igcv3, "dense"),
                "permutation-free": fuse(igcv3, batchnorm=False)}
            igc = _measure(configs, measure, ("graph", "XLA"), repeats, label)
            mnv2 = _measure({"as shipped": mobilenet}, measure,
                            ("graph", "XLA"), repeats, label)
            rows.append(_row(label, igc, mnv2, GOALS["gpu"]))
        return rows
    finally:
        keras.config.set_dtype_policy(previous)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--tflite-runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--skip", nargs="*", default=(),
                        choices=("cpu", "tflite", "gpu"))
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    rows = []
    if "gpu" not in args.skip and gpus:
        rows += gpu_rows(args.size, args.repeats)
    if "cpu" not in args.skip:
        with tf.device("/CPU:0"):
            rows += cpu_rows(args.size, args.repeats, args.train_repeats)
    if "tflite" not in args.skip:
        rows += tflite_rows(args.size, args.tflite_runs)
    print(f"\n{os.cpu_count()} CPU cores, GPU: "
          f"{gpus[0].name if gpus else 'none (GPU rows not measured)'}; input "
          f"{args.size}x{args.size}; TensorFlow {tf.__version__}, Keras "
          f"{keras.__version__}")
    print(f"| figure | ratio IGCV3 / MNv2 | goal | IGCV3 best | MNv2 best | "
          f"ratio vs MNv2 as shipped |\n|---|---:|---:|---|---|---:|")
    for row in rows:
        shipped = row.get("ratio_vs_shipped")
        print(f"| {row['figure']} | {row['ratio']:.2f} | <= {row['goal']} | "
              f"{row['igcv3_config']} ({row['igcv3_ms']:.1f} ms) | "
              f"{row['mobilenet_v2_config']} ({row['mobilenet_v2_ms']:.1f} ms)"
              f" | {'' if shipped is None else f'{shipped:.2f}'} |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)
    return rows


if __name__ == "__main__":
    main()
