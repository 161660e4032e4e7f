"""The ``igc-keras`` command line. Subcommands: ``models``, ``convert``,
``finetune``, ``train``, ``evaluate``, ``detect``, ``export``, ``bench``."""

import argparse
import os
import sys


def models_command(args):
    from igc_keras.registry import list_models

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches pattern={args.pattern!r}", file=sys.stderr)
        return 1
    if args.names_only:
        print("\n".join(names))
        return 0
    if args.markdown:
        print("| name | params (M) | paper | MAdds (M) | paper | counted | "
              "notes |")
        print("|---|---:|---:|---:|---:|---|---|")
    else:
        header = (f"{'name':34s} {'params(M)':>10s} {'paper':>7s} "
                  f"{'MAdds(M)':>10s} {'paper':>8s}  {'cnt':3s} notes")
        print(header)
        print("-" * len(header))
    from igc_keras.design.zoo_table import convention, fmt, note, zoo_rows
    for row in zoo_rows(args.pattern):
        spec, paper = row["spec"], row["spec"].paper
        cells = (spec.name, fmt(row["params"], 1e6),
                 paper.params if paper else "-",
                 fmt(row["mult_adds"], 1e6, 1),
                 (paper and paper.mult_adds) or "-", convention(paper),
                 note(row))
        if args.markdown:
            print("| " + " | ".join(cells) + " |")
        else:
            print(f"{cells[0]:34s} {cells[1]:>10s} {cells[2]:>7s} "
                  f"{cells[3]:>10s} {cells[4]:>8s}  {cells[5]:3s} {cells[6]}")
    print("\ncounted: what the params column counts, as the paper row does "
          "(C conv weights, F + FC weights and bias, B + BN gamma/beta). "
          "MAdds: conv + dense multiply-accumulates at the model's input size.")
    return 0


def convert_command(args):
    from igc_keras.applications import pretrained
    from igc_keras.applications.checkpoint_store import git_blob_sha1
    from igc_keras.registry import create_model

    def fail(message):
        print(f"igc-keras convert: error: {message}", file=sys.stderr)
        return 2
    if not os.path.isfile(args.checkpoint):
        return fail(f"{args.checkpoint!r} does not exist.")
    blob = git_blob_sha1(args.checkpoint)
    released = pretrained.by_git_blob_sha1(blob)
    model_name = args.model
    if released is not None:
        if model_name not in (None, released.model):
            return fail(f"{args.checkpoint!r} is the authors' "
                        f"{released.model} checkpoint, not --model "
                        f"{model_name}.")
        model_name = released.model
    elif args.verify:
        return fail(f"{args.checkpoint!r} is not one of the authors' released "
                    f"files (git blob id {blob}; released: "
                    f"{sorted(pretrained.PRETRAINED)}).")
    elif model_name is None:
        return fail(f"{args.checkpoint!r} is not one of the authors' released "
                    f"files (git blob id {blob}); pass --model with the "
                    f"architecture it holds, e.g. one of "
                    f"{sorted(pretrained.PRETRAINED)}.")
    try:
        model = create_model(model_name, weights=args.checkpoint)
    except ValueError as error:
        return fail(str(error))
    output = args.output or f"{model_name}.weights.h5"
    if output.endswith(".keras"):
        model.save(output)
    else:
        model.save_weights(output)
    what = "released, verified" if released else "not a released file"
    print(f"converted {args.checkpoint} ({model_name}, {what}) -> {output}")
    return 0


def _experiment(args):
    from igc_keras.training.config import load_experiment
    return load_experiment(args.recipe, args.overrides)


def train_command(args):
    import json

    from igc_keras.training.trainer import train
    _, result = train(_experiment(args))
    print(json.dumps(result, indent=2))
    return 0


def evaluate_command(args):
    import json

    from igc_keras.training.trainer import evaluate
    print(json.dumps(evaluate(_experiment(args), args.checkpoint), indent=2))
    return 0


