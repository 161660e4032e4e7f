"""The package's exceptions. Each message names what to fix: the argument,
recipe key or file, its value, and what is allowed. ``igc-keras`` prints
them in one or two lines (a traceback only with ``--debug``)."""


class ConfigError(ValueError):
    """A recipe, an override or an argument is malformed; the message names
    the key."""


class TrainingError(RuntimeError):
    """A training run cannot go on (its checkpoints are left as they were)."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""
