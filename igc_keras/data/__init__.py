"""Input pipelines (tf.data): classification now; detection comes with SSDLite."""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.data (tf.data input pipelines)")

from igc_keras.data.classification import (build_classification_dataset,
                                           decode_and_center_crop,
                                           decode_and_random_crop)

__all__ = ["build_classification_dataset", "decode_and_center_crop",
           "decode_and_random_crop"]
