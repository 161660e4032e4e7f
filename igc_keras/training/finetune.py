"""Fine-tune a network of the package on your own images (transfer learning):
a front-end on the recipe trainer.

:func:`finetune` writes the recipe of the Keras transfer-learning guide as
an experiment and runs it in the trainer's ``fit`` loop
(:mod:`igc_keras.training.trainer`), so fine-tuning reads, checks, trains,
resumes and stops on NaN the way every recipe does:

1. **Data**: a folder with one subfolder per class (``data/cats/*.jpg``,
   ``data/dogs/*.jpg``) read by the one folder reader
   (:mod:`igc_keras.data.folders`, recipe ``source: folder``): a separate
   validation folder, or a seeded ``validation_split`` of the training
   folder. Every image is decoded once up front; unreadable files are
   reported by name (``UserWarning``) and skipped. Training images get the
   ``light`` augmentation (random flip, translation, zoom in ``tf.data``;
   not part of the saved model).
2. **Model** (``task.model.head: transfer``): RGB 0..255 -> the network's
   own preprocessing -> backbone (``include_top=False, pooling="avg"``,
   called in inference mode) -> Dropout -> ``Dense(num_classes, softmax)``
   named ``"classifier"``.
3. **Phases** of one run: ``epochs_head`` epochs train the new head with
   the backbone frozen (Adam at ``head_lr``); ``epochs_full`` epochs train
   the whole network except its BatchNormalization layers, which keep their
   pretrained statistics (Adam at ``full_lr``).
4. **Outputs** in ``output_dir``: ``best.keras`` (best validation accuracy
   over both phases), ``final.keras`` (that model reloaded, evaluated and
   compiled for integer labels), ``training_log.csv`` (both phases, epochs
   numbered continuously), ``class_names.json`` (index -> name),
   ``metrics.json``, and the trainer's ``last.keras``, ``result.json`` and
   ``tensorboard/``. A killed run resumes when started again with the same
   arguments.

``weights`` is ``None`` (random initialisation), ``"imagenet"`` (variants
of ``igc_keras.applications.pretrained.PRETRAINED``) or the path of a
backbone weights file saved from the same architecture with
``include_top=False, pooling="avg"``. The command line is ``igc-keras
finetune`` (the igc_keras_cli module).
"""

import dataclasses
import json
import os
from typing import List

import keras

from igc_keras.data.folders import check_same_classes, scan_image_folder
from igc_keras.training.config import load_experiment
from igc_keras.training.experiment import prepare
from igc_keras.training.trainer import run_experiment

FILES = {"log": "training_log.csv"}
FINAL_FILE = "final.keras"
CLASS_NAMES_FILE = "class_names.json"
METRICS_FILE = "metrics.json"


@dataclasses.dataclass
class FinetuneResult:
    """What :func:`finetune` produced.

    Attributes:
        model: the best model (reloaded from ``best_path``).
        class_names: label index -> class name.
        history_head: metrics by epoch of phase 1 (frozen backbone):
            ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ...
        history_full: the same for phase 2 (whole backbone).
        val_accuracy, val_loss: the best model evaluated on the validation
            set.
        best_path, final_path, log_path, class_names_path, metrics_path: the
            files written.
        num_train, num_val: images used.
        skipped_files: unreadable image files that were skipped.
        image_size: ``(height, width)``.
    """

    model: keras.Model
    class_names: List[str]
    history_head: dict
    history_full: dict
    val_accuracy: float
    val_loss: float
    best_path: str
    final_path: str
    log_path: str
    class_names_path: str
    metrics_path: str
    num_train: int
    num_val: int
    skipped_files: List[str]
    image_size: tuple


#: the input size the builders default to, by the dataset a network is for
DATASET_SIZES = {"cifar": 32, "tiny_imagenet": 64, "imagenet": 224}


def default_image_size(model_name):
    """The size ``model_name`` expects: its pretrained config's, else its
    registered input shape, else its dataset's image size (CIFAR 32,
    ImageNet 224)."""
    from igc_keras.applications.pretrained import PRETRAINED
    from igc_keras.registry import get_model_spec

    if model_name in PRETRAINED:
        return int(PRETRAINED[model_name].input_size[0])
    spec = get_model_spec(model_name)
    shape = spec.kwargs.get("input_shape")
    if shape is not None and shape[0]:
        return int(shape[0])
    return DATASET_SIZES.get(spec.dataset, 224)


