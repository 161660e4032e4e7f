"""One export for every runtime, checked in that runtime before it returns.

    from igc_keras import optimize
    report = optimize.export(model, "igcv3.onnx", format="onnx",
                             check_data=photos)
    optimize.export(model, "igcv3_ov/igcv3.xml", format="openvino")
    optimize.export(model, "igcv3_int8.tflite", format="tflite",
                    quantization="int8", representative_data=photos)
    optimize.export(model, "igcv3_savedmodel", format="saved_model")

Formats (:data:`FORMATS`): ``onnx`` (ONNX Runtime; ``int8``: its static
quantization), ``openvino`` (IR ``.xml`` + ``.bin``; ``int8``: NNCF
post-training quantization), ``tflite``
(:func:`~igc_keras.optimize.tflite_export.export_tflite`; detectors with
``TFLite_Detection_PostProcess``) and ``saved_model`` (TF Serving, TF.js
converters). Classifiers and :class:`~igc_keras.detection.SSDLite`
detectors; a detector's file returns decoded detections (its
non-max suppression is in the file). The model goes out in its fused
inference form with the group-convolution form the runtime runs fastest
(:data:`~igc_keras.optimize.runtimes.FASTEST_FORMS`; ``group_convolutions``
overrides it).

The check runs the file in its runtime (OpenVINO in float32: its CPU
default is bf16 where the CPU has it) on ``check_data`` — real images;
without them on 4 random images, which checks the outputs, not the
ranking — against the Keras model: ``top1_agreement`` and
``max_abs_diff`` for a classifier, matched detections and the largest
score difference for a detector.
"""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.optimize.export")

import os
import tempfile

import numpy as np

from igc_keras.errors import ConfigError
from igc_keras.model_files import check_output_folder
from igc_keras.optimize import onnx_export
from igc_keras.optimize.runtimes import FORMATS, fastest_form, require
from igc_keras.optimize.serving import image_shape, is_detector, write_serving

#: format -> its quantizations (the first is the default).
QUANTIZATIONS = {
    "onnx": ("float32", "int8"),
    "openvino": ("float32", "int8"),
    "tflite": ("float32", "float16", "dynamic", "int8"),
    "saved_model": ("float32",),
}

#: format -> the file name ending it needs (None: a folder).
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite",
            "saved_model": None}

#: format -> the optional modules its export and check need.
_NEEDS = {"onnx": ("tf2onnx", "onnx", "onnxruntime"),
          "openvino": ("tf2onnx", "onnx", "openvino"),
          "tflite": (), "saved_model": ()}


def check_output_path(path, format, option="path"):
    """Refuses, before any work, an output ``path`` the format cannot take
    or the folder it goes in cannot hold (``option`` names it)."""
    suffix = SUFFIXES[format]
    path = str(path)
    if suffix and not path.endswith(suffix):
        raise ConfigError(f"{option}={path!r}: a {format} file ends with "
                          f"{suffix!r}.")
    if suffix is None and os.path.isfile(path):
        raise ConfigError(f"{option}={path!r} is a file; a SavedModel is a "
                          f"folder.")
    if suffix and os.path.isdir(path):
        raise ConfigError(f"{option}={path!r} is a folder; give a file name.")
    check_output_folder(path, option)


def check_arguments(model, path, format, quantization, representative_data,
                    group_convolutions):
    """Every refusal :func:`export` makes, before any work."""
    if format not in FORMATS:
        raise ConfigError(f"format={format!r}; allowed: {', '.join(FORMATS)}.")
    if quantization not in QUANTIZATIONS[format]:
        raise ConfigError(f"quantization={quantization!r} for format="
                          f"{format!r}; allowed: "
                          f"{', '.join(QUANTIZATIONS[format])}.")
    if quantization == "int8" and representative_data is None:
        raise ConfigError(f"quantization='int8' (format={format!r}) needs "
                          f"representative_data: real images (about 100).")
    from igc_keras.optimize.fusion import check_group_convolutions
    check_group_convolutions(group_convolutions, "export")
    check_output_path(path, format)
    image_shape(model)
    for module in _NEEDS[format] + (
            ("nncf",) if format == "openvino" and quantization == "int8"
            else ()):
        require(module, f"export(format={format!r})")


