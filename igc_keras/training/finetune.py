"""Fine-tune a network of the package on your own images (transfer learning).

The recipe of the Keras transfer-learning guide, for any registered network:

1. **Data**: a folder with one subfolder per class (``data/cats/*.jpg``,
   ``data/dogs/*.jpg``), read with ``keras.utils.image_dataset_from_directory``;
   a separate validation folder, or a seeded split of the training folder.
   Every image is decoded once up front, so an unreadable file is reported
   (and skipped) before training instead of stopping it mid-epoch.
2. **Model**: RGB 0..255 -> the network's own preprocessing
   (:func:`~igc_keras.applications.imagenet_utils.preprocessing_layer`) ->
   backbone (``include_top=False, pooling="avg"``, called with
   ``training=False``) -> Dropout -> ``Dense(num_classes, softmax)`` named
   ``"classifier"``.
3. **Phase 1** trains the new head with the backbone frozen
   (:func:`freeze_backbone`); **phase 2** unfreezes the whole backbone except
   its BatchNormalization layers (:func:`unfreeze_backbone`) and trains
   everything at a lower learning rate.

   BatchNormalization stays in inference mode (moving statistics) in both
   phases, as the guide prescribes. In Keras 3 the ``training=False`` of the
   nested call alone does not ensure it: ``fit`` calls the outer model with
   ``training=True`` and the functional model passes that value to every
   layer, overriding the recorded ``training=False``
   (keras-team/keras#20285); a BatchNormalization layer runs in inference
   mode only while it is not trainable. So phase 2 keeps the BN layers
   frozen (also their gamma/beta, as keras.io's EfficientNet fine-tuning
   example does).
   Augmentation (random flip, translation, zoom: Keras preprocessing layers)
   runs in the ``tf.data`` pipeline and is not part of the saved model.
4. **Outputs** in ``output_dir``: ``best.keras`` (best ``val_accuracy`` over
   both phases, ``ModelCheckpoint``), ``final.keras`` (that model reloaded and
   evaluated), ``training_log.csv`` (``CSVLogger``, both phases, epochs
   numbered continuously), ``class_names.json`` (index -> name) and
   ``metrics.json``.

Python::

    from igc_keras.training.finetune import finetune
    result = finetune("igcv3_1.0", "data/flowers", weights="imagenet",
                      epochs_head=5, epochs_full=10, output_dir="runs/flowers")
    print(result.val_accuracy, result.final_path)

Command line (same options)::

    igc-keras finetune --data data/flowers --model igcv3_1.0 \\
        --weights imagenet --head-epochs 5 --epochs 10 --output runs/flowers

``weights`` is ``None`` (random initialisation), ``"imagenet"`` (variants of
``igc_keras.applications.pretrained.PRETRAINED``; needs the network once) or
the path of a backbone weights file saved from the same architecture with
``include_top=False, pooling="avg"`` (e.g. ``backbone.save_weights(...)``).

Grouped convolutions: on a machine without a GPU the backbone is built with
``GroupConv2D(implementation="split")``; the gradient of the native grouped
convolution runs through XLA on CPU and was measured 30x slower (24 s vs
0.85 s per batch of 64 for ``igcv2_cifar_igcv1_c48_d8`` on 2 cores). Both
implementations share the same weights (see
:func:`igc_keras.layers.with_group_conv_implementation`).
"""

import argparse
import dataclasses
import inspect
import json
import os
import sys
import warnings
from typing import List, Optional

import keras
import tensorflow as tf

from igc_keras.data.classification import IMAGE_EXTENSIONS, class_image_files
from igc_keras.layers.group_conv import resolve_group_conv_implementation
BEST_FILE = "best.keras"
FINAL_FILE = "final.keras"
LOG_FILE = "training_log.csv"
CLASS_NAMES_FILE = "class_names.json"
METRICS_FILE = "metrics.json"


