"""Magnitude pruning (tfmot) of the package's Keras 3 models.

:func:`prune` rebuilds the model in tf_keras (:mod:`igc_keras.optimize.
tf_keras_bridge`) and wraps every convolution and dense layer in tfmot's
``prune_low_magnitude`` with a polynomial sparsity schedule: the 1x1, grouped
and full convolutions and the classifier are pruned; tfmot's registry
leaves depthwise kernels dense (their wrapper prunes nothing), so a model's
overall sparsity is a little below the target. Fine-tune it with tf_keras ``fit`` and the
``tfmot.sparsity.keras.UpdatePruningStep()`` callback
(:func:`pruning_callbacks`), then :func:`strip` removes the wrappers and,
given the original model, moves the sparse weights back into Keras 3.
:func:`sparsity` reports the fraction of zero weights; sparse weights
compress, so the exported file shrinks under gzip (what app stores and
over-the-air updates ship), which :func:`compressed_size` measures.
"""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.optimize.prune (tfmot)")

import gzip

import numpy as np

from igc_keras.optimize.tf_keras_bridge import (copy_weights, tf_keras, tfmot,
                                       to_tf_keras)
from igc_keras.walk import walk_layers

PRUNABLE = ("Conv2D", "DepthwiseConv2D", "Dense")


def prune(model, target_sparsity=0.5, begin_step=0, end_step=1000,
          frequency=100, schedule=None):
    """A tf_keras copy of ``model`` whose convolution and dense kernels are
    pruned to ``target_sparsity`` over ``begin_step``..``end_step``.

    Args:
        model: Keras 3 functional model with a fixed input size.
        target_sparsity: final fraction of zero weights per layer, in (0, 1).
        schedule: a ``tfmot.sparsity.keras`` schedule (overrides the
            polynomial ``target_sparsity`` one).

    Returns:
        tf_keras model with tfmot pruning wrappers, weights of ``model``.
    """
    if schedule is None and not 0 < target_sparsity < 1:
        raise ValueError(f"target_sparsity={target_sparsity}; allowed: "
                         f"0 < target_sparsity < 1.")
    if end_step <= begin_step:
        raise ValueError(f"end_step={end_step} must be greater than "
                         f"begin_step={begin_step}.")
    tfk, sparsity_api = tf_keras(), tfmot().sparsity.keras
    schedule = schedule or sparsity_api.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=float(target_sparsity),
        begin_step=begin_step, end_step=end_step, frequency=frequency)
    legacy = to_tf_keras(model)

    def wrap(layer):
        clone = layer.__class__.from_config(layer.get_config())
        if type(layer).__name__ in PRUNABLE:
            return sparsity_api.prune_low_magnitude(clone,
                                                    pruning_schedule=schedule)
        return clone
    pruned = tfk.models.clone_model(legacy, clone_function=wrap)
    for layer in pruned.layers:  # wrappers add mask / threshold variables
        source = layer.layer if hasattr(layer, "pruning_vars") else layer
        original = legacy.get_layer(source.name)
        if original.weights:
            source.set_weights(original.get_weights())
    return pruned


def pruning_callbacks():
    """The callbacks tf_keras ``fit`` needs to advance the pruning schedule."""
    return [tfmot().sparsity.keras.UpdatePruningStep()]


def strip(pruned, like=None):
    """Removes the pruning wrappers.

    Args:
        pruned: a model from :func:`prune` (after fine-tuning).
        like: the Keras 3 model :func:`prune` started from; if given, a
            Keras 3 copy of it with the sparse weights is returned instead.

    Returns:
        the stripped tf_keras model, or the Keras 3 copy.
    """
    stripped = tfmot().sparsity.keras.strip_pruning(pruned)
    if like is None:
        return stripped
    import keras
    copy = keras.models.clone_model(like, recursive=True)
    copy.set_weights(like.get_weights())
    copy_weights(stripped, copy)
    return copy


def sparsity(model):
    """Fraction of exactly-zero kernel weights.

    Returns:
        dict: ``overall`` and ``layers`` ({name: fraction}) over the
        convolution and dense kernels.
    """
    layers, zeros, total = {}, 0, 0
    for layer in walk_layers(model):
        if hasattr(layer, "pruning_vars"):  # a tfmot wrapper: its layer
            layer = layer.layer
        if type(layer).__name__ not in PRUNABLE + ("GroupConv2D",):
            continue
        kernel = np.asarray(layer.get_weights()[0])
        layers[layer.name] = float(np.mean(kernel == 0))
        zeros += int(np.sum(kernel == 0))
        total += kernel.size
    return {"overall": zeros / max(total, 1), "layers": layers}


def compressed_size(path):
    """Bytes of ``path`` after gzip (level 9)."""
    with open(path, "rb") as handle:
        return len(gzip.compress(handle.read(), 9))
