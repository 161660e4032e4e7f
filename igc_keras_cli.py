"""The ``igc-keras`` command line: its options, its console and its errors.

This module stands beside the ``igc_keras`` package, not inside it, because
importing anything inside the package imports Keras and with it TensorFlow:
``igc-keras --help`` and ``igc-keras <command> --help`` answer from here
without importing either. A command runs in :mod:`igc_keras.commands`,
after TensorFlow was imported with its start-up notices kept off the console
(:func:`import_tensorflow_quietly`).

Errors: a :class:`igc_keras.errors.UserError` (a bad argument, recipe key,
file or annotation; its message names it, its value and what is allowed) is
printed as ``igc-keras <command>: error: <message>`` with exit status 2; a
stopped training run (``TrainingError``) exits with 1. ``--debug`` or
``IGC_KERAS_DEBUG=1`` shows the traceback instead. Anything else is a bug
and keeps its traceback.
"""

import argparse
import os
import re
import sys
import tempfile
import warnings

#: TensorFlow's C++ start-up notices that say nothing to act on (no GPU on
#: this machine, CPU instructions, duplicate plug-in registrations). They
#: are printed before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so no
#: environment variable silences them.
HARMLESS_STARTUP_LOGS = re.compile(
    r"All log messages before absl::InitializeLog"
    r"|cudart_stub\.cc|cuda_platform\.cc.*failed call to cuInit"
    r"|cuda_diagnostics|cpu_feature_guard\.cc"
    r"|To enable the following instructions"
    r"|oneDNN custom operations are on"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning")

#: Python warnings that libraries raise on every run of these commands and
#: that ask nothing of the user: (message regex, category).
HARMLESS_WARNINGS = (
    # Keras' fit on a tf.data dataset: shuffling is the pipeline's own
    (r"`shuffle=True` was passed, but will be ignored", UserWarning),
    # Keras reloading a compiled model whose metrics are built on first use
    (r"Compiled the loaded model, but the compiled metrics", UserWarning),
    (r"Skipping variable loading for optimizer", UserWarning),
)


def debug_requested(args=None):
    """Whether tracebacks are wanted: ``--debug`` or ``IGC_KERAS_DEBUG``
    set to anything but ``""`` / ``0``."""
    if args is not None and getattr(args, "debug", False):
        return True
    return os.environ.get("IGC_KERAS_DEBUG", "") not in ("", "0")


def import_tensorflow_quietly():
    """Imports TensorFlow, Keras and ``igc_keras`` with TensorFlow's C++
    start-up notices kept off the console: the stderr file descriptor goes
    to a temporary file for the import and the first device probe, then
    every line that is not in :data:`HARMLESS_STARTUP_LOGS` is written to
    stderr. TensorFlow's later C++ logs follow ``TF_CPP_MIN_LOG_LEVEL``:
    ``2`` (errors only) unless the user set it; a user's ``0`` or ``1``
    also shows the start-up notices."""
    if "tensorflow" in sys.modules:
        return
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for message, category in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    if level in ("0", "1"):
        import igc_keras  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf
            tf.config.list_physical_devices()  # the CUDA probe logs here
            import igc_keras  # noqa: F401  (imports Keras, registers layers)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and not HARMLESS_STARTUP_LOGS.search(line):
                    print(line, file=sys.stderr)


# ------------------------------------------------------------------ options
def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1; got {value}")
    return value


def _probability(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1]; got {value}")
    return value


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


def _recipe_arguments(parser):
    parser.add_argument("recipe", help="experiment YAML (see recipes/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set "
                             "trainer.epochs=2 (repeatable; values are YAML)")


def _models_arguments(parser):
    parser.add_argument("pattern", nargs="?", default="*",
                        help="shell-style name filter, e.g. 'igcv3*'")
    parser.add_argument("--names-only", action="store_true",
                        help="list names without building the models")
    parser.add_argument("--markdown", action="store_true",
                        help="print a Markdown table (the README's model zoo)")


def _convert_arguments(parser):
    parser.add_argument("checkpoint", help="the authors' .params file")
    parser.add_argument("-o", "--output", help="output .weights.h5 (or .keras "
                        "for a whole model); default <model>.weights.h5")
    parser.add_argument("--model", help="registry name of the architecture "
                        "(igcv3_1.0, igcv1_l100m2, ...); a released file is "
                        "recognised by its git blob id without it")
    parser.add_argument("--verify", action="store_true",
                        help="refuse any file that is not one of the authors' "
                             "released files (by git blob id)")


def _evaluate_arguments(parser):
    _recipe_arguments(parser)
    parser.add_argument("--checkpoint", required=True,
                        help=".keras, .weights.h5, or a training checkpoint "
                             "(directory or prefix) of the recipe's model")


def _detect_arguments(parser):
    parser.add_argument("image", help="a JPEG / PNG / BMP / GIF photo")
    parser.add_argument("--model", required=True,
                        help="the detector's .keras file (the recipe "
                             "trainer's best.keras / last.keras)")
    parser.add_argument("-o", "--output", help="output PNG (default: "
                        "<image>_boxes.png)")
    parser.add_argument("--min-score", type=_probability, default=0.3,
                        help="draw and print detections scoring at least this")


def _export_arguments(parser):
    add = parser.add_argument
    add("model", help="a .keras model taking RGB 0..255 (a classifier, or an "
        "SSDLite detector: decoded detections out, its non-max suppression "
        "in the file)")
    add("--format", choices=("tflite", "onnx", "openvino", "saved_model"),
        default="tflite", help="tflite (default), onnx (ONNX Runtime), "
        "openvino (IR .xml + .bin) or saved_model (a folder); onnx and "
        "openvino need pip install 'igc_keras[deploy]'")
    add("--quantization", default="float32",
        choices=("float32", "float16", "dynamic", "int8"),
        help="tflite: all four; onnx, openvino: float32 or int8; "
        "saved_model: float32")
    add("--int8", action="store_true",
        help="full int8 (same as --quantization int8)")
    add("--int8-io", action="store_true", help="int8 input and output "
        "tensors too (tflite)")
    add("--calibration", help="folder of real images for int8 calibration "
        "(the first 100 are used)")
    add("--check", help="folder of real images: the file runs in its runtime "
        "beside the Keras model (top-1 agreement and largest output "
        "difference; a detector: matched detections). Without it the check "
        "runs on 4 random images")
    add("--check-images", type=_positive_int, default=500)
    add("--group-convolutions", choices=("native", "split", "dense"),
        help="the group convolutions' form in the file (default: the one "
        "the runtime runs fastest, measured: igc_keras.optimize.runtimes)")
    add("--no-fuse", action="store_true", help="convert the model as built "
        "(default: its fused inference form, igc_keras.optimize.fuse: same "
        "outputs, permutations and BatchNorm folded)")
    add("--per-tensor", action="store_true", help="one int8 scale per weight "
        "tensor: a smaller file (no per-channel scales and zero points); "
        "check its agreement with --check")
    add("-o", "--output", help="output file (.tflite, .onnx, .xml) or "
        "SavedModel folder; default beside the model")


def _bench_arguments(parser):
    parser.add_argument("model", help="a .tflite, .onnx or OpenVINO .xml file")
    parser.add_argument("--baseline", choices=("mobilenet_v2", "none"),
                        default="mobilenet_v2", help="also time "
                        "keras.applications MobileNetV2-1.0 exported the same "
                        "way (format, size, quantization)")
    parser.add_argument("--batch-size", type=_positive_int, default=1)
    parser.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                        help="OpenVINO's inference precision")
    parser.add_argument("--runs", type=_positive_int, default=50)
    parser.add_argument("--threads", type=_positive_int, default=None)


