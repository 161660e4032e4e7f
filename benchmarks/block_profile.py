"""Where an IGCV3 block's time goes on CPU: one op at a time.

Times (TF graph, ``tf.function``, median) each operation of one IGCV3-1.0
stage-2 block (28x28, 32 -> 192 -> 32 channels, batch 32 by default) on its
own input: the 1x1 expansion as a grouped and as a dense convolution, the
depthwise convolution (with its bias and ReLU6), the projection, a lone
ReLU6 pass over the expanded tensor, and the permutation. When every line
costs about the same whatever its mult-adds, the block is memory-bound: its
cost is the number of passes over the expanded tensor.

    python benchmarks/block_profile.py [--batch 32] [--size 28] [--width 32]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _median_ms(fn, argument, repeats):
    fn = tf.function(fn)
    for _ in range(3):
        fn(argument).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(argument).numpy()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    b, s, c = args.batch, args.size, args.width
    e = 6 * c

    def variable(*shape):
        return tf.Variable(0.1 * rng.standard_normal(shape).astype("float32"))
    x = tf.constant(rng.standard_normal((b, s, s, c)).astype("float32"))
    y = tf.constant(rng.standard_normal((b, s, s, e)).astype("float32"))
    expand_grouped, expand_dense = variable(1, 1, c // 2, e), variable(1, 1,
                                                                       c, e)
    depthwise, bias = variable(3, 3, e, 1), variable(e)
    project_grouped, project_dense = variable(1, 1, e // 2, c), variable(
        1, 1, e, c)
    rows = {
        "expansion 1x1, 2 groups": (lambda t: tf.nn.conv2d(
            t, expand_grouped, 1, "VALID"), x),
        "expansion 1x1, dense": (lambda t: tf.nn.conv2d(
            t, expand_dense, 1, "VALID"), x),
        "depthwise 3x3 + bias + ReLU6": (lambda t: tf.nn.relu6(
            tf.nn.depthwise_conv2d(t, depthwise, [1, 1, 1, 1], "SAME")
            + bias), y),
        "projection 1x1, 2 groups": (lambda t: tf.nn.conv2d(
            t, project_grouped, 1, "VALID"), y),
        "projection 1x1, dense": (lambda t: tf.nn.conv2d(
            t, project_dense, 1, "VALID"), y),
        "ReLU6 alone (one pass)": (lambda t: tf.nn.relu6(t + bias), y),
        "permutation (2 groups)": (lambda t: tf.reshape(tf.transpose(
            tf.reshape(t, [b, s, s, 2, e // 2]), [0, 1, 2, 4, 3]),
            [b, s, s, e]), y),
    }
    print(f"batch {b}, {s}x{s}, {c} -> {e} -> {c} channels "
          f"(expanded tensor {b * s * s * e * 4 / 1e6:.1f} MB)")
    for label, (fn, argument) in rows.items():
        print(f"{label:32s} {_median_ms(fn, argument, args.repeats):8.2f} ms")


if __name__ == "__main__":
    main()
