"""Input preprocessing and prediction decoding for the package's models.

The preprocessing of each released variant comes from its pretrained config
(:mod:`igc_keras.applications.pretrained`): IGCV3 subtracts the ImageNet mean
(123.68, 116.779, 103.939) and does not scale; IGCV1 subtracts its own mean and
divides by its std. Models without released weights use IGCV3's convention.
"""

import json
import os

import keras
import numpy as np
from keras import ops

CLASS_INDEX_URL = ("https://storage.googleapis.com/download.tensorflow.org/"
                   "data/imagenet_class_index.json")
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


def preprocessing_for(model_name):
    """The :class:`~igc_keras.applications.pretrained.Preprocessing` of a model."""
    from igc_keras.applications.pretrained import (IGCV3_PREPROCESSING,
                                                   PRETRAINED)
    config = PRETRAINED.get(model_name)
    return config.preprocessing if config else IGCV3_PREPROCESSING


def preprocess_input(x, model_name="igcv3_1.0"):
    """RGB images with values in [0, 255] -> the network's input.

    Args:
        x: ``(..., H, W, 3)`` array or tensor, RGB, 0..255.
        model_name: registry name whose preprocessing to apply.

    Returns:
        ``(x - mean) / std`` (float32), same shape.
    """
    if x.shape[-1] != 3:
        raise ValueError(f"preprocess_input expects RGB images with 3 channels "
                         f"last; got shape {tuple(x.shape)}.")
    spec = preprocessing_for(model_name)
    x = ops.cast(x, "float32") - ops.convert_to_tensor(spec.mean, "float32")
    if spec.std is not None:
        x = x / ops.convert_to_tensor(spec.std, "float32")
    return x


def preprocessing_layer(model_name="igcv3_1.0", name="preprocessing"):
    """A Keras layer doing :func:`preprocess_input` inside a model.

    ``keras.layers.Normalization`` with the variant's fixed mean and variance,
    so it saves and exports with the model.
    """
    spec = preprocessing_for(model_name)
    std = spec.std or (1.0, 1.0, 1.0)
    return keras.layers.Normalization(mean=list(spec.mean),
                                      variance=[s * s for s in std], name=name)


def load_class_index(path=None):
    """The ImageNet class index ``{"0": ["n01440764", "tench"], ...}``.

    ``path`` reads a local copy; otherwise the file keras.applications uses is
    fetched once (with its hash) into the Keras cache.
    """
    if path is None:
        path = keras.utils.get_file("imagenet_class_index.json", CLASS_INDEX_URL,
                                    cache_subdir="models",
                                    file_hash=CLASS_INDEX_MD5)
    if not os.path.isfile(path):
        raise ValueError(f"class index file {path!r} does not exist.")
    with open(path) as handle:
        index = json.load(handle)
    if len(index) != 1000:
        raise ValueError(f"class index {path!r} has {len(index)} classes; "
                         f"expected 1000.")
    return index


def decode_predictions(preds, top=5, class_index_path=None):
    """``(batch, 1000)`` scores -> per image a list of ``(wnid, name, score)``.

    Args:
        preds: probabilities or logits of a 1000-class ImageNet model.
        top: how many classes per image, best first.
        class_index_path: local copy of ``imagenet_class_index.json``.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(f"decode_predictions expects a (batch, 1000) array; got "
                         f"shape {preds.shape}.")
    index = load_class_index(class_index_path)
    results = []
    for row in preds:
        best = np.argsort(row)[::-1][:top]
        results.append([tuple(index[str(i)]) + (float(row[i]),) for i in best])
    return results
