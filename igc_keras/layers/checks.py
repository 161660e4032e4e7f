"""Argument checks shared by the layers and blocks: clear errors, early."""

import numpy as np


def check_positive_int(value, argument, where=""):
    """``value`` must be an integer >= 1; the error names ``argument``."""
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
            value < 1):
        raise ValueError(f"{prefix}`{argument}` must be a positive integer; got "
                         f"{argument}={value!r}.")


def check_divisible(channels, groups, argument, where=""):
    """``groups`` must divide ``channels``; the error lists the allowed values."""
    check_positive_int(groups, argument, where)
    if channels % groups:
        prefix = f"{where}: " if where else ""
        divisors = [d for d in range(1, channels + 1) if channels % d == 0]
        raise ValueError(
            f"{prefix}`{argument}`={groups} does not divide {channels} channels; "
            f"allowed values: {divisors}.")
