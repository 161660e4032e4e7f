"""KerasHub image classifiers on the IGC backbones, with their image
converters and preprocessors.

Each converter carries its variant's preprocessing from the pretrained
table (:mod:`igc_keras.applications.pretrained`): RGB 0..255 resized to the
training size, then ``(x - mean) / std`` as ``x * scale + offset``. The
classes are registered with Keras' serialization and name their backbone
class (``backbone_cls``), so KerasHub's own ``ImageClassifier.from_preset``
of a saved folder finds them. A named preset builds the backbone with the
authors' weights; with ``num_classes=1000`` (the default) the classifier
gets the authors' ImageNet head too, else a new head to fine-tune.
"""

import keras
import keras_hub
import numpy as np

from igc_keras.applications import IGCV1, IGCV3
from igc_keras.hub.backbones import (IGCV1Backbone, IGCV2Backbone,
                                     IGCV3Backbone, preset_config)


def converter_arguments(config):
    """``ImageConverter`` arguments for a released checkpoint's
    preprocessing: ``image_size``, ``scale`` and ``offset``."""
    prep = config.preprocessing
    std = np.asarray(prep.std if prep.std is not None else (1.0, 1.0, 1.0))
    mean = np.asarray(prep.mean)
    return {"image_size": tuple(config.input_size[:2]),
            "scale": [float(v) for v in 1 / std],
            "offset": [float(v) for v in -mean / std],
            "interpolation": prep.interpolation}


class _NamedPresets:
    """``from_preset`` of a named preset (the package's table), else
    KerasHub's (a folder, ``kaggle://``, ``hf://``)."""

    @classmethod
    def from_preset(cls, preset, **kwargs):
        config = preset_config(preset)
        if config is None:
            return super().from_preset(preset, **kwargs)
        return cls.from_pretrained_config(preset, config, **kwargs)


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV3ImageConverter(_NamedPresets, keras_hub.layers.ImageConverter):
    backbone_cls = IGCV3Backbone

    @classmethod
    def from_pretrained_config(cls, preset, config, **kwargs):
        return cls(**{**converter_arguments(config), **kwargs})


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV1ImageConverter(IGCV3ImageConverter):
    backbone_cls = IGCV1Backbone


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV2ImageConverter(IGCV3ImageConverter):
    backbone_cls = IGCV2Backbone


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV3ImageClassifierPreprocessor(
        _NamedPresets, keras_hub.models.ImageClassifierPreprocessor):
    backbone_cls = IGCV3Backbone
    image_converter_cls = IGCV3ImageConverter

    @classmethod
    def from_pretrained_config(cls, preset, config, **kwargs):
        return cls(image_converter=cls.image_converter_cls.from_preset(
            preset), **kwargs)


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV1ImageClassifierPreprocessor(IGCV3ImageClassifierPreprocessor):
    backbone_cls = IGCV1Backbone
    image_converter_cls = IGCV1ImageConverter


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV2ImageClassifierPreprocessor(IGCV3ImageClassifierPreprocessor):
    backbone_cls = IGCV2Backbone
    image_converter_cls = IGCV2ImageConverter


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV3ImageClassifier(_NamedPresets, keras_hub.models.ImageClassifier):
    """KerasHub's ``ImageClassifier`` (global pooling, dropout, dense head)
    on an :class:`~igc_keras.hub.IGCV3Backbone`."""

    backbone_cls = IGCV3Backbone
    preprocessor_cls = IGCV3ImageClassifierPreprocessor
    builder = staticmethod(IGCV3)

    @classmethod
    def from_pretrained_config(cls, preset, config, num_classes=1000,
                               load_weights=True, **kwargs):
        backbone = cls.backbone_cls.from_preset(preset,
                                                load_weights=load_weights)
        kwargs.setdefault("preprocessor",
                          cls.preprocessor_cls.from_preset(preset))
        classifier = cls(backbone=backbone, num_classes=num_classes,
                         **kwargs)
        if load_weights and num_classes == 1000:  # the authors' head
            top = cls.builder(weights="imagenet", classifier_activation=None,
                              **{k: v for k, v in config.arguments
                                 if v != "default"})
            classifier.output_dense.set_weights(
                top.get_layer("predictions").get_weights())
        return classifier


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV1ImageClassifier(IGCV3ImageClassifier):
    """:class:`IGCV3ImageClassifier` on an
    :class:`~igc_keras.hub.IGCV1Backbone`."""

    backbone_cls = IGCV1Backbone
    preprocessor_cls = IGCV1ImageClassifierPreprocessor
    builder = staticmethod(IGCV1)


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV2ImageClassifier(IGCV3ImageClassifier):
    """:class:`IGCV3ImageClassifier` on an
    :class:`~igc_keras.hub.IGCV2Backbone` (no named preset)."""

    backbone_cls = IGCV2Backbone
    preprocessor_cls = IGCV2ImageClassifierPreprocessor
