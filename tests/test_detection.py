"""SSDLite networks against the published parameter counts."""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import DATA, SHARED
from igc_keras.design import count_params
from igc_keras.errors import DataError
from igc_keras.detection import ssdlite_network
from igc_keras.detection.anchors import generate_anchors
from igc_keras.detection.box_coding import (encode_targets, match_anchors,
                                            postprocess)
from igc_keras.detection.losses import ssd_loss
from igc_keras.detection.coco import (evaluate_coco, load_coco_annotations,
                                      to_coco_results)


def _spec_millions(pattern):
    text = open(os.path.join(SHARED, "specs", "architectures.md")).read()
    return float(re.search(pattern, text, re.S).group(1))


@pytest.mark.parametrize("backbone,head,pattern", [
    ("mobilenet_v2_1.0", "tf_od_api",
     r"MobileNetV2 with 81 outputs at 320x320 gives\s+([\d.]+)M params"),
    ("igcv3_1.0", "igcv3_authors", r"81 class outputs: ([\d.]+)M params"),
])
def test_ssdlite_parameter_counts_match_the_published_figures(backbone, head,
                                                              pattern):
    """Trainable weights (BN gamma/beta, no moving statistics), 80 classes +
    background, 320x320: MobileNetV2 4.337M (the paper's 4.3M), IGCV3 4.002M
    (the seeds' 4.0M)."""
    model = ssdlite_network(backbone, num_classes=80, image_size=320,
                            head=head)
    expected = _spec_millions(pattern)
    # the spec quotes millions to 3 decimals, truncated
    assert count_params(model) // 1000 / 1000 == expected
    anchors = {"tf_od_api": [3, 6, 6, 6, 6, 6],
               "igcv3_authors": [4, 6, 6, 6, 4, 4]}[head]
    grids = [20, 10, 5, 3, 2, 1]  # strides 16..512 at 320 px
    total = sum(g * g * a for g, a in zip(grids, anchors))
    assert model.output["boxes"].shape[1:] == (total, 4)
    assert model.output["classes"].shape[1:] == (total, 81)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match=r"`backbone` must be one of .*"
                                         r"backbone='resnet'"):
        ssdlite_network("resnet")
    with pytest.raises(ValueError, match=r"image_size=300"):
        ssdlite_network(image_size=300)
    with pytest.raises(ValueError, match=r"`head` must be one of"):
        ssdlite_network(head="yolo")
    with pytest.raises(ValueError, match=r"num_classes=0"):
        ssdlite_network(num_classes=0)


# ------------------------------------------------------------------ anchors
COCO = os.path.join(DATA, "coco_mini", "annotations")


@pytest.mark.parametrize("design", ["tf_od_api", "igcv3_authors"])
def test_anchor_counts_match_the_heads(design):
    model = ssdlite_network("igcv3_1.0", num_classes=2, image_size=320,
                            head=design)
    anchors = generate_anchors(design, 320)
    assert anchors.shape == (model.output["boxes"].shape[1], 4)


