"""IGCV1 / IGCV2 / IGCV3 as KerasHub ``FeaturePyramidBackbone`` s.

Each backbone is the package's builder (``include_top=False``) wrapped as a
KerasHub backbone: the same layers, names and weights, ``pyramid_outputs``
``P1``..``P5`` (stride ``2**n``), a ``get_config`` holding every
architecture argument (so ``save_to_preset`` / ``from_preset`` and
``keras.saving`` rebuild it), and registered with Keras' serialization, so
that ``keras_hub.models.Backbone.from_preset(folder)`` finds the class.

Named presets (:data:`PRESETS`: the released ImageNet checkpoints) load
through the package's own weights path (download or mirror, git blob id,
conversion of the authors' MXNet tensors). KerasHub's own registry of named
presets is for the presets it ships (they resolve to its Kaggle handles), so
a name works on these classes (``IGCV3Backbone.from_preset(
"igcv3_1.0_imagenet")``); a local folder, ``kaggle://`` or ``hf://`` handle
works on KerasHub's base classes too.
"""

import contextlib

import keras
import keras_hub

from igc_keras.applications import IGCV1, IGCV2, IGCV3
from igc_keras.applications.igcv3 import STAGES
from igc_keras.applications.pretrained import PRETRAINED, describe
from igc_keras.errors import ConfigError

#: preset name -> the released checkpoint's registry name.
PRESETS = {f"{name}_imagenet": name for name in PRETRAINED}


def preset_config(preset):
    """The :class:`~igc_keras.applications.pretrained.PretrainedConfig` of a
    named preset, or None when ``preset`` is a folder or a handle."""
    name = PRESETS.get(preset) if isinstance(preset, str) else None
    return PRETRAINED[name] if name else None


def preset_table(backbone_cls):
    """``{preset: metadata}`` of the named presets ``backbone_cls`` builds."""
    return {preset: {"metadata": {
                "description": f"{describe(config)} with the authors' "
                               f"ImageNet weights (top-1 {config.top1}%, "
                               f"{config.input_size[0]} px)",
                "official_name": config.builder, "path": "igc_keras",
                "source": config.source, "licence": config.licence}}
            for preset, config in
            ((p, PRETRAINED[n]) for p, n in PRESETS.items())
            if config.builder == backbone_cls.builder_name}


class _ClassProperty:
    def __init__(self, function):
        self.function = function

    def __get__(self, instance, owner):
        return self.function(owner)


@contextlib.contextmanager
def _dtype_policy(dtype):
    """The global dtype policy set to ``dtype`` while the builder runs."""
    if dtype is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class IGCBackbone(keras_hub.models.FeaturePyramidBackbone):
    """The shared part of the three backbones: a subclass names its builder
    (``builder_name``) and passes its architecture arguments."""

    builder_name = None

    def __init__(self, architecture, image_shape=(None, None, 3),
                 weights=None, dtype=None, **kwargs):
        builder = {"IGCV1": IGCV1, "IGCV2": IGCV2, "IGCV3": IGCV3}[
            self.builder_name]
        image_shape = tuple(image_shape)
        with _dtype_policy(dtype):
            model = builder(include_top=False, input_shape=image_shape,
                            weights=weights, **architecture)
        super().__init__(inputs=model.inputs[0], outputs=model.outputs[0],
                         dtype=dtype, **kwargs)
        self.pyramid_outputs = dict(model.pyramid_outputs)
        self.architecture = dict(architecture)
        self.image_shape = image_shape

    def get_config(self):
        config = super().get_config()
        config.update(self.architecture, image_shape=self.image_shape)
        return config

    @_ClassProperty
    def presets(cls):
        """The named presets of this class (the released checkpoints)."""
        return preset_table(cls)

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """A named preset (:data:`PRESETS`) built with the package's weights
        path, else KerasHub's ``from_preset`` (a folder, ``kaggle://``,
        ``hf://``)."""
        config = preset_config(preset)
        if config is None:
            return super().from_preset(preset, load_weights=load_weights,
                                       **kwargs)
        if config.builder != cls.builder_name and cls.builder_name:
            raise ConfigError(
                f"preset={preset!r} is an {config.builder} checkpoint; load "
                f"it with igc_keras.hub.{config.builder}Backbone.")
        target = cls if cls.builder_name else BACKBONES[config.builder]
        architecture = {k: v for k, v in config.arguments if v != "default"}
        return target(**architecture, **kwargs,
                      weights="imagenet" if load_weights else None)


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV3Backbone(IGCBackbone):
    """IGCV3 (Sun et al., BMVC 2018) as a KerasHub backbone.

    Args:
        alpha, expansion_groups, projection_groups, stages: as for
            :func:`igc_keras.applications.IGCV3`.
        image_shape: ``(H, W, C)``; ``None`` sizes take any image.
        weights: None, or what the builder takes (``"imagenet"``, a
            ``.weights.h5`` / ``.params`` file); not part of the config (a
            preset carries its weights).
        dtype: the dtype policy of the layers.
    """

    builder_name = "IGCV3"

    def __init__(self, alpha=1.0, expansion_groups=2, projection_groups=2,
                 stages=STAGES, image_shape=(None, None, 3), **kwargs):
        super().__init__({"alpha": alpha, "expansion_groups": expansion_groups,
                          "projection_groups": projection_groups,
                          "stages": tuple(tuple(s) for s in stages)},
                         image_shape, **kwargs)


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV1Backbone(IGCBackbone):
    """IGCV1 (Zhang et al., ICCV 2017) as a KerasHub backbone; ``variant``
    and ``alpha`` as for :func:`igc_keras.applications.IGCV1`, the rest as
    for :class:`IGCV3Backbone`."""

    builder_name = "IGCV1"

    def __init__(self, variant="L100M2", alpha=1.0,
                 image_shape=(None, None, 3), **kwargs):
        super().__init__({"variant": variant, "alpha": alpha}, image_shape,
                         **kwargs)


@keras.saving.register_keras_serializable(package="igc_keras")
class IGCV2Backbone(IGCBackbone):
    """IGCV2 (Xie et al., CVPR 2018) as a KerasHub backbone; ``alpha`` and
    ``groups`` as for :func:`igc_keras.applications.IGCV2` (no released
    weights, so no named preset)."""

    builder_name = "IGCV2"

    def __init__(self, alpha=1.0, groups=2, image_shape=(None, None, 3),
                 **kwargs):
        super().__init__({"alpha": alpha, "groups": groups}, image_shape,
                         **kwargs)


BACKBONES = {cls.builder_name: cls
             for cls in (IGCV1Backbone, IGCV2Backbone, IGCV3Backbone)}
