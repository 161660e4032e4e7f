"""Recipe-driven training and evaluation: ``train(config)``, ``evaluate(...)``.

``train`` resolves the recipe once into an :class:`~igc_keras.training.
experiment.Experiment` (:func:`~igc_keras.training.experiment.prepare`:
every input checked, strategy, pipelines, steps, output paths) and runs it
in one of two loops that share the experiment's callbacks
(:meth:`~igc_keras.training.experiment.Experiment.callbacks`: NaN stop,
``log.csv``, TensorBoard, ``last.keras``, ``best.keras``):

* ``fit`` (one device, mirrored GPUs or logical CPUs): Keras ``fit`` over
  the run's phases (:func:`phases`: a new head alone, then the whole
  network) with ``BackupAndRestore`` (a killed run resumes at the epoch it
  was in).
* ``custom`` (multi-worker mirrored and TPU, where Keras ``fit`` fails:
  keras-team/keras#20585): :class:`~igc_keras.training.custom_loop.
  CustomLoop`, a ``strategy.run`` step inside a ``tf.function`` host loop
  with ``tf.train.CheckpointManager`` (resumes at the step it was at).

Both ask the task (:mod:`igc_keras.training.tasks`) for the model, loss,
statistics and input. Outputs in ``trainer.model_dir``: ``log.csv``,
``tensorboard/``, ``last.keras``, ``best.keras`` + ``best.json``,
``export/`` (SavedModel) and ``result.json``. QAT / pruning recipes run the
tf_keras loop (:mod:`igc_keras.training.model_optimization`).
"""

import os
import shutil

import keras
import tensorflow as tf

from igc_keras.errors import ConfigError
from igc_keras.layers.group_conv import resolve_group_conv_implementation
from igc_keras.training.callbacks import write_json
from igc_keras.training.custom_loop import CustomLoop, evaluate_distributed
from igc_keras.training.distribute import get_strategy
from igc_keras.training.experiment import (check_inputs,
                                          load_checkpoint_into, prepare)
from igc_keras.training.schedules import (build_optimizer,
                                          learning_rate_schedule)
from igc_keras.training.tasks import get_task
from igc_keras.walk import walk_layers


# ------------------------------------------------------------- fit loop
def phases(config):
    """``[(name, first epoch, end epoch)]``: ``head`` (the backbone frozen)
    for ``trainer.head_epochs``, then ``full``."""
    head, epochs = config.trainer.head_epochs, config.trainer.epochs
    return ([("head", 0, head)] if head else []) + (
        [("full", head, epochs)] if epochs > head else [])


def set_trainable(task, model, phase):
    """``head``: only the new classifier trains; ``full``: everything but the
    backbone's BatchNormalization layers when the model has a new head (a
    non-trainable Keras 3 BatchNormalization normalises with its moving
    statistics even under ``fit``'s ``training=True``, so the pretrained
    statistics are kept: keras-team/keras#20285), every layer otherwise."""
    if task.config.task.model.head != "transfer":
        return
    backbone = task.backbone(model)
    backbone.trainable = phase == "full"
    if phase == "full":
        for layer in walk_layers(backbone):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def _compile(experiment, model, phase, first, end):
    config, task = experiment.config, experiment.task
    if phase == "head":
        schedule = config.trainer.head_learning_rate
    else:
        schedule = learning_rate_schedule(
            config.trainer, experiment.global_batch_size,
            experiment.steps_per_epoch, epochs=end - first)
    model.compile(optimizer=build_optimizer(config, schedule),
                  steps_per_execution=config.runtime.steps_per_execution,
                  **task.compile_arguments())


def fit(experiment, verbose=2):
    """Keras ``fit`` over the run's phases (see :func:`phases`) with the
    shared callbacks; one ``BackupAndRestore`` folder per phase, so a killed
    run resumes in the phase and epoch it was in.

    Returns:
        ``(model, optimizer steps over all phases, history by epoch)``.
    """
    config = experiment.config
    with experiment.strategy.scope():
        model = experiment.build_model()
    history, steps = {}, 0
    if not os.path.exists(os.path.join(experiment.files["backup"], "phase_0")):
        experiment.forget_best()
    for index, (phase, first, end) in enumerate(phases(config)):
        set_trainable(experiment.task, model, phase)
        with experiment.strategy.scope():
            _compile(experiment, model, phase, first, end)
        callbacks = experiment.callbacks(
            os.path.join(experiment.files["backup"], f"phase_{index}"))
        # BackupAndRestore restores the epoch by setting the model's initial
        # epoch, which fit never resets: clear an earlier phase's value
        model._initial_epoch = None
        run = model.fit(experiment.train_ds, initial_epoch=first, epochs=end,
                        steps_per_epoch=experiment.steps_per_epoch,
                        validation_data=experiment.validation_ds,
                        validation_steps=config.trainer.validation_steps,
                        callbacks=callbacks, shuffle=False, verbose=verbose)
        for key, values in run.history.items():
            history.setdefault(key, []).extend(values)
        steps += int(model.optimizer.iterations.numpy())
    return model, steps, history


