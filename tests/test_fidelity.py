"""The ImageNet IGCV3 and IGCV1 models against the authors' released graphs."""

import os

import pytest

from conftest import REFERENCE
from graph_walk import keras_ops, mxnet_ops
from igc_keras.applications import IGCV1, IGCV3

CASES = {
    "igcv3-symbol.json": lambda: IGCV3(),
    "igcv1-IGC-L100M2-symbol.json": lambda: IGCV1(),
    "igcv1-IGC-L16M16-symbol.json": lambda: IGCV1(variant="L16M16"),
    "igcv1-IGC-L4M32-symbol.json": lambda: IGCV1(variant="L4M32"),
}


def _diff(reference, ours):
    for i, ((a, name_a), (b, name_b)) in enumerate(zip(reference, ours)):
        if a != b:
            return f"op {i}: authors {name_a} {a} vs ours {name_b} {b}"
    if len(reference) != len(ours):
        return f"{len(reference)} ops in the authors' graph vs {len(ours)}"
    return None


@pytest.mark.parametrize("graph", sorted(CASES))
def test_layer_for_layer_against_the_authors_graph(graph):
    reference = mxnet_ops(os.path.join(REFERENCE, graph))
    ours = keras_ops(CASES[graph]())
    assert len(reference) > 100
    assert _diff(reference, ours) is None


def test_the_walk_sees_a_one_op_difference():
    reference = mxnet_ops(os.path.join(REFERENCE, "igcv3-symbol.json"))
    dense_expansion = keras_ops(IGCV3(expansion_groups=1))
    assert _diff(reference, dense_expansion).startswith("op ")
