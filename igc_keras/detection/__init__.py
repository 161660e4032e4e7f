"""Object detection with IGC backbones (SSDLite).

* :mod:`~igc_keras.detection.ssdlite` — the networks (backbone taps, extra
  layers, heads; IGCV3 with the authors' head, MobileNetV2 with the TF OD
  API's);
* :mod:`~igc_keras.detection.anchors` — SSD anchors;
* :mod:`~igc_keras.detection.box_coding` — matching, box coding, per-class
  NMS post-processing;
* :mod:`~igc_keras.detection.losses` — the SSD loss;
* :mod:`~igc_keras.detection.detector` — ``SSDLite``, the Keras model (fit
  with the SSD loss, predict decoded boxes, detect in pixels, export);
* :mod:`~igc_keras.detection.coco` — COCO annotations / results /
  pycocotools evaluation; :mod:`~igc_keras.detection.evaluation` — COCO mAP
  of a detector on a folder;
* :mod:`~igc_keras.detection.visualize` — labelled boxes drawn on images.

Input pipelines and SSD augmentation: :mod:`igc_keras.data.detection`;
recipe training: ``task.type: detection`` (:mod:`igc_keras.training.tasks`).
"""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.detection (SSDLite)")

from igc_keras.detection.anchors import generate_anchors
from igc_keras.detection.box_coding import (decode_boxes, encode_targets,
                                            match_anchors, postprocess)
from igc_keras.detection.detector import SSDLite
from igc_keras.detection.coco import (CategoryMap, evaluate_coco,
                                      load_coco_annotations, to_coco_results)
from igc_keras.detection.ssdlite import (BACKBONES, DEFAULT_BACKBONE,
                                         HEAD_DESIGNS, backbone_features,
                                         default_head, ssdlite_network)

__all__ = ["SSDLite", "BACKBONES", "CategoryMap", "DEFAULT_BACKBONE",
           "HEAD_DESIGNS", "backbone_features", "default_head",
           "decode_boxes", "encode_targets", "evaluate_coco",
           "generate_anchors", "load_coco_annotations", "match_anchors",
           "postprocess", "ssdlite_network", "to_coco_results"]
