"""Registry entries: every network of the seeds' tables, as data.

Seeds: 000 = J. Wang's IGC slides, 001 = the IGCV2 paper (CVPR 2018).
CIFAR rows count conv + FC weights (FC bias included) without BN, at 32x32
with 10 classes (the slides print the same figures for CIFAR-10 and -100);
ImageNet rows count conv/dense weights + biases + BN gamma/beta at 224x224.
"""

import keras

from igc_keras.applications.igcv1 import IGCV1, IGCV1CIFAR, RegConvCIFAR
from igc_keras.applications.igcv2 import IGCV2, IGCV2CIFAR
from igc_keras.applications.igcv3 import IGCV3
from igc_keras.registry import ModelSpec, PaperFigures, register

SLIDES = "seed 000 (IGC slides)"
IGCV2_PAPER = "seed 001 (IGCV2 paper)"

# ------------------------------------------------------------------ IGCV3
register(ModelSpec(
    "igcv3_1.0", IGCV3, {"alpha": 1.0}, "imagenet",
    PaperFigures("3.5M", "320M", f"{SLIDES}: IGCV3 vs MobileNetV2 on ImageNet"),
    description="IGCV3-D, the authors' released ImageNet model (top-1 72.2)"))
register(ModelSpec(
    "igcv3_0.7", IGCV3, {"alpha": 0.7}, "imagenet",
    PaperFigures("2.0M", "170M", f"{SLIDES}: IGCV3 vs MobileNetV2 on ImageNet"),
    reconstructed="width multiplier rule (round, make even; last conv "
                  "int(1280 alpha)) fitted to the paper's 2.0M / 170M",
    description="IGCV3 at width 0.7 (top-1 68.46)"))

# ------------------------------------------------------------------ IGCV1 ImageNet
_IGCV1_IMAGENET = {  # variant: (params conv+FC w/o BN, mult-adds) as printed
    "L100M2": ("0.861e7", "1.3G"),
}
for variant in ("L100M2", "L16M16", "L4M32"):
    row = _IGCV1_IMAGENET.get(variant)
    register(ModelSpec(
        f"igcv1_{variant.lower()}", IGCV1, {"variant": variant}, "imagenet",
        PaperFigures(row[0], row[1], f"{SLIDES}: IGCV1 vs ResNet on ImageNet",
                     batchnorm=False) if row else None,
        description=f"IGC-{variant}+Ident, ResNet-18 layout (authors' graph)"))

# ------------------------------------------------------------------ IGCV1 CIFAR
_IGC_L24M2 = {20: ("0.15M", "0.29e8"), 38: ("0.31M", "0.57e8"),
              62: ("0.52M", "0.95e8")}
_REG_W18 = {20: ("0.34M", "0.51e8"), 38: ("0.71M", "1.1e8"),
            62: ("1.20M", "1.7e8")}
for depth in (20, 38, 62):
    register(ModelSpec(
        f"igcv1_cifar_l24m2_d{depth}", IGCV1CIFAR,
        {"primary_partitions": 24, "secondary_partitions": 2, "depth": depth},
        "cifar",
        PaperFigures(*_IGC_L24M2[depth], f"{SLIDES}: comparison to regular "
                     f"convolutions (CIFAR)", batchnorm=False),
        description=f"IGC-L24M2 plain CIFAR net, depth {depth}"))
    register(ModelSpec(
        f"regconv_cifar_w18_d{depth}", RegConvCIFAR,
        {"width": 18, "depth": depth}, "cifar",
        PaperFigures(*_REG_W18[depth], f"{SLIDES}: comparison to regular "
                     f"convolutions (CIFAR); the slides truncate this row's "
                     f"FLOPs (exact plain-conv counts 0.513/1.050/1.767e8 "
                     f"print as 0.51/1.1/1.7)", batchnorm=False,
                     truncated=depth == 62),
        description=f"RegConv-W18 plain 3x3-conv baseline, depth {depth}"))
    register(ModelSpec(
        f"igcv1_cifar_l24m2_d{depth}_ident", IGCV1CIFAR,
        {"primary_partitions": 24, "secondary_partitions": 2, "depth": depth,
         "identity": True}, "cifar",
        description=f"IGC-L24M2+Ident residual CIFAR net, depth {depth}"))


# IGCV1 rows of the slides' state-of-the-art table (CIFAR, D = 20, +Ident)
_LARGE_IDENT = {(16, 32): "17.7M", (450, 2): "19.3M", (32, 26): "24.1M"}
for (L, M), params in _LARGE_IDENT.items():
    register(ModelSpec(
        f"igcv1_cifar_l{L}m{M}_d20_ident", IGCV1CIFAR,
        {"primary_partitions": L, "secondary_partitions": M, "depth": 20,
         "identity": True, "transition_secondary": "output"}, "cifar",
        PaperFigures(params, None, f"{SLIDES}: comparison with state of the "
                     f"art (CIFAR)", batchnorm=False),
        reconstructed="widening blocks use k_out/L secondary groups: the "
                      "authors' k_in/L rule gives L450M2 21.4M (+11%); this "
                      "one fits all three rows within 1.8%",
        description=f"IGC-L{L}M{M}+Ident, width {L * M}, depth 20"))

