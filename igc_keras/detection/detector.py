"""``SSDLite``: the detector as a Keras model (fit with the SSD loss, predict
decoded boxes).

    from igc_keras.detection import SSDLite
    det = SSDLite(backbone="igcv3_1.0", num_classes=80, image_size=320)
    det.compile(optimizer=keras.optimizers.SGD(0.004, momentum=0.9))
    det.fit(train_ds)            # (images, {"boxes": deltas, "classes": ids})
    detections = det.predict(images)   # decoded, per-class NMS, normalised
    boxes = det.detect(photo)          # any size -> pixel boxes

Inputs are RGB images with values 0..255 at ``image_size``; the backbone's own
normalisation is inside the model (IGCV3: mean subtraction; MobileNetV2:
``x / 127.5 - 1``, the TF OD API's ``(2/255) x - 1``).
"""

import keras
import numpy as np
import tensorflow as tf

from igc_keras.applications.imagenet_utils import preprocessing_layer
from igc_keras.detection.anchors import generate_anchors
from igc_keras.detection.box_coding import postprocess
from igc_keras.detection.losses import ssd_loss
from igc_keras.detection.ssdlite import (DEFAULT_BACKBONE, default_head,
                                         ssdlite_network)


@keras.saving.register_keras_serializable(package="igc_keras")
class SSDLite(keras.Model):
    """SSDLite detector. See the module docstring.

    Args:
        backbone: ``igcv3_1.0`` or ``mobilenet_v2_1.0``.
        num_classes: object classes (a background class is added).
        image_size: square input side, a multiple of 32.
        head: ``tf_od_api`` or ``igcv3_authors`` (default: the backbone's).
        backbone_weights: ``None``, ``"imagenet"`` or a weights file.
        score_threshold, iou_threshold, max_detections: post-processing.
        class_names: ``num_classes`` names (saved with the model; the
            recipe trainer takes them from the COCO annotation file).
    """

    def __init__(self, backbone=DEFAULT_BACKBONE, num_classes=80, image_size=320,
                 head=None, backbone_weights=None, score_threshold=0.01,
                 iou_threshold=0.6, max_detections=100, class_names=None,
                 **kwargs):
        super().__init__(**kwargs)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names; "
                             f"num_classes={num_classes} needs as many.")
        self.class_names = list(class_names) if class_names else None
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.image_size = image_size
        self.head = head or default_head(backbone)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.network = ssdlite_network(backbone, num_classes, image_size,
                                       self.head, backbone_weights)
        self.normalize = preprocessing_layer(backbone)
        # built here, eagerly: a lazily built Normalization keeps constants
        # from the graph it was first traced in
        self.normalize.build((None, image_size, image_size, 3))
        self.anchors = tf.constant(generate_anchors(self.head, image_size))

    def call(self, images, training=False):
        """``(B, S, S, 3)`` RGB 0..255 -> ``{"boxes": (B, A, 4) deltas,
        "classes": (B, A, C + 1) logits}``."""
        return self.network(self.normalize(images), training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        loss, _ = ssd_loss(y["boxes"], y["classes"], y_pred["boxes"],
                           y_pred["classes"])
        if self.losses:  # regularisers
            loss = loss + tf.add_n([tf.cast(v, tf.float32)
                                    for v in self.losses])
        # as keras.losses.Loss does: fit sums the replicas' gradients and
        # multiplies the logged loss back
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / replicas if replicas > 1 else loss

    def decode(self, raw):
        """Raw predictions -> ``postprocess`` detections (normalised)."""
        return postprocess(raw["boxes"], raw["classes"], self.anchors,
                           score_threshold=self.score_threshold,
                           iou_threshold=self.iou_threshold,
                           max_total=self.max_detections)

    def predict_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self.decode(self(images, training=False))

    def detect(self, image):
        """One image of any size -> detections in its pixel coordinates.

        Args:
            image: ``(H, W, 3)`` RGB 0..255 (grayscale ``(H, W, 1)`` is
                expanded to RGB).

        Returns:
            dict of numpy arrays: ``boxes (N, 4)`` pixel ``(ymin, xmin, ymax,
            xmax)``, ``scores (N,)``, ``classes (N,)`` contiguous labels.
        """
        image = tf.convert_to_tensor(image)
        if image.shape.rank != 3 or image.shape[-1] not in (1, 3):
            raise ValueError(f"`image` must be (height, width, 3) or "
                             f"(height, width, 1); got shape {image.shape}.")
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        height, width = image.shape[0], image.shape[1]
        resized = tf.image.resize(tf.cast(image, tf.float32),
                                  (self.image_size, self.image_size))
        # predict_on_batch: one compiled function for every call
        out = self.predict_on_batch(resized[None])
        count = int(out["num_detections"][0])
        scale = np.array([height, width, height, width], "float32")
        return {"boxes": out["boxes"][0, :count] * scale,
                "scores": out["scores"][0, :count],
                "classes": out["classes"][0, :count]}

    def get_config(self):
        return {"backbone": self.backbone_name, "num_classes": self.num_classes,
                "image_size": self.image_size, "head": self.head,
                "score_threshold": self.score_threshold,
                "iou_threshold": self.iou_threshold,
                "max_detections": self.max_detections,
                "class_names": self.class_names, "name": self.name}

    def export_detections(self, path):
        """Writes a SavedModel whose ``serve`` signature maps ``images (B, S,
        S, 3)`` float32 RGB 0..255 to decoded detections: ``boxes (B, K, 4)``
        normalised ``yxyx``, ``scores (B, K)``, ``classes (B, K)`` contiguous
        labels, ``num_detections (B,)`` (post-processing inside the graph)."""
        archive = keras.export.ExportArchive()
        archive.track(self)

        def serve(images):
            return self.decode(self(images, training=False))
        archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec(
            (None, self.image_size, self.image_size, 3), tf.float32,
            name="images")])
        archive.write_out(path, verbose=False)
