"""igc_keras.optimize.fuse: the inference form (no permutation, BatchNorm
folded) computes what the training model computes, on real ImageNet
validation photos (``../shared/data/imagenet/val_samples``), and exports."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import DATA
from random_weights import randomize_weights

import igc_keras
from igc_keras.applications.imagenet_utils import preprocessing_layer
from igc_keras.data.classification import read_images
from igc_keras.layers import (BranchSumConv2D, ChannelPermutation,
                              with_group_conv_implementation)
from igc_keras.optimize import export_tflite, fuse, run_tflite

SIZE = 96


@pytest.fixture(scope="module")
def photos():
    return read_images(os.path.join(DATA, "imagenet", "val_samples"),
                       (SIZE, SIZE), 8)


def _kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def _relative_difference(reference, value):
    reference, value = np.asarray(reference), np.asarray(value)
    return float(np.abs(reference - value).max() / max(
        1.0, float(np.abs(reference).max())))


def _igcv3(seed=0):
    model = igc_keras.create_model("igcv3_1.0", input_shape=(SIZE, SIZE, 3),
                                   classifier_activation=None)
    return randomize_weights(model, seed)


@pytest.mark.parametrize("group_convolutions", [None, "split", "dense"])
def test_fused_igcv3_equals_training_model(photos, group_convolutions):
    model = _igcv3()
    x = preprocessing_layer("igcv3_1.0")(photos)
    fused = fuse(model, group_convolutions=group_convolutions)
    kinds = _kinds(fused)
    assert "ChannelPermutation" not in kinds
    assert "BatchNormalization" not in kinds
    assert kinds.count("BranchSumConv2D") == (
        0 if group_convolutions == "dense" else 32)
    # the GroupConv2D vocabulary: the model's own form, or the one asked for
    forms = {layer.implementation for layer in fused.layers
             if hasattr(layer, "implementation")}
    assert forms == ({"native"} if group_convolutions is None else
                     {"split"} if group_convolutions == "split" else set())
    reference = model.predict(x, verbose=0)
    assert np.ptp(reference) > 1.0   # outputs differ between photos
    assert _relative_difference(reference, fused.predict(x, verbose=0)) < 1e-5
    # the training model is untouched
    assert _kinds(model).count("ChannelPermutation") == 32


def test_fuse_defaults_to_the_fastest_form_of_this_machine(photos):
    """``fuse(model)``: on a CPU-only machine (this suite's) every group
    convolution becomes a dense block-diagonal convolution — the form the
    TF graph runs fastest there (``benchmarks/speed.py``); without
    BatchNorm folding (a model that still trains) each keeps its own."""
    import tensorflow as tf
    model = _igcv3(2)
    fused = fuse(model)
    grouped = [layer.name for layer in fused.layers
               if getattr(layer, "groups", 1) > 1
               and not isinstance(layer, keras.layers.DepthwiseConv2D)]
    if tf.config.list_physical_devices("GPU"):
        assert grouped
    else:
        assert not grouped and "BranchSumConv2D" not in _kinds(fused)
    x = preprocessing_layer("igcv3_1.0")(photos)
    assert _relative_difference(model.predict(x, verbose=0),
                                fused.predict(x, verbose=0)) < 1e-5
    trainable = fuse(model, batchnorm=False)
    assert {layer.implementation for layer in trainable.layers
            if hasattr(layer, "implementation")} == {"native"}


def test_fuse_without_batchnorm_leaves_a_trainable_permutation_free_model(
        photos):
    model = _igcv3(1)
    x = preprocessing_layer("igcv3_1.0")(photos)
    fused = fuse(model, batchnorm=False)
    assert "ChannelPermutation" not in _kinds(fused)
    assert _kinds(fused).count("BatchNormalization") == _kinds(model).count(
        "BatchNormalization")
    for training in (False, True):   # moving statistics and batch statistics
        assert _relative_difference(model(x, training=training),
                                    fused(x, training=training)) < 1e-5
    assert len(fused.trainable_weights) == len(model.trainable_weights)
    # the CPU training form: dense implementation, permutation folded into
    # one dense projection kernel (no reshape / sum)
    dense = fuse(with_group_conv_implementation(model, "dense"),
                 batchnorm=False)
    assert {layer.implementation for layer in dense.layers
            if isinstance(layer, BranchSumConv2D)} == {"dense"}
    assert _relative_difference(model(x, training=True),
                                dense(x, training=True)) < 1e-5


def test_fused_cifar_igcv1_and_mobilenet_v2_equal_their_models(photos):
    """IGCV1 (permutations after both group convs; the one feeding a residual
    add stays) and keras.applications MobileNetV2 (BatchNorm folding only)."""
    x = photos[:, :32, :32] / 127.5 - 1
    igcv1 = randomize_weights(igc_keras.create_model(
        "igcv1_cifar_l24m2_d20", classifier_activation=None), 2)
    fused = fuse(igcv1, group_convolutions=None)
    before = _kinds(igcv1).count("ChannelPermutation")
    after = _kinds(fused).count("ChannelPermutation")
    assert _kinds(fused).count("BranchSumConv2D") > 0 and after < before
    assert _relative_difference(igcv1.predict(x, verbose=0),
                                fused.predict(x, verbose=0)) < 1e-5
    mobilenet = randomize_weights(keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), weights=None, classifier_activation=None),
        3)
    x = photos / 127.5 - 1
    fused = fuse(mobilenet)
    assert "BatchNormalization" not in _kinds(fused)
    assert _relative_difference(mobilenet.predict(x, verbose=0),
                                fused.predict(x, verbose=0)) < 1e-5


def test_fused_model_saves_and_exports(photos, tmp_path):
    """A fine-tuned-style classifier (nested backbone) fuses; the fused model
    round-trips through .keras, exports as a SavedModel and to TFLite, and
    each gives the training model's outputs."""
    backbone = _igcv3(4)
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = backbone(preprocessing_layer("igcv3_1.0")(inputs), training=False)
    model = keras.Model(inputs, outputs)
    reference = model.predict(photos, verbose=0)
    fused = fuse(model, group_convolutions=None)
    nested = fused.layers[-1]
    assert "ChannelPermutation" not in _kinds(nested)
    assert any(isinstance(layer, BranchSumConv2D) for layer in nested.layers)
    fused.save(tmp_path / "fused.keras")
    loaded = keras.saving.load_model(tmp_path / "fused.keras")
    assert _relative_difference(reference, loaded.predict(photos, verbose=0)
                                ) < 1e-5
    fused.export(str(tmp_path / "saved"), verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    served = restored.serve(photos)
    assert _relative_difference(reference, served) < 1e-5
    info = export_tflite(fused, tmp_path / "fused.tflite")
    assert info["group_conv_implementation"] == "native"
    assert _relative_difference(reference, run_tflite(info["path"], photos)
                                ) < 1e-4


def test_fuse_refuses_what_it_cannot_rebuild():
    model = _igcv3()
    with pytest.raises(ValueError, match="group_convolutions.*'sparse'"):
        fuse(model, group_convolutions="sparse")
    with pytest.raises(ValueError, match="'grouped' is now None, 'native' or"
                                         " 'split'"):
        fuse(model, group_convolutions="grouped")
    sequential = keras.Sequential([keras.Input((8, 8, 4)),
                                   ChannelPermutation(2)])
    with pytest.raises(ValueError, match="not a functional model"):
        fuse(sequential)
    inputs = keras.Input((8, 8, 4))
    shared = keras.layers.Conv2D(4, 1)
    with pytest.raises(ValueError, match="shared layer"):
        fuse(keras.Model(inputs, shared(shared(inputs))))


def test_batchnorm_folds_into_a_depth_multiplier_depthwise_conv(photos):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                     name="dw")(inputs)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.Conv2D(4, 1, name="pw")(x)
    x = keras.layers.BatchNormalization(name="pw_bn", center=False)(x)
    model = randomize_weights(keras.Model(inputs, x), 6)
    fused = fuse(model)
    assert "BatchNormalization" not in _kinds(fused)
    x = photos / 127.5 - 1
    assert _relative_difference(model.predict(x, verbose=0),
                                fused.predict(x, verbose=0)) < 1e-5


def test_export_converts_a_model_fuse_cannot_rebuild_as_built(tmp_path):
    inputs = keras.Input((8, 8, 4))
    shared = keras.layers.Conv2D(4, 1)
    model = keras.Model(inputs, shared(shared(inputs)))
    with pytest.warns(UserWarning, match="as built.*shared layer"):
        info = export_tflite(model, tmp_path / "shared.tflite")
    assert not info["fused"] and os.path.getsize(info["path"]) > 0
    with pytest.raises(ValueError, match="group_convolutions='sparse'"):
        export_tflite(model, tmp_path / "x.tflite",
                      group_convolutions="sparse")
