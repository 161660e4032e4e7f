"""One inverted-residual block at a time in ONNX Runtime and OpenVINO: how
far each form of an IGCV3 block could go, beside a MobileNetV2 block.

The blocks are written directly as ONNX graphs (``onnx.helper``; random
weights), so forms the Keras -> tf2onnx route cannot produce are measured
too — above all a native grouped ``Conv`` (``group=2``), which Keras' TF
backend hides inside XLA calls:

* ``mobilenet_v2``: 1x1 C -> 6C, ReLU6, 3x3 depthwise, ReLU6, 1x1 6C -> C,
  residual add (one block of keras.applications MobileNetV2);
* ``igcv3 dense``: the same with block-diagonal 1x1 kernels (2x the 1x1
  mult-adds): what ``export`` writes today;
* ``igcv3 grouped + permutation``: grouped 1x1 convs and the channel
  permutation as Reshape / Transpose / Reshape;
* ``igcv3 grouped``: grouped 1x1 convs, no permutation — the cost floor of
  a fused-block form that folds the permutation into its indexing.

IGCV3-1.0 runs two such blocks where MobileNetV2 runs one (its
mult-adds: 1.04x), so ``2 x igcv3 / mobilenet_v2`` is the whole-network
ratio a form could reach. Usage::

    python3 benchmarks/onnx_block_profile.py [--batch 1] [--runs 200]
"""

import argparse
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: (spatial size, block width) of MobileNetV2's / IGCV3's stages at 224 px.
STAGES = [(56, 24), (28, 32), (14, 64), (14, 96), (7, 160)]


def _block(size, width, form, batch, groups=2, expansion=6):
    rng = np.random.default_rng(0)
    wide = width * expansion
    grouped = form.startswith("igcv3 grouped")
    dense_groups = 1 if not grouped else groups
    nodes, weights = [], []

    def weight(name, shape):
        weights.append(numpy_helper.from_array(
            rng.normal(0, 0.1, shape).astype("float32"), name))
        return name

    def conv(x, name, out, cin, kernel=1, group=1):
        nodes.append(helper.make_node(
            "Conv", [x, weight(name + "_w", (out, cin // group, kernel,
                                             kernel)),
                     weight(name + "_b", (out,))], [name], group=group,
            pads=[kernel // 2] * 4))
        return name

    def relu6(x, name):
        for bound, value in (("_lo", 0), ("_hi", 6)):
            weights.append(numpy_helper.from_array(
                np.array(value, "float32"), name + bound))
        nodes.append(helper.make_node("Clip", [x, name + "_lo", name + "_hi"],
                                      [name]))
        return name

    y = relu6(conv("x", "expand", wide, width, 1, dense_groups), "expand_relu")
    if form == "igcv3 grouped + permutation":
        shape_a = "perm_shape_a"
        weights.append(numpy_helper.from_array(np.array(
            [batch, groups, wide // groups, size * size], "int64"), shape_a))
        weights.append(numpy_helper.from_array(np.array(
            [batch, wide, size, size], "int64"), "perm_shape_b"))
        nodes.append(helper.make_node("Reshape", [y, shape_a], ["perm_a"]))
        nodes.append(helper.make_node("Transpose", ["perm_a"], ["perm_t"],
                                      perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", ["perm_t", "perm_shape_b"],
                                      ["perm"]))
        y = "perm"
    y = relu6(conv(y, "depthwise", wide, wide, 3, wide), "depthwise_relu")
    y = conv(y, "project", width, wide, 1, dense_groups)
    nodes.append(helper.make_node("Add", [y, "x"], ["y"]))
    graph = helper.make_graph(
        nodes, form, [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, [batch, width, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                       [batch, width, size, size])],
        weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("",
                                                                       17)])


def _time(call, x, runs):
    for _ in range(10):
        call(x)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - began)
    return 1000 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    import onnxruntime
    import openvino
    forms = ["mobilenet_v2", "igcv3 dense", "igcv3 grouped + permutation",
             "igcv3 grouped"]
    print(f"batch {args.batch}; ms per block; ratio = 2 x IGCV3 block / "
          f"MobileNetV2 block\n")
    print("| stage (size, width) | runtime | " + " | ".join(forms) + " |")
    print("|---|---|" + "---|" * len(forms))
    totals = {}
    for size, width in STAGES:
        x = np.random.default_rng(1).normal(
            size=(args.batch, width, size, size)).astype("float32")
        for runtime in ("onnxruntime", "openvino f32"):
            cells = []
            for form in forms:
                model = _block(size, width, form, args.batch)
                onnx.checker.check_model(model)
                if runtime == "onnxruntime":
                    session = onnxruntime.InferenceSession(
                        model.SerializeToString(),
                        providers=["CPUExecutionProvider"])
                    call = lambda v, s=session: s.run(None, {"x": v})  # noqa
                else:
                    core = openvino.Core()
                    call = core.compile_model(
                        core.read_model(model.SerializeToString(), b""),
                        "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                ms = _time(call, x, args.runs)
                totals[runtime, form] = totals.get((runtime, form), 0) + ms
                cells.append(f"{ms:.3f}")
            print(f"| {size}x{size}, {width} | {runtime} | "
                  + " | ".join(cells) + " |", flush=True)
    for runtime in ("onnxruntime", "openvino f32"):
        base = totals[runtime, "mobilenet_v2"]
        print(f"| sum | {runtime} | " + " | ".join(
            f"{totals[runtime, f]:.3f} (x{2 * totals[runtime, f] / base:.2f})"
            if f != "mobilenet_v2" else f"{base:.3f}" for f in forms) + " |")


if __name__ == "__main__":
    main()
