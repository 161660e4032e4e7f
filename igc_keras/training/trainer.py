"""Recipe-driven training and evaluation: ``train(config)``, ``evaluate(...)``.

One experiment config runs on every strategy:

* ``fit`` loop (one device, mirrored GPUs or logical CPUs): Keras ``fit`` with
  ``BackupAndRestore`` (a killed run resumes at the epoch it was in),
  ``CSVLogger``, ``TensorBoard``, last / best ``.keras`` checkpoints.
* ``custom`` loop (multi-worker mirrored and TPU, where Keras ``fit`` fails:
  keras-team/keras#20585): :mod:`igc_keras.training.custom_loop`, a
  ``strategy.run`` step inside a ``tf.function`` host loop with
  ``tf.train.CheckpointManager`` (resumes at the step it was at).

Both ask the task (:mod:`igc_keras.training.tasks`: classification — the
registry network behind its preprocessing layer, logits, label smoothing,
top-1 / top-5; detection — SSDLite, the SSD loss, COCO mAP at the end) for
the model, loss, statistics and input, and share the optimizer and schedule
(:mod:`igc_keras.training.schedules`), per-replica input from
``distribute_datasets_from_function`` and the outputs in
``trainer.model_dir``: ``log.csv``, ``tensorboard/``, ``last.keras``,
``best.keras``, ``export/`` (SavedModel) and ``result.json``.
"""

import json
import os

import keras
import tensorflow as tf

from igc_keras.layers.group_conv import resolve_group_conv_implementation
from igc_keras.training.config import ConfigError
from igc_keras.training.distribute import (get_strategy, is_chief,
                                           per_replica_batch_size)
from igc_keras.training.schedules import (build_optimizer,
                                          learning_rate_schedule)
from igc_keras.training.tasks import ClassificationTask, get_task


# ------------------------------------------------------------- checks
def check_inputs(config):
    """Fails fast, naming the key, on data that cannot be read.

    Returns:
        ``(train_size, validation_size)``: example counts, None where the
        source does not store them (TFRecords).
    """
    sizes = []
    task = get_task(config)
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
    if config.trainer.steps_per_epoch is None and sizes[0] is None:
        raise ConfigError("trainer.steps_per_epoch is required for TFRecord "
                          "training input (the record count is not stored).")
    if sizes[0] is not None and sizes[0] < config.task.train_data.global_batch_size:
        raise ConfigError(
            f"task.train_data.global_batch_size="
            f"{config.task.train_data.global_batch_size} is larger than the "
            f"{sizes[0]} training images.")
    return tuple(sizes)


def steps_per_epoch(config, train_size):
    """``trainer.steps_per_epoch``, else training images // global batch."""
    if config.trainer.steps_per_epoch:
        return config.trainer.steps_per_epoch
    return max(1, train_size // config.task.train_data.global_batch_size)


def resolve_loop(config):
    """``fit`` or ``custom`` for the recipe's strategy."""
    if config.runtime.loop != "auto":
        return config.runtime.loop
    return ("custom" if config.runtime.distribution_strategy in
            ("tpu", "multi_worker_mirrored") else "fit")


def group_conv_choice(config, strategy):
    """``split`` on CPU-only machines (faster gradients), else ``native``."""
    accelerated = (isinstance(strategy, tf.distribute.TPUStrategy) or
                   bool(tf.config.list_logical_devices("GPU")))
    return resolve_group_conv_implementation(
        config.task.model.group_conv_implementation, accelerated)


# ------------------------------------------------------------- builders
def build_model(config, implementation="native"):
    """The recipe's model (see :mod:`igc_keras.training.tasks`): logits for
    classification, an :class:`~igc_keras.detection.SSDLite` for detection.
    Inputs are RGB 0..255. Starts from ``task.init_checkpoint`` when set."""
    model = get_task(config).build_model(implementation)
    if config.task.init_checkpoint:
        load_init_checkpoint(model, config.task.init_checkpoint)
    return model


def load_init_checkpoint(model, path):
    """Loads ``task.init_checkpoint`` (a ``.keras`` or ``.weights.h5`` file of
    the recipe's model) into ``model``; a missing file or a different
    architecture raises :class:`ConfigError` naming the key."""
    key = f"task.init_checkpoint={path!r}"
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"{key} does not exist.")
    try:
        if path.endswith(".keras"):
            source = keras.saving.load_model(path, compile=False)
            shapes = [tuple(w.shape) for w in source.weights]
            expected = [tuple(w.shape) for w in model.weights]
            if shapes != expected:
                raise ValueError(f"its {len(shapes)} weights do not match the "
                                 f"recipe model's {len(expected)} (first "
                                 f"difference: {_first_difference(shapes, expected)})")
            model.set_weights(source.get_weights())
        elif path.endswith(".weights.h5"):
            model.load_weights(path)
        else:
            raise ValueError("expected a .keras or .weights.h5 file")
    except Exception as error:  # corrupt archive, unknown class, mismatch
        raise ConfigError(f"{key}: {error}.") from error
    return model


