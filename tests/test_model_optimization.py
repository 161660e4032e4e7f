"""Recipe-driven QAT and pruning (``task.quantization`` / ``task.pruning``)
on real data (scikit-learn's UCI digits), checked in the TFLite interpreter:
fine-tuning an IGC network (group convolutions + channel permutations)
from a trained run's checkpoint, held-out accuracy after it, the outputs,
resume after SIGKILL (the best QAT weights kept), NaN, and recipe errors
that name their key."""

import json
import os
import re
import subprocess

import numpy as np
import pytest

from test_trainer import (ENV, LEARN, MIN_LEARNT_TOP1, _cli,
                          _epochs_saved, _log_rows)
from test_trainer import _overrides as _trainer_overrides
from test_trainer import (_digits_rgb, _rerun_after_kill, _result,
                          _run_and_kill, assert_igc_network)

from igc_keras.errors import NonFiniteLossError
from igc_keras.training.config import ConfigError, load_experiment
from igc_keras.training.experiment import load_init_checkpoint
from igc_keras.training.tasks import get_task
from igc_keras.training.trainer import train

RECIPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                       "recipes")
#: inputs shifted by 5000 (same weights): the predictions collapse, so an
#: epoch run with it scores worse on purpose
WRECKED = "task.model.input_mean=[5000.0, 5000.0, 5000.0]"


def _overrides(model_dir, epochs=2, steps=6, **extra):
    """The trainer tests' small IGC-network run (16x16 digits); QAT
    calibrates on 64 training images. Every epoch is scored on the 297
    held-out digits, and the TFLite file checked on 256 of them."""
    return _trainer_overrides(model_dir, epochs, steps, **{
        "task.quantization.calibration_images": 64,
        "trainer.warmup.epochs": 0, **extra})


#: Pruning runs: 8 steps an epoch at a rate of 0.01, so that the BatchNorm
#: statistics follow the pruned weights (at 4 steps and 0.05 the pruned
#: model scored 0.30-0.38 on the held-out digits; measured 0.71 so).
PRUNE = {"task.pruning.enabled": True,
         "trainer.learning_rate.initial_learning_rate": 0.01}


def assert_bridged_igc_network(model):
    """The tf_keras (tfmot) graph the bridge made holds grouped ``Conv2D``
    layers (groups > 1) and the channel permutations' transposes."""
    layers = [getattr(layer, "layer", layer) for layer in model.layers]
    assert any(type(layer).__name__ == "Conv2D" and layer.groups > 1
               for layer in layers)
    assert any(type(layer).__name__ == "Permute" and
               layer.name.endswith("_transpose") for layer in layers)


