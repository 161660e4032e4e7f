"""One harness run over every builder: the keras.applications contract.

It runs on every Keras backend: ``KERAS_BACKEND=jax`` / ``torch`` in
:mod:`test_backends` runs this file in a subprocess (tests that need
TensorFlow say so and are skipped there)."""

import os

import keras
import numpy as np
import pytest

from igc_keras.applications import (IGCV1, IGCV1CIFAR, IGCV2, IGCV2CIFAR,
                                    IGCV3, RegConvCIFAR)
from igc_keras.layers import ChannelPermutation, GroupConv2D

to_numpy = keras.ops.convert_to_numpy  # a backend tensor (torch: detached)

# (builder, small-but-real kwargs, total stride of the feature map)
BUILDERS = {
    "igcv3": (IGCV3, {"alpha": 0.35}, 32),
    "igcv1_imagenet": (IGCV1, {"variant": "L4M32", "alpha": 0.5}, 32),
    "igcv1_cifar": (IGCV1CIFAR, {"primary_partitions": 4,
                                 "secondary_partitions": 2, "depth": 8}, 4),
    "igcv1_cifar_ident": (IGCV1CIFAR, {"primary_partitions": 4,
                                       "secondary_partitions": 2, "depth": 8,
                                       "identity": True}, 4),
    "regconv_cifar": (RegConvCIFAR, {"width": 8, "depth": 8}, 4),
    "igcv2": (IGCV2, {"alpha": 0.25}, 32),
    "igcv2_cifar_star": (IGCV2CIFAR, {"width": 16, "depth": 8,
                                      "family": "igcv2_star"}, 4),
    "igcv2_cifar_xception": (IGCV2CIFAR, {"width": 16, "depth": 8,
                                          "family": "xception"}, 4),
}


def _images(shape, n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n,) + shape).astype(
        "float32")


@pytest.fixture(params=sorted(BUILDERS))
def builder(request):
    return BUILDERS[request.param]


