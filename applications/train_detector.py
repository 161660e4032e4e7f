"""Train an SSDLite detector on a COCO-format folder and score it with COCOeval.

    python applications/train_detector.py --images coco/train2017 \\
        --annotations coco/annotations/instances_train2017.json \\
        --val-images coco/val2017 --val-annotations coco/annotations/instances_val2017.json \\
        --backbone igcv3_1.0 --image-size 320 --batch 24 --epochs 10 --output runs/ssdlite

Without ``--val-*`` the training images themselves are scored (an overfitting
check; ``--max-images N --augment none`` overfits the first N). Outputs in
``--output``: ``detector.keras`` (for ``igc-keras detect``), ``history.json``,
``coco_eval.json``. On CPU the group convolutions run in their ``split`` form
(much faster gradients; same weights).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:
    import igc_keras  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))))

import keras  # noqa: E402

from igc_keras.data.detection import (  # noqa: E402
    AUGMENTATIONS, coco_detection_dataset)
from igc_keras.detection.coco import load_coco_annotations  # noqa: E402
from igc_keras.detection import SSDLite  # noqa: E402
from igc_keras.detection.evaluation import evaluate_detector  # noqa: E402
from igc_keras.layers.group_conv import (  # noqa: E402
    group_conv_implementation, resolve_group_conv_implementation)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--val-images")
    parser.add_argument("--val-annotations")
    parser.add_argument("--backbone", default="igcv3_1.0")
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
    parser.add_argument("--output", default="runs/ssdlite")
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    names = load_coco_annotations(args.annotations).categories.names
    with group_conv_implementation(resolve_group_conv_implementation()):
        detector = SSDLite(args.backbone, num_classes=len(names),
                           image_size=args.image_size,
                           backbone_weights=args.backbone_weights,
                           class_names=names)
    image_ids = None
    if args.max_images:
        image_ids = [r.image_id for r in load_coco_annotations(
            args.annotations).images[:args.max_images]]
    dataset, coco = coco_detection_dataset(
        args.images, args.annotations, detector.anchors, args.image_size,
        batch_size=args.batch, seed=args.seed, image_ids=image_ids,
        augment=args.augment)
    steps = args.steps_per_epoch or max(1, len(image_ids or coco.images)
                                        // args.batch)
    schedule = keras.optimizers.schedules.CosineDecay(
        args.lr, args.epochs * steps)
    detector.compile(optimizer=keras.optimizers.Adam(schedule))
    started = time.time()
    history = detector.fit(dataset, epochs=args.epochs, steps_per_epoch=steps,
                           verbose=2)
    minutes = (time.time() - started) / 60
    detector.save(os.path.join(args.output, "detector.keras"))
    with open(os.path.join(args.output, "history.json"), "w") as handle:
        json.dump({"loss": history.history["loss"], "minutes": minutes}, handle)
    if args.val_images:
        stats = evaluate_detector(detector, args.val_images,
                                  args.val_annotations or args.annotations)
    else:  # the training images themselves: an overfitting check
        stats = evaluate_detector(detector, args.images, args.annotations,
                                  image_ids=image_ids)
    with open(os.path.join(args.output, "coco_eval.json"), "w") as handle:
        json.dump(stats, handle, indent=2)
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
