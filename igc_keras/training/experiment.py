"""The experiment: a recipe resolved once into what the training loops run.

:func:`prepare` checks everything that can be checked before a model is
built — ``trainer.model_dir`` (creatable, a folder, writable), the data
(folders exist, class folders fit ``task.model.num_classes``, validation
classes are the training classes, unreadable images reported and left out,
enough images for one batch) — then seeds, sets the precision policy, makes
the strategy and the per-replica input pipelines, and returns an
:class:`Experiment`. The loops (``fit`` and the ``strategy.run`` loop in
:mod:`~igc_keras.training.trainer` and :mod:`~igc_keras.training.
custom_loop`, the tfmot loop in :mod:`~igc_keras.training.
model_optimization`) take it and derive nothing from the config themselves.
"""

import dataclasses
import os
import tempfile
from typing import Any, Dict, Optional

import keras
import tensorflow as tf

from igc_keras.errors import ConfigError
from igc_keras.layers.group_conv import resolve_group_conv_implementation
from igc_keras.training.callbacks import (EpochLog, SaveModel,
                                         StopOnNonFiniteLoss)
from igc_keras.training.distribute import (get_strategy, is_chief,
                                           per_replica_batch_size)
from igc_keras.training.tasks import get_task

#: What a run writes in ``trainer.model_dir``, by role.
FILES = {"log": "log.csv", "tensorboard": "tensorboard", "last": "last.keras",
         "best": "best.keras", "result": "result.json", "backup": "backup",
         "checkpoints": "checkpoints", "export": "export"}


@dataclasses.dataclass
class Experiment:
    """A prepared run (see the module docstring).

    Attributes:
        config: the checked :class:`~igc_keras.training.config.
            ExperimentConfig`.
        task: the task object (one per run: data scans and annotation files
            are read once).
        strategy: the ``tf.distribute`` strategy.
        loop: ``fit`` or ``custom``.
        steps_per_epoch: optimizer steps per epoch.
        train_size, validation_size: examples (None where not stored).
        implementation: the group-convolution implementation built.
        chief: whether this process writes the outputs.
        files: role -> path in ``trainer.model_dir`` (see :data:`FILES`).
        train_ds, validation_ds: per-replica distributed datasets (None
            until :meth:`distribute` ran).
    """

    config: Any
    task: Any
    strategy: Any
    loop: str
    steps_per_epoch: int
    train_size: Optional[int]
    validation_size: Optional[int]
    implementation: str
    chief: bool
    files: Dict[str, str]
    train_ds: Any = None
    validation_ds: Any = None

    @property
    def model_dir(self):
        return self.config.trainer.model_dir

    @property
    def global_batch_size(self):
        return self.config.task.train_data.global_batch_size

    def build_model(self, implementation=None):
        """The task's model (inputs RGB 0..255), from
        ``task.init_checkpoint`` when set."""
        model = self.task.build_model(implementation or self.implementation)
        if self.config.task.init_checkpoint:
            load_init_checkpoint(model, self.config.task.init_checkpoint)
        return model

    def distribute(self, which=("train_data", "validation_data")):
        """Sets ``train_ds`` / ``validation_ds``: per-replica pipelines
        (``distribute_datasets_from_function``), each replica reading
        ``global_batch_size / replicas`` examples a step."""
        static = isinstance(self.strategy, tf.distribute.TPUStrategy)
        for key in which:
            data = getattr(self.config.task, key)

            def dataset_fn(context, data=data, key=key):
                batch = context.get_per_replica_batch_size(
                    data.global_batch_size)
                return self.task.dataset(data, f"task.{key}", batch, context,
                                         static)
            setattr(self, "train_ds" if key == "train_data" else
                    "validation_ds",
                    self.strategy.distribute_datasets_from_function(
                        dataset_fn))
        return self

    def global_datasets(self):
        """``(train, validation)`` batched by the global batch size (for
        tf_keras ``fit``, which splits batches among replicas itself)."""
        datasets = []
        for key in ("train_data", "validation_data"):
            data = getattr(self.config.task, key)
            datasets.append(self.task.dataset(data, f"task.{key}",
                                              data.global_batch_size, None,
                                              False))
        return datasets

    def forget_best(self, state=None):
        """Called by a loop that has nothing to resume: when an earlier run
        in the same folder finished (``result.json``), its best score
        (state ``state``, default the best model's) must not keep this run's
        models out of ``best.keras``. Without ``result.json`` the earlier
        run was killed before its first resume point, after writing its
        best: that best is this run's and stays."""
        state = state or os.path.splitext(self.files["best"])[0] + ".json"
        if (self.chief and os.path.exists(state)
                and os.path.exists(self.files["result"])):
            os.remove(state)

    def callbacks(self, backup=None, best_state=None):
        """The callbacks every loop runs, in order: the non-finite-loss stop,
        then (chief only) ``log.csv``, TensorBoard, ``last.keras``,
        ``best.keras`` and last ``BackupAndRestore`` into ``backup`` (when
        given): an epoch is a resume point only once its outputs are
        written."""
        callbacks = [StopOnNonFiniteLoss(self.steps_per_epoch)]
        if not self.chief:
            return callbacks
        callbacks += [
            EpochLog(self.files["log"]),
            keras.callbacks.TensorBoard(self.files["tensorboard"]),
            SaveModel(self.files["last"])]
        if self.config.trainer.checkpoint.keep_best:
            callbacks.append(SaveModel(self.files["best"], self.task.monitor,
                                       self.task.mode, best_state))
        if backup:
            callbacks.append(keras.callbacks.BackupAndRestore(
                backup, delete_checkpoint=False))
        return callbacks


