"""Typed experiment configs (Model Garden layout) that round-trip to YAML.

An experiment is ``runtime`` + ``task{model, train_data, validation_data,
losses}`` + ``trainer{optimizer, learning_rate, warmup, ema, epochs,
checkpoint}``. A recipe YAML only overrides the defaults; ``--set a.b=v``
overrides the recipe. Every key is checked before any work starts: an unknown
key, a value of the wrong type or out of range raises :class:`ConfigError`
naming the dotted key, the value and what is allowed.
"""

import dataclasses
import math
import re
import typing
from typing import List, Optional

import yaml

from igc_keras.training.validation import validate

from igc_keras.errors import ConfigError  # noqa: F401  (re-exported)


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
    #: picks by the devices present; ``dense`` (one block-diagonal kernel)
    #: is the fastest CPU form for few groups (the weights are the same).
    group_conv_implementation: str = dataclasses.field(
        default="auto", metadata=_choice("auto", "native", "split", "dense"))
    #: ``network``: the network's own classifier (``classes=num_classes``);
    #: ``transfer``: the backbone without its top (global average pooling,
    #: called in inference mode so BatchNorm keeps its statistics), then
    #: Dropout(``head_dropout``) and a new Dense layer named ``classifier``
    #: (transfer learning; ``trainer.head_epochs`` train it first alone).
    head: str = dataclasses.field(default="network",
                                  metadata=_choice("network", "transfer"))
    head_dropout: float = 0.2
    #: null: logits (the loss takes logits); ``softmax``: probabilities.
    classifier_activation: Optional[str] = dataclasses.field(
        default=None, metadata=_choice(None, "softmax"))


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
    #: ``folder`` only: hold out this fraction of ``data_dir`` (a seeded
    #: shuffle by ``runtime.seed``); ``split: train`` reads the rest,
    #: ``split: validation`` the held-out images.
    validation_split: float = 0.0
    annotation_file: Optional[str] = None
    #: ``coco`` only: read just the first N images of ``annotation_file``
    #: (an overfitting check: train on a few images and score them).
    max_images: Optional[int] = None
    #: TFDS only: download and prepare the dataset first if it is not yet
    #: (CIFAR; ImageNet needs its manual download and ``data_dir``).
    download: bool = False
    split: str = "train"
    global_batch_size: int = 256
    is_training: bool = True
    #: classification: ``imagenet``, ``cifar``, ``light`` (random flip,
    #: translation and zoom: Keras' transfer-learning augmentation),
    #: ``none``; detection
    #: (:mod:`igc_keras.data.detection`): ``ssd``, ``tf_od_api``, ``flip``,
    #: ``none``.
    augmentation: str = dataclasses.field(
        default="imagenet", metadata=_choice("imagenet", "cifar", "light",
                                             "none", "ssd", "tf_od_api",
                                             "flip"))
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
                                  metadata=_choice("sgd", "rmsprop", "adam",
                                                   "adamw"))
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
    #: the first ``head_epochs`` of ``epochs`` train only the new head of a
    #: ``task.model.head: transfer`` model (the backbone frozen) at the
    #: constant ``head_learning_rate``; the rest train the whole network but
    #: its BatchNorm layers (inference mode) on the recipe's schedule.
    head_epochs: int = 0
    head_learning_rate: float = 1e-3
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
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 1e4
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer; got {value!r}.")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number; got {value!r}.")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number; got "
                              f"{value!r}.")
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


class RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers in exponent form (``1e-3``,
    ``1.0e12``, ``5E4``) as numbers: YAML 1.1, which PyYAML implements,
    wants a dot and a signed exponent and would read them as strings."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)"
               r"[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def read_yaml(text, where):
    """The YAML document ``text`` (:class:`RecipeLoader`); a syntax error
    is a :class:`ConfigError` naming ``where`` and the line."""
    try:
        return yaml.load(text, Loader=RecipeLoader)
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise ConfigError(f"{where} is not valid YAML: {detail}") from error


def parse_override(text):
    """``"a.b=3"`` -> ``("a.b", 3)`` (the value is read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value; got {text!r}.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*",
                        key):
        raise ConfigError(f"--set {text!r}: {key!r} is not a dotted recipe "
                          f"key (e.g. trainer.epochs).")
    return key, read_yaml(raw, f"--set {key}={raw}")


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
        tree = read_yaml(source, f"recipe {path or '<text>'}") or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"recipe {path or '<text>'} must be a mapping at "
                              f"the top level; got {type(tree).__name__}.")
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        _set_path(tree, key, value)
    config = _build(ExperimentConfig, tree)
    validate(config)
    return config


