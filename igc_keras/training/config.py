"""Typed experiment configs (Model Garden layout) that round-trip to YAML.

An experiment is ``runtime`` + ``task{model, train_data, validation_data,
losses}`` + ``trainer{optimizer, learning_rate, warmup, ema, epochs,
checkpoint}``. A recipe YAML only overrides the defaults; ``--set a.b=v``
overrides the recipe. Every key is checked before any work starts: an unknown
key, a value of the wrong type or out of range raises :class:`ConfigError`
naming the dotted key, the value and what is allowed.
"""

import dataclasses
import typing
from typing import List, Optional

import yaml


class ConfigError(ValueError):
    """A recipe or override is malformed; the message names the key."""


def _choice(*values):
    return {"choices": values}


@dataclasses.dataclass
class RuntimeConfig:
    """Where and how to run."""

    distribution_strategy: str = dataclasses.field(
        default="auto", metadata=_choice("auto", "tpu", "multi_worker_mirrored",
                                         "mirrored", "one_device"))
    tpu: Optional[str] = None
    num_gpus: int = 0
    mixed_precision_dtype: str = dataclasses.field(
        default="float32", metadata=_choice("float32", "mixed_float16",
                                            "mixed_bfloat16"))
    steps_per_execution: int = 1
    seed: int = 0
    deterministic: bool = False
    #: ``fit`` (Keras ``fit`` + callbacks), ``custom`` (a ``strategy.run``
    #: loop, the one multi-worker and TPU training take) or ``auto``.
    loop: str = dataclasses.field(default="auto",
                                  metadata=_choice("auto", "fit", "custom"))
    #: Split the CPU into this many logical devices (replicas of ``mirrored``
    #: when there is no GPU): multi-replica runs and tests on one machine.
    logical_cpu_devices: int = 0


@dataclasses.dataclass
class ModelConfig:
    """A registered network and how to build it."""

    name: str = "igcv3_1.0"
    num_classes: int = 1000
    input_size: List[int] = dataclasses.field(
        default_factory=lambda: [224, 224, 3])
    weights: Optional[str] = None
    kwargs: dict = dataclasses.field(default_factory=dict)
    #: RGB mean / std the model's preprocessing layer applies (0..255
    #: scale); null: the variant's own (IGCV3's mean, no scaling, if it has
    #: no released weights).
    input_mean: Optional[List[float]] = None
    input_std: Optional[List[float]] = None
    #: ``split`` trains much faster on CPU, ``native`` on GPU / TPU; ``auto``
    #: picks by the devices present (the weights are the same).
    group_conv_implementation: str = dataclasses.field(
        default="auto", metadata=_choice("auto", "native", "split"))


@dataclasses.dataclass
class DataConfig:
    """One input pipeline."""

    #: ``digits`` is scikit-learn's bundled copy of the UCI handwritten
    #: digits (1,797 real 8x8 images, no download): the quickstart's data.
    #: Detection reads ``coco`` (a COCO-format folder: ``data_dir`` holds
    #: the images, ``annotation_file`` their ``instances_*.json``) or
    #: ``tfds`` (``coco/2017``).
    source: str = dataclasses.field(
        default="tfds", metadata=_choice("tfds", "folder", "tfrecord",
                                         "digits", "coco"))
    name: str = "imagenet2012"
    data_dir: Optional[str] = None
    annotation_file: Optional[str] = None
    #: TFDS only: download and prepare the dataset first if it is not yet
    #: (CIFAR; ImageNet needs its manual download and ``data_dir``).
    download: bool = False
    split: str = "train"
    global_batch_size: int = 256
    is_training: bool = True
    #: classification: ``imagenet``, ``cifar``, ``none``; detection
    #: (:mod:`igc_keras.data.detection`): ``ssd``, ``tf_od_api``, ``flip``,
    #: ``none``.
    augmentation: str = dataclasses.field(
        default="imagenet", metadata=_choice("imagenet", "cifar", "none",
                                             "ssd", "tf_od_api", "flip"))
    crop_fraction: float = 0.875
    min_crop_area: float = 0.08
    shuffle_buffer: int = 10000
    cache: bool = False