def detect_command(args):
    import numpy as np
    import tensorflow as tf

    import keras
    from igc_keras.detection.visualize import draw_detections, load_detector
    if not os.path.isfile(args.image):
        print(f"igc-keras detect: image {args.image!r} does not exist",
              file=sys.stderr)
        return 2
    try:
        detector = load_detector(args.model)
        image = tf.io.decode_image(tf.io.read_file(args.image), channels=3,
                                   expand_animations=False).numpy()
    except (ValueError, OSError, tf.errors.OpError) as error:
        print(f"igc-keras detect: {error}", file=sys.stderr)
        return 2
    detections = detector.detect(image)
    names = detector.class_names
    shown = 0
    for box, score, label in zip(detections["boxes"], detections["scores"],
                                 detections["classes"]):
        if score < args.min_score:
            continue
        shown += 1
        name = names[int(label)] if names else str(int(label))
        print(f"{name:16s} {score:.3f}  box (ymin, xmin, ymax, xmax) = "
              f"{', '.join(f'{v:.0f}' for v in box)}")
    output = args.output or os.path.splitext(args.image)[0] + "_boxes.png"
    keras.utils.save_img(output, np.asarray(draw_detections(
        image, detections, names, args.min_score)))
    print(f"{shown} detections >= {args.min_score} drawn -> {output}")
    return 0


def export_command(args):
    import json

    import keras

    from igc_keras.data.classification import read_images
    from igc_keras.optimize.tflite_export import export_tflite
    from igc_keras.optimize.tflite_interpreter import compare_tflite
    quantization = "int8" if args.int8 else args.quantization
    try:
        from igc_keras.detection import SSDLite  # registered for loading
        model = keras.saving.load_model(args.model)
        detector = isinstance(model, SSDLite)
        size = ((model.image_size, model.image_size) if detector else
                tuple(model.inputs[0].shape[1:3]))
        calibration = check = None
        if args.calibration:
            calibration = read_images(args.calibration, size, 100,
                                      key="--calibration")
        if args.check:
            check = read_images(args.check, size, args.check_images,
                                key="--check")
        output = args.output or os.path.splitext(args.model)[0] + (
            f"_{quantization}.tflite")
        if detector:  # post-processing on the device
            from igc_keras.optimize.detector_tflite import export_detector_tflite
            info = export_detector_tflite(model, output, quantization,
                                          calibration)
            if check is not None:
                print("igc-keras export: --check compares classifiers; score "
                      "a detector with igc-keras evaluate", file=sys.stderr)
                check = None
        else:
            info = export_tflite(model, output, quantization, calibration,
                                 int8_io=args.int8_io, fuse=not args.no_fuse,
                                 per_channel=not args.per_tensor)
    except (ValueError, OSError) as error:
        print(f"igc-keras export: {error}", file=sys.stderr)
        return 2
    if check is not None:
        info["check"] = compare_tflite(model, output, check)
    print(json.dumps(info, indent=2))
    return 0


def bench_command(args):
    import json
    import tempfile

    import keras
    import numpy as np

    from igc_keras.applications.imagenet_utils import \
        classifier_with_preprocessing
    from igc_keras.optimize.tflite_export import export_tflite
    from igc_keras.optimize.tflite_interpreter import (describe_tflite,
                                                       tflite_latency)
    if not os.path.isfile(args.model):
        print(f"igc-keras bench: {args.model!r} does not exist",
              file=sys.stderr)
        return 2
    described = describe_tflite(args.model)
    shape = described["input_shape"][1:]
    row = {"model": args.model, **described,
           "latency_ms": tflite_latency(args.model, args.runs,
                                        threads=args.threads)}
    if args.baseline == "mobilenet_v2":
        # keras.applications MobileNetV2-1.0 at the same size and
        # quantization (random weights and calibration: latency only)
        baseline = keras.applications.MobileNetV2(
            input_shape=tuple(shape), weights=None)
        wrapped = classifier_with_preprocessing(baseline, "mobilenet_v2_1.0")
        calibration = np.random.default_rng(0).uniform(
            0, 255, [32] + shape).astype("float32")
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "mobilenet_v2.tflite")
            export_tflite(wrapped, path, described["quantization"],
                          calibration)
            base = tflite_latency(path, args.runs, threads=args.threads)
        row["mobilenet_v2_latency_ms"] = base
        row["ratio_to_mobilenet_v2"] = row["latency_ms"] / base
    print(json.dumps(row, indent=2))
    return 0


