"""igc_keras: Interleaved Group Convolution networks (IGCV1, IGCV2, IGCV3) for Keras 3."""

__version__ = "0.1.0"

from igc_keras.registry import create_model, get_model_spec, list_models

__all__ = ["create_model", "get_model_spec", "list_models", "__version__"]