# ------------------------------------------------------------------ IGCV2 ImageNet
_SPATIAL_COUNTED_TWICE = (
    "closest fit: params reproduced; mult-adds only when the stem and "
    "3x3 convs count twice (standard count 4.9/9.3/15.2% below)")
for alpha, params, madds in ((1.0, "4.1M", "564M"), (0.5, "1.3M", "156M"),
                             (0.25, "0.5M", "46M")):
    register(ModelSpec(
        f"igcv2_{alpha}", IGCV2, {"alpha": alpha}, "imagenet",
        PaperFigures(params, madds, f"{SLIDES}: IGCV2 vs MobileNetV1 on "
                     f"ImageNet", spatial_twice=True),
        reconstructed="MobileNetV1 body, pointwise -> two 2-group 1x1 convs "
                      "with a permutation; " + _SPATIAL_COUNTED_TWICE,
        description=f"IGCV2-{alpha} ImageNet"))

# ------------------------------------------------------------------ IGCV2 CIFAR
_FITTED_TO_IGCV2_TABLE1 = (
    "Table 1 skeleton fitted to the IGCV2 paper's tables (params = conv "
    "weights only, FLOPs = conv + FC)")
_IGCV2_ROWS = [  # (family, width, depth, K per stage, params, FLOPs, table)
    ("xception", 58, 20, None, "0.44M", "0.67e8", "Table 3"),
    ("igcv1", 96, 20, None, "0.40M", "0.82e8", "Table 3"),
    ("igcv2_star", 216, 20, None, "0.32M", "0.76e8", "Table 3"),
    ("xception", 71, 20, None, "0.66M", "0.98e8", "Table 3"),
    ("igcv1", 126, 20, None, "0.60M", "1.28e8", "Table 3"),
    ("igcv2_star", 304, 20, None, "0.48M", "1.12e8", "Table 3"),
    ("xception", 83, 20, None, "0.89M", "1.31e8", "Table 3"),
    ("igcv1", 150, 20, None, "0.79M", "1.72e8", "Table 3"),
    ("igcv2_star", 416, 20, None, "0.65M", "1.52e8", "Tables 3 and 7"),
    ("xception", 35, 8, None, "0.056M", "0.095e8", "Table 4"),
    ("xception", 35, 20, None, "0.168M", "0.268e8", "Table 4"),
    ("xception", 35, 26, None, "0.223M", "0.355e8", "Table 4"),
    ("igcv2", 64, 8, (8, 16, 32), "0.047M", "0.095e8", "Table 4"),
    ("igcv2", 64, 20, (8, 16, 32), "0.149M", "0.262e8", "Table 4"),
    ("igcv2", 64, 26, (8, 16, 32), "0.200M", "0.346e8", "Table 4"),
    ("igcv1", 48, 8, None, "0.046M", "1.00e7", "Table 6"),
    ("igcv1", 48, 20, None, "0.151M", "2.89e7", "Table 6"),
    ("igcv1", 48, 26, None, "0.203M", "3.83e7", "Table 6"),
    ("igcv2", 80, 8, (10, 16, 20), "0.046M", "1.18e7", "Table 6"),
    ("igcv2", 80, 20, (10, 16, 20), "0.144M", "3.20e7", "Table 6"),
    ("igcv2", 80, 26, (10, 16, 20), "0.193M", "4.21e7", "Table 6"),
]
for family, width, depth, ks, params, flops, table in _IGCV2_ROWS:
    kwargs = {"family": family, "width": width, "depth": depth}
    if ks:
        kwargs["branch_channels"] = ks
    register(ModelSpec(
        f"igcv2_cifar_{family.replace('_', '')}_c{width}_d{depth}", IGCV2CIFAR,
        kwargs, "cifar",
        PaperFigures(params, flops, f"{IGCV2_PAPER}: {table} (CIFAR-100)",
                     batchnorm=False, classifier=False),
        reconstructed=_FITTED_TO_IGCV2_TABLE1,
        description=f"{family} column of Table 1, C{width}, depth {depth}"))

# ------------------------------------------------------------------ baselines
def _keras_application(constructor):
    def build(**kwargs):
        return constructor(weights=None, **kwargs)
    build.__name__ = constructor.__name__
    return build


register(ModelSpec(
    "mobilenet_v2_1.0", _keras_application(keras.applications.MobileNetV2),
    {"alpha": 1.0}, "imagenet",
    PaperFigures("3.4M", "300M", f"{SLIDES}: MobileNetV2-1.0 (paper)"),
    description="baseline: keras.applications MobileNetV2", baseline=True))
for alpha, params, madds in ((1.0, "4.2M", "569M"), (0.5, "1.3M", "149M"),
                             (0.25, "0.5M", "41M")):
    register(ModelSpec(
        f"mobilenet_{alpha}", _keras_application(keras.applications.MobileNet),
        {"alpha": alpha}, "imagenet",
        PaperFigures(params, madds, f"{SLIDES}: IGCV2 vs MobileNetV1"),
        description="baseline: keras.applications MobileNet (V1)",
        baseline=True))
