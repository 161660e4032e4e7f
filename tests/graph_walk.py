"""Canonical op sequences of an MXNet symbol graph and of a Keras model.

Both graphs are reduced to the same vocabulary of ops:
``("conv", kernel, stride, pad, filters, groups)``, ``("bn", eps)``,
``("relu",)``, ``("relu6",)``, ``("perm", groups)``, ``("add",)``,
``("maxpool", kernel, stride, pad)``, ``("global_avgpool",)``, ``("fc", units)``,
``("softmax",)``; layout-only nodes (MXNet Flatten / the SwapAxis+Reshape tail
of a permutation, Keras ZeroPadding2D folded into the next op's pad) are
collapsed. Each side is then serialised by the same depth-first post-order walk
from the output, visiting inputs in their listed order, so two graphs give the
same sequence exactly when they compute the same DAG of ops.
"""

import ast
import json

import keras

from igc_keras.layers import ChannelPermutation
from igc_keras.optimize.graph import read_graph


def _tuple(text):
    value = ast.literal_eval(text)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def serialise(nodes, output):
    """``nodes``: name -> (op or None for pass-through, [input names])."""
    order, seen = [], set()

    def resolve(name):
        while nodes[name][0] is None:
            inputs = nodes[name][1]
            if not inputs:
                return None
            name = inputs[0]
        return name

    stack = [(resolve(output), False)]
    while stack:
        name, done = stack.pop()
        if name is None:
            continue
        if done:
            order.append((nodes[name][0], name))
            continue
        if name in seen:
            continue
        seen.add(name)
        stack.append((name, True))
        for parent in reversed(nodes[name][1]):
            parent = resolve(parent)
            if parent is not None and parent not in seen:
                stack.append((parent, False))
    return order


def mxnet_ops(path, feature_size=7):
    graph = json.load(open(path))
    raw = graph["nodes"]
    nodes = {}
    for node in raw:
        op = node["op"]
        attrs = node.get("attrs", node.get("attr", node.get("param", {})))
        name = node["name"]
        inputs = [raw[i[0]]["name"] for i in node["inputs"]
                  if raw[i[0]]["op"] != "null"]
        if op == "null":
            continue
        if op in ("Flatten", "SwapAxis") or (
                op == "Reshape" and _tuple(attrs["shape"]) == (0, -3, -2)):
            canon = None
        elif op == "Convolution":
            canon = ("conv", _tuple(attrs["kernel"]), _tuple(attrs["stride"]),
                     _tuple(attrs["pad"]), int(attrs["num_filter"]),
                     int(attrs.get("num_group", 1)))
        elif op == "BatchNorm":
            canon = ("bn", float(attrs.get("eps", 1e-3)))
        elif op == "clip":
            assert float(attrs["a_min"]) == 0 and float(attrs["a_max"]) == 6
            canon = ("relu6",)
        elif op == "Activation":
            canon = (attrs["act_type"],)
        elif op == "Reshape":
            shape = _tuple(attrs["shape"])
            assert shape[:2] == (0, -4) and shape[3:] == (-1, -2), shape
            canon = ("perm", int(shape[2]))
        elif op == "Reorder":
            canon = ("perm", int(attrs["branch_factor"]))
        elif op in ("elemwise_add", "_Plus", "_plus"):
            canon = ("add",)
        elif op == "Pooling":
            if attrs["pool_type"] == "avg" and (
                    attrs.get("global_pool") == "True" or
                    _tuple(attrs["kernel"]) == (feature_size, feature_size)):
                canon = ("global_avgpool",)
            else:
                canon = (attrs["pool_type"] + "pool", _tuple(attrs["kernel"]),
                         _tuple(attrs["stride"]), _tuple(attrs["pad"]))
        elif op == "FullyConnected":
            canon = ("fc", int(attrs["num_hidden"]))
        elif op == "SoftmaxOutput":
            canon = ("softmax",)
        else:
            raise AssertionError(f"unhandled MXNet op {op} ({name})")
        nodes[name] = (canon, inputs)
    output = raw[graph["heads"][0][0]]["name"]
    return serialise(nodes, output)


def keras_ops(model):
    graph = read_graph(model, "keras_ops")
    inbound = {name: node.inputs for name, node in graph.nodes.items()}
    nodes = {}
    for layer in model.layers:
        name = layer.name
        inputs = inbound[name]
        canon = None
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.ZeroPadding2D)):
            canon = None
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                                keras.layers.MaxPooling2D)):
            pad = (0, 0)
            if inputs and isinstance(model.get_layer(inputs[0]),
                                     keras.layers.ZeroPadding2D):
                (top, bottom), (left, right) = model.get_layer(inputs[0]).padding
                assert top == bottom and left == right, "asymmetric padding"
                pad = (top, left)
            if isinstance(layer, keras.layers.MaxPooling2D):
                assert layer.padding == "valid"
                canon = ("maxpool", tuple(layer.pool_size), tuple(layer.strides), pad)
            else:
                kernel = tuple(layer.kernel_size)
                if layer.padding == "same":
                    assert pad == (0, 0) and all(s == 1 for s in layer.strides)
                    pad = (kernel[0] // 2, kernel[1] // 2)
                if isinstance(layer, keras.layers.DepthwiseConv2D):
                    channels = layer.kernel.shape[2]
                    filters, groups = channels * layer.depth_multiplier, channels
                else:
                    filters, groups = layer.filters, layer.groups
                canon = ("conv", kernel, tuple(layer.strides), pad, filters, groups)
        elif isinstance(layer, keras.layers.BatchNormalization):
            canon = ("bn", float(layer.epsilon))
        elif isinstance(layer, keras.layers.ReLU):
            canon = ("relu6",) if layer.max_value == 6 else ("relu",)
        elif isinstance(layer, keras.layers.Activation):
            canon = (keras.activations.serialize(layer.activation),)
        elif isinstance(layer, ChannelPermutation):
            assert not layer.inverse
            canon = ("perm", layer.groups)
        elif isinstance(layer, keras.layers.Add):
            canon = ("add",)
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            canon = ("global_avgpool",)
        elif isinstance(layer, keras.layers.Dense):
            canon = ("fc", layer.units)
            if keras.activations.serialize(layer.activation) == "softmax":
                nodes[name + "/softmax"] = (("softmax",), [name])
        else:
            raise AssertionError(f"unhandled Keras layer {type(layer).__name__}")
        nodes[name] = (canon, inputs)
    output = model.layers[-1].name
    if output + "/softmax" in nodes:
        output += "/softmax"
    return serialise(nodes, output)
