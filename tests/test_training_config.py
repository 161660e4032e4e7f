"""Recipes: typed configs from YAML, overrides, validation naming the key."""

import glob
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from conftest import SHARED

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
    ("task: {validation_data: {is_training: true}}",
     r"task\.validation_data\.is_training must be false"),
    ("task: {losses: {label_smoothing: 1.5}}",
     r"task\.losses\.label_smoothing must be in \[0, 1\); got 1\.5"),
    ("runtime: {steps_per_execution: 0}",
     r"runtime\.steps_per_execution must be >= 1; got 0"),
    ("trainer: {epochs: 10, warmup: {epochs: 20}}",
     r"trainer\.warmup\.epochs must be in \[0, trainer\.epochs=10\]"),
    ("trainer: {learning_rate: {boundaries_epochs: [30, 10]}}",
     r"trainer\.learning_rate\.boundaries_epochs must be increasing"),
    ("task: {model: {input_mean: [1, 2]}}",
     r"task\.model\.input_mean must be 3 RGB values"),
    ("task: {train_data: {source: digits, split: training}}", None),
    ("trainer: {epochs: [", "is not valid YAML"),
    ("trainer: {optimizer: {momentum: -1}}",
     r"trainer\.optimizer\.momentum must be in \[0, 1\); got -1"),
    ("trainer: {optimizer: {type: adam, nesterov: true}}",
     r"trainer\.optimizer\.nesterov=true is SGD's"),
    ("task: {train_data: {shuffle_buffer: 0}}",
     r"task\.train_data\.shuffle_buffer must be >= 1; got 0"),
    ("task: {train_data: {min_crop_area: 0}}",
     r"task\.train_data\.min_crop_area must be in \(0, 1\]; got 0"),
    ("task: {model: {input_size: [224, 224, 1]}}",
     r"task\.model\.input_size=\[224, 224, 1\]: .*3 channels.*got 1"),
    ("task: {model: {name: igcv9}}", r"task\.model \(name='igcv9'\): unknown model"),
    ("task: {model: {kwargs: {depth: 3}}}",
     r"task\.model\.kwargs\.depth=3 is not an argument of IGCV3; allowed: "
     r"\[.*'alpha'"),
    ("task: {model: {kwargs: {classes: 3}}}",
     r"task\.model\.kwargs\.classes: set by the task"),
    ("trainer: {learning_rate: {type: step, decay_rate: 0}}",
     r"trainer\.learning_rate\.decay_rate must be > 0"),
    ("trainer: {learning_rate: {initial_learning_rate: .nan}}",
     r"initial_learning_rate: expected a finite number"),
])
def test_malformed_recipes_fail_fast_naming_the_key(text, message):
    if message is None:  # a bad split is caught when the data is checked
        from igc_keras.training.experiment import check_inputs
        from igc_keras.training.tasks import get_task
        with pytest.raises(ConfigError, match=r"task\.train_data\.source: the "
                                              r"digits dataset has splits"):
            config = load_experiment(text=text)
            check_inputs(config, get_task(config))
        return
    with pytest.raises(ConfigError, match=message):
        load_experiment(text=text)


def test_numbers_in_exponent_form_are_numbers_in_recipes_and_overrides():
    """PyYAML (YAML 1.1) reads ``1e-3`` and ``1.0e12`` as strings; recipes
    read them as numbers, integral ones also for integer keys."""
    config = load_experiment(text=textwrap.dedent("""
        trainer:
          learning_rate: {initial_learning_rate: 1e-3, decay_rate: 1.0e12}
          checkpoint: {max_to_keep: 1e1}
        task: {losses: {weight_decay: 4E-5}}
    """), overrides=["task.train_data.shuffle_buffer=1e4",
                     "trainer.optimizer.momentum=9e-1"])
    assert config.trainer.learning_rate.initial_learning_rate == 1e-3
    assert config.trainer.learning_rate.decay_rate == 1e12
    assert config.trainer.checkpoint.max_to_keep == 10
    assert config.task.losses.weight_decay == 4e-5
    assert config.task.train_data.shuffle_buffer == 10000
    assert config.trainer.optimizer.momentum == 0.9
    with pytest.raises(ConfigError, match=r"trainer\.epochs: expected an "
                                          r"integer; got 1.5"):
        load_experiment(overrides=["trainer.epochs=15e-1"])


def test_bad_override_and_missing_file():
    with pytest.raises(ConfigError, match="key=value"):
        load_experiment(overrides=["trainer.epochs"])
    with pytest.raises(ConfigError, match=r"--set trainer\.epochs=\{3 is not "
                                          r"valid YAML"):
        load_experiment(overrides=["trainer.epochs={3"])
    with pytest.raises(ConfigError, match="is not a dotted recipe key"):
        load_experiment(overrides=["trainer epochs=3"])
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


class _RecordingResolver:
    """A stand-in for TPUClusterResolver (no TPU on this machine)."""

    created = []

    def __init__(self, tpu=None):
        self.tpu = tpu
        _RecordingResolver.created.append(self)