def test_tf_od_api_anchors_follow_create_ssd_anchors():
    """Spec: min 0.2, max 0.95, ratios 1, 2, 1/2, 3, 1/3, lowest layer
    (0.1, 1), (0.2, 2), (0.2, 0.5), others + sqrt(s_i s_i+1) at ratio 1."""
    anchors = generate_anchors("tf_od_api", 320)
    heights = anchors[:, 2] - anchors[:, 0]
    widths = anchors[:, 3] - anchors[:, 1]
    # first cell of the 20x20 stride-16 layer: 3 anchors
    np.testing.assert_allclose(heights[:3], [0.1, 0.2 / np.sqrt(2),
                                             0.2 * np.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(widths[:3], [0.1, 0.2 * np.sqrt(2),
                                            0.2 / np.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose((anchors[0, 0] + anchors[0, 2]) / 2, 0.5 / 20)
    # last layer (1x1): scale 0.95, then sqrt(0.95 * 1.0)
    last = anchors[-6:]
    np.testing.assert_allclose(last[0, 2] - last[0, 0], 0.95, rtol=1e-6)
    np.testing.assert_allclose(last[-1, 2] - last[-1, 0], np.sqrt(0.95),
                               rtol=1e-6)
    np.testing.assert_allclose(last[:, :2] + last[:, 2:], 1.0, atol=1e-6)


# ----------------------------------------------------------------- matching
def test_every_ground_truth_gets_an_anchor_and_empty_images_are_background():
    anchors = generate_anchors("tf_od_api", 320)
    tiny = np.array([[0.50, 0.50, 0.51, 0.505]], "float32")  # IoU < 0.5 anywhere
    match = match_anchors(tiny, anchors).numpy()
    assert (match == 0).sum() == 1  # forced match
    deltas, classes = encode_targets(np.zeros((0, 4), "float32"),
                                     np.zeros((0,), "int32"), anchors)
    assert deltas.shape == anchors.shape and not np.any(classes.numpy())
    assert not np.any(deltas.numpy())


def test_ground_truth_through_encoder_decoder_and_cocoeval_gives_ap_1():
    """Real COCO val boxes -> targets -> "perfect" predictions -> decode +
    per-class NMS -> COCO results -> pycocotools: AP 1.0."""
    path = os.path.join(COCO, "instances_val2017.json")
    coco = load_coco_annotations(path)
    anchors = generate_anchors("tf_od_api", 320)
    results, evaluated = [], []
    for record in coco.images:
        deltas, classes = encode_targets(record.boxes, record.labels, anchors)
        logits = tf.one_hot(classes, len(coco.categories) + 1) * 30.0
        out = postprocess(deltas[None], logits[None], anchors)
        n = int(out["num_detections"][0])
        assert n == len(record.boxes)
        results += to_coco_results(record.image_id, out["boxes"][0, :n],
                                   out["scores"][0, :n], out["classes"][0, :n],
                                   record.height, record.width, coco.categories)
        evaluated.append(record.image_id)
    stats = evaluate_coco(path, results, evaluated)
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == 1.0
    # and a wrong class on every detection scores (almost: a few boxes
    # coincide with an object of the next class) nothing
    shifted = [dict(r, category_id=coco.categories.category_id(
        (coco.categories.label(r["category_id"]) + 1) % 80)) for r in results]
    assert evaluate_coco(path, shifted, evaluated)["AP"] < 0.01


def test_coco_reader_handles_bad_annotations(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 100, "width": 200},
                   {"id": 2, "file_name": "b.jpg", "height": 50, "width": 50}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 18, "bbox": [150, 50, 100, 80]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 5]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20],
             "iscrowd": 1}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    coco = load_coco_annotations(str(path))
    first, second = coco.images
    np.testing.assert_allclose(first.boxes, [[0.5, 0.75, 1.0, 1.0]])  # clipped
    assert list(first.labels) == [1]  # dog: id 18 -> label 1 (sorted ids)
    counts = coco.counts()
    assert (counts.empty, counts.crowd, counts.kept, counts.clipped) == \
        (1, 1, 1, 1)
    assert len(first.crowd_boxes) == 1
    assert second.boxes.shape == (0, 4)  # no annotations: kept, background
    data["annotations"].append({"id": 9, "image_id": 2, "category_id": 99,
                                "bbox": [1, 1, 5, 5]})
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotation id 9 \(image 2\): "
                                        r"'category_id' is 99; expected one "
                                        r"of the file's category ids \[1, 18\]"):
        load_coco_annotations(str(path))