# ------------------------------------------------------------- checks
def check_model_dir(path, key="trainer.model_dir", create=False):
    """Refuses, naming ``key``, a ``path`` that is a file, lies below a file,
    or cannot be written (a read-only disk, no permission); with ``create``
    makes the folder and proves it writable with a scratch file."""
    if not path:
        raise ConfigError(f"{key} must name a folder; got {path!r}.")
    if "://" in path:  # gs:// and other TF file systems
        if create:
            try:
                tf.io.gfile.makedirs(path)
            except tf.errors.OpError as error:
                raise ConfigError(f"{key}={path!r} cannot be created: "
                                  f"{error.message}") from error
        return path
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{key}={path!r} is a file, not a folder; name a "
                          f"folder for the run's outputs.")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{key}={path!r} cannot be created: {parent!r} is a "
                          f"file.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path!r} cannot be written: {parent!r} is "
                          f"read-only or not writable by this user.")
    if create:
        try:
            os.makedirs(path, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as error:
            raise ConfigError(f"{key}={path!r} cannot be created or written "
                              f"({error.strerror or error}); name a writable "
                              f"folder.") from error
    return path


def check_inputs(config, task):
    """Fails fast, naming the key, on data that cannot be read or does not
    fit the model. Returns ``(train_size, validation_size)`` (None where the
    source does not store it: TFRecords)."""
    sizes = []
    for key in ("train_data", "validation_data"):
        data = getattr(config.task, key)
        if data.source in ("folder", "tfrecord", "coco") and not (
                tf.io.gfile.exists(data.data_dir) or
                tf.io.gfile.glob(data.data_dir)):
            raise ConfigError(f"task.{key}.data_dir={data.data_dir!r} does not "
                              f"exist.")
        try:
            size = task.data_size(data, f"task.{key}")
        except ValueError as error:
            raise ConfigError(str(error)) from error
        if size == 0:
            raise ConfigError(f"task.{key}: the {data.source} source "
                              f"{data.data_dir or data.name!r} holds no images.")
        sizes.append(size)
    task.check_data()
    if config.trainer.steps_per_epoch is None and sizes[0] is None:
        raise ConfigError("trainer.steps_per_epoch is required for TFRecord "
                          "training input (the record count is not stored).")
    if sizes[0] is not None and sizes[0] < config.task.train_data.global_batch_size:
        raise ConfigError(
            f"task.train_data.global_batch_size="
            f"{config.task.train_data.global_batch_size} is larger than the "
            f"{sizes[0]} training images.")
    return tuple(sizes)


def resolve_loop(config):
    """``fit`` or ``custom`` for the recipe's strategy."""
    if config.runtime.loop != "auto":
        return config.runtime.loop
    return ("custom" if config.runtime.distribution_strategy in
            ("tpu", "multi_worker_mirrored") else "fit")


def seed(config):
    """``runtime.seed`` for Python, NumPy and TF; op determinism when
    ``runtime.deterministic``."""
    keras.utils.set_random_seed(config.runtime.seed)
    if config.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()


def load_init_checkpoint(model, path):
    """Loads ``task.init_checkpoint`` into ``model``
    (:func:`load_checkpoint_into`)."""
    return load_checkpoint_into(model, path, "task.init_checkpoint")


def _describe(model):
    outputs = getattr(model, "outputs", None)  # None: a subclassed model
    classes = outputs[0].shape[-1] if outputs else "?"
    return (f"{model.name!r} ({len(model.weights)} weights, {classes} "
            f"outputs)")


def load_checkpoint_into(model, path, key):
    """Loads a ``.keras`` or ``.weights.h5`` file of the recipe's model into
    ``model``. A missing or damaged file, or one holding another
    architecture or class count, raises :class:`ConfigError` naming ``key``,
    the file, what it holds and what the recipe builds."""
    from igc_keras.model_files import load_keras_model
    where = f"{key}={path!r}"
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"{where} does not exist.")
    if path.endswith(".keras"):
        source = load_keras_model(path, key, compile=False)
        shapes = [tuple(w.shape) for w in source.weights]
        expected = [tuple(w.shape) for w in model.weights]
        if shapes != expected:
            raise ConfigError(
                f"{where} holds {_describe(source)}: its weights do not "
                f"match the recipe's model {_describe(model)} (first "
                f"difference: "
                f"{_first_difference(shapes, expected)}); check "
                f"task.model.name and num_classes.")
        model.set_weights(source.get_weights())
    elif path.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except Exception as error:  # another architecture, a damaged file
            raise ConfigError(f"{where} does not fit the recipe's model "
                              f"{_describe(model)}: {error}") from error
    else:
        raise ConfigError(f"{where}: expected a .keras or .weights.h5 file.")
    return model


