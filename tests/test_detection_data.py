"""COCO detection data that holds: malformed records named by id, non-finite
boxes dropped and counted, missing images and wrong image sizes refused
before training, the kept / clipped / dropped summary; small COCO files
written here that name real coco_mini photos."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import DATA
from igc_keras.data.detection import coco_detection_dataset
from igc_keras.data.sharding import shard_dataset
from igc_keras.detection.anchors import generate_anchors
from igc_keras.errors import DataError
from igc_keras.training.config import load_experiment

ROOT = os.path.join(DATA, "coco_mini")
VAL_DIR = os.path.join(ROOT, "val2017")
VAL_JSON = os.path.join(ROOT, "annotations", "instances_val2017.json")
RECIPE = os.path.join(os.path.dirname(__file__), "..", "recipes",
                      "coco_ssdlite_igcv3_gpu.yaml")
ANCHORS = generate_anchors("igcv3_authors", 128)


def _photos(count=2):
    """``count`` real val2017 image records (id, file_name, width, height)."""
    with open(VAL_JSON) as handle:
        images = json.load(handle)["images"][:count]
    return [{key: image[key] for key in ("id", "file_name", "width",
                                         "height")} for image in images]


def _write(tmp_path, images, annotations, categories=None):
    path = tmp_path / "instances_mini.json"
    path.write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": categories or [{"id": 1, "name": "person"},
                                     {"id": 18, "name": "dog"}]}))
    return str(path)


def _annotation(index, image_id, bbox, category_id=1, **extra):
    return {"id": index, "image_id": image_id, "category_id": category_id,
            "bbox": bbox, **extra}


def test_summary_counts_kept_clipped_crowd_non_finite_and_empty(tmp_path):
    """NaN and infinite boxes are dropped and counted like empty and crowd
    ones; the pipeline trains on the rest with finite targets."""
    first, second = _photos()
    fid, sid = first["id"], second["id"]
    path = _write(tmp_path, [first, second], [
        _annotation(1, fid, [10, 20, 100, 80]),
        _annotation(2, fid, [-30, 5, 100, 50], 18),  # clipped
        _annotation(3, fid, [float("nan"), 10, 50, 50]),  # non-finite
        _annotation(4, sid, [5, 5, float("inf"), 40]),  # non-finite
        _annotation(5, sid, [10, 10, 0, 30]),  # empty
        _annotation(6, sid, [1e6, 1e6, 20, 20]),  # empty once clipped
        _annotation(7, sid, [0, 0, 200, 200], iscrowd=1),  # crowd
        _annotation(8, sid, [50, 60, 70, 40], 18)])
    dataset, coco = coco_detection_dataset(VAL_DIR, path, ANCHORS, 128,
                                           batch_size=2, seed=0)
    counts = coco.counts()
    assert (counts.images, counts.kept, counts.clipped, counts.crowd,
            counts.non_finite, counts.empty) == (2, 3, 1, 1, 2, 2)
    assert counts.summary() == (
        "coco: instances_mini.json: 2 images, 3 boxes kept (1 clipped), "
        "dropped: 1 crowd, 2 non-finite, 2 empty")
    assert coco.counts([sid]).summary() == (
        "coco: instances_mini.json: 1 images, 1 boxes kept (0 clipped), "
        "dropped: 1 crowd, 1 non-finite, 2 empty")
    for record in coco.images:
        assert np.isfinite(record.boxes).all()
    assert [len(r.boxes) for r in coco.images] == [2, 1]
    for images, targets in dataset.take(4):
        assert images.shape == (2, 128, 128, 3)
        assert np.isfinite(targets["boxes"].numpy()).all()
        assert targets["classes"].numpy().max() <= 2


@pytest.mark.parametrize("change, expected", [
    (lambda a: a.pop("bbox"),
     r"annotation id 7 \(image {image}\): 'bbox' is missing; expected "
     r"\[x, y, width, height\] numbers"),
    (lambda a: a.update(bbox="abc"),
     r"annotation id 7 \(image {image}\): 'bbox' is 'abc'; expected "
     r"\[x, y, width, height\] numbers"),
    (lambda a: a.update(bbox=[1, 2, 3]),
     r"annotation id 7 \(image {image}\): 'bbox' is \[1, 2, 3\]"),
    (lambda a: a.update(bbox=[1, "2", 3, 4]),
     r"annotation id 7 \(image {image}\): 'bbox' is \[1, '2', 3, 4\]"),
    (lambda a: a.update(category_id=99),
     r"annotation id 7 \(image {image}\): 'category_id' is 99; expected one "
     r"of the file's category ids \[1, 18\]"),
    (lambda a: a.update(image_id=123456789),
     r"annotation id 7: 'image_id' is 123456789; expected the id of an "
     r"image"),
])
def test_malformed_annotations_are_named_by_id(tmp_path, change, expected):
    photo = _photos(1)[0]
    annotation = _annotation(7, photo["id"], [10, 10, 50, 50])
    change(annotation)
    path = _write(tmp_path, [photo], [_annotation(6, photo["id"],
                                                  [1, 1, 9, 9]), annotation])
    with pytest.raises(DataError, match="instances_mini.json: " +
                       expected.format(image=photo["id"])):
        coco_detection_dataset(VAL_DIR, path, ANCHORS, 128)


@pytest.mark.parametrize("key, message", [
    ("file_name", r"image id {image}: 'file_name' is missing; expected the "
                  r"image's file name"),
    ("width", r"image id {image}: 'width' is missing; expected a positive "
              r"number of pixels"),
    ("height", r"image id {image}: 'height' is missing"),
])
def test_image_records_without_name_or_size_are_named(tmp_path, key,
                                                      message):
    photo = _photos(1)[0]
    del photo[key]
    path = _write(tmp_path, [photo], [])
    with pytest.raises(DataError, match=message.format(image=photo["id"])):
        coco_detection_dataset(VAL_DIR, path, ANCHORS, 128)


def test_a_category_without_name_is_named(tmp_path):
    path = _write(tmp_path, _photos(1), [], categories=[
        {"id": 1, "name": "person"}, {"id": 18, "supercategory": "animal"}])
    with pytest.raises(DataError, match=r"instances_mini.json: category id "
                                        r"18: 'name' is missing; expected "
                                        r"the category's name"):
        coco_detection_dataset(VAL_DIR, path, ANCHORS, 128)


def test_a_missing_image_file_is_refused_naming_it(tmp_path):
    photo = _photos(1)[0]
    absent = dict(photo, id=424242, file_name="not_in_coco_mini.jpg")
    path = _write(tmp_path, [photo, absent], [])
    with pytest.raises(DataError, match=r"1 of the 2 selected images are "
                                        r"not in .*'.*not_in_coco_mini.jpg' "
                                        r"\(image id 424242\)"):
        coco_detection_dataset(VAL_DIR, path, ANCHORS, 128)
    # selecting only the present image reads it
    dataset, _ = coco_detection_dataset(VAL_DIR, path, ANCHORS, 128,
                                        batch_size=1, training=False,
                                        image_ids=[photo["id"]])
    assert next(iter(dataset))[0].shape == (1, 128, 128, 3)


def test_a_record_size_other_than_the_image_is_refused(tmp_path):
    """The record says 64x64 for a real photo: refused up front (from the
    file header), naming the image id and both sizes; with the file check
    off, decoding the photo fails naming it."""
    photo = _photos(1)[0]
    wrong = dict(photo, width=64, height=64)
    path = _write(tmp_path, [wrong], [_annotation(1, photo["id"],
                                                  [4, 4, 30, 30])])
    real = f"{photo['width']}x{photo['height']}"
    with pytest.raises(DataError, match=(
            rf"image id {photo['id']} \('{photo['file_name']}'\) is {real} "
            rf"\(width x height\) but its record says 64x64")):
        coco_detection_dataset(VAL_DIR, path, ANCHORS, 128)
    dataset, _ = coco_detection_dataset(VAL_DIR, path, ANCHORS, 128,
                                        batch_size=1, training=False,
                                        check_files=False)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=photo["file_name"]):
        next(iter(dataset))


def _config(tmp_path, train_json, **extra):
    values = {"runtime.distribution_strategy": "one_device",
              "task.model.input_size": "[128, 128, 3]",
              "task.model.num_classes": 2,
              "task.train_data.data_dir": VAL_DIR,
              "task.train_data.annotation_file": train_json,
              "task.train_data.global_batch_size": 1,
              "task.validation_data.data_dir": VAL_DIR,
              "task.validation_data.annotation_file": train_json,
              "task.validation_data.global_batch_size": 1,
              "trainer.model_dir": str(tmp_path / "run"), **extra}
    return load_experiment(RECIPE, [f"{k}={v}" for k, v in values.items()])


def test_the_trainer_checks_images_and_prints_the_summary_first(tmp_path,
                                                                capsys):
    """``check_inputs`` (run before training and before evaluation) prints
    each COCO source's summary and refuses a missing image naming it."""
    from igc_keras.training.experiment import check_inputs
    from igc_keras.training.tasks import get_task
    first, second = _photos()
    path = _write(tmp_path, [first, second], [
        _annotation(1, first["id"], [10, 20, 100, 80]),
        _annotation(2, second["id"], [float("nan"), 1, 2, 3])])
    config = _config(tmp_path, path, **{"task.validation_data.max_images": 1})
    task = get_task(config)
    assert check_inputs(config, task) == (2, 1)
    lines = capsys.readouterr().out.splitlines()
    assert ("task.train_data: coco: instances_mini.json: 2 images, 1 boxes "
            "kept (0 clipped), dropped: 0 crowd, 1 non-finite, 0 empty"
            ) in lines
    assert ("task.validation_data: coco: instances_mini.json: 1 images, 1 "
            "boxes kept (0 clipped), dropped: 0 crowd, 0 non-finite, 0 "
            "empty") in lines
    # the recipe trainer reads the same pipeline
    dataset = task.dataset(config.task.train_data, "task.train_data", 1,
                           None, False)
    images, targets = next(iter(dataset))
    assert images.shape == (1, 128, 128, 3)
    assert targets["classes"].shape == (1, len(task.anchors))

    absent = dict(second, id=7, file_name="gone.jpg")
    path = _write(tmp_path, [first, absent], [])
    with pytest.raises(DataError, match=r"'.*gone.jpg' \(image id 7\)"):
        check_inputs(_config(tmp_path, path), get_task(_config(tmp_path,
                                                               path)))


