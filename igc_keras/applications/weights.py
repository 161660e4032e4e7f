"""The builders' ``weights=`` argument: what it may name, and the loading.

* ``None``: random initialisation.
* ``"imagenet"``: the authors' released checkpoint of the requested
  architecture (:mod:`igc_keras.applications.pretrained`), fetched and
  verified by :mod:`igc_keras.applications.checkpoint_store`, read with the
  package's MXNet reader and assigned straight into the model being built
  (the classifier's tensors skipped without the top).
* the path of an authors' MXNet checkpoint (``.params``): converted on the
  fly the same way. A released file is recognised by its git blob id and must
  be the one of the requested architecture; any other checkpoint of the same
  graph (one the builder's converter names) is converted without that check.
* the path of a Keras weights file (``.weights.h5``) saved from the same
  architecture.

Every tensor is checked finite before the model is returned (NaN / inf
refused naming the tensor); nothing half-loaded is returned. A whole saved
model (``.keras``) is refused with the call that loads it.
"""

import os

import numpy as np

#: File endings of whole saved models, which are not weights files.
SAVED_MODELS = (".keras",)


def check_weights_argument(weights, builder):
    """Fails before any layer exists on a ``weights`` that cannot load."""
    if weights is None or (isinstance(weights, str) and weights == "imagenet"):
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"{builder}: `weights` must be None, 'imagenet' or a "
                         f"file path; got weights={weights!r}.")
    path = os.fspath(weights)
    if path.endswith(SAVED_MODELS):
        raise ValueError(
            f"{builder}: weights={path!r} is a whole saved model (.keras), "
            f"not a weights file; load it with keras.saving.load_model("
            f"{path!r}), or pass a .weights.h5 file (model.save_weights) or "
            f"an authors' .params checkpoint.")
    if not os.path.isfile(path):
        raise ValueError(f"{builder}: weights={path!r} does not exist (None, "
                         f"'imagenet', a .weights.h5 file or an authors' "
                         f".params checkpoint).")


def load_weights(model, weights, config, *, include_top, converter=None,
                 builder=""):
    """Loads ``weights`` (see the module docstring) into ``model``.

    Args:
        config: the released :class:`~igc_keras.applications.pretrained.
            PretrainedConfig` of the requested architecture, or None.
        converter: the builder's checkpoint naming (``"igcv3"`` /
            ``"igcv1"``), None where no authors' checkpoint exists.
    """
    if weights is None:
        return model
    if isinstance(weights, str) and weights == "imagenet":
        from igc_keras.applications.checkpoint_store import fetch_checkpoint
        return _assign_checkpoint(model, fetch_checkpoint(config),
                                  config.converter, include_top)
    path = os.fspath(weights)
    if path.endswith(".params"):
        return _assign_checkpoint(model, path, _converter_for(
            path, config, converter, builder), include_top)
    try:
        model.load_weights(path)
    except Exception as error:  # keras raises several types here
        raise ValueError(f"could not load weights={path!r} into "
                         f"{model.name!r}: {error}") from error
    check_finite(model, path)
    return model


def _converter_for(path, config, converter, builder):
    """The naming of an authors' checkpoint at ``path`` for this builder."""
    from igc_keras.applications import pretrained
    from igc_keras.applications.checkpoint_store import git_blob_sha1
    released = pretrained.by_git_blob_sha1(git_blob_sha1(path))
    if released is not None and released is not config:
        raise ValueError(
            f"{builder}: weights={path!r} is the authors' {released.model} "
            f"checkpoint; build it with {pretrained.describe(released)}.")
    if converter is None:
        raise ValueError(f"{builder}: weights={path!r}: there is no authors' "
                         f"checkpoint naming for {builder}; pass a Keras "
                         f".weights.h5 file.")
    return converter


def _assign_checkpoint(model, path, converter, include_top):
    from igc_keras.convert.converters import assign_mxnet_params
    from igc_keras.convert.mxnet_params import load_params
    try:
        params = load_params(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"weights file {path!r} is not a readable MXNet "
                         f"checkpoint: {error}") from error
    return assign_mxnet_params(model, params, converter,
                               skip=() if include_top else ("predictions",),
                               source=path)


def check_finite(model, source):
    """Raises ``ValueError`` naming the first weight of ``model`` holding
    NaN / inf (loaded from ``source``)."""
    for weight in model.weights:
        values = np.asarray(weight)
        if not np.isfinite(values).all():
            bad = int(values.size - np.isfinite(values).sum())
            raise ValueError(f"weights file {source!r}: {weight.path} holds "
                             f"{bad} non-finite values (NaN / inf); the file "
                             f"is corrupt or from a diverged run.")
