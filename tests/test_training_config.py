"""Recipes: typed configs from YAML, overrides, validation naming the key."""

import os
import subprocess
import sys
import textwrap

import pytest

from igc_keras.training.config import (ConfigError, ExperimentConfig,
                                       load_experiment, to_dict)
from igc_keras.training.distribute import get_strategy, per_replica_batch_size


def test_recipe_overrides_defaults_and_set_overrides_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent("""
        runtime: {distribution_strategy: mirrored}
        task:
          model: {name: igcv3_0.7, num_classes: 10}
          train_data: {global_batch_size: 128}
        trainer: {epochs: 5, learning_rate: {type: step, boundaries_epochs: [2, 4]}}
    """))
    config = load_experiment(str(recipe), ["trainer.epochs=7",
                                           "task.model.kwargs={alpha: 0.5}"])
    assert config.task.model.name == "igcv3_0.7"
    assert config.task.train_data.global_batch_size == 128
    assert config.trainer.epochs == 7
    assert config.trainer.learning_rate.boundaries_epochs == [2.0, 4.0]
    assert config.task.model.kwargs == {"alpha": 0.5}
    assert config.task.validation_data.is_training is False  # default kept
    # round trip through YAML
    import yaml
    again = load_experiment(text=yaml.safe_dump(to_dict(config)))
    assert to_dict(again) == to_dict(config)
    assert isinstance(again, ExperimentConfig)


@pytest.mark.parametrize("text,message", [
    ("trainer: {epoch: 3}", r"unknown key trainer\.epoch; allowed keys under "
                            r"trainer: .*'epochs'"),
    ("trainer: {epochs: three}", r"trainer\.epochs: expected an integer; got "
                                 r"'three'"),
    ("task: {train_data: {global_batch_size: 0}}",
     r"task\.train_data\.global_batch_size must be >= 1; got 0"),
    ("runtime: {distribution_strategy: gpu}",
     r"runtime\.distribution_strategy: 'gpu' is not one of"),
    ("task: {validation_data: {source: folder}}",
     r"task\.validation_data\.data_dir is required"),
    ("runtime: {distribution_strategy: tpu}", r"runtime\.tpu must name"),
    ("[1, 2]", "must be a mapping at the top level"),
    ("trainer: {epochs: [", "is not valid YAML"),
])
def test_malformed_recipes_fail_fast_naming_the_key(text, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(text=text)


def test_bad_override_and_missing_file():
    with pytest.raises(ConfigError, match="key=value"):
        load_experiment(overrides=["trainer.epochs"])
    with pytest.raises(ConfigError, match="cannot read recipe"):
        load_experiment("/no/such/recipe.yaml")


class _FailingResolver:
    def __init__(self, tpu=None):
        raise ValueError(f"Could not lookup TPU metadata for {tpu}")


def test_tpu_resolver_errors_name_the_key():
    config = load_experiment(overrides=["runtime.distribution_strategy=tpu",
                                        "runtime.tpu=my-tpu"])
    with pytest.raises(ConfigError, match=r"runtime\.tpu='my-tpu': could not "
                                          r"resolve"):
        get_strategy(config.runtime, resolver_factory=_FailingResolver)
    # without a double the real resolver is asked, and fails clearly here
    with pytest.raises(ConfigError, match=r"runtime\.tpu='my-tpu'"):
        get_strategy(config.runtime)


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    config = load_experiment(overrides=[
        "runtime.distribution_strategy=multi_worker_mirrored"])
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        get_strategy(config.runtime)


def test_mirrored_on_two_logical_cpus_checks_batch_divisibility():
    """In a fresh process: 2 logical CPU devices, MirroredStrategy."""
    code = textwrap.dedent("""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from igc_keras.training.config import load_experiment, ConfigError
        from igc_keras.training.distribute import get_strategy, per_replica_batch_size
        config = load_experiment(overrides=["runtime.distribution_strategy=mirrored"])
        import os
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        print("replicas", strategy.num_replicas_in_sync)
        print("per_replica", per_replica_batch_size(64, strategy, "task.train_data.global_batch_size"))
        try:
            per_replica_batch_size(63, strategy, "task.train_data.global_batch_size")
        except ConfigError as error:
            print("error", error)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    assert "replicas 2" in result.stdout and "per_replica 32" in result.stdout
    assert ("error task.train_data.global_batch_size=63 is not divisible by the "
            "2 replicas") in result.stdout


def test_one_device_and_auto_on_cpu():
    config = load_experiment()
    strategy = get_strategy(config.runtime)
    assert strategy.num_replicas_in_sync == 1
    assert per_replica_batch_size(256, strategy, "k") == 256
