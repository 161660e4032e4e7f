"""What each ``igc-keras`` command does (the options and the console are
in the ``igc_keras_cli`` module beside the package). A command returns its
exit status; a bad argument, recipe key, file or annotation raises a
:class:`~igc_keras.errors.UserError` whose message names it."""

import json
import os
import sys

from igc_keras.errors import ConfigError, DataError


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

    if not os.path.isfile(args.checkpoint):
        raise DataError(f"checkpoint {args.checkpoint!r} does not exist.")
    _check_writable(args.output, "-o/--output")
    blob = git_blob_sha1(args.checkpoint)
    released = pretrained.by_git_blob_sha1(blob)
    model_name = args.model
    if released is not None:
        if model_name not in (None, released.model):
            raise ConfigError(f"{args.checkpoint!r} is the authors' "
                              f"{released.model} checkpoint, not --model "
                              f"{model_name}.")
        model_name = released.model
    elif args.verify:
        raise DataError(f"{args.checkpoint!r} is not one of the authors' "
                        f"released files (git blob id {blob}; released: "
                        f"{sorted(pretrained.PRETRAINED)}).")
    elif model_name is None:
        raise ConfigError(f"{args.checkpoint!r} is not one of the authors' "
                          f"released files (git blob id {blob}); pass --model "
                          f"with the architecture it holds, e.g. one of "
                          f"{sorted(pretrained.PRETRAINED)}.")
    try:
        model = create_model(model_name, weights=args.checkpoint)
    except ValueError as error:
        if isinstance(error, ConfigError | DataError):
            raise
        raise DataError(str(error)) from error
    output = args.output or f"{model_name}.weights.h5"
    if output.endswith(".keras"):
        model.save(output)
    else:
        model.save_weights(output)
    what = "released, verified" if released else "not a released file"
    print(f"converted {args.checkpoint} ({model_name}, {what}) -> {output}")
    return 0


def _check_writable(path, option):
    """Refuses an output file whose folder is missing or not writable, or
    that is a folder, before any work is done."""
    if path is None:
        return
    from igc_keras.model_files import check_output_folder
    check_output_folder(path, option)
    if os.path.isdir(path):
        raise ConfigError(f"{option} {path!r} is a folder; give a file name.")


def _experiment(args):
    from igc_keras.training.config import load_experiment
    return load_experiment(args.recipe, args.overrides)


def _metrics(values):
    return "  ".join(f"{key} {value:.4f}" for key, value in values.items()
                     if isinstance(value, (int, float)))


def train_command(args):
    from igc_keras.training.experiment import FILES
    from igc_keras.training.trainer import train
    config = _experiment(args)
    _, result = train(config)
    model_dir = config.trainer.model_dir
    print(f"trained {config.task.model.name}: {result.get('epochs')} epoch(s)"
          f" x {result.get('steps_per_epoch')} steps ({result.get('loop')} "
          f"loop, {result.get('replicas')} replica(s))")
    print(f"final: {_metrics(result.get('final', {}))}")
    if "coco_eval" in result:
        print(f"COCO: {_metrics(result['coco_eval'])}")
    written = [name for name in FILES.values()
               if os.path.exists(os.path.join(model_dir, name))]
    print(f"in {model_dir}: {', '.join(written)} ({FILES['result']}: every "
          f"epoch's metrics)")
    return 0


def evaluate_command(args):
    from igc_keras.training.trainer import evaluate
    print(json.dumps(evaluate(_experiment(args), args.checkpoint), indent=2))
    return 0


def detect_command(args):
    import numpy as np
    import tensorflow as tf

    import keras
    from igc_keras.detection.visualize import draw_detections, load_detector
    if not os.path.isfile(args.image):
        raise DataError(f"image {args.image!r} does not exist.")
    output = args.output or os.path.splitext(args.image)[0] + "_boxes.png"
    _check_writable(output, "-o/--output")
    detector = load_detector(args.model)
    try:
        image = tf.io.decode_image(tf.io.read_file(args.image), channels=3,
                                   expand_animations=False).numpy()
    except tf.errors.OpError as error:
        raise DataError(f"image {args.image!r} is not a readable JPEG / PNG "
                        f"/ BMP / GIF ({error.message}).") from error
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
    keras.utils.save_img(output, np.asarray(draw_detections(
        image, detections, names, args.min_score)))
    print(f"{shown} detections >= {args.min_score} drawn -> {output}")
    return 0


#: export format -> the default output's ending beside the model.
_DEFAULT_OUTPUT = {"tflite": "_{quantization}.tflite", "onnx": "_{quantization}.onnx",
                   "openvino": "_openvino.xml", "saved_model": "_savedmodel"}


