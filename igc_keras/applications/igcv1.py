"""IGCV1: interleaved group convolutions (Zhang et al., ICCV 2017).

Block (:func:`~igc_keras.layers.apply_igcv1_block`, the authors' ``get_igc``):
3x3 group conv with ``L`` primary partitions -> permutation(L) -> 1x1 group
conv with ``M`` secondary partitions -> permutation(M) -> BN -> ReLU. A network
named IGC-L{L}M{M} has width ``L * M``.

ImageNet (:func:`IGCV1`, from the authors' released graphs
``hellozting/InterleavedGroupConvolutions``): a ResNet-18 layout. Stem 7x7/2
conv + BN + ReLU, 3x3/2 max pool (symmetric pad 1); four stages of two
residual units, each two IGC blocks (the second without ReLU) plus the
identity, ReLU after the add; where the width or stride changes the shortcut
is a 1x1 group conv with ``L`` groups + BN; global average pool, dense 1000.
BN epsilon 2e-5. The primary partitions ``L`` are fixed per stage and the
secondary ``M = width / L``:

============  ===============================  ===================  ==========
variant       stem / stage widths              L per stage          params*
============  ===============================  ===================  ==========
L100M2        100 / 200, 400, 800, 1600        100, 200, 400, 800   8.608M
L16M16        256 / 256, 512, 1024, 2048       16                   13.490M
L4M32         128 / 128, 256, 512, 1024        4                    12.232M
============  ===============================  ===================  ==========

(* conv + FC weights without BN, as in the authors' README.)

CIFAR (:func:`IGCV1CIFAR`): plain nets of depth ``D = 3B + 2`` (stem 3x3 conv
3 -> LM + BN + ReLU, three stages of ``B`` IGC blocks at widths LM, 2LM, 4LM
with ``L`` constant and ``M`` doubling, stride 2 on the first block of stages 2
and 3, global average pool, FC), and the "+Ident" nets ((D-2)/6 residual
units of two IGC blocks per stage; the first block's secondary conv has
``k_in / L`` groups, the second ``k_out / L``; a stride-2 1x1 group conv
(``L`` groups) + BN projects where the width changes). :func:`RegConvCIFAR`
is the papers' baseline of plain 3x3 convolutions.
"""

import keras

from igc_keras.applications import common
from igc_keras.layers import blocks

BATCHNORM_IMAGENET = {"epsilon": 2e-5, "momentum": 0.9}
BATCHNORM_CIFAR = {"epsilon": 1e-5, "momentum": 0.9}

#: ImageNet variants: stem width, stage widths, primary partitions per stage.
IMAGENET_VARIANTS = {
    "L100M2": {"stem": 100, "widths": (200, 400, 800, 1600),
               "partitions": (100, 200, 400, 800)},
    "L16M16": {"stem": 256, "widths": (256, 512, 1024, 2048),
               "partitions": (16, 16, 16, 16)},
    "L4M32": {"stem": 128, "widths": (128, 256, 512, 1024),
              "partitions": (4, 4, 4, 4)},
}
IMAGENET_STRIDES = (1, 2, 2, 2)
IMAGENET_UNITS = 2


