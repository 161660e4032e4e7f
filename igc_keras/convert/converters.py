"""Authors' MXNet checkpoints -> Keras weights, by layer name.

The Keras builders name every layer so that each maps to one tensor prefix of
the authors' graphs:

========================================  =====================================
Keras layer (IGCV3)                       MXNet prefix (``homles11/IGCV3``)
========================================  =====================================
``stem_conv`` / ``stem_bn``               ``first-3x3-conv-conv2d`` / ``-batchnorm``
``stage{s}_block{b}_expand[_bn]``         ``seq-{s}-block{b}-exp-conv2d`` / ``-batchnorm``
``stage{s}_block{b}_depthwise[_bn]``      ``seq-{s}-block{b}-depthwise-...``
``stage{s}_block{b}_project[_bn]``        ``seq-{s}-block{b}-linear-...``
``last_conv`` / ``last_bn``               ``last-1x1-conv-conv2d`` / ``-batchnorm``
``predictions``                           ``fc``
========================================  =====================================

========================================  =====================================
Keras layer (IGCV1 ImageNet)              MXNet prefix (``hellozting/IGC``)
========================================  =====================================
``stem_conv`` / ``stem_bn``               ``g0_conv`` / ``g0_bn``
``stage{s}_unit{u}_proj[_bn]``            ``g{s}_b{u}_proj_conv`` / ``_proj_bn``
``stage{s}_unit{u}_igc{k}_primary``       ``g{s}_b{u}_conv{k}_conv1``
``stage{s}_unit{u}_igc{k}_secondary``     ``g{s}_b{u}_conv{k}_conv2``
``stage{s}_unit{u}_igc{k}_bn``            ``g{s}_b{u}_conv{k}_bn``
``predictions``                           ``fc_score``
========================================  =====================================

Layouts: convolution ``(O, I/G, kh, kw) -> (kh, kw, I/G, O)``; depthwise
``(C, 1, kh, kw) -> (kh, kw, C, 1)``; dense ``(out, in) -> (in, out)``;
BatchNorm ``gamma, beta`` (``arg:``) and ``moving_mean, moving_var``
(``aux:``) in Keras' order. MXNet's BatchNorm computes
``(x - mean) / sqrt(var + eps) * gamma + beta`` exactly as Keras does, and the
builders use the graphs' epsilons (1e-5 IGCV3, 2e-5 IGCV1) and symmetric
padding, so the converted model computes what the authors' network computes
(``tests/test_convert.py`` checks it against MXNet itself).
"""

import re

import keras
import numpy as np

from igc_keras.convert.mxnet_params import load_params, split_arg_aux


def _igcv3_prefix(name):
    fixed = {"stem_conv": "first-3x3-conv-conv2d",
             "stem_bn": "first-3x3-conv-batchnorm",
             "last_conv": "last-1x1-conv-conv2d",
             "last_bn": "last-1x1-conv-batchnorm", "predictions": "fc"}
    if name in fixed:
        return fixed[name]
    match = re.fullmatch(r"stage(\d+)_block(\d+)_(expand|depthwise|project)"
                         r"(_bn)?", name)
    if not match:
        return None
    stage, block, part, bn = match.groups()
    part = {"expand": "exp", "depthwise": "depthwise", "project": "linear"}[part]
    return f"seq-{stage}-block{block}-{part}-{'batchnorm' if bn else 'conv2d'}"


def _igcv1_prefix(name):
    fixed = {"stem_conv": "g0_conv", "stem_bn": "g0_bn",
             "predictions": "fc_score"}
    if name in fixed:
        return fixed[name]
    match = re.fullmatch(r"stage(\d+)_unit(\d+)_(proj|proj_bn|igc(\d)_primary|"
                         r"igc(\d)_secondary|igc(\d)_bn)", name)
    if not match:
        return None
    stage, unit, part = match.group(1), match.group(2), match.group(3)
    head = f"g{stage}_b{unit}"
    if part == "proj":
        return f"{head}_proj_conv"
    if part == "proj_bn":
        return f"{head}_proj_bn"
    k = part[3]
    tail = {"primary": "conv1", "secondary": "conv2", "bn": "bn"}[
        part.split("_", 1)[1]]
    return f"{head}_conv{k}_{tail}"


