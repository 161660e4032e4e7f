#!/usr/bin/env python
"""Make an MXNet reference for converter tests: a random checkpoint + its logits on real images.

Run with the MXNet venv's interpreter (``tests/mxnet_fixture/setup_venv.sh`` prints it)::

    PY=$(tests/mxnet_fixture/setup_venv.sh | tail -n 1)
    $PY tests/mxnet_fixture/make_reference.py --symbol ../shared/reference/igcv3-symbol.json \
        --out /tmp/ref_igcv3 --images ../shared/data/imagenet/val_samples --count 4 --seed 0

What it does, for one of the authors' symbol graphs:

1. Loads the symbol JSON. IGCV1 graphs use the authors' custom ``Reorder`` op, which
   stock MXNet lacks: every ``Reorder(branch_factor=G)`` node is rewritten, in the JSON
   node list, into ``Reshape(shape=(0,-4,G,-1,-2)) -> SwapAxis(dim1=1,dim2=2) ->
   Reshape(shape=(0,-3,-2))`` (the last node keeps the original name; inputs are
   rewired). That is the channel permutation ``out[j*G + g] = in[g*(C/G) + j]``
   (checked numerically at start-up).
2. Draws random parameters in float64 for every argument / auxiliary state: conv and
   dense weights ~ N(0, sqrt(2 / fan_in)) with fan_in = in_channels_per_group*kh*kw;
   biases ~ N(0, 0.1); BN gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1). The BN moving
   statistics are calibrated on the images so activations stay O(1) through the
   deep net (the input is raw RGB minus the mean, std ~ 60, so unscaled statistics
   would saturate every ReLU6): walking the graph in order in inference mode, each
   BN's ``moving_mean = mean + N(0, 0.1) * std`` and ``moving_var = var * U(0.5, 1.5)``
   of its actual per-channel input. Every parameter is then rounded to float32.
3. Saves ``OUT/model-0000.params`` with MXNet's own ``mx.nd.save`` (keys ``arg:<name>``
   / ``aux:<name>``, float32, as the released checkpoints) and ``OUT/model-symbol.json``
   (the rewritten graph, as MXNet 1.9.1 serialises it): together a checkpoint that
   ``mx.model.load_checkpoint("OUT/model", 0)`` loads.
4. Reads the first ``--count`` images of ``--images`` (sorted file names), resizes the
   shorter side to ``round(size / 0.875)`` (PIL bilinear), centre-crops ``size`` and
   subtracts the RGB mean (123.68, 116.779, 103.939) -- the authors' preprocessing.
5. Runs the graph in inference mode (BN with the moving statistics) in float64, the
   float32-rounded parameters cast to float64, and records the output of the
   FullyConnected node that feeds ``SoftmaxOutput`` (the logits), checking that MXNet
   really computed in float64. If float64 fails, it falls back to float32 and says so.

Writes ``OUT/reference.npz`` with ``images_nhwc`` (float64, N x size x size x 3, the
preprocessed inputs), ``logits`` (float64, N x classes), ``names`` (image file names),
``dtype`` (the dtype MXNet computed in: "float64", or "float32" after a fallback),
``output_name`` (the logits node), ``seed``, ``size``, ``mean_rgb``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# Modest CPU use by default (the callers share small machines).
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
# Plain operator semantics: no MKLDNN graph fusion (conv+BN folding etc.) in the executor.
os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")

import numpy as np  # noqa: E402

MEAN_RGB = (123.68, 116.779, 103.939)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


# --------------------------------------------------------------------------- graph
def _attr_key(node: dict) -> str:
    """The key holding a node's attributes in this JSON dialect."""
    for key in ("attrs", "attr", "param"):
        if key in node:
            return key
    return "attrs"