def _residual_unit(x, filters, partitions, strides, first_secondary_groups,
                   batchnorm_settings, name):
    """Two IGC blocks + identity (or 1x1 group-conv projection), ReLU after add."""
    cin = x.shape[-1]
    shortcut = x
    if strides != 1 or cin != filters:
        shortcut = blocks.conv(x, filters, 1, strides, partitions,
                               name=f"{name}_proj")
        shortcut = blocks.batchnorm(shortcut, batchnorm_settings,
                                    f"{name}_proj_bn")
    x = blocks.apply_igcv1_block(
        x, filters, partitions, first_secondary_groups, strides=strides,
        batchnorm_settings=batchnorm_settings, name=f"{name}_igc1")
    x = blocks.apply_igcv1_block(
        x, filters, partitions, filters // partitions, activation_fn=None,
        batchnorm_settings=batchnorm_settings, name=f"{name}_igc2")
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def IGCV1(input_shape=None, alpha=1.0, include_top=True, weights=None,
          input_tensor=None, pooling=None, classes=1000,
          classifier_activation="softmax", name=None, *, variant="L100M2"):
    """Instantiates an IGCV1 ImageNet network (IGC-L{L}M{M}+Ident).

    Reference: Ting Zhang, Guo-Jun Qi, Bin Xiao, Jingdong Wang. *Interleaved
    Group Convolutions for Deep Neural Networks*. ICCV 2017.

    With no arguments this is the seeds' headline network, IGC-L100M2+Ident
    (26.95% top-1 error). Layers follow the authors' released graphs op for op.

    Args:
        input_shape: ``(H, W, C)``; default ``(224, 224, 3)``.
        alpha: width multiplier applied to the primary partitions ``L`` and
            the stem (``M`` is kept), so every width scales by ``alpha``.
        weights: ``None``, ``"imagenet"`` (the authors' released weights of
            the variant, converted; alpha 1.0) or a weights file path.
        include_top, input_tensor, pooling, classes, classifier_activation,
        name: as in ``keras.applications``.
        variant: ``"L100M2"``, ``"L16M16"`` or ``"L4M32"``.

    Returns:
        A ``keras.Model``; without the top its output is the
        ``(batch, H/32, W/32, width_4)`` feature map (or pooled vector).
    """
    if variant not in IMAGENET_VARIANTS:
        raise ValueError(f"IGCV1: `variant` must be one of "
                         f"{sorted(IMAGENET_VARIANTS)}; got variant={variant!r}.")
    config = common.check_arguments(
                           architecture={"alpha": alpha, "variant": variant},
                           weights=weights, include_top=include_top,
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation,
                           input_shape=input_shape,
                           input_tensor=input_tensor, builder="IGCV1",
                           alpha=alpha)
    spec = IMAGENET_VARIANTS[variant]
    partitions = [max(1, int(round(p * alpha))) for p in spec["partitions"]]
    widths = [p * (w // p0) for p, w, p0 in
              zip(partitions, spec["widths"], spec["partitions"])]
    stem = int(round(spec["stem"] * alpha))
    bn = BATCHNORM_IMAGENET
    img_input, inputs = common.make_input(input_shape, input_tensor,
                                          (224, 224, 3))
    x = blocks.conv(img_input, stem, 7, 2, name="stem_conv")
    x = blocks.batchnorm(x, bn, "stem_bn")
    x = blocks.activation(x, "relu", "stem_relu")
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, 2, name="stem_pool")(x)
    for stage, (width, parts, stride) in enumerate(
            zip(widths, partitions, IMAGENET_STRIDES), start=1):
        for unit in range(1, IMAGENET_UNITS + 1):
            x = _residual_unit(
                x, width, parts, stride if unit == 1 else 1, width // parts,
                bn, name=f"stage{stage}_unit{unit}")
    x = common.head(x, include_top=include_top, pooling=pooling,
                    classes=classes,
                    classifier_activation=classifier_activation)
    default = f"igcv1_{variant.lower()}" + ("" if alpha == 1 else f"_{alpha:g}")
    model = keras.Model(inputs, x, name=name or default)
    pyramid = {"P1": "stem_relu"}
    pyramid.update({f"P{stage + 1}": f"stage{stage}_unit{IMAGENET_UNITS}_relu"
                    for stage in range(1, 5)})
    return common.add_pyramid_and_load_weights(
        model, weights, config, include_top, pyramid, converter="igcv1",
        builder="IGCV1")


def _cifar_blocks_per_stage(depth, identity, builder):
    step = 6 if identity else 3
    if not isinstance(depth, int) or depth < step + 2 or (depth - 2) % step:
        allowed = ", ".join(str(step * b + 2) for b in range(1, 6))
        raise ValueError(
            f"{builder}: `depth` must be {step}B + 2 "
            f"({'two IGC blocks per residual unit, ' if identity else ''}"
            f"three stages); got depth={depth!r}; allowed e.g. {allowed}, ...")
    return (depth - 2) // step


