"""Pretrained weights: one config per variant (timm style), and their loading.

Each :class:`PretrainedConfig` is the single source of truth for a variant's
released checkpoint: where it comes from, how to verify it (the git blob id
of the authors' file), how to convert it, and how inputs must be prepared.

``weights="imagenet"`` (see :func:`load_imagenet_weights`):

1. the converted Keras weights are looked up in the Keras cache
   (``~/.keras/models/igc_keras/``); if present they are used;
2. otherwise the authors' checkpoint is fetched with ``keras.utils.get_file``
   (cached under the Keras home), its git blob id is verified **before** it is
   parsed, it is read with the package's own MXNet reader (no mxnet
   dependency), converted, and the Keras weights are written to the cache
   (atomically) for next time.

Any failure (no weights published for the variant, download failure, hash
mismatch, a tensor missing or of the wrong shape) raises a ``ValueError`` and
no model is returned.
"""

import dataclasses
import hashlib
import os
import tempfile
from typing import Optional, Tuple

import keras

IGCV3_REPO = "https://github.com/homles11/IGCV3/raw/83aba2f3"
IGCV1_REPO = ("https://github.com/hellozting/InterleavedGroupConvolutions/raw/"
              "2871fdbd")
NO_LICENCE = ("no licence is stated in the authors' repository (all rights "
              "reserved by default); check with the authors before any use "
              "beyond research")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How an RGB image (values 0..255) becomes the network's input.

    ``(x - mean) / std`` per channel (``std=None``: no scaling); evaluation
    resizes the shorter side to ``size / crop_fraction`` and centre-crops.
    """

    mean: Tuple[float, float, float]
    std: Optional[Tuple[float, float, float]]
    channel_order: str = "RGB"
    crop_fraction: float = 0.875
    interpolation: str = "bilinear"


IGCV3_PREPROCESSING = Preprocessing(mean=(123.68, 116.779, 103.939), std=None)
IGCV1_PREPROCESSING = Preprocessing(mean=(123.370, 112.757, 99.406),
                                    std=(68.998, 66.093, 68.292))


@dataclasses.dataclass(frozen=True)
class PretrainedConfig:
    """A released checkpoint and everything needed to use it.

    Attributes:
        model: registry name (``"igcv3_1.0"``).
        origin: URL of the authors' file.
        file_name: its name in the Keras cache.
        git_blob_sha1: git blob id of the authors' file
            (``sha1(b"blob <size>\\0" + content)``), checked before parsing.
        converter: ``"igcv3"`` or ``"igcv1"`` (see :mod:`igc_keras.convert`).
        builder_kwargs: what makes the architecture (passed to the registry).
        input_size: ``(H, W, C)`` the network was trained at.
        preprocessing: :class:`Preprocessing`.
        top1: ImageNet top-1 (%) reported by the authors.
        licence: terms of the released file.
        source: repository, commit and path.
    """

    model: str
    origin: str
    file_name: str
    git_blob_sha1: str
    converter: str
    input_size: Tuple[int, int, int]
    preprocessing: Preprocessing
    top1: float
    licence: str
    source: str

    @property
    def keras_file_name(self):
        return f"{self.model}_imagenet_{self.git_blob_sha1[:8]}.weights.h5"


PRETRAINED = {
    "igcv3_1.0": PretrainedConfig(
        model="igcv3_1.0", origin=f"{IGCV3_REPO}/models/igcv3-0000.params",
        file_name="igcv3-0000.params",
        git_blob_sha1="c4b0a995619676b526f41669d0fbff8886a79943",
        converter="igcv3", input_size=(224, 224, 3),
        preprocessing=IGCV3_PREPROCESSING, top1=72.2, licence=NO_LICENCE,
        source="homles11/IGCV3 @ 83aba2f3, models/igcv3-0000.params"),
    "igcv1_l100m2": PretrainedConfig(
        model="igcv1_l100m2",
        origin=f"{IGCV1_REPO}/models/IGC-L100M2_ImageNet/"
               f"resnet_gcwf_noshare_imagenet_d18b100-0095.params",
        file_name="resnet_gcwf_noshare_imagenet_d18b100-0095.params",
        git_blob_sha1="1dee63a039d71a5bbe0ada0343372534538e7bd8",
        converter="igcv1", input_size=(224, 224, 3),
        preprocessing=IGCV1_PREPROCESSING, top1=73.05, licence=NO_LICENCE,
        source="hellozting/InterleavedGroupConvolutions @ 2871fdbd"),
    "igcv1_l16m16": PretrainedConfig(
        model="igcv1_l16m16",
        origin=f"{IGCV1_REPO}/models/IGC-L16M16_ImageNet/"
               f"resnet_gcwf_noshare_imagenet_d18b16-0095.params",
        file_name="resnet_gcwf_noshare_imagenet_d18b16-0095.params",
        git_blob_sha1="a96f44a0f7ae49241351efc451195e4fdf4d0bfc",
        converter="igcv1", input_size=(224, 224, 3),
        preprocessing=IGCV1_PREPROCESSING, top1=70.60, licence=NO_LICENCE,
        source="hellozting/InterleavedGroupConvolutions @ 2871fdbd"),
    "igcv1_l4m32": PretrainedConfig(
        model="igcv1_l4m32",
        origin=f"{IGCV1_REPO}/models/IGC-L4M32_ImageNet/"
               f"resnet_gcwf_noshare_imagenet_d18b4-0095.params",
        file_name="resnet_gcwf_noshare_imagenet_d18b4-0095.params",
        git_blob_sha1="e13f33740800f06378006b90da35d8edc971eabf",
        converter="igcv1", input_size=(224, 224, 3),
        preprocessing=IGCV1_PREPROCESSING, top1=69.23, licence=NO_LICENCE,
        source="hellozting/InterleavedGroupConvolutions @ 2871fdbd"),
}


def git_blob_sha1(path):
    """The git blob id of a file: ``sha1(b"blob <size>\\0" + content)``."""
    digest = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path, expected_sha1):
    """Raise ``ValueError`` unless ``path``'s git blob id is ``expected_sha1``."""
    if not os.path.isfile(path):
        raise ValueError(f"weights file {path!r} does not exist.")
    actual = git_blob_sha1(path)
    if actual != expected_sha1:
        raise ValueError(
            f"weights file {path!r} failed its integrity check: git blob id "
            f"{actual}, expected {expected_sha1}. The file is corrupt, "
            f"truncated or not the authors' release; delete it and retry.")
    return path