@dataclasses.dataclass
class LossesConfig:
    label_smoothing: float = 0.0
    weight_decay: float = 4e-5


@dataclasses.dataclass
class QuantizationConfig:
    """Quantization-aware fine-tuning (tfmot's default 8-bit scheme on the
    model's tf_keras rebuild, :func:`igc_keras.optimize.quantize_aware`).
    The run ends with a full-int8 TFLite file checked against the QAT model
    on validation images (:mod:`igc_keras.training.model_optimization`)."""

    enabled: bool = False
    #: training images whose activation ranges start the QAT model
    #: (:func:`igc_keras.optimize.quantization.calibrate_ranges`; 0: tfmot's
    #: own start, [-6, 6] moved by a 0.999 moving average per step).
    calibration_images: int = 512


@dataclasses.dataclass
class PruningConfig:
    """Magnitude pruning (tfmot's polynomial sparsity schedule on the
    convolution and dense kernels; tfmot leaves depthwise kernels dense,
    :func:`igc_keras.optimize.prune`) while fine-tuning; the run ends with
    the stripped, sparse Keras 3 model."""

    enabled: bool = False
    target_sparsity: float = 0.5
    initial_sparsity: float = 0.0
    #: the schedule ramps sparsity from ``begin_epoch`` to ``end_epoch``
    #: (null: ``trainer.epochs``), updating the masks every ``frequency``
    #: steps; training goes on with the final masks after ``end_epoch``.
    begin_epoch: float = 0.0
    end_epoch: Optional[float] = None
    frequency: int = 100


@dataclasses.dataclass
class TaskConfig:
    #: ``classification`` (a registry network + softmax) or ``detection``
    #: (:class:`igc_keras.detection.SSDLite`: ``model.name`` is the backbone,
    #: ``model.weights`` the backbone's weights, ``model.kwargs`` the
    #: detector's, e.g. ``head``).
    type: str = dataclasses.field(
        default="classification", metadata=_choice("classification",
                                                   "detection"))
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train_data: DataConfig = dataclasses.field(default_factory=DataConfig)
    validation_data: DataConfig = dataclasses.field(
        default_factory=lambda: DataConfig(split="validation",
                                           is_training=False,
                                           augmentation="none"))
    losses: LossesConfig = dataclasses.field(default_factory=LossesConfig)
    #: weights to start from: a ``.keras`` or ``.weights.h5`` file of this
    #: recipe's model (e.g. an earlier run's ``best.keras``); null:
    #: ``model.weights``. QAT and pruning fine-tune a trained model.
    init_checkpoint: Optional[str] = None
    quantization: QuantizationConfig = dataclasses.field(
        default_factory=QuantizationConfig)
    pruning: PruningConfig = dataclasses.field(default_factory=PruningConfig)


@dataclasses.dataclass
class OptimizerConfig:
    type: str = dataclasses.field(default="sgd",
                                  metadata=_choice("sgd", "rmsprop", "adamw"))
    momentum: float = 0.9
    nesterov: bool = False


@dataclasses.dataclass
class LearningRateConfig:
    """``initial_learning_rate`` is for ``base_batch_size``; it scales linearly."""

    type: str = dataclasses.field(
        default="cosine", metadata=_choice("cosine", "step", "exponential",
                                           "constant"))
    initial_learning_rate: float = 0.1
    base_batch_size: int = 256
    boundaries_epochs: List[float] = dataclasses.field(default_factory=list)
    decay_rate: float = 0.1
    decay_epochs: float = 1.0


@dataclasses.dataclass
class WarmupConfig:
    epochs: float = 0.0


@dataclasses.dataclass
class EMAConfig:
    enabled: bool = False
    decay: float = 0.9999


@dataclasses.dataclass
class CheckpointConfig:
    """Best / last models, resumable state, the final export.

    ``save_every_n_steps``: the custom loop's checkpoint interval (0: each
    epoch); ``fit`` backs up at each epoch end (Keras ``BackupAndRestore``).
    """

    keep_best: bool = True
    export_saved_model: bool = True
    save_every_n_steps: int = 0
    max_to_keep: int = 3


