"""The Keras backend this process runs on, and what needs TensorFlow.

The models (layers, builders, ``pyramid_outputs``, ``design``, ``fuse``,
``.keras`` and weights files, :mod:`igc_keras.hub`) run on every Keras 3
backend: TensorFlow, JAX and PyTorch. Training (``tf.data``,
``tf.distribute``), SSDLite detection, TFLite / ONNX / OpenVINO export and
tfmot run on TensorFlow only: :func:`require_tensorflow` says so in one line
when one of them is asked for under another backend.
"""

from igc_keras.errors import BackendError


def backend():
    """The Keras backend's name: ``"tensorflow"``, ``"jax"``, ``"torch"``."""
    import keras
    return keras.backend.backend()


def require_tensorflow(feature):
    """Raises :class:`~igc_keras.errors.BackendError` unless Keras runs on
    TensorFlow; ``feature`` names what was asked for."""
    name = backend()
    if name != "tensorflow":
        raise BackendError(
            f"{feature} runs on the TensorFlow backend only; Keras runs on "
            f"{name!r} here: start the process with KERAS_BACKEND=tensorflow.")


def accelerator_present():
    """Whether the backend sees a GPU (or TPU), asked of the backend itself
    (TensorFlow is imported only when it is the backend)."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf
        return bool(tf.config.list_physical_devices("GPU")
                    or tf.config.list_physical_devices("TPU"))
    if name == "jax":
        import jax
        return jax.default_backend() != "cpu"
    if name == "torch":
        import torch
        return torch.cuda.is_available()
    return False
