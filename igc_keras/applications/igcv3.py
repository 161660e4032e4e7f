"""IGCV3: interleaved low-rank group convolutions (Sun et al., BMVC 2018).

Follows the authors' released MXNet model (``homles11/IGCV3``, the "IGCV3-D"
graph, ``igcv3-symbol.json`` in their repository) exactly:

* stem 3x3/2 conv (32) + BN + ReLU6; seven stages given by the ``(t, c, n, s)``
  table below, each an :func:`~igc_keras.layers.apply_igcv3_block` with
  ``G_1 = G_2 = 2`` and a permutation after the expansion only;
  last 1x1 conv (1280) + BN + ReLU6; global average pool; dense 1000 + softmax.
* BN epsilon 1e-5 (MXNet), momentum 0.9; no biases in convolutions; symmetric
  padding on stride-2 convolutions; no dropout.
* Stage 0 (t = 1) keeps its 1x1 group expansion (32 -> 32); the expansion
  width is ``round(t * C_in)``; identity shortcuts on blocks 1..n-1 of a stage.

IGCV3-1.0 counted as conv/dense weights + biases + BN gamma/beta has
3,491,688 parameters and 312.97M mult-adds at 224x224 (paper: 3.5M / 320M).

Width multiplier (RECONSTRUCTED, not the authors' code): every stage width and
the stem are ``round(c * alpha)`` made even (rounded up to the next even
number) so the two groups divide them; the expansion is ``t`` times the real
input width; the last conv is ``int(1280 * alpha)``. For ``alpha = 0.7`` this
gives 2,031,702 parameters / 169.98M mult-adds, the paper's 2.0M / 170M. The
authors' own code scales the first block's expansion twice and keeps 1280 for
``alpha <= 1``, which does not reproduce the paper's figures.
"""

import keras

from igc_keras.applications import common
from igc_keras.layers import blocks

#: (expansion t, output channels c, blocks n, first stride s) per stage.
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 4, 2),
    (6, 32, 6, 2),
    (6, 64, 8, 2),
    (6, 96, 6, 1),
    (6, 160, 6, 2),
    (6, 320, 1, 1),
)
STEM_FILTERS = 32
LAST_FILTERS = 1280
BATCHNORM = {"epsilon": 1e-5, "momentum": 0.9}


def scaled_width(channels, alpha):
    """``round(channels * alpha)``, made even (rounded up) for the two groups."""
    width = int(round(channels * alpha))
    return max(2, width + (width % 2))


def IGCV3(input_shape=None, alpha=1.0, include_top=True, weights=None,
          input_tensor=None, pooling=None, classes=1000,
          classifier_activation="softmax", name=None, *, expansion_groups=2,
          projection_groups=2, stages=STAGES):
    """Instantiates the IGCV3 architecture.

    Reference: Ke Sun, Mingjie Li, Dong Liu, Jingdong Wang. *IGCV3: Interleaved
    Low-Rank Group Convolutions for Efficient Deep Neural Networks*. BMVC 2018.

    Expects inputs as the authors trained them: RGB minus the ImageNet mean
    (123.68, 116.779, 103.939), no scaling.

    Args:
        input_shape: ``(H, W, C)``; default ``(224, 224, 3)``. With
            ``include_top=False`` any size (>= 32) and any channel count work.
        alpha: width multiplier (1.0 and 0.7 are the paper's; any > 0 works).
        include_top: add global average pooling and the dense classifier.
        weights: ``None`` (random), ``"imagenet"`` (the authors' released
            IGCV3-1.0 weights, converted; alpha 1.0 only) or the path of a
            weights file.
        input_tensor: optional Keras tensor to use as the image input.
        pooling: ``None``, ``"avg"`` or ``"max"`` when ``include_top=False``.
        classes: number of classes with ``include_top``.
        classifier_activation: activation of the classifier (``None`` for
            logits).
        name: model name (default ``"igcv3_<alpha>"``).
        expansion_groups: ``G_1`` of every block (2 in the released model).
        projection_groups: ``G_2`` of every block (2 in the released model).
        stages: the ``(t, c, n, s)`` table.

    Returns:
        A ``keras.Model``: ``(batch, H, W, C) -> (batch, classes)`` with the
        top, else the ``(batch, H/32, W/32, int(1280 alpha))`` feature map or
        its pooled ``(batch, int(1280 alpha))`` vector. ``model.pyramid_outputs``
        maps ``"P1".."P5"`` (stride ``2**n``) to the last block output at that
        stride.
    """
    config = common.check_arguments(
        architecture={"alpha": alpha, "expansion_groups": expansion_groups,
                      "projection_groups": projection_groups,
                      "stages": "default" if stages == STAGES else "custom"},
        weights=weights, include_top=include_top, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        input_shape=input_shape, input_tensor=input_tensor, builder="IGCV3",
        alpha=alpha)
    img_input, inputs = common.make_input(input_shape, input_tensor,
                                          (224, 224, 3))
    x = blocks.conv(img_input, scaled_width(STEM_FILTERS, alpha), 3, 2,
                    name="stem_conv")
    x = blocks.batchnorm(x, BATCHNORM, "stem_bn")
    x = blocks.activation(x, "relu6", "stem_relu")
    for stage, (t, c, n, s) in enumerate(stages):
        filters = scaled_width(c, alpha)
        for block in range(n):
            x = blocks.apply_igcv3_block(
                x, filters, t, strides=s if block == 0 else 1,
                expansion_groups=expansion_groups,
                projection_groups=projection_groups,
                batchnorm_settings=BATCHNORM,
                name=f"stage{stage}_block{block}")
    pyramid = {"P1": "stem_relu"}
    stride = 2
    for stage, (t, c, n, s) in enumerate(stages):
        stride *= s
        level = f"P{stride.bit_length() - 1}"
        if level != "P5":
            pyramid[level] = (f"stage{stage}_block{n - 1}_add" if n > 1 else
                              f"stage{stage}_block0_project_bn")
    x = blocks.conv(x, int(LAST_FILTERS * alpha), 1, name="last_conv")
    x = blocks.batchnorm(x, BATCHNORM, "last_bn")
    x = blocks.activation(x, "relu6", "last_relu")
    x = common.head(x, include_top=include_top, pooling=pooling,
                    classes=classes,
                    classifier_activation=classifier_activation)
    pyramid["P5"] = "last_relu"
    model = keras.Model(inputs, x, name=name or f"igcv3_{alpha:g}")
    return common.add_pyramid_and_load_weights(
        model, weights, config, include_top, pyramid, converter="igcv3",
        builder="IGCV3")