def _first_difference(shapes, expected):
    for index, (have, want) in enumerate(zip(shapes, expected)):
        if have != want:
            return f"weight {index}: {have} vs {want}"
    return f"{len(shapes)} vs {len(expected)} weights"


def loss_function(config, reduction="sum_over_batch_size"):
    """The classification loss (softmax cross-entropy, label smoothing)."""
    return ClassificationTask(config).loss(reduction)


def distributed_datasets(config, strategy, which=("train_data",
                                                  "validation_data")):
    """Per-replica pipelines (``distribute_datasets_from_function``).

    Images are float32 0..255 with the task's targets; each replica reads
    ``global_batch_size / replicas`` examples per step.
    """
    task = get_task(config)
    static = isinstance(strategy, tf.distribute.TPUStrategy)
    datasets = []
    for key in which:
        data = getattr(config.task, key)
        per_replica_batch_size(data.global_batch_size, strategy,
                               f"task.{key}.global_batch_size")

        def dataset_fn(context, data=data, key=key):
            batch = context.get_per_replica_batch_size(data.global_batch_size)
            return task.dataset(data, f"task.{key}", batch, context, static)
        datasets.append(strategy.distribute_datasets_from_function(dataset_fn))
    return datasets


def seed(config):
    """``runtime.seed`` for Python, NumPy and TF; op determinism when
    ``runtime.deterministic``."""
    keras.utils.set_random_seed(config.runtime.seed)
    if config.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()


def prepare(config):
    """Everything but the loop: seeds, precision, strategy, sizes, data.

    Returns:
        A dict with ``strategy``, ``steps_per_epoch``, ``train_ds``,
        ``validation_ds``, ``implementation``, ``chief``.
    """
    train_size, _ = check_inputs(config)
    # the strategy comes before any TF op: multi-worker collectives and
    # logical devices must be configured at start-up
    strategy = get_strategy(config.runtime)
    seed(config)
    keras.mixed_precision.set_global_policy(
        config.runtime.mixed_precision_dtype)
    train_ds, validation_ds = distributed_datasets(config, strategy)
    return {"strategy": strategy,
            "steps_per_epoch": steps_per_epoch(config, train_size),
            "train_ds": train_ds, "validation_ds": validation_ds,
            "implementation": group_conv_choice(config, strategy),
            "chief": is_chief(strategy)}


def _write_result(model_dir, result):
    with open(os.path.join(model_dir, "result.json"), "w") as handle:
        json.dump(result, handle, indent=2)


# ------------------------------------------------------------- fit loop
def _fit(config, setup):
    strategy, steps = setup["strategy"], setup["steps_per_epoch"]
    model_dir = config.trainer.model_dir
    global_batch = config.task.train_data.global_batch_size
    task = get_task(config)
    with strategy.scope():
        model = build_model(config, setup["implementation"])
        schedule = learning_rate_schedule(config.trainer, global_batch, steps)
        model.compile(optimizer=build_optimizer(config, schedule),
                      steps_per_execution=config.runtime.steps_per_execution,
                      **task.compile_arguments())
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(model_dir, "backup")),
        keras.callbacks.CSVLogger(os.path.join(model_dir, "log.csv"),
                                  append=True),
        keras.callbacks.TensorBoard(os.path.join(model_dir, "tensorboard")),
        keras.callbacks.ModelCheckpoint(os.path.join(model_dir, "last.keras")),
    ]
    if config.trainer.checkpoint.keep_best:
        callbacks.append(keras.callbacks.ModelCheckpoint(
            os.path.join(model_dir, "best.keras"), monitor=task.monitor,
            mode=task.mode, save_best_only=True))
    history = model.fit(setup["train_ds"], epochs=config.trainer.epochs,
                        steps_per_epoch=steps,
                        validation_data=setup["validation_ds"],
                        validation_steps=config.trainer.validation_steps,
                        callbacks=callbacks, shuffle=False, verbose=2)
    final = {k: float(v[-1]) for k, v in history.history.items()}
    return model, int(model.optimizer.iterations.numpy()), final