def test_feature_extractor_with_custom_shape_and_channels(builder):
    build, kwargs, stride = builder
    model = build(include_top=False, input_shape=(64, 96, 1), **kwargs)
    out = model(_images((64, 96, 1)))
    assert out.shape[:3] == (2, 64 // stride, 96 // stride)
    pooled = build(include_top=False, pooling="avg", input_shape=(64, 96, 5),
                   **kwargs)
    assert pooled(_images((64, 96, 5))).shape == (2, out.shape[-1])
    maxed = build(include_top=False, pooling="max",
                  input_shape=(None, None, 3), **kwargs)
    assert maxed(_images((64, 64, 3))).shape == (2, out.shape[-1])


def test_top_classes_activation_and_input_tensor(builder):
    build, kwargs, _ = builder
    tensor = keras.Input((64, 64, 3))
    model = build(input_tensor=tensor, classes=7, classifier_activation=None,
                  **kwargs)
    assert model.inputs[0] is tensor
    logits = to_numpy(model(_images((64, 64, 3))))
    assert logits.shape == (2, 7)
    probs = build(input_shape=(64, 64, 3), classes=7, **kwargs)
    probs.set_weights(model.get_weights())
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(to_numpy(probs(_images((64, 64, 3)))),
                               softmax / softmax.sum(-1, keepdims=True),
                               atol=1e-5)


def test_keras_save_load_round_trip_is_identical(builder, tmp_path):
    build, kwargs, _ = builder
    model = build(input_shape=(64, 64, 3), classes=5, **kwargs)
    x = _images((64, 64, 3))
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    weights = os.path.join(tmp_path, "w.weights.h5")
    model.save_weights(weights)
    again = build(input_shape=(64, 64, 3), classes=5, weights=weights, **kwargs)
    np.testing.assert_array_equal(to_numpy(again(x)), to_numpy(model(x)))


ON_TENSORFLOW = keras.backend.backend() == "tensorflow"
tensorflow_only = pytest.mark.skipif(
    not ON_TENSORFLOW, reason="needs the TensorFlow backend (recipes' "
    "schedules, SavedModel export)")


@tensorflow_only
def test_import_igc_keras_is_enough_to_load_a_saved_model(tmp_path):
    """A user's fresh process: ``import igc_keras`` registers the package's
    layers (and the recipe's warmup schedule), so ``keras.saving.load_model``
    reads a saved IGC model with its optimizer."""
    import subprocess
    import sys

    from igc_keras.training.schedules import LinearWarmup
    model = IGCV3(input_shape=(32, 32, 3), classes=3, alpha=0.35,
                  weights=None)
    model.compile(keras.optimizers.SGD(LinearWarmup(
        keras.optimizers.schedules.CosineDecay(0.1, 10), 2)), "mse")
    path = str(tmp_path / "saved.keras")
    model.save(path)
    code = ("import igc_keras, keras; m = keras.saving.load_model(%r); "
            "print(m.optimizer.get_config()['learning_rate']['class_name'], "
            "sorted({type(l).__name__ for l in m.layers}))" % path)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env={**os.environ,
                                         "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "GroupConv2D" in run.stdout and "ChannelPermutation" in run.stdout
    assert run.stdout.startswith("LinearWarmup"), run.stdout


@tensorflow_only
@pytest.mark.parametrize("name", ["igcv3", "igcv1_cifar_ident"])
def test_export_saved_model_serves_the_same_outputs(name, tmp_path):
    import tensorflow as tf
    build, kwargs, _ = BUILDERS[name]
    model = build(input_shape=(64, 64, 3), classes=5, **kwargs)
    x = _images((64, 64, 3))
    path = os.path.join(tmp_path, "export")
    model.export(path, verbose=False)
    reloaded = tf.saved_model.load(path)
    served = reloaded.serve(tf.constant(x))
    np.testing.assert_allclose(served.numpy(), to_numpy(model(x)), atol=1e-5)


def test_mixed_precision_builds_and_runs():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = IGCV3(alpha=0.35, input_shape=(64, 64, 3), classes=4)
        out = model(_images((64, 64, 3)))
        # the softmax head stays float32
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        assert any(isinstance(l, ChannelPermutation) for l in model.layers)
        assert model.get_layer("stage1_block0_expand").compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_group_convs_are_real_group_convs():
    model = IGCV3(alpha=0.35, input_shape=(64, 64, 3))
    expand = model.get_layer("stage2_block1_expand")
    assert isinstance(expand, GroupConv2D) and expand.groups == 2
    assert expand.kernel.shape[2] * 2 == expand.input.shape[-1]


@pytest.mark.parametrize("kwargs,message", [
    ({"weights": "imagenet", "alpha": 0.5},
     r"weights='imagenet' is not available for IGCV3\(alpha=0.5"),
    ({"weights": "/no/such/file.h5"}, r"weights='/no/such/file.h5' does not "
                                      r"exist"),
    ({"pooling": "mean", "include_top": False}, r"`pooling` must be one of"),
    ({"input_shape": (224, 224)}, r"`input_shape` must be a tuple of 3 "
                                  r"integers \(height, width, channels"),
    ({"input_shape": (16, 16, 3)}, r"input height must be at least 32"),
    ({"alpha": 0}, r"`alpha` must be a finite number > 0; got alpha=0"),
    ({"classes": 0}, r"`classes` must be a positive integer"),
])
def test_bad_arguments_fail_before_building(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IGCV3(**kwargs)


def test_builder_specific_errors(tmp_path):
    with pytest.raises(ValueError, match=r"`variant` must be one of"):
        IGCV1(variant="L8M8")
    with pytest.raises(ValueError, match=r"`depth` must be 3B \+ 2.*depth=21"):
        IGCV1CIFAR(depth=21)
    with pytest.raises(ValueError, match=r"`depth` must be 6B \+ 2.*depth=11"):
        IGCV1CIFAR(depth=11, identity=True)
    with pytest.raises(ValueError, match=r"`family` must be one of"):
        IGCV2CIFAR(family="igcv4")
    with pytest.raises(ValueError, match=r"even number B .*depth=11"):
        IGCV2CIFAR(depth=11)
    with pytest.raises(ValueError, match=r"branch_channels\[0\]=7 must divide "
                                         r"the 64 input channels"):
        IGCV2CIFAR(width=64, depth=8, branch_channels=(7, 16, 32))
    # a weights file from another architecture is refused, nothing half-loaded
    other = RegConvCIFAR(width=8, depth=8)
    path = os.path.join(tmp_path, "other.weights.h5")
    other.save_weights(path)
    with pytest.raises(ValueError, match="could not load weights"):
        IGCV1CIFAR(primary_partitions=4, secondary_partitions=2, depth=8,
                   weights=path)


@pytest.mark.parametrize("name", ["igcv3", "igcv1_imagenet", "igcv2"])
def test_pyramid_outputs_follow_the_kerashub_convention(name):
    build, kwargs, _ = BUILDERS[name]
    model = build(include_top=False, input_shape=(64, 96, 3), **kwargs)
    assert sorted(model.pyramid_outputs) == ["P1", "P2", "P3", "P4", "P5"]
    features = keras.Model(model.inputs, model.pyramid_outputs)
    out = features(_images((64, 96, 3)))
    for level, tensor in out.items():
        stride = 2 ** int(level[1:])
        assert tensor.shape[1:3] == (64 // stride, 96 // stride), level
    assert out["P5"].shape[-1] == model.output.shape[-1]
