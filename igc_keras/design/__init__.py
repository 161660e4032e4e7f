"""Design tools: counters, the complementary-condition checker, the balance designer."""

from igc_keras.design.balance import (balanced_block_params,
                                      balanced_branch_channels,
                                      continuous_optimal_num_convs,
                                      optimal_num_convs, parameters)
from igc_keras.design.complementary import (ComplementaryReport,
                                            analyse_design, check_block)
from igc_keras.design.counting import (count_mult_adds, count_params,
                                       layer_mult_adds)

__all__ = [
    "ComplementaryReport", "analyse_design", "balanced_branch_channels",
    "check_block", "continuous_optimal_num_convs", "count_mult_adds",
    "count_params", "layer_mult_adds", "optimal_num_convs", "parameters",
    "balanced_block_params",
]