# ------------------------------------------------------------- entry points
def train(config):
    """Runs a recipe. Returns ``(model, result)``; ``result`` is ``result.json``.

    ``result``: ``loop``, ``replicas``, ``steps_per_epoch``, ``steps`` (the
    optimizer's step count at the end, resumed runs included), ``final``
    (the last epoch's metrics, validation included).

    A recipe with ``task.quantization.enabled`` or ``task.pruning.enabled``
    fine-tunes instead (:func:`igc_keras.training.model_optimization.
    optimize_model`).
    """
    if config.task.quantization.enabled or config.task.pruning.enabled:
        from igc_keras.training.model_optimization import optimize_model
        return optimize_model(config)
    loop = resolve_loop(config)
    setup = prepare(config)
    os.makedirs(config.trainer.model_dir, exist_ok=True)
    try:
        if loop == "fit":
            if isinstance(setup["strategy"], (
                    tf.distribute.MultiWorkerMirroredStrategy,
                    tf.distribute.TPUStrategy)):
                raise ConfigError(
                    f"runtime.loop='fit' cannot run "
                    f"runtime.distribution_strategy="
                    f"{config.runtime.distribution_strategy!r} (Keras fit "
                    f"fails there: keras-team/keras#20585); use 'custom' or "
                    f"'auto'.")
            model, steps, final = _fit(config, setup)
        else:
            from igc_keras.training.custom_loop import CustomLoop
            model, steps, final = CustomLoop(config, setup).run()
        result = {"loop": loop,
                  "replicas": setup["strategy"].num_replicas_in_sync,
                  "epochs": config.trainer.epochs,
                  "steps_per_epoch": setup["steps_per_epoch"],
                  "steps": steps, "final": final}
        if setup["chief"]:
            task = get_task(config)
            if config.task.type == "detection" and (
                    config.task.validation_data.source == "coco"):
                # scored by a copy outside the strategy: predicting with the
                # distributed model on the chief alone would wait for the
                # other workers' collectives
                scorer = task.build_model(setup["implementation"])
                scorer(tf.zeros([1] + list(config.task.model.input_size)))
                scorer.set_weights(model.get_weights())
                result["coco_eval"] = coco_evaluation(config, scorer)
            if config.trainer.checkpoint.export_saved_model:
                task.export(model, os.path.join(config.trainer.model_dir,
                                                "export"))
            _write_result(config.trainer.model_dir, result)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model, result


def load_for_evaluation(config, checkpoint, implementation="native"):
    """A model for the recipe with weights from ``checkpoint``.

    ``checkpoint``: a ``.keras`` file, a ``.weights.h5`` file, or a custom-loop
    checkpoint (``tf.train`` prefix or its directory, latest taken).
    """
    if checkpoint.endswith(".keras"):
        return keras.saving.load_model(checkpoint)
    # (not build_model: task.init_checkpoint is where training started)
    model = get_task(config).build_model(implementation)
    if checkpoint.endswith(".weights.h5"):
        model.load_weights(checkpoint)
        return model
    prefix = (tf.train.latest_checkpoint(checkpoint)
              if tf.io.gfile.isdir(checkpoint) else checkpoint)
    if not prefix or not tf.io.gfile.glob(prefix + ".index"):
        raise ConfigError(f"--checkpoint {checkpoint!r}: not a .keras file, a "
                          f".weights.h5 file or a tf.train checkpoint.")
    tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
    return model


def coco_evaluation(config, detector):
    """COCO box AP etc. (pycocotools) of ``detector`` on
    ``task.validation_data`` (a COCO-format folder), at most
    ``validation_steps x global_batch_size`` images when those are set."""
    from igc_keras.detection.coco import load_coco_annotations
    from igc_keras.detection.evaluation import evaluate_detector
    data = config.task.validation_data
    if data.source != "coco":
        raise ConfigError(
            f"task.validation_data.source={data.source!r}: COCO evaluation "
            f"reads a COCO-format folder (source: coco, data_dir, "
            f"annotation_file), which pycocotools scores against.")
    image_ids = None
    if config.trainer.validation_steps:
        limit = config.trainer.validation_steps * data.global_batch_size
        image_ids = [r.image_id for r in load_coco_annotations(
            data.annotation_file).images[:limit]]
    return evaluate_detector(detector, data.data_dir, data.annotation_file,
                             image_ids=image_ids,
                             batch_size=data.global_batch_size)


def evaluate(config, checkpoint):
    """Scores ``checkpoint`` on ``task.validation_data``.

    Classification: loss / top-1 / top-5, under the recipe's strategy (every
    worker of a cluster runs it). Detection: COCO AP, AP50, AP75, APs, APm,
    APl and recalls from pycocotools (:func:`coco_evaluation`).

    Returns:
        ``{"loss": ..., "top1": ..., "top5": ...}`` or the COCO stats.
    """
    from igc_keras.training.custom_loop import evaluate_distributed
    check_inputs(config)
    if config.task.type == "detection":
        implementation = resolve_group_conv_implementation(
            config.task.model.group_conv_implementation)
        return coco_evaluation(config, load_for_evaluation(
            config, checkpoint, implementation))
    strategy = get_strategy(config.runtime)
    (validation_ds,) = distributed_datasets(config, strategy,
                                            ("validation_data",))
    with strategy.scope():
        model = load_for_evaluation(config, checkpoint,
                                    group_conv_choice(config, strategy))
    return evaluate_distributed(get_task(config), model, strategy,
                                validation_ds, config.trainer.validation_steps)
