"""IGCV2: interleaved structured sparse convolutions (Xie et al., CVPR 2018).

No code was released; every layout here is RECONSTRUCTED from the paper's
tables (seed 001; the fitting scripts and their per-row errors are summarised
in the README's model zoo). The block is
:func:`~igc_keras.layers.apply_igcv2_block`: a channel-wise 3x3 conv, then
``L - 1`` group 1x1 convs with ``K_l`` channels per branch, permutations
between them.

CIFAR / Tiny ImageNet (:func:`IGCV2CIFAR`), the paper's Table 1 — four
columns on one skeleton:

* stem 3x3 conv ``3 -> s0`` (+BN+ReLU); three stages at widths x, 2x, 4x with
  ``B = (D - 2) / 3`` blocks each, grouped into residual units of two blocks
  (second block without ReLU, ReLU after the add); stride 2 in the spatial
  conv of the first block of stages 2 and 3, whose chain runs on the input
  width and widens in its last 1x1; a stride-2 1x1 projection on the skip
  path at those two transitions only (a stage-1 unit whose input width
  differs from x has no skip); global average pool; FC.
* ``xception``: channel-wise 3x3 + dense 1x1; stem 35 ("first conv fixed at
  35"); dense projection.
* ``igcv1``: IGC-L(x/2)M2 blocks (L = x/2 fixed, M = 2, 4, 8); projection
  groups L.
* ``igcv2`` (L = 3): two group 1x1 convs, both with ``K_s`` channels per
  branch (``K_s`` per stage, e.g. 8/16/32 for C64, 10/16/20 for C80);
  projection groups ``C_in / 2``.
* ``igcv2_star``: ``K = 8`` and ``ceil(log_8(C_s))`` group 1x1 convs per block,
  computed per stage width ``C_s`` (the table's ``L* = ceil(log_K x) + 1``
  applied per stage); stem 64; projection groups ``C_in / 2``.

The IGCV2 paper counts parameters as convolution weights only (no FC, no
BN) and FLOPs as conv + FC mult-adds: under that convention every row of its
Tables 3, 4, 6 and 7 is reproduced within 1.3%.

ImageNet (:func:`IGCV2`): the MobileNetV1 body (stem 3x3/2 conv 32, then 13
blocks with MobileNetV1's strides and widths times ``alpha``) whose pointwise
convs become the chain ``1x1 C_in -> C_in (2 groups) + BN -> permutation(2)
-> 1x1 C_in -> C_out (2 groups) + BN``, after a channel-wise 3x3 + BN + ReLU.
This reproduces the paper's parameters (4.067M / 1.293M / 0.462M at 1.0 /
0.5 / 0.25; paper 4.1M / 1.3M / 0.5M) but not its mult-adds: 536.6M /
141.5M / 39.0M against 564M / 156M / 46M. The gap equals the stem + 3x3
mult-adds at every width; counting those layers twice gives 564.9M / 155.6M
/ 46.1M. No natural layout found reproduces both (a search over widths,
group counts, chain lengths, where the width changes, BN placement and a
grouped spatial conv), so the paper's FLOPs most likely used that
convention; this is the closest fit and is documented as such.
"""

import math

import keras

from igc_keras.applications import common
from igc_keras.layers import blocks

BATCHNORM = {"epsilon": 1e-5, "momentum": 0.9}
FAMILIES = ("xception", "igcv1", "igcv2", "igcv2_star")

# ---------------------------------------------------------------- CIFAR


def _star_convs(width, k=8):
    """``ceil(log_k(width))`` group 1x1 convs (``L* - 1``) for a stage width."""
    return max(1, math.ceil(math.log(width) / math.log(k) - 1e-9))


