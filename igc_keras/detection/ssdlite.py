"""SSDLite networks: backbone taps, extra feature layers, box / class heads.

Two head designs, both from the architecture spec (SSDLite, MobileNetV2 paper):

* ``tf_od_api`` — TF Object Detection API ``ssdlite_mobilenet_v2``: four extra
  layers of depth 512, 256, 256, 128 (1x1 conv to d/2 + BN + ReLU6, depthwise
  3x3 stride 2 + BN + ReLU6, 1x1 conv to d + BN + ReLU6); 3 anchors per
  location on the stride-16 map, 6 on the others; per level and per output
  (boxes, classes) a depthwise 3x3 + BN + ReLU6 then a 1x1 conv with bias.
  With keras.applications MobileNetV2 (taps ``block_13_expand_relu``, 576
  channels at stride 16, and ``out_relu``, 1280 at stride 32) and 81 class
  outputs at 320x320 this is 4,337,013 parameters: the MobileNetV2 paper's
  4.3M.
* ``igcv3_authors`` — the IGCV3 authors' detection code (not runnable as
  released; reconstructed): the extra layers' 1x1 convs are group-2 convs
  each followed by a channel permutation, widths 256/128/128/128 then
  512/256/256/128; 4, 6, 6, 6, 4, 4 anchors per location; the heads'
  depthwise convs carry a bias (MXNet's default). On IGCV3-1.0 (taps: the
  stride-16 expansion of stage 5 block 0, 576 channels, and the last 1x1
  conv, 1280) with 81 class outputs at 320x320: 4,002,806 parameters, the
  seeds' 4.0M.

Parameters are counted as :func:`igc_keras.design.count_params` does
(trainable weights: conv kernels and biases, BatchNorm gamma and beta; no
moving statistics), the convention under which MobileNetV2-SSDLite gives the
published 4.3M.
"""

import dataclasses
from typing import Tuple

import keras

from igc_keras.detection.anchors import layer_shapes
from igc_keras.layers import ChannelPermutation
from igc_keras.layers.blocks import activation, batchnorm, conv
from igc_keras.registry import create_model

BATCHNORM = {"epsilon": 1e-3, "momentum": 0.97}


@dataclasses.dataclass(frozen=True)
class HeadDesign:
    """One SSDLite head design (see the module docstring)."""

    extra_depths: Tuple[int, ...]
    extra_mids: Tuple[int, ...]
    extra_groups: int
    head_depthwise_bias: bool


