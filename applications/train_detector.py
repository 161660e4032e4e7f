"""Train an SSDLite detector on a COCO-format folder and score it with COCOeval.

    python applications/train_detector.py --images coco/train2017 \\
        --annotations coco/annotations/instances_train2017.json \\
        --val-images coco/val2017 --val-annotations coco/annotations/instances_val2017.json \\
        --backbone igcv3_1.0 --image-size 320 --batch 24 --epochs 10 --output runs/ssdlite

A front-end on the recipe trainer: the flags become ``--set`` overrides of
``recipes/coco_ssdlite_igcv3_gpu.yaml`` (one device or the machine's GPUs,
float32, Adam with a cosine rate, no weight decay) and the run is
``igc-keras train`` — the same loop, checkpoints, resume and COCO scoring.
Without ``--val-*`` the training images themselves are scored (an
overfitting check; ``--max-images N --augment none`` overfits the first
N). Outputs in
``--output``: ``last.keras`` / ``best.keras`` (for ``igc-keras detect``),
``log.csv``, ``result.json`` (COCO AP under ``coco_eval``), ``export/``
(a SavedModel returning decoded detections).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:
    import igc_keras  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))))

from igc_keras_cli import main as cli_main  # noqa: E402
from igc_keras.data.detection import AUGMENTATIONS  # noqa: E402
from igc_keras.detection.ssdlite import DEFAULT_BACKBONE  # noqa: E402

RECIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                      "recipes", "coco_ssdlite_igcv3_gpu.yaml")


def overrides(args):
    """The recipe keys the flags set, as ``key=value`` strings."""
    from igc_keras.detection.coco import load_coco_annotations
    try:
        classes = len(load_coco_annotations(args.annotations).categories.names)
    except (OSError, ValueError) as error:
        raise ValueError(f"--annotations {args.annotations!r}: "
                         f"{error}") from None
    val_images = args.val_images or args.images
    val_annotations = args.val_annotations or args.annotations
    values = {
        "runtime.distribution_strategy": "auto", "runtime.num_gpus": 0,
        "runtime.mixed_precision_dtype": "float32",
        "runtime.steps_per_execution": 1, "runtime.seed": args.seed,
        "task.model.name": args.backbone, "task.model.num_classes": classes,
        "task.model.input_size": f"[{args.image_size}, {args.image_size}, 3]",
        "task.model.weights": args.backbone_weights or "null",
        "task.model.group_conv_implementation":
            args.group_conv_implementation,
        "task.train_data.data_dir": args.images,
        "task.train_data.annotation_file": args.annotations,
        "task.train_data.global_batch_size": args.batch,
        "task.train_data.augmentation": args.augment,
        "task.validation_data.data_dir": val_images,
        "task.validation_data.annotation_file": val_annotations,
        "task.validation_data.global_batch_size": args.batch,
        "task.losses.weight_decay": 0.0,
        "trainer.optimizer.type": "adam",
        "trainer.learning_rate.type": "cosine",
        "trainer.learning_rate.initial_learning_rate": args.lr,
        "trainer.learning_rate.base_batch_size": args.batch,
        "trainer.warmup.epochs": 0, "trainer.epochs": args.epochs,
        "trainer.steps_per_epoch": args.steps_per_epoch or "null",
        "trainer.model_dir": args.output}
    if args.max_images:
        values["task.train_data.max_images"] = args.max_images
        if not args.val_images:  # the same images are scored
            values["task.validation_data.max_images"] = args.max_images
    return [f"{key}={value}" for key, value in values.items()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--val-images")
    parser.add_argument("--val-annotations")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", default="ssd", choices=AUGMENTATIONS)
    parser.add_argument("--max-images", type=int, default=None,
                        help="train on the first N annotated images only")
    parser.add_argument("--group-conv-implementation", default="auto",
                        choices=("auto", "native", "split", "dense"))
    parser.add_argument("--output", default="runs/ssdlite")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        items = overrides(args)
    except ValueError as error:
        print(f"train_detector.py: error: {error}", file=sys.stderr)
        return 2
    return cli_main(["train", RECIPE] + [
        arg for item in items for arg in ("--set", item)])


if __name__ == "__main__":
    sys.exit(main())
