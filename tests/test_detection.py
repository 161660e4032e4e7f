"""SSDLite networks against the published parameter counts."""

import os
import re

import pytest

from conftest import SHARED
from igc_keras.design import count_params
from igc_keras.detection import ssdlite_network


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
