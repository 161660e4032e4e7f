"""Train KerasHub's RetinaNet on an IGCV3 backbone on a COCO-format folder
and score it with pycocotools (COCOeval).

    python applications/train_retinanet.py --images coco/train2017 \\
        --annotations coco/annotations/instances_train2017.json \\
        --val-images coco/val2017 \\
        --val-annotations coco/annotations/instances_val2017.json \\
        --preset igcv3_1.0_imagenet --image-size 384 --epochs 12 \\
        --output runs/retinanet

The second detector family beside SSDLite (``train_detector.py``):
``igc_keras.hub.retinanet`` builds ``RetinaNetObjectDetector`` on an
``IGCV3Backbone`` (``--preset``: the authors' ImageNet weights; default a
new backbone of width ``--alpha``), and Keras' ``fit`` trains it. A run
killed at any point resumes from ``--output/backup`` (Keras'
``BackupAndRestore``, every epoch) when started again with the same
flags; a NaN loss stops it. Outputs in ``--output``: ``preset/`` (a
KerasHub preset: ``keras_hub.models.ObjectDetector.from_preset`` after
``from igc_keras import hub``), ``log.csv``, ``result.json`` (the losses
and COCO AP). Without ``--val-*`` the training images themselves are
scored. TensorFlow backend.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:
    import igc_keras  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))))

from igc_keras.errors import UserError  # noqa: E402


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--val-images")
    parser.add_argument("--val-annotations")
    parser.add_argument("--preset", help="a named preset or preset folder "
                        "for the backbone (e.g. igcv3_1.0_imagenet)")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps-per-epoch", type=int,
                        help="default: one pass over the images")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/retinanet")
    return parser.parse_args(argv)


def run(args):
    import keras

    from igc_keras import hub
    from igc_keras.detection.coco import load_coco_annotations
    from igc_keras.hub import retinanet
    from igc_keras.model_files import check_output_folder
    for flag in ("images", "val_images"):
        folder = getattr(args, flag)
        if folder is not None and not os.path.isdir(folder):
            raise UserError(f"--{flag.replace('_', '-')} {folder!r} is not a "
                            f"folder.")
    for flag, value in (("--batch", args.batch), ("--epochs", args.epochs)):
        if value < 1:
            raise UserError(f"{flag} must be a positive integer; got {value}.")
    os.makedirs(args.output, exist_ok=True)
    check_output_folder(os.path.join(args.output, "result.json"), "--output")
    coco = load_coco_annotations(args.annotations)
    keras.utils.set_random_seed(args.seed)
    shape = (args.image_size, args.image_size, 3)
    backbone = (hub.IGCV3Backbone.from_preset(args.preset, image_shape=shape)
                if args.preset else
                hub.IGCV3Backbone(alpha=args.alpha, image_shape=shape))
    detector = retinanet.igcv3_retinanet(len(coco.categories),
                                         args.image_size, backbone=backbone)
    detector.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    steps = args.steps_per_epoch or max(1, len(coco.images) // args.batch)
    data = retinanet.coco_dataset(args.images, args.annotations,
                                  args.image_size, args.batch, seed=args.seed)
    history = detector.fit(data, epochs=args.epochs, steps_per_epoch=steps,
                           verbose=2, callbacks=[
        keras.callbacks.BackupAndRestore(os.path.join(args.output, "backup")),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(os.path.join(args.output, "log.csv"),
                                  append=True)])
    losses = history.history.get("loss", [])
    if losses and losses[-1] != losses[-1]:  # NaN
        print("train_retinanet: the loss became NaN; stopped.",
              file=sys.stderr)
        return 1
    detector.save_to_preset(os.path.join(args.output, "preset"))
    scores = retinanet.evaluate(detector, args.val_images or args.images,
                                args.val_annotations or args.annotations)
    with open(os.path.join(args.output, "result.json"), "w") as file:
        json.dump({"loss": losses, "coco_eval": scores}, file, indent=2)
    print(json.dumps({"loss": losses[-1:], "AP": scores["AP"],
                      "AP50": scores["AP50"]}))
    return 0


def main(argv=None):
    args = parse(argv)
    try:
        return run(args)
    except UserError as error:
        if os.environ.get("IGC_KERAS_DEBUG"):
            raise
        print(f"train_retinanet: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
