"""TFLite export: converter setup and :func:`export_tflite`.

:func:`export_tflite` converts a Keras 3 model (through a SavedModel, the
route that is safe for Keras 3) or a tf_keras model from the bridge (QAT /
pruned) to ``.tflite``:

* ``float32``; ``float16`` (weights stored as float16); ``dynamic``
  (int8 weights, float activations); ``int8`` (full integer: int8 weights
  and activations calibrated on ``representative_data``; a QAT model
  carries its own ranges). ``int8_io=True`` also makes the input and output
  int8 (for integer-only accelerators).
* Grouped convolutions: the converter is tried on the model as it is
  (native grouped ``Conv2D``); if conversion or the interpreter fails, the
  ``split`` implementation (per-group convs, same weights) is converted
  instead. The implementation used is reported.

Running and checking the files: :mod:`igc_keras.optimize.tflite_interpreter`;
detectors: :mod:`igc_keras.optimize.detector_tflite`.
"""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.optimize.export_tflite")

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from igc_keras.errors import ConfigError
from igc_keras.walk import walk_layers

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def _is_tf_keras(model):
    return type(model).__module__.startswith(("tf_keras", "tensorflow_model"))


def _is_quantize_aware(model):
    return _is_tf_keras(model) and any(
        type(layer).__name__.startswith("Quantize") for layer in model.layers)


def _saved_model(model, directory):
    if _is_tf_keras(model):
        from igc_keras.optimize.tf_keras_bridge import save_serving
        save_serving(model, directory)
    else:
        model.export(directory, format="tf_saved_model", verbose=False)
    return directory


def representative_images(images, count=100):
    """A converter ``representative_dataset`` from ``(N, H, W, 3)`` images
    (float 0..255, as the model takes them): the first ``count``, one at a
    time, with a Keras progress bar of the calibration."""
    images = np.asarray(images, "float32")[:count]
    if len(images) == 0:
        raise ConfigError("representative_data is empty; int8 calibration "
                         "needs real images (about 100).")

    def generate():
        # the converter calibrates while it draws: the bar is its progress
        progress = keras.utils.Progbar(len(images), unit_name="image")
        for index, image in enumerate(images):
            yield [image[None]]
            progress.update(index + 1)
    return generate


def configure_converter(converter, quantization, representative_data,
                        int8_io=False, integer_builtins=True, per_channel=True):
    """Sets ``converter`` up for ``quantization`` (see the module docstring).
    ``integer_builtins=False``: do not force int8 builtins (QAT graphs carry
    their ranges; detectors keep their post-processing custom op).
    ``per_channel=False``: one scale per weight tensor (the converter's
    ``_experimental_disable_per_channel``; it has no public switch)."""
    if quantization in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if not per_channel:
        converter._experimental_disable_per_channel = True
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        if representative_data is not None:
            converter.representative_dataset = representative_images(
                representative_data)
        elif integer_builtins:
            raise ConfigError(
                "quantization='int8' needs representative_data (real "
                "images) unless the model was trained quantization-aware.")
        if integer_builtins:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter


def _convert(model, quantization, representative_data, int8_io,
             per_channel=True):
    with tempfile.TemporaryDirectory() as directory:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            _saved_model(model, os.path.join(directory, "saved")))
        configure_converter(converter, quantization, representative_data,
                            int8_io,
                            integer_builtins=not _is_quantize_aware(model),
                            per_channel=per_channel)
        return converter.convert()


def _runs(content, shape):
    interpreter = tf.lite.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(
        [1] + list(shape[1:]), detail["dtype"]))
    interpreter.invoke()


def export_tflite(model, path, quantization="float32",
                  representative_data=None, int8_io=False, fuse=True,
                  group_convolutions=None, per_channel=True):
    """Writes ``model`` as a ``.tflite`` file (see the module docstring).

    Args:
        model: Keras 3 model, or a tf_keras model from
            :func:`~igc_keras.optimize.quantize_aware` /
            :func:`~igc_keras.optimize.prune`.
        path: output file.
        quantization: one of :data:`QUANTIZATIONS`.
        representative_data: ``(N, H, W, 3)`` real images (0..255) for
            ``int8`` calibration (100 are used).
        int8_io: int8 input and output tensors (``int8`` only).
        fuse: convert the inference form of a Keras 3 functional model
            (:func:`~igc_keras.optimize.fuse`: permutations folded into the
            group convolutions, BatchNorm folded; same outputs, no
            TRANSPOSE in the file, faster in the interpreter). A model
            ``fuse`` cannot rebuild is converted as built, with a warning.
        group_convolutions: the group convolutions' form (``fuse``'s, in
            :class:`~igc_keras.layers.GroupConv2D`'s vocabulary): None tries
            ``"native"`` then ``"split"`` (smallest file); ``"native"`` /
            ``"split"`` only that one; ``"dense"`` block-diagonal kernels
            (larger file; speeds in ``benchmarks/README.md``).
        per_channel: ``int8`` / ``dynamic`` weights with a scale per output
            channel (the default). ``False``: one scale per tensor, which
            drops TFLite's per-channel parameters (a float32 scale and an
            int64 zero point per output channel; sizes in
            ``benchmarks/README.md``); check the agreement it keeps with
            :func:`~igc_keras.optimize.tflite_interpreter.compare_tflite`.

    Returns:
        dict: ``path``, ``bytes``, ``quantization``, ``fused``,
        ``group_conv_implementation`` (``native``, ``split``, or ``as
        built`` for models without ``GroupConv2D`` layers and tf_keras
        models, whose grouped convs are native).
    """
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization={quantization!r}; allowed: "
                         f"{QUANTIZATIONS}.")
    if int8_io and quantization != "int8":
        raise ConfigError(f"int8_io=True needs quantization='int8'; got "
                         f"{quantization!r}.")
    shape = tuple(model.inputs[0].shape)
    if any(d is None for d in shape[1:]):
        raise ConfigError(f"model input shape {shape}: TFLite export needs a "
                         f"fixed input size.")
    from igc_keras.optimize.fusion import check_group_convolutions
    check_group_convolutions(group_convolutions, "export_tflite")
    fused = False
    if fuse and not _is_tf_keras(model):
        from igc_keras.optimize.fusion import fuse as fuse_model
        try:
            model, fused = fuse_model(
                model, group_convolutions=group_convolutions), True
        except (ValueError, TypeError, KeyError) as error:
            import warnings
            warnings.warn(f"export_tflite: converting the model as built; "
                          f"it could not be fused ({error})")
    attempts = ["as built"]
    from igc_keras.layers import GroupConv2D
    if not _is_tf_keras(model) and any(
            isinstance(layer, GroupConv2D) for layer in walk_layers(model)):
        attempts = (["native", "split"] if group_convolutions in (None,
                                                                  "dense")
                    else [group_convolutions])
    errors = []
    for implementation in attempts:
        candidate = model
        if implementation != "as built":
            from igc_keras.layers import with_group_conv_implementation
            candidate = with_group_conv_implementation(model, implementation)
        try:
            content = _convert(candidate, quantization, representative_data,
                               int8_io, per_channel)
            _runs(content, shape)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            if "representative_data" in str(error):
                raise
            errors.append(f"{implementation}: {error}")
            continue
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
        return {"path": path, "bytes": len(content),
                "quantization": quantization, "fused": fused,
                "group_conv_implementation": implementation}
    raise RuntimeError("TFLite conversion failed with every group-conv "
                       "implementation:\n" + "\n".join(errors))
