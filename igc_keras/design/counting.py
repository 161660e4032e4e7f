"""Parameter and mult-add counters for any Keras model.

Conventions (stated, because the papers use two):

* ``count_params(model)``: convolution and dense weights and biases plus
  BatchNorm gamma/beta, i.e. Keras' trainable weights (the ImageNet tables of
  IGCV2/IGCV3 and MobileNet). Any other layer's trainable weights count too.
* ``count_params(model, batchnorm=False)``: the same without BatchNorm (the
  IGCV1 paper's CIFAR tables count conv + FC weights only).
* ``count_params(model, batchnorm=False, classifier=False)``: convolutions
  only (the IGCV2 paper's CIFAR tables: no FC, no BN).
* ``count_mult_adds(model)``: convolution and dense layers only, at the
  model's input size: ``H_out * W_out * k_h * k_w * (C_in / groups) * C_out``
  for a convolution (``k_h * k_w * C * multiplier`` per position for a
  depthwise one), ``C_in * C_out`` per position for a dense layer. The papers'
  "FLOPs" are these mult-adds.
"""

import math

import keras

from igc_keras.walk import walk_layers


def _size(variable):
    return int(math.prod(variable.shape))


def count_params(model, batchnorm=True, classifier=True):
    """Number of parameters of ``model`` under the conventions above.

    Args:
        model: a built ``keras.Model``.
        batchnorm: count BatchNorm's gamma and beta (moving statistics never
            count).
        classifier: count dense (fully connected) layers.
    """
    total = 0
    for layer in walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and not batchnorm:
            continue
        if isinstance(layer, keras.layers.Dense) and not classifier:
            continue
        total += sum(_size(w) for w in layer.trainable_weights)
    return total


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"layer {layer.name!r} has no single symbolic output; count_mult_adds "
            f"needs a functional model whose layers are each called once."
        ) from error


def layer_mult_adds(layer):
    """Mult-adds of one convolution or dense layer (0 for anything else)."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out = _output_shape(layer)
        kh, kw = layer.kernel_size
        channels_in = layer.kernel.shape[2]
        return out[1] * out[2] * kh * kw * channels_in * layer.depth_multiplier
    if isinstance(layer, keras.layers.Conv2D):
        out = _output_shape(layer)
        kh, kw = layer.kernel_size
        cin_per_group = layer.kernel.shape[2]
        return out[1] * out[2] * kh * kw * cin_per_group * layer.filters
    if isinstance(layer, keras.layers.Dense):
        out = _output_shape(layer)
        positions = math.prod(d for d in out[1:-1]) if len(out) > 2 else 1
        return positions * layer.kernel.shape[0] * layer.units
    return 0


def count_mult_adds(model):
    """Multiply-accumulates of ``model``'s conv and dense layers per image."""
    shape = model.inputs[0].shape
    if any(d is None for d in shape[1:]):
        raise ValueError(
            f"count_mult_adds needs a fixed input size; the model's input shape "
            f"is {tuple(shape)}. Build it with e.g. input_shape=(224, 224, 3).")
    return sum(layer_mult_adds(layer) for layer in walk_layers(model))
