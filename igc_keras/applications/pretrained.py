"""Pretrained weights: one config per released checkpoint (timm style).

Each :class:`PretrainedConfig` is the single source of truth for a released
checkpoint: the builder arguments it fits (the table is keyed by what a
builder is asked for: :func:`find_pretrained`), where the authors' file comes
from and its git blob id, the converter of its tensor names, and how inputs
must be prepared. Fetching and verifying the files:
:mod:`igc_keras.applications.checkpoint_store`; loading them into a model:
:mod:`igc_keras.applications.weights`.
"""

import dataclasses
from typing import Optional, Tuple

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
#: The IGCV1 authors' ImageNet pipeline (hellozting/InterleavedGroupConvolutions,
#: ``train_imagenet.py`` ``get_iterator``: ``mx.io.ImageRecordIter(mean_r=123.370,
#: mean_g=112.757, mean_b=99.406, scale_r=1/68.998, scale_g=1/66.093,
#: scale_b=1/68.292)`` without ``--fb-mean``, its default; ``options.py``: "mean_rgb
#: ... calculated on the resized training data (short side = 480)"; validation: a
#: 224 centre crop of the short side resized to about 256). Their graphs hold no
#: input normalisation (``data`` feeds ``g0_conv``).
IGCV1_PREPROCESSING = Preprocessing(mean=(123.370, 112.757, 99.406),
                                    std=(68.998, 66.093, 68.292))


@dataclasses.dataclass(frozen=True)
class PretrainedConfig:
    """A released checkpoint and everything needed to use it.

    Attributes:
        model: registry name (``"igcv3_1.0"``).
        builder: the builder whose arguments it fits (``"IGCV3"``).
        arguments: those arguments, ``((name, value), ...)``
            (:func:`find_pretrained`).
        origin: URL of the authors' file.
        file_name: the authors' file name (also its name in the cache and
            in a mirror).
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
    builder: str
    arguments: Tuple[Tuple[str, object], ...]
    origin: str
    file_name: str
    git_blob_sha1: str
    converter: str
    input_size: Tuple[int, int, int]
    preprocessing: Preprocessing
    top1: float
    licence: str
    source: str


PRETRAINED = {
    "igcv3_1.0": PretrainedConfig(
        model="igcv3_1.0", builder="IGCV3",
        arguments=(("alpha", 1.0), ("expansion_groups", 2),
                   ("projection_groups", 2), ("stages", "default")),
        origin=f"{IGCV3_REPO}/models/igcv3-0000.params",
        file_name="igcv3-0000.params",
        git_blob_sha1="c4b0a995619676b526f41669d0fbff8886a79943",
        converter="igcv3", input_size=(224, 224, 3),
        preprocessing=IGCV3_PREPROCESSING, top1=72.2, licence=NO_LICENCE,
        source="homles11/IGCV3 @ 83aba2f3, models/igcv3-0000.params"),
    **{f"igcv1_{variant.lower()}": PretrainedConfig(
        model=f"igcv1_{variant.lower()}", builder="IGCV1",
        arguments=(("alpha", 1.0), ("variant", variant)),
        origin=f"{IGCV1_REPO}/models/IGC-{variant}_ImageNet/{file_name}",
        file_name=file_name, git_blob_sha1=blob, converter="igcv1",
        input_size=(224, 224, 3), preprocessing=IGCV1_PREPROCESSING,
        top1=top1, licence=NO_LICENCE,
        source="hellozting/InterleavedGroupConvolutions @ 2871fdbd")
       for variant, file_name, blob, top1 in (
           ("L100M2", "resnet_gcwf_noshare_imagenet_d18b100-0095.params",
            "1dee63a039d71a5bbe0ada0343372534538e7bd8", 73.05),
           ("L16M16", "resnet_gcwf_noshare_imagenet_d18b16-0095.params",
            "a96f44a0f7ae49241351efc451195e4fdf4d0bfc", 70.60),
           ("L4M32", "resnet_gcwf_noshare_imagenet_d18b4-0095.params",
            "e13f33740800f06378006b90da35d8edc971eabf", 69.23))},
}


def find_pretrained(builder, arguments):
    """The released config for ``builder`` called with ``arguments`` (a
    dict of the architecture's arguments), or None."""
    for config in PRETRAINED.values():
        if config.builder == builder and dict(config.arguments) == arguments:
            return config
    return None


def by_git_blob_sha1(sha1):
    """The released config whose authors' file has git blob id ``sha1``, or
    None."""
    for config in PRETRAINED.values():
        if config.git_blob_sha1 == sha1:
            return config
    return None


def describe(config):
    """``IGCV3(alpha=1.0, ...)``: the call that builds ``config``'s model
    (arguments left at the builder's default table are not shown)."""
    shown = ", ".join(f"{k}={v!r}" for k, v in config.arguments
                      if v != "default")
    return f"{config.builder}({shown})"


def imagenet_unavailable(builder, arguments):
    """The error for ``weights='imagenet'`` where nothing was released."""
    released = "; ".join(describe(c) for c in PRETRAINED.values()
                         if c.builder == builder) or "none"
    called = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return ValueError(
        f"{builder}: weights='imagenet' is not available for {builder}"
        f"({called}); released {builder} weights: {released}. Use "
        f"weights=None or a weights file.")


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
