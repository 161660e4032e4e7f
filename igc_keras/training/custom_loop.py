"""The custom training loop: multi-worker mirrored and TPU (any strategy).

Keras ``fit`` fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585), so these strategies train the way TF Model Garden
does: a ``strategy.run`` replica step inside a ``tf.function`` host loop of
``runtime.steps_per_execution`` steps. Gradients are all-reduced by the Keras
optimizer; losses are summed per replica and divided by the global batch.

State (model, optimizer with its step counter, EMA and loss scale) is saved
with ``tf.train.CheckpointManager`` every ``trainer.checkpoint.
save_every_n_steps`` steps (or each epoch) to ``model_dir/checkpoints``; the
chief writes there, other workers to a scratch folder they delete, as
``tf.distribute`` requires all workers to save. A killed run restarted with
the same recipe restores the latest checkpoint and continues at its step, so
it ends after exactly ``epochs x steps_per_epoch`` steps. Epoch metrics go to
``log.csv`` and TensorBoard (chief only).
"""

import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from igc_keras.training.distribute import task_label
from igc_keras.training.schedules import (build_optimizer,
                                          learning_rate_schedule)


def make_eval_step(task, model, strategy, loss_fn):
    """``tf.function``: one distributed batch -> the task's summed stats."""

    def replica_step(images, labels):
        outputs = model(images, training=False)
        loss_sum = task.replica_loss_sum(labels, outputs, loss_fn)
        return task.replica_stats(labels, outputs, loss_sum)

    @tf.function
    def eval_step(batch):
        per_replica = strategy.run(replica_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                               axis=None)
    return eval_step


def evaluate_distributed(task, model, strategy, dataset, steps=None):
    """The task's metrics (classification: loss / top-1 / top-k; detection:
    loss) over a distributed dataset, every replica's share.

    Uses ``get_next_as_optional`` so workers whose shards end at different
    batches stay in step (no collective is left waiting).
    """
    eval_step = make_eval_step(task, model, strategy, task.loss("sum"))
    totals = np.zeros(len(task.stat_names))
    iterator = iter(dataset)
    done = 0
    while steps is None or done < steps:
        optional = iterator.get_next_as_optional()
        if not optional.has_value():
            break
        totals += eval_step(optional.get_value()).numpy()
        done += 1
    return task.summarize(totals)