def test_tpu_branch_connects_initialises_and_builds_the_strategy(monkeypatch):
    """Only the TPU itself is a double: the branch's calls are checked."""
    calls = []
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster",
                        lambda resolver: calls.append(("connect", resolver)))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                        lambda resolver: calls.append(("initialise", resolver)))
    monkeypatch.setattr(tf.distribute, "TPUStrategy",
                        lambda resolver: ("TPUStrategy", resolver))
    for name, expected in (("local", None), ("my-tpu", "my-tpu")):
        config = load_experiment(overrides=[
            "runtime.distribution_strategy=tpu", f"runtime.tpu={name}"])
        kind, resolver = get_strategy(config.runtime,
                                      resolver_factory=_RecordingResolver)
        assert kind == "TPUStrategy" and resolver.tpu == expected
        assert calls[-2:] == [("connect", resolver), ("initialise", resolver)]


RECIPES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), os.pardir,
                                        "recipes", "*.yaml")))


@pytest.mark.parametrize("path", RECIPES, ids=os.path.basename)
def test_every_recipe_loads_and_names_a_registered_model(path):
    from igc_keras.registry import get_model_spec
    config = load_experiment(path)
    get_model_spec(config.task.model.name)
    assert config.trainer.model_dir.startswith("runs/")
    if "_tpu" in path:
        assert config.runtime.distribution_strategy == "tpu"
        assert config.runtime.mixed_precision_dtype == "mixed_bfloat16"
        assert config.trainer.warmup.epochs > 0
        assert os.path.exists(path.replace("_tpu", "_gpu"))  # the GPU twin
    if "_gpu" in path and not config.task.quantization.enabled:
        # (QAT runs in float32: its validation refuses mixed precision)
        assert config.runtime.mixed_precision_dtype == "mixed_float16"


@pytest.mark.parametrize("name,epochs,boundaries", [
    ("cifar10_igcv1_l24m2_d20", 400, [200, 300, 350]),
    ("cifar100_igcv2_c64_d20", 400, [200, 300, 350]),
    ("tiny_imagenet_igcv2_c64_d20", 200, [100, 150, 175]),
])
def test_small_dataset_recipes_follow_the_igcv2_paper(name, epochs, boundaries):
    """The seed's Sec. 5: SGD Nesterov 0.1, x0.1 steps, wd 1e-4, batch 64."""
    seed = open(os.path.join(SHARED, "seeds", "001_6309027698336f6e.txt")).read()
    assert "Weight decay is set as 0.0001" in seed
    assert "batch size as 64 for 400 epochs" in seed
    assert ("multiplying with a factor 0.1 at 200 epochs, 300 epochs and 350 "
            "epochs") in seed
    assert "factor 0.1 at 100 epochs, 150 epochs and 175 epochs" in seed
    config = load_experiment(os.path.join(os.path.dirname(__file__), os.pardir,
                                          "recipes", f"{name}.yaml"))
    trainer = config.trainer
    assert trainer.optimizer.type == "sgd" and trainer.optimizer.nesterov
    assert trainer.optimizer.momentum == 0.9
    assert trainer.learning_rate.type == "step"
    assert trainer.learning_rate.initial_learning_rate == 0.1
    assert trainer.learning_rate.boundaries_epochs == boundaries
    assert trainer.learning_rate.decay_rate == 0.1
    assert trainer.epochs == epochs
    assert config.task.losses.weight_decay == 0.0001
    assert config.task.train_data.global_batch_size == 64
    if name.startswith("tiny"):
        assert config.task.model.kwargs == {"stem_strides": 2}


def test_imagenet_igcv3_recipes_follow_the_authors():
    """architectures.md: SGD 0.045 per 96 images x0.98 per epoch, 480 epochs,
    wd 4e-5; linearly scaled to the recipe's global batch."""
    from igc_keras.training.schedules import learning_rate_schedule
    spec = open(os.path.join(SHARED, "specs", "architectures.md")).read()
    assert ("SGD lr 0.045 x 0.98 per epoch, 480 epochs, wd 4e-5, batch 96"
            in spec)
    for hardware in ("tpu", "gpu"):
        config = load_experiment(os.path.join(
            os.path.dirname(__file__), os.pardir, "recipes",
            f"imagenet_igcv3_1.0_{hardware}.yaml"))
        batch = config.task.train_data.global_batch_size
        schedule = learning_rate_schedule(config.trainer, batch, 100)
        peak = 0.045 * batch / 96
        warmup = int(config.trainer.warmup.epochs * 100)
        assert float(schedule(warmup // 2)) == pytest.approx(
            peak * 0.98 ** (warmup // 100) / 2, rel=1e-5)
        # after warmup: x0.98 per epoch (100 steps here)
        assert float(schedule(1000)) == pytest.approx(peak * 0.98 ** 10,
                                                      rel=1e-5)
        assert config.task.losses.weight_decay == 4e-5
        assert config.trainer.epochs == 480