def export(model, path, format="onnx", quantization="float32",
           representative_data=None, check_data=None, group_convolutions=None,
           fuse=True, int8_io=False, per_channel=True):
    """Writes ``model`` for a runtime and checks it there (see the module
    docstring).

    Args:
        model: a Keras classifier taking RGB 0..255 (or any single-input
            functional model), or an ``SSDLite`` detector.
        path: ``.onnx`` / ``.xml`` / ``.tflite`` file, or the SavedModel's
            folder.
        format: one of :data:`FORMATS`.
        quantization: one of :data:`QUANTIZATIONS` ``[format]``.
        representative_data: ``(N, H, W, 3)`` real images for ``int8``
            calibration (100 are used).
        check_data: ``(N, H, W, 3)`` real images for the check.
        group_convolutions: ``native`` / ``split`` / ``dense``; default the
            runtime's fastest (:func:`~igc_keras.optimize.runtimes.
            fastest_form`).
        fuse: export the fused inference form (default) or, ``False``, the
            model as built.
        int8_io, per_channel: TFLite int8 options
            (:func:`~igc_keras.optimize.tflite_export.export_tflite`;
            ``per_channel`` also for ONNX int8).

    Returns:
        dict: ``path``, ``format``, ``quantization``, ``bytes``, ``fused``,
        ``group_convolutions``, ``check`` (see :func:`check_export`).
    """
    check_arguments(model, path, format, quantization, representative_data,
                    group_convolutions)
    form = group_convolutions or fastest_form(format)
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    # written and checked beside the target; moved into place once checked
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as work:
        staged = os.path.join(work, os.path.basename(os.path.abspath(path)))
        if format == "tflite":
            info = _tflite(model, staged, quantization, representative_data,
                           form, fuse, int8_io, per_channel)
        else:
            info = _through_saved_model(model, staged, work, format,
                                        quantization, representative_data,
                                        form, fuse, per_channel)
        report = {"path": path, "format": format,
                  "quantization": quantization,
                  "bytes": onnx_export.file_bytes(staged), **info}
        report["check"] = check_export(model, staged, format, check_data)
        if format == "openvino":
            onnx_export.replace(onnx_export.openvino_files(staged)[1],
                                onnx_export.openvino_files(path)[1])
        onnx_export.replace(staged, path)
    return report


def _tflite(model, path, quantization, representative_data, form, fuse,
            int8_io, per_channel):
    if is_detector(model):
        from igc_keras.optimize.detector_tflite import export_detector_tflite
        export_detector_tflite(model, path, quantization, representative_data)
        return {"fused": False, "group_convolutions": "as built"}
    from igc_keras.optimize.tflite_export import export_tflite
    info = export_tflite(model, path, quantization, representative_data,
                         int8_io=int8_io, fuse=fuse, group_convolutions=form,
                         per_channel=per_channel)
    return {"fused": info["fused"], "group_convolutions": (
        "dense" if form == "dense" and info["fused"]
        else info["group_conv_implementation"])}


def _through_saved_model(model, path, work, format, quantization,
                         representative_data, form, fuse, per_channel):
    saved = path if format == "saved_model" else os.path.join(work, "saved")
    info = write_serving(model, saved, form, fuse,
                         where=f"export(format={format!r})")
    if format == "saved_model":
        return {"fused": info["fused"], "group_convolutions": form}
    onnx_path = path if format == "onnx" and quantization == "float32" else (
        os.path.join(work, "float32.onnx"))
    onnx_export.write_onnx(saved, onnx_path, model, format)
    if format == "openvino":
        onnx_export.write_openvino(onnx_path, path, representative_data
                                   if quantization == "int8" else None)
    elif quantization == "int8":
        onnx_export.quantize_onnx(onnx_path, path, representative_data,
                                  per_channel)
    return {"fused": info["fused"], "group_convolutions": form}