class CustomLoop:
    """Trains a prepared :class:`~igc_keras.training.experiment.Experiment`
    (its strategy, datasets, steps and callbacks)."""

    def __init__(self, experiment):
        self.experiment = experiment
        config = self.config = experiment.config
        self.task = task = experiment.task
        self.strategy = experiment.strategy
        self.steps_per_epoch = experiment.steps_per_epoch
        self.chief = experiment.chief
        self.model_dir = experiment.model_dir
        self.global_batch = experiment.global_batch_size
        with self.strategy.scope():
            self.model = experiment.build_model()
            schedule = learning_rate_schedule(config.trainer, self.global_batch,
                                              self.steps_per_epoch)
            optimizer = build_optimizer(config, schedule)
            if config.runtime.mixed_precision_dtype == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(self.model.trainable_variables)
            self.optimizer = optimizer
            # the callbacks (TensorBoard, checkpoints) read model.optimizer
            self.model.optimizer = optimizer
            self.loss_fn = task.loss(reduction="sum")
        self.checkpoint = tf.train.Checkpoint(model=self.model,
                                              optimizer=self.optimizer)
        self.checkpoint_dir = experiment.files["checkpoints"]
        write_dir = self.checkpoint_dir
        if not self.chief:
            write_dir = os.path.join(self.model_dir, "scratch",
                                     task_label(self.strategy))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, write_dir,
            max_to_keep=config.trainer.checkpoint.max_to_keep)
        self.scratch = None if self.chief else write_dir

    # --------------------------------------------------------------- steps
    def _train_function(self):
        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        loss_fn, global_batch, task = self.loss_fn, self.global_batch, self.task
        scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        replicas = strategy.num_replicas_in_sync

        def replica_step(images, labels):
            with tf.GradientTape() as tape:
                outputs = model(images, training=True)
                loss_sum = task.replica_loss_sum(labels, outputs, loss_fn)
                loss = loss_sum / global_batch
                if model.losses:
                    loss += tf.add_n(model.losses) / replicas
                to_differentiate = optimizer.scale_loss(loss) if scaled else loss
            variables = model.trainable_variables
            grads = tape.gradient(to_differentiate, variables)
            optimizer.apply_gradients(zip(grads, variables))
            return task.replica_stats(labels, outputs, loss_sum)

        @tf.function
        def train_steps(iterator, count):
            totals = tf.zeros([len(task.stat_names)])
            for _ in tf.range(count):
                per_replica = strategy.run(replica_step, args=next(iterator))
                totals += strategy.reduce(tf.distribute.ReduceOp.SUM,
                                          per_replica, axis=None)
            return totals
        return train_steps

    def _save(self, step):
        self.manager.save(checkpoint_number=step)
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # --------------------------------------------------------------- run
    def run(self):
        """Trains to ``epochs x steps_per_epoch`` steps, resuming if it can.

        Every worker runs the same callbacks' non-finite-loss check (the
        statistics are all-reduced, so all stop together); the chief also
        writes ``log.csv``, TensorBoard, ``last.keras`` and ``best.keras``.

        Returns:
            ``(model, steps, metrics by epoch)``.
        """
        config, model = self.config, self.model
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            print(f"Resumed from {latest}", flush=True)
        else:
            self.experiment.forget_best()
        total = config.trainer.epochs * self.steps_per_epoch
        step = int(self.optimizer.iterations.numpy())
        train_steps = self._train_function()
        iterator = iter(self.experiment.train_ds)
        every = (config.trainer.checkpoint.save_every_n_steps or
                 self.steps_per_epoch)
        chunk = config.runtime.steps_per_execution
        history = keras.callbacks.History()
        callbacks = keras.callbacks.CallbackList(
            self.experiment.callbacks() + [history], model=model,
            epochs=config.trainer.epochs, steps=self.steps_per_epoch,
            verbose=0)
        callbacks.on_train_begin()
        logs = {}
        while step < total:
            epoch, start = divmod(step, self.steps_per_epoch)
            end = (epoch + 1) * self.steps_per_epoch
            totals = np.zeros(len(self.task.stat_names))
            began = time.time()
            callbacks.on_epoch_begin(epoch)
            while step < end:
                # stop at the epoch end and at every checkpoint boundary
                count = min(chunk, end - step, every - step % every)
                totals += train_steps(iterator, tf.constant(count)).numpy()
                step += count
                callbacks.on_train_batch_end(
                    step - epoch * self.steps_per_epoch - 1,
                    self.task.summarize(totals))
                if step % every == 0 and step < end:
                    self._save(step)
            logs = dict(self.task.summarize(totals))
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.optimizer.learning_rate))
            logs.update({f"val_{k}": v for k, v in evaluate_distributed(
                self.task, model, self.strategy,
                self.experiment.validation_ds,
                config.trainer.validation_steps).items()})
            print(f"Epoch {epoch + 1}/{config.trainer.epochs} "
                  f"({end - epoch * self.steps_per_epoch - start} steps, "
                  f"{time.time() - began:.1f}s): " +
                  " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()),
                  flush=True)
            # the non-finite check comes first (a NaN epoch saves nothing),
            # the resume point last (an epoch counts once its outputs are)
            callbacks.on_epoch_end(epoch, logs)
            self._save(step)
        callbacks.on_train_end(logs)
        if config.trainer.ema.enabled:
            self.optimizer.finalize_variable_values(model.trainable_variables)
        return model, int(self.optimizer.iterations.numpy()), history.history
