"""Recipe-driven quantization-aware training and pruning (tfmot).

``igc-keras train`` on a recipe with ``task.quantization.enabled`` or
``task.pruning.enabled`` (see ``recipes/quickstart_qat.yaml`` and
``recipes/quickstart_prune.yaml``)
runs :func:`optimize_model`:

1. the recipe's Keras 3 classifier is built with ``task.init_checkpoint``'s
   weights (a trained run's ``best.keras``);
2. it is rebuilt in tf_keras with tfmot's wrappers through the one bridge
   (:func:`igc_keras.optimize.quantize_aware` / :func:`igc_keras.optimize.
   prune`; the pruning schedule's epochs become steps here); QAT's weight
   and activation ranges start calibrated on
   ``task.quantization.calibration_images`` training images, so the
   fine-tune starts at post-training int8 accuracy;
3. tf_keras ``fit`` fine-tunes it on the recipe's own input pipelines with
   the recipe's optimizer and schedule (:mod:`igc_keras.training.schedules`
   with ``module=tf_keras``), under the recipe's ``one_device`` or
   ``mirrored`` strategy, with the Keras 3 loop's callbacks: ``backup/``
   (``BackupAndRestore``: a killed run resumes at the epoch it was in),
   ``log.csv``, ``tensorboard/``; QAT keeps the best epoch's weights by
   ``val_top1`` (``best_weights/``) for its outputs, pruning the last
   epoch's (the sparsest: the schedule ends there or earlier).

Outputs in ``trainer.model_dir`` besides those:

* QAT: ``export/`` (the QAT model's SavedModel) and ``model_int8.tflite``
  (full int8 with tfmot's learned ranges: no calibration data), checked in
  the TFLite interpreter against the QAT model on validation images.
* Pruning: ``pruned.keras`` (the Keras 3 model with the sparse weights, no
  wrappers: it loads without tfmot), ``export/`` (its SavedModel) and
  ``model.tflite`` (float32), checked the same way, with the sparsity and
  the gzip size of the file against the unpruned model's.

``result.json`` holds ``final`` (the last epoch's metrics), ``steps`` and
``tflite`` (path, bytes, top-1 agreement, largest logit difference, images;
pruning adds ``sparsity``, ``gzip_bytes`` and ``dense_gzip_bytes``).
"""

import os

import numpy as np
import tensorflow as tf

from igc_keras.errors import ConfigError
from igc_keras.training.callbacks import (EpochLog, SaveModel,
                                          StopOnNonFiniteLoss, write_json)
from igc_keras.training.experiment import prepare
from igc_keras.training.schedules import (build_optimizer,
                                          learning_rate_schedule)

#: validation images the exported TFLite file is checked on (at most; no
#: more than the run validates on when ``trainer.validation_steps`` is set).
CHECK_IMAGES = 256


def _images(dataset, count):
    """The first ``count`` images of a batched ``(images, labels)`` dataset."""
    images = []
    for batch, _ in dataset:
        images.append(batch.numpy())
        if sum(len(b) for b in images) >= count:
            break
    return np.concatenate(images)[:count]


def _pruning_steps(config, steps_per_epoch):
    pruning = config.task.pruning
    end_epoch = (config.trainer.epochs if pruning.end_epoch is None
                 else pruning.end_epoch)
    begin = int(round(pruning.begin_epoch * steps_per_epoch))
    end = max(begin + 1, int(round(end_epoch * steps_per_epoch)))
    return begin, end


def _wrap(config, model, steps_per_epoch, train_ds):
    """The tfmot (tf_keras) model of the Keras 3 ``model``; QAT ranges start
    from ``task.quantization.calibration_images`` training images."""
    from igc_keras import optimize
    if config.task.quantization.enabled:
        count = config.task.quantization.calibration_images
        return optimize.quantize_aware(
            model, _images(train_ds, count) if count else None)
    from igc_keras.optimize.tf_keras_bridge import tfmot
    pruning = config.task.pruning
    begin, end = _pruning_steps(config, steps_per_epoch)
    schedule = tfmot().sparsity.keras.PolynomialDecay(
        initial_sparsity=pruning.initial_sparsity,
        final_sparsity=pruning.target_sparsity, begin_step=begin,
        end_step=end, frequency=pruning.frequency)
    return optimize.prune(model, schedule=schedule)


def _compile(config, wrapped, task, steps_per_epoch):
    from igc_keras.optimize.tf_keras_bridge import tf_keras
    tfk = tf_keras()
    schedule = learning_rate_schedule(
        config.trainer, config.task.train_data.global_batch_size,
        steps_per_epoch, module=tfk)
    wrapped.compile(
        optimizer=build_optimizer(config, schedule, module=tfk),
        loss=tfk.losses.CategoricalCrossentropy(
            from_logits=True,
            label_smoothing=config.task.losses.label_smoothing),
        metrics=[tfk.metrics.CategoricalAccuracy(name="top1"),
                 tfk.metrics.TopKCategoricalAccuracy(task.k, name="top5")],
        steps_per_execution=config.runtime.steps_per_execution)