def finetune_arguments(parser):
    """Adds ``igc-keras finetune``'s options to an ``argparse`` parser."""
    add = parser.add_argument
    add("--data", required=True, metavar="DIR",
        help="training images, one subfolder per class")
    add("--model", required=True, metavar="NAME",
        help="registry name (igc-keras models --names-only)")
    add("--weights", default=None, metavar="imagenet|PATH",
        help="backbone weights: 'imagenet' or a weights file saved with "
             "include_top=False, pooling='avg' (default: random "
             "initialisation)")
    add("--val-data", default=None, metavar="DIR",
        help="validation images with the same class subfolders (default: a "
             "split of --data)")
    add("--validation-split", type=float, default=0.2, metavar="F",
        help="fraction of --data held out for validation without --val-data "
             "(default 0.2)")
    add("--epochs", type=int, default=10, metavar="N",
        help="phase-2 epochs: whole backbone fine-tuned (default 10)")
    add("--head-epochs", type=int, default=5, metavar="N",
        help="phase-1 epochs: backbone frozen, new head trained (default 5)")
    add("--batch-size", type=int, default=32, metavar="N", help="default 32")
    add("--image-size", type=int, default=None, metavar="S",
        help="square input size (default: the network's)")
    add("--lr", type=float, default=1e-4,
        help="phase-2 learning rate (default 1e-4)")
    add("--head-lr", type=float, default=1e-3,
        help="phase-1 learning rate (default 1e-3)")
    add("--dropout", type=float, default=0.2,
        help="dropout before the classifier (default 0.2)")
    add("--no-augment", action="store_true",
        help="no random flip / translation / zoom")
    add("--seed", type=int, default=0, help="default 0")
    add("--output", default=None, metavar="DIR",
        help="output folder (default: finetune_<model>)")
    add("--verbose", type=int, default=1, choices=(0, 1, 2),
        help="0 quiet, else one line per epoch")
    add("--group-conv-implementation", default="auto",
        choices=("auto", "native", "split", "dense"),
        help="how group convolutions run (default auto: split without a GPU)")
    return parser


#: finetune()'s argument names -> the command line's options (messages).
FINETUNE_OPTIONS = {
    "data_dir": "--data", "validation_dir": "--val-data",
    "validation_split": "--validation-split", "epochs_head": "--head-epochs",
    "epochs_full": "--epochs", "head_lr": "--head-lr", "full_lr": "--lr",
    "batch_size": "--batch-size", "image_size": "--image-size",
    "output_dir": "--output", "dropout": "--dropout"}


def finetune_command(args):
    """Runs :func:`~igc_keras.training.finetune.finetune` from the parsed
    options and prints a short summary; a bad argument or folder is a
    one-line error naming the option (exit status 2)."""
    import re

    from igc_keras.errors import ConfigError
    from igc_keras.training.finetune import finetune
    weights = args.weights
    if weights is not None and weights.lower() == "none":
        weights = None
    output = args.output or f"finetune_{args.model}"
    try:
        result = finetune(
            args.model, args.data, weights=weights, epochs_head=args.head_epochs,
            epochs_full=args.epochs, head_lr=args.head_lr, full_lr=args.lr,
            batch_size=args.batch_size, image_size=args.image_size,
            output_dir=output, augment=not args.no_augment, seed=args.seed,
            verbose=args.verbose, validation_dir=args.val_data,
            validation_split=args.validation_split, dropout=args.dropout,
            group_conv_implementation=args.group_conv_implementation)
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        message = re.sub(r"`?\b(" + "|".join(FINETUNE_OPTIONS) + r")\b`?",
                         lambda m: FINETUNE_OPTIONS[m.group(1)], str(error))
        print(f"igc-keras finetune: error: {message}", file=sys.stderr)
        return 2
    skipped = (f"; {len(result.skipped_files)} unreadable image(s) skipped"
               if result.skipped_files else "")
    print(f"{args.model}: val_accuracy {result.val_accuracy:.4f}, val_loss "
          f"{result.val_loss:.4f} on {result.num_val} validation images "
          f"({len(result.class_names)} classes, {result.num_train} training "
          f"images{skipped})")
    print(f"best model:  {result.best_path}")
    print(f"final model: {result.final_path}")
    print(f"log: {result.log_path}  classes: {result.class_names_path}  "
          f"metrics: {result.metrics_path}")
    return 0