def IGCV2CIFAR(width=64, depth=20, family="igcv2", branch_channels=None,
               input_shape=None, include_top=True, weights=None,
               input_tensor=None, pooling=None, classes=100,
               classifier_activation="softmax", name=None, *, stem_width=None,
               stem_strides=1):
    """A network of the IGCV2 paper's Table 1 (RECONSTRUCTED; module docstring).

    Args:
        width: ``x``, the first stage's width.
        depth: ``D = 3B + 2`` with ``B`` even (blocks come in residual pairs):
            8, 14, 20, 26, ...
        family: ``"xception"``, ``"igcv1"``, ``"igcv2"`` or ``"igcv2_star"``.
        branch_channels: for ``"igcv2"``, ``K_s`` of each of the three stages
            (default: the balanced ``round(sqrt(C_s))`` dividing ``C_s``);
            for ``"igcv2_star"``, ``K`` (default 8).
        stem_width: default 35 (xception), 64 (igcv2_star), else ``width``.
        stem_strides: 2 for Tiny ImageNet (64x64 inputs), as in the paper.
        Others: as in ``keras.applications``.
    """
    builder = "IGCV2CIFAR"
    if family not in FAMILIES:
        raise ValueError(f"{builder}: `family` must be one of {FAMILIES}; got "
                         f"family={family!r}.")
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"{builder}: `depth` must be 3B + 2 with an even number B of blocks "
            f"per stage (residual units of two blocks): 8, 14, 20, 26, ...; got "
            f"depth={depth!r}.")
    if not isinstance(width, int) or width < 2 or (family == "igcv1" and
                                                   width % 2):
        raise ValueError(f"{builder}: `width` must be an integer >= 2 (even for "
                         f"family='igcv1'); got width={width!r}.")
    widths = (width, 2 * width, 4 * width)
    if family == "igcv2":
        if branch_channels is None:
            branch_channels = tuple(_balanced_divisor(w) for w in widths)
        branch_channels = tuple(branch_channels)
        if len(branch_channels) != 3:
            raise ValueError(f"{builder}: `branch_channels` must give K for each "
                             f"of the 3 stages; got {branch_channels!r}.")
    elif family == "igcv2_star":
        branch_channels = 8 if branch_channels is None else branch_channels
    common.check_arguments(weights=weights, include_top=include_top,
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation,
                           input_shape=input_shape,
                           input_tensor=input_tensor, builder=builder, min_size=8)
    if stem_width is None:
        stem_width = {"xception": 35, "igcv2_star": 64}.get(family, width)
    blocks_per_stage = (depth - 2) // 3
    bn = BATCHNORM
    img_input, inputs = common.make_input(input_shape, input_tensor,
                                          (32, 32, 3))
    x = blocks.conv(img_input, stem_width, 3, stem_strides, name="stem_conv")
    x = blocks.batchnorm(x, bn, "stem_bn")
    x = blocks.activation(x, "relu", "stem_relu")

    def block(x, filters, stage, strides, relu, prefix):
        cin = x.shape[-1]
        act = "relu" if relu else None
        if family == "igcv1":
            partitions = width // 2
            return blocks.apply_igcv1_block(
                x, filters, partitions, filters // partitions, strides=strides,
                activation_fn=act, batchnorm_settings=bn, name=prefix)
        if family == "xception":
            ks = (cin,)
        elif family == "igcv2":
            ks = (branch_channels[stage],) * 2
        else:
            ks = (branch_channels,) * _star_convs(widths[stage], branch_channels)
        return blocks.apply_igcv2_block(x, filters, ks, strides=strides,
                                        activation_fn=act,
                                        batchnorm_settings=bn, name=prefix)

    for stage, filters in enumerate(widths):
        for unit in range(blocks_per_stage // 2):
            prefix = f"stage{stage + 1}_unit{unit + 1}"
            strides = 2 if stage and unit == 0 else 1
            cin = x.shape[-1]
            shortcut = x
            if stage and unit == 0:
                groups = {"xception": 1, "igcv1": width // 2}.get(family,
                                                                  cin // 2)
                shortcut = blocks.conv(x, filters, 1, 2, groups,
                                       name=f"{prefix}_proj")
                shortcut = blocks.batchnorm(shortcut, bn, f"{prefix}_proj_bn")
            elif cin != filters:
                shortcut = None  # stage-1 unit after a stem of another width
            y = block(x, filters, stage, strides, True, f"{prefix}_block1")
            y = block(y, filters, stage, 1, False, f"{prefix}_block2")
            if shortcut is not None:
                y = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            x = keras.layers.ReLU(name=f"{prefix}_relu")(y)
    x = common.head(x, include_top=include_top, pooling=pooling,
                    classes=classes,
                    classifier_activation=classifier_activation)
    model = keras.Model(inputs, x, name=name or
                        f"igcv2_cifar_{family.replace('_', '')}_c{width}_d{depth}")
    return common.add_pyramid_and_load_weights(model, weights, None,
                                               include_top)


def _balanced_divisor(channels):
    """The divisor of ``channels`` closest to ``sqrt(channels)``."""
    root = math.sqrt(channels)
    return min((d for d in range(1, channels + 1) if channels % d == 0),
               key=lambda d: (abs(d - root), d))


# ---------------------------------------------------------------- ImageNet
#: (output width, stride) of MobileNetV1's 13 depthwise-separable layers.
MOBILENET_V1_LAYERS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


def IGCV2(input_shape=None, alpha=1.0, include_top=True, weights=None,
          input_tensor=None, pooling=None, classes=1000,
          classifier_activation="softmax", name=None, *, groups=2):
    """IGCV2 ImageNet network (RECONSTRUCTED MobileNetV1-like body).

    Reference: Guotian Xie, Jingdong Wang, Ting Zhang, Jianhuang Lai, Richang
    Hong, Guo-Jun Qi. *IGCV2: Interleaved Structured Sparse Convolutional
    Neural Networks*. CVPR 2018.

    See the module docstring for the layout and how closely it reproduces the
    paper (parameters yes; mult-adds only under the paper's apparent
    convention).

    Args:
        input_shape: ``(H, W, C)``; default ``(224, 224, 3)``.
        alpha: width multiplier (the paper's 1.0, 0.5, 0.25; any > 0).
        groups: branches of each of the two group 1x1 convs of a block.
        Others: as in ``keras.applications``.

    Returns:
        A ``keras.Model``; without the top, the ``(batch, H/32, W/32,
        int(1024 alpha))`` feature map (or its pooled vector).
    """
    common.check_arguments(architecture={"alpha": alpha},
                           weights=weights, include_top=include_top,
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation,
                           input_shape=input_shape,
                           input_tensor=input_tensor, builder="IGCV2",
                           alpha=alpha)
    img_input, inputs = common.make_input(input_shape, input_tensor,
                                          (224, 224, 3))
    bn = BATCHNORM
    x = blocks.conv(img_input, int(32 * alpha), 3, 2, name="stem_conv")
    x = blocks.batchnorm(x, bn, "stem_bn")
    x = blocks.activation(x, "relu", "stem_relu")
    for index, (filters, stride) in enumerate(MOBILENET_V1_LAYERS, start=1):
        cin = x.shape[-1]
        x = blocks.apply_igcv2_block(
            x, int(filters * alpha), (cin // groups, cin // groups),
            strides=stride, batchnorm_settings=bn, batchnorm_each=True,
            channelwise_activation="relu", name=f"block{index}")
    x = common.head(x, include_top=include_top, pooling=pooling,
                    classes=classes,
                    classifier_activation=classifier_activation)
    model = keras.Model(inputs, x, name=name or f"igcv2_{alpha:g}")
    pyramid = {"P1": "stem_relu", "P2": "block3_relu", "P3": "block5_relu",
               "P4": "block11_relu", "P5": "block13_relu"}
    return common.add_pyramid_and_load_weights(model, weights, None,
                                               include_top, pyramid)
