"""Detection through the recipe trainer, the SSD augmentations, export,
``igc-keras evaluate`` (COCO mAP) and ``igc-keras detect`` on real COCO
images (``../shared/data/coco_mini``)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from random_weights import randomize_weights

from igc_keras.training.config import ConfigError, load_experiment

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                    "coco_mini")
TRAIN_JSON = os.path.join(ROOT, "annotations", "instances_train2017.json")
VAL_JSON = os.path.join(ROOT, "annotations", "instances_val2017.json")
RECIPE = os.path.join(os.path.dirname(__file__), "..", "recipes",
                      "coco_ssdlite_igcv3_gpu.yaml")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def _overrides(model_dir, **extra):
    """The GPU recipe cut down to CPU size: 128 px, batch 4, 2x2 steps,
    COCO evaluation on the first 4 val images."""
    values = {
        "runtime.distribution_strategy": "one_device",
        "runtime.mixed_precision_dtype": "float32",
        "runtime.steps_per_execution": 1,
        "task.model.input_size": "[128, 128, 3]",
        "task.train_data.data_dir": os.path.join(ROOT, "train2017"),
        "task.train_data.annotation_file": TRAIN_JSON,
        "task.train_data.global_batch_size": 4,
        "task.validation_data.data_dir": os.path.join(ROOT, "val2017"),
        "task.validation_data.annotation_file": VAL_JSON,
        "task.validation_data.global_batch_size": 4,
        "trainer.epochs": 2, "trainer.steps_per_epoch": 2,
        "trainer.validation_steps": 1, "trainer.warmup.epochs": 0,
        "trainer.model_dir": model_dir, **extra}
    return [f"{key}={value}" for key, value in values.items()]


#: The README's overfit figure cut down to the default suite, through the
#: recipe trainer: IGCV3-SSDLite from scratch on the first 4 (annotated)
#: coco_mini training images (``max_images: 4``; 128 px, batch 4, no
#: augmentation, Adam 3e-3 cosine, 4 x 40 steps, ``dense`` group convs),
#: scored by pycocotools on the same 4 images. Measured AP 0.401, AP50 0.746 (training loss 4.10 ->
#: 0.005; 2 CPU cores, seed 0).
OVERFIT = {"task.train_data.augmentation": "none",
           "task.model.group_conv_implementation": "dense",
           "task.train_data.max_images": 4,
           "task.validation_data.data_dir": os.path.join(ROOT, "train2017"),
           "task.validation_data.annotation_file": TRAIN_JSON,
           "task.validation_data.max_images": 4,
           "trainer.epochs": 4, "trainer.steps_per_epoch": 40,
           "trainer.optimizer.type": "adam",
           "trainer.learning_rate.initial_learning_rate": 0.003,
           "trainer.learning_rate.base_batch_size": 4,
           "task.losses.weight_decay": 0.0}
MIN_OVERFIT_AP, MIN_OVERFIT_AP50 = 0.2, 0.5


def test_detection_recipe_overfits_exports_evaluates_and_detects(tmp_path):
    import keras

    from igc_keras_cli import main
    from igc_keras.detection import SSDLite
    from igc_keras.detection.coco import load_coco_annotations
    from igc_keras.training.trainer import evaluate, train
    from test_trainer import assert_igc_network

    model_dir = str(tmp_path / "run")
    config = load_experiment(RECIPE, _overrides(model_dir, **OVERFIT))
    model, result = train(config)
    assert result["loop"] == "fit" and result["steps"] == 160
    assert_igc_network(model)
    losses = result["history"]["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.1 * losses[0], losses
    assert np.isfinite(result["final"]["val_loss"])
    stats = result["coco_eval"]
    print(f"overfit 4 images: AP {stats['AP']:.3f} AP50 {stats['AP50']:.3f}")
    assert stats["images"] == 4 and stats["detections"] > 0
    assert set(stats) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert stats["AP"] >= MIN_OVERFIT_AP and stats["AP50"] >= \
        MIN_OVERFIT_AP50, stats

    # the saved model is an SSDLite that knows the COCO names
    loaded = keras.saving.load_model(os.path.join(model_dir, "last.keras"))
    assert isinstance(loaded, SSDLite)
    names = load_coco_annotations(TRAIN_JSON).categories.names
    assert loaded.class_names == names and names[0] == "person"

    # the SavedModel returns the same decoded detections as the model
    record = load_coco_annotations(VAL_JSON).images[0]
    photo = os.path.join(ROOT, "val2017", record.file_name)
    image = tf.image.resize(tf.cast(tf.io.decode_jpeg(tf.io.read_file(
        photo), channels=3), tf.float32), (128, 128))[None]
    exported = tf.saved_model.load(os.path.join(model_dir, "export"))
    served = exported.serve(image)  # (keep `exported` alive while serving)
    direct = model.predict_on_batch(image)
    count = int(direct["num_detections"][0])
    assert int(served["num_detections"][0]) == count > 0
    # on an unseen photo neighbouring anchors can score alike: detections
    # whose scores tie may come in either order, or fall either side of the
    # top-k cut. The scores (sorted) must agree; every detection must be found
    # (box, class, score) among the model's, except ties at the cut.
    np.testing.assert_allclose(served["scores"][0, :count],
                               direct["scores"][0, :count], atol=1e-5)
    last = float(direct["scores"][0, count - 1])

    def rows(out):
        return np.concatenate([
            np.asarray(out["boxes"][0, :count]),
            np.asarray(out["classes"][0, :count], "float32")[:, None],
            np.asarray(out["scores"][0, :count])[:, None]], axis=1)
    direct_rows, served_rows = rows(direct), rows(served)
    tolerance = np.array([1e-4] * 4 + [0, 2e-5])
    found = np.array([np.any(np.all(np.abs(direct_rows - row) <= tolerance,
                                    axis=1)) for row in served_rows])
    at_cut = served_rows[:, 5] <= last + 2e-5
    assert found[~at_cut].all() and found.mean() >= 0.9

    # igc-keras evaluate scores last.keras as the run did at its end
    evaluated = evaluate(config, os.path.join(model_dir, "last.keras"))
    assert evaluated["detections"] == stats["detections"]
    assert evaluated["AP"] == pytest.approx(stats["AP"], abs=1e-6)
    assert evaluated["mean_score"] == pytest.approx(stats["mean_score"],
                                                    rel=1e-4)

    # predict decodes a batch; detect returns boxes in the photo's pixels
    assert direct["boxes"].shape == (1, 100, 4)
    found = model.detect(tf.io.decode_jpeg(tf.io.read_file(photo)))
    assert len(found["boxes"]) == len(found["scores"]) > 0
    assert found["boxes"][:, [0, 2]].max() <= record.height
    assert found["boxes"][:, [1, 3]].max() <= record.width
    with pytest.raises(ValueError, match=r"`image` must be \(height, width"):
        model.detect(np.zeros((4, 4)))

    # igc-keras detect draws on the photo at its own size
    out = str(tmp_path / "boxes.png")
    assert main(["detect", photo, "--model", os.path.join(
        model_dir, "last.keras"), "--min-score", "0", "-o", out]) == 0
    drawn = keras.utils.img_to_array(keras.utils.load_img(out))
    assert drawn.shape == (record.height, record.width, 3)
    original = tf.io.decode_jpeg(tf.io.read_file(photo)).numpy()
    assert np.mean(np.abs(drawn - original) > 40) > 0.001  # boxes drawn
    assert main(["detect", str(tmp_path / "missing.jpg"), "--model", out]) == 2
    assert main(["detect", photo, "--model", out]) == 2  # not a .keras file


def test_detection_custom_loop(tmp_path):
    """The TPU / multi-worker path (a strategy.run host loop; its
    multi-replica mechanics are tested with classification in
    test_trainer.py) trains, checkpoints and evaluates the detector."""
    model_dir = str(tmp_path / "run")
    overrides = _overrides(model_dir, **{
        "runtime.loop": "custom", "trainer.epochs": 1,
        "task.model.group_conv_implementation": "dense",
        "trainer.checkpoint.export_saved_model": "false"})
    run = subprocess.run(
        [sys.executable, "-m", "igc_keras_cli", "train", RECIPE] +
        [arg for item in overrides for arg in ("--set", item)],
        capture_output=True, text=True, env=ENV, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(os.path.join(model_dir, "result.json")) as handle:
        result = json.load(handle)
    assert result["loop"] == "custom" and result["replicas"] == 1
    assert result["steps"] == 2
    assert np.isfinite(result["final"]["loss"])
    assert np.isfinite(result["final"]["val_loss"])
    assert result["coco_eval"]["images"] == 4
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert os.path.exists(os.path.join(model_dir, "best.keras"))


@pytest.mark.parametrize("override, key", [
    ("task.train_data.augmentation=imagenet", "task.train_data.augmentation"),
    ("task.train_data.annotation_file=null", "task.train_data.annotation_file"),
    ("task.train_data.source=digits", "task.train_data.source"),
    ("task.model.input_size=[320, 256, 3]", "task.model.input_size"),
    ("task.model.name=igcv2_1.0", "task.model.name"),
    ("task.model.num_classes=10", "task.model.num_classes"),
    ("task.train_data.max_images=0", "task.train_data.max_images"),
    ("task.validation_data.data_dir=/nonexistent",
     "task.validation_data.data_dir"),
])
def test_bad_detection_recipes_name_the_key(tmp_path, override, key):
    from igc_keras.training.experiment import check_inputs
    from igc_keras.training.tasks import get_task
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config = load_experiment(RECIPE, _overrides(str(tmp_path)) +
                                 [override])
        task = get_task(config)
        check_inputs(config, task)
        task.build_model("split")


def _painted(boxes, height=300, width=400):
    """A canvas with each box filled with its own grey level."""
    canvas = np.zeros((height, width, 3), "float32")
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        canvas[int(y0 * height):int(y1 * height),
               int(x0 * width):int(x1 * width)] = 10 * (i + 1)
    return canvas


def test_ssd_random_expand_moves_boxes_with_the_pixels():
    from igc_keras.data.detection import ssd_random_expand
    record = [r for r in __import__(
        "igc_keras.detection.coco", fromlist=["x"]).load_coco_annotations(
            VAL_JSON).images if 2 <= len(r.boxes) <= 12][0]
    image = _painted(record.boxes)
    for seed in range(5):
        tf.random.set_seed(seed)
        expanded, boxes = ssd_random_expand(image, record.boxes,
                                            fill=(255, 255, 255))
        expanded, boxes = expanded.numpy(), boxes.numpy()
        assert expanded.shape[0] >= image.shape[0]
        assert np.all((boxes >= 0) & (boxes <= 1))
        height, width = expanded.shape[:2]
        for (y0, x0, y1, x1), old in zip(boxes, record.boxes):
            # each box centre shows the pixel it showed before the expand
            cy, cx = (y0 + y1) / 2 * height, (x0 + x1) / 2 * width
            oy = (old[0] + old[2]) / 2 * image.shape[0]
            ox = (old[1] + old[3]) / 2 * image.shape[1]
            assert expanded[int(round(cy - 0.5)), int(round(cx - 0.5)), 0] == \
                image[int(round(oy - 0.5)), int(round(ox - 0.5)), 0]
        # the original image sits intact in the canvas
        assert np.isclose(expanded.astype("float64").sum(axis=(0, 1))[0] - 255 * (
            height * width - image.shape[0] * image.shape[1]),
            image.sum(axis=(0, 1))[0], rtol=1e-4)


def test_photometric_distort_keeps_range_and_changes_colours():
    from igc_keras.data.detection import photometric_distort
    photo = os.path.join(ROOT, "val2017", sorted(os.listdir(
        os.path.join(ROOT, "val2017")))[0])
    image = tf.cast(tf.io.decode_jpeg(tf.io.read_file(photo), channels=3),
                    tf.float32)
    out = photometric_distort(image, seed=3).numpy()
    assert out.shape == image.shape
    assert out.min() >= 0 and out.max() <= 255
    assert np.abs(out - image.numpy()).mean() > 1.0


def test_ssd_augmented_pipeline_yields_valid_targets():
    """Every augmentation setting on real images: matched anchors exist
    for most images and every target is finite and in range."""
    from igc_keras.data.detection import AUGMENTATIONS, coco_detection_dataset
    from igc_keras.detection.anchors import generate_anchors
    anchors = generate_anchors("igcv3_authors", 128)
    for augment in AUGMENTATIONS:
        dataset, _ = coco_detection_dataset(
            os.path.join(ROOT, "train2017"), TRAIN_JSON, anchors, 128,
            batch_size=8, augment=augment, seed=1)
        images, targets = next(iter(dataset))
        assert images.shape == (8, 128, 128, 3)
        assert float(tf.reduce_min(images)) >= 0
        assert float(tf.reduce_max(images)) <= 255
        assert np.all(np.isfinite(targets["boxes"].numpy()))
        classes = targets["classes"].numpy()
        assert classes.min() >= 0 and classes.max() <= 80
        assert np.mean((classes > 0).any(axis=1)) >= 0.5, augment
    with pytest.raises(ValueError, match="augment='mosaic'"):
        coco_detection_dataset(os.path.join(ROOT, "train2017"), TRAIN_JSON,
                               anchors, 128, augment="mosaic")


#: The README's overfit figure through ``applications/train_detector.py`` (a
#: front-end on the recipe trainer).
OVERFIT16 = ["--images", os.path.join(ROOT, "train2017"), "--annotations",
             TRAIN_JSON, "--image-size", "160", "--batch", "8", "--epochs",
             "20", "--steps-per-epoch", "20", "--max-images", "16",
             "--augment", "none", "--lr", "2e-3",
             "--group-conv-implementation", "dense"]


def test_train_detector_program_is_the_recipe_trainer(tmp_path, capsys):
    """Its flags resolve to a checked recipe (no training here: the slow
    test below runs it); a bad annotation file is a one-line error."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir,
                                    "applications"))
    try:
        import train_detector
    finally:
        sys.path.pop(0)
    args = train_detector.parse_args(OVERFIT16 + ["--output",
                                                  str(tmp_path / "out")])
    config = load_experiment(train_detector.RECIPE,
                             train_detector.overrides(args))
    assert config.task.type == "detection"
    assert config.task.model.num_classes == 80
    assert config.task.model.input_size == [160, 160, 3]
    for data in (config.task.train_data, config.task.validation_data):
        assert data.max_images == 16 and data.annotation_file == TRAIN_JSON
    assert config.trainer.optimizer.type == "adam"
    assert config.runtime.mixed_precision_dtype == "float32"
    assert train_detector.main(["--images", "x", "--annotations",
                                str(tmp_path / "none.json")]) == 2
    assert "--annotations" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_overfits_coco_training_images_to_stated_map(tmp_path):
    """README figure: IGCV3-SSDLite from scratch on the first 16 coco_mini
    training images (160 px, no augmentation, 20 x 20 steps, Adam 2e-3
    cosine), scored by pycocotools on them."""
    script = os.path.join(os.path.dirname(__file__), "..", "applications",
                          "train_detector.py")
    run = subprocess.run(
        [sys.executable, script] + OVERFIT16 + ["--output", str(tmp_path)],
        capture_output=True, text=True, env=ENV, timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(tmp_path / "result.json") as handle:
        stats = json.load(handle)["coco_eval"]
    assert stats["images"] == 16
    assert stats["AP50"] >= 0.9 and stats["AP"] >= 0.7


def test_bad_input_never_crashes_the_augmented_pipeline(tmp_path):
    """A grayscale photo, an image without boxes, degenerate, out-of-range
    and crowd boxes (real images): many SSD-augmented epochs, no crash, and
    every batch's targets are valid."""
    from igc_keras.data.detection import coco_detection_dataset
    from igc_keras.detection.anchors import generate_anchors
    from igc_keras.detection.coco import load_coco_annotations
    records = load_coco_annotations(VAL_JSON).images[:3]
    images = []
    for i, record in enumerate(records):
        pixels = tf.io.decode_jpeg(tf.io.read_file(os.path.join(
            ROOT, "val2017", record.file_name)), channels=3)
        if i == 1:
            pixels = tf.image.rgb_to_grayscale(pixels)
        name = f"{i}.jpg"
        tf.io.write_file(str(tmp_path / name), tf.io.encode_jpeg(pixels))
        images.append({"id": i + 1, "file_name": name,
                       "height": record.height, "width": record.width})
    annotations = [  # image 3 has none
        {"id": 1, "image_id": 1, "category_id": 1,
         "bbox": [20, 30, 120, 90]},
        {"id": 2, "image_id": 1, "category_id": 18,
         "bbox": [-40, -10, 100, 5000]},  # out of range: clipped
        {"id": 3, "image_id": 2, "category_id": 1,
         "bbox": [10, 10, 0, 25]},  # degenerate: dropped
        {"id": 4, "image_id": 2, "category_id": 18, "bbox": [50, 60, 70, 40]},
        {"id": 5, "image_id": 2, "category_id": 1, "bbox": [0, 0, 200, 200],
         "iscrowd": 1}]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}))
    anchors = generate_anchors("igcv3_authors", 128)
    dataset, coco = coco_detection_dataset(str(tmp_path), str(path), anchors,
                                           128, batch_size=2, seed=0)
    counts = coco.counts()
    assert (counts.images, counts.kept, counts.clipped, counts.empty,
            counts.crowd, counts.non_finite) == (3, 3, 1, 1, 1, 0)
    for images_batch, targets in dataset.take(30):
        assert images_batch.shape == (2, 128, 128, 3)
        assert np.all(np.isfinite(targets["boxes"].numpy()))
        classes = targets["classes"].numpy()
        assert classes.min() >= 0 and classes.max() <= 2


