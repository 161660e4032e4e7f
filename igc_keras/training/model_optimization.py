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

import json
import os

import numpy as np
import tensorflow as tf

from igc_keras.training.config import ConfigError
from igc_keras.training.distribute import (get_strategy, is_chief,
                                           per_replica_batch_size)
from igc_keras.training.schedules import (build_optimizer,
                                          learning_rate_schedule)
from igc_keras.training.tasks import get_task

#: validation images the exported TFLite file is checked on.
CHECK_IMAGES = 256


def _datasets(config, task, strategy):
    """The recipe's train / validation pipelines, global batches (tf_keras
    ``fit`` splits them among the replicas, which must divide them)."""
    datasets = []
    for key in ("train_data", "validation_data"):
        data = getattr(config.task, key)
        per_replica_batch_size(data.global_batch_size, strategy,
                               f"task.{key}.global_batch_size")
        datasets.append(task.dataset(data, f"task.{key}",
                                     data.global_batch_size, None, False))
    return datasets


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
    from igc_keras.optimize.legacy import tfmot
    pruning = config.task.pruning
    begin, end = _pruning_steps(config, steps_per_epoch)
    schedule = tfmot().sparsity.keras.PolynomialDecay(
        initial_sparsity=pruning.initial_sparsity,
        final_sparsity=pruning.target_sparsity, begin_step=begin,
        end_step=end, frequency=pruning.frequency)
    return optimize.prune(model, schedule=schedule)


def _compile(config, wrapped, task, steps_per_epoch):
    from igc_keras.optimize.legacy import tf_keras
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


def _callbacks(config, best_path):
    from igc_keras.optimize.legacy import tf_keras, tfmot
    tfk, model_dir = tf_keras(), config.trainer.model_dir
    callbacks = [
        tfk.callbacks.BackupAndRestore(os.path.join(model_dir, "backup")),
        tfk.callbacks.CSVLogger(os.path.join(model_dir, "log.csv"),
                                append=True),
        tfk.callbacks.TensorBoard(os.path.join(model_dir, "tensorboard")),
    ]
    if config.task.pruning.enabled:
        callbacks.append(tfmot().sparsity.keras.UpdatePruningStep())
    if config.trainer.checkpoint.keep_best and (
            config.task.quantization.enabled):
        callbacks.append(tfk.callbacks.ModelCheckpoint(
            best_path, monitor="val_top1", mode="max", save_best_only=True,
            save_weights_only=True))
    return callbacks


def _export(config, model, wrapped, validation_ds):
    """Writes the outputs (see the module docstring); returns the result's
    ``tflite`` (and pruning) entries."""
    from igc_keras import optimize
    model_dir = config.trainer.model_dir
    export = config.trainer.checkpoint.export_saved_model
    images = _images(validation_ds, CHECK_IMAGES)
    if config.task.quantization.enabled:
        if export:
            tf.saved_model.save(wrapped, os.path.join(model_dir, "export"))
        info = optimize.export_tflite(
            wrapped, os.path.join(model_dir, "model_int8.tflite"), "int8")
        reference, extra = wrapped, {}
    else:
        dense_file = optimize.export_tflite(
            model, os.path.join(model_dir, "unpruned.tflite"))
        sparse = optimize.strip(wrapped, like=model)
        sparse.save(os.path.join(model_dir, "pruned.keras"))
        if export:
            get_task(config).export(sparse, os.path.join(model_dir, "export"))
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
    from igc_keras.training.trainer import (build_model, check_inputs, seed,
                                            steps_per_epoch)
    kind = "quantization" if config.task.quantization.enabled else "pruning"
    train_size, _ = check_inputs(config)
    strategy = get_strategy(config.runtime)
    if not isinstance(strategy, (tf.distribute.OneDeviceStrategy,
                                 tf.distribute.MirroredStrategy)):
        raise ConfigError(f"task.{kind}.enabled: the strategy "
                          f"{type(strategy).__name__} is not supported (tf_keras"
                          f" fit on one device or mirrored replicas).")
    if isinstance(strategy, tf.distribute.OneDeviceStrategy):
        # the default strategy is one device too, and tf_keras'
        # BackupAndRestore refuses OneDeviceStrategy
        strategy = tf.distribute.get_strategy()
    seed(config)
    task = get_task(config)
    steps = steps_per_epoch(config, train_size)
    model_dir = config.trainer.model_dir
    os.makedirs(model_dir, exist_ok=True)
    # a TF checkpoint: tf_keras cannot load .weights.h5 files into
    # mirrored (sync-on-read) variables
    best_path = os.path.join(model_dir, "best_weights", "checkpoint")
    train_ds, validation_ds = _datasets(config, task, strategy)
    # the Keras 3 model: the bridge's source and the pruned model's shape
    model = build_model(config, "native")
    with strategy.scope():
        wrapped = _wrap(config, model, steps, train_ds)
        _compile(config, wrapped, task, steps)
    history = wrapped.fit(train_ds, epochs=config.trainer.epochs,
                          steps_per_epoch=steps, validation_data=validation_ds,
                          validation_steps=config.trainer.validation_steps,
                          callbacks=_callbacks(config, best_path), verbose=2)
    done = int(wrapped.optimizer.iterations.numpy())
    if tf.io.gfile.exists(best_path + ".index") and (
            config.task.quantization.enabled):
        with strategy.scope():
            wrapped.load_weights(best_path).expect_partial()
    result = {"loop": f"tf_keras fit ({kind})",
              "replicas": strategy.num_replicas_in_sync,
              "epochs": config.trainer.epochs, "steps_per_epoch": steps,
              "steps": done,
              "final": {k: float(v[-1]) for k, v in history.history.items()}}
    if is_chief(strategy):
        result.update(_export(config, model, wrapped, validation_ds))
        with open(os.path.join(model_dir, "result.json"), "w") as handle:
            json.dump(result, handle, indent=2)
    return wrapped, result
