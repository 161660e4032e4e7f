"""The complementary and balance conditions, on real blocks and designs."""

import itertools
import math

import keras
import numpy as np
import pytest

from igc_keras.design import (analyse_design, balanced_branch_channels,
                              check_block, continuous_optimal_num_convs,
                              count_params, optimal_num_convs, parameters,
                              balanced_block_params)
from igc_keras.layers import (apply_igcv1_block, apply_igcv2_block,
                              apply_igcv3_block)
from igc_keras.layers.blocks import igcv1_paths_per_pair, igcv2_design


def _block_model(apply, cin, *args, **kwargs):
    inputs = keras.Input((None, None, cin))
    outputs = apply(inputs, *args, name="blk", **kwargs)
    return keras.Model(inputs, outputs)


def _randomise(model):
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal(w.shape).astype("float32")
                       for w in model.get_weights()])


def _measured_kernel(model, last_linear, cin, taps=9):
    """Composed kernel measured by running the real layers on impulses."""
    sub = keras.Model(model.inputs[0], model.get_layer(last_linear).output)
    impulses = np.zeros((cin, 3, 3, cin), "float32")
    impulses[np.arange(cin), 1, 1, np.arange(cin)] = 1.0
    out = np.asarray(sub(impulses))  # (cin, 3, 3, cout): out[i, p, q, o]
    # output position (p, q) sees the centre impulse through tap (2-p, 2-q)
    return out[:, ::-1, ::-1, :].reshape(cin, taps, -1).transpose(1, 2, 0)


@pytest.mark.parametrize("L,M", [(4, 2), (3, 4), (8, 1), (2, 8)])
def test_igcv1_block_is_strictly_complementary(L, M):
    model = _block_model(apply_igcv1_block, L * M, L * M, L, M)
    _randomise(model)
    report = check_block(model, "blk_")
    assert report.dense and report.strict, report.summary()
    assert report.numerically_dense
    # the checker's composed kernel is what the layers compute
    measured = _measured_kernel(model, "blk_secondary_shuffle", L * M)
    np.testing.assert_allclose(report.composed_kernel, measured, atol=1e-4)


def test_igcv1_without_permutation_is_not_dense():
    # same two group convs, no interleaving: each output sees one branch only
    report = analyse_design([("conv", 8, 8, 4), ("conv", 8, 8, 2)])
    assert not report.dense and report.density == pytest.approx(0.5)
    interleaved = analyse_design([("conv", 8, 8, 4), ("perm", 8, 4),
                                  ("conv", 8, 8, 2), ("perm", 8, 2)])
    assert interleaved.strict


@pytest.mark.parametrize("C,ks", [(64, (8, 8)), (64, (4, 4, 4)),
                                  (24, (2, 3, 4)), (100, (10, 10))])
def test_igcv2_block_strict_when_product_of_k_is_c(C, ks):
    model = _block_model(apply_igcv2_block, C, C, ks)
    _randomise(model)
    report = check_block(model, "blk_")
    assert report.strict and report.numerically_dense, report.summary()
    measured = _measured_kernel(model, f"blk_group{len(ks)}", C)
    np.testing.assert_allclose(report.composed_kernel, measured, rtol=1e-4,
                               atol=1e-3)


def test_igcv3_block_loose_condition_with_super_channels():
    model = _block_model(apply_igcv3_block, 16, 16, 6)
    _randomise(model)
    report = check_block(model, "blk_")
    # 96 expanded channels, 2 x 2 groups: super-channels of 24 paths per pair
    assert report.dense and report.uniform and not report.strict
    assert report.min_paths == 96 // 4
    assert report.numerically_dense


def test_breaking_design_reported_on_the_checker_and_refused_by_builder():
    # IGCV2 with K product 16 < 64 channels: sparse composed kernel
    report = analyse_design(igcv2_design(64, 64, (4, 4)))
    assert not report.dense and report.density == pytest.approx(16 / 64)
    with pytest.raises(ValueError, match="complementary condition"):
        _block_model(apply_igcv2_block, 64, 64, (4, 4))


def test_igcv1_closed_form_agrees_with_path_counting():
    for filters, L, M in itertools.product((12, 16, 24), (1, 2, 3, 4, 6),
                                           (1, 2, 3, 4, 6, 8)):
        if filters % L or filters % M:
            continue
        report = analyse_design([("conv", filters, filters, L),
                                 ("perm", filters, L),
                                 ("conv", filters, filters, M),
                                 ("perm", filters, M)])
        expected = igcv1_paths_per_pair(filters, L, M)
        if expected is None:
            assert not (report.dense and report.uniform)
        else:
            assert report.dense and report.uniform
            assert report.min_paths == expected


# ------------------------------------------------------------------ balance
def test_balance_condition_equation_11():
    assert balanced_branch_channels(64, 3) == (1, 8, 8)
    assert balanced_branch_channels(64, 4) == (1, 4, 4, 4)
    assert balanced_branch_channels(512, 4) == (1, 8, 8, 8)
    # grouped spatial conv (S = 9): S K_1 = K_2 = K_3 = (S C)^(1/3) = 18
    assert balanced_branch_channels(648, 3, spatial=9,
                                    channel_wise=False) == (2, 18, 18)


def test_balanced_block_params_counts_the_parameters_of_a_built_block():
    for C, L in ((64, 3), (64, 4), (64, 7), (256, 3)):
        ks = balanced_branch_channels(C, L)
        model = _block_model(apply_igcv2_block, C, C, ks[1:])
        assert count_params(model, batchnorm=False) == parameters(C, ks)
        if round(C ** (1 / (L - 1))) ** (L - 1) == C:
            assert parameters(C, ks) == pytest.approx(
                balanced_block_params(C, L))


def test_slides_claims_about_q_of_l():
    # "Q(L = 3) < Q(L = 2) if C > 4"
    for C in (5, 8, 64, 1000):
        assert balanced_block_params(C, 3) < balanced_block_params(C, 2)
    assert balanced_block_params(4, 3) == pytest.approx(
        balanced_block_params(4, 2))
    # "L = log(C) + 1 so that Q is minimum": argmin of the continuous Q(L)
    for C in (64, 256, 1024, 5000):
        best = min(range(2, 20), key=lambda L: balanced_block_params(C, L))
        assert best in (math.floor(continuous_optimal_num_convs(C)),
                        math.ceil(continuous_optimal_num_convs(C)))
    # the integer designer finds the cheapest exact factorisation over all L
    for C in (64, 96, 256):
        best_l, ks, q = optimal_num_convs(C)
        assert math.prod(ks) == C and parameters(C, ks) == q
        for L in range(2, 9):
            assert q <= parameters(C, balanced_branch_channels(C, L))
    with pytest.raises(ValueError, match="num_convs"):
        balanced_block_params(64, 1)
