"""Cross-field checks of an experiment config, each naming its key, the
value and what is allowed (:func:`validate`); run on every recipe before
any work starts."""

import inspect

from igc_keras.errors import ConfigError

#: builder arguments a task sets itself (not ``task.model.kwargs``).
TASK_ARGUMENTS = ("input_shape", "weights", "classes", "classifier_activation",
                  "include_top", "pooling", "input_tensor")


def check_range(key, value, low=None, high=None, low_open=False,
                high_open=False):
    """Refuses ``value`` outside ``[low, high]`` (``(`` / ``)`` where open),
    naming ``key``."""
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        if high is None:
            allowed = f"{'>' if low_open else '>='} {low}"
        else:
            allowed = (f"in {'(' if low_open else '['}{low}, {high}"
                       f"{')' if high_open else ']'}")
        raise ConfigError(f"{key} must be {allowed}; got {value}.")


def validate(config):
    """Cross-field checks, each naming its key."""
    for key in ("train_data", "validation_data"):
        data = getattr(config.task, key)
        check_range(f"task.{key}.shuffle_buffer", data.shuffle_buffer, 1)
        check_range(f"task.{key}.min_crop_area", data.min_crop_area, 0, 1,
                    low_open=True)
        if data.global_batch_size < 1:
            raise ConfigError(f"task.{key}.global_batch_size must be >= 1; got "
                              f"{data.global_batch_size}.")
        if not 0 < data.crop_fraction <= 1:
            raise ConfigError(f"task.{key}.crop_fraction must be in (0, 1]; got "
                              f"{data.crop_fraction}.")
        if not 0 <= data.validation_split < 1:
            raise ConfigError(f"task.{key}.validation_split must be in [0, 1);"
                              f" got {data.validation_split}.")
        if data.validation_split and (data.source != "folder" or data.split
                                      not in ("train", "validation")):
            raise ConfigError(
                f"task.{key}.validation_split={data.validation_split} holds "
                f"out part of an image folder: it needs source 'folder' and "
                f"split 'train' or 'validation'; got source={data.source!r}, "
                f"split={data.split!r}.")
        if data.source in ("folder", "tfrecord", "coco") and not data.data_dir:
            raise ConfigError(f"task.{key}.data_dir is required for source="
                              f"{data.source!r}.")
    task_augmentations = {
        "classification": ("imagenet", "cifar", "light", "none"),
        "detection": ("ssd", "tf_od_api", "flip", "none")}[config.task.type]
    task_sources = {
        "classification": ("tfds", "folder", "tfrecord", "digits"),
        "detection": ("coco", "tfds")}[config.task.type]
    for key in ("train_data", "validation_data"):
        data = getattr(config.task, key)
        if data.augmentation not in task_augmentations:
            raise ConfigError(
                f"task.{key}.augmentation={data.augmentation!r} is not a "
                f"{config.task.type} augmentation; allowed: "
                f"{list(task_augmentations)}.")
        if data.source not in task_sources:
            raise ConfigError(
                f"task.{key}.source={data.source!r} cannot feed "
                f"{config.task.type}; allowed: {list(task_sources)}.")
        if data.source == "coco" and not data.annotation_file:
            raise ConfigError(f"task.{key}.annotation_file is required for "
                              f"source='coco' (the instances_*.json).")
        if data.max_images is not None and (
                data.source != "coco" or data.max_images < 1):
            raise ConfigError(
                f"task.{key}.max_images={data.max_images}: the first N >= 1 "
                f"images of a COCO annotation file (source 'coco'); got "
                f"source={data.source!r}.")
    if config.task.validation_data.is_training:
        raise ConfigError("task.validation_data.is_training must be false "
                          "(validation reads each image once, unaugmented).")
    if not config.task.train_data.is_training:
        raise ConfigError("task.train_data.is_training must be true.")
    if config.trainer.epochs < 1:
        raise ConfigError(f"trainer.epochs must be >= 1; got "
                          f"{config.trainer.epochs}.")
    if config.task.model.num_classes < 1:
        raise ConfigError(f"task.model.num_classes must be >= 1; got "
                          f"{config.task.model.num_classes}.")
    if config.runtime.distribution_strategy == "tpu" and not config.runtime.tpu:
        raise ConfigError("runtime.tpu must name the TPU (or 'local') when "
                          "runtime.distribution_strategy is 'tpu'.")
    runtime = config.runtime
    for key in ("steps_per_execution",):
        if getattr(runtime, key) < 1:
            raise ConfigError(f"runtime.{key} must be >= 1; got "
                              f"{getattr(runtime, key)}.")
    if runtime.logical_cpu_devices < 0:
        raise ConfigError(f"runtime.logical_cpu_devices must be >= 0; got "
                          f"{runtime.logical_cpu_devices}.")
    trainer = config.trainer
    for key in ("steps_per_epoch", "validation_steps"):
        value = getattr(trainer, key)
        if value is not None and value < 1:
            raise ConfigError(f"trainer.{key} must be >= 1 (or null); got "
                              f"{value}.")
    if trainer.checkpoint.save_every_n_steps < 0:
        raise ConfigError(f"trainer.checkpoint.save_every_n_steps must be >= 0;"
                          f" got {trainer.checkpoint.save_every_n_steps}.")
    if trainer.checkpoint.max_to_keep < 1:
        raise ConfigError(f"trainer.checkpoint.max_to_keep must be >= 1; got "
                          f"{trainer.checkpoint.max_to_keep}.")
    if trainer.learning_rate.initial_learning_rate <= 0:
        raise ConfigError(
            f"trainer.learning_rate.initial_learning_rate must be > 0; got "
            f"{trainer.learning_rate.initial_learning_rate}.")
    if trainer.learning_rate.base_batch_size < 1:
        raise ConfigError(f"trainer.learning_rate.base_batch_size must be >= 1;"
                          f" got {trainer.learning_rate.base_batch_size}.")
    if trainer.warmup.epochs < 0 or trainer.warmup.epochs > trainer.epochs:
        raise ConfigError(f"trainer.warmup.epochs must be in [0, trainer.epochs"
                          f"={trainer.epochs}]; got {trainer.warmup.epochs}.")
    boundaries = trainer.learning_rate.boundaries_epochs
    if boundaries != sorted(boundaries) or any(b <= 0 for b in boundaries):
        raise ConfigError(f"trainer.learning_rate.boundaries_epochs must be "
                          f"increasing and > 0; got {boundaries}.")
    if not 0 <= config.task.losses.label_smoothing < 1:
        raise ConfigError(f"task.losses.label_smoothing must be in [0, 1); got "
                          f"{config.task.losses.label_smoothing}.")
    if config.task.losses.weight_decay < 0:
        raise ConfigError(f"task.losses.weight_decay must be >= 0; got "
                          f"{config.task.losses.weight_decay}.")
    if not 0 < trainer.ema.decay < 1:
        raise ConfigError(f"trainer.ema.decay must be in (0, 1); got "
                          f"{trainer.ema.decay}.")
    for key in ("input_mean", "input_std"):
        value = getattr(config.task.model, key)
        if value is not None and (len(value) != 3 or (
                key == "input_std" and min(value) <= 0)):
            raise ConfigError(f"task.model.{key} must be 3 RGB values"
                              f"{' > 0' if key == 'input_std' else ''} (or "
                              f"null); got {value}.")
    _validate_transfer(config)
    _validate_optimizer(config)
    _validate_model(config)
    _validate_model_optimization(config)
    return config


