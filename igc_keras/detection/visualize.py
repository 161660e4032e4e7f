"""Labelled boxes drawn on an image (``keras.visualization``, OpenCV)."""

import numpy as np


def load_detector(path):
    """An :class:`~igc_keras.detection.SSDLite` saved as ``.keras``; any
    other file is a ``DataError`` naming it."""
    from igc_keras.detection.detector import SSDLite
    from igc_keras.errors import DataError
    from igc_keras.model_files import load_keras_model
    model = load_keras_model(path, "--model")
    if not isinstance(model, SSDLite):
        raise DataError(f"--model {path!r} holds a {type(model).__name__}, "
                        f"not an SSDLite detector (the recipe trainer's "
                        f"last.keras / best.keras of a detection recipe).")
    return model


def draw_detections(image, detections, class_names=None, min_score=0.3,
                    color=(255, 40, 40)):
    """Draws ``detections`` (from ``SSDLite.detect``) on ``image``.

    Args:
        image: ``(H, W, 3)`` RGB 0..255.
        detections: dict of ``boxes (N, 4)`` pixel ``yxyx``, ``scores``,
            ``classes`` contiguous labels.
        class_names: label -> name (default: the label number).
        min_score: boxes scoring below are not drawn.

    Returns:
        ``(H, W, 3)`` uint8 with boxes, names and scores drawn.
    """
    import keras

    keep = np.asarray(detections["scores"]) >= min_score
    boxes = np.asarray(detections["boxes"], "float32")[keep]
    labels = np.asarray(detections["classes"]).astype("int32")[keep]
    scores = np.asarray(detections["scores"], "float32")[keep]
    names = {int(label): (class_names[int(label)] if class_names else
                          str(int(label))) for label in labels}
    image = np.asarray(image, "uint8")
    thickness = max(2, round(min(image.shape[:2]) / 200))
    drawn = keras.visualization.draw_bounding_boxes(
        image[None].copy(), {"boxes": boxes[None], "labels": labels[None],
                             "confidences": scores[None]},
        bounding_box_format="yxyx", class_mapping=names or None, color=color,
        line_thickness=thickness, text_thickness=max(1, thickness // 2),
        font_scale=max(0.5, min(image.shape[:2]) / 800),
        data_format="channels_last")
    return np.asarray(drawn[0], "uint8")
