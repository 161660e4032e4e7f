import keras
import numpy as np
import pytest

from igc_keras.layers import (ChannelPermutation, GroupConv2D,
                              apply_igcv1_block, apply_igcv2_block,
                              apply_igcv3_block, group_conv_implementation,
                              permutation_indices,
                              with_group_conv_implementation)


def mxnet_permutation_nchw(x, groups):
    """The authors' graph: Reshape(0,-4,G,-1,-2) -> SwapAxis(1,2) -> Reshape(0,-3,-2)."""
    n, c, h, w = x.shape
    y = x.reshape(n, groups, c // groups, h, w)
    y = np.swapaxes(y, 1, 2)
    return y.reshape(n, c, h, w)


def test_permutation_matches_the_spec_example():
    assert permutation_indices(12, 3).tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10,
                                                   3, 7, 11]
    layer = ChannelPermutation(3)
    out = np.asarray(layer(np.arange(12, dtype="float32")[None, None, None]))
    assert out.reshape(-1).tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]


@pytest.mark.parametrize("channels,groups", [(32, 2), (96, 2), (200, 100),
                                             (512, 32), (12, 4)])
def test_permutation_equals_the_authors_reshape_swapaxis(channels, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3, channels)).astype("float32")
    ours = np.asarray(ChannelPermutation(groups)(x))
    theirs = mxnet_permutation_nchw(x.transpose(0, 3, 1, 2), groups)
    np.testing.assert_array_equal(ours, theirs.transpose(0, 2, 3, 1))


def test_permutation_inverse_round_trip_and_serialisation():
    x = np.random.default_rng(1).standard_normal((1, 4, 4, 24)).astype("float32")
    forward = ChannelPermutation(4)
    back = ChannelPermutation(4, inverse=True)
    np.testing.assert_array_equal(np.asarray(back(forward(x))), x)
    # inverse with G groups is the permutation with C / G groups
    np.testing.assert_array_equal(np.asarray(back(x)),
                                  np.asarray(ChannelPermutation(6)(x)))
    clone = ChannelPermutation.from_config(forward.get_config())
    np.testing.assert_array_equal(np.asarray(clone(x)), np.asarray(forward(x)))


def test_permutation_refuses_groups_that_do_not_divide():
    with pytest.raises(ValueError, match=r"`groups`=5 does not divide 12 .*"
                                         r"\[1, 2, 3, 4, 6, 12\]"):
        ChannelPermutation(5)(np.zeros((1, 2, 2, 12), "float32"))
    with pytest.raises(ValueError, match="positive integer"):
        ChannelPermutation(0)


@pytest.mark.parametrize("groups,kernel,strides", [(2, 1, 1), (4, 3, 2),
                                                   (8, 3, 1), (16, 1, 2)])
def test_native_split_and_dense_group_conv_agree_with_the_same_weights(
        groups, kernel, strides):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 9, 16)).astype("float32")
    native = GroupConv2D(32, kernel, groups=groups, strides=strides,
                         padding="same", implementation="native")
    y = native(x)
    for implementation in ("split", "dense"):
        other = GroupConv2D(32, kernel, groups=groups, strides=strides,
                            padding="same", implementation=implementation)
        other.build(x.shape)
        other.set_weights(native.get_weights())
        np.testing.assert_allclose(np.asarray(other(x)), np.asarray(y),
                                   atol=1e-5)
    # and both equal an explicit per-group reference in NumPy (kernel 1 case)
    if kernel == 1 and strides == 1:
        w = native.get_weights()[0][0, 0]  # (16/groups, 32)
        cin, cout = 16 // groups, 32 // groups
        ref = np.concatenate(
            [x[..., g * cin:(g + 1) * cin] @ w[:, g * cout:(g + 1) * cout]
             for g in range(groups)], axis=-1) + native.get_weights()[1]
        np.testing.assert_allclose(np.asarray(y), ref, atol=1e-4)


def test_dense_group_conv_trains_only_the_grouped_weights():
    """The dense implementation's gradient w.r.t. the grouped kernel is the
    native one's (the zero blocks are not variables)."""
    import tensorflow as tf
    x = tf.constant(np.random.default_rng(3).standard_normal(
        (2, 6, 6, 8)).astype("float32"))
    gradients = {}
    for implementation in ("native", "dense"):
        layer = GroupConv2D(12, 3, groups=4, padding="same",
                            implementation=implementation,
                            kernel_initializer=keras.initializers.GlorotNormal(
                                seed=1))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(x)))
        gradients[implementation] = tape.gradient(loss, layer.kernel)
        assert tuple(layer.kernel.shape) == (3, 3, 2, 12)
    np.testing.assert_allclose(gradients["dense"], gradients["native"],
                               rtol=1e-4, atol=1e-4)


def test_switching_a_whole_model_to_split_keeps_weights_and_outputs():
    inputs = keras.Input((16, 16, 8))
    x = apply_igcv1_block(inputs, 16, 8, 2, strides=2, name="b")
    model = keras.Model(inputs, x)
    x0 = np.random.default_rng(3).standard_normal((2, 16, 16, 8)).astype("float32")
    split = with_group_conv_implementation(model, "split")
    assert {l.implementation for l in split.layers
            if isinstance(l, GroupConv2D)} == {"split"}
    np.testing.assert_allclose(np.asarray(split(x0)), np.asarray(model(x0)),
                               atol=1e-5)
    with group_conv_implementation("split"):
        layer = GroupConv2D(4, 1, groups=2)
    assert layer.implementation == "split"
    with pytest.raises(ValueError, match="implementation"):
        GroupConv2D(4, 1, groups=2, implementation="fast")


def test_group_conv_errors_name_the_argument_and_allowed_values():
    with pytest.raises(ValueError, match=r"`groups`=3 does not divide the 8 "
                                         r"input channels.*\[1, 2\]"):
        GroupConv2D(6, 1, groups=3)(np.zeros((1, 4, 4, 8), "float32"))
    with pytest.raises(ValueError, match=r"`groups`=4 does not divide 6"):
        GroupConv2D(6, 1, groups=4)


def test_blocks_refuse_bad_designs_before_building_layers():
    inputs = keras.Input((8, 8, 48))
    with pytest.raises(ValueError, match=r"primary_groups`=5 does not divide 48"):
        apply_igcv1_block(inputs, 48, 5, 2)
    with pytest.raises(ValueError, match=r"secondary_groups=8 with "
                                         r"primary_groups=24 .* complementary "
                                         r"condition.*allowed secondary_groups: "
                                         r"\[1, 2\]"):
        apply_igcv1_block(inputs, 48, 24, 8)
    with pytest.raises(ValueError, match=r"branch_channels=\(4, 4\) .* breaks the "
                                         r"complementary condition"):
        apply_igcv2_block(inputs, 48, (4, 4))
    with pytest.raises(ValueError, match=r"branch_channels\[0\]=5 must divide"):
        apply_igcv2_block(inputs, 48, (5, 8))
    with pytest.raises(ValueError, match=r"expansion_groups=16 and "
                                         r"projection_groups=16 .* complementary"):
        apply_igcv3_block(inputs, 48, 2, expansion_groups=16,
                          projection_groups=16)
    with pytest.raises(ValueError, match=r"`projection_groups`=5"):
        apply_igcv3_block(inputs, 48, 6, projection_groups=5)
    with pytest.raises(ValueError, match="shortcut=True needs"):
        apply_igcv3_block(inputs, 24, 6, strides=2, shortcut=True)
