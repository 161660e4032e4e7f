"""Every registered network: its params and mult-adds against its paper row, and
keras.applications' contract (the registry walked)."""

import re

import keras
import pytest

import igc_keras
from igc_keras.design import count_mult_adds, count_params

WITH_FIGURES = [n for n in igc_keras.list_models()
                if igc_keras.get_model_spec(n).paper is not None
                and not igc_keras.get_model_spec(n).baseline]

# Exact counts recomputed from the authors' released code/graphs
# (../shared/specs/architectures.md), under the stated conventions.
EXACT = {
    "igcv3_1.0": (3_491_688, 312_970_176, True),
    "igcv3_0.7": (2_031_702, 169_975_400, True),
    "igcv1_l100m2": (8_607_700, 1_264_780_800, False),
    "igcv1_l16m16": (13_489_896, 2_265_989_120, False),
    "igcv1_l4m32": (12_232_040, 1_944_641_536, False),
    "igcv1_cifar_l24m2_d20": (151_834, None, False),
    "regconv_cifar_w18_d20": (339_472, None, False),
    "mobilenet_v2_1.0": (3_504_872, 300_774_272, True),
    "mobilenet_1.0": (4_231_976, 568_740_352, True),
    "mobilenet_0.5": (1_331_592, 149_497_088, True),
    "mobilenet_0.25": (470_072, 41_030_272, True),
}
IDENT = {20: 0.160e6, 38: 0.317e6, 62: 0.527e6}  # spec: IGC-L24M2+Ident


def test_every_seed_table_is_registered():
    assert len(WITH_FIGURES) >= 20


@pytest.mark.parametrize("name", WITH_FIGURES)
def test_params_and_mult_adds_within_3_percent_of_the_paper(name):
    spec = igc_keras.get_model_spec(name)
    model = spec.build()
    paper = spec.paper
    params, madds = paper.count(model)
    assert paper.agrees(params, paper.params), (params, paper.params)
    if paper.mult_adds is not None:
        assert paper.agrees(madds, paper.mult_adds), (madds, paper.mult_adds)


def test_printed_precision_is_parsed():
    from igc_keras.registry import figure_agrees, parse_figure
    assert parse_figure("0.29e8") == pytest.approx((0.29e8, 0.005e8))
    assert parse_figure("320M") == pytest.approx((320e6, 0.5e6))
    assert parse_figure("0.861e7") == pytest.approx((0.861e7, 0.0005e7))
    # 1.050e8 prints as "1.1e8" (the slides); 1.04e8 would not
    assert figure_agrees(1.050e8, "1.1e8", rel=0.0)
    assert not figure_agrees(1.04e8, "1.1e8", rel=0.0)
    assert not figure_agrees(3.65e6, "3.5M")
    assert figure_agrees(1.767e8, "1.7e8", truncated=True)
    assert not figure_agrees(1.767e8, "1.7e8")


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_counts_of_the_authors_layouts(name):
    params, madds, batchnorm = EXACT[name]
    model = igc_keras.create_model(name)
    assert count_params(model, batchnorm=batchnorm) == params
    if madds is not None:
        assert count_mult_adds(model) == madds


@pytest.mark.parametrize("depth", sorted(IDENT))
def test_igcv1_ident_cifar_counts(depth):
    model = igc_keras.create_model(f"igcv1_cifar_l24m2_d{depth}_ident")
    assert count_params(model, batchnorm=False) == pytest.approx(IDENT[depth],
                                                                 abs=500)


def test_create_model_overrides_and_errors():
    model = igc_keras.create_model("igcv1_cifar_l24m2_d20", classes=100)
    assert model.output.shape[-1] == 100
    with pytest.raises(ValueError, match="unknown model name='igcv3_10'.*igcv3_1.0"):
        igc_keras.create_model("igcv3_10")
    assert igc_keras.list_models("igcv3*") == ["igcv3_0.7", "igcv3_1.0"]


PACKAGE_NETWORKS = [n for n in igc_keras.list_models()
                    if not igc_keras.get_model_spec(n).baseline]
#: names Keras gives layers created without a name (``conv2d_3``, ...)
KERAS_DEFAULT_NAME = re.compile(
    r"(conv2d|depthwise_conv2d|batch_normalization|dense|re_lu|activation|add"
    r"|concatenate|global_average_pooling2d|group_conv2d|"
    r"channel_permutation)(_\d+)?")


@pytest.mark.parametrize("name", PACKAGE_NETWORKS)
def test_every_registered_network_keeps_the_applications_contract(name):
    """The registry walked (every network the package registers, at a small
    input): keras.applications' contract — ``input_tensor`` is the model's
    input, ``classes`` / ``classifier_activation`` make the top,
    ``include_top=False, pooling="avg"`` is the same network without its
    classifier — and every layer has a stable, unique name."""
    spec = igc_keras.get_model_spec(name)
    size = 32 if spec.dataset == "cifar" else 64
    tensor = keras.Input((size, size, 3))
    model = igc_keras.create_model(name, input_tensor=tensor, classes=7,
                                   classifier_activation=None)
    assert model.inputs[0] is tensor and model.output_shape == (None, 7)
    names = [layer.name for layer in model.layers]
    assert len(set(names)) == len(names)
    assert not [n for n in names if KERAS_DEFAULT_NAME.fullmatch(n)]
    assert model.get_layer("predictions").activation.__name__ == "linear"
    features = igc_keras.create_model(name, include_top=False, pooling="avg",
                                      input_shape=(size, size, 3))
    assert len(features.output_shape) == 2
    classifier = model.get_layer("predictions")
    assert features.output_shape[-1] == classifier.kernel.shape[0]
    assert model.count_params() - features.count_params() == \
        classifier.count_params()