@dataclasses.dataclass
class TrainerConfig:
    optimizer: OptimizerConfig = dataclasses.field(
        default_factory=OptimizerConfig)
    learning_rate: LearningRateConfig = dataclasses.field(
        default_factory=LearningRateConfig)
    warmup: WarmupConfig = dataclasses.field(default_factory=WarmupConfig)
    ema: EMAConfig = dataclasses.field(default_factory=EMAConfig)
    epochs: int = 1
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    model_dir: str = "runs/experiment"
    checkpoint: CheckpointConfig = dataclasses.field(
        default_factory=CheckpointConfig)


@dataclasses.dataclass
class ExperimentConfig:
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)


# ------------------------------------------------------------------ parsing
def _type_name(annotation):
    return getattr(annotation, "__name__", str(annotation)).replace(
        "typing.", "")


def _coerce(value, annotation, key, default=None):
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        return _coerce(value, [a for a in args if a is not type(None)][0], key,
                       default)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of "
                              f"{annotation.__name__} fields; got {value!r}.")
        return _build(annotation, value, key, default)
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list; got {value!r}.")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping; got {value!r}.")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false; got {value!r}.")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer; got {value!r}.")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number; got {value!r}.")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string; got {value!r}.")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(annotation)}.")


def _build(cls, values, prefix="", base=None):
    """``cls`` from a mapping; absent keys keep ``base``'s (or the class's)
    values, so a section's own defaults survive a partial override."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]}; allowed keys"
            f"{' under ' + prefix if prefix else ''}: {sorted(fields)}.")
    base = cls() if base is None else base
    kwargs = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in values:
            value = _coerce(values[name], hints[name], key,
                            getattr(base, name))
            choices = field.metadata.get("choices")
            if choices and value not in choices:
                raise ConfigError(f"{key}: {value!r} is not one of "
                                  f"{list(choices)}.")
            kwargs[name] = value
        else:
            kwargs[name] = getattr(base, name)
    return cls(**kwargs)


def _set_path(tree, dotted, value):
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part} is not a section.")
    node[parts[-1]] = value


def parse_override(text):
    """``"a.b=3"`` -> ``("a.b", 3)`` (the value is read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value; got {text!r}.")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def to_dict(config):
    return dataclasses.asdict(config)


def load_experiment(path=None, overrides=(), text=None):
    """Reads a recipe (file or YAML text), applies ``--set`` overrides, validates.

    Returns:
        A checked :class:`ExperimentConfig`.
    """
    tree = {}
    if path is not None or text is not None:
        try:
            source = text if text is not None else open(path).read()
        except OSError as error:
            raise ConfigError(f"cannot read recipe {path!r}: {error}") from error
        try:
            tree = yaml.safe_load(source) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"recipe {path or '<text>'} is not valid YAML: "
                              f"{error}") from error
        if not isinstance(tree, dict):
            raise ConfigError(f"recipe {path or '<text>'} must be a mapping at "
                              f"the top level; got {type(tree).__name__}.")
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        _set_path(tree, key, value)
    config = _build(ExperimentConfig, tree)
    validate(config)
    return config


def validate(config):
    """Cross-field checks, each naming its key."""
    for key in ("train_data", "validation_data"):
        data = getattr(config.task, key)
        if data.global_batch_size < 1:
            raise ConfigError(f"task.{key}.global_batch_size must be >= 1; got "
                              f"{data.global_batch_size}.")
        if not 0 < data.crop_fraction <= 1:
            raise ConfigError(f"task.{key}.crop_fraction must be in (0, 1]; got "
                              f"{data.crop_fraction}.")
        if data.source in ("folder", "tfrecord", "coco") and not data.data_dir:
            raise ConfigError(f"task.{key}.data_dir is required for source="
                              f"{data.source!r}.")
    task_augmentations = {
        "classification": ("imagenet", "cifar", "none"),
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
    if len(config.task.model.input_size) != 3:
        raise ConfigError(f"task.model.input_size must be [height, width, "
                          f"channels]; got {config.task.model.input_size}.")
    _validate_model_optimization(config)
    return config


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