def _recipe_arguments(parser):
    parser.add_argument("recipe", help="experiment YAML (see recipes/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set "
                             "trainer.epochs=2 (repeatable; values are YAML)")


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
    models.add_argument("--markdown", action="store_true",
                        help="print a Markdown table (the README's model zoo)")
    models.set_defaults(func=models_command)
    convert = sub.add_parser(
        "convert", help="convert an authors' MXNet checkpoint to Keras weights")
    convert.add_argument("checkpoint", help="the authors' .params file")
    convert.add_argument("-o", "--output", help="output .weights.h5 (or .keras "
                         "for a whole model); default <model>.weights.h5")
    convert.add_argument("--model", help="registry name of the architecture "
                         "(igcv3_1.0, igcv1_l100m2, ...); a released file is "
                         "recognised by its git blob id without it")
    convert.add_argument("--verify", action="store_true",
                         help="refuse any file that is not one of the "
                              "authors' released files (by git blob id)")
    convert.set_defaults(func=convert_command)
    finetune = sub.add_parser(
        "finetune", help="fine-tune a model on a folder of class subfolders "
                         "(head first, then the whole network)")
    finetune_arguments(finetune)
    finetune.set_defaults(func=finetune_command)
    train = sub.add_parser(
        "train", help="train from a YAML recipe (any strategy; a killed run "
                      "resumes when restarted)")
    _recipe_arguments(train)
    train.set_defaults(func=train_command)
    evaluate = sub.add_parser(
        "evaluate", help="score a checkpoint on the recipe's validation data "
                         "(top-1 / top-5; detection: COCO mAP by pycocotools)")
    _recipe_arguments(evaluate)
    evaluate.add_argument("--checkpoint", required=True,
                          help=".keras, .weights.h5, or a training "
                               "checkpoint (directory or prefix)")
    evaluate.set_defaults(func=evaluate_command)
    detect = sub.add_parser(
        "detect", help="detect objects in an image with a trained SSDLite "
                       "and draw labelled boxes")
    detect.add_argument("image", help="a JPEG / PNG / BMP / GIF photo")
    detect.add_argument("--model", required=True,
                        help="the detector's .keras file (the recipe "
                             "trainer's best.keras / last.keras)")
    detect.add_argument("-o", "--output", help="output PNG (default: "
                        "<image>_boxes.png)")
    detect.add_argument("--min-score", type=float, default=0.3,
                        help="draw and print detections scoring at least this")
    detect.set_defaults(func=detect_command)
    export = sub.add_parser(
        "export", help="export a .keras model to TFLite (float32, float16, "
                       "dynamic-range or full int8) and check it")
    export.add_argument("model", help="a .keras model taking RGB 0..255 (a "
                        "classifier, or an SSDLite detector: exported with "
                        "TFLite_Detection_PostProcess)")
    export.add_argument("--format", choices=("tflite",), default="tflite")
    export.add_argument("--quantization", default="float32",
                        choices=("float32", "float16", "dynamic", "int8"))
    export.add_argument("--int8", action="store_true",
                        help="full int8 (same as --quantization int8)")
    export.add_argument("--int8-io", action="store_true",
                        help="int8 input and output tensors too")
    export.add_argument("--calibration", help="folder of real images for "
                        "int8 calibration (the first 100 are used)")
    export.add_argument("--check", help="folder of real images: report top-1 "
                        "agreement and the largest output difference of the "
                        "TFLite file against the Keras model")
    export.add_argument("--check-images", type=int, default=500)
    export.add_argument("--no-fuse", action="store_true",
                        help="convert the model as built (default: its fused "
                        "inference form, igc_keras.optimize.fuse: same "
                        "outputs, permutations and BatchNorm folded)")
    export.add_argument("--per-tensor", action="store_true",
                        help="one int8 scale per weight tensor: a smaller "
                        "file (no per-channel scales and zero points); "
                        "check its agreement with --check")
    export.add_argument("-o", "--output", help="output .tflite")
    export.set_defaults(func=export_command)
    bench = sub.add_parser(
        "bench", help="latency of a .tflite file in the TFLite interpreter "
                      "(batch 1), beside MobileNetV2 at the same size and "
                      "quantization")
    bench.add_argument("model", help="a .tflite file")
    bench.add_argument("--baseline", choices=("mobilenet_v2", "none"),
                       default="mobilenet_v2")
    bench.add_argument("--runs", type=int, default=50)
    bench.add_argument("--threads", type=int, default=None)
    bench.set_defaults(func=bench_command)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as error:
        from igc_keras.errors import ConfigError, TrainingError
        if isinstance(error, ConfigError):
            print(f"igc-keras {args.command}: {error}", file=sys.stderr)
            return 2
        if isinstance(error, TrainingError):
            print(f"igc-keras {args.command}: {error}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