def build_model(config):
    """The recipe's model started from ``task.init_checkpoint``."""
    model = get_task(config).build_model("native")
    return load_init_checkpoint(model, config.task.init_checkpoint)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A learning run of the small recipe (Keras 3 fit): its ``best.keras``,
    which QAT and pruning fine-tune."""
    model_dir = str(tmp_path_factory.mktemp("base"))
    _, result = train(load_experiment(None, _trainer_overrides(
        model_dir, **LEARN)))
    assert max(result["history"]["val_top1"]) >= MIN_LEARNT_TOP1
    return os.path.join(model_dir, "best.keras")


def test_init_checkpoint_starts_from_the_trained_weights(trained):
    import keras
    config = load_experiment(None, _overrides(
        "unused", **{"task.init_checkpoint": trained}))
    model = build_model(config)
    saved = keras.saving.load_model(trained)
    for mine, theirs in zip(model.weights, saved.weights):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    other = load_experiment(None, _overrides("unused", **{
        "task.init_checkpoint": trained,
        "task.model.name": "igcv2_cifar_igcv2_c64_d20"}))
    with pytest.raises(ConfigError, match="task.init_checkpoint=.*do not "
                                          "match"):
        build_model(other)
    missing = load_experiment(None, _overrides("unused", **{
        "task.init_checkpoint": "/nonexistent/best.keras"}))
    with pytest.raises(ConfigError, match="task.init_checkpoint=.*does not "
                                          "exist"):
        build_model(missing)


def test_post_training_int8_of_the_trained_igc_network_agrees(trained,
                                                             tmp_path):
    """The README's int8-agreement figure cut down to the default suite: the
    trained IGC network's default (fused) full-int8 export, calibrated on
    100 training digits, against the float model on the 297 held-out
    digits in the TFLite interpreter. Measured 1.0 (297 of 297)."""
    import keras

    from igc_keras.optimize import compare_tflite, export_tflite
    model = keras.saving.load_model(trained)
    info = export_tflite(model, str(tmp_path / "int8.tflite"), "int8",
                         _digits_rgb("train", 16)[:100])
    assert info["fused"] and info["quantization"] == "int8"
    check = compare_tflite(model, info["path"], _digits_rgb("validation", 16))
    assert check["images"] == 297 and check["top1_agreement"] >= 0.98, check


def test_qat_recipe_fine_tunes_and_exports_a_checked_int8_file(
        trained, tmp_path):
    from igc_keras.optimize.tflite_interpreter import describe_tflite
    model_dir = str(tmp_path / "qat")
    config = load_experiment(None, _overrides(model_dir, epochs=2, steps=4, **{
        "task.init_checkpoint": trained, "task.quantization.enabled": True}))
    qat, result = train(config)
    assert any(type(layer).__name__ == "QuantizeWrapperV2"
               for layer in qat.layers)
    assert_bridged_igc_network(qat)
    assert result["steps"] == 8
    # the fake-quant IGC network still classifies the held-out digits
    print(f"QAT: held-out top-1 {result['final']['val_top1']:.3f}")
    assert result["final"]["val_top1"] >= MIN_LEARNT_TOP1, result
    assert result == _result(model_dir)
    check = result["tflite"]
    assert check["path"] == os.path.join(model_dir, "model_int8.tflite")
    assert check["quantization"] == "int8" and check["images"] == 256
    # the int8 file against the fake-quant model it came from, in the
    # interpreter, on real validation digits
    assert check["top1_agreement"] >= 0.95, check
    assert describe_tflite(check["path"])["quantization"] == "int8"
    # the exported SavedModel serves the QAT model's outputs
    import tensorflow as tf
    images = tf.constant(_digits_rgb("validation", 16)[:8])
    exported = tf.saved_model.load(os.path.join(model_dir, "export"))
    served = exported.signatures["serving_default"](images=images)
    np.testing.assert_allclose(next(iter(served.values())).numpy(),
                               qat.predict(images, verbose=0), atol=1e-4)
    assert os.path.exists(os.path.join(model_dir, "best_weights",
                                       "checkpoint.index"))
    assert [row["epoch"] for row in _log_rows(model_dir)] == ["0", "1"]


def test_pruning_run_killed_resumes_and_exports_a_sparse_model(
        trained, tmp_path):
    """SIGKILL after epoch 1 of 2 (pruned to 50% in epoch 1) is logged; the
    same command rerun does epoch 2 only, and the run's outputs are a
    Keras 3 IGC network whose pruned kernels are half zeros, that still
    classifies the held-out digits, and whose TFLite file runs, agrees and
    gzips smaller."""
    import keras
    import tensorflow as tf

    from igc_keras.optimize import run_tflite, sparsity
    model_dir = str(tmp_path / "prune")
    epochs, steps = 2, 8
    overrides = _overrides(model_dir, epochs=epochs, steps=steps, **{
        "task.init_checkpoint": trained, **PRUNE,
        "task.pruning.end_epoch": 1, "task.pruning.frequency": 1})
    _run_and_kill(overrides, _epochs_saved(model_dir), 0.5)
    _, result = _rerun_after_kill(overrides, model_dir, epochs * steps)
    print(f"pruning: held-out top-1 {result['final']['val_top1']:.3f}")
    assert result["final"]["val_top1"] >= MIN_LEARNT_TOP1, result
    pruned = keras.saving.load_model(os.path.join(model_dir, "pruned.keras"))
    assert type(pruned).__module__.startswith("keras")
    assert_igc_network(pruned)
    report = sparsity(pruned)
    assert 0.4 <= report["overall"] <= 0.5 and result["sparsity"] == \
        pytest.approx(report["overall"])
    kinds = {layer.name: type(layer).__name__ for layer in
             pruned.get_layer(index=-1).layers}
    for name, fraction in report["layers"].items():
        # tfmot prunes Conv2D and Dense kernels, not depthwise ones
        expected = 0.0 if kinds[name] == "DepthwiseConv2D" else 0.5
        assert fraction == pytest.approx(expected, abs=0.02), (name, fraction)
    check = result["tflite"]
    assert check["top1_agreement"] == 1.0 and check["max_abs_diff"] < 1e-3
    assert result["gzip_bytes"] < 0.8 * result["dense_gzip_bytes"]
    images = _digits_rgb("validation", 16)[:8]
    np.testing.assert_allclose(run_tflite(check["path"], images),
                               pruned.predict(images, verbose=0),
                               rtol=1e-4, atol=1e-4)
    exported = tf.saved_model.load(os.path.join(model_dir, "export"))
    np.testing.assert_allclose(exported.serve(images),
                               pruned.predict(images, verbose=0), atol=1e-4)


def test_nan_loss_stops_the_tfmot_loop_and_keeps_no_checkpoint(trained,
                                                                tmp_path):
    model_dir = str(tmp_path / "nan")
    config = load_experiment(None, _overrides(model_dir, epochs=1, steps=4, **{
        "task.init_checkpoint": trained, "task.quantization.enabled": True,
        "task.quantization.calibration_images": 0,
        "trainer.learning_rate.initial_learning_rate": 1e12}))
    with pytest.raises(NonFiniteLossError, match="the training loss is nan"):
        train(config)
    for name in ("best_weights", "best_weights.json", "result.json",
                 "model_int8.tflite"):
        assert not os.path.exists(os.path.join(model_dir, name)), name


def test_qat_run_mirrored_killed_resumes_and_keeps_the_best_weights(
        trained, tmp_path):
    """tf_keras fit under MirroredStrategy with 2 replicas (fresh processes:
    logical devices are set before TensorFlow starts). SIGKILL after epoch 1
    of 2 is logged; the same command rerun with wrecked inputs does epoch 2
    only, which scores worse: the best QAT weights (and their score) stay
    epoch 1's."""
    model_dir = str(tmp_path / "killed")
    epochs, steps = 2, 4
    overrides = _overrides(model_dir, epochs=epochs, steps=steps, **{
        "task.init_checkpoint": trained, "task.quantization.enabled": "true",
        "runtime.distribution_strategy": "mirrored",
        "runtime.logical_cpu_devices": 2,
        "trainer.checkpoint.export_saved_model": "false"})
    odd = subprocess.run(_cli(overrides + [
        "task.train_data.global_batch_size=31"]), capture_output=True,
        text=True, env=ENV, timeout=600)
    assert odd.returncode == 2
    assert ("task.train_data.global_batch_size=31 is not divisible by the 2 "
            "replicas") in odd.stderr
    _run_and_kill(overrides, _epochs_saved(model_dir), 0.5)
    state = os.path.join(model_dir, "best_weights.json")
    index = os.path.join(model_dir, "best_weights", "checkpoint.index")
    with open(state) as handle:
        before = json.load(handle)
    first = float(_log_rows(model_dir)[0]["val_top1"])
    assert before["value"] == pytest.approx(first) and before["epoch"] == 1
    # the mirrored fake-quant IGC network classifies the held-out digits
    print(f"mirrored QAT: held-out top-1 {first:.3f}")
    assert first >= MIN_LEARNT_TOP1
    stamp = os.stat(index).st_mtime_ns
    _, result = _rerun_after_kill(overrides + [WRECKED], model_dir,
                                  epochs * steps)
    assert result["replicas"] == 2, result
    later = float(_log_rows(model_dir)[1]["val_top1"])
    assert later < first
    with open(state) as handle:
        assert json.load(handle) == before
    assert os.stat(index).st_mtime_ns == stamp
    assert result["final"]["val_top1"] == pytest.approx(later)


