"""Object detection with IGC backbones (SSDLite).

Landed so far: the SSDLite networks (:mod:`~igc_keras.detection.ssdlite`),
SSD anchors (:mod:`~igc_keras.detection.anchors`), matching, box coding and
per-class NMS post-processing (:mod:`~igc_keras.detection.box_coding`), COCO
annotations / results / pycocotools evaluation
(:mod:`~igc_keras.detection.coco`), the SSD loss and the ``SSDLite`` Keras
model (fit / predict / detect). SSD crop augmentation, recipes, the
``igc-keras`` detection commands and export follow (issue 6).
"""

from igc_keras.detection.anchors import generate_anchors
from igc_keras.detection.box_coding import (decode_boxes, encode_targets,
                                            match_anchors, postprocess)
from igc_keras.detection.detector import SSDLite
from igc_keras.detection.coco import (CategoryMap, evaluate_coco,
                                      load_coco_annotations, to_coco_results)
from igc_keras.detection.ssdlite import (BACKBONES, HEAD_DESIGNS,
                                         backbone_features, ssdlite_network)

__all__ = ["SSDLite", "BACKBONES", "CategoryMap", "HEAD_DESIGNS", "backbone_features",
           "decode_boxes", "encode_targets", "evaluate_coco",
           "generate_anchors", "load_coco_annotations", "match_anchors",
           "postprocess", "ssdlite_network", "to_coco_results"]