def _first_difference(shapes, expected):
    for index, (have, want) in enumerate(zip(shapes, expected)):
        if have != want:
            return f"weight {index}: {have} vs {want}"
    return f"{len(shapes)} vs {len(expected)} weights"


def prepare(config, files=None, distribute=True, scans=None):
    """The :class:`Experiment` of a checked config (see the module
    docstring). ``files`` overrides names in :data:`FILES`; ``distribute``
    builds the per-replica pipelines (the tfmot loop reads global batches:
    :meth:`Experiment.global_datasets`); ``scans``: ``{"train_data":
    FolderScan, ...}`` already made of folder sources (not scanned again)."""
    loop = resolve_loop(config)
    if loop == "custom" and config.trainer.head_epochs:
        raise ConfigError(f"trainer.head_epochs={config.trainer.head_epochs} "
                          f"runs in Keras fit; the custom loop "
                          f"(runtime.loop / multi-worker / TPU) trains one "
                          f"phase. Set it to 0 or use runtime.loop 'fit'.")
    model_dir = check_model_dir(config.trainer.model_dir)
    task = get_task(config)
    task.preset_scans(scans or {})
    train_size, validation_size = check_inputs(config, task)
    # the strategy comes before any TF op: multi-worker collectives and
    # logical devices must be configured at start-up
    strategy = get_strategy(config.runtime)
    if loop == "fit" and isinstance(strategy, (
            tf.distribute.MultiWorkerMirroredStrategy,
            tf.distribute.TPUStrategy)):
        raise ConfigError(
            f"runtime.loop='fit' cannot run runtime.distribution_strategy="
            f"{config.runtime.distribution_strategy!r} (Keras fit fails "
            f"there: keras-team/keras#20585); use 'custom' or 'auto'.")
    for key in ("train_data", "validation_data"):
        per_replica_batch_size(getattr(config.task, key).global_batch_size,
                               strategy, f"task.{key}.global_batch_size")
    check_model_dir(model_dir, create=True)
    seed(config)
    keras.mixed_precision.set_global_policy(
        config.runtime.mixed_precision_dtype)
    accelerated = (isinstance(strategy, tf.distribute.TPUStrategy) or
                   bool(tf.config.list_logical_devices("GPU")))
    steps = config.trainer.steps_per_epoch or max(
        1, train_size // config.task.train_data.global_batch_size)
    names = {**FILES, **(files or {})}
    experiment = Experiment(
        config=config, task=task, strategy=strategy, loop=loop,
        steps_per_epoch=steps, train_size=train_size,
        validation_size=validation_size,
        implementation=resolve_group_conv_implementation(
            config.task.model.group_conv_implementation, accelerated),
        chief=is_chief(strategy),
        files={role: os.path.join(model_dir, name)
               for role, name in names.items()})
    return experiment.distribute() if distribute else experiment
