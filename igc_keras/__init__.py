"""igc_keras: Interleaved Group Convolution networks (IGCV1, IGCV2, IGCV3) for Keras 3."""

__version__ = "0.1.0"

from igc_keras.registry import create_model, get_model_spec, list_models
import igc_keras.applications  # noqa: E402,F401  (registers every variant)

# Registers the package's serializable Keras objects, so that after
# ``import igc_keras`` every model it saves loads with
# ``keras.saving.load_model``: the layers (GroupConv2D, ChannelPermutation,
# BranchSumConv2D) on every backend; on TensorFlow also the SSDLite detector
# and the warmup schedule a recipe's checkpoint carries in its optimizer
# (both TensorFlow-only, so another backend never imports TensorFlow).
import igc_keras.layers  # noqa: E402,F401  (imports keras)
from igc_keras.model_files import register_serializables  # noqa: E402

register_serializables()

__all__ = ["create_model", "get_model_spec", "list_models", "__version__"]
