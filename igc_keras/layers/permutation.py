"""The channel permutation of the IGC papers (ShuffleNet's channel shuffle).

With ``C`` channels viewed as a ``(G, C / G)`` matrix, the permutation transposes
it and flattens it again::

    out[..., j * G + g] = in[..., g * (C / G) + j]

For ``G = 3, C = 12`` output channel ``k`` reads input channel
``[0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11][k]``. This is exactly the
``Reshape(0, -4, G, -1, -2) -> SwapAxis(1, 2) -> Reshape(0, -3, -2)`` chain of
the authors' IGCV3 graph and the custom ``Reorder(branch_factor=G)`` op of their
IGCV1 graphs. Its inverse is the same permutation with ``C / G`` groups.
"""

import keras
import numpy as np
from keras import ops

from igc_keras.layers.checks import check_divisible, check_positive_int


def permutation_indices(channels, groups, inverse=False):
    """Index array ``idx`` such that ``out = in[..., idx]`` is the permutation.

    Args:
        channels: number of channels ``C``.
        groups: ``G``; must divide ``C``.
        inverse: return the inverse permutation instead.

    Returns:
        A NumPy int array of shape ``(C,)``.
    """
    _check_groups(channels, groups)
    idx = np.arange(channels).reshape(groups, channels // groups).T.reshape(-1)
    if inverse:
        idx = np.argsort(idx)
    return idx


def _check_groups(channels, groups):
    check_divisible(channels, groups, "groups")


@keras.saving.register_keras_serializable(package="igc_keras")
class ChannelPermutation(keras.layers.Layer):
    """Interleaves channels across ``groups`` branches (see module docstring).

    Input shape: ``(batch, height, width, C)`` (channels last; any rank >= 2
    works, the last axis is permuted). Output shape: the same.

    Args:
        groups: ``G``, the number of branches of the group convolution whose
            output is being interleaved; must divide ``C``.
        inverse: apply the inverse permutation (equivalent to ``C / G``
            groups), which puts interleaved channels back in branch order.
    """

    def __init__(self, groups, inverse=False, **kwargs):
        super().__init__(**kwargs)
        check_positive_int(groups, "groups", kwargs.get("name", ""))
        self.groups = int(groups)
        self.inverse = bool(inverse)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"{self.name}: the channel axis must be known; got input_shape="
                f"{input_shape}."
            )
        _check_groups(channels, self.groups)
        self.channels = channels

    def call(self, inputs):
        c, g = self.channels, self.groups
        if g == 1 or g == c:
            return inputs
        rows, cols = (c // g, g) if self.inverse else (g, c // g)
        shape = ops.shape(inputs)
        lead = [shape[i] for i in range(len(inputs.shape) - 1)]
        x = ops.reshape(inputs, lead + [rows, cols])
        rank = len(lead)
        x = ops.transpose(x, list(range(rank)) + [rank + 1, rank])
        return ops.reshape(x, lead + [c])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups, "inverse": self.inverse})
        return config
