"""TFLite export, the interpreter, and agreement with the Keras model.

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

:func:`run_tflite` runs a file in the TFLite interpreter (quantizing int8
inputs and dequantizing outputs with the file's own scales) and
:func:`compare_tflite` reports top-1 agreement, the largest output
difference and the file size against the Keras model on real images.
"""

import os
import tempfile

import numpy as np
import tensorflow as tf

from igc_keras.walk import walk_layers

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def _is_tf_keras(model):
    return type(model).__module__.startswith(("tf_keras", "tensorflow_model"))


def _is_quantize_aware(model):
    return _is_tf_keras(model) and any(
        type(layer).__name__.startswith("Quantize") for layer in model.layers)


def _saved_model(model, directory):
    if _is_tf_keras(model):
        from igc_keras.optimize.legacy import save_serving
        save_serving(model, directory)
    else:
        model.export(directory, format="tf_saved_model", verbose=False)
    return directory


def representative_images(images, count=100):
    """A converter ``representative_dataset`` from ``(N, H, W, 3)`` images
    (float 0..255, as the model takes them): the first ``count``, one at a
    time."""
    images = np.asarray(images, "float32")[:count]
    if len(images) == 0:
        raise ValueError("representative_data is empty; int8 calibration "
                         "needs real images (about 100).")

    def generate():
        for image in images:
            yield [image[None]]
    return generate


def _configure(converter, quantization, representative_data, int8_io=False,
               integer_builtins=True, per_channel=True):
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
            raise ValueError(
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
        _configure(converter, quantization, representative_data, int8_io,
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
                  group_convolutions="grouped", per_channel=True):
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
        group_convolutions: passed to ``fuse``: ``"grouped"`` (smallest
            file) or ``"dense"`` (block-diagonal kernels: faster in the
            interpreter here, larger file).
        per_channel: ``int8`` / ``dynamic`` weights with a scale per output
            channel (the default). ``False``: one scale per tensor, which
            drops TFLite's per-channel parameters (a float32 scale and an
            int64 zero point per output channel: IGCV3-1.0's int8 file goes
            from 31.8% to 25.6% of the float file,
            ``benchmarks/tflite_size.py``); check the agreement it keeps
            with :func:`compare_tflite`.

    Returns:
        dict: ``path``, ``bytes``, ``quantization``, ``fused``,
        ``group_conv_implementation`` (``native``, ``split``, or ``as
        built`` for models without ``GroupConv2D`` layers and tf_keras
        models, whose grouped convs are native).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization={quantization!r}; allowed: "
                         f"{QUANTIZATIONS}.")
    if int8_io and quantization != "int8":
        raise ValueError(f"int8_io=True needs quantization='int8'; got "
                         f"{quantization!r}.")
    shape = tuple(model.inputs[0].shape)
    if any(d is None for d in shape[1:]):
        raise ValueError(f"model input shape {shape}: TFLite export needs a "
                         f"fixed input size.")
    from igc_keras.optimize.fusion import GROUP_CONVOLUTIONS
    if group_convolutions not in GROUP_CONVOLUTIONS:
        raise ValueError(f"group_convolutions={group_convolutions!r}; "
                         f"allowed: {GROUP_CONVOLUTIONS}.")
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
        attempts = ["native", "split"]
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


def run_tflite(path, images, batch_size=1):
    """Runs a ``.tflite`` file on ``images`` (float 0..255) in the TFLite
    interpreter, one batch at a time.

    Returns:
        ``(N, outputs)`` float32 (int8 outputs dequantized).
    """
    interpreter = tf.lite.Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    images = np.asarray(images, "float32")
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        interpreter.resize_tensor_input(detail["index"], chunk.shape)
        interpreter.allocate_tensors()
        if detail["dtype"] in (np.int8, np.uint8):
            scale, zero = detail["quantization"]
            info = np.iinfo(detail["dtype"])
            chunk = np.clip(np.round(chunk / scale + zero), info.min,
                            info.max).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], chunk)
        interpreter.invoke()
        out_detail = interpreter.get_output_details()[0]
        out = interpreter.get_tensor(out_detail["index"])
        if out_detail["dtype"] in (np.int8, np.uint8):
            scale, zero = out_detail["quantization"]
            out = (out.astype("float32") - zero) * scale
        outputs.append(np.asarray(out, "float32"))
    return np.concatenate(outputs)


def compare_tflite(model, path, images, batch_size=32):
    """Agreement of a ``.tflite`` file with ``model`` on real ``images``.

    Returns:
        dict: ``images``, ``top1_agreement`` (fraction of images whose
        top-1 class is the same), ``max_abs_diff`` (largest output
        difference), ``bytes`` (file size).
    """
    expected = np.asarray(model.predict(np.asarray(images, "float32"),
                                        batch_size=batch_size, verbose=0))
    found = run_tflite(path, images, batch_size=1)
    return {"images": int(len(images)),
            "top1_agreement": float(np.mean(
                expected.argmax(-1) == found.argmax(-1))),
            "max_abs_diff": float(np.abs(expected - found).max()),
            "bytes": os.path.getsize(path)}


def describe_tflite(path):
    """What a ``.tflite`` file holds: ``quantization`` (``int8`` when the
    convolutions run on int8 activations, ``dynamic`` when only weights are
    int8, ``float16``, ``float32``) and ``input_shape``."""
    interpreter = tf.lite.Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kinds = set()
    for op in interpreter._get_ops_details():  # no public op listing
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D",
                             "FULLY_CONNECTED"):
            activation = tensors[op["inputs"][0]]["dtype"]
            weights = tensors[op["inputs"][1]]["dtype"]
            kinds.add("int8" if activation == np.int8 else
                      "dynamic" if weights == np.int8 else
                      "float16" if weights == np.float16 else "float32")
    if not kinds:
        kinds = {"float32"}
    if any(t["dtype"] == np.float16 for t in tensors.values()):
        kinds.add("float16")
    order = ("int8", "dynamic", "float16", "float32")
    return {"quantization": next(k for k in order if k in kinds),
            "input_shape": [int(d) for d in
                            interpreter.get_input_details()[0]["shape"]]}


def tflite_latency(path, runs=50, warmup=5, threads=None):
    """Median batch-1 latency of a ``.tflite`` file in the interpreter, in
    milliseconds (random input of the file's shape and type)."""
    import time
    interpreter = tf.lite.Interpreter(model_path=str(path),
                                      num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        data = rng.integers(info.min, info.max, detail["shape"]).astype(
            detail["dtype"])
    else:
        data = rng.uniform(0, 255, detail["shape"]).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], data)
    times = []
    for i in range(warmup + runs):
        began = time.perf_counter()
        interpreter.invoke()
        if i >= warmup:
            times.append(time.perf_counter() - began)
    return 1000 * float(np.median(times))


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
        raise ValueError(f"quantization={quantization!r}; allowed: "
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
            raise ValueError("quantization='int8' needs representative_data "
                             "(real images).")
        _configure(converter, quantization, representative_data,
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
