"""keras.applications-style builders for the IGC family, and their registry entries."""

from igc_keras.applications.igcv1 import IGCV1, IGCV1CIFAR, RegConvCIFAR
from igc_keras.applications.igcv2 import IGCV2, IGCV2CIFAR
from igc_keras.applications.igcv3 import IGCV3
from igc_keras.applications.imagenet_utils import (decode_predictions,
                                                   preprocess_input,
                                                   preprocessing_layer)
from igc_keras.applications import variants  # noqa: F401  (registers them)

__all__ = ["IGCV1", "IGCV1CIFAR", "IGCV2", "IGCV2CIFAR", "IGCV3",
           "RegConvCIFAR", "decode_predictions", "preprocess_input",
           "preprocessing_layer"]
