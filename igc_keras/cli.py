"""The ``igc-keras`` command line. Subcommands: ``models``."""

import argparse
import os
import sys


def _fmt(value, scale, digits=3):
    return "-" if value is None else f"{value / scale:.{digits}f}"


def zoo_rows(pattern="*"):
    """(spec, params, mult_adds) for every registered model matching ``pattern``.

    Params use the paper row's counting convention (with or without BN).
    """
    from igc_keras.design import count_mult_adds, count_params
    from igc_keras.registry import get_model_spec, list_models

    for name in list_models(pattern):
        spec = get_model_spec(name)
        model = spec.build()
        if spec.paper:
            params = count_params(model, batchnorm=spec.paper.batchnorm,
                                  classifier=spec.paper.classifier)
        else:
            params = count_params(model)
        yield spec, params, count_mult_adds(model)


def _convention(paper):
    if paper is None:
        return "CFB"
    return "C" + ("F" if paper.classifier else "") + (
        "B" if paper.batchnorm else "")


def models_command(args):
    from igc_keras.registry import get_model_spec, list_models

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches pattern={args.pattern!r}", file=sys.stderr)
        return 1
    if args.names_only:
        print("\n".join(names))
        return 0
    header = (f"{'name':34s} {'params(M)':>10s} {'paper':>7s} {'MAdds(M)':>10s} "
              f"{'paper':>8s}  {'cnt':3s} notes")
    print(header)
    print("-" * len(header))
    for spec, params, madds in zoo_rows(args.pattern):
        paper = spec.paper
        note = ("RECONSTRUCTED: " + spec.reconstructed) if spec.reconstructed \
            else spec.description
        print(f"{spec.name:34s} {_fmt(params, 1e6):>10s} "
              f"{(paper.params if paper else '-'):>7s} "
              f"{_fmt(madds, 1e6, 1):>10s} "
              f"{((paper and paper.mult_adds) or '-'):>8s}  "
              f"{_convention(paper):3s} {note}")
    print("\ncnt (what the params column counts, as the paper row does): "
          "C = conv weights, F = + FC weights and bias, B = + BN gamma/beta.\n"
          "mult-adds: conv + dense at the model's input size (paper rows "
          "marked 2x count the stem and 3x3 convs twice).")
    return 0


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(
        prog="igc-keras",
        description="Interleaved Group Convolution networks for Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser(
        "models", help="print the model zoo: params and mult-adds, measured "
                       "beside the papers' figures")
    models.add_argument("pattern", nargs="?", default="*",
                        help="shell-style name filter, e.g. 'igcv3*'")
    models.add_argument("--names-only", action="store_true",
                        help="list names without building the models")
    models.set_defaults(func=models_command)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