def rewrite_reorder(graph: dict) -> tuple[dict, int]:
    """Replace custom ``Reorder(branch_factor=G)`` nodes by Reshape/SwapAxis/Reshape.

    Works on the raw JSON (any dialect: legacy ``param`` with 2-element inputs, or
    ``attr``/``attrs`` with 3-element inputs). Node indices shift, so every input
    entry, ``arg_nodes`` and ``heads`` are remapped; ``node_row_ptr`` (optional for
    MXNet's loader) is dropped when nodes were inserted. Returns (graph, count).
    """
    old_nodes = graph["nodes"]
    if not any(n["op"] == "Reorder" for n in old_nodes):
        return graph, 0
    key = _attr_key(next(n for n in old_nodes if n["op"] != "null"))
    new_nodes: list[dict] = []
    remap: dict[int, int] = {}

    def entry(src_entry, new_index):
        return [new_index] + list(src_entry[1:])

    count = 0
    for i, node in enumerate(old_nodes):
        node = dict(node)
        node["inputs"] = [entry(e, remap[e[0]]) for e in node["inputs"]]
        if node["op"] != "Reorder":
            new_nodes.append(node)
            remap[i] = len(new_nodes) - 1
            continue
        count += 1
        attrs = node.get("attrs") or node.get("attr") or node.get("param") or {}
        groups = int(attrs["branch_factor"])
        if len(node["inputs"]) != 1:
            raise ValueError(f"Reorder node {node['name']!r} has {len(node['inputs'])} inputs")
        (src,) = node["inputs"]
        extra = {k: v for k, v in node.items()
                 if k not in ("op", "name", "inputs", "attrs", "attr", "param")}
        split = dict(extra, op="Reshape", name=node["name"] + "_split",
                     inputs=[src], **{key: {"shape": f"(0, -4, {groups}, -1, -2)"}})
        new_nodes.append(split)
        swap = dict(extra, op="SwapAxis", name=node["name"] + "_swapaxis",
                    inputs=[entry(src, len(new_nodes) - 1)],
                    **{key: {"dim1": "1", "dim2": "2"}})
        swap["inputs"][0][1] = 0
        new_nodes.append(swap)
        merge = dict(extra, op="Reshape", name=node["name"],
                     inputs=[entry(src, len(new_nodes) - 1)], **{key: {"shape": "(0, -3, -2)"}})
        merge["inputs"][0][1] = 0
        new_nodes.append(merge)
        remap[i] = len(new_nodes) - 1

    out = dict(graph)
    out["nodes"] = new_nodes
    out["arg_nodes"] = [remap[i] for i in graph["arg_nodes"]]
    out["heads"] = [entry(h, remap[h[0]]) for h in graph["heads"]]
    out.pop("node_row_ptr", None)
    return out, count


