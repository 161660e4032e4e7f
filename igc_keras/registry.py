"""The model registry: every named network, its builder and the paper's figures.

One source of truth (timm style): each family module registers its variants
as data with :func:`register` (``igc_keras.applications.variants``, imported with
the package; this module imports nothing of the package); :func:`list_models`
and :func:`create_model` read them, the ``igc-keras models`` table prints them, and the tests check
every entry's parameters and mult-adds against its paper figures.
"""

import dataclasses
import fnmatch
from typing import Callable, Optional


_SUFFIXES = {"K": 1e3, "M": 1e6, "G": 1e9}


def _spatial(model):
    """Convolution layers with a kernel larger than 1x1."""
    import keras
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
                      ) and max(layer.kernel_size) > 1:
            yield layer


def parse_figure(text):
    """``"0.29e8"``, ``"3.5M"``, ``"320M"`` -> ``(value, half_unit)``.

    ``half_unit`` is half a unit of the last printed digit: the printed figure
    stands for any value within ``value +- half_unit``.
    """
    text = text.strip()
    scale = 1.0
    if text[-1] in _SUFFIXES:
        text, scale = text[:-1], _SUFFIXES[text[-1]]
    if "e" in text:
        text, exponent = text.split("e")
        scale *= 10.0 ** int(exponent)
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(text) * scale, 0.5 * 10.0 ** -decimals * scale


@dataclasses.dataclass(frozen=True)
class PaperFigures:
    """A table row of the papers, with figures exactly as printed.

    Attributes:
        params: parameters as printed, e.g. ``"3.5M"`` or ``"0.15M"``.
        mult_adds: mult-adds ("FLOPs") as printed, e.g. ``"0.29e8"``, or
            ``None``.
        source: where the row is (seed file and table).
        batchnorm: whether the paper's count includes BN gamma/beta (ImageNet
            tables: yes; the CIFAR tables count conv + FC weights only).
        classifier: whether the paper's parameter count includes the final
            FC layer (the IGCV2 paper's CIFAR tables count convolutions only).
        spatial_twice: the paper's mult-adds are reproduced only when the
            stem and 3x3 convolutions are counted twice (IGCV2 ImageNet; see
            :mod:`igc_keras.applications.igcv2`).
        truncated: the row's figures were truncated, not rounded, when
            printed (they stand for ``[value, value + unit)``); set only where
            the seeds are shown to truncate, with the reason in ``source``.
    """

    params: str
    mult_adds: Optional[str]
    source: str
    batchnorm: bool = True
    classifier: bool = True
    spatial_twice: bool = False
    truncated: bool = False

    def count(self, model):
        """``(params, mult_adds)`` of ``model`` under this row's convention."""
        from igc_keras.design.counting import (count_mult_adds, count_params,
                                               layer_mult_adds)
        params = count_params(model, batchnorm=self.batchnorm,
                              classifier=self.classifier)
        madds = count_mult_adds(model)
        if self.spatial_twice:
            madds += sum(layer_mult_adds(layer) for layer in _spatial(model))
        return params, madds

    @property
    def params_value(self):
        return parse_figure(self.params)[0]

    @property
    def mult_adds_value(self):
        return None if self.mult_adds is None else parse_figure(self.mult_adds)[0]

    def agrees(self, measured, printed, rel=0.03):
        """Within ``rel`` of the printed figure, or inside its rounding."""
        return figure_agrees(measured, printed, rel, self.truncated)


def figure_agrees(measured, printed, rel=0.03, truncated=False):
    """``measured`` is within ``rel`` of ``printed`` or inside its rounding.

    A printed figure stands for ``value +- half_unit`` (rounded), or for
    ``[value, value + 2 half_unit)`` when ``truncated``.
    """
    value, half_unit = parse_figure(printed)
    slack = 1e-9 * value
    if abs(measured - value) <= rel * value + slack:
        return True
    if truncated:
        return value - slack <= measured < value + 2 * half_unit
    return abs(measured - value) <= half_unit + slack


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered network.

    Attributes:
        name: registry name, e.g. ``"igcv3_1.0"``.
        builder: the public builder (``IGCV3``, ``IGCV1CIFAR``, ...).
        kwargs: arguments that make this variant.
        dataset: ``"imagenet"``, ``"cifar"`` or ``"tiny_imagenet"``.
        paper: the paper's figures, if the seeds give any.
        reconstructed: empty when the layout follows the authors' code;
            otherwise how it was reconstructed (shown in the model zoo).
        description: one line for humans.
        baseline: a reference network from keras.applications (its paper
            row is shown for comparison, not reproduced by igc_keras).
    """

    name: str
    builder: Callable
    kwargs: dict
    dataset: str
    paper: Optional[PaperFigures] = None
    reconstructed: str = ""
    description: str = ""
    baseline: bool = False

    def build(self, **overrides):
        kwargs = dict(self.kwargs)
        kwargs.update(overrides)
        kwargs.setdefault("name", self.name.replace(".", "_"))
        return self.builder(**kwargs)


_REGISTRY = {}


def register(spec):
    """Adds ``spec`` to the registry (names are unique)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model name {spec.name!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


def list_models(pattern="*"):
    """Sorted registry names matching a shell-style ``pattern``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_model_spec(name):
    """The :class:`ModelSpec` of ``name``; unknown names list close matches."""
    if name not in _REGISTRY:
        import difflib
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.4)
        raise ValueError(
            f"unknown model name={name!r}; close matches: {close or 'none'}; "
            f"igc_keras.list_models() lists all {len(_REGISTRY)}.")
    return _REGISTRY[name]


def create_model(name, **kwargs):
    """Builds the registered network ``name``; ``kwargs`` override its defaults.

    Example::

        model = igc_keras.create_model("igcv1_cifar_l24m2_d20", classes=100)
    """
    return get_model_spec(name).build(**kwargs)
