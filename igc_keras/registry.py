"""The model registry: every named network, its builder and the paper's figures.

One source of truth (timm style): each family module registers its variants
as data with :func:`register`; :func:`list_models` and :func:`create_model`
read them, the ``igc-keras models`` table prints them, and the tests check
every entry's parameters and mult-adds against its paper figures.
"""

import dataclasses
import fnmatch
from typing import Callable, Optional


@dataclasses.dataclass(frozen=True)
class PaperFigures:
    """A table row of the papers.

    Attributes:
        params: parameters as printed (absolute count, e.g. ``3.5e6``).
        mult_adds: mult-adds ("FLOPs") as printed, or ``None``.
        source: where the row is (seed file and table).
        batchnorm: whether the paper's count includes BN gamma/beta (ImageNet
            tables: yes; the CIFAR tables count conv + FC weights only).
    """

    params: float
    mult_adds: Optional[float]
    source: str
    batchnorm: bool = True


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
    """

    name: str
    builder: Callable
    kwargs: dict
    dataset: str
    paper: Optional[PaperFigures] = None
    reconstructed: str = ""
    description: str = ""

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


def _load():
    import igc_keras.applications  # noqa: F401  (registers the families)


def list_models(pattern="*"):
    """Sorted registry names matching a shell-style ``pattern``."""
    _load()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_model_spec(name):
    """The :class:`ModelSpec` of ``name``; unknown names list close matches."""
    _load()
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