def _callbacks(experiment, best_dir):
    """The Keras 3 loops' callbacks for tf_keras ``fit``, in the same order:
    the non-finite-loss stop, ``log.csv``, tf_keras' ``TensorBoard``, QAT's
    best weights kept as in the Keras 3 loops (a TF checkpoint in
    ``best_weights/``, swapped in whole, its value in ``best_weights.json``:
    a resumed run replaces it only when better) and last tf_keras'
    ``BackupAndRestore`` (an epoch is a resume point once its outputs are
    written)."""
    from igc_keras.optimize.tf_keras_bridge import tf_keras
    tfk, files = tf_keras(), experiment.files
    callbacks = [
        StopOnNonFiniteLoss(experiment.steps_per_epoch),
        EpochLog(files["log"]),
        tfk.callbacks.TensorBoard(files["tensorboard"]),
    ]
    config = experiment.config
    if config.trainer.checkpoint.keep_best and (
            config.task.quantization.enabled):
        callbacks.append(SaveModel(
            best_dir, "val_top1", "max", state=f"{best_dir}.json", suffix="",
            save=lambda model, target: model.save_weights(
                os.path.join(target, "checkpoint"))))
    callbacks.append(tfk.callbacks.BackupAndRestore(files["backup"]))
    return callbacks


def _export(experiment, model, wrapped, validation_ds):
    """Writes the outputs (see the module docstring); returns the result's
    ``tflite`` (and pruning) entries."""
    from igc_keras import optimize
    from igc_keras.optimize.tf_keras_bridge import save_serving
    config, model_dir = experiment.config, experiment.model_dir
    export = config.trainer.checkpoint.export_saved_model
    count, steps = CHECK_IMAGES, config.trainer.validation_steps
    if steps:
        count = min(count, steps * config.task.validation_data.global_batch_size)
    images = _images(validation_ds, count)
    if config.task.quantization.enabled:
        if export:
            save_serving(wrapped, os.path.join(model_dir, "export"))
        info = optimize.export_tflite(
            wrapped, os.path.join(model_dir, "model_int8.tflite"), "int8")
        reference, extra = wrapped, {}
    else:
        dense_file = optimize.export_tflite(
            model, os.path.join(model_dir, "unpruned.tflite"))
        sparse = optimize.strip(wrapped, like=model)
        sparse.save(os.path.join(model_dir, "pruned.keras"))
        if export:
            experiment.task.export(sparse, os.path.join(model_dir, "export"))
        info = optimize.export_tflite(sparse,
                                      os.path.join(model_dir, "model.tflite"))
        extra = {"sparsity": optimize.sparsity(sparse)["overall"],
                 "gzip_bytes": optimize.compressed_size(info["path"]),
                 "dense_gzip_bytes": optimize.compressed_size(
                     dense_file["path"])}
        os.remove(dense_file["path"])
        reference = sparse
    check = optimize.compare_tflite(reference, info["path"], images)
    return {"tflite": {"path": info["path"], "quantization":
                       info["quantization"], **check}, **extra}


def optimize_model(config):
    """QAT or pruning fine-tuning from a recipe (see the module docstring).

    Returns:
        ``(tfmot tf_keras model, result)``; ``result`` is ``result.json``.
    """
    from igc_keras.optimize.tf_keras_bridge import train
    kind = "quantization" if config.task.quantization.enabled else "pruning"
    experiment = prepare(config, distribute=False)
    strategy = experiment.strategy
    if not isinstance(strategy, (tf.distribute.OneDeviceStrategy,
                                 tf.distribute.MirroredStrategy)):
        raise ConfigError(f"task.{kind}.enabled: the strategy "
                          f"{type(strategy).__name__} is not supported (tf_keras"
                          f" fit on one device or mirrored replicas).")
    if isinstance(strategy, tf.distribute.OneDeviceStrategy):
        # the default strategy is one device too, and tf_keras'
        # BackupAndRestore refuses OneDeviceStrategy
        experiment.strategy = strategy = tf.distribute.get_strategy()
    steps = experiment.steps_per_epoch
    # a TF checkpoint: tf_keras cannot load .weights.h5 files into
    # mirrored (sync-on-read) variables
    best_dir = os.path.join(experiment.model_dir, "best_weights")
    if not os.path.exists(experiment.files["backup"]):
        experiment.forget_best(f"{best_dir}.json")
    train_ds, validation_ds = experiment.global_datasets()
    # the Keras 3 model: the bridge's source and the pruned model's shape
    model = experiment.build_model("native")
    with strategy.scope():
        wrapped = _wrap(config, model, steps, train_ds)
        _compile(config, wrapped, experiment.task, steps)
    history = train(wrapped, train_ds, epochs=config.trainer.epochs,
                  steps_per_epoch=steps, validation_data=validation_ds,
                  validation_steps=config.trainer.validation_steps,
                  callbacks=_callbacks(experiment, best_dir))
    done = int(wrapped.optimizer.iterations.numpy())
    if os.path.isdir(best_dir) and config.task.quantization.enabled:
        with strategy.scope():
            wrapped.load_weights(os.path.join(best_dir, "checkpoint")
                                 ).expect_partial()
    result = {"loop": f"tf_keras fit ({kind})",
              "replicas": strategy.num_replicas_in_sync,
              "epochs": config.trainer.epochs, "steps_per_epoch": steps,
              "steps": done,
              "final": {k: float(v[-1]) for k, v in history.history.items()}}
    if experiment.chief:
        result.update(_export(experiment, model, wrapped, validation_ds))
        write_json(experiment.files["result"], result)
    return wrapped, result
