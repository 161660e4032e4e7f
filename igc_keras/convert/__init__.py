"""Converters from the authors' released checkpoints.

* :mod:`igc_keras.convert.mxnet_params`: reader/writer of MXNet's ``.params``
  NDArray-list format (no mxnet dependency).
* :mod:`igc_keras.convert.converters`: authors' tensor names and layouts ->
  Keras layers of the package's builders.
"""

from igc_keras.convert.converters import assign_mxnet_params
from igc_keras.convert.mxnet_params import (load_params, save_params,
                                            split_arg_aux)

__all__ = ["assign_mxnet_params", "load_params", "save_params",
           "split_arg_aux"]