def export_command(args):
    from igc_keras.data.classification import read_images
    from igc_keras.optimize.deploy import check_arguments, export
    from igc_keras.optimize.serving import image_shape
    quantization = "int8" if args.int8 else args.quantization
    output = args.output or os.path.splitext(args.model)[0] + _DEFAULT_OUTPUT[
        args.format].format(quantization=quantization)
    from igc_keras.model_files import load_keras_model
    model = load_keras_model(args.model, "model")
    calibration = check = None
    size = image_shape(model)[:2]
    # every refusal (format, quantization, output, extras) before the work
    check_arguments(model, output, args.format, quantization,
                    args.calibration, args.group_convolutions)
    if args.calibration:
        calibration = read_images(args.calibration, size, 100,
                                  key="--calibration")
    if args.check:
        check = read_images(args.check, size, args.check_images, key="--check")
    info = export(model, output, args.format, quantization, calibration,
                  check, group_convolutions=args.group_convolutions,
                  fuse=not args.no_fuse, int8_io=args.int8_io,
                  per_channel=not args.per_tensor)
    print(json.dumps(info, indent=2))
    return 0


def check_model_file(path):
    """Refuses a file ``bench`` cannot run, naming it: a ``.tflite`` whose
    identifier (bytes 4..8) is not ``TFL3``, or a file that is not
    ``.tflite`` / ``.onnx`` / ``.xml``."""
    if not os.path.isfile(path):
        raise DataError(f"model {path!r} does not exist.")
    if not str(path).endswith((".tflite", ".onnx", ".xml")):
        raise DataError(f"model {path!r}: bench runs .tflite, .onnx and "
                        f"OpenVINO .xml files; write one with igc-keras "
                        f"export.")
    if str(path).endswith(".tflite"):
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head[4:8] != b"TFL3":
            raise DataError(f"model {path!r} is not a TFLite file (its bytes "
                            f"4..8 are {head[4:8]!r}, a .tflite file has "
                            f"b'TFL3'); write one with igc-keras export.")


def _latency(path, args, shape=None):
    if str(path).endswith(".tflite"):
        from igc_keras.optimize.tflite_interpreter import tflite_latency
        return tflite_latency(path, args.runs, threads=args.threads)
    from igc_keras.optimize.onnx_export import latency
    return latency(path, args.batch_size, args.runs, precision=args.precision,
                   threads=args.threads, shape=shape)


def bench_command(args):
    import tempfile

    import keras
    import numpy as np

    from igc_keras.applications.imagenet_utils import \
        classifier_with_preprocessing
    from igc_keras.optimize.deploy import export
    from igc_keras.optimize.onnx_export import describe
    check_model_file(args.model)
    if args.model.endswith(".tflite"):
        from igc_keras.optimize.tflite_interpreter import describe_tflite
        described = describe_tflite(args.model)
        described["format"] = "tflite"
        if args.batch_size != 1:
            raise ConfigError(f"--batch-size {args.batch_size}: TFLite files "
                              f"are timed at batch 1.")
    else:
        described = describe(args.model)
    shape = tuple(described["input_shape"][1:])
    row = {"model": args.model, **described, "batch_size": args.batch_size,
           "latency_ms": _latency(args.model, args, shape)}
    if described["format"] == "openvino":
        row["precision"] = args.precision
    if args.baseline == "mobilenet_v2":
        # keras.applications MobileNetV2-1.0 at the same size, exported the
        # same way (random weights and calibration: latency only)
        baseline = classifier_with_preprocessing(keras.applications.MobileNetV2(
            input_shape=shape, weights=None), "mobilenet_v2_1.0")
        calibration = np.random.default_rng(0).uniform(
            0, 255, (32,) + shape).astype("float32")
        suffix = {"tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "mobilenet_v2" + suffix[
                described["format"]])
            export(baseline, path, described["format"],
                   described["quantization"], calibration)
            base = _latency(path, args, shape)
        row["mobilenet_v2_latency_ms"] = base
        row["ratio_to_mobilenet_v2"] = row["latency_ms"] / base
    print(json.dumps(row, indent=2))
    return 0


#: finetune()'s argument names -> the command line's options (messages).
FINETUNE_OPTIONS = {
    "data_dir": "--data", "validation_dir": "--val-data",
    "validation_split": "--validation-split", "epochs_head": "--head-epochs",
    "epochs_full": "--epochs", "head_lr": "--head-lr", "full_lr": "--lr",
    "batch_size": "--batch-size", "image_size": "--image-size",
    "output_dir": "--output", "dropout": "--dropout"}


def finetune_command(args):
    """Runs :func:`~igc_keras.training.finetune.finetune` from the parsed
    options and prints a short summary; an argument's error names the
    option."""
    import re

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
        raise ConfigError(message) from error
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


COMMANDS = {"models": models_command, "convert": convert_command,
            "finetune": finetune_command, "train": train_command,
            "evaluate": evaluate_command, "detect": detect_command,
            "export": export_command, "bench": bench_command}


def run(args):
    """Runs the parsed command ``args.command``; returns its exit status."""
    return COMMANDS[args.command](args)
