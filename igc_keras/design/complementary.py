"""The complementary condition, checked on a design or on a built block.

An IGC block is a product of structured-sparse matrices (group convolutions)
and permutations: ``W = P_L W_L ... P_1 W_1``. Per pair (output channel ``o``,
input channel ``i``) the number of *paths* is the ``(o, i)`` entry of the
product of the 0/1 connectivity matrices. The composed kernel is *dense* when
every pair has at least one path; the *strict* complementary condition (IGCV1,
IGCV2) holds when every pair has exactly one; the *loose* condition (IGCV3,
super-channels) when every pair has the same number of paths, ``k > 1``.

Two entry points:

* :func:`analyse_design` takes a list of linear steps (before any layer
  exists) and is what the block builders use to refuse broken designs.
* :func:`check_block` reads the linear layers of a built Keras block (their
  real kernels, and the permutation computed by running the real permutation
  layer), composes them numerically and reports density and path counts.
"""

import dataclasses
import functools

import keras
import numpy as np

from igc_keras.walk import walk_layers


@dataclasses.dataclass(frozen=True)
class ComplementaryReport:
    """What the composition of a block's linear parts looks like.

    Attributes:
        in_channels, out_channels: block input / output widths.
        paths: ``(out_channels, in_channels)`` int array of path counts.
        dense: every input/output pair is joined by at least one path.
        strict: every pair is joined by exactly one path.
        uniform: every pair is joined by the same number of paths.
        min_paths, max_paths: extremes of ``paths``.
        density: fraction of pairs joined by at least one path.
        composed_kernel: for :func:`check_block`, the numeric composed kernel of
            shape ``(taps, out_channels, in_channels)``; ``None`` for designs.
        numerically_dense: for :func:`check_block`, whether every pair has a
            nonzero entry in ``composed_kernel`` for some spatial tap.
    """

    in_channels: int
    out_channels: int
    paths: np.ndarray
    composed_kernel: np.ndarray = None

    @property
    def min_paths(self):
        return int(self.paths.min())

    @property
    def max_paths(self):
        return int(self.paths.max())

    @property
    def dense(self):
        return self.min_paths > 0

    @property
    def strict(self):
        return self.min_paths == 1 and self.max_paths == 1

    @property
    def uniform(self):
        return self.min_paths == self.max_paths

    @property
    def density(self):
        return float((self.paths > 0).mean())

    @property
    def numerically_dense(self):
        if self.composed_kernel is None:
            return None
        return bool((np.abs(self.composed_kernel).max(axis=0) > 0).all())

    def summary(self):
        kind = ("strict" if self.strict else
                "loose (uniform, %d paths per pair)" % self.min_paths
                if self.uniform and self.dense else
                "dense, non-uniform" if self.dense else "NOT dense")
        return (f"{self.in_channels} -> {self.out_channels} channels: "
                f"{kind}; paths per pair {self.min_paths}..{self.max_paths}; "
                f"density {self.density:.3f}")


# ---------------------------------------------------------------- designs
def group_connectivity(in_channels, out_channels, groups):
    """0/1 matrix ``(out, in)`` of a group convolution with ``groups`` branches."""
    gi = np.arange(in_channels) // (in_channels // groups)
    go = np.arange(out_channels) // (out_channels // groups)
    return (go[:, None] == gi[None, :]).astype(np.float64)


def permutation_matrix(indices):
    """Matrix ``P`` with ``(P @ x)[k] = x[indices[k]]``."""
    c = len(indices)
    p = np.zeros((c, c))
    p[np.arange(c), indices] = 1.0
    return p


@functools.lru_cache(maxsize=256)
def _analyse(steps):
    from igc_keras.layers.permutation import permutation_indices

    paths = None
    channels = None
    for step in steps:
        kind = step[0]
        if kind == "conv":
            _, cin, cout, groups = step
            if channels is not None and cin != channels:
                raise ValueError(f"step {step} expects {cin} channels, "
                                 f"got {channels}")
            m = group_connectivity(cin, cout, groups)
            channels = cout
        elif kind == "perm":
            _, c, groups = step
            m = permutation_matrix(permutation_indices(c, groups))
            channels = c
        else:
            raise ValueError(f"unknown design step {step!r}")
        paths = m if paths is None else m @ paths
    return np.rint(paths).astype(np.int64)


