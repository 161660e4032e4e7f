"""SSD anchors, in the order the SSDLite heads predict them.

Boxes are ``(ymin, xmin, ymax, xmax)`` normalised to the image (0..1).

* ``tf_od_api`` (TF Object Detection API ``create_ssd_anchors``): six layers,
  scales ``s_k = 0.2 + (0.95 - 0.2) k / 5``; the lowest layer has 3 anchors
  ``(0.1, 1), (s_0, 2), (s_0, 1/2)``; the others ``(s_k, r)`` for ``r`` in
  1, 2, 1/2, 3, 1/3 plus ``(sqrt(s_k s_{k+1}), 1)`` (``s_6 = 1``).
* ``igcv3_authors`` (reconstructed from the authors' detection code: 4, 6, 6,
  6, 4, 4 anchors, sizes 0.2 to 0.9, the original SSD's rule): ``s_k = 0.2 +
  0.7 k / 5``; ``(s_k, 1), (sqrt(s_k s_{k+1}), 1)`` then ratios 2, 1/2 (and
  3, 1/3 on the 6-anchor layers).

An anchor of scale ``s`` and ratio ``r`` (width / height) is ``s sqrt(r)``
wide and ``s / sqrt(r)`` high, centred on ``((i + 0.5) / rows, (j + 0.5) /
cols)``; anchors run row by row, column by column, then through the layer's
``(scale, ratio)`` list — the order of the heads' reshaped outputs.
"""

import math

import numpy as np


def _scales(minimum, maximum, layers):
    return [minimum + (maximum - minimum) * k / (layers - 1)
            for k in range(layers)] + [1.0]


def layer_shapes(design):
    """Per layer, the ``(scale, aspect_ratio)`` list of ``design``."""
    if design == "tf_od_api":
        scales = _scales(0.2, 0.95, 6)
        shapes = [[(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]]
        for k in range(1, 6):
            shapes.append([(scales[k], r) for r in (1.0, 2.0, 0.5, 3.0, 1 / 3)]
                          + [(math.sqrt(scales[k] * scales[k + 1]), 1.0)])
        return shapes
    if design == "igcv3_authors":
        scales = _scales(0.2, 0.9, 6)
        shapes = []
        for k, count in enumerate((4, 6, 6, 6, 4, 4)):
            ratios = (2.0, 0.5) if count == 4 else (2.0, 0.5, 3.0, 1 / 3)
            shapes.append([(scales[k], 1.0),
                           (math.sqrt(scales[k] * scales[k + 1]), 1.0)] +
                          [(scales[k], r) for r in ratios])
        return shapes
    raise ValueError(f"`design` must be 'tf_od_api' or 'igcv3_authors'; got "
                     f"design={design!r}.")


def feature_map_sizes(image_size, levels=6, first_stride=16):
    """Grid sides of the SSDLite levels (stride 16, 32, then ``ceil(/2)``)."""
    sizes = [math.ceil(image_size / first_stride)]
    for _ in range(levels - 1):
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def generate_anchors(design, image_size=320):
    """All anchors of ``design`` for a square ``image_size`` input.

    Returns:
        ``(A, 4)`` float32 ``(ymin, xmin, ymax, xmax)``, normalised, in the
        heads' order (not clipped: the TF OD API does not clip either).
    """
    boxes = []
    for grid, shapes in zip(feature_map_sizes(image_size), layer_shapes(design)):
        centres = (np.arange(grid) + 0.5) / grid
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        sizes = np.array([(s / math.sqrt(r), s * math.sqrt(r))
                          for s, r in shapes])  # (K, 2) heights, widths
        cy = cy.reshape(-1, 1)
        cx = cx.reshape(-1, 1)
        h, w = sizes[None, :, 0], sizes[None, :, 1]
        layer = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2],
                         axis=-1)  # (grid*grid, K, 4)
        boxes.append(layer.reshape(-1, 4))
    return np.concatenate(boxes).astype("float32")