# --------------------------------------------------------------------- data
@dataclasses.dataclass
class FolderScan:
    """What :func:`scan_image_folder` found in a folder of class subfolders.

    Attributes:
        directory: the folder.
        class_names: sorted subfolder names (the label order).
        counts: images per class (files with an image extension).
        unreadable: paths of files that could not be read or decoded.
    """

    directory: str
    class_names: List[str]
    counts: dict
    unreadable: List[str]

    @property
    def num_images(self):
        return sum(self.counts.values())


def _undecodable(paths):
    """The subset of ``paths`` that ``tf.io.decode_image`` cannot read."""
    if not paths:
        return []

    def decode(index, path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                   expand_animations=False)
        return index, tf.shape(image)[0]

    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(paths), dtype=tf.int64), tf.constant(paths)))
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=False).ignore_errors().batch(1024)
    readable = set()
    for indices, _ in dataset.as_numpy_iterator():
        readable.update(int(i) for i in indices)
    return [path for i, path in enumerate(paths) if i not in readable]


def scan_image_folder(directory, argument="directory", check_images=True):
    """Checks a folder of class subfolders before any training starts.

    Args:
        directory: folder with one subfolder per class.
        argument: the argument name used in error messages.
        check_images: decode every image once to find unreadable files.

    Returns:
        :class:`FolderScan`.

    Raises:
        ValueError (naming ``argument``): the folder does not exist, has no
        class subfolders or only one, a class has no images, or a class has
        no readable image.
    """
    if directory is None or not os.path.isdir(directory):
        raise ValueError(f"{argument}={directory!r} is not an existing "
                         f"directory.")
    directory = os.fspath(directory)
    classes = sorted(name for name in os.listdir(directory)
                     if os.path.isdir(os.path.join(directory, name))
                     and not name.startswith("."))
    if not classes:
        raise ValueError(
            f"{argument}={directory!r} has no class subfolders; expected one "
            f"subfolder per class holding its images, e.g. "
            f"{os.path.join(directory, 'cats', '0001.jpg')} and "
            f"{os.path.join(directory, 'dogs', '0001.jpg')}.")
    if len(classes) < 2:
        raise ValueError(
            f"{argument}={directory!r} has only 1 class subfolder "
            f"({classes[0]!r}); a classifier needs at least 2 classes.")
    files = {name: class_image_files(os.path.join(directory, name))
             for name in classes}
    empty = [name for name in classes if not files[name]]
    if empty:
        raise ValueError(
            f"{argument}={directory!r}: class subfolder(s) {empty} contain no "
            f"images (extensions {', '.join(IMAGE_EXTENSIONS)}); remove them or "
            f"add images.")
    unreadable = []
    if check_images:
        unreadable = _undecodable([p for name in classes for p in files[name]])
        bad = set(unreadable)
        dead = [name for name in classes
                if all(path in bad for path in files[name])]
        if dead:
            raise ValueError(
                f"{argument}={directory!r}: no image of class subfolder(s) "
                f"{dead} can be decoded.")
    return FolderScan(directory, classes,
                      {name: len(files[name]) for name in classes}, unreadable)


def _report_unreadable(scan, argument):
    if not scan.unreadable:
        return
    shown = ", ".join(scan.unreadable[:5])
    more = f" and {len(scan.unreadable) - 5} more" if len(
        scan.unreadable) > 5 else ""
    warnings.warn(
        f"{argument}={scan.directory!r}: skipping {len(scan.unreadable)} of "
        f"{scan.num_images} image file(s) that cannot be decoded: "
        f"{shown}{more}.", UserWarning, stacklevel=3)


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


