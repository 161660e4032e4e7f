"""COCO annotations in, COCO results out, scored by ``pycocotools``.

The one place that maps COCO category ids (1..90 with gaps) to contiguous
labels 0..79 and back (:class:`CategoryMap`). Annotations are read once into
per-image records with normalised ``(ymin, xmin, ymax, xmax)`` boxes:

* boxes partly outside the image are clipped to it (counted); boxes with a
  NaN or infinite coordinate (non-finite) and boxes with no area left
  (empty) are dropped and counted;
* ``iscrowd`` annotations are kept apart (not training targets; COCOeval
  treats them as ignore regions) and counted;
* a malformed record is a :class:`~igc_keras.errors.DataError` naming the
  file, the record's id, the value and what is allowed: an image without
  ``file_name`` / ``width`` / ``height``, a category without ``name``, an
  annotation without a ``[x, y, width, height]`` ``bbox`` of numbers, or
  whose ``category_id`` / ``image_id`` the file does not list;
* images without annotations are kept (all-background images).

:meth:`CocoAnnotations.counts` gives what was kept, clipped and dropped for
a selection of images (:class:`BoxCounts`, one line with ``summary()``).
"""

import collections
import dataclasses
import functools
import json
import math
import os
from typing import List

import numpy as np

from igc_keras.errors import DataError


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
    clipped: int = 0  # of the kept boxes, those clipped to the image
    non_finite: int = 0  # dropped: a NaN / infinite coordinate
    empty: int = 0  # dropped: no area inside the image


@dataclasses.dataclass(frozen=True)
class BoxCounts:
    """What the reader did with the boxes of some images of ``path``."""

    path: str
    images: int
    kept: int
    clipped: int
    crowd: int
    non_finite: int
    empty: int

    def summary(self):
        """One line: ``coco: <file>: N images, K boxes kept (C clipped),
        dropped: ... crowd, ... non-finite, ... empty``."""
        return (f"coco: {os.path.basename(self.path)}: {self.images} images, "
                f"{self.kept} boxes kept ({self.clipped} clipped), dropped: "
                f"{self.crowd} crowd, {self.non_finite} non-finite, "
                f"{self.empty} empty")


@dataclasses.dataclass
class CocoAnnotations:
    path: str
    images: List[ImageRecord]
    categories: CategoryMap

    def select(self, image_ids=None):
        """The records of ``image_ids`` in file order (None: all)."""
        if image_ids is None:
            return list(self.images)
        wanted = set(image_ids)
        return [r for r in self.images if r.image_id in wanted]

    def counts(self, image_ids=None):
        """:class:`BoxCounts` of the images ``image_ids`` (None: all)."""
        records = self.select(image_ids)
        return BoxCounts(
            self.path, len(records), sum(len(r.boxes) for r in records),
            sum(r.clipped for r in records),
            sum(len(r.crowd_boxes) for r in records),
            sum(r.non_finite for r in records), sum(r.empty for r in records))


def load_coco_annotations(path):
    """Reads ``instances_*.json`` into :class:`CocoAnnotations` (see module).

    The file is parsed once per process while it is unchanged (same path,
    size and modification time): a training run's task, pipelines and COCO
    scoring share one parse. Treat the result as read-only.
    """
    if not os.path.isfile(path):
        raise DataError(f"annotation file {path!r} does not exist.")
    stat = os.stat(path)
    return _parse_coco_annotations(os.path.realpath(path), stat.st_size,
                                   stat.st_mtime_ns, path)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _field(path, where, record, key, allowed, valid):
    """``record[key]``, or a DataError naming ``where`` when it is missing
    or ``valid(value)`` is false."""
    if not isinstance(record, dict) or key not in record:
        raise DataError(f"{path}: {where}: {key!r} is missing; expected "
                        f"{allowed}.")
    value = record[key]
    if not valid(value):
        raise DataError(f"{path}: {where}: {key!r} is {value!r}; expected "
                        f"{allowed}.")
    return value


