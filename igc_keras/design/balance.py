"""The balance condition of IGCV2 (seed 001, equations 7-14).

A block made of one spatial group convolution (``K_1`` channels per branch,
kernel of ``S`` taps) and ``L - 1`` group 1x1 convolutions (``K_l`` channels
per branch), satisfying the complementary condition ``prod(K_l) = C``, has

    Q = C * sum_{l>=2} K_l + C * S * K_1

parameters. ``Q`` is smallest under the balance condition
``S K_1 = K_2 = ... = K_L = (S C)^(1/L)``; with a channel-wise spatial
convolution (``K_1 = 1``, the IGCV2 block) it becomes
``K_2 = ... = K_L = C^(1/(L-1))`` and ``Q(L) = C (L-1) C^(1/(L-1)) + S C``
(the slides' ``Q(L)`` for ``S = 9``).
"""

import itertools
import math


def balanced_block_params(channels, num_convs, spatial=9):
    """``Q(L)`` for a channel-wise spatial conv plus ``L - 1`` balanced 1x1 convs.

    Args:
        channels: ``C``.
        num_convs: ``L`` (>= 2), the number of group convolutions in the block.
        spatial: ``S``, taps of the channel-wise kernel (9 for 3x3).
    """
    _check(channels=channels, num_convs=num_convs, spatial=spatial)
    return channels * (num_convs - 1) * channels ** (1.0 / (num_convs - 1)) + (
        spatial * channels)


def _check(channels, num_convs, spatial=9):
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"`channels` must be a positive integer; got "
                         f"channels={channels!r}.")
    if not isinstance(num_convs, int) or num_convs < 2:
        raise ValueError(f"`num_convs` (L) must be an integer >= 2; got "
                         f"num_convs={num_convs!r}.")
    if spatial < 1:
        raise ValueError(f"`spatial` must be >= 1; got spatial={spatial!r}.")


def _factorisations(n, parts):
    """All ordered tuples of ``parts`` integers >= 1 whose product is ``n``."""
    if parts == 1:
        yield (n,)
        return
    for d in range(1, n + 1):
        if n % d == 0:
            for rest in _factorisations(n // d, parts - 1):
                yield (d,) + rest


def balanced_branch_channels(channels, num_convs, spatial=9,
                             channel_wise=True):
    """The ``K_l`` of equation 11 for an IGCV2 block, as integers.

    Among the integer factorisations of ``C`` into the free ``K_l`` (all of
    them, or ``K_2..K_L`` when ``channel_wise`` fixes ``K_1 = 1``), returns the
    one with the fewest parameters ``Q`` (ties: the most even one).

    Args:
        channels: ``C``.
        num_convs: ``L``, the number of group convolutions, spatial one
            included.
        spatial: ``S``, taps of the spatial kernel.
        channel_wise: the spatial convolution is channel-wise (``K_1 = 1``).

    Returns:
        A tuple ``(K_1, ..., K_L)`` with ``prod == C``.
    """
    _check(channels=channels, num_convs=num_convs, spatial=spatial)
    free = num_convs - 1 if channel_wise else num_convs
    best = None
    for ks in _factorisations(channels, free):
        full = (1,) + ks if channel_wise else ks
        q = parameters(channels, full, spatial)
        key = (q, max(full[1:]) - min(full[1:]))
        if best is None or key < best[0]:
            best = (key, full)
    return best[1]


def parameters(channels, branch_channels, spatial=9):
    """``Q = C * sum_{l>=2} K_l + C * S * K_1`` (equation 7)."""
    k1, rest = branch_channels[0], branch_channels[1:]
    return channels * sum(rest) + channels * spatial * k1


def optimal_num_convs(channels, spatial=9, channel_wise=True, max_convs=None):
    """The ``L`` that minimises parameters for ``C`` channels.

    Returns:
        ``(L, (K_1, ..., K_L), Q)`` for the integer design with the fewest
        parameters; the continuous optimum of equation 14 is
        ``1 + ln(C)`` (channel-wise) or ``ln(S C)``.
    """
    if max_convs is None:
        max_convs = max(2, int(math.log2(channels)) + 1)
    best = None
    for num in range(2, max_convs + 1):
        ks = balanced_branch_channels(channels, num, spatial, channel_wise)
        q = parameters(channels, ks, spatial)
        if best is None or q < best[2]:
            best = (num, ks, q)
    return best


def continuous_optimal_num_convs(channels, spatial=9, channel_wise=True):
    """Equation 14: ``L = ln(S C)``; channel-wise case ``L = 1 + ln(C)``."""
    if channel_wise:
        return 1.0 + math.log(channels)
    return math.log(spatial * channels)