def pretrained_config(model_name, builder="", kwargs=None):
    """The config for ``model_name``, or a ``ValueError`` listing those that exist."""
    if model_name not in PRETRAINED:
        what = (repr(model_name) if model_name else
                f"this {builder} configuration")
        raise ValueError(
            f"{builder}{': ' if builder else ''}weights='imagenet' is not "
            f"available for {what}; variants with released ImageNet "
            f"weights: {sorted(PRETRAINED)}. Use weights=None or a weights "
            f"file.")
    return PRETRAINED[model_name]


def check_imagenet_arguments(config, *, include_top, classes,
                             classifier_activation, input_shape, builder):
    """keras.applications' rules for ``weights='imagenet'``."""
    if include_top and classes != 1000:
        raise ValueError(
            f"{builder}: with weights='imagenet' and include_top=True, `classes` "
            f"must be 1000; got classes={classes}. Use include_top=False and "
            f"add your own head to fine-tune.")
    if include_top and classifier_activation not in ("softmax", None):
        raise ValueError(
            f"{builder}: with weights='imagenet' and include_top=True, "
            f"`classifier_activation` must be 'softmax' or None; got "
            f"{classifier_activation!r}.")
    if include_top and input_shape is not None and tuple(input_shape) != tuple(
            config.input_size):
        raise ValueError(
            f"{builder}: with weights='imagenet' and include_top=True, "
            f"`input_shape` must be {config.input_size}; got {input_shape}.")


def cache_root(cache_dir=None):
    """``cache_dir``, else ``$KERAS_HOME``, else ``~/.keras`` (read at call time)."""
    return cache_dir or os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras")


def fetch_checkpoint(config, origin=None, cache_dir=None):
    """Downloads (once) and verifies the authors' checkpoint; returns its path.

    A download that fails verification is deleted, so a retry fetches it
    again.
    """
    root = cache_root(cache_dir)
    # get_file falls back to /tmp/.keras when the root does not exist yet
    os.makedirs(root, exist_ok=True)
    try:
        path = keras.utils.get_file(
            fname=config.file_name, origin=origin or config.origin,
            cache_subdir=os.path.join("models", "igc_keras", "authors"),
            cache_dir=root)
    except Exception as error:
        raise ValueError(
            f"could not download the {config.model} checkpoint from "
            f"{origin or config.origin}: {error}") from error
    try:
        return verify_file(path, config.git_blob_sha1)
    except ValueError:
        os.remove(path)
        raise


def converted_weights_path(config, origin=None, cache_dir=None):
    """Path of the converted Keras weights, converting on first use."""
    from igc_keras.convert.converters import convert_checkpoint

    target_dir = os.path.join(cache_root(cache_dir), "models", "igc_keras")
    target = os.path.join(target_dir, config.keras_file_name)
    if os.path.exists(target):
        return target
    checkpoint = fetch_checkpoint(config, origin=origin, cache_dir=cache_dir)
    os.makedirs(target_dir, exist_ok=True)
    model = convert_checkpoint(checkpoint, config.model)
    handle, partial = tempfile.mkstemp(suffix=".weights.h5", dir=target_dir)
    os.close(handle)
    try:
        model.save_weights(partial)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


def load_imagenet_weights(model, config, *, include_top, origin=None,
                          cache_dir=None):
    """Loads the converted ImageNet weights into ``model`` (by layer name).

    With ``include_top=False`` the classifier's weights are skipped; every
    other weight must load (same names and shapes) or a ``ValueError`` names
    what did not.
    """
    from igc_keras.convert.converters import transfer_weights

    path = converted_weights_path(config, origin=origin, cache_dir=cache_dir)
    from igc_keras.registry import create_model
    reference = create_model(config.model)
    reference.load_weights(path)
    transfer_weights(reference, model, skip_missing=("predictions",)
                     if not include_top else ())
    return model
