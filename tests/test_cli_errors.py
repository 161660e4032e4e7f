"""Bad input through the installed ``igc-keras`` console script, as a user
meets it: one or two lines naming the argument / key / file and its value,
exit status 2, no traceback (``--debug`` / ``IGC_KERAS_DEBUG`` show one);
``--help`` answers without importing TensorFlow; a successful command
prints no TensorFlow C++ log line."""

import os
import pickle

import keras
import numpy as np
import pytest

from console import TF_LOG_LINE, igc_keras, user_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")
COCO_VAL = os.path.join(ROOT, "..", "shared", "data", "coco_mini", "val2017")
PHOTO = os.path.join(COCO_VAL, "000000000139.jpg")


def assert_user_error(run, *named):
    """Exit status 2, at most two lines on stderr naming each of
    ``named``, no traceback and no TensorFlow C++ log line."""
    printed = run.stdout + run.stderr
    assert run.returncode == 2, printed[-3000:]
    assert "Traceback" not in printed, printed[-3000:]
    assert not TF_LOG_LINE.search(printed), printed[-3000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, run.stderr
    for text in named:
        assert text in run.stderr, (text, run.stderr)
    return run.stderr


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"],
                                  ["export", "--help"]])
def test_help_does_not_import_tensorflow(argv):
    run = igc_keras(*argv, python_flags=("-X", "importtime"))
    assert run.returncode == 0, run.stderr[-3000:]
    imported = [line.split("|")[-1].strip() for line in run.stderr.splitlines()
                if line.startswith("import time:")]
    assert "argparse" in imported
    assert not [name for name in imported
                if name.split(".")[0] in ("tensorflow", "keras", "igc_keras")]
    assert "usage: igc-keras" in run.stdout


def test_models_prints_no_tensorflow_log():
    run = igc_keras("models", "igcv3*")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "igcv3_1.0" in run.stdout
    assert not TF_LOG_LINE.search(run.stdout + run.stderr), run.stderr
    assert run.stderr.strip() == "", run.stderr


@pytest.mark.parametrize("content", [
    b"",                                         # empty
    bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8)),
    pickle.dumps({"arg:conv1_weight": [1.0, 2.0]}),   # never unpickled
    # a real NDArray list header that promises 5 arrays, then ends
    (0x112).to_bytes(8, "little") + (0).to_bytes(8, "little") +
    (5).to_bytes(8, "little"),
], ids=["empty", "random", "pickle", "truncated"])
def test_convert_of_a_bad_file_names_it(tmp_path, content):
    path = tmp_path / "igcv3-0000.params"
    path.write_bytes(content)
    assert_user_error(igc_keras("convert", str(path), "--model", "igcv3_1.0"),
                      "igcv3-0000.params")


def test_recipe_errors_name_the_key_before_any_work(tmp_path):
    """Values TensorFlow or Keras would refuse mid-run, and a broken YAML
    value in --set; the model folder is never created."""
    model_dir = tmp_path / "run"
    cases = {"trainer.optimizer.momentum=-1": "trainer.optimizer.momentum",
             "task.train_data.shuffle_buffer=0":
                 "task.train_data.shuffle_buffer",
             "task.train_data.min_crop_area=0": "task.train_data.min_crop_area",
             "task.model.input_size=[32, 32, 1]": "task.model.input_size",
             "trainer.epochs=[1,": "--set trainer.epochs"}
    for override, key in cases.items():
        run = igc_keras("train", QUICKSTART, "--set", override, "--set",
                        f"trainer.model_dir={model_dir}")
        assert_user_error(run, key)
        assert not model_dir.exists()


def test_debug_shows_the_traceback(tmp_path):
    args = ("train", QUICKSTART, "--set", "trainer.optimizer.momentum=-1",
            "--set", f"trainer.model_dir={tmp_path / 'run'}")
    for run in (igc_keras("--debug", *args),
                igc_keras(*args, env=user_env(IGC_KERAS_DEBUG="1"))):
        assert run.returncode != 0
        assert "Traceback" in run.stderr
        assert "ConfigError: trainer.optimizer.momentum" in run.stderr


def _other_architecture(path):
    """A .keras of a network other than the quickstart's IGCV3-1.0."""
    from igc_keras.registry import create_model
    model = create_model("regconv_cifar_w18_d20", classes=10,
                         input_shape=(32, 32, 3))
    model.save(path)


def test_evaluate_checks_the_checkpoint_is_the_recipes_model(tmp_path):
    missing = str(tmp_path / "missing.keras")
    assert_user_error(igc_keras("evaluate", QUICKSTART, "--checkpoint",
                                missing), "--checkpoint", "missing.keras")
    other = str(tmp_path / "other.keras")
    _other_architecture(other)
    message = assert_user_error(
        igc_keras("evaluate", QUICKSTART, "--checkpoint", other),
        "--checkpoint", "other.keras", "regconv", "igcv3")
    assert "10 outputs" in message


def test_bench_of_a_file_that_is_not_tflite(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"an image, not a model" * 10)
    assert_user_error(igc_keras("bench", str(path)), "model.tflite", "TFL3")


def test_detect_refuses_an_output_folder_that_does_not_exist(tmp_path):
    output = str(tmp_path / "no" / "such" / "folder" / "boxes.png")
    assert_user_error(igc_keras("detect", PHOTO, "--model", "x.keras", "-o",
                                output), "-o/--output", "does not exist")


def test_detect_refuses_a_model_that_is_not_a_detector(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = str(tmp_path / "classifier.keras")
    model.save(path)
    assert_user_error(igc_keras("detect", PHOTO, "--model", path, "-o",
                                str(tmp_path / "boxes.png")),
                      "classifier.keras", "not an SSDLite detector")
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    assert_user_error(igc_keras("detect", PHOTO, "--model", str(damaged)),
                      "damaged.keras", "not a loadable Keras model")


def test_export_of_a_missing_model_names_it(tmp_path):
    assert_user_error(igc_keras("export", str(tmp_path / "nothing.keras")),
                      "nothing.keras", "does not exist")


def test_a_coco_file_naming_a_missing_image_is_refused_before_training(
        tmp_path):
    """The annotation file lists an image that is not in the image folder:
    the run stops before any model is built, naming the file and both
    paths."""
    import json
    with open(os.path.join(ROOT, "..", "shared", "data", "coco_mini",
                           "annotations", "instances_val2017.json")) as handle:
        coco = json.load(handle)
    coco["images"][0] = dict(coco["images"][0], file_name="missing.jpg")
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(coco))
    model_dir = tmp_path / "run"
    recipe = os.path.join(ROOT, "recipes", "coco_ssdlite_igcv3_gpu.yaml")
    sets = {"trainer.model_dir": str(model_dir),
            "task.train_data.data_dir": COCO_VAL,
            "task.train_data.annotation_file": str(annotations),
            "task.validation_data.data_dir": COCO_VAL,
            "task.validation_data.annotation_file": str(annotations)}
    run = igc_keras("train", recipe, *[a for k, v in sets.items()
                                       for a in ("--set", f"{k}={v}")])
    assert_user_error(run, "missing.jpg", "instances.json")
    assert not model_dir.exists()
