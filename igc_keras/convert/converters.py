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
#: registry name -> converter name, for the variants the authors released
CONVERTERS = {"igcv3_1.0": "igcv3", "igcv1_l100m2": "igcv1",
              "igcv1_l16m16": "igcv1", "igcv1_l4m32": "igcv1"}


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


def assign_mxnet_params(model, params, converter):
    """Sets ``model``'s weights from an MXNet ``{"arg:..": array}`` dict.

    Every weighted layer must find its tensors with matching shapes, and every
    tensor of the checkpoint must be used; otherwise ``ValueError`` lists what
    is missing or left over (nothing is half-loaded: weights are set only after
    all of them were found).
    """
    if converter not in NAMINGS:
        raise ValueError(f"`converter` must be one of {sorted(NAMINGS)}; got "
                         f"{converter!r}.")
    naming = NAMINGS[converter]
    args, aux = split_arg_aux(params)
    assignments = []
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = naming(layer.name)
        if prefix is None:
            raise ValueError(f"Keras layer {layer.name!r} has no counterpart in "
                             f"the {converter} checkpoint naming.")
        arrays = _layer_tensors(layer, prefix, args, aux)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise ValueError(f"shape mismatch for Keras layer {layer.name!r} "
                             f"(MXNet {prefix}): model expects {expected}, "
                             f"checkpoint gives {got}.")
        assignments.append((layer, arrays))
    left = [f"arg:{k}" for k in args] + [f"aux:{k}" for k in aux]
    if left:
        raise ValueError(f"{len(left)} checkpoint tensors have no Keras layer: "
                         f"{sorted(left)[:10]}{' ...' if len(left) > 10 else ''}")
    for layer, arrays in assignments:
        layer.set_weights([np.asarray(a, dtype=w.dtype)
                           for a, w in zip(arrays, layer.weights)])
    return model


def convert_checkpoint(checkpoint, model_name, model=None):
    """Reads an authors' ``.params`` file and returns the Keras model with it.

    Args:
        checkpoint: path of the MXNet ``.params`` file (or its bytes).
        model_name: registry name of a released variant (``"igcv3_1.0"``,
            ``"igcv1_l100m2"``, ``"igcv1_l16m16"``, ``"igcv1_l4m32"``).
        model: optionally, an already built model of that architecture (e.g.
            built under a float64 dtype policy) to fill instead.
    """
    if model_name not in CONVERTERS:
        raise ValueError(f"no converter for model_name={model_name!r}; "
                         f"convertible: {sorted(CONVERTERS)}.")
    if model is None:
        from igc_keras.registry import create_model
        model = create_model(model_name)
    return assign_mxnet_params(model, load_params(checkpoint),
                               CONVERTERS[model_name])


def transfer_weights(source, target, skip_missing=()):
    """Copies weights from ``source`` to ``target`` by layer name.

    Every weighted layer of ``target`` must exist in ``source`` with the same
    shapes; layers of ``source`` whose names start with an entry of
    ``skip_missing`` may be absent from ``target`` (e.g. the classifier when
    ``include_top=False``).
    """
    by_name = {layer.name: layer for layer in source.layers if layer.weights}
    pending = []
    for layer in target.layers:
        if not layer.weights:
            continue
        if layer.name not in by_name:
            raise ValueError(f"pretrained weights have no layer {layer.name!r}.")
        values = by_name.pop(layer.name).get_weights()
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [v.shape for v in values]:
            raise ValueError(
                f"pretrained weights for layer {layer.name!r} have shapes "
                f"{[v.shape for v in values]}; the model expects {shapes} "
                f"(ImageNet weights need 3 input channels and the same alpha).")
        pending.append((layer, values))
    unused = [n for n in by_name if not n.startswith(tuple(skip_missing))]
    if unused:
        raise ValueError(f"pretrained layers not used by the model: {unused[:10]}")
    for layer, values in pending:
        layer.set_weights(values)
    return target
