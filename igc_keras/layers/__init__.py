"""IGC layers: the channel permutation, group convolution (and its
permutation-folded inference form), and the three blocks."""

from igc_keras.layers.blocks import (apply_igcv1_block, apply_igcv2_block,
                                     apply_igcv3_block)
from igc_keras.layers.branch_sum import BranchSumConv2D
from igc_keras.layers.group_conv import (GroupConv2D,
                                         default_group_conv_implementation,
                                         group_conv_implementation,
                                         with_group_conv_implementation)
from igc_keras.layers.permutation import ChannelPermutation, permutation_indices

__all__ = [
    "BranchSumConv2D", "ChannelPermutation", "GroupConv2D", "apply_igcv1_block",
    "apply_igcv2_block", "apply_igcv3_block",
    "default_group_conv_implementation", "group_conv_implementation",
    "permutation_indices", "with_group_conv_implementation",
]