def _pair(size, argument):
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        size = tuple(int(s) for s in size)
        valid = len(size) == 2 and min(size) > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"`{argument}` must be a positive integer or a "
                         f"(height, width) pair; got {argument}={size!r}.")
    return size


def _check_number(value, argument, low, high=None, integer=False):
    kinds = (int,) if integer else (int, float)
    valid = not isinstance(value, bool) and isinstance(value, kinds) and (
        value >= low if integer else value > low) and (
        high is None or value < high)
    if not valid:
        allowed = (f"an integer >= {low}" if integer else
                   f"a number > {low}" + (f" and < {high}" if high else ""))
        raise ValueError(f"`{argument}` must be {allowed}; got "
                         f"{argument}={value!r}.")


def experiment_config(model_name, data_dir, *, output_dir, num_classes,
                      weights=None, epochs_head=5, epochs_full=10,
                      head_lr=1e-3, full_lr=1e-4, batch_size=32,
                      image_size=(224, 224), augment=True, seed=0,
                      validation_dir=None, validation_split=0.2, dropout=0.2,
                      model_kwargs=None, group_conv_implementation="auto"):
    """The recipe :func:`finetune` runs (an ``ExperimentConfig``)."""
    held_out = 0.0 if validation_dir else validation_split
    folder = {"source": "folder", "validation_split": held_out,
              "global_batch_size": batch_size}
    return load_experiment(overrides=[
        ("runtime", {"distribution_strategy": "one_device", "seed": seed}),
        ("task.model", {
            "name": model_name, "num_classes": num_classes,
            "input_size": [*image_size, 3], "weights": weights,
            "kwargs": dict(model_kwargs or {}), "head": "transfer",
            "head_dropout": float(dropout), "classifier_activation": "softmax",
            "group_conv_implementation": group_conv_implementation}),
        ("task.train_data", {**folder, "data_dir": data_dir, "split": "train",
                             "augmentation": "light" if augment else "none"}),
        ("task.validation_data", {**folder, "data_dir": validation_dir or
                                  data_dir, "split": "validation"}),
        ("task.losses", {"label_smoothing": 0.0, "weight_decay": 0.0}),
        ("trainer", {
            "optimizer": {"type": "adam"},
            "learning_rate": {"type": "constant",
                              "initial_learning_rate": float(full_lr),
                              "base_batch_size": batch_size},
            "epochs": epochs_head + epochs_full, "head_epochs": epochs_head,
            "head_learning_rate": float(head_lr), "model_dir": output_dir,
            "checkpoint": {"keep_best": True, "export_saved_model": False}}),
    ])