@pytest.mark.parametrize("extra, message", [
    ({"task.quantization.enabled": True, "task.pruning.enabled": True},
     "both true"),
    ({"task.pruning.enabled": True, "task.pruning.target_sparsity": 1.5},
     "task.pruning.target_sparsity must be in"),
    ({"task.pruning.enabled": True, "task.pruning.end_epoch": 5},
     "end_epoch=5"),
    ({"task.pruning.enabled": True, "task.pruning.frequency": 0},
     "task.pruning.frequency must be"),
    ({"task.quantization.enabled": True, "runtime.loop": "custom"},
     "runtime.loop='custom'"),
    ({"task.quantization.enabled": True,
      "runtime.distribution_strategy": "tpu", "runtime.tpu": "local"},
     "runtime.distribution_strategy='tpu'"),
    ({"task.quantization.enabled": True,
      "runtime.mixed_precision_dtype": "mixed_float16"},
     "runtime.mixed_precision_dtype must be 'float32'"),
    ({"task.quantization.enabled": True, "trainer.warmup.epochs": 1,
      "trainer.learning_rate.type": "step"}, "trainer.warmup.epochs=1.0"),
    ({"task.quantization": {"enable": True}},
     "unknown key task.quantization.enable"),
    ({"task.pruning.enabled": True, "task.init_checkpoint": "null"},
     "fine-tune a trained model"),
    ({"task.quantization.enabled": True,
      "task.quantization.calibration_images": -1},
     "task.quantization.calibration_images must be >= 0"),
])
def test_model_optimization_recipe_errors_name_the_key(extra, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_experiment(None, _overrides("unused", **{
            "task.init_checkpoint": "runs/base/best.keras", **extra}))


@pytest.mark.parametrize("name", ["quickstart_qat.yaml",
                                  "quickstart_prune.yaml"])
def test_shipped_model_optimization_recipes_load(name):
    config = load_experiment(os.path.join(RECIPES, name))
    assert config.task.init_checkpoint == "runs/quickstart/best.keras"
    assert config.task.quantization.enabled or config.task.pruning.enabled