def _run(path, format, images):
    if format == "saved_model":
        import tensorflow as tf
        serve = tf.saved_model.load(path).signatures["serve"]
        outputs = [serve(images=tf.constant(image[None]))
                   for image in images]
        return {name: np.concatenate([o[name].numpy() for o in outputs])
                for name in outputs[0]}
    return onnx_export.run_file(path, images, batch_size=1)


def check_export(model, path, format, images=None):
    """Runs the file at ``path`` in its runtime on ``images`` (float
    0..255; None: 4 random images) beside ``model``.

    Returns:
        dict: ``runtime``, ``images``, ``inputs`` (``real`` / ``random``)
        and, for a classifier, ``top1_agreement``, ``max_abs_diff``; for a
        detector, ``detections`` (the model's), ``matched`` (the fraction
        of them the file finds: same class, IoU >= 0.9) and
        ``max_score_diff`` (between the sorted scores).
    """
    shape = image_shape(model)
    inputs = "real"
    if images is None:
        inputs = "random"
        images = np.random.default_rng(0).uniform(0, 255, (4,) + shape)
    images = np.asarray(images, "float32")
    if images.shape[1:] != shape:
        raise ConfigError(f"check images have shape {images.shape[1:]}; the "
                          f"model takes {shape}.")
    runtime = {"onnx": "onnxruntime", "openvino": "openvino f32 (its CPU "
               "default here is bf16)", "tflite": "tflite interpreter",
               "saved_model": "tensorflow"}[format]
    report = {"runtime": runtime, "images": int(len(images)),
              "inputs": inputs}
    if is_detector(model):
        expected = model.predict(images, batch_size=8, verbose=0)
        if format == "tflite":
            from igc_keras.optimize.detector_tflite import run_detector_tflite
            found = [run_detector_tflite(path, image) for image in images]
        else:
            found = _per_image(_run(path, format, images))
        return {**report, **detection_agreement(_per_image(expected), found)}
    expected = np.asarray(model.predict(images, batch_size=8, verbose=0))
    if format == "tflite":
        from igc_keras.optimize.tflite_interpreter import run_tflite
        found = run_tflite(path, images)
    else:
        found = _run(path, format, images)["outputs"]
    found = np.asarray(found, "float32").reshape(expected.shape)
    return {**report, "top1_agreement": float(np.mean(
        expected.reshape(len(images), -1).argmax(-1)
        == found.reshape(len(images), -1).argmax(-1))),
        "max_abs_diff": float(np.abs(expected - found).max())}


def _per_image(batch):
    counts = np.asarray(batch["num_detections"]).reshape(-1).astype(int)
    return [{key: np.asarray(batch[key])[i, :count]
             for key in ("boxes", "scores", "classes")}
            for i, count in enumerate(counts)]


def detection_agreement(expected, found, iou=0.9):
    """How many of ``expected``'s detections (one dict ``boxes`` / ``scores``
    / ``classes`` per image) ``found`` has: same class, IoU >= ``iou``."""
    import keras
    total = matched = 0
    score_diff = 0.0
    for want, got in zip(expected, found):
        total += len(want["scores"])
        count = min(len(want["scores"]), len(got["scores"]))
        if count:
            score_diff = max(score_diff, float(np.abs(
                np.sort(want["scores"])[::-1][:count]
                - np.sort(got["scores"])[::-1][:count]).max()))
        if len(want["scores"]) and len(got["scores"]):
            overlaps = np.asarray(keras.utils.bounding_boxes.compute_iou(
                np.asarray(want["boxes"], "float32"),
                np.asarray(got["boxes"], "float32"), "yxyx"))
            same = (np.asarray(want["classes"]).astype(int)[:, None]
                    == np.asarray(got["classes"]).astype(int)[None, :])
            matched += int(np.sum(np.any((overlaps >= iou) & same, axis=1)))
    return {"detections": total,
            "matched": matched / total if total else 1.0,
            "max_score_diff": score_diff}