def finetune(model_name, data_dir, *, output_dir, weights=None, epochs_head=5,
             epochs_full=10, head_lr=1e-3, full_lr=1e-4, batch_size=32,
             image_size=None, augment=True, seed=0, verbose=2,
             validation_dir=None, validation_split=0.2, dropout=0.2,
             model_kwargs=None, group_conv_implementation="auto"):
    """Two-phase fine-tuning of a registered network on an image folder.

    Args:
        model_name: registry name (``igc_keras.list_models()``).
        data_dir: training images, one subfolder per class.
        output_dir: where the outputs go (see the module docstring).
        weights: backbone weights: ``None``, ``"imagenet"`` or a weights file
            of the backbone built with ``include_top=False, pooling="avg"``.
        epochs_head: phase-1 epochs (backbone frozen, rate ``head_lr``).
        epochs_full: phase-2 epochs (whole backbone but its BN layers
            trainable, BN in inference mode, rate ``full_lr``).
        batch_size: images per batch.
        image_size: int or ``(height, width)``; default the network's.
        augment: random flip / translation / zoom of training images.
        seed: seeds Keras, NumPy, Python, the split, shuffling and
            augmentation.
        verbose: 0 quiet, else the trainer's one line per epoch.
        validation_dir: separate validation images (same classes); default a
            ``validation_split`` of ``data_dir``.
        dropout: dropout before the classifier.
        model_kwargs: extra builder arguments for the backbone.
        group_conv_implementation: ``auto`` (``split`` without a GPU),
            ``native``, ``split`` or ``dense``.

    Returns:
        :class:`FinetuneResult`.

    Raises:
        ValueError naming the argument (a ``ConfigError`` for what the
        trainer refuses).
    """
    for value, name in ((epochs_head, "epochs_head"),
                        (epochs_full, "epochs_full")):
        _check_number(value, name, 0, integer=True)
    if epochs_head + epochs_full == 0:
        raise ValueError("`epochs_head` + `epochs_full` must be >= 1; got 0 "
                         "and 0.")
    _check_number(head_lr, "head_lr", 0)
    _check_number(full_lr, "full_lr", 0)
    _check_number(batch_size, "batch_size", 1, integer=True)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1); got dropout="
                         f"{dropout!r}.")
    if not output_dir:
        raise ValueError(f"`output_dir` must be a directory path; got "
                         f"output_dir={output_dir!r}.")
    size = _pair(image_size or default_image_size(model_name), "image_size")
    train_scan = scan_image_folder(data_dir, "data_dir")
    validation_scan = train_scan
    if validation_dir is not None:
        validation_scan = scan_image_folder(validation_dir, "validation_dir")
        check_same_classes(train_scan, validation_scan)
    elif not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be a fraction in (0, 1) "
                         f"when no validation_dir is given; got "
                         f"validation_split={validation_split!r}.")
    for scan in {id(s): s for s in (train_scan, validation_scan)}.values():
        scan.report()
    classes = train_scan.class_names
    config = experiment_config(
        model_name, data_dir, output_dir=output_dir, num_classes=len(classes),
        weights=None if weights is None else os.fspath(weights),
        epochs_head=epochs_head, epochs_full=epochs_full, head_lr=head_lr,
        full_lr=full_lr, batch_size=batch_size, image_size=size,
        augment=augment, seed=seed, validation_dir=validation_dir,
        validation_split=validation_split, dropout=dropout,
        model_kwargs=model_kwargs,
        group_conv_implementation=group_conv_implementation)
    experiment = prepare(config, FILES, scans={
        "train_data": train_scan, "validation_data": validation_scan})
    os.makedirs(output_dir, exist_ok=True)
    paths = {"classes": os.path.join(output_dir, CLASS_NAMES_FILE),
             "final": os.path.join(output_dir, FINAL_FILE),
             "metrics": os.path.join(output_dir, METRICS_FILE)}
    with open(paths["classes"], "w") as handle:
        json.dump(classes, handle, indent=1)
    _, result = run_experiment(experiment, verbose=2 if verbose else 0)

    history = {_accuracy_name(k): v for k, v in result["history"].items()}
    head = {k: v[:epochs_head] for k, v in history.items()}
    full = {k: v[epochs_head:] for k, v in history.items()}
    best = keras.saving.load_model(experiment.files["best"])
    best.compile(loss=keras.losses.CategoricalCrossentropy(),
                 metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    val_loss, val_accuracy = best.evaluate(experiment.validation_ds, verbose=0)
    # final.keras is compiled for the integer labels users have
    best.compile(loss=keras.losses.SparseCategoricalCrossentropy(),
                 metrics=["accuracy"])
    best.save(paths["final"])
    skipped = sorted(set(train_scan.unreadable) | set(
        validation_scan.unreadable))
    metrics = {
        "model": model_name, "weights": None if weights is None else
        os.fspath(weights), "image_size": list(size),
        "val_accuracy": float(val_accuracy), "val_loss": float(val_loss),
        "best_epoch": _best_epoch(history.get("val_accuracy", [])),
        "num_train": experiment.train_size,
        "num_val": experiment.validation_size,
        "skipped_files": skipped, "class_names": classes}
    with open(paths["metrics"], "w") as handle:
        json.dump(metrics, handle, indent=1)
    return FinetuneResult(
        model=best, class_names=classes, history_head=head,
        history_full=full, val_accuracy=float(val_accuracy),
        val_loss=float(val_loss), best_path=experiment.files["best"],
        final_path=paths["final"], log_path=experiment.files["log"],
        class_names_path=paths["classes"], metrics_path=paths["metrics"],
        num_train=experiment.train_size, num_val=experiment.validation_size,
        skipped_files=skipped, image_size=size)


def _accuracy_name(key):
    """The trainer's ``top1`` / ``val_top1`` as Keras' ``accuracy`` names."""
    return key.replace("top1", "accuracy")


def _best_epoch(scores):
    """1-based epoch (over both phases) with the best val_accuracy."""
    return 1 + max(range(len(scores)), key=scores.__getitem__) if scores else None
