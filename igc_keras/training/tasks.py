"""What a recipe trains: the task (Model Garden's ``Task``), one per type.

Both training loops (:mod:`~igc_keras.training.trainer` ``fit`` and
:mod:`~igc_keras.training.custom_loop`) ask the task for its model, its
input pipelines, its loss and its running statistics, so one loop trains
either:

* :class:`ClassificationTask` — a registry network behind its preprocessing
  layer, softmax cross-entropy (label smoothing), top-1 / top-5;
  best checkpoint by ``val_top1``.
* :class:`DetectionTask` — :class:`igc_keras.detection.SSDLite` on a registry
  backbone, the SSD loss, COCO-format or TFDS ``coco/2017`` input with SSD
  augmentation; best checkpoint by ``val_loss``; evaluation is COCO mAP
  (pycocotools) on ``task.validation_data``.

Replica statistics are sums (reduced with ``SUM`` across replicas) whose
last entry is the example count; :meth:`summarize` turns them into means.
"""

import keras
import tensorflow as tf

from igc_keras.applications.imagenet_utils import \
    classifier_with_preprocessing
from igc_keras.data.classification import (build_classification_dataset,
                                           dataset_size)
from igc_keras.data.folders import check_same_classes, scan_image_folder
from igc_keras.errors import ConfigError
from igc_keras.layers import group_conv_implementation
from igc_keras.registry import create_model


class ClassificationTask:
    """Image classification (see the module docstring)."""

    monitor, mode = "val_top1", "max"
    stat_names = ("loss_sum", "top1", "top5", "count")

    def __init__(self, config):
        self.config = config
        self.k = min(5, config.task.model.num_classes)
        self._scans = {}

    # ----------------------------------------------------------- data
    def preset_scans(self, scans):
        """Uses scans made already (``{"train_data": FolderScan}``)."""
        self._scans.update(scans)

    def folder_scan(self, key):
        """The :class:`~igc_keras.data.folders.FolderScan` of
        ``task.<key>`` (a folder source), scanned once per task; unreadable
        images are reported (``UserWarning``) on the first scan."""
        if key not in self._scans:
            data = getattr(self.config.task, key)
            try:
                scan = scan_image_folder(data.data_dir, f"task.{key}.data_dir")
            except ValueError as error:
                raise ConfigError(str(error)) from error
            scan.report()
            self._scans[key] = scan
        return self._scans[key]

    def check_data(self):
        """Refuses class folders that do not fit the model before training:
        more classes than ``task.model.num_classes`` (their labels would have
        no output), or validation classes other than the training classes;
        the bundled digits (10 classes) need ``num_classes >= 10``."""
        task, classes = self.config.task, self.config.task.model.num_classes
        scans = {key: self.folder_scan(key)
                 for key in ("train_data", "validation_data")
                 if getattr(task, key).source == "folder"}
        for key, scan in scans.items():
            if len(scan.class_names) > classes:
                raise ConfigError(
                    f"task.{key}.data_dir={scan.directory!r} holds "
                    f"{len(scan.class_names)} class folders "
                    f"{scan.class_names} but task.model.num_classes={classes};"
                    f" set num_classes to {len(scan.class_names)} or remove "
                    f"folders.")
        if len(scans) == 2:
            try:
                check_same_classes(scans["train_data"],
                                   scans["validation_data"])
            except ValueError as error:
                raise ConfigError(str(error)) from error
        for key in ("train_data", "validation_data"):
            if getattr(task, key).source == "digits" and classes < 10:
                raise ConfigError(f"task.{key}.source='digits' has 10 classes "
                                  f"but task.model.num_classes={classes}.")

    # ----------------------------------------------------------- model
    def build_model(self, implementation="native"):
        """``(batch, H, W, 3)`` RGB 0..255 -> ``(batch, num_classes)`` float32
        logits (probabilities with ``classifier_activation: softmax``): the
        registry network behind its preprocessing layer, with its own
        classifier or (``head: transfer``) a new one."""
        spec = self.config.task.model
        shape = tuple(spec.input_size)
        transfer = spec.head == "transfer"
        arguments = dict(include_top=False, pooling="avg") if transfer else \
            dict(classes=spec.num_classes,
                 classifier_activation=spec.classifier_activation)
        try:
            with group_conv_implementation(implementation):
                network = create_model(spec.name, input_shape=shape,
                                       weights=spec.weights,
                                       **{**spec.kwargs, **arguments})
        except (ValueError, TypeError, KeyError) as error:
            raise ConfigError(f"task.model (name={spec.name!r}, kwargs="
                              f"{spec.kwargs}): {error}") from error
        normalize = None
        if spec.input_mean is not None or spec.input_std is not None:
            std = spec.input_std or [1.0, 1.0, 1.0]
            normalize = keras.layers.Normalization(
                mean=spec.input_mean or [0.0, 0.0, 0.0],
                variance=[s * s for s in std], name="preprocessing")
        return classifier_with_preprocessing(
            network, spec.name, head=self._new_head() if transfer else None,
            preprocessing=normalize)

    def _new_head(self):
        """Dropout -> ``Dense(num_classes)`` named ``"classifier"``."""
        spec = self.config.task.model

        def head(x):
            if spec.head_dropout:
                x = keras.layers.Dropout(spec.head_dropout, name="dropout")(x)
            return keras.layers.Dense(spec.num_classes,
                                      activation=spec.classifier_activation,
                                      dtype="float32", name="classifier")(x)
        return head

    def backbone(self, model):
        """The registry network inside a model :meth:`build_model` made."""
        return next(layer for layer in model.layers
                    if isinstance(layer, keras.Model))

    def loss(self, reduction="sum_over_batch_size"):
        return keras.losses.CategoricalCrossentropy(
            from_logits=self.config.task.model.classifier_activation is None,
            label_smoothing=self.config.task.losses.label_smoothing,
            reduction=reduction)

    def metrics(self):
        return [keras.metrics.CategoricalAccuracy(name="top1"),
                keras.metrics.TopKCategoricalAccuracy(self.k, name="top5")]

    def compile_arguments(self):
        """``model.compile`` arguments besides the optimizer."""
        return {"loss": self.loss(), "metrics": self.metrics()}

    def data_size(self, data, key):
        """Examples in ``task.<key>`` (None when not stored)."""
        key = key.rpartition(".")[2]
        scan = self.folder_scan(key) if data.source == "folder" else None
        return dataset_size(data, f"task.{key}", scan, self.config.runtime.seed)

    def dataset(self, data, key, batch, input_context, drop_remainder):
        """One replica's batches: ``(images float32 0..255, one-hot)``."""
        classes = self.config.task.model.num_classes
        name = key.rpartition(".")[2]
        dataset = build_classification_dataset(
            data, tuple(self.config.task.model.input_size[:2]), batch,
            input_context, key=key, deterministic=self.config.runtime
            .deterministic, seed=self.config.runtime.seed,
            drop_remainder=drop_remainder,
            scan=self.folder_scan(name) if data.source == "folder" else None)
        return dataset.map(lambda x, y: (x, tf.one_hot(y, classes)))

    def replica_loss_sum(self, labels, outputs, loss_fn):
        """The replica's loss summed over its examples."""
        return loss_fn(labels, tf.cast(outputs, tf.float32))

    def replica_stats(self, labels, outputs, loss_sum):
        """``(loss sum, top-1 hits, top-k hits, examples)``."""
        logits = tf.cast(outputs, tf.float32)  # (or probabilities)
        target = tf.argmax(labels, axis=-1, output_type=tf.int32)
        top1 = tf.reduce_sum(tf.cast(tf.equal(
            tf.argmax(logits, axis=-1, output_type=tf.int32), target),
            tf.float32))
        topk = tf.reduce_sum(tf.cast(tf.math.in_top_k(target, logits, self.k),
                                     tf.float32))
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return tf.stack([loss_sum, top1, topk, count])

    def export(self, model, path):
        """SavedModel whose ``serve`` takes RGB 0..255 -> logits."""
        model.export(path, verbose=False)

    def summarize(self, totals):
        loss_sum, top1, top5, count = (float(v) for v in totals)
        count = max(count, 1.0)
        return {"loss": loss_sum / count, "top1": top1 / count,
                "top5": top5 / count}


