"""Quantization-aware training (tfmot) of the package's Keras 3 models.

:func:`quantize_aware` rebuilds the model in tf_keras through the bridge
(:mod:`igc_keras.optimize.tf_keras_bridge`) and applies tfmot's default 8-bit scheme:
per-channel symmetric int8 weights, per-tensor asymmetric int8 activations,
BatchNorm folded into the convolution before it (grouped, depthwise and
dense ``Conv2D`` alike). BatchNorms that do not follow a convolution
(IGCV1 places one after the channel permutation) and the input
normalisation layers get an output-only quantize config
(:func:`igc_keras.optimize.tf_keras_bridge.output_quantize_config`): TFLite runs them
as int8 multiply-add. The permutation's
Reshape / Permute layers move data and stay unquantized.

Activation ranges: tfmot starts every activation quantizer at [-6, 6] and
moves it by an exponential moving average of decay 0.999 per training step,
so a fine-tune of a few hundred steps keeps ranges that clip the linear
tensors (projections, residual sums, logits) or waste levels on the ReLU6
ones; its weight ranges are set at the first training step and are [-6, 6]
until then, so an untrained QAT model predicts nothing useful. Given
``representative_data``, :func:`quantize_aware` first sets the weight ranges
as tfmot's first training step would (one training-mode call, whose
BatchNorm statistics updates are undone) and each activation range to the
min / max of what that layer outputs on those real images (inference mode,
as the TFLite converter calibrates post-training), so the QAT model starts
where post-training int8 quantization is and fine-tuning improves on it.
"""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.optimize.quantize_aware (tfmot)")

import numpy as np

from igc_keras.optimize.tf_keras_bridge import (output_quantize_config, tf_keras,
                                       tfmot, to_tf_keras)

#: tfmot's activation-range variables (``<kind>_min`` / ``<kind>_max``): a
#: wrapped layer's output (its post-activation output when the layer has a
#: built-in activation) and the model input's.
_RANGE_KINDS = ("output", "post_activation", "quantize_layer")

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


def _range_variables(layer):
    """``{"min": variable, "max": variable}`` of a QAT layer's activation
    range, or None. A layer with a pre-activation range (none of the
    package's layers) is left to tfmot's own estimate."""
    found = {}
    # the input's QuantizeLayer names its range after itself
    # (quantize_layer, quantize_layer_1, ... in one process)
    kinds = _RANGE_KINDS + (layer.name,)
    for variable in layer.non_trainable_weights:
        short = variable.name.split("/")[-1].split(":")[0]
        for kind in kinds:
            for end in ("min", "max"):
                if short == f"{kind}_{end}":
                    found[end] = variable
    names = {v.name.split("/")[-1] for v in layer.non_trainable_weights}
    if any(name.startswith("pre_activation") for name in names):
        return None
    return found if len(found) == 2 else None


def calibrate_ranges(qat, legacy, images, batch_size=16, verbose=1):
    """Sets the weight and activation ranges of a QAT model from real images
    (see the module docstring).

    Args:
        qat: the tfmot model :func:`quantize_aware` built from ``legacy``.
        legacy: the unquantized tf_keras rebuild (same layer names).
        images: ``(N, H, W, 3)`` images as the model takes them (RGB
            0..255), e.g. 100-1,000 training images.
        batch_size: images per inference call (every layer's output of a
            batch is held at once).
        verbose: a Keras progress bar over the images (0: none).

    Returns:
        the number of activation ranges set.
    """
    images = np.asarray(images, "float32")
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"representative_data must be (N, H, W, C) images "
                         f"with N >= 1; got shape {images.shape}.")
    tfk = tf_keras()
    # weight ranges: tfmot's own last-value update in a training-mode call;
    # every other variable it touches (BatchNorm statistics, step counters)
    # is put back
    kept = [(variable, variable.numpy()) for variable in qat.variables
            if not variable.name.split(":")[0].endswith(("_min", "_max"))]
    qat(images[:batch_size], training=True)
    for variable, value in kept:
        variable.assign(value)
    targets, tensors = [], []
    for layer in qat.layers:
        variables = _range_variables(layer)
        if variables is None:
            continue
        if type(layer).__name__ == "QuantizeLayer":
            tensor = legacy.inputs[0]
        elif hasattr(layer, "layer") and layer.layer.name in {
                item.name for item in legacy.layers}:
            tensor = legacy.get_layer(layer.layer.name).output
        else:
            continue
        targets.append(variables)
        tensors.append(tensor)
    probe = tfk.Model(legacy.inputs, tensors)
    low = np.full(len(tensors), np.inf)
    high = np.full(len(tensors), -np.inf)
    progress = tfk.utils.Progbar(len(images), verbose=verbose,
                                 unit_name="image")
    for start in range(0, len(images), batch_size):
        outputs = probe(images[start:start + batch_size], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for index, output in enumerate(outputs):
            value = np.asarray(output)
            low[index] = min(low[index], float(value.min()))
            high[index] = max(high[index], float(value.max()))
        progress.add(len(images[start:start + batch_size]))
    for variables, minimum, maximum in zip(targets, low, high):
        # TFLite needs 0 inside every range
        variables["min"].assign(np.full(variables["min"].shape,
                                        min(minimum, 0.0), "float32"))
        variables["max"].assign(np.full(variables["max"].shape,
                                        max(maximum, 0.0), "float32"))
    return len(targets)


def quantize_aware(model, representative_data=None):
    """A tfmot quantization-aware (fake-quant) tf_keras copy of ``model``.

    Args:
        model: a Keras 3 functional model with a fixed input size (any of
            the package's classifiers, or a fine-tuned one).
        representative_data: optional ``(N, H, W, 3)`` real images (RGB
            0..255): the activation ranges start at their min / max
            (:func:`calibrate_ranges`) instead of tfmot's [-6, 6].

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
        qat = keras_q.quantize_apply(keras_q.quantize_annotate_model(
            annotated))
    if representative_data is not None:
        calibrate_ranges(qat, legacy, representative_data)
    return qat
