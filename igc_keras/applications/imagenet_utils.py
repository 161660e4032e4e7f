"""Input preprocessing and prediction decoding for the package's models.

The preprocessing of each released variant comes from its pretrained config
(:mod:`igc_keras.applications.pretrained`): IGCV3 subtracts the ImageNet mean
(123.68, 116.779, 103.939) and does not scale; IGCV1 subtracts its own mean and
divides by its std. The keras.applications MobileNet baselines take
``x / 127.5 - 1``; other models without released weights use IGCV3's
convention. :func:`classifier_with_preprocessing` puts a network behind its
preprocessing layer, so the model takes RGB 0..255.
"""

import hashlib
import json
import os
import tempfile

import keras
from keras import ops

from igc_keras.applications.pretrained import (IGCV3_PREPROCESSING,
                                               PRETRAINED, Preprocessing)

#: keras.applications MobileNet / MobileNetV2 (their "tf" mode): x / 127.5 - 1
MOBILENET_PREPROCESSING = Preprocessing(mean=(127.5, 127.5, 127.5),
                                        std=(127.5, 127.5, 127.5))
#: the class index keras.applications' decode_predictions reads, and its md5
CLASS_INDEX_FILE = "imagenet_class_index.json"
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


def preprocessing_for(model_name):
    """The :class:`~igc_keras.applications.pretrained.Preprocessing` of a model."""
    config = PRETRAINED.get(model_name)
    if config:
        return config.preprocessing
    if model_name.startswith("mobilenet"):
        return MOBILENET_PREPROCESSING
    return IGCV3_PREPROCESSING


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


def classifier_with_preprocessing(network, model_name, head=None,
                                  preprocessing=None, name=None):
    """``images`` (RGB 0..255) -> ``model_name``'s preprocessing layer ->
    ``network`` [-> ``head``], as one ``keras.Model``.

    Args:
        network: a built model whose input shape is the images' shape.
        model_name: registry name whose :func:`preprocessing_layer` to use.
        head: layers applied to the network's output (a callable); the
            network is then called in inference mode (its BatchNorm keeps
            its statistics under a new head).
        preprocessing: a layer to use instead of ``model_name``'s.
        name: the model's name; default ``<network>_classifier``.
    """
    inputs = keras.Input(tuple(network.input_shape[1:]), name="images")
    normalize = preprocessing or preprocessing_layer(model_name)
    if head is None:
        outputs = network(normalize(inputs))
    else:
        outputs = head(network(normalize(inputs), training=False))
    return keras.Model(inputs, outputs,
                       name=name or f"{network.name}_classifier")


def cache_class_index(path):
    """Places a local copy of the ImageNet class index in the Keras cache
    (``$KERAS_HOME/models``, default ``~/.keras/models``), where
    ``keras.applications.imagenet_utils.decode_predictions`` looks for it.

    The copy may differ from keras' file in layout only (whitespace,
    indentation): its JSON is written as keras' file is
    (``json.dumps``), and ``keras.utils.get_file`` copies that into the
    cache and checks keras' md5.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"class index file {path!r} does not exist.")
    try:
        with open(path) as handle:
            index = json.load(handle)
    except ValueError as error:
        raise ValueError(f"class index file {path!r} is not JSON: {error}"
                         ) from None
    text = json.dumps(index)
    if hashlib.md5(text.encode()).hexdigest() != CLASS_INDEX_MD5:
        raise ValueError(f"class index file {path!r} holds other classes than "
                         f"keras' {CLASS_INDEX_FILE} (md5 {CLASS_INDEX_MD5} "
                         f"of its JSON).")
    with tempfile.TemporaryDirectory() as directory:
        canonical = os.path.join(directory, CLASS_INDEX_FILE)
        with open(canonical, "w") as handle:
            handle.write(text)
        return keras.utils.get_file(CLASS_INDEX_FILE, "file://" + canonical,
                                    cache_subdir="models",
                                    file_hash=CLASS_INDEX_MD5)


def decode_predictions(preds, top=5, class_index_path=None):
    """``(batch, 1000)`` scores -> per image a list of ``(wnid, name, score)``,
    best first: ``keras.applications.imagenet_utils.decode_predictions``.

    Args:
        preds: probabilities or logits of a 1000-class ImageNet model.
        top: how many classes per image, best first.
        class_index_path: a local copy of ``imagenet_class_index.json``
            (put in the Keras cache by :func:`cache_class_index`); without
            it keras fetches the file once.
    """
    preds = ops.convert_to_numpy(preds)
    shape = preds.shape
    if len(shape) != 2 or shape[1] != 1000:
        raise ValueError(f"decode_predictions expects a (batch, 1000) array; "
                         f"got shape {shape}.")
    if class_index_path is not None:
        cache_class_index(class_index_path)
    return keras.applications.imagenet_utils.decode_predictions(preds, top)