def _validate_optimizer(config):
    """``trainer.optimizer`` / ``trainer.learning_rate`` values the Keras
    optimizers and schedules would refuse (or diverge on) mid-run."""
    optimizer, rate = config.trainer.optimizer, config.trainer.learning_rate
    if optimizer.type in ("sgd", "rmsprop"):
        check_range("trainer.optimizer.momentum", optimizer.momentum, 0, 1,
                    high_open=True)
    if optimizer.nesterov and optimizer.type != "sgd":
        raise ConfigError(f"trainer.optimizer.nesterov=true is SGD's; "
                          f"trainer.optimizer.type is {optimizer.type!r}.")
    if rate.type in ("step", "exponential"):
        check_range("trainer.learning_rate.decay_rate", rate.decay_rate, 0,
                    low_open=True)
    if rate.type == "exponential":
        check_range("trainer.learning_rate.decay_epochs", rate.decay_epochs,
                    0, low_open=True)
    check_range("runtime.seed", config.runtime.seed, 0)
    check_range("runtime.num_gpus", config.runtime.num_gpus, 0)


def _validate_model(config):
    """``task.model``: the network is registered, its ``kwargs`` are its
    builder's arguments, ``input_size`` is ``[height, width, 3]`` (the
    pipelines decode RGB)."""
    model = config.task.model
    size = model.input_size
    if len(size) != 3 or min(size) < 1:
        raise ConfigError(f"task.model.input_size must be [height, width, "
                          f"channels] of positive sizes; got {size}.")
    if size[2] != 3:
        raise ConfigError(f"task.model.input_size={size}: the networks take "
                          f"RGB images (3 channels; the input pipelines "
                          f"decode RGB); got {size[2]} channels.")
    if config.task.type == "detection":
        from igc_keras.detection.ssdlite import BACKBONES
        if model.name not in BACKBONES:
            raise ConfigError(f"task.model.name={model.name!r} is not an "
                              f"SSDLite backbone; allowed: {sorted(BACKBONES)}"
                              f".")
        return
    import igc_keras.applications  # noqa: F401  (registers the networks)
    from igc_keras.registry import get_model_spec
    try:
        spec = get_model_spec(model.name)
    except ValueError as error:
        raise ConfigError(f"task.model (name={model.name!r}): {error}") \
            from error
    allowed = [name for name in inspect.signature(spec.builder).parameters
               if name not in TASK_ARGUMENTS]
    for name in model.kwargs:
        if name in TASK_ARGUMENTS:
            raise ConfigError(f"task.model.kwargs.{name}: set by the task "
                              f"(input_size, weights, num_classes, head); "
                              f"remove it from kwargs.")
        if name not in allowed:
            raise ConfigError(f"task.model.kwargs.{name}={model.kwargs[name]!r}"
                              f" is not an argument of {spec.builder.__name__}"
                              f"; allowed: {allowed}.")


