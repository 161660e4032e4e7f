"""Training off the happy path, on real data: a NaN loss, class folders that
do not fit the model, unreadable images, unusable ``trainer.model_dir``, and
a run killed and resumed with worse epochs (``best.keras`` is kept)."""

import json
import os
import shutil
import tarfile

import keras
import pytest

from conftest import DATA
from igc_keras.errors import ConfigError, NonFiniteLossError
from igc_keras.training.config import load_experiment
from igc_keras.training.trainer import train
from test_trainer import (ENV, LEARN, MIN_LEARNT_TOP1, _cli, _epochs_saved,
                          _log_rows,
                          _overrides, _result, _run_and_kill,
                          assert_igc_network)

import subprocess  # noqa: E402  (after the test helpers)


@pytest.fixture(scope="module")
def cifar12(tmp_path_factory):
    """Real CIFAR-10 test JPEGs as class folders: ``train/`` with the 10
    classes and 2 more (copies named ``extra_a``, ``extra_b``), 8 images
    each, and ``val/`` with 3 of the classes."""
    root = tmp_path_factory.mktemp("cifar12")
    counts = {}
    with tarfile.open(os.path.join(DATA, "cifar10",
                                   "cifar10_test.tar.gz")) as archive:
        for member in archive:
            parts = member.name.split("/")
            if member.isfile() and len(parts) >= 3 and counts.get(
                    parts[-2], 0) < 8:
                counts[parts[-2]] = counts.get(parts[-2], 0) + 1
                target = root / "train" / parts[-2] / parts[-1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
    assert len(counts) == 10
    for extra, source in (("extra_a", "cat"), ("extra_b", "dog")):
        shutil.copytree(root / "train" / source, root / "train" / extra)
    for name in ("cat", "dog", "ship"):
        shutil.copytree(root / "train" / name, root / "val" / name)
    return root


def _folder_config(tmp_path, train_dir, val_dir, classes=10):
    return load_experiment(overrides=_overrides(str(tmp_path / "run")) + [
        f"task.model.num_classes={classes}",
        "task.train_data.source=folder", f"task.train_data.data_dir={train_dir}",
        "task.train_data.global_batch_size=8",
        "task.validation_data.source=folder",
        f"task.validation_data.data_dir={val_dir}"])


def test_more_class_folders_than_classes_is_refused(cifar12, tmp_path):
    train_dir = str(cifar12 / "train")
    config = _folder_config(tmp_path, train_dir, train_dir)
    with pytest.raises(ConfigError, match=r"task\.train_data\.data_dir=.* holds "
                                          r"12 class folders .*'extra_a'.*"
                                          r"num_classes=10"):
        train(config)
    assert not os.path.exists(tmp_path / "run")


def test_validation_classes_other_than_training_classes_are_refused(
        cifar12, tmp_path):
    config = _folder_config(tmp_path, str(cifar12 / "train"),
                            str(cifar12 / "val"), classes=12)
    with pytest.raises(ConfigError, match=r"task\.validation_data\.data_dir=.*"
                                          r"\['cat', 'dog', 'ship'\]; they must "
                                          r"be the same as"):
        train(config)


def test_unreadable_images_are_skipped_by_name_before_training(cifar12,
                                                               tmp_path):
    train_dir = tmp_path / "train"
    shutil.copytree(cifar12 / "train", train_dir)
    shutil.rmtree(train_dir / "extra_a")
    shutil.rmtree(train_dir / "extra_b")
    good = (train_dir / "cat" / os.listdir(train_dir / "cat")[0]).read_bytes()
    (train_dir / "cat" / "truncated.jpg").write_bytes(good[:300])
    config = _folder_config(tmp_path, str(train_dir), str(train_dir))
    config = load_experiment(overrides=_overrides(str(tmp_path / "run"), 1, 2)
                             + ["task.train_data.source=folder",
                                f"task.train_data.data_dir={train_dir}",
                                "task.train_data.global_batch_size=8",
                                "task.validation_data.source=folder",
                                f"task.validation_data.data_dir={train_dir}"])
    with pytest.warns(UserWarning, match=r"skipping 1 of 81 image file\(s\) "
                                         r"that cannot be decoded: .*"
                                         r"truncated\.jpg"):
        _, result = train(config)
    assert result["steps"] == 2
    # a class whose every image is unreadable is an error before training
    for path in (train_dir / "dog").iterdir():
        path.write_bytes(b"not an image")
    with pytest.raises(ConfigError, match=r"no image of class subfolder\(s\) "
                                          r"\['dog'\] can be decoded"):
        train(config)


@pytest.mark.parametrize("where, message", [
    ("file", "is a file, not a folder"),
    ("below_file", "cannot be created: .* is a file"),
    ("sys", "cannot be created or written"),
])
def test_unusable_model_dir_is_refused_before_the_model_is_built(
        tmp_path, where, message):
    (tmp_path / "file").write_text("x")
    model_dir = {"file": str(tmp_path / "file"),
                 "below_file": str(tmp_path / "file" / "run"),
                 # sysfs: no folder can be made there, even by root
                 "sys": "/sys/igc_keras_test/run"}[where]
    config = load_experiment(overrides=_overrides(model_dir))
    with pytest.raises(ConfigError, match=r"trainer\.model_dir=.*" + message):
        train(config)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_nan_loss_stops_the_run_and_writes_no_checkpoint(tmp_path, loop):
    model_dir = str(tmp_path / loop)
    config = load_experiment(overrides=_overrides(model_dir, **{
        "runtime.loop": loop,
        "trainer.learning_rate.initial_learning_rate": 1e12,
        "trainer.warmup.epochs": 0}))
    with pytest.raises(NonFiniteLossError, match=r"the training loss is nan at "
                                                 r"epoch 1, step \d+ of 6.*"
                                                 r"learning rate"):
        train(config)
    for name in ("best.keras", "last.keras", "result.json"):
        assert not os.path.exists(os.path.join(model_dir, name)), name


def test_nan_loss_is_a_one_line_error_from_the_command_line(tmp_path):
    run = subprocess.run(_cli(_overrides(str(tmp_path / "cli")) + [
        "trainer.learning_rate.initial_learning_rate=1e12",
        "trainer.warmup.epochs=0"]), capture_output=True, text=True, env=ENV,
        timeout=600)
    assert run.returncode == 1
    assert "igc-keras train: Training stopped: the training loss is nan" in \
        run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_mirrored_run_killed_resumes_and_keeps_the_best_model(tmp_path, loop):
    """MirroredStrategy with 2 replicas on 2 logical CPUs (fresh processes:
    logical devices are set before TensorFlow starts); the first three
    epochs learn (held-out accuracy). SIGKILL in epoch 4 of 4, restart with
    the same command but inputs shifted by 5000 (same weights; the
    predictions collapse, so the resumed epoch scores worse on purpose):
    every step runs once, each epoch is logged once, and ``best.keras``
    stays the best of the first three.

    ``fit`` backs up at epoch ends and is killed 1 s into epoch 4; the
    custom loop checkpoints every 8 steps and is killed once step 3 x 24 + 8
    is saved (it resumes inside epoch 4).
    """
    model_dir = str(tmp_path / loop)
    epochs, steps = 4, LEARN["trainer.steps_per_epoch"]
    overrides = _overrides(model_dir, **{
        **LEARN, "trainer.epochs": epochs, "runtime.loop": loop,
        "runtime.distribution_strategy": "mirrored",
        "runtime.logical_cpu_devices": 2,
        "trainer.checkpoint.save_every_n_steps": 8})
    # the checkpoint state names step 3 x 24 + 8 (its files are written
    # before the state: killed between them, the run resumes at 3 x 24)
    state = os.path.join(model_dir, "checkpoints", "checkpoint")

    def mid_epoch_saved():
        if not os.path.exists(state):
            return False
        with open(state) as handle:
            return (f'model_checkpoint_path: "ckpt-{3 * steps + 8}"'
                    in handle.read())
    _run_and_kill(overrides, mid_epoch_saved if
                  loop == "custom" else _epochs_saved(model_dir, 3),
                  0.0 if loop == "custom" else 1.0)
    assert len(_log_rows(model_dir)) == 3, "the kill missed epoch 4"
    assert not os.path.exists(os.path.join(model_dir, "result.json"))
    best = os.path.join(model_dir, "best.keras")
    with open(os.path.join(model_dir, "best.json")) as handle:
        before = json.load(handle)
    scores = [float(r["val_top1"]) for r in _log_rows(model_dir)]
    assert before["value"] == pytest.approx(max(scores))
    assert before["epoch"] == 1 + scores.index(max(scores))
    print(f"mirrored {loop}: held-out top-1 {scores}")
    assert max(scores) >= MIN_LEARNT_TOP1  # learnt in 3 epochs (chance 0.1)
    stamp = os.stat(best).st_mtime_ns

    rerun = subprocess.run(_cli(overrides + [
        "task.model.input_mean=[5000.0, 5000.0, 5000.0]"]),
        capture_output=True, text=True, env=ENV, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    result = _result(model_dir)
    assert result["steps"] == epochs * steps and result["replicas"] == 2
    assert [r["epoch"] for r in _log_rows(model_dir)] == ["0", "1", "2", "3"]
    if loop == "custom":
        resumed = int(rerun.stdout.split("Resumed from")[1].split("ckpt-")[1]
                      .split()[0])
        assert 3 * steps < resumed < epochs * steps
    later = float(_log_rows(model_dir)[3]["val_top1"])
    assert later < max(scores)
    assert os.stat(best).st_mtime_ns == stamp
    with open(os.path.join(model_dir, "best.json")) as handle:
        assert json.load(handle) == before
    assert result["final"]["val_top1"] == pytest.approx(later)
    assert_igc_network(keras.saving.load_model(best))


def test_a_new_run_in_an_old_folder_keeps_its_own_best(tmp_path):
    """A finished run leaves nothing to resume; the same folder trained again
    from scratch keeps its own best model, not the earlier run's score."""
    model_dir = str(tmp_path / "again")
    first_config = load_experiment(overrides=_overrides(model_dir, **{
        **LEARN, "trainer.epochs": 2}))
    _, first = train(first_config)
    with open(os.path.join(model_dir, "best.json")) as handle:
        assert json.load(handle)["value"] == pytest.approx(
            max(first["history"]["val_top1"]))
    # the second run cannot learn (inputs shifted by 5000): its best is far
    # below the first run's, and still its own
    second_config = load_experiment(overrides=_overrides(model_dir, **{
        **LEARN, "trainer.epochs": 1, "trainer.steps_per_epoch": 6,
        "task.model.input_mean": "[5000.0, 5000.0, 5000.0]"}))
    _, second = train(second_config)
    print(f"first run {first['history']['val_top1']}, second "
          f"{second['history']['val_top1']}")
    assert second["history"]["val_top1"][0] < max(first["history"]["val_top1"])
    with open(os.path.join(model_dir, "best.json")) as handle:
        state = json.load(handle)
    assert state["epoch"] == 1 and state["value"] == pytest.approx(
        second["history"]["val_top1"][0])


def test_a_corrupt_best_score_file_is_a_clear_error(tmp_path):
    from igc_keras.errors import TrainingError
    from igc_keras.training.callbacks import SaveModel
    state = tmp_path / "best.json"
    state.write_text('{"monitor": "val_top1", "val')
    keeper = SaveModel(str(tmp_path / "best.keras"), "val_top1", "max")
    with pytest.raises(TrainingError, match=r"best\.json.*cannot be read.*"
                                            r"remove it"):
        keeper.on_train_begin()
    state.write_text('{"monitor": "val_top1", "mode": "max", "value": 0.5}')
    keeper.on_train_begin()
    assert keeper.best == 0.5 and not keeper.improved(0.4)
    assert keeper.improved(0.6) and not keeper.improved(float("nan"))


def test_the_log_keeps_one_row_per_epoch_when_an_epoch_is_redone(tmp_path):
    """A run killed after logging epoch 2 (of rows 0, 1 and a row cut short)
    but before its resume point redoes epoch 2: the rows of epoch 2 and
    later and the cut row go, earlier rows stay, nothing is written twice."""
    import csv

    from igc_keras.training.callbacks import EpochLog
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,val_top1\n0,2.0,0.3\n1,1.5,0.4\n2,1.2,0.")
    log = EpochLog(str(path))
    log.on_train_begin()
    log.on_epoch_end(1, {"loss": 1.4, "val_top1": 0.45})
    log.on_epoch_end(2, {"loss": 1.1, "val_top1": 0.5})
    log.on_train_end()
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["epoch"], r["loss"]) for r in rows] == [
        ("0", "2.0"), ("1", "1.4"), ("2", "1.1")]
    # a fresh file and a file holding only a header get one header
    for text in (None, "epoch,loss,val_top1\n"):
        fresh = tmp_path / f"fresh{text is None}.csv"
        if text:
            fresh.write_text(text)
        log = EpochLog(str(fresh))
        log.on_train_begin()
        log.on_epoch_end(0, {"loss": 2.0, "val_top1": 0.3})
        log.on_train_end()
        assert fresh.read_text().splitlines() == [
            "epoch,loss,val_top1", "0,2.0,0.3"]
