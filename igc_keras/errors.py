"""The package's exceptions. Each message names what to fix: the argument,
recipe key, file or annotation, its value, and what is allowed.
``igc-keras`` prints a :class:`UserError` in one or two lines with exit
status 2 (a traceback only with ``--debug`` or ``IGC_KERAS_DEBUG=1``)."""


class UserError(ValueError):
    """Something the user gave is wrong (an argument, a recipe key, a file,
    an annotation); the message names it, its value and what is allowed."""


class ConfigError(UserError):
    """A recipe, an override or an argument is malformed; the message names
    the key."""


class DataError(UserError):
    """A data file is missing, unreadable or malformed (an image, an
    annotation file, a checkpoint); the message names the file and, where
    there is one, the record in it (e.g. a COCO annotation id)."""


class MissingExtraError(UserError, ImportError):
    """An optional runtime is not installed; the message names the pip
    command that installs it."""


class TrainingError(RuntimeError):
    """A training run cannot go on (its checkpoints are left as they were)."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""


class BackendError(UserError, ImportError):
    """A TensorFlow-only part (training, detection, export, tfmot) was asked
    for while Keras runs on another backend; the message names both."""