class DetectionTask:
    """SSDLite object detection (see the module docstring)."""

    monitor, mode = "val_loss", "min"
    stat_names = ("loss_sum", "count")

    def __init__(self, config):
        self.config = config
        spec = config.task.model
        height, width = spec.input_size[:2]
        if height != width or height % 32:
            raise ConfigError(f"task.model.input_size must be square with a "
                              f"side that is a multiple of 32 for detection; "
                              f"got {spec.input_size}.")
        self.image_size = height
        # importing the detector registers SSDLite for .keras loading
        from igc_keras.detection import SSDLite  # noqa: F401
        from igc_keras.detection.ssdlite import BACKBONES, default_head
        if spec.name not in BACKBONES:
            raise ConfigError(f"task.model.name={spec.name!r} is not a "
                              f"detection backbone; allowed: "
                              f"{sorted(BACKBONES)}.")
        self.head = spec.kwargs.get("head") or default_head(spec.name)
        self._checked = set()  # COCO sources check_data has checked

    def build_model(self, implementation="native"):
        """:class:`~igc_keras.detection.SSDLite` for the recipe."""
        from igc_keras.detection import SSDLite
        spec = self.config.task.model
        kwargs = dict(spec.kwargs)
        if "class_names" not in kwargs:
            kwargs["class_names"] = self.class_names()
        try:
            with group_conv_implementation(implementation):
                return SSDLite(spec.name, num_classes=spec.num_classes,
                               image_size=self.image_size,
                               backbone_weights=spec.weights, **kwargs)
        except (ValueError, TypeError, KeyError) as error:
            raise ConfigError(f"task.model (name={spec.name!r}, kwargs="
                              f"{spec.kwargs}): {error}") from error

    def class_names(self):
        """The training annotation file's category names (None when the
        input is not a COCO-format folder); a category count other than
        ``task.model.num_classes`` is a ConfigError."""
        data = self.config.task.train_data
        if data.source != "coco":
            return None
        from igc_keras.detection.coco import load_coco_annotations
        names = load_coco_annotations(data.annotation_file).categories.names
        if len(names) != self.config.task.model.num_classes:
            raise ConfigError(
                f"task.model.num_classes={self.config.task.model.num_classes}"
                f" but task.train_data.annotation_file "
                f"{data.annotation_file!r} has {len(names)} categories.")
        return names

    def preset_scans(self, scans):
        """Detection reads no image folders."""

    def check_data(self):
        """A COCO-format training file's category count must be
        ``task.model.num_classes`` (see :meth:`class_names`); each
        COCO-format source's selected images must be on disk with their
        records' sizes (a ``DataError`` otherwise), and a line tells what
        its annotations kept, clipped and dropped
        (:meth:`~igc_keras.detection.coco.BoxCounts.summary`)."""
        self.class_names()
        from igc_keras.data.coco_images import check_coco_images
        from igc_keras.data.detection import first_image_ids
        from igc_keras.detection.coco import load_coco_annotations
        for key in ("train_data", "validation_data"):
            data = getattr(self.config.task, key)
            if data.source != "coco" or key in self._checked:
                continue
            coco = load_coco_annotations(data.annotation_file)
            image_ids = first_image_ids(data.annotation_file, data.max_images)
            check_coco_images(coco, data.data_dir, coco.select(image_ids))
            print(f"task.{key}: {coco.counts(image_ids).summary()}",
                  flush=True)
            self._checked.add(key)

    @property
    def anchors(self):
        from igc_keras.detection.anchors import generate_anchors
        return generate_anchors(self.head, self.image_size)

    def loss(self, reduction=None):
        """Not a Keras loss: ``SSDLite.compute_loss`` holds the SSD loss."""
        return None

    def compile_arguments(self):
        return {}

    def data_size(self, data, key):
        if data.source == "coco":
            from igc_keras.detection.coco import load_coco_annotations
            try:
                coco = load_coco_annotations(data.annotation_file)
            except ValueError as error:
                raise ValueError(f"{key}.annotation_file: {error}") from error
            return min(len(coco.images), data.max_images or len(coco.images))
        return dataset_size(data, key)

    def dataset(self, data, key, batch, input_context, drop_remainder):
        """One replica's batches: ``(images, {"boxes", "classes"})``."""
        from igc_keras.data.detection import (coco_detection_dataset,
                                              first_image_ids)
        if data.source not in ("coco", "tfds"):
            raise ConfigError(
                f"{key}.source={data.source!r}: detection reads 'coco' (a "
                f"COCO-format folder) or 'tfds' (coco/2017).")
        folder = data.source == "coco"
        dataset, _ = coco_detection_dataset(
            data.data_dir, data.annotation_file, self.anchors,
            self.image_size, batch, training=data.is_training,
            shuffle_buffer=data.shuffle_buffer, seed=self.config.runtime.seed,
            image_ids=first_image_ids(data.annotation_file, data.max_images)
            if folder else None,
            augment=data.augmentation if data.is_training else "none",
            input_context=input_context, cache=data.cache,
            drop_remainder=drop_remainder or None,
            check_files=folder and key.rpartition(".")[2] not in self._checked,
            tfds=None if folder else (data.name, data.split))
        return dataset

    def replica_loss_sum(self, labels, outputs, loss_fn=None):
        """The replica's SSD loss (normalised by its matches) x its batch, so
        that dividing by the global batch averages the replicas' losses."""
        from igc_keras.detection.losses import ssd_loss
        loss, _ = ssd_loss(labels["boxes"], labels["classes"],
                           outputs["boxes"], outputs["classes"])
        return loss * tf.cast(tf.shape(labels["classes"])[0], tf.float32)

    def replica_stats(self, labels, outputs, loss_sum):
        return tf.stack([loss_sum, tf.cast(tf.shape(labels["classes"])[0],
                                           tf.float32)])

    def export(self, model, path):
        """SavedModel whose ``serve`` returns decoded detections
        (:meth:`~igc_keras.detection.SSDLite.export_detections`)."""
        model.export_detections(path)

    def summarize(self, totals):
        loss_sum, count = (float(v) for v in totals)
        return {"loss": loss_sum / max(count, 1.0)}


TASKS = {"classification": ClassificationTask, "detection": DetectionTask}


def get_task(config):
    """The task object for ``config.task.type``."""
    return TASKS[config.task.type](config)
