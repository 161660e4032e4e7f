"""A group convolution of permuted channels, computed without the permutation.

In the IGC blocks a channel permutation with ``B`` groups interleaves the
``B`` branches of one group convolution before the next group convolution
(``G`` groups) reads them. Each of the ``G`` groups then takes the same number
of consecutive channels from every one of the ``B`` branches (the
complementary condition), so the second convolution is a *sum over branches*
of group convolutions on each branch's own, contiguous channels::

    conv_G(permute_B(y)) == sum_b conv_G(y[branch b], W_b)

:class:`BranchSumConv2D` computes the right-hand side as one grouped
convolution with ``B * G`` groups over ``y`` in branch order, producing
``B * filters`` channels viewed as ``(B, filters)`` and summed over ``B``
(a reshape and a reduction, no transpose). It has the mult-adds of the
original convolution; the data movement of the permutation is gone.
:func:`igc_keras.optimize.fuse` rewrites trained models into this form.
"""

import keras
from keras import ops

from igc_keras.layers.checks import check_divisible, check_positive_int
from igc_keras.layers.group_conv import GroupConv2D, block_diagonal


@keras.saving.register_keras_serializable(package="igc_keras")
class BranchSumConv2D(GroupConv2D):
    """Group convolution of ``branches`` interleaved branches, summed.

    Input ``(batch, H, W, C_in)`` with the ``branches`` branches as
    contiguous channel blocks (the layout *before* the permutation); output
    ``(batch, H', W', filters)``, equal to a ``groups``-group convolution of
    the permuted input.

    The kernel has shape ``(kh, kw, C_in / (branches * groups),
    branches * filters)``: grouped-convolution group ``q = b * groups + g``
    reads sub-block ``g`` of branch ``b`` and writes the partial sums of
    output group ``g`` for branch ``b``; the bias (``filters``) is added after
    the sum over branches, then the activation.

    Args:
        filters: output channels; divisible by ``groups``.
        kernel_size, strides, padding, dilation_rate, activation, use_bias,
            ...: as for ``keras.layers.Conv2D``.
        branches: ``B``, the branch count of the folded permutation.
        groups: ``G``, the group count of the original convolution.
        implementation: ``"native"``, ``"split"`` or ``"dense"`` (see
            :class:`~igc_keras.layers.GroupConv2D`; ``"dense"`` convolves
            with :meth:`merged_kernel`, the permutation folded into one dense
            kernel, and trains only the grouped weights).
    """

    def __init__(self, filters, kernel_size, branches=2, groups=1,
                 use_bias=True, activation=None, implementation=None,
                 bias_initializer="zeros", **kwargs):
        name = kwargs.get("name", "")
        check_positive_int(branches, "branches", name)
        check_positive_int(filters, "filters", name)
        check_divisible(filters, groups, "groups", name)
        if kwargs.get("data_format", "channels_last") not in (
                None, "channels_last"):
            raise ValueError(f"{name}: BranchSumConv2D computes channels-last"
                             f" tensors; got data_format="
                             f"{kwargs['data_format']!r}.")
        kwargs["data_format"] = "channels_last"
        self.branches = int(branches)
        self.summed_filters = int(filters)
        self.summed_use_bias = bool(use_bias)
        self.summed_activation = keras.activations.get(activation)
        self.summed_bias_initializer = keras.initializers.get(bias_initializer)
        super().__init__(self.branches * self.summed_filters, kernel_size,
                         groups=self.branches * groups, use_bias=False,
                         implementation=implementation, **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        self.bias = None
        if self.summed_use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.summed_filters,),
                initializer=self.summed_bias_initializer, trainable=True,
                dtype=self.dtype)

    def merged_kernel(self):
        """The dense ``(kh, kw, C_in, filters)`` kernel of the whole layer
        (block-diagonal kernel with its branch blocks summed: each input
        channel feeds one branch, so nothing overlaps)."""
        dense = block_diagonal(self.kernel, self.groups)
        kh, kw, cin = dense.shape[:3]
        return ops.sum(ops.reshape(dense, (kh, kw, cin, self.branches,
                                           self.summed_filters)), axis=3)

    def call(self, inputs):
        if self.implementation == "dense":
            # one convolution straight to ``filters``: no reshape, no sum
            outputs = ops.conv(inputs, self.merged_kernel(),
                               strides=list(self.strides),
                               padding=self.padding,
                               dilation_rate=self.dilation_rate,
                               data_format=self.data_format)
        else:
            outputs = self.convolution_op(inputs, self.kernel)
            shape = ops.shape(outputs)
            lead = [shape[i] for i in range(len(outputs.shape) - 1)]
            outputs = ops.reshape(outputs,
                                  lead + [self.branches, self.summed_filters])
            outputs = ops.sum(outputs, axis=-2)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        return self.summed_activation(outputs)

    # Conv2D stores a bias only when its own ``use_bias`` is set (it is not
    # here: the bias is summed-width); keep the generic Layer format instead.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def compute_output_shape(self, input_shape):
        shape = super().compute_output_shape(input_shape)
        return tuple(shape[:-1]) + (self.summed_filters,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.summed_filters,
            "groups": self.groups // self.branches,
            "branches": self.branches,
            "use_bias": self.summed_use_bias,
            "activation": keras.activations.serialize(self.summed_activation),
            "bias_initializer": keras.initializers.serialize(
                self.summed_bias_initializer),
        })
        return config
