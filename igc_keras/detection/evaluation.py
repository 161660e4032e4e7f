"""COCO mAP of a detector on a COCO-format folder (pycocotools COCOeval)."""

import os

import keras
import numpy as np
import tensorflow as tf

from igc_keras.data.coco_images import check_coco_images
from igc_keras.detection.coco import (evaluate_coco, load_coco_annotations,
                                      to_coco_results)


def detect_folder(detector, image_dir, annotation_path, image_ids=None,
                  batch_size=8, verbose=1):
    """Runs ``detector`` on the annotated images; COCO result dicts.

    Images are resized to the detector's square size (as in training);
    boxes are mapped back to each image's own pixel size. Missing images and
    sizes other than their records' are refused first (``DataError``).
    ``verbose``: a Keras progress bar over the images (0: none).
    """
    coco = load_coco_annotations(annotation_path)
    records = coco.select(image_ids)
    check_coco_images(coco, image_dir, records)
    size = (detector.image_size, detector.image_size)
    results = []
    progress = keras.utils.Progbar(len(records), verbose=verbose,
                                   unit_name="image")
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        images = tf.stack([tf.image.resize(tf.cast(tf.io.decode_image(
            tf.io.read_file(os.path.join(image_dir, r.file_name)), channels=3,
            expand_animations=False), tf.float32), size) for r in chunk])
        out = detector.predict_on_batch(images)  # decoded, compiled once
        for i, record in enumerate(chunk):
            n = int(out["num_detections"][i])
            results += to_coco_results(
                record.image_id, out["boxes"][i, :n], out["scores"][i, :n],
                out["classes"][i, :n], record.height, record.width,
                coco.categories)
        progress.add(len(chunk))
    return results, [r.image_id for r in records]


def evaluate_detector(detector, image_dir, annotation_path, image_ids=None,
                      batch_size=8, verbose=1):
    """COCO box AP / AP50 / AP75 / APs / APm / APl / AR of ``detector``.

    Only the evaluated images' ground truth counts.
    """
    results, ids = detect_folder(detector, image_dir, annotation_path,
                                 image_ids, batch_size, verbose)
    stats = evaluate_coco(annotation_path, results, ids)
    stats["images"] = len(ids)
    stats["detections"] = len(results)
    stats["mean_score"] = float(np.mean([r["score"] for r in results])
                                if results else 0.0)
    return stats
