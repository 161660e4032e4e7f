"""The IGC networks as KerasHub models (the ``hub`` extra:
``pip install 'igc_keras[hub]'``).

    from igc_keras import hub      # registers the classes with KerasHub
    backbone = hub.IGCV3Backbone.from_preset("igcv3_1.0_imagenet")
    classifier = hub.IGCV3ImageClassifier.from_preset("igcv3_1.0_imagenet",
                                                      num_classes=5)
    backbone.save_to_preset("my_preset/")
    keras_hub.models.Backbone.from_preset("my_preset/")

* :mod:`~igc_keras.hub.backbones` — ``IGCV1Backbone``, ``IGCV2Backbone``,
  ``IGCV3Backbone`` (``FeaturePyramidBackbone``) and the named presets;
* :mod:`~igc_keras.hub.classifiers` — image converters, preprocessors and
  ``ImageClassifier`` s;
* :mod:`~igc_keras.hub.retinanet` — KerasHub's RetinaNet on an IGCV3
  backbone, trained and scored on a COCO folder (TensorFlow backend).

Backbones and classifiers run on every Keras backend.
"""

from igc_keras.optimize.runtimes import require

require("keras_hub", "igc_keras.hub")

from igc_keras.hub.backbones import (PRESETS, IGCV1Backbone,  # noqa: E402
                                     IGCV2Backbone, IGCV3Backbone)
from igc_keras.hub.classifiers import (  # noqa: E402
    IGCV1ImageClassifier, IGCV1ImageClassifierPreprocessor,
    IGCV1ImageConverter, IGCV2ImageClassifier,
    IGCV2ImageClassifierPreprocessor, IGCV2ImageConverter,
    IGCV3ImageClassifier, IGCV3ImageClassifierPreprocessor,
    IGCV3ImageConverter)

__all__ = ["PRESETS", "IGCV1Backbone", "IGCV2Backbone", "IGCV3Backbone",
           "IGCV1ImageClassifier", "IGCV1ImageClassifierPreprocessor",
           "IGCV1ImageConverter", "IGCV2ImageClassifier",
           "IGCV2ImageClassifierPreprocessor", "IGCV2ImageConverter",
           "IGCV3ImageClassifier", "IGCV3ImageClassifierPreprocessor",
           "IGCV3ImageConverter"]
