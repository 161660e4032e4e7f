"""The inference form of a trained model: permutations and BatchNorm folded away.

``fuse(model)`` returns a new Keras model with the same outputs (to float
rounding) whose graph has no channel permutation where one can be folded and
no BatchNormalization after a convolution::

    fused = igc_keras.optimize.fuse(model)          # for inference / export
    fused.export("igcv3_savedmodel")                # or export_tflite(fused, ...)

Rewrites, in order, on the model's own functional graph (any builder's):

1. **Permutations move forward** past per-channel layers — BatchNormalization
   on the channel axis, ReLU / elementwise activations, DepthwiseConv2D with
   depth multiplier 1, zero padding, dropout — whose per-channel weights are
   permuted instead (``L(perm(y)) == perm(L'(y))``).
2. **Permutations fold into the convolution they reach**: a dense ``Conv2D``
   reads its input channels in the permuted order (kernel rows permuted:
   free); a group convolution becomes a
   :class:`~igc_keras.layers.BranchSumConv2D` (one grouped convolution over
   the branches, summed; same mult-adds, no transpose) computed the way
   ``group_convolutions`` says (``"native"`` / ``"split"``, the
   :class:`~igc_keras.layers.GroupConv2D` vocabulary; default each layer's
   own), or, with ``group_convolutions="dense"``, every group convolution
   first becomes a
   ``Conv2D`` with its block-diagonal kernel and the permutation folds into
   its rows. In IGCV3 every permutation goes: expansion -> depthwise -> BN
   -> ReLU6 -> projection.
   A permutation that reaches anything else (a residual ``Add``, a model
   output) stays where it is.
3. **BatchNormalization folds into the convolution before it** (its only
   consumer, no activation in between): ``kernel * gamma / sqrt(var + eps)``
   and the matching bias, with the moving statistics (inference mode).

With ``batchnorm=False`` only the permutations are removed: the result still
trains (BatchNorm in place), with weights in the permutation-free layout.

Layers keep their names (a folded BatchNorm's weights move into the
convolution of the same name as before); nested functional models (a
fine-tuned classifier's backbone) are fused in place.
"""

import numpy as np

import keras

from igc_keras.layers.branch_sum import BranchSumConv2D
from igc_keras.errors import ConfigError
from igc_keras.layers.group_conv import IMPLEMENTATIONS, block_diagonal
from igc_keras.layers.permutation import permutation_indices
from igc_keras.optimize.graph import read_graph, topological_order
from igc_keras.optimize.runtimes import tf_graph_form

#: Elementwise activations a permutation commutes with.
_ELEMENTWISE = {"relu", "relu6", "linear", "sigmoid", "tanh", "swish", "silu",
                "hard_sigmoid", "hard_swish", "hard_silu", "elu", "selu",
                "gelu", "leaky_relu", "mish", "softplus"}
_CONVOLUTIONS = ("Conv2D", "GroupConv2D", "DepthwiseConv2D", "BranchSumConv2D")


def _editable_graph(model):
    """``(nodes, input names, output names)`` of ``model``'s graph, each node
    also holding the ``weights`` the rewrites edit and the ``replacement``
    layer they may build."""
    graph = read_graph(model, "fuse")
    for node in graph.nodes.values():
        node.weights = node.layer.get_weights() if node.layer else []
        node.replacement = None
    return graph.nodes, graph.inputs, [name for name, _ in graph.outputs]


def _consumers(nodes, name):
    return [n for n in nodes.values() if name in n.inputs]


def _rewire(nodes, outputs, old, new):
    """Every reader of ``old`` reads ``new`` instead."""
    for node in nodes.values():
        node.inputs = [new if i == old else i for i in node.inputs]
    outputs[:] = [new if o == old else o for o in outputs]


def _per_channel(node):
    """Whether ``node`` acts on each channel alone (permutes through it)."""
    kind, config = node.kind, node.config
    if len(node.inputs) != 1:
        return False
    if kind == "BatchNormalization":
        axis = config.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        return axis in (-1, len(node.layer.input.shape) - 1)
    if kind in ("ReLU", "Dropout", "LeakyReLU", "ELU"):
        return True
    if kind in ("ZeroPadding2D", "SpatialDropout2D"):
        return _channels_last(node)
    if kind == "Activation":
        activation = config.get("activation")
        return isinstance(activation, str) and activation in _ELEMENTWISE
    if kind == "DepthwiseConv2D":
        return config.get("depth_multiplier", 1) == 1 and _channels_last(node)
    return False


def _channels_last(node):
    return node.config.get("data_format", "channels_last") == "channels_last"


def _permute_channels(node, inverse_index):
    """Permutes a per-channel layer's weights (channel axis: the last for
    vectors, the input axis of a depthwise kernel)."""
    permuted = []
    for weight in node.weights:
        axis = weight.ndim - 2 if node.kind == "DepthwiseConv2D" and (
            weight.ndim == 4) else weight.ndim - 1
        permuted.append(np.take(weight, inverse_index, axis=axis))
    node.weights = permuted