def check_permutation_rewrite(mx) -> None:
    """Verify numerically that the rewrite computes out[j*G+g] = in[g*(C/G)+j]."""
    groups, channels = 3, 12
    x = np.arange(2 * channels * 2 * 2, dtype=np.float64).reshape(2, channels, 2, 2)
    y = mx.nd.array(x, dtype="float64")
    y = mx.nd.Reshape(y, shape=(0, -4, groups, -1, -2))
    y = mx.nd.SwapAxis(y, dim1=1, dim2=2)
    y = mx.nd.Reshape(y, shape=(0, -3, -2)).asnumpy()
    per = channels // groups
    expected = np.empty_like(x)
    for j in range(per):
        for g in range(groups):
            expected[:, j * groups + g] = x[:, g * per + j]
    assert np.array_equal(y, expected), "Reorder rewrite is not the channel shuffle"
    assert [int(v) for v in y[0, :, 0, 0] // 4] == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]


def logits_node(graph_json: dict) -> str:
    """Name of the FullyConnected node that feeds the SoftmaxOutput head."""
    nodes = graph_json["nodes"]
    for node in nodes:
        if node["op"] == "SoftmaxOutput":
            src = nodes[node["inputs"][0][0]]
            if src["op"] == "FullyConnected":
                return src["name"]
    fcs = [n["name"] for n in nodes if n["op"] == "FullyConnected"]
    if not fcs:
        raise ValueError("graph has no FullyConnected node")
    return fcs[-1]


# --------------------------------------------------------------------------- images
def load_images(image_dir: str, count: int, size: int):
    """The first ``count`` images (sorted names), resized, centre-cropped, minus mean."""
    from PIL import Image

    names = sorted(f for f in os.listdir(image_dir)
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if len(names) < count:
        raise SystemExit(f"{image_dir} has {len(names)} images, {count} requested")
    names = names[:count]
    short = int(round(size / 0.875))
    out = np.empty((count, size, size, 3), dtype=np.float64)
    for i, name in enumerate(names):
        with Image.open(os.path.join(image_dir, name)) as img:
            img = img.convert("RGB")
            w, h = img.size
            if w <= h:
                new_w, new_h = short, int(round(h * short / w))
            else:
                new_w, new_h = int(round(w * short / h)), short
            img = img.resize((new_w, new_h), Image.BILINEAR)
            left, top = (new_w - size) // 2, (new_h - size) // 2
            img = img.crop((left, top, left + size, top + size))
            out[i] = np.asarray(img, dtype=np.float64) - np.asarray(MEAN_RGB)
    return out, names


# --------------------------------------------------------------------------- params
def _round32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def init_args(arg_names, arg_shapes, rng, fixed_gamma: set[str]) -> dict[str, np.ndarray]:
    """Random float32-representable float64 values for every learnable argument."""
    params = {}
    for name, shape in zip(arg_names, arg_shapes):
        if name in ("data", "softmax_label") or name.endswith("_label"):
            continue
        if name.endswith("_weight"):
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
        elif name.endswith("_bias"):
            value = rng.normal(0.0, 0.1, size=shape)
        elif name.endswith("_gamma"):
            value = rng.uniform(0.5, 1.5, size=shape)
            if name[:-len("_gamma")] in fixed_gamma:
                value = np.ones(shape)  # fix_gamma=True: MXNet uses 1 whatever is stored
        elif name.endswith("_beta"):
            value = rng.normal(0.0, 0.1, size=shape)
        else:
            raise SystemExit(f"do not know how to initialise argument {name!r} {shape}")
        params[name] = _round32(value)
    return params


def _lookup_op(mx, op: str):
    for module in (mx.nd, mx.nd.op, mx.nd._internal):
        fn = getattr(module, op, None)
        if fn is not None:
            return fn
    raise SystemExit(f"MXNet has no imperative op {op!r}")


def calibrate_bn(mx, graph_json: dict, target: str, images_nchw: np.ndarray,
                 args: dict, aux_shapes: dict, rng, dtype: str):
    """Evaluate the graph node by node (inference mode) and set BN moving statistics.

    Each BatchNorm's moving_mean / moving_var are drawn around the actual per-channel
    mean / variance of its input (mean + N(0,0.1)*std, var * U(0.5,1.5)), rounded to
    float32, before that BN is evaluated, so activations stay O(1) at every depth.
    Returns (aux params, logits of ``target`` computed imperatively, BN output stds).
    """
    nodes = graph_json["nodes"]
    index = {n["name"]: i for i, n in enumerate(nodes)}
    needed, stack = set(), [index[target]]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        stack.extend(e[0] for e in nodes[i]["inputs"])
    values: dict[int, object] = {}
    aux: dict[str, np.ndarray] = {}
    bn_out_std = []

    def nd(x):
        return mx.nd.array(x, dtype=dtype)

    for i in sorted(needed):
        node = nodes[i]
        op, name = node["op"], node["name"]
        if op == "null":
            if name == "data":
                values[i] = nd(images_nchw)
            elif name in args:
                values[i] = nd(args[name])
            elif name in aux_shapes:
                values[i] = None  # filled in by its BatchNorm below
            else:
                raise SystemExit(f"no value for graph input {name!r}")
            continue
        attrs = {k: v for k, v in (node.get("attrs") or node.get("attr") or {}).items()
                 if not k.startswith("__")}
        inputs = [values[e[0]] for e in node["inputs"]]
        if op == "BatchNorm":
            x = inputs[0].asnumpy().astype(np.float64)
            axes = (0,) + tuple(range(2, x.ndim))
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            var = np.maximum(var, 1e-6 * max(float(var.mean()), 1e-12))
            mm_name = nodes[node["inputs"][3][0]]["name"]
            mv_name = nodes[node["inputs"][4][0]]["name"]
            aux[mm_name] = _round32(mean + rng.normal(0.0, 0.1, mean.shape) * np.sqrt(var))
            aux[mv_name] = _round32(var * rng.uniform(0.5, 1.5, var.shape))
            inputs[3], inputs[4] = nd(aux[mm_name]), nd(aux[mv_name])
            attrs["use_global_stats"] = "True"
        out = _lookup_op(mx, op)(*inputs, **attrs)
        if isinstance(out, (list, tuple)):
            out = out[0]
        values[i] = out
        if op == "BatchNorm":
            bn_out_std.append(float(out.asnumpy().std()))
    missing = set(aux_shapes) - set(aux)
    if missing:
        raise SystemExit(f"auxiliary states not calibrated: {sorted(missing)[:5]}")
    return aux, values[index[target]].asnumpy(), bn_out_std


# --------------------------------------------------------------------------- forward
def executor_forward(mx, sym, images_nchw, args, aux, dtype: str) -> np.ndarray:
    """Forward ``sym`` with MXNet's graph executor, inference mode, all in ``dtype``."""
    exe = sym.simple_bind(ctx=mx.cpu(), grad_req="null", type_dict={"data": dtype},
                          data=images_nchw.shape)
    for name, arr in exe.arg_dict.items():
        if name == "data":
            arr[:] = images_nchw.astype(dtype)
        elif name in args:
            arr[:] = args[name].astype(dtype)
        if arr.dtype != np.dtype(dtype):
            raise RuntimeError(f"argument {name} bound as {arr.dtype}, not {dtype}")
    for name, arr in exe.aux_dict.items():
        arr[:] = aux[name].astype(dtype)
        if arr.dtype != np.dtype(dtype):
            raise RuntimeError(f"aux state {name} bound as {arr.dtype}, not {dtype}")
    outputs = exe.forward(is_train=False)
    out = outputs[0]
    if out.dtype != np.dtype(dtype):
        raise RuntimeError(f"MXNet computed the logits in {out.dtype}, not {dtype}")
    return out.asnumpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbol", required=True, help="MXNet symbol JSON")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--images", required=True, help="directory of images")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--prefix", default="model", help="checkpoint prefix (default model)")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                        help="compute dtype of the reference forward (default float64)")
    opts = parser.parse_args(argv)

    t0 = time.time()
    import mxnet as mx

    print(f"mxnet {mx.__version__}, numpy {np.__version__}", flush=True)
    check_permutation_rewrite(mx)
    os.makedirs(opts.out, exist_ok=True)

    with open(opts.symbol) as f:
        raw_graph = json.load(f)
    graph, n_reorder = rewrite_reorder(raw_graph)
    if n_reorder:
        print(f"rewrote {n_reorder} Reorder nodes into Reshape/SwapAxis/Reshape", flush=True)
    sym = mx.sym.load_json(json.dumps(graph))
    graph_json = json.loads(sym.tojson())  # MXNet's own (upgraded) form of the graph
    target = logits_node(graph_json)
    logits_sym = sym.get_internals()[target + "_output"]
    fixed_gamma = {n["name"] for n in graph_json["nodes"] if n["op"] == "BatchNorm"
                   and str((n.get("attrs") or {}).get("fix_gamma", "True")).lower()
                   in ("true", "1")}
    if fixed_gamma:
        print(f"note: {len(fixed_gamma)} BatchNorm nodes have fix_gamma=True "
              f"(gamma saved as 1)", flush=True)

    images, names = load_images(opts.images, opts.count, opts.size)
    images_nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    shape = images_nchw.shape

    arg_names = logits_sym.list_arguments()
    aux_names = logits_sym.list_auxiliary_states()
    arg_shapes, _, aux_shapes = logits_sym.infer_shape(data=shape)
    rng = np.random.default_rng(opts.seed)
    args = init_args(arg_names, arg_shapes, rng, fixed_gamma)
    aux_shape_of = dict(zip(aux_names, aux_shapes))
    t1 = time.time()

    dtype = opts.dtype
    try:
        aux, logits_imp, bn_std = calibrate_bn(mx, graph_json, target, images_nchw, args,
                                               aux_shape_of, np.random.default_rng(opts.seed + 1),
                                               dtype)
    except mx.base.MXNetError as exc:
        if dtype != "float64":
            raise
        print(f"WARNING: float64 failed in node-by-node evaluation ({exc}); "
              f"falling back to float32", flush=True)
        dtype = "float32"
        aux, logits_imp, bn_std = calibrate_bn(mx, graph_json, target, images_nchw, args,
                                               aux_shape_of, np.random.default_rng(opts.seed + 1),
                                               dtype)
    t2 = time.time()

    # The checkpoint, written by MXNet itself, in float32 (as the released ones).
    checkpoint = {f"arg:{k}": mx.nd.array(v, dtype="float32") for k, v in args.items()}
    checkpoint.update({f"aux:{k}": mx.nd.array(v, dtype="float32") for k, v in aux.items()})
    params_path = os.path.join(opts.out, f"{opts.prefix}-0000.params")
    mx.nd.save(params_path, checkpoint)
    with open(os.path.join(opts.out, f"{opts.prefix}-symbol.json"), "w") as f:
        f.write(sym.tojson())

    # Reload what was saved: the forward must use exactly the stored float32 values.
    loaded = mx.nd.load(params_path)
    args_saved = {k[4:]: v.asnumpy().astype(np.float64) for k, v in loaded.items()
                  if k.startswith("arg:")}
    aux_saved = {k[4:]: v.asnumpy().astype(np.float64) for k, v in loaded.items()
                 if k.startswith("aux:")}
    for k, v in args.items():
        assert np.array_equal(args_saved[k], v), k
    for k, v in aux.items():
        assert np.array_equal(aux_saved[k], v), k

    try:
        logits = executor_forward(mx, logits_sym, images_nchw, args_saved, aux_saved, dtype)
    except (mx.base.MXNetError, RuntimeError) as exc:
        if dtype != "float64":
            raise
        print(f"WARNING: float64 forward failed ({exc}); falling back to float32", flush=True)
        dtype = "float32"
        logits = executor_forward(mx, logits_sym, images_nchw, args_saved, aux_saved, dtype)
    t3 = time.time()

    diff = float(np.max(np.abs(logits - logits_imp)))
    scale = float(np.max(np.abs(logits)))
    print(f"graph executor vs node-by-node ({dtype}): max |diff| {diff:.3g} "
          f"(max |logit| {scale:.3g})", flush=True)
    tol = 1e-9 if dtype == "float64" else 1e-3
    if diff > tol * max(scale, 1.0):
        raise SystemExit("executor and node-by-node logits disagree")

    np.savez(os.path.join(opts.out, "reference.npz"),
             images_nhwc=images, logits=logits.astype(np.float64),
             names=np.array(names), dtype=np.array(dtype), output_name=np.array(target),
             seed=np.array(opts.seed), size=np.array(opts.size),
             mean_rgb=np.array(MEAN_RGB))
    print(f"{len(args)} arg + {len(aux)} aux tensors -> {params_path}")
    print(f"BN output std over {len(bn_std)} BNs: min {min(bn_std):.3g}, "
          f"median {float(np.median(bn_std)):.3g}, max {max(bn_std):.3g}")
    print(f"logits ({target}, {dtype}): shape {logits.shape}, std {logits.std():.3g}, "
          f"top-1 {logits.argmax(axis=1).tolist()}")
    print(f"time: setup {t1 - t0:.1f}s, calibration {t2 - t1:.1f}s, "
          f"executor forward {t3 - t2:.1f}s, total {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
