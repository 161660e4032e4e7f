"""The SSD loss: smooth-L1 boxes + softmax classes with hard negative mining.

Per image, every positive anchor (class target > 0) contributes its
cross-entropy and the smooth-L1 (Huber, delta 1) of its four box deltas; of
the background anchors only the ``negative_ratio x positives`` (at least
``min_negatives``) with the highest cross-entropy contribute — the TF OD
API's hard example miner (3 negatives per positive, 3 at least per image).
The sum over the batch is divided by the batch's number of positives (at
least 1), as the TF OD API normalises by matches.
"""

import keras
import tensorflow as tf


def ssd_loss(box_targets, class_targets, box_predictions, class_logits,
             negative_ratio=3.0, min_negatives=3):
    """Scalar SSD loss.

    Args:
        box_targets: ``(B, A, 4)`` encoded deltas (zeros on background).
        class_targets: ``(B, A)`` int, 0 = background, ``c + 1`` = label c.
        box_predictions: ``(B, A, 4)``.
        class_logits: ``(B, A, C + 1)``.

    Returns:
        ``(loss, {"box_loss": ..., "class_loss": ..., "positives": ...})``.
    """
    class_targets = tf.cast(class_targets, tf.int32)
    logits = tf.cast(class_logits, tf.float32)
    positive = class_targets > 0
    positive_f = tf.cast(positive, tf.float32)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=class_targets, logits=logits)  # (B, A)
    positives = tf.reduce_sum(positive_f, axis=1)  # (B,)
    negatives_wanted = tf.maximum(negative_ratio * positives,
                                  float(min_negatives))
    negative_loss = tf.where(positive, -1.0, cross_entropy)
    # rank 0 = hardest background anchor of the image
    rank = tf.argsort(tf.argsort(negative_loss, axis=1, direction="DESCENDING"),
                      axis=1)
    hard_negative = tf.logical_and(
        tf.logical_not(positive),
        tf.cast(rank, tf.float32) < negatives_wanted[:, None])
    class_loss = tf.reduce_sum(cross_entropy * (
        positive_f + tf.cast(hard_negative, tf.float32)))
    huber = keras.losses.Huber(delta=1.0, reduction=None)
    per_coordinate = huber(tf.cast(box_targets, tf.float32)[..., None],
                           tf.cast(box_predictions, tf.float32)[..., None])
    box_loss = tf.reduce_sum(tf.reduce_sum(per_coordinate, -1) * positive_f)
    normaliser = tf.maximum(tf.reduce_sum(positives), 1.0)
    return (class_loss + box_loss) / normaliser, {
        "box_loss": box_loss / normaliser, "class_loss": class_loss / normaliser,
        "positives": tf.reduce_sum(positives)}
