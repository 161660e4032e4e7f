"""Keras functional graphs read into nodes: the one reader of a model's
serialized connections, shared by :func:`~igc_keras.optimize.fuse` and the
tf_keras bridge.

:func:`read_graph` turns ``model.get_config()`` into a
:class:`FunctionalGraph`: one :class:`GraphNode` per layer (its serialized
entry, the producers of its inputs, its non-tensor call arguments and the
live layer), in the topological order Keras writes, plus the model's input
and output names. :func:`topological_order` sorts nodes again after a
rewrite has rewired them.

Only what both rebuilders can rebuild is read: functional models whose
layers are each called once, on one tensor or one list of tensors, with
tensor or list inputs and outputs; anything else is a ``ValueError`` naming
the layer and the reader.
"""

import dataclasses
from typing import List


class GraphNode:
    """One layer call of a functional graph.

    Attributes:
        entry: the serialized layer (``class_name``, ``config``, ...;
            without its inbound nodes).
        inputs: producer layer names, in call order.
        tensor_indices: which output of each producer is read (0 but for
            multi-output layers).
        list_call: the layer is called on a list of tensors.
        kwargs: the call's non-tensor keyword arguments.
        layer: the live layer (``None`` for an ``InputLayer``).
    """

    def __init__(self, entry, inputs, tensor_indices, list_call, kwargs,
                 layer):
        self.entry = entry
        self.inputs = inputs
        self.tensor_indices = tensor_indices
        self.list_call = list_call
        self.kwargs = kwargs
        self.layer = layer

    @property
    def name(self):
        return self.entry["config"]["name"]

    @property
    def kind(self):
        """The layer's class name (``"Functional"`` for a nested model)."""
        return self.entry["class_name"]

    @property
    def config(self):
        return self.entry["config"]


@dataclasses.dataclass
class FunctionalGraph:
    """``nodes`` (name -> :class:`GraphNode`, topological), the model's
    ``inputs`` (input layer names) and ``outputs`` (``(name, tensor
    index)`` pairs)."""

    nodes: dict
    inputs: List[str]
    outputs: List[tuple]


def _tensor_reference(value):
    """``(layer name, tensor index)`` of a serialized Keras tensor, else
    None."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        name, _, index = value["config"]["keras_history"]
        return name, index
    return None


def _holds_tensor(value):
    if _tensor_reference(value) is not None:
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    return False


def _call(model, entry, reader, multi_output):
    """The :class:`GraphNode` of one serialized layer entry."""
    name = entry["config"]["name"]
    inbound = entry.get("inbound_nodes", [])
    entry = {k: v for k, v in entry.items() if k != "inbound_nodes"}
    if entry["class_name"] == "InputLayer":
        return GraphNode(entry, [], [], False, {}, None)
    if len(inbound) != 1:
        raise ValueError(f"{reader}: layer {name!r} is called {len(inbound)} "
                         f"times (a shared layer); {reader} rebuilds graphs "
                         f"whose layers are each called once.")
    args, kwargs = inbound[0]["args"], inbound[0].get("kwargs", {})
    if len(args) != 1:
        raise ValueError(f"{reader}: layer {name!r} is called with "
                         f"{len(args)} positional arguments; expected one.")
    list_call = isinstance(args[0], list)
    references = [_tensor_reference(r) for r in (
        args[0] if list_call else [args[0]])]
    if None in references or _holds_tensor(kwargs):
        raise ValueError(f"{reader}: layer {name!r} has a call argument that "
                         f"is not a layer output; {reader} cannot rebuild it.")
    if not multi_output and any(index for _, index in references):
        producer = next(p for p, index in references if index)
        raise ValueError(f"{reader}: layer {name!r} reads an output other "
                         f"than the first of the multi-output layer "
                         f"{producer!r}; {reader} rebuilds graphs of "
                         f"single-output layers.")
    return GraphNode(entry, [p for p, _ in references],
                     [index for _, index in references], list_call, kwargs,
                     model.get_layer(name))


def _entries(model, config, key, reader):
    entries = config[key]
    if isinstance(entries, dict):
        raise ValueError(f"{reader}: model {model.name!r} has dict inputs or "
                         f"outputs; {reader} rebuilds models whose inputs and "
                         f"outputs are tensors or lists.")
    if entries and not isinstance(entries[0], list):
        entries = [entries]
    # [layer name, node index, tensor index]: node indices count a nested
    # model's own build node; with single-call layers the (layer, tensor
    # index) pair is unambiguous
    return [(entry[0], entry[2]) for entry in entries]


def read_graph(model, reader, multi_output=False):
    """The :class:`FunctionalGraph` of a functional ``model``.

    Args:
        model: a built Keras functional model.
        reader: who reads it, named in the errors (``"fuse"``).
        multi_output: accept layers reading a second (third, ...) output of
            a multi-output layer.
    """
    config = model.get_config() if hasattr(model, "get_config") else None
    if not isinstance(config, dict) or "input_layers" not in config:
        raise ValueError(f"{reader}: model {model.name!r} "
                         f"({type(model).__name__}) is not a functional "
                         f"model; {reader} rebuilds functional graphs.")
    nodes = {}
    for entry in config["layers"]:
        node = _call(model, entry, reader, multi_output)
        nodes[node.name] = node
    outputs = _entries(model, config, "output_layers", reader)
    if not multi_output and any(index for _, index in outputs):
        raise ValueError(f"{reader}: model {model.name!r} outputs a second "
                         f"output of a multi-output layer; {reader} rebuilds "
                         f"graphs of single-output layers.")
    return FunctionalGraph(nodes, [name for name, _ in _entries(
        model, config, "input_layers", reader)], outputs)


def topological_order(nodes, inputs):
    """Node names with every producer before its readers (``inputs`` first),
    after a rewrite has rewired ``nodes``."""
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for parent in nodes[name].inputs:
            visit(parent)
        order.append(name)
    for name in inputs:
        visit(name)
    for name in list(nodes):
        visit(name)
    return order
