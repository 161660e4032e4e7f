"""Object detection with IGC backbones (SSDLite).

Landed so far: the SSDLite networks (:mod:`igc_keras.detection.ssdlite`).
Anchors, box coding, losses, post-processing, COCO data and evaluation
follow (issue 6).
"""

from igc_keras.detection.ssdlite import (BACKBONES, HEAD_DESIGNS,
                                         backbone_features, ssdlite_network)

__all__ = ["BACKBONES", "HEAD_DESIGNS", "backbone_features", "ssdlite_network"]
