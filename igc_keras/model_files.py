"""Model files in and out: reading ``.keras`` files (a missing, misnamed or
damaged file is a :class:`~igc_keras.errors.DataError` naming the option
or key it came from, the file and what went wrong) and refusing an output
path whose folder cannot take it, before any work."""

import os

from igc_keras.errors import ConfigError, DataError


def check_output_folder(path, option):
    """Refuses ``path`` (named by ``option``) when the folder it goes in is
    missing or not writable."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"{option} {path!r}: folder {folder!r} does not "
                          f"exist.")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {path!r}: folder {folder!r} is not "
                          f"writable.")


def register_serializables():
    """Registers the package's Keras classes with Keras' serialization: the
    IGC layers on every backend; the SSDLite detector and the warmup
    schedule where Keras runs on TensorFlow (they are TensorFlow-only)."""
    import igc_keras.layers  # noqa: F401  (the IGC layers)
    from igc_keras.backends import backend
    if backend() == "tensorflow":
        import igc_keras.detection.detector  # noqa: F401  (SSDLite)
        import igc_keras.training.schedules  # noqa: F401  (warmup schedule)


def load_keras_model(path, option="model", compile=True):
    """``keras.saving.load_model(path)`` of an existing ``.keras`` file,
    with the package's serializable classes registered.

    Raises:
        DataError: naming ``option`` and ``path``: the file is missing, is
            not a ``.keras`` file, or Keras cannot load it (a damaged zip, an
            unknown layer class).
    """
    import keras

    register_serializables()
    if "://" not in str(path) and not os.path.isfile(path):  # gs:// etc.
        raise DataError(f"{option} {path!r} does not exist.")
    if not str(path).endswith(".keras"):
        raise DataError(f"{option} {path!r}: expected a .keras model file.")
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as error:  # a damaged zip, an unknown layer class
        first = str(error).strip().splitlines()
        raise DataError(f"{option} {path!r} is not a loadable Keras model "
                        f"({type(error).__name__}: {first[0] if first else ''})"
                        f".") from error
