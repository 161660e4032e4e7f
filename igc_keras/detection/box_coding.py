"""Anchor matching, box encoding / decoding and post-processing.

Boxes are ``(ymin, xmin, ymax, xmax)`` normalised to the image. Encoding is
Keras' ``keras.utils.bounding_boxes.encode_box_to_deltas`` in ``center_yxhw``
with variances 0.1, 0.1, 0.2, 0.2 (the TF OD API's scales 10, 10, 5, 5).
Matching is the TF OD API's argmax matcher: an anchor takes the ground truth
it overlaps most if IoU >= 0.5, and every ground truth is forced onto an
anchor whatever the IoU — a distinct one, chosen greedily by IoU, so two
small objects sharing a best anchor are both kept.
Post-processing is ``tf.image.combined_non_max_suppression`` (per class).
"""

import keras
import tensorflow as tf
from keras.utils import bounding_boxes

VARIANCE = (0.1, 0.1, 0.2, 0.2)


def match_anchors(gt_boxes, anchors, iou_threshold=0.5):
    """Index of the ground truth each anchor predicts, or -1.

    Args:
        gt_boxes: ``(G, 4)`` normalised ``yxyx`` (``G`` may be 0).
        anchors: ``(A, 4)`` normalised ``yxyx``.

    Returns:
        ``(A,)`` int32.
    """
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    iou = bounding_boxes.compute_iou(gt_boxes, anchors, "yxyx")  # (G, A)
    # a zero row keeps argmax defined when there is no ground truth
    padded = tf.concat([iou, tf.zeros_like(anchors[None, :, 0])], axis=0)
    best_gt = tf.argmax(padded, axis=0, output_type=tf.int32)
    best_iou = tf.reduce_max(padded, axis=0)
    matched = tf.where(best_iou >= iou_threshold, best_gt, -1)
    forced = forced_matches(iou)
    return tf.where(forced >= 0, forced, matched)


def forced_matches(iou):
    """One distinct anchor per ground truth, greedily by IoU (bipartite).

    The TF OD API's forced match sends each ground truth to its best anchor;
    when two small objects share a best anchor one of them is lost. Here the
    highest remaining (ground truth, anchor) IoU is taken first and both are
    removed, so every object keeps an anchor of its own.

    Args:
        iou: ``(G, A)``.

    Returns:
        ``(A,)`` int32: the ground truth forced onto each anchor, or -1.
    """
    count, anchors = tf.shape(iou)[0], tf.shape(iou)[1]
    columns = tf.range(anchors)

    def body(step, remaining, assigned):
        flat = tf.argmax(tf.reshape(remaining, [-1]), output_type=tf.int32)
        gt, anchor = flat // anchors, flat % anchors
        assigned = tf.tensor_scatter_nd_update(assigned, [[anchor]], [gt])
        taken = tf.logical_or(tf.range(count)[:, None] == gt,
                              columns[None, :] == anchor)
        return step + 1, tf.where(taken, -1.0, remaining), assigned

    _, _, assigned = tf.while_loop(
        lambda step, *_: step < count, body,
        (tf.constant(0), iou, tf.fill([anchors], -1)))
    return assigned


def encode_targets(gt_boxes, gt_classes, anchors, iou_threshold=0.5):
    """Training targets of one image.

    Args:
        gt_boxes: ``(G, 4)`` normalised ``yxyx``.
        gt_classes: ``(G,)`` contiguous labels ``0..num_classes-1``.
        anchors: ``(A, 4)``.

    Returns:
        ``(box_targets (A, 4) deltas, class_targets (A,) int32)`` where class
        0 is background and ``c + 1`` is label ``c``; background anchors get
        zero deltas.
    """
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    gt_classes = tf.cast(gt_classes, tf.int32)
    match = match_anchors(gt_boxes, anchors, iou_threshold)
    positive = match >= 0
    index = tf.maximum(match, 0)
    safe_boxes = tf.concat([gt_boxes, tf.constant([[0.0, 0.0, 1.0, 1.0]])], 0)
    matched_boxes = tf.gather(safe_boxes, index)
    deltas = bounding_boxes.encode_box_to_deltas(
        anchors, matched_boxes, "yxyx", "yxyx", variance=VARIANCE)
    deltas = tf.where(positive[:, None], deltas, 0.0)
    classes = tf.where(positive, tf.gather(
        tf.concat([gt_classes, [0]], 0), index) + 1, 0)
    return deltas, classes


def decode_boxes(deltas, anchors):
    """``(..., A, 4)`` deltas -> normalised ``yxyx`` boxes."""
    return bounding_boxes.decode_deltas_to_boxes(
        tf.convert_to_tensor(anchors, tf.float32), deltas, "yxyx", "yxyx",
        variance=VARIANCE)


def postprocess(box_deltas, class_logits, anchors, score_threshold=1e-8,
                iou_threshold=0.6, max_per_class=100, max_total=100,
                activation="softmax"):
    """Decoded, per-class NMS detections (the TF OD API's settings).

    Args:
        box_deltas: ``(B, A, 4)``.
        class_logits: ``(B, A, C + 1)``, column 0 the background.
        activation: ``softmax`` or ``sigmoid`` scores.

    Returns:
        dict ``boxes (B, max_total, 4)`` normalised ``yxyx`` clipped to the
        image, ``scores (B, max_total)``, ``classes (B, max_total)`` int32
        contiguous labels, ``num_detections (B,)``.
    """
    boxes = decode_boxes(tf.cast(box_deltas, tf.float32), anchors)
    logits = tf.cast(class_logits, tf.float32)
    scores = (keras.ops.softmax(logits, axis=-1) if activation == "softmax"
              else keras.ops.sigmoid(logits))[..., 1:]
    result = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores, max_per_class, max_total,
        iou_threshold=iou_threshold, score_threshold=score_threshold,
        clip_boxes=True)
    return {"boxes": result.nmsed_boxes, "scores": result.nmsed_scores,
            "classes": tf.cast(result.nmsed_classes, tf.int32),
            "num_detections": result.valid_detections}
