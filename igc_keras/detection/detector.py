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
import tensorflow as tf

from igc_keras.applications.imagenet_utils import preprocessing_layer
from igc_keras.detection.anchors import generate_anchors
from igc_keras.detection.box_coding import postprocess
from igc_keras.detection.losses import ssd_loss
from igc_keras.detection.ssdlite import BACKBONES, ssdlite_network


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
    """

    def __init__(self, backbone="igcv3_1.0", num_classes=80, image_size=320,
                 head=None, backbone_weights=None, score_threshold=0.01,
                 iou_threshold=0.6, max_detections=100, **kwargs):
        super().__init__(**kwargs)
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.image_size = image_size
        self.head = head or BACKBONES.get(
            backbone, BACKBONES["igcv3_1.0"]).default_head
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.network = ssdlite_network(backbone, num_classes, image_size,
                                       self.head, backbone_weights)
        self.normalize = (keras.layers.Rescaling(1 / 127.5, offset=-1.0)
                          if backbone.startswith("mobilenet") else
                          preprocessing_layer(backbone))
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
        return loss

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
        out = self.decode(self(resized[None], training=False))
        count = int(out["num_detections"][0])
        scale = tf.constant([height, width, height, width], tf.float32)
        return {"boxes": (out["boxes"][0, :count] * scale).numpy(),
                "scores": out["scores"][0, :count].numpy(),
                "classes": out["classes"][0, :count].numpy()}

    def get_config(self):
        return {"backbone": self.backbone_name, "num_classes": self.num_classes,
                "image_size": self.image_size, "head": self.head,
                "score_threshold": self.score_threshold,
                "iou_threshold": self.iou_threshold,
                "max_detections": self.max_detections,
                "name": self.name}
