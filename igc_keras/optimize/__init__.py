"""Model optimization and deployment: QAT, pruning, and export to ONNX
Runtime, OpenVINO, TFLite and SavedModel.

    from igc_keras import optimize
    qat = optimize.quantize_aware(model, representative_data=images)  # QAT
    pruned = optimize.prune(model, target_sparsity=0.5, end_step=2000)
    optimize.export_tflite(model, "igcv3.tflite", quantization="int8",
                           representative_data=images)
    optimize.compare_tflite(model, "igcv3.tflite", images)
    optimize.export(model, "igcv3.onnx", format="onnx", check_data=images)
    optimize.fine_tune(qat, train_ds, epochs=1)     # tf_keras fit, same data
    fused = optimize.fuse(model)   # inference form: no permutation, BN folded

From a recipe, ``task.quantization`` / ``task.pruning`` run the same with
the recipe's data, optimizer and schedule
(:mod:`igc_keras.training.model_optimization`).

tfmot works only on tf_keras (Keras 2) models: :mod:`~igc_keras.optimize.
tf_keras_bridge` rebuilds a Keras 3 model there from its own graph (the one compat
point) and moves weights by layer name. Nothing here imports tf_keras or
tfmot until a function that needs them is called.
"""

_EXPORTS = {
    "fuse": "igc_keras.optimize.fusion",
    "export": "igc_keras.optimize.deploy",
    "check_export": "igc_keras.optimize.deploy",
    "FORMATS": "igc_keras.optimize.runtimes",
    "FASTEST_FORMS": "igc_keras.optimize.runtimes",
    "quantize_aware": "igc_keras.optimize.quantization",
    "prune": "igc_keras.optimize.pruning",
    "pruning_callbacks": "igc_keras.optimize.pruning",
    "strip": "igc_keras.optimize.pruning",
    "sparsity": "igc_keras.optimize.pruning",
    "compressed_size": "igc_keras.optimize.pruning",
    "to_tf_keras": "igc_keras.optimize.tf_keras_bridge",
    "copy_weights": "igc_keras.optimize.tf_keras_bridge",
    "fine_tune": "igc_keras.optimize.tf_keras_bridge",
    "export_tflite": "igc_keras.optimize.tflite_export",
    "QUANTIZATIONS": "igc_keras.optimize.tflite_export",
    "run_tflite": "igc_keras.optimize.tflite_interpreter",
    "compare_tflite": "igc_keras.optimize.tflite_interpreter",
    "describe_tflite": "igc_keras.optimize.tflite_interpreter",
    "tflite_latency": "igc_keras.optimize.tflite_interpreter",
    "export_detector_tflite": "igc_keras.optimize.detector_tflite",
    "run_detector_tflite": "igc_keras.optimize.detector_tflite",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'igc_keras.optimize' has no attribute "
                         f"{name!r}")