def _positive_int(value, argument, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{argument}` must be an integer >= {minimum}; got "
                         f"{argument}={value!r}.")
    return value


def _folder_datasets(directory, image_size, batch_size, validation_split=0.2,
                     seed=0, validation_directory=None, *, check_images=True,
                     interpolation="bilinear", verbose=True,
                     names=("directory", "validation_directory")):
    """:func:`image_folder_datasets` plus image counts (for reporting).

    ``names``: how errors call the two folders (the caller's argument names).
    """
    size = _pair(image_size, "image_size")
    _positive_int(batch_size, "batch_size")
    train_scan = scan_image_folder(directory, names[0], check_images)
    options = dict(labels="inferred", label_mode="int", color_mode="rgb",
                   image_size=size, batch_size=None, interpolation=interpolation,
                   crop_to_aspect_ratio=True, verbose=bool(verbose))
    if validation_directory is None:
        if isinstance(validation_split, bool) or not isinstance(
                validation_split, (int, float)) or not 0 < validation_split < 1:
            raise ValueError(
                f"`validation_split` must be a fraction in (0, 1) when no "
                f"{names[1]} is given; got "
                f"validation_split={validation_split!r}.")
        if int(validation_split * train_scan.num_images) < 1:
            raise ValueError(
                f"validation_split={validation_split} of the "
                f"{train_scan.num_images} images in {names[0]}="
                f"{train_scan.directory!r} leaves no validation image; raise "
                f"it or pass {names[1]}.")
        train, val = keras.utils.image_dataset_from_directory(
            directory, class_names=train_scan.class_names,
            validation_split=validation_split, subset="both", shuffle=True,
            seed=seed, **options)
        val_scan = train_scan
    else:
        val_scan = scan_image_folder(validation_directory, names[1],
                                     check_images)
        if val_scan.class_names != train_scan.class_names:
            raise ValueError(
                f"{names[1]}={val_scan.directory!r} has class subfolders "
                f"{val_scan.class_names}; they must be the same as "
                f"{names[0]}={train_scan.directory!r}'s "
                f"{train_scan.class_names}.")
        train = keras.utils.image_dataset_from_directory(
            directory, class_names=train_scan.class_names, shuffle=True,
            seed=seed, **options)
        val = keras.utils.image_dataset_from_directory(
            validation_directory, class_names=train_scan.class_names,
            shuffle=False, **options)
    _report_unreadable(train_scan, names[0])
    if val_scan is not train_scan:
        _report_unreadable(val_scan, names[1])

    bad = set(train_scan.unreadable) | set(val_scan.unreadable)
    counts = {"num_train": len([p for p in train.file_paths if p not in bad]),
              "num_val": len([p for p in val.file_paths if p not in bad]),
              "skipped_files": sorted(bad)}

    def finish(dataset, scan, readable):
        # Unreadable files found up front are dropped one by one before
        # batching, and the dataset keeps a known length (progress bars with
        # totals); unchecked folders drop them too, length unknown.
        if scan.unreadable:
            dataset = dataset.ignore_errors().apply(
                tf.data.experimental.assert_cardinality(readable))
        elif not check_images:
            dataset = dataset.ignore_errors()
        dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        dataset.class_names = list(train_scan.class_names)
        return dataset

    return (finish(train, train_scan, counts["num_train"]),
            finish(val, val_scan, counts["num_val"]),
            list(train_scan.class_names), counts)


def image_folder_datasets(directory, image_size, batch_size,
                          validation_split=0.2, seed=0,
                          validation_directory=None, *, check_images=True,
                          interpolation="bilinear", verbose=True):
    """Training and validation ``tf.data`` pipelines from class subfolders.

    Args:
        directory: one subfolder per class (names sorted = label order).
        image_size: int or ``(height, width)``; images are resized (centre
            crop to the aspect ratio first, no distortion).
        batch_size: images per batch.
        validation_split: fraction of ``directory`` held out (seeded by
            ``seed``) when ``validation_directory`` is None.
        seed: shuffling / split seed.
        validation_directory: a separate folder with the same class
            subfolders.
        check_images: decode every file once up front; unreadable ones are
            reported with a ``UserWarning`` (count and names) and skipped.
            With ``False`` nothing is decoded up front, unreadable files are
            skipped silently while training and the datasets' length is
            unknown (Keras then learns it during the first epoch).
        interpolation: resize method.
        verbose: let Keras print what it found.

    Returns:
        ``(train_ds, val_ds, class_names)``: batched, prefetched datasets of
        float32 RGB images in 0..255 ``(batch, H, W, 3)`` and int32 labels.

    Raises:
        ValueError naming the argument: missing directory, no class
        subfolders, fewer than 2 classes, a class without images, a
        validation folder with other classes, a bad split or size.
    """
    train, val, class_names, _ = _folder_datasets(
        directory, image_size, batch_size, validation_split, seed,
        validation_directory, check_images=check_images,
        interpolation=interpolation, verbose=verbose)
    return train, val, class_names


def augmentation_layers(seed=0, translation=0.1, zoom=0.1):
    """The training augmentation: random horizontal flip, translation, zoom."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomTranslation(translation, translation,
                                       fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed + 2),
    ], name="augmentation")


def augment_dataset(dataset, seed=0):
    """``dataset`` of ``(images, labels)`` batches with augmented images.

    The Keras preprocessing layers run inside the ``tf.data`` pipeline (on
    the CPU, in parallel with training) and are not part of the model.
    """
    layers = augmentation_layers(seed)
    augmented = dataset.map(lambda x, y: (layers(x, training=True), y),
                            num_parallel_calls=tf.data.AUTOTUNE)
    augmented = augmented.prefetch(tf.data.AUTOTUNE)
    if hasattr(dataset, "class_names"):
        augmented.class_names = dataset.class_names
    return augmented


# --------------------------------------------------------------------- model
def default_image_size(model_name):
    """The size ``model_name`` expects: its pretrained config's, else its default."""
    from igc_keras.applications.pretrained import PRETRAINED
    from igc_keras.registry import get_model_spec

    if model_name in PRETRAINED:
        return int(PRETRAINED[model_name].input_size[0])
    spec = get_model_spec(model_name)
    shape = spec.kwargs.get("input_shape")
    if shape is None:
        parameter = inspect.signature(spec.builder).parameters.get(
            "input_shape")
        if parameter is not None and parameter.default is not \
                inspect.Parameter.empty:
            shape = parameter.default
    if shape is not None and shape[0]:
        return int(shape[0])
    return 224  # the builders' default when input_shape is None


def build_classifier(model_name, num_classes, image_size=None, weights=None,
                     dropout=0.2, *, model_kwargs=None,
                     group_conv_implementation="auto"):
    """A classifier for ``num_classes`` on top of a registered backbone.

    ``RGB 0..255 -> preprocessing_layer(model_name) -> backbone(training=False)
    -> Dropout -> Dense(num_classes, softmax, name="classifier")``.

    Args:
        model_name: registry name (``igc_keras.list_models()``).
        num_classes: number of classes (>= 2).
        image_size: int or ``(height, width)``; default
            :func:`default_image_size`.
        weights: backbone weights: ``None``, ``"imagenet"`` or the path of a
            weights file of the same backbone built with
            ``include_top=False, pooling="avg"``.
        dropout: dropout rate before the classifier (0 for none).
        model_kwargs: extra builder arguments (``alpha=0.5``, ...), overriding
            the registry's.
        group_conv_implementation: ``"native"``, ``"split"`` or ``"auto"``
            (split without a GPU; see the module docstring).

    Returns:
        ``(model, backbone)``; the backbone is a nested model: freeze it with
        :func:`freeze_backbone`, unfreeze it with :func:`unfreeze_backbone`
        (keeps BatchNormalization in inference mode).
    """
    from igc_keras.applications.imagenet_utils import preprocessing_layer
    from igc_keras.layers.group_conv import group_conv_implementation as gci
    from igc_keras.registry import create_model, get_model_spec

    get_model_spec(model_name)  # unknown names fail here, with close matches
    _positive_int(num_classes, "num_classes", 2)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or \
            not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1); got dropout={dropout!r}.")
    height, width = _pair(image_size or default_image_size(model_name),
                          "image_size")
    kwargs = dict(model_kwargs or {})
    kwargs.update(include_top=False, pooling="avg",
                  input_shape=(height, width, 3), weights=weights)
    with gci(resolve_group_conv_implementation(group_conv_implementation)):
        backbone = create_model(model_name, **kwargs)
    inputs = keras.Input((height, width, 3), name="image")
    x = preprocessing_layer(model_name)(inputs)
    x = backbone(x, training=False)  # inference-mode BN: see freeze_backbone
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    mixed = keras.config.dtype_policy().name.startswith("mixed")
    outputs = keras.layers.Dense(num_classes, activation="softmax",
                                 dtype="float32" if mixed else None,
                                 name="classifier")(x)
    model = keras.Model(inputs, outputs, name=f"{backbone.name}_classifier")
    return model, backbone


def _all_layers(layer):
    for sublayer in getattr(layer, "layers", []):
        yield sublayer
        yield from _all_layers(sublayer)


def freeze_backbone(backbone):
    """Phase 1: no backbone weight trains; BN runs in inference mode."""
    backbone.trainable = False
    return backbone


def unfreeze_backbone(backbone):
    """Phase 2: every backbone layer trains except BatchNormalization.

    A non-trainable Keras 3 BatchNormalization layer normalises with its
    moving statistics even when the model is called with ``training=True``
    (as ``fit`` does), so the pretrained statistics are neither replaced by
    small-batch statistics nor updated. Returns the number of BN layers kept
    frozen.
    """
    backbone.trainable = True
    frozen = 0
    for layer in _all_layers(backbone):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


# ------------------------------------------------------------------ training
@dataclasses.dataclass
class FinetuneResult:
    """What :func:`finetune` produced.

    Attributes:
        model: the best model (reloaded from ``best_path``).
        class_names: label index -> class name.
        history_head: ``History.history`` of phase 1 (frozen backbone).
        history_full: ``History.history`` of phase 2 (whole backbone).
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


def _compile(model, learning_rate):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])


def _check_rate(value, argument):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not value > 0:
        raise ValueError(f"`{argument}` must be a number > 0; got "
                         f"{argument}={value!r}.")


def finetune(model_name, data_dir, *, output_dir, weights=None, epochs_head=5,
             epochs_full=10, head_lr=1e-3, full_lr=1e-4, batch_size=32,
             image_size=None, augment=True, seed=0, verbose=1,
             validation_dir=None, validation_split=0.2, dropout=0.2,
             model_kwargs=None, group_conv_implementation="auto",
             check_images=True):
    """Two-phase fine-tuning of a registered network on an image folder.

    Args:
        model_name: registry name (``igc_keras.list_models()``).
        data_dir: training images, one subfolder per class.
        output_dir: where ``best.keras``, ``final.keras``,
            ``training_log.csv``, ``class_names.json`` and ``metrics.json``
            go (created if needed).
        weights: backbone weights: ``None``, ``"imagenet"`` or a weights
            file (see :func:`build_classifier`).
        epochs_head: phase-1 epochs (backbone frozen, rate ``head_lr``).
        epochs_full: phase-2 epochs (whole backbone but its BN layers
            trainable, BN in inference mode, rate ``full_lr``).
        batch_size: images per batch.
        image_size: int or ``(height, width)``; default the network's.
        augment: random flip / translation / zoom of training images.
        seed: seeds Keras, NumPy, Python, the split, shuffling and
            augmentation.
        verbose: Keras verbosity (0 silent, 1 progress bars, 2 one line per
            epoch).
        validation_dir: separate validation images (same classes); default a
            ``validation_split`` of ``data_dir``.
        dropout: dropout before the classifier.
        model_kwargs: extra builder arguments for the backbone.
        group_conv_implementation: see :func:`build_classifier`.
        check_images: decode every image up front (see
            :func:`image_folder_datasets`).

    Returns:
        :class:`FinetuneResult`.
    """
    _positive_int(epochs_head, "epochs_head", 0)
    _positive_int(epochs_full, "epochs_full", 0)
    if epochs_head + epochs_full == 0:
        raise ValueError("`epochs_head` + `epochs_full` must be >= 1; got 0 "
                         "and 0.")
    _check_rate(head_lr, "head_lr")
    _check_rate(full_lr, "full_lr")
    if not output_dir:
        raise ValueError(f"`output_dir` must be a directory path; got "
                         f"output_dir={output_dir!r}.")
    keras.utils.set_random_seed(seed)
    size = _pair(image_size or default_image_size(model_name), "image_size")
    train_ds, val_ds, class_names, counts = _folder_datasets(
        data_dir, size, batch_size, validation_split, seed, validation_dir,
        check_images=check_images, verbose=verbose,
        names=("data_dir", "validation_dir"))
    model, backbone = build_classifier(
        model_name, len(class_names), size, weights, dropout,
        model_kwargs=model_kwargs,
        group_conv_implementation=group_conv_implementation)
    if augment:
        train_ds = augment_dataset(train_ds, seed)

    os.makedirs(output_dir, exist_ok=True)
    paths = {key: os.path.join(output_dir, name) for key, name in (
        ("best", BEST_FILE), ("final", FINAL_FILE), ("log", LOG_FILE),
        ("classes", CLASS_NAMES_FILE), ("metrics", METRICS_FILE))}
    with open(paths["classes"], "w") as handle:
        json.dump(class_names, handle, indent=1)
    # One checkpoint object for both phases: it keeps the best val_accuracy
    # seen so far, so phase 2 only overwrites best.keras when it improves.
    checkpoint = keras.callbacks.ModelCheckpoint(
        paths["best"], monitor="val_accuracy", mode="max",
        save_best_only=True, verbose=1 if verbose else 0)

    # the datasets shuffle themselves (seeded); fit(shuffle=False) only
    # silences Keras' warning that it cannot shuffle a tf.data.Dataset
    history_head, history_full = {}, {}
    if epochs_head:
        freeze_backbone(backbone)
        _compile(model, head_lr)
        history_head = model.fit(
            train_ds, validation_data=val_ds, epochs=epochs_head,
            callbacks=[checkpoint, keras.callbacks.CSVLogger(paths["log"])],
            shuffle=False, verbose=verbose).history
    if epochs_full:
        unfreeze_backbone(backbone)  # BN layers stay in inference mode
        _compile(model, full_lr)
        history_full = model.fit(
            train_ds, validation_data=val_ds,
            epochs=epochs_head + epochs_full, initial_epoch=epochs_head,
            callbacks=[checkpoint, keras.callbacks.CSVLogger(
                paths["log"], append=bool(epochs_head))],
            shuffle=False, verbose=verbose).history

    best = keras.models.load_model(paths["best"])
    val_loss, val_accuracy = best.evaluate(val_ds, verbose=verbose)
    best.save(paths["final"])
    num_train, num_val = counts["num_train"], counts["num_val"]
    skipped = counts["skipped_files"]
    metrics = {
        "model": model_name, "weights": None if weights is None else
        os.fspath(weights), "image_size": list(size),
        "val_accuracy": float(val_accuracy), "val_loss": float(val_loss),
        "best_epoch": _best_epoch(history_head, history_full),
        "num_train": num_train, "num_val": num_val,
        "skipped_files": skipped, "class_names": class_names}
    with open(paths["metrics"], "w") as handle:
        json.dump(metrics, handle, indent=1)
    return FinetuneResult(
        model=best, class_names=class_names, history_head=history_head,
        history_full=history_full, val_accuracy=float(val_accuracy),
        val_loss=float(val_loss), best_path=paths["best"],
        final_path=paths["final"], log_path=paths["log"],
        class_names_path=paths["classes"], metrics_path=paths["metrics"],
        num_train=num_train, num_val=num_val, skipped_files=skipped,
        image_size=size)


def _best_epoch(history_head, history_full):
    """1-based epoch (over both phases) with the best val_accuracy."""
    scores = list(history_head.get("val_accuracy", [])) + list(
        history_full.get("val_accuracy", []))
    return 1 + max(range(len(scores)), key=scores.__getitem__) if scores else None


# ----------------------------------------------------------------------- CLI
def add_arguments(parser):
    """Adds the fine-tuning options to an ``argparse`` parser (or subparser)."""
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="training images, one subfolder per class")
    parser.add_argument("--model", required=True, metavar="NAME",
                        help="registry name (igc-keras models --names-only)")
    parser.add_argument("--weights", default=None, metavar="imagenet|PATH",
                        help="backbone weights: 'imagenet' or a weights file "
                             "saved with include_top=False, pooling='avg' "
                             "(default: random initialisation)")
    parser.add_argument("--val-data", default=None, metavar="DIR",
                        help="validation images with the same class "
                             "subfolders (default: a split of --data)")
    parser.add_argument("--validation-split", type=float, default=0.2,
                        metavar="F", help="fraction of --data held out for "
                                          "validation without --val-data "
                                          "(default 0.2)")
    parser.add_argument("--epochs", type=int, default=10, metavar="N",
                        help="phase-2 epochs: whole backbone fine-tuned "
                             "(default 10)")
    parser.add_argument("--head-epochs", type=int, default=5, metavar="N",
                        help="phase-1 epochs: backbone frozen, new head "
                             "trained (default 5)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N",
                        help="default 32")
    parser.add_argument("--image-size", type=int, default=None, metavar="S",
                        help="square input size (default: the network's)")
    parser.add_argument("--lr", type=float, default=1e-4,
                        help="phase-2 learning rate (default 1e-4)")
    parser.add_argument("--head-lr", type=float, default=1e-3,
                        help="phase-1 learning rate (default 1e-3)")
    parser.add_argument("--dropout", type=float, default=0.2,
                        help="dropout before the classifier (default 0.2)")
    parser.add_argument("--no-augment", action="store_true",
                        help="no random flip / translation / zoom")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="output folder (default: finetune_<model>)")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                        help="0 silent, 1 progress bars (default), 2 one line "
                             "per epoch")
    return parser


_CLI_NAMES = {"data_dir": "--data", "validation_dir": "--val-data",
              "validation_split": "--validation-split",
              "epochs_head": "--head-epochs", "epochs_full": "--epochs",
              "head_lr": "--head-lr", "full_lr": "--lr",
              "batch_size": "--batch-size", "image_size": "--image-size",
              "output_dir": "--output"}


def _cli_names(message):
    """Error text with the Python argument names replaced by the options."""
    import re
    return re.sub(r"`?\b(" + "|".join(_CLI_NAMES) + r")\b`?",
                  lambda match: _CLI_NAMES[match.group(1)], message)


def run(args):
    """Runs :func:`finetune` from parsed :func:`add_arguments` options.

    Prints a short summary; returns 0, or 2 (message on stderr) when an
    argument or the data is wrong.
    """
    weights = args.weights
    if weights is not None and weights.lower() == "none":
        weights = None
    output = args.output or f"finetune_{args.model}"
    try:
        result = finetune(
            args.model, args.data, weights=weights, epochs_head=args.head_epochs,
            epochs_full=args.epochs, head_lr=args.head_lr, full_lr=args.lr,
            batch_size=args.batch_size, image_size=args.image_size,
            output_dir=output, augment=not args.no_augment, seed=args.seed,
            verbose=args.verbose, validation_dir=args.val_data,
            validation_split=args.validation_split, dropout=args.dropout)
    except ValueError as error:
        print(f"finetune: error: {_cli_names(str(error))}", file=sys.stderr)
        return 2
    skipped = (f"; {len(result.skipped_files)} unreadable image(s) skipped"
               if result.skipped_files else "")
    print(f"{args.model}: val_accuracy {result.val_accuracy:.4f}, val_loss "
          f"{result.val_loss:.4f} on {result.num_val} validation images "
          f"({len(result.class_names)} classes, {result.num_train} training "
          f"images{skipped})")
    print(f"best model:  {result.best_path}")
    print(f"final model: {result.final_path}")
    print(f"log: {result.log_path}  classes: {result.class_names_path}  "
          f"metrics: {result.metrics_path}")
    return 0


def main(argv=None):
    """``python -m igc_keras.training.finetune --data DIR --model NAME ...``."""
    parser = argparse.ArgumentParser(
        prog="finetune", description="Fine-tune an IGC network on a folder of "
                                     "class subfolders (two phases: head, "
                                     "then whole backbone).")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
