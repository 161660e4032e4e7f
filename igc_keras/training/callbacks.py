"""The callbacks every training loop shares (Keras ``fit``, the
``strategy.run`` loop through ``keras.callbacks.CallbackList`` and, through
the tf_keras bridge's adapter, the tfmot loop).

* :class:`StopOnNonFiniteLoss` raises :class:`~igc_keras.errors.
  NonFiniteLossError` at the first training step (or epoch end) whose loss is
  NaN or infinite, naming the epoch and step. It comes first in every list,
  so no later callback (backup, checkpoints, logs) sees that epoch.
* :class:`SaveModel` writes ``last.keras`` each epoch, or with a
  ``monitor`` ``best.keras`` when the monitored value improves. Files are
  written to a temporary name and renamed into place (a kill never leaves
  half a file), and the best value is kept in ``best.json`` beside it, so a
  resumed run replaces ``best.keras`` only with a better model. Non-finite
  values never count as an improvement.
* :class:`EpochLog` is Keras' ``CSVLogger`` (``log.csv``) with one row per
  epoch across resumed runs. Every loop writes an epoch's log and models
  before its resume point (backup or checkpoint), so a run killed between
  the two redoes that epoch: the first row a run writes replaces the rows of
  that epoch and later ones, and a row cut short by a kill.
"""

import csv
import json
import math
import os

import keras

from igc_keras.errors import NonFiniteLossError, TrainingError


def write_json(path, value):
    """``value`` as JSON at ``path``, written atomically; non-finite floats
    become ``null`` (the file is always valid JSON)."""
    temporary = f"{path}.partial"
    with open(temporary, "w") as handle:
        json.dump(finite_or_none(value), handle, indent=2, allow_nan=False)
    os.replace(temporary, path)


def finite_or_none(value):
    """``value`` with every NaN / infinite float replaced by None."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at a NaN / infinite loss with an error that says where
    and what usually causes it (see the module docstring)."""

    def __init__(self, steps_per_epoch=None):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = _number((logs or {}).get("loss"))
        if loss is not None and not math.isfinite(loss):
            steps = (f" of {self.steps_per_epoch}" if self.steps_per_epoch
                     else "")
            self._stop(f"the training loss is {loss} at epoch {self.epoch + 1},"
                       f" step {batch + 1}{steps}")

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            value = _number(value)
            if "loss" in name and value is not None and not math.isfinite(
                    value):
                self._stop(f"{name} is {value} at the end of epoch "
                           f"{epoch + 1}")

    @staticmethod
    def _stop(where):
        raise NonFiniteLossError(
            f"Training stopped: {where}. No checkpoint was written from it. "
            f"Usual causes: a learning rate too high for the batch "
            f"(trainer.learning_rate.initial_learning_rate, warmup), or bad "
            f"input (images or labels out of range).")


class SaveModel(keras.callbacks.Callback):
    """Saves the model at each epoch end, or only on improvement of
    ``monitor`` (see the module docstring).

    Args:
        path: the ``.keras`` file.
        monitor: a log key (``val_top1``), or None to save every epoch.
        mode: ``max`` or ``min``.
        state: the JSON file holding the best value (default ``path`` with
            ``.json`` for ``.keras``).
        save: ``save(model, path)``; default ``model.save(path)``. The path it
            gets is a temporary one, renamed into place afterwards.
        suffix: the temporary file's ending (what ``save`` needs to see).
        chief: whether this process writes (other workers skip).
    """

    def __init__(self, path, monitor=None, mode="max", state=None, save=None,
                 suffix=".keras", chief=True):
        super().__init__()
        self.path, self.monitor, self.mode = path, monitor, mode
        self.state = state or os.path.splitext(path)[0] + ".json"
        self.save = save or (lambda model, target: model.save(target))
        self.suffix, self.chief = suffix, chief
        self.best = None

    def on_train_begin(self, logs=None):
        if self.monitor and os.path.exists(self.state):
            try:
                with open(self.state) as handle:
                    saved = json.load(handle)
                saved.get("monitor")
            except (OSError, ValueError, AttributeError) as error:
                raise TrainingError(
                    f"{self.state!r} (the best model's score) cannot be read "
                    f"({error}); remove it to let this run start a new best "
                    f"{os.path.basename(self.path)}.") from error
            if saved.get("monitor") == self.monitor:
                self.best = saved.get("value")

    def improved(self, value):
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        if not self.chief:
            return
        logs = logs or {}
        value = _number(logs.get(self.monitor)) if self.monitor else None
        if self.monitor and not self.improved(value):
            return
        temporary = f"{self.path}.partial{self.suffix}"
        self.save(self.model, temporary)
        if self.monitor:
            # the value is recorded before the file moves in: a kill between
            # the two leaves the older, worse file under a better value, so
            # best.keras is still only ever replaced by a better model
            self.best = value
            write_json(self.state, {"monitor": self.monitor, "mode": self.mode,
                                    "value": value, "epoch": epoch + 1})
        replace(temporary, self.path)


def replace(source, target):
    """Moves a file or a folder ``source`` onto ``target`` (a folder is swapped
    through ``target.old``, removed afterwards)."""
    if not os.path.isdir(source):
        os.replace(source, target)
        return
    import shutil
    old = f"{target}.old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(target):
        os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)


class EpochLog(keras.callbacks.CSVLogger):
    """``CSVLogger(path, append=True)`` keeping one row per epoch (see the
    module docstring)."""

    def __init__(self, path):
        super().__init__(path, append=True)
        self._trimmed = False

    def on_train_begin(self, logs=None):
        self._trimmed = False
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        if not self._trimmed:
            self._trimmed = True
            self._drop_rows_from(epoch)
        super().on_epoch_end(epoch, logs)

    def _drop_rows_from(self, epoch):
        """Rewrites the file without rows of ``epoch`` or later and without
        a row that is cut short (fewer fields than the header, no newline)."""
        with open(self.filename, newline="") as handle:
            lines = handle.readlines()
        if not lines:
            return
        width = len(next(csv.reader([lines[0]], delimiter=self.sep)))
        kept = [lines[0]] if lines[0].endswith("\n") else []
        for line in lines[1:]:
            fields = next(csv.reader([line], delimiter=self.sep), [])
            if (line.endswith("\n") and len(fields) == width
                    and fields[0].isdigit() and int(fields[0]) < epoch):
                kept.append(line)
        if kept == lines:
            return
        self.csv_file.close()
        temporary = f"{self.filename}.partial"
        with open(temporary, "w", newline="") as handle:
            handle.writelines(kept)
        os.replace(temporary, self.filename)
        self.csv_file = open(self.filename, "a")
        self.append_header = not kept
        self.writer = None
