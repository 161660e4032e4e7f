"""IGCV3-1.0 vs keras.applications MobileNetV2-1.0: latency and training-step ratios.

Both models are measured in the same run, in the same process, on the same
inputs: inference at batch 1 and 32 (``tf.function``, with and without XLA)
and one SGD training step at batch 32. Each model's figure is its best
configuration; the printed ratio is IGCV3 / MobileNetV2 (< 1 means IGCV3 is
faster). Only ratios are meant to be quoted: absolute times depend on the
machine.

    python benchmarks/speed.py [--repeats 20] [--size 224]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from igc_keras.applications import IGCV3  # noqa: E402


def _median_time(fn, args, repeats, warmup=3):
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        tf.nest.map_structure(lambda t: t.numpy(), out)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def inference_time(model, batch, size, jit, repeats):
    x = tf.constant(np.random.default_rng(0).uniform(
        -1, 1, (batch, size, size, 3)).astype("float32"))
    fn = tf.function(lambda t: model(t, training=False), jit_compile=jit)
    return _median_time(fn, (x,), repeats)


def train_step_time(model, batch, size, jit, repeats):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 1000, batch))
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit)
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return _median_time(step, (x, y), repeats, warmup=2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--train-repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    models = {"IGCV3-1.0": IGCV3(weights=None),
              "MobileNetV2-1.0": keras.applications.MobileNetV2(weights=None)}
    rows = []
    for label, batch, kind in (("inference, batch 1", 1, "infer"),
                               ("inference, batch 32", 32, "infer"),
                               ("training step, batch 32", 32, "train")):
        best = {}
        for name, model in models.items():
            times = {}
            for jit in (False, True):
                if kind == "infer":
                    t = inference_time(model, batch, args.size, jit, args.repeats)
                else:
                    t = train_step_time(model, batch, args.size, jit,
                                        args.train_repeats)
                times["XLA" if jit else "graph"] = t
            mode = min(times, key=times.get)
            best[name] = (times[mode], mode, times)
        igc, mnv2 = best["IGCV3-1.0"], best["MobileNetV2-1.0"]
        rows.append((label, igc, mnv2, igc[0] / mnv2[0]))
    print(f"CPU: {os.cpu_count()} cores, input {args.size}x{args.size}, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}")
    print(f"{'figure':26s} {'IGCV3 best':>14s} {'MNV2 best':>14s} "
          f"{'ratio IGCV3/MNV2':>17s}   (graph / XLA ratios)")
    for label, igc, mnv2, ratio in rows:
        per_mode = " / ".join(f"{igc[2][m] / mnv2[2][m]:.2f}"
                              for m in ("graph", "XLA"))
        print(f"{label:26s} {igc[1]:>14s} {mnv2[1]:>14s} {ratio:17.2f}   "
              f"({per_mode})")


if __name__ == "__main__":
    main()