def _validate_transfer(config):
    """``task.model.head`` / ``head_dropout``, ``trainer.head_epochs``."""
    model, trainer = config.task.model, config.trainer
    if model.head == "transfer" and config.task.type != "classification":
        raise ConfigError(f"task.model.head='transfer' is for classification; "
                          f"task.type is {config.task.type!r}.")
    if not 0 <= model.head_dropout < 1:
        raise ConfigError(f"task.model.head_dropout must be in [0, 1); got "
                          f"{model.head_dropout}.")
    if not 0 <= trainer.head_epochs <= trainer.epochs:
        raise ConfigError(f"trainer.head_epochs must be in [0, trainer.epochs="
                          f"{trainer.epochs}]; got {trainer.head_epochs}.")
    if trainer.head_epochs and model.head != "transfer":
        raise ConfigError(f"trainer.head_epochs={trainer.head_epochs} trains a "
                          f"new head alone: it needs task.model.head "
                          f"'transfer'; got {model.head!r}.")
    if trainer.head_learning_rate <= 0:
        raise ConfigError(f"trainer.head_learning_rate must be > 0; got "
                          f"{trainer.head_learning_rate}.")


def _validate_model_optimization(config):
    """``task.quantization`` / ``task.pruning``: one at a time, on what the
    tf_keras fine-tuning loop runs (classification, ``fit``, float32, one
    device or mirrored replicas)."""
    task, pruning = config.task, config.task.pruning
    enabled = [key for key in ("quantization", "pruning")
               if getattr(task, key).enabled]
    if len(enabled) > 1:
        raise ConfigError("task.quantization.enabled and task.pruning.enabled "
                          "are both true; run pruning first, then QAT on the "
                          "pruned model's checkpoint.")
    if not enabled:
        return
    key = f"task.{enabled[0]}.enabled"
    if not task.init_checkpoint and not task.model.weights:
        raise ConfigError(f"{key}: QAT / pruning fine-tune a trained model; "
                          f"set task.init_checkpoint (e.g. a run's "
                          f"best.keras) or task.model.weights.")
    if task.type != "classification":
        raise ConfigError(f"{key}: QAT / pruning fine-tuning supports "
                          f"task.type 'classification'; got {task.type!r}.")
    runtime = config.runtime
    if runtime.distribution_strategy not in ("auto", "one_device", "mirrored"):
        raise ConfigError(
            f"{key}: runtime.distribution_strategy="
            f"{runtime.distribution_strategy!r} is not supported for QAT / "
            f"pruning fine-tuning (tf_keras fit on one device or mirrored "
            f"replicas); allowed: ['auto', 'one_device', 'mirrored'].")
    if runtime.loop == "custom":
        raise ConfigError(f"{key}: runtime.loop='custom' is not supported; "
                          f"QAT / pruning fine-tune with tf_keras fit "
                          f"('auto' or 'fit').")
    if runtime.mixed_precision_dtype != "float32":
        raise ConfigError(f"{key}: runtime.mixed_precision_dtype must be "
                          f"'float32' (tfmot's wrappers compute in float32); "
                          f"got {runtime.mixed_precision_dtype!r}.")
    if config.trainer.head_epochs:
        raise ConfigError(f"{key}: trainer.head_epochs must be 0 (QAT / "
                          f"pruning fine-tune the whole network).")
    if config.trainer.ema.enabled:
        raise ConfigError(f"{key}: trainer.ema.enabled must be false (the "
                          f"tf_keras fine-tuning loop does not swap in EMA "
                          f"weights).")
    if config.trainer.warmup.epochs and (
            config.trainer.learning_rate.type != "cosine"):
        raise ConfigError(
            f"{key}: trainer.warmup.epochs={config.trainer.warmup.epochs} "
            f"needs trainer.learning_rate.type 'cosine' here (its own warmup)"
            f"; got {config.trainer.learning_rate.type!r}.")
    if enabled[0] != "pruning":
        if task.quantization.calibration_images < 0:
            raise ConfigError(f"task.quantization.calibration_images must be "
                              f">= 0; got {task.quantization.calibration_images}"
                              f".")
        return
    if not 0 < pruning.target_sparsity < 1:
        raise ConfigError(f"task.pruning.target_sparsity must be in (0, 1); "
                          f"got {pruning.target_sparsity}.")
    if not 0 <= pruning.initial_sparsity < pruning.target_sparsity:
        raise ConfigError(f"task.pruning.initial_sparsity must be in [0, "
                          f"target_sparsity={pruning.target_sparsity}); got "
                          f"{pruning.initial_sparsity}.")
    end = config.trainer.epochs if pruning.end_epoch is None else \
        pruning.end_epoch
    if not 0 <= pruning.begin_epoch < end <= config.trainer.epochs:
        raise ConfigError(
            f"task.pruning.begin_epoch={pruning.begin_epoch} and end_epoch="
            f"{end} must satisfy 0 <= begin_epoch < end_epoch "
            f"<= trainer.epochs={config.trainer.epochs}.")
    if pruning.frequency < 1:
        raise ConfigError(f"task.pruning.frequency must be >= 1 (steps); got "
                          f"{pruning.frequency}.")