def analyse_design(steps):
    """Path counts of a design given as linear steps.

    Args:
        steps: sequence of ``("conv", in_channels, out_channels, groups)``
            (depthwise/channel-wise: ``groups == in_channels == out_channels``)
            and ``("perm", channels, groups)``.

    Returns:
        A :class:`ComplementaryReport`.
    """
    steps = tuple(tuple(int(v) if not isinstance(v, str) else v for v in s)
                  for s in steps)
    paths = _analyse(steps)
    return ComplementaryReport(paths.shape[1], paths.shape[0], paths)


# ---------------------------------------------------------------- built blocks
def _linear_layers(model, prefix):
    from igc_keras.layers.permutation import ChannelPermutation

    found = []
    for layer in walk_layers(model):
        if not layer.name.startswith(prefix):
            continue
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                              ChannelPermutation)):
            found.append(layer)
    return found


def _layer_matrices(layer):
    """(taps, out, in) numeric matrix and (out, in) 0/1 structure of a layer."""
    from igc_keras.layers.permutation import ChannelPermutation

    if isinstance(layer, ChannelPermutation):
        c = layer.channels
        probe = np.arange(c, dtype="float32")[None, None, None, :]
        idx = np.asarray(layer(probe)).reshape(-1).astype(int)
        p = permutation_matrix(idx)
        return p[None], p
    kernel = np.asarray(layer.get_weights()[0], dtype=np.float64)
    kh, kw = kernel.shape[:2]
    taps = kh * kw
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        c, mult = kernel.shape[2], kernel.shape[3]
        k = kernel.reshape(taps, c * mult)
        dense = np.zeros((taps, c * mult, c))
        cols = np.repeat(np.arange(c), mult)
        dense[:, np.arange(c * mult), cols] = k
        return dense, (dense != 0).any(axis=0) | (
            np.arange(c * mult)[:, None] // mult == np.arange(c)[None, :])
    cin_g, cout = kernel.shape[2], kernel.shape[3]
    groups = layer.groups
    cin = cin_g * groups
    dense = np.zeros((taps, cout, cin))
    og = cout // groups
    k = kernel.reshape(taps, cin_g, cout)
    for g in range(groups):
        dense[:, g * og:(g + 1) * og, g * cin_g:(g + 1) * cin_g] = (
            k[:, :, g * og:(g + 1) * og].transpose(0, 2, 1))
    return dense, group_connectivity(cin, cout, groups).astype(bool)


def check_block(model, prefix):
    """Compose the linear layers of a built block and report on them.

    The block's layers are found by name prefix (e.g. ``"stage1_block2_"``);
    convolutions contribute their real kernels (spatial taps kept separately),
    permutations are obtained by running the permutation layer itself.
    BatchNorm and activations are per-channel and do not change which pairs
    are connected, so they are left out.

    Returns:
        A :class:`ComplementaryReport` with ``composed_kernel`` set.
    """
    layers = _linear_layers(model, prefix)
    if not layers:
        raise ValueError(f"no convolution or permutation layer in `model` has a "
                         f"name starting with prefix={prefix!r}.")
    kernel, paths = None, None
    for layer in layers:
        k, s = _layer_matrices(layer)
        s = s.astype(np.float64)
        if kernel is None:
            kernel, paths = k, s
            continue
        # At most one layer has spatial taps in an IGC block; products of a
        # single-tap matrix with a multi-tap one broadcast over taps.
        kernel = np.einsum("toc,tci->toi", k, kernel) if (
            k.shape[0] == kernel.shape[0]) else (
            np.einsum("oc,tci->toi", k[0], kernel) if k.shape[0] == 1 else
            np.einsum("toc,ci->toi", k, kernel[0]))
        paths = s @ paths
    paths = np.rint(paths).astype(np.int64)
    return ComplementaryReport(paths.shape[1], paths.shape[0], paths, kernel)
