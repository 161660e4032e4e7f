"""Reading the authors' checkpoint into a model vs loading a Keras weights file.

Builds IGCV3-1.0, writes an MXNet ``.params`` file of its weights (the
package's writer, the authors' tensor names and layouts: the same file
``weights="igcv3-0000.params"`` reads) and its ``.weights.h5``, then times,
median of ``--runs``: parsing the ``.params`` file + assigning its tensors
into the model (what ``weights="imagenet"`` does), and
``model.load_weights`` of the ``.weights.h5``.

    python benchmarks/weights_loading.py [--runs 5]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from igc_keras.applications import IGCV3  # noqa: E402
from igc_keras.convert.converters import (NAMINGS,  # noqa: E402
                                          assign_mxnet_params)
from igc_keras.convert.mxnet_params import load_params, save_params  # noqa: E402


def authors_params(model):
    """The model's weights under the authors' IGCV3 names and layouts."""
    naming, params = NAMINGS["igcv3"], {}
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix, values = naming(layer.name), layer.get_weights()
        kind = type(layer).__name__
        if kind == "BatchNormalization":
            params.update({f"arg:{prefix}_gamma": values[0],
                           f"arg:{prefix}_beta": values[1],
                           f"aux:{prefix}_moving_mean": values[2],
                           f"aux:{prefix}_moving_var": values[3]})
        elif kind == "Dense":
            params.update({f"arg:{prefix}_weight": values[0].T,
                           f"arg:{prefix}_bias": values[1]})
        else:  # Conv2D / GroupConv2D / DepthwiseConv2D: (kh, kw, I, O)
            order = (2, 3, 0, 1) if kind == "DepthwiseConv2D" else (3, 2, 0, 1)
            params[f"arg:{prefix}_weight"] = np.ascontiguousarray(
                values[0].transpose(order))
    return params


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    model = IGCV3()
    folder = tempfile.mkdtemp()
    params_path = os.path.join(folder, "igcv3-0000.params")
    h5_path = os.path.join(folder, "igcv3.weights.h5")
    save_params(params_path, authors_params(model))
    model.save_weights(h5_path)
    params_times, h5_times = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        assign_mxnet_params(model, load_params(params_path), "igcv3")
        params_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.load_weights(h5_path)
        h5_times.append(time.perf_counter() - start)
    size = os.path.getsize(params_path) / 1e6
    print(f".params ({size:.1f} MB) parse + assign: "
          f"{statistics.median(params_times):.3f} s; .weights.h5 load_weights: "
          f"{statistics.median(h5_times):.3f} s (median of {args.runs})")


if __name__ == "__main__":
    main()