#: converter name -> (Keras layer name -> MXNet prefix)
NAMINGS = {"igcv3": _igcv3_prefix, "igcv1": _igcv1_prefix}


def _layer_tensors(layer, prefix, args, aux):
    """Keras-ordered arrays for ``layer`` from the MXNet dicts."""
    def take(store, key, kind):
        if key not in store:
            raise ValueError(f"checkpoint has no {kind}:{key} for Keras layer "
                             f"{layer.name!r}.")
        return store.pop(key)

    if isinstance(layer, keras.layers.BatchNormalization):
        return [take(args, f"{prefix}_gamma", "arg"),
                take(args, f"{prefix}_beta", "arg"),
                take(aux, f"{prefix}_moving_mean", "aux"),
                take(aux, f"{prefix}_moving_var", "aux")]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [take(args, f"{prefix}_weight", "arg").transpose(2, 3, 0, 1)]
    if isinstance(layer, keras.layers.Conv2D):
        out = [take(args, f"{prefix}_weight", "arg").transpose(2, 3, 1, 0)]
        if layer.use_bias:
            out.append(take(args, f"{prefix}_bias", "arg"))
        return out
    if isinstance(layer, keras.layers.Dense):
        return [take(args, f"{prefix}_weight", "arg").T,
                take(args, f"{prefix}_bias", "arg")]
    raise ValueError(f"no conversion rule for layer {layer.name!r} "
                     f"({type(layer).__name__}).")


def assign_mxnet_params(model, params, converter, skip=(), source="checkpoint"):
    """Sets ``model``'s weights from an MXNet ``{"arg:..": array}`` dict.

    Every weighted layer must find its tensors with matching shapes, and every
    tensor of the checkpoint must be used (except those of the Keras layers
    named in ``skip``, e.g. ``("predictions",)`` without the top, which the
    model need not have); every tensor must be finite. Otherwise
    ``ValueError`` names ``source`` and what is missing, left over or not
    finite; nothing is half-loaded (weights are set only after all of them
    were found and checked).
    """
    if converter not in NAMINGS:
        raise ValueError(f"`converter` must be one of {sorted(NAMINGS)}; got "
                         f"{converter!r}.")
    naming = NAMINGS[converter]
    args, aux = split_arg_aux(params)
    for store, kind in ((args, "arg"), (aux, "aux")):
        for key, array in store.items():
            finite = np.isfinite(array)
            if not finite.all():
                raise ValueError(
                    f"{source}: tensor {kind}:{key} holds "
                    f"{int(array.size - finite.sum())} non-finite values "
                    f"(NaN / inf); the checkpoint is corrupt or from a "
                    f"diverged run.")
    for name in skip:
        prefix = naming(name)
        for store in (args, aux):
            for key in [k for k in store if prefix and
                        k.startswith(prefix + "_")]:
                del store[key]
    assignments = []
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = naming(layer.name)
        if prefix is None:
            raise ValueError(f"Keras layer {layer.name!r} has no counterpart in "
                             f"the {converter} checkpoint naming.")
        try:
            arrays = _layer_tensors(layer, prefix, args, aux)
        except ValueError as error:
            raise ValueError(f"{source}: {error} Is it a {converter} "
                             f"checkpoint of this architecture?") from None
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise ValueError(f"{source}: shape mismatch for Keras layer "
                             f"{layer.name!r} (MXNet {prefix}): model expects "
                             f"{expected}, checkpoint gives {got}.")
        assignments.append((layer, arrays))
    left = [f"arg:{k}" for k in args] + [f"aux:{k}" for k in aux]
    if left:
        raise ValueError(f"{source}: {len(left)} checkpoint tensors have no "
                         f"Keras layer: {sorted(left)[:10]}"
                         f"{' ...' if len(left) > 10 else ''}")
    for layer, arrays in assignments:
        layer.set_weights([np.asarray(a, dtype=w.dtype)
                           for a, w in zip(arrays, layer.weights)])
    return model