def _convolution_group_count(node):
    if node.kind in ("Conv2D", "GroupConv2D"):
        return int(node.config.get("groups", 1))
    return None


def _branch_sum(node, branches, inverse_index):
    """A group conv reading permuted channels -> BranchSumConv2D, or None
    when its groups do not take whole sub-blocks of every branch."""
    kernel, *rest = node.weights
    groups = _convolution_group_count(node)
    kh, kw, per_group, filters = kernel.shape
    channels = per_group * groups
    if per_group % branches:
        return None
    sub = per_group // branches           # channels of one branch per group
    out = filters // groups
    branch_width = channels // branches
    new_kernel = np.zeros((kh, kw, sub, branches * filters), kernel.dtype)
    for b in range(branches):
        for g in range(groups):
            source = b * branch_width + g * sub + np.arange(sub)
            positions = inverse_index[source]   # where the conv read them
            if np.any(positions // per_group != g):
                return None
            q = b * groups + g
            new_kernel[:, :, :, q * out:(q + 1) * out] = kernel[
                :, :, positions % per_group, g * out:(g + 1) * out]
    config = dict(node.config)
    carried = {key: config[key] for key in (
        "kernel_initializer", "bias_initializer", "kernel_regularizer",
        "bias_regularizer", "activity_regularizer", "kernel_constraint",
        "bias_constraint", "trainable", "data_format") if key in config}
    layer = BranchSumConv2D(
        filters, tuple(config["kernel_size"]), branches=branches,
        groups=groups, strides=tuple(config["strides"]),
        padding=config["padding"], dilation_rate=tuple(
            config["dilation_rate"]), use_bias=config["use_bias"],
        activation=config.get("activation"),
        implementation=config.get("implementation"), name=node.name,
        dtype=config.get("dtype"), **carried)
    node.replacement = layer
    node.weights = [new_kernel] + rest
    return layer


def _densify(node):
    """A group convolution -> ``Conv2D`` with the block-diagonal dense kernel
    (zeros between groups): the same outputs, ``groups`` times the
    mult-adds, and the plain convolution every runtime optimises best."""
    kernel, *rest = node.weights
    dense = keras.ops.convert_to_numpy(
        block_diagonal(kernel, node.config["groups"]))
    config = {k: v for k, v in node.config.items() if k != "implementation"}
    node.entry = {"module": "keras.layers", "class_name": "Conv2D",
                  "registered_name": None,
                  "config": dict(config, groups=1)}
    node.weights = [dense] + rest


def _fold_permutation(nodes, outputs, perm):
    """Moves ``perm`` forward and folds it into the next convolution.
    Returns whether the permutation left the graph."""
    groups, inverse = perm.config["groups"], perm.config.get("inverse", False)
    while True:
        readers = _consumers(nodes, perm.name)
        if len(readers) != 1 or perm.name in outputs:
            return False
        reader = readers[0]
        channels = perm.layer.input.shape[-1]
        index = permutation_indices(channels, groups, inverse=inverse)
        inverse_index = np.argsort(index)
        if _per_channel(reader):
            _permute_channels(reader, inverse_index)
            reader.inputs = list(perm.inputs)
            _rewire(nodes, outputs, reader.name, perm.name)
            perm.inputs = [reader.name]
            continue
        conv_groups = _convolution_group_count(reader)
        if conv_groups is None or len(reader.inputs) != 1 or (
                reader.replacement is not None) or not _channels_last(reader):
            return False
        if conv_groups == 1:
            kernel, *rest = reader.weights
            reader.weights = [kernel[:, :, inverse_index, :]] + rest
        elif inverse or _branch_sum(reader, groups, inverse_index) is None:
            return False
        reader.inputs = list(perm.inputs)
        del nodes[perm.name]
        return True


def _fold_batchnorm(nodes, outputs, bn):
    """Folds ``bn`` into the convolution producing its input, if it may."""
    if len(bn.inputs) != 1 or not _per_channel(bn):
        return False
    conv = nodes[bn.inputs[0]]
    if conv.kind not in _CONVOLUTIONS or conv.name in outputs or len(
            _consumers(nodes, conv.name)) != 1 or not _channels_last(conv):
        return False
    layer = conv.replacement or conv.layer
    activation = getattr(layer, "summed_activation", layer.activation)
    if keras.activations.serialize(activation) not in ("linear", None):
        return False
    config = bn.config
    values = dict(zip([w.path.split("/")[-1] for w in bn.layer.weights],
                      bn.weights))
    mean, variance = values["moving_mean"], values["moving_variance"]
    gamma = values.get("gamma", np.ones_like(mean))
    beta = values.get("beta", np.zeros_like(mean))
    scale = gamma / np.sqrt(variance + config["epsilon"])
    kernel, *rest = conv.weights
    bias = rest[0] if rest else np.zeros_like(mean)
    if conv.kind == "DepthwiseConv2D":   # output channel c * M + m
        kernel = kernel * scale.reshape(kernel.shape[2:])[None, None]
    else:
        kernel = kernel * np.tile(scale, kernel.shape[-1] // scale.shape[0])
    conv.weights = [kernel.astype(conv.weights[0].dtype),
                    (beta + (bias - mean) * scale).astype(mean.dtype)]
    if conv.replacement is not None:
        conv.replacement.summed_use_bias = True
    else:
        conv.entry = dict(conv.entry, config=dict(conv.config, use_bias=True))
    _rewire(nodes, outputs, bn.name, conv.name)
    del nodes[bn.name]
    return True


def _build_layer(node, options):
    if node.replacement is not None:
        return node.replacement
    if node.kind == "Functional":
        return fuse(node.layer, **options)
    return keras.layers.deserialize(node.entry)


#: ``fuse``'s forms of the group convolutions: ``GroupConv2D``'s
#: implementations (None keeps each layer's own).
GROUP_CONVOLUTIONS = IMPLEMENTATIONS


def check_group_convolutions(group_convolutions, where="fuse", auto=False):
    """Refuses a ``group_convolutions`` value outside None and
    :data:`GROUP_CONVOLUTIONS` (and ``"auto"`` where ``auto``), naming
    ``where``."""
    allowed = GROUP_CONVOLUTIONS + (("auto",) if auto else ())
    if group_convolutions is not None and group_convolutions not in allowed:
        hint = (" ('grouped' is now None, 'native' or 'split')"
                if group_convolutions == "grouped" else "")
        raise ConfigError(f"{where}: group_convolutions="
                          f"{group_convolutions!r}; allowed: None (each "
                          f"layer's own implementation), "
                          f"{', '.join(map(repr, allowed))}{hint}.")


def fuse(model, batchnorm=True, group_convolutions="auto"):
    """The inference form of ``model`` (see the module docstring).

    Args:
        model: a built Keras functional model (any builder's; nested
            functional models are fused too).
        batchnorm: also fold BatchNormalization into the convolutions (the
            result computes inference-mode BN); ``False`` removes only the
            permutations and leaves a trainable model.
        group_convolutions: how the result computes its group convolutions,
            in :class:`~igc_keras.layers.GroupConv2D`'s vocabulary.
            ``"auto"`` (default): the form TensorFlow runs fastest on this
            machine when BatchNorm is folded (``"dense"`` on a CPU-only
            machine, ``"native"`` with a GPU / TPU:
            :func:`~igc_keras.optimize.runtimes.tf_graph_form`), else None.
            None keeps each layer's own implementation; ``"native"`` /
            ``"split"`` set it on every group convolution (fewest mult-adds
            and weights; permutations become
            :class:`~igc_keras.layers.BranchSumConv2D`); ``"dense"`` turns
            each into a ``Conv2D`` with its block-diagonal kernel, into which
            the permutations fold for free (``groups`` x the mult-adds of
            those convolutions, but plain convolutions; speeds per runtime in
            ``benchmarks/README.md``). Inference only: training would fill
            the zero blocks.

    Returns:
        A new ``keras.Model`` with the same inputs, outputs (to float32
        rounding) and layer names, minus the folded layers.
    """
    check_group_convolutions(group_convolutions, auto=True)
    if group_convolutions == "auto":
        group_convolutions = tf_graph_form() if batchnorm else None
    nodes, inputs, outputs = _editable_graph(model)
    for node in nodes.values():
        if node.kind not in ("GroupConv2D", "BranchSumConv2D"):
            continue
        if group_convolutions == "dense" and node.kind == "GroupConv2D" and (
                node.config["groups"] > 1):
            _densify(node)
        elif group_convolutions in ("native", "split"):
            node.config["implementation"] = group_convolutions
    for name in list(nodes):
        if name in nodes and nodes[name].kind == "ChannelPermutation":
            _fold_permutation(nodes, outputs, nodes[name])
    if batchnorm:
        for name in list(nodes):
            if name in nodes and nodes[name].kind == "BatchNormalization":
                _fold_batchnorm(nodes, outputs, nodes[name])
    tensors, layers = {}, {}
    for name in topological_order(nodes, inputs):
        node = nodes[name]
        if node.kind == "InputLayer":
            config = node.config
            tensors[name] = keras.Input(batch_shape=tuple(
                config["batch_shape"]), dtype=config.get("dtype"), name=name)
            continue
        layer = _build_layer(node, dict(
            batchnorm=batchnorm, group_convolutions=group_convolutions))
        args = [tensors[i] for i in node.inputs]
        tensors[name] = layer(args if node.list_call else args[0],
                              **node.kwargs)
        layers[name] = layer
    fused = keras.Model([tensors[i] for i in inputs] if len(inputs) > 1 else
                        tensors[inputs[0]],
                        [tensors[o] for o in outputs] if len(outputs) > 1 else
                        tensors[outputs[0]], name=model.name)
    for name, layer in layers.items():
        node = nodes[name]
        if node.kind != "Functional" and node.weights:
            layer.set_weights(node.weights)
    return fused