# --------------------------------------------------------------------- loss
def _reference_ssd_loss(box_t, cls_t, box_p, logits, ratio=3, minimum=3):
    """The SSD loss written out per image and anchor, in numpy."""
    total, positives_all = 0.0, 0
    for b in range(len(cls_t)):
        shifted = logits[b] - logits[b].max(-1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        ce = -log_softmax[np.arange(len(cls_t[b])), cls_t[b]]
        pos = cls_t[b] > 0
        k = int(max(ratio * pos.sum(), minimum))
        negatives = np.sort(ce[~pos])[::-1][:k]
        diff = np.abs(box_t[b] - box_p[b])
        smooth_l1 = np.where(diff <= 1, 0.5 * diff ** 2, diff - 0.5)
        total += ce[pos].sum() + negatives.sum() + smooth_l1[pos].sum()
        positives_all += pos.sum()
    return total / max(positives_all, 1)


def test_ssd_loss_matches_its_definition():
    rng = np.random.default_rng(0)
    batch, anchors, classes = 3, 60, 5
    cls_t = np.where(rng.random((batch, anchors)) < 0.1,
                     rng.integers(1, classes, (batch, anchors)), 0)
    cls_t[2] = 0  # an image without objects: 3 hardest negatives only
    box_t = rng.normal(size=(batch, anchors, 4)) * (cls_t > 0)[..., None]
    box_p = rng.normal(size=(batch, anchors, 4)) * 2
    logits = rng.normal(size=(batch, anchors, classes)) * 3
    loss, parts = ssd_loss(box_t, cls_t, box_p, logits)
    assert float(loss) == pytest.approx(
        _reference_ssd_loss(box_t, cls_t, box_p, logits), rel=1e-5)
    assert float(parts["positives"]) == (cls_t > 0).sum()
    # perfect predictions cost (almost) nothing
    perfect = np.eye(classes)[cls_t] * 40.0
    assert float(ssd_loss(box_t, cls_t, box_t, perfect)[0]) < 1e-6


# ----------------------------------------------------------------- detector
def test_ssd_random_crop_moves_boxes_with_the_pixels():
    """Each real COCO val box painted into a 427x640 canvas: after any crop,
    every kept box still frames painted pixels (its centre is painted, the
    box lies in [0, 1]) and labels follow their boxes."""
    from igc_keras.data.detection import ssd_random_crop
    coco = load_coco_annotations(os.path.join(COCO, "instances_val2017.json"))
    record = next(r for r in coco.images if len(r.boxes) >= 5)
    height, width = record.height, record.width
    kept_total = 0
    for index, box in enumerate(record.boxes):
        canvas = np.zeros((height, width, 3), "float32")
        y0, x0, y1, x1 = (box * [height, width, height, width]).astype(int)
        canvas[y0:y1 + 1, x0:x1 + 1] = 1.0
        for seed in range(4):
            tf.random.set_seed(seed)
            image, boxes, labels = ssd_random_crop(
                tf.constant(canvas), tf.constant(box[None]),
                tf.constant([index]))
            image, boxes = image.numpy(), boxes.numpy()
            assert boxes.shape[0] == labels.shape[0] <= 1
            assert ((boxes >= 0) & (boxes <= 1)).all()
            for kept, label in zip(boxes, labels.numpy()):
                h, w = image.shape[:2]
                cy = int((kept[0] + kept[2]) / 2 * h)
                cx = int((kept[1] + kept[3]) / 2 * w)
                assert image[min(cy, h - 1), min(cx, w - 1), 0] == 1.0
                assert label == index
                kept_total += 1
    assert kept_total > 0
    # and the training pipeline crops real images on the fly
    from igc_keras.data.detection import coco_detection_dataset
    root = os.path.join(DATA, "coco_mini")
    dataset, _ = coco_detection_dataset(
        os.path.join(root, "train2017"),
        os.path.join(COCO, "instances_train2017.json"),
        generate_anchors("tf_od_api", 320), 320, batch_size=4)
    for images, targets in dataset.take(2):
        assert images.shape == (4, 320, 320, 3)
        assert targets["boxes"].shape == (4, 2034, 4)
        assert int(tf.reduce_sum(tf.cast(targets["classes"] > 0, tf.int32))) > 0
