"""Registry entries: every network of the seeds' tables, as data.

Seeds: 000 = J. Wang's IGC slides, 001 = the IGCV2 paper (CVPR 2018).
CIFAR rows count conv + FC weights (FC bias included) without BN, at 32x32
with 10 classes (the slides print the same figures for CIFAR-10 and -100);
ImageNet rows count conv/dense weights + biases + BN gamma/beta at 224x224.
"""

import keras

from igc_keras.applications.igcv1 import IGCV1, IGCV1CIFAR, RegConvCIFAR
from igc_keras.applications.igcv3 import IGCV3
from igc_keras.registry import ModelSpec, PaperFigures, register

SLIDES = "seed 000 (IGC slides)"

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
