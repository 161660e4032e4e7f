"""COCO annotations in, COCO results out, scored by ``pycocotools``.

The one place that maps COCO category ids (1..90 with gaps) to contiguous
labels 0..79 and back (:class:`CategoryMap`). Annotations are read once into
per-image records with normalised ``(ymin, xmin, ymax, xmax)`` boxes:

* boxes partly outside the image are clipped to it; boxes with no area left
  (degenerate) are dropped and counted;
* ``iscrowd`` annotations are kept apart (not training targets; COCOeval
  treats them as ignore regions);
* an annotation whose category is not in the file's ``categories`` is an
  error naming the annotation and the id;
* images without annotations are kept (all-background images).
"""

import collections
import dataclasses
import functools
import json
import os
from typing import List

import numpy as np


class CategoryMap:
    """COCO category id <-> contiguous label (sorted by id)."""

    def __init__(self, categories):
        ordered = sorted(categories, key=lambda c: c["id"])
        self.category_ids = [c["id"] for c in ordered]
        self.names = [c["name"] for c in ordered]
        self._label = {cid: i for i, cid in enumerate(self.category_ids)}

    def __len__(self):
        return len(self.category_ids)

    def label(self, category_id):
        return self._label[category_id]

    def category_id(self, label):
        return self.category_ids[int(label)]


@dataclasses.dataclass
class ImageRecord:
    image_id: int
    file_name: str
    height: int
    width: int
    boxes: np.ndarray  # (N, 4) normalised yxyx
    labels: np.ndarray  # (N,) contiguous
    crowd_boxes: np.ndarray  # (M, 4)


@dataclasses.dataclass
class CocoAnnotations:
    path: str
    images: List[ImageRecord]
    categories: CategoryMap
    dropped_degenerate: int
    crowd: int


def load_coco_annotations(path):
    """Reads ``instances_*.json`` into :class:`CocoAnnotations` (see module).

    The file is parsed once per process while it is unchanged (same path,
    size and modification time): a training run's task, pipelines and COCO
    scoring share one parse. Treat the result as read-only.
    """
    if not os.path.isfile(path):
        raise ValueError(f"annotation file {path!r} does not exist.")
    stat = os.stat(path)
    return _parse_coco_annotations(os.path.realpath(path), stat.st_size,
                                   stat.st_mtime_ns, path)


@functools.lru_cache(maxsize=8)
def _parse_coco_annotations(real_path, size, mtime_ns, path):
    del real_path, size, mtime_ns  # the cache key
    with open(path) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"annotation file {path!r} is not valid JSON: "
                             f"{error}") from error
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"annotation file {path!r} has no {key!r} list; "
                             f"is it a COCO instances file?")
    categories = CategoryMap(data["categories"])
    by_image = collections.defaultdict(list)
    for annotation in data["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    images, dropped, crowd = [], 0, 0
    for image in data["images"]:
        height, width = float(image["height"]), float(image["width"])
        boxes, labels, crowd_boxes = [], [], []
        for annotation in by_image.get(image["id"], []):
            cid = annotation["category_id"]
            if cid not in categories.category_ids:
                raise ValueError(
                    f"{path}: annotation {annotation.get('id')} of image "
                    f"{image['id']} has category_id={cid}, which is not in the "
                    f"file's categories {categories.category_ids}.")
            x, y, w, h = (float(v) for v in annotation["bbox"])
            box = np.clip([y / height, x / width, (y + h) / height,
                           (x + w) / width], 0.0, 1.0)
            if box[2] <= box[0] or box[3] <= box[1]:
                dropped += 1
                continue
            if annotation.get("iscrowd", 0):
                crowd += 1
                crowd_boxes.append(box)
                continue
            boxes.append(box)
            labels.append(categories.label(cid))
        images.append(ImageRecord(
            image["id"], image["file_name"], int(height), int(width),
            np.array(boxes, "float32").reshape(-1, 4),
            np.array(labels, "int32"),
            np.array(crowd_boxes, "float32").reshape(-1, 4)))
    return CocoAnnotations(path, images, categories, dropped, crowd)


def to_coco_results(image_id, boxes, scores, labels, height, width,
                    categories):
    """One image's detections as COCO result dicts (absolute ``xywh``).

    Args:
        boxes: ``(N, 4)`` normalised ``yxyx``; scores ``(N,)``; labels ``(N,)``
            contiguous.
    """
    results = []
    for box, score, label in zip(np.asarray(boxes), np.asarray(scores),
                                 np.asarray(labels)):
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        results.append({
            "image_id": int(image_id),
            "category_id": categories.category_id(label),
            "bbox": [xmin * width, ymin * height, (xmax - xmin) * width,
                     (ymax - ymin) * height],
            "score": float(score)})
    return results


STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def evaluate_coco(annotation_path, results, image_ids=None):
    """COCO box AP of ``results`` (pycocotools ``COCOeval``).

    Args:
        results: list of COCO result dicts.
        image_ids: the evaluated images (default: those in ``results``); the
            ground truth of other images is not counted.

    Returns:
        dict ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground_truth = COCO(annotation_path)
    if not results:
        return {name: 0.0 for name in STAT_NAMES}
    detections = ground_truth.loadRes(results)
    evaluator = COCOeval(ground_truth, detections, "bbox")
    evaluator.params.imgIds = sorted(set(
        image_ids if image_ids is not None else
        (r["image_id"] for r in results)))
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return dict(zip(STAT_NAMES, (float(v) for v in evaluator.stats)))