def _where(kind, record, index):
    if isinstance(record, dict) and "id" in record:
        return f"{kind} id {record['id']}"
    return f"{kind} #{index} (no 'id')"


def _check_categories(path, categories):
    for index, category in enumerate(categories):
        where = _where("category", category, index)
        _field(path, where, category, "id", "an integer id",
               lambda v: isinstance(v, int) and not isinstance(v, bool))
        _field(path, where, category, "name", "the category's name (a string)",
               lambda v: isinstance(v, str))
    return CategoryMap(categories)


def _image_size(path, image, index):
    where = _where("image", image, index)
    _field(path, where, image, "id", "the image's id (an integer)",
           lambda v: isinstance(v, (int, str)))
    _field(path, where, image, "file_name", "the image's file name (a string)",
           lambda v: isinstance(v, str) and bool(v))
    return tuple(float(_field(
        path, where, image, key, "a positive number of pixels",
        lambda v: _is_number(v) and math.isfinite(v) and v > 0))
        for key in ("height", "width"))


def _annotation_box(path, annotation, index, image_ids, categories):
    """``(image id, category id, [x, y, w, h] floats)`` of a checked
    annotation."""
    where = _where("annotation", annotation, index)
    image_id = _field(path, where, annotation, "image_id",
                      "the id of an image in the file's 'images'",
                      lambda v: isinstance(v, (int, str)) and v in image_ids)
    where = f"{where} (image {image_id})"
    cid = _field(path, where, annotation, "category_id",
                 f"one of the file's category ids {categories.category_ids}",
                 lambda v: v in categories.category_ids)
    box = _field(path, where, annotation, "bbox",
                 "[x, y, width, height] numbers",
                 lambda v: isinstance(v, (list, tuple)) and len(v) == 4 and
                 all(_is_number(x) for x in v))
    return image_id, cid, [float(v) for v in box]


@functools.lru_cache(maxsize=8)
def _parse_coco_annotations(real_path, size, mtime_ns, path):
    del real_path, size, mtime_ns  # the cache key
    with open(path) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise DataError(f"annotation file {path!r} is not valid JSON: "
                            f"{error}") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise DataError(f"annotation file {path!r} has no {key!r} list; "
                            f"is it a COCO instances file?")
    categories = _check_categories(path, data["categories"])
    sizes = [_image_size(path, image, index)
             for index, image in enumerate(data["images"])]
    image_ids = {image["id"] for image in data["images"]}
    by_image = collections.defaultdict(list)
    for index, annotation in enumerate(data["annotations"]):
        image_id, cid, box = _annotation_box(path, annotation, index,
                                             image_ids, categories)
        by_image[image_id].append((cid, box, annotation.get("iscrowd", 0)))
    images = []
    for image, (height, width) in zip(data["images"], sizes):
        boxes, labels, crowd_boxes = [], [], []
        clipped = non_finite = empty = 0
        for cid, (x, y, w, h), crowd in by_image.get(image["id"], []):
            unclipped = np.array([y / height, x / width, (y + h) / height,
                                  (x + w) / width])
            if not np.isfinite(unclipped).all():
                non_finite += 1
                continue
            box = np.clip(unclipped, 0.0, 1.0)
            if box[2] <= box[0] or box[3] <= box[1]:
                empty += 1
                continue
            if crowd:
                crowd_boxes.append(box)
                continue
            clipped += int(not np.array_equal(box, unclipped))
            boxes.append(box)
            labels.append(categories.label(cid))
        images.append(ImageRecord(
            image["id"], image["file_name"], int(height), int(width),
            np.array(boxes, "float32").reshape(-1, 4),
            np.array(labels, "int32"),
            np.array(crowd_boxes, "float32").reshape(-1, 4),
            clipped, non_finite, empty))
    return CocoAnnotations(path, images, categories)


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