HEAD_DESIGNS = {
    "tf_od_api": HeadDesign((512, 256, 256, 128), (256, 128, 128, 64), 1,
                            False),
    "igcv3_authors": HeadDesign((512, 256, 256, 128), (256, 128, 128, 128), 2,
                                True),
}
#: anchors per location come from the design's anchor shapes
#: (:func:`igc_keras.detection.anchors.layer_shapes`)


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A registry network and its stride-16 / stride-32 feature layers."""

    model_name: str
    stride16: str
    stride32: str
    default_head: str


#: the backbone SSDLite is built on when none is named
DEFAULT_BACKBONE = "igcv3_1.0"

BACKBONES = {
    "igcv3_1.0": Backbone("igcv3_1.0", "stage5_block0_shuffle", "last_relu",
                          "igcv3_authors"),
    "mobilenet_v2_1.0": Backbone("mobilenet_v2_1.0", "block_13_expand_relu",
                                 "out_relu", "tf_od_api"),
}


def default_head(backbone):
    """The head design of ``backbone`` when none is asked for: the one
    :data:`BACKBONES` gives it (:data:`DEFAULT_BACKBONE`'s for a backbone
    outside the table, which ``backbone_features`` then refuses)."""
    return BACKBONES.get(backbone, BACKBONES[DEFAULT_BACKBONE]).default_head


def _check_choice(argument, value, allowed):
    if value not in allowed:
        raise ValueError(f"`{argument}` must be one of {sorted(allowed)}; got "
                         f"{argument}={value!r}.")


def backbone_features(backbone=DEFAULT_BACKBONE, image_size=320, weights=None):
    """The backbone cut at its two SSD taps.

    Returns:
        ``keras.Model``: ``(batch, S, S, 3)`` -> ``[(batch, S/16, S/16, 576),
        (batch, S/32, S/32, 1280)]``.
    """
    _check_choice("backbone", backbone, BACKBONES)
    if image_size % 32:
        raise ValueError(f"`image_size` must be a multiple of 32; got "
                         f"image_size={image_size!r}.")
    spec = BACKBONES[backbone]
    extra = {} if weights is None else {"weights": weights}
    network = create_model(
        spec.model_name, input_shape=(image_size, image_size, 3),
        include_top=False, **extra)
    taps = [network.get_layer(spec.stride16).output,
            network.get_layer(spec.stride32).output]
    return keras.Model(network.inputs, taps, name=f"{backbone}_features")


def _pointwise(x, filters, groups, name):
    x = conv(x, filters, 1, groups=groups, name=name)
    x = batchnorm(x, BATCHNORM, f"{name}_bn")
    x = activation(x, "relu6", f"{name}_relu")
    if groups > 1:
        x = ChannelPermutation(groups, name=f"{name}_shuffle")(x)
    return x


def apply_extra_layer(x, depth, mid, groups, name):
    """1x1 to ``mid``, depthwise 3x3 stride 2, 1x1 to ``depth`` (+BN+ReLU6).

    ``(batch, H, W, C) -> (batch, ceil(H/2), ceil(W/2), depth)``.
    """
    x = _pointwise(x, mid, groups, f"{name}_reduce")
    x = conv(x, mid, 3, 2, groups=mid, name=f"{name}_depthwise")
    x = batchnorm(x, BATCHNORM, f"{name}_depthwise_bn")
    x = activation(x, "relu6", f"{name}_depthwise_relu")
    return _pointwise(x, depth, groups, f"{name}_expand")


def apply_predictor(x, anchors, outputs_per_anchor, depthwise_bias, name):
    """Depthwise 3x3 + BN + ReLU6, then 1x1 conv with bias, reshaped.

    ``(batch, H, W, C) -> (batch, H * W * anchors, outputs_per_anchor)``.
    """
    x = conv(x, x.shape[-1], 3, groups=x.shape[-1], name=f"{name}_depthwise",
             use_bias=depthwise_bias)
    x = batchnorm(x, BATCHNORM, f"{name}_depthwise_bn")
    x = activation(x, "relu6", f"{name}_depthwise_relu")
    x = keras.layers.Conv2D(anchors * outputs_per_anchor, 1,
                            name=f"{name}_conv")(x)
    return keras.layers.Reshape((-1, outputs_per_anchor), name=f"{name}_flat")(x)


def ssdlite_network(backbone=DEFAULT_BACKBONE, num_classes=80, image_size=320,
                    head=None, weights=None):
    """The SSDLite network (raw predictions; anchors and decoding apart).

    Args:
        backbone: ``igcv3_1.0`` or ``mobilenet_v2_1.0``.
        num_classes: object classes; the class head adds a background class.
        image_size: square input side, a multiple of 32.
        head: ``tf_od_api`` or ``igcv3_authors``; default: the backbone's
            (IGCV3 -> the authors', MobileNetV2 -> TF OD API's).
        weights: backbone weights (``None``, ``"imagenet"`` or a file).

    Returns:
        ``keras.Model``: ``(batch, S, S, 3)`` preprocessed images ->
        ``{"boxes": (batch, A, 4), "classes": (batch, A, num_classes + 1)}``
        with ``A`` anchors over the six levels (strides 16, 32, 64, 128,
        256, 512).
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer; got "
                         f"num_classes={num_classes!r}.")
    head = head or default_head(backbone)
    _check_choice("head", head, HEAD_DESIGNS)
    design = HEAD_DESIGNS[head]
    features = backbone_features(backbone, image_size, weights)
    levels = list(features.outputs)
    x = levels[-1]
    for index, (depth, mid) in enumerate(zip(design.extra_depths,
                                             design.extra_mids)):
        x = apply_extra_layer(x, depth, mid, design.extra_groups,
                              f"extra{index + 1}")
        levels.append(x)
    boxes, classes = [], []
    for level, (feature, shapes) in enumerate(zip(levels,
                                                  layer_shapes(head))):
        anchors = len(shapes)
        boxes.append(apply_predictor(feature, anchors, 4,
                                     design.head_depthwise_bias,
                                     f"level{level}_box"))
        classes.append(apply_predictor(feature, anchors, num_classes + 1,
                                       design.head_depthwise_bias,
                                       f"level{level}_class"))
    outputs = {
        "boxes": keras.layers.Concatenate(axis=1, name="boxes")(boxes),
        "classes": keras.layers.Concatenate(axis=1, name="classes")(classes)}
    return keras.Model(features.inputs, outputs,
                       name=f"ssdlite_{backbone}_{head}")