def test_shards_split_the_selected_images_between_pipelines(tmp_path):
    """``shard_dataset``: pipeline ``i`` of ``n`` reads every ``n``-th
    element from ``i``; the detection pipeline's shards split the images."""
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=1)
    numbers = tf.data.Dataset.range(7)
    assert list(shard_dataset(numbers, context).as_numpy_iterator()) == \
        [1, 3, 5]
    assert list(shard_dataset(numbers, None).as_numpy_iterator()) == \
        list(range(7))
    photos = _photos(3)
    path = _write(tmp_path, photos, [])
    sizes = []
    for index in range(2):
        context = tf.distribute.InputContext(2, index)
        dataset, _ = coco_detection_dataset(VAL_DIR, path, ANCHORS, 128,
                                            batch_size=1, training=False,
                                            input_context=context)
        sizes.append(sum(1 for _ in dataset))
    assert sizes == [2, 1]


def test_header_sizes_are_the_decoded_sizes(tmp_path):
    """Every coco_mini JPEG and a PNG of one: the header's (height, width)
    is what TF decodes; a file of another format gives None."""
    from igc_keras.data.coco_images import image_file_size
    names = sorted(os.listdir(VAL_DIR))[:20]
    for name in names:
        pixels = tf.io.decode_image(tf.io.read_file(os.path.join(
            VAL_DIR, name)), channels=3, expand_animations=False)
        assert image_file_size(os.path.join(VAL_DIR, name)) == \
            tuple(pixels.shape[:2]), name
    cropped = pixels[:123, :77]
    tf.io.write_file(str(tmp_path / "crop.png"), tf.io.encode_png(cropped))
    assert image_file_size(str(tmp_path / "crop.png")) == (123, 77)
    (tmp_path / "notes.txt").write_text("not an image")
    assert image_file_size(str(tmp_path / "notes.txt")) is None
