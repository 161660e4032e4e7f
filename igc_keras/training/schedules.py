"""Learning-rate schedules and optimizers built from a recipe's ``trainer``.

The recipe's ``initial_learning_rate`` is for ``base_batch_size`` examples; it
scales linearly with the global batch (Goyal et al.), so one recipe serves a
TPU pod slice and a laptop. Warmup ramps linearly from 0 over
``warmup.epochs``; after it come cosine (Keras ``CosineDecay`` with its own
warmup), step (``boundaries_epochs`` x ``decay_rate``), exponential
(``decay_rate`` every ``decay_epochs``, the authors' 0.98 per epoch) or a
constant rate. Weight decay and EMA are the Keras optimizers' own.

Both builders take ``module``: ``keras`` (the default) or ``tf_keras``,
whose optimizers and schedules have the same names and arguments — the
QAT / pruning fine-tuning loop (:mod:`igc_keras.training.model_optimization`)
trains tfmot's tf_keras models with the recipe's own optimizer this way.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="igc_keras")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """0 -> ``schedule(warmup_steps)`` linearly, then ``schedule(step)``."""

    def __init__(self, schedule, warmup_steps):
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        after = tf.cast(self.schedule(step), tf.float32)
        if not self.warmup_steps:
            return after
        peak = tf.cast(self.schedule(float(self.warmup_steps)), tf.float32)
        return tf.where(step < self.warmup_steps,
                        peak * step / self.warmup_steps, after)

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        return cls(keras.optimizers.schedules.deserialize(config["schedule"]),
                   config["warmup_steps"])


def scaled_learning_rate(trainer, global_batch_size):
    """``initial_learning_rate x global_batch_size / base_batch_size``."""
    rate = trainer.learning_rate
    return rate.initial_learning_rate * global_batch_size / rate.base_batch_size


def learning_rate_schedule(trainer, global_batch_size, steps_per_epoch,
                           module=keras, epochs=None):
    """The recipe's schedule over ``epochs`` (default ``trainer.epochs``)
    x ``steps_per_epoch`` steps.

    Args:
        trainer: :class:`~igc_keras.training.config.TrainerConfig`.
        global_batch_size: examples per step over all replicas.
        steps_per_epoch: optimizer steps per epoch.
        module: ``keras`` or ``tf_keras`` (warmup before a non-cosine
            schedule is Keras 3 only).

    Returns:
        A ``module.optimizers.schedules.LearningRateSchedule``.
    """
    config = trainer.learning_rate
    rate = scaled_learning_rate(trainer, global_batch_size)
    total = max(1, (trainer.epochs if epochs is None else epochs) *
                steps_per_epoch)
    warmup = int(round(trainer.warmup.epochs * steps_per_epoch))
    schedules = module.optimizers.schedules
    if config.type == "cosine":
        return schedules.CosineDecay(
            0.0 if warmup else rate, max(1, total - warmup),
            warmup_target=rate if warmup else None, warmup_steps=warmup)
    if config.type == "step":
        boundaries = [int(round(e * steps_per_epoch))
                      for e in config.boundaries_epochs]
        values = [rate * config.decay_rate ** i
                  for i in range(len(boundaries) + 1)]
        schedule = schedules.PiecewiseConstantDecay(boundaries or [total],
                                                    values if boundaries
                                                    else [rate, rate])
    elif config.type == "exponential":
        schedule = schedules.ExponentialDecay(
            rate, max(1, int(round(config.decay_epochs * steps_per_epoch))),
            config.decay_rate, staircase=True)
    else:
        schedule = schedules.PiecewiseConstantDecay([total], [rate, rate])
    if warmup and module is not keras:
        raise ValueError(f"trainer.warmup.epochs={trainer.warmup.epochs} "
                         f"before a {config.type!r} schedule is Keras 3 only;"
                         f" use learning_rate.type 'cosine' (its own warmup).")
    return LinearWarmup(schedule, warmup) if warmup else schedule


def build_optimizer(config, schedule, module=keras):
    """SGD (momentum, optional Nesterov), RMSProp, Adam or AdamW from the
    recipe.

    Weight decay is ``task.losses.weight_decay`` (decoupled, x learning rate,
    which for SGD is the authors' L2 ``wd``); EMA of the weights when
    ``trainer.ema.enabled`` (swapped in at the end of training).
    ``module``: ``keras`` or ``tf_keras``.
    """
    trainer, decay = config.trainer, config.task.losses.weight_decay
    common = dict(weight_decay=decay or None, use_ema=trainer.ema.enabled,
                  ema_momentum=trainer.ema.decay)
    kind = trainer.optimizer.type
    if kind == "sgd":
        return module.optimizers.SGD(schedule,
                                    momentum=trainer.optimizer.momentum,
                                    nesterov=trainer.optimizer.nesterov,
                                    **common)
    if kind == "adam":
        return module.optimizers.Adam(schedule, **common)
    if kind == "rmsprop":
        return module.optimizers.RMSprop(schedule, rho=0.9,
                                        momentum=trainer.optimizer.momentum,
                                        epsilon=1e-3, **common)
    return module.optimizers.AdamW(schedule, **{**common, "weight_decay": decay})