#: command -> (help, function adding its options).
COMMANDS = {
    "models": ("print the model zoo: params and mult-adds, measured beside "
               "the papers' figures", _models_arguments),
    "convert": ("convert an authors' MXNet checkpoint to Keras weights",
                _convert_arguments),
    "finetune": ("fine-tune a model on a folder of class subfolders (head "
                 "first, then the whole network)", finetune_arguments),
    "train": ("train from a YAML recipe (any strategy; a killed run resumes "
              "when restarted)", _recipe_arguments),
    "evaluate": ("score a checkpoint on the recipe's validation data (top-1 "
                 "/ top-5; detection: COCO mAP by pycocotools)",
                 _evaluate_arguments),
    "detect": ("detect objects in an image with a trained SSDLite and draw "
               "labelled boxes", _detect_arguments),
    "export": ("export a .keras model to TFLite, ONNX, OpenVINO or a "
               "SavedModel (float32; int8 for TFLite and ONNX) and check it "
               "in that runtime", _export_arguments),
    "bench": ("latency of a .tflite / .onnx / OpenVINO .xml file in its "
              "runtime, beside MobileNetV2 exported the same way",
              _bench_arguments),
}


def build_parser():
    """The ``igc-keras`` argument parser (imports nothing heavy)."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true",
                       default=argparse.SUPPRESS,
                       help="show the traceback of an error (also: "
                            "IGC_KERAS_DEBUG=1)")
    parser = argparse.ArgumentParser(
        prog="igc-keras", parents=[debug],
        description="Interleaved Group Convolution networks for Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, add_arguments) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=text, description=text,
                                     parents=[debug]))
    return parser


def main(argv=None):
    """Runs one ``igc-keras`` command; returns its exit status."""
    args = build_parser().parse_args(argv)
    debug = debug_requested(args)
    try:
        import_tensorflow_quietly()
        from igc_keras.commands import run
        return run(args)
    except Exception as error:
        from igc_keras.errors import TrainingError, UserError
        if debug:
            raise
        message = str(error).strip() or type(error).__name__
        if isinstance(error, UserError):
            print(f"igc-keras {args.command}: error: {message}",
                  file=sys.stderr)
            return 2
        if isinstance(error, TrainingError):
            print(f"igc-keras {args.command}: {message}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