def test_detector_exports_to_tflite_with_on_device_postprocessing(tmp_path):
    """SSDLite -> .tflite with TFLite_Detection_PostProcess: the interpreter
    finds what the Keras detector finds on a real COCO photo."""
    import keras

    from igc_keras.detection import SSDLite
    from igc_keras.detection.coco import load_coco_annotations
    from igc_keras.optimize.detector_tflite import (export_detector_tflite,
                                                    run_detector_tflite)
    keras.utils.set_random_seed(0)
    detector = SSDLite("igcv3_1.0", num_classes=80, image_size=128,
                       score_threshold=0.05)
    record = load_coco_annotations(VAL_JSON).images[0]
    image = tf.image.resize(tf.cast(tf.io.decode_jpeg(tf.io.read_file(
        os.path.join(ROOT, "val2017", record.file_name)), channels=3),
        tf.float32), (128, 128)).numpy()
    # random weights (He-scaled kernels, BatchNorm near identity) so scores
    # and boxes differ between anchors, and one class raised everywhere so
    # NMS keeps many boxes
    detector(image[None])
    randomize_weights(detector, depthwise=("depthwise",))
    for level in range(6):
        layer = detector.network.get_layer(f"level{level}_class_conv")
        kernel, bias = layer.get_weights()
        bias.reshape(-1, 81)[:, 1] += 6.0
        layer.set_weights([kernel, bias])
        # box encodings of trained size: He-scaled random ones reach
        # exp(5) in the size decode, where float32 rounding of the two
        # runtimes' convolutions moves a corner by more than 1e-3
        boxes = detector.network.get_layer(f"level{level}_box_conv")
        boxes.set_weights([w * 0.25 for w in boxes.get_weights()])
    raw = detector(image[None])
    info = export_detector_tflite(detector, str(tmp_path / "det.tflite"))
    assert info["bytes"] > 1e6
    found = run_detector_tflite(info["path"], image)
    expected = detector.predict_on_batch(image[None])
    count = int(expected["num_detections"][0])
    assert raw["classes"].shape[-1] == 81
    assert len(found["scores"]) == count > 0
    order = np.argsort(-found["scores"], kind="stable")[:10]
    assert len(np.unique(expected["scores"][0, :10])) == 10  # no ties
    np.testing.assert_allclose(found["scores"][order],
                               expected["scores"][0, :10], atol=1e-4)
    # the TF op clips boxes to the image, the TFLite op does not
    np.testing.assert_allclose(np.clip(found["boxes"][order], 0, 1),
                               expected["boxes"][0, :10], atol=1e-3)
    np.testing.assert_array_equal(found["classes"][order],
                                  expected["classes"][0, :10])
