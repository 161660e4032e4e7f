"""The serving graph every export starts from: a frozen SavedModel of a
model's inference form.

:func:`write_serving` writes a SavedModel (Keras' ``ExportArchive``: weights
frozen in) whose ``serve`` endpoint takes ``images`` ``(B, H, W, 3)``
float32 RGB 0..255 and returns

* a classifier / feature extractor: ``{"outputs": (B, ...)}``;
* an :class:`~igc_keras.detection.SSDLite`: decoded detections with the
  post-processing inside the graph (``boxes (B, K, 4)`` normalised
  ``yxyx``, ``scores (B, K)``, ``classes (B, K)`` contiguous labels,
  ``num_detections (B,)``).

The network inside is its :func:`~igc_keras.optimize.fuse` form with the
``group_convolutions`` the caller's runtime runs fastest
(:mod:`igc_keras.optimize.runtimes`). ONNX and OpenVINO are converted from
this SavedModel (:mod:`igc_keras.optimize.onnx_export`).
"""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.optimize.serving")

import warnings

import keras
import tensorflow as tf

from igc_keras.errors import ConfigError


def is_detector(model):
    from igc_keras.detection.detector import SSDLite
    return isinstance(model, SSDLite)


def image_shape(model):
    """``(H, W, 3)`` of the images ``model`` takes (fixed sizes only)."""
    if is_detector(model):
        return (model.image_size, model.image_size, 3)
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise ConfigError(f"model {model.name!r} takes inputs of shape "
                          f"{(None,) + shape}; export needs images of a fixed "
                          f"(height, width, channels) size.")
    return shape


def _fused(model, group_convolutions, where):
    from igc_keras.optimize.fusion import fuse
    try:
        return fuse(model, group_convolutions=group_convolutions), True
    except (ValueError, TypeError, KeyError) as error:
        warnings.warn(f"{where}: exporting model {model.name!r} as built; it "
                      f"could not be fused ({error})")
        return model, False


def inference_network(model, group_convolutions, fuse=True, where="export"):
    """``(compute, fused, tracked)``: ``compute(images)`` gives ``model``'s
    outputs at inference (a detector: its raw head outputs as ``{"boxes",
    "classes"}``) from its fused form unless ``fuse=False``; ``tracked``:
    the Keras objects whose weights it reads (for ``ExportArchive``)."""
    if is_detector(model):
        raw = model.network.output
        network = keras.Model(model.network.inputs,
                              [raw["boxes"], raw["classes"]],
                              name=model.network.name)
        fused = False
        if fuse:
            network, fused = _fused(network, group_convolutions, where)

        def detector_raw(images):
            boxes, classes = network(model.normalize(images), training=False)
            return {"boxes": boxes, "classes": classes}
        return detector_raw, fused, [network, model.normalize]
    network, fused = model, False
    if fuse:
        network, fused = _fused(model, group_convolutions, where)
    return (lambda images: network(images, training=False)), fused, [network]


def write_serving(model, directory, group_convolutions=None, fuse=True,
                  batch_size=None, where="export"):
    """Writes the serving SavedModel of ``model`` to ``directory`` (see the
    module docstring); ``batch_size`` None: any batch.

    Returns:
        dict: ``fused`` (whether the inference form was used),
        ``detector``.
    """
    shape = image_shape(model)
    compute, fused, tracked = inference_network(model, group_convolutions,
                                                fuse, where)
    detector = is_detector(model)

    def serve(images):
        outputs = compute(images)
        if detector:
            return model.decode(outputs)
        return {"outputs": outputs}

    archive = keras.export.ExportArchive()
    for item in tracked:
        archive.track(item)
    archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec(
        (batch_size,) + shape, tf.float32, name="images")])
    archive.write_out(directory, verbose=False)
    return {"fused": fused, "detector": detector}