def IGCV1CIFAR(primary_partitions=24, secondary_partitions=2, depth=20,
               identity=False, input_shape=None, include_top=True,
               weights=None, input_tensor=None, pooling=None, classes=10,
               classifier_activation="softmax", name=None, *, stem_strides=1,
               transition_secondary="input"):
    """IGC-L{L}M{M} CIFAR network of the IGCV1 paper, plain or "+Ident".

    Args:
        primary_partitions: ``L`` (constant across stages).
        secondary_partitions: ``M`` of the first stage (doubles per stage).
        depth: ``D = 3B + 2`` (plain) or ``6U + 2`` (+Ident).
        identity: the "+Ident" residual version.
        transition_secondary: +Ident only: the secondary groups of the first
            block of a unit that widens, ``"input"`` (``k_in / L``, the authors'
            code) or ``"output"`` (``k_out / L``; RECONSTRUCTED rule that fits
            the slides' large IGC-L16M32 / L450M2 / L32M26 rows).
        stem_strides: 2 for Tiny ImageNet (64x64), as in the IGCV2 paper.
        Others: as in ``keras.applications``.

    Returns:
        ``(batch, 32, 32, 3) -> (batch, classes)`` (or features).
    """
    builder = "IGCV1CIFAR"
    count = _cifar_blocks_per_stage(depth, identity, builder)
    if transition_secondary not in ("input", "output"):
        raise ValueError(f"{builder}: `transition_secondary` must be 'input' or "
                         f"'output'; got {transition_secondary!r}.")
    common.check_arguments(weights=weights, include_top=include_top,
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation,
                           input_shape=input_shape,
                           input_tensor=input_tensor, builder=builder, min_size=8)
    L, M = primary_partitions, secondary_partitions
    bn = BATCHNORM_CIFAR
    img_input, inputs = common.make_input(input_shape, input_tensor,
                                          (32, 32, 3))
    x = blocks.conv(img_input, L * M, 3, stem_strides, name="stem_conv")
    x = blocks.batchnorm(x, bn, "stem_bn")
    x = blocks.activation(x, "relu", "stem_relu")
    for stage in range(3):
        width = L * M * 2 ** stage
        for index in range(count):
            stride = 2 if stage and index == 0 else 1
            prefix = f"stage{stage + 1}_{'unit' if identity else 'block'}{index + 1}"
            if identity:
                secondary = (x.shape[-1] if transition_secondary == "input"
                             else width) // L
                x = _residual_unit(x, width, L, stride, secondary, bn,
                                   name=prefix)
            else:
                x = blocks.apply_igcv1_block(x, width, L, width // L,
                                             strides=stride,
                                             batchnorm_settings=bn,
                                             name=prefix)
    x = common.head(x, include_top=include_top, pooling=pooling,
                    classes=classes,
                    classifier_activation=classifier_activation)
    suffix = "_ident" if identity else ""
    model = keras.Model(inputs, x,
                        name=name or f"igcv1_cifar_l{L}m{M}_d{depth}{suffix}")
    return common.add_pyramid_and_load_weights(model, weights, None,
                                               include_top)


def RegConvCIFAR(width=18, depth=20, input_shape=None, include_top=True,
                 weights=None, input_tensor=None, pooling=None, classes=10,
                 classifier_activation="softmax", name=None, *, stem_strides=1):
    """RegConv-W{width}: the IGCV1 paper's plain 3x3-conv baseline.

    ``D = 3B + 2``: stem 3x3 conv + BN + ReLU, three stages of ``B`` 3x3 conv +
    BN + ReLU at widths W, 2W, 4W (stride 2 entering stages 2 and 3), global
    average pool, FC.
    """
    builder = "RegConvCIFAR"
    count = _cifar_blocks_per_stage(depth, False, builder)
    common.check_arguments(weights=weights, include_top=include_top,
                           pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation,
                           input_shape=input_shape,
                           input_tensor=input_tensor, builder=builder, min_size=8)
    bn = BATCHNORM_CIFAR
    img_input, inputs = common.make_input(input_shape, input_tensor,
                                          (32, 32, 3))
    x = blocks.conv(img_input, width, 3, stem_strides, name="stem_conv")
    x = blocks.batchnorm(x, bn, "stem_bn")
    x = blocks.activation(x, "relu", "stem_relu")
    for stage in range(3):
        for index in range(count):
            prefix = f"stage{stage + 1}_block{index + 1}"
            x = blocks.conv(x, width * 2 ** stage, 3,
                            2 if stage and index == 0 else 1,
                            name=f"{prefix}_conv")
            x = blocks.batchnorm(x, bn, f"{prefix}_bn")
            x = blocks.activation(x, "relu", f"{prefix}_relu")
    x = common.head(x, include_top=include_top, pooling=pooling,
                    classes=classes,
                    classifier_activation=classifier_activation)
    model = keras.Model(inputs, x, name=name or f"regconv_cifar_w{width}_d{depth}")
    return common.add_pyramid_and_load_weights(model, weights, None,
                                               include_top)
