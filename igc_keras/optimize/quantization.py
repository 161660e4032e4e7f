"""Quantization-aware training (tfmot) of the package's Keras 3 models.

:func:`quantize_aware` rebuilds the model in tf_keras through the bridge
(:mod:`igc_keras.optimize.legacy`) and applies tfmot's default 8-bit scheme:
per-channel symmetric int8 weights, per-tensor asymmetric int8 activations,
BatchNorm folded into the convolution before it (grouped, depthwise and
dense ``Conv2D`` alike). BatchNorms that do not follow a convolution
(IGCV1 places one after the channel permutation) and the input
normalisation layers get an output-only quantize config
(:func:`igc_keras.optimize.legacy.output_quantize_config`): TFLite runs them
as int8 multiply-add. The permutation's
Reshape / Permute layers move data and stay unquantized.
"""

from igc_keras.optimize.legacy import (output_quantize_config, tf_keras,
                                       tfmot, to_tf_keras)

_CONVOLUTIONS = ("Conv2D", "DepthwiseConv2D", "Dense")
#: Per-channel affine layers tfmot's registry lacks: quantized at the output.
_AFFINE = ("Normalization", "Rescaling")


def _output_quantized_layers(model):
    """Names of the input-normalisation layers, and of BatchNorm layers whose
    input is not a convolution's output (tfmot folds only those)."""
    names = [layer.name for layer in model.layers
             if type(layer).__name__ in _AFFINE]
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        inbound = layer.inbound_nodes[0].inbound_layers
        inbound = inbound[0] if isinstance(inbound, list) else inbound
        if type(inbound).__name__ not in _CONVOLUTIONS:
            names.append(layer.name)
    return names


def quantize_aware(model):
    """A tfmot quantization-aware (fake-quant) tf_keras copy of ``model``.

    Args:
        model: a Keras 3 functional model with a fixed input size (any of
            the package's classifiers, or a fine-tuned one).

    Returns:
        ``tf_keras.Model`` with the weights of ``model``, to fine-tune with
        tf_keras (``compile`` / ``fit`` on the same tf.data pipelines) and
        export with :func:`igc_keras.optimize.export_tflite`.
    """
    tfk, mot = tf_keras(), tfmot()
    keras_q = mot.quantization.keras
    config, scope = output_quantize_config()
    legacy = to_tf_keras(model)
    output_only = set(_output_quantized_layers(legacy))

    def annotate(layer):
        clone = layer.__class__.from_config(layer.get_config())
        if layer.name in output_only:
            return keras_q.quantize_annotate_layer(clone, config)
        return clone
    annotated = tfk.models.clone_model(legacy, clone_function=annotate)
    annotated.set_weights(legacy.get_weights())
    with keras_q.quantize_scope(scope):
        return keras_q.quantize_apply(keras_q.quantize_annotate_model(
            annotated))
