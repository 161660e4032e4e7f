"""Detector TFLite export: an SSDLite with its post-processing (box
decoding and NMS) on the device, and running such a file."""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.optimize.detector_tflite")

import os
import tempfile

import numpy as np
import tensorflow as tf

from igc_keras.errors import ConfigError
from igc_keras.optimize.tflite_export import QUANTIZATIONS, configure_converter


def _detection_postprocess(max_detections, score_threshold, iou_threshold,
                           num_classes, detections_per_class):
    """A placeholder ``tf.function`` the TFLite converter replaces with its
    built-in ``TFLite_Detection_PostProcess`` op (as the TF Object Detection
    API's TFLite export does): box decoding with the SSD scales 10, 10, 5, 5
    (our variances 0.1, 0.1, 0.2, 0.2) and per-class NMS, on the device."""
    attributes = [
        'name: "TFLite_Detection_PostProcess"',
        f'attr {{ key: "max_detections" value {{ i: {max_detections} }} }}',
        'attr { key: "max_classes_per_detection" value { i: 1 } }',
        f'attr {{ key: "detections_per_class" value {{ i: '
        f'{detections_per_class} }} }}',
        'attr { key: "use_regular_nms" value { b: true } }',
        f'attr {{ key: "nms_score_threshold" value {{ f: '
        f'{score_threshold:.9g} }} }}',
        f'attr {{ key: "nms_iou_threshold" value {{ f: {iou_threshold:.9g} }} }}',
        'attr { key: "y_scale" value { f: 10.0 } }',
        'attr { key: "x_scale" value { f: 10.0 } }',
        'attr { key: "h_scale" value { f: 5.0 } }',
        'attr { key: "w_scale" value { f: 5.0 } }',
        f'attr {{ key: "num_classes" value {{ i: {num_classes} }} }}']

    @tf.function(experimental_implements=" ".join(attributes))
    def postprocess(box_encodings, class_predictions, anchors):
        del box_encodings, class_predictions, anchors  # replaced by the op
        boxes = tf.constant(0.0, tf.float32, name="boxes")
        classes = tf.constant(0.0, tf.float32, name="classes")
        scores = tf.constant(0.0, tf.float32, name="scores")
        count = tf.constant(0.0, tf.float32, name="num_detections")
        return boxes, classes, scores, count
    return postprocess


def export_detector_tflite(detector, path, quantization="float32",
                           representative_data=None):
    """Writes an :class:`~igc_keras.detection.SSDLite` as ``.tflite`` with the
    post-processing on the device (``TFLite_Detection_PostProcess``).

    Input: ``(1, S, S, 3)`` float32 RGB 0..255. Outputs (the TF OD API's
    order): ``boxes (1, K, 4)`` normalised ``yxyx``, ``classes (1, K)``
    contiguous labels (float), ``scores (1, K)``, ``num_detections (1,)``.

    Args:
        quantization: ``float32``, ``float16``, ``dynamic`` or ``int8``
            (``representative_data``: real images at the detector's size).

    Returns:
        dict: ``path``, ``bytes``, ``quantization``.
    """
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization={quantization!r}; allowed: "
                         f"{QUANTIZATIONS}.")
    size = detector.image_size
    anchors = np.asarray(detector.anchors, "float32")
    centred = tf.constant(np.stack([
        (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2,
        anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]], -1))
    postprocess = _detection_postprocess(
        detector.max_detections, max(detector.score_threshold, 1e-8),
        detector.iou_threshold, detector.num_classes, detector.max_detections)

    def serve(images):
        raw = detector(images, training=False)
        scores = tf.nn.softmax(tf.cast(raw["classes"], tf.float32), -1)
        return postprocess(tf.cast(raw["boxes"], tf.float32), scores, centred)

    import keras
    if not detector.built:
        detector(tf.zeros((1, size, size, 3)))
    archive = keras.export.ExportArchive()  # the Keras route: frozen weights
    archive.track(detector)
    archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec(
        (1, size, size, 3), tf.float32, name="images")])
    with tempfile.TemporaryDirectory() as directory:
        archive.write_out(directory, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        converter.allow_custom_ops = True
        if quantization == "int8" and representative_data is None:
            raise ConfigError("quantization='int8' needs representative_data "
                             "(real images).")
        configure_converter(converter, quantization, representative_data,
                            integer_builtins=False)
        content = converter.convert()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(content)
    return {"path": path, "bytes": len(content), "quantization": quantization}


def run_detector_tflite(path, image):
    """Runs a detector file on one ``(S, S, 3)`` image (0..255) through its
    ``serving_default`` signature.

    Returns:
        dict of numpy arrays ``boxes (N, 4)`` normalised ``yxyx``,
        ``classes (N,)`` int contiguous labels, ``scores (N,)``.
    """
    interpreter = tf.lite.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    out = runner(images=np.asarray(image, "float32")[None])
    # the signature's outputs in the order serve() returns them
    boxes, classes, scores, count = (out[f"output_{i}"] for i in range(4))
    count = int(np.asarray(count).reshape(-1)[0])
    return {"boxes": boxes[0, :count], "classes": classes[0, :count].astype(int),
            "scores": scores[0, :count]}