# ------------------------------------------------------------- entry points
def run_experiment(experiment, verbose=2):
    """Trains a prepared :class:`~igc_keras.training.experiment.Experiment`
    in its loop. Returns ``(model, result)`` and writes ``result.json``,
    the SavedModel and (detection) the COCO scores on the chief."""
    config = experiment.config
    try:
        if experiment.loop == "fit":
            model, steps, history = fit(experiment, verbose)
        else:
            model, steps, history = CustomLoop(experiment).run()
        history = {k: [float(v) for v in values]
                   for k, values in history.items()}
        result = {"loop": experiment.loop,
                  "replicas": experiment.strategy.num_replicas_in_sync,
                  "epochs": config.trainer.epochs,
                  "steps_per_epoch": experiment.steps_per_epoch,
                  "steps": steps,
                  "final": {k: v[-1] for k, v in history.items() if v},
                  "history": history}
        if experiment.chief:
            if config.task.type == "detection" and (
                    config.task.validation_data.source == "coco"):
                # scored by a copy outside the strategy: predicting with the
                # distributed model on the chief alone would wait for the
                # other workers' collectives
                scorer = experiment.task.build_model(experiment.implementation)
                scorer(tf.zeros([1] + list(config.task.model.input_size)))
                scorer.set_weights(model.get_weights())
                result["coco_eval"] = coco_evaluation(config, scorer)
            if config.trainer.checkpoint.export_saved_model:
                experiment.task.export(model, experiment.files["export"])
            write_json(experiment.files["result"], result)
            shutil.rmtree(experiment.files["backup"], ignore_errors=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model, result


def train(config, files=None):
    """Runs a recipe. Returns ``(model, result)``; ``result`` is ``result.json``.

    ``result``: ``loop``, ``replicas``, ``steps_per_epoch``, ``steps`` (the
    optimizer steps at the end, all phases, resumed runs included),
    ``final`` (the last epoch's metrics, validation included), ``history``
    (the metrics of each epoch this process ran).

    A recipe with ``task.quantization.enabled`` or ``task.pruning.enabled``
    fine-tunes instead (:func:`igc_keras.training.model_optimization.
    optimize_model`). ``files``: other output names (see
    :data:`igc_keras.training.experiment.FILES`).

    Raises:
        ConfigError: before any work, naming the key.
        NonFiniteLossError: the loss became NaN / infinite (the run stops
            there; no checkpoint is written from it).
    """
    if config.task.quantization.enabled or config.task.pruning.enabled:
        from igc_keras.training.model_optimization import optimize_model
        return optimize_model(config)
    return run_experiment(prepare(config, files))


def load_for_evaluation(config, checkpoint, implementation="native"):
    """A model for the recipe with weights from ``checkpoint``.

    ``checkpoint``: a ``.keras`` file, a ``.weights.h5`` file, or a custom-loop
    checkpoint (``tf.train`` prefix or its directory, latest taken).
    """
    # (not build_model: task.init_checkpoint is where training started)
    model = get_task(config).build_model(implementation)
    if checkpoint.endswith((".keras", ".weights.h5")):
        return load_checkpoint_into(model, checkpoint, "--checkpoint")
    prefix = (tf.train.latest_checkpoint(checkpoint)
              if tf.io.gfile.isdir(checkpoint) else checkpoint)
    if not prefix or not tf.io.gfile.glob(prefix + ".index"):
        raise ConfigError(f"--checkpoint {checkpoint!r}: not a .keras file, a "
                          f".weights.h5 file or a tf.train checkpoint.")
    tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
    return model


def coco_evaluation(config, detector):
    """COCO box AP etc. (pycocotools) of ``detector`` on
    ``task.validation_data`` (a COCO-format folder): its first
    ``max_images``, at most ``validation_steps x global_batch_size`` images
    when those are set."""
    from igc_keras.data.detection import first_image_ids
    from igc_keras.detection.evaluation import evaluate_detector
    data = config.task.validation_data
    if data.source != "coco":
        raise ConfigError(
            f"task.validation_data.source={data.source!r}: COCO evaluation "
            f"reads a COCO-format folder (source: coco, data_dir, "
            f"annotation_file), which pycocotools scores against.")
    limits = [data.max_images] if data.max_images else []
    if config.trainer.validation_steps:
        limits.append(config.trainer.validation_steps * data.global_batch_size)
    image_ids = first_image_ids(data.annotation_file,
                                min(limits) if limits else None)
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
    task = get_task(config)
    check_inputs(config, task)
    implementation = resolve_group_conv_implementation(
        config.task.model.group_conv_implementation)
    if config.task.type == "detection":
        return coco_evaluation(config, load_for_evaluation(
            config, checkpoint, implementation))
    strategy = get_strategy(config.runtime)
    validation_ds = strategy.distribute_datasets_from_function(
        lambda context: task.dataset(
            config.task.validation_data, "task.validation_data",
            context.get_per_replica_batch_size(
                config.task.validation_data.global_batch_size), context,
            isinstance(strategy, tf.distribute.TPUStrategy)))
    with strategy.scope():
        model = load_for_evaluation(config, checkpoint, implementation)
    return evaluate_distributed(task, model, strategy, validation_ds,
                                config.trainer.validation_steps)
