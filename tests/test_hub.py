"""igc_keras.hub: the IGC backbones, classifiers and presets in KerasHub,
and KerasHub's RetinaNet on IGCV3 trained on COCO images
(``../shared/data/coco_mini``) and scored by pycocotools."""

import os

import keras
import keras_hub
import numpy as np
import pytest

from conftest import DATA
from igc_keras import hub
from igc_keras.applications import IGCV3
from igc_keras.applications.pretrained import PRETRAINED
from igc_keras.data.classification import read_images
from igc_keras.errors import ConfigError
from random_weights import randomize_weights

COCO = os.path.join(DATA, "coco_mini")
to_numpy = keras.ops.convert_to_numpy


@pytest.fixture(scope="module")
def photos():
    return read_images(os.path.join(DATA, "imagenet", "val_samples"),
                       (128, 128), 4)


@pytest.mark.parametrize("cls, kwargs", [
    (hub.IGCV3Backbone, {"alpha": 0.35, "projection_groups": 2}),
    (hub.IGCV1Backbone, {"variant": "L4M32", "alpha": 0.5}),
    (hub.IGCV2Backbone, {"alpha": 0.5, "groups": 4}),
])
def test_backbone_preset_round_trip(cls, kwargs, photos, tmp_path):
    backbone = randomize_weights(cls(image_shape=(128, 128, 3), **kwargs))
    # the builder's network: same layer names and outputs
    builder = {"IGCV3Backbone": IGCV3}.get(cls.__name__)
    if builder:
        model = builder(include_top=False, input_shape=(128, 128, 3),
                        **kwargs)
        assert [l.name for l in model.layers[1:]] == [
            l.name for l in backbone.layers[1:]]
    config = backbone.get_config()
    for key, value in kwargs.items():
        assert config[key] == value, key
    features = keras.Model(backbone.inputs, backbone.pyramid_outputs)
    levels = features(photos)
    assert sorted(levels) == ["P1", "P2", "P3", "P4", "P5"]
    for level, value in levels.items():
        assert value.shape[1] == 128 // 2 ** int(level[1:]), level
    folder = str(tmp_path / "preset")
    backbone.save_to_preset(folder)
    # plain KerasHub finds the class from the folder
    loaded = keras_hub.models.Backbone.from_preset(folder)
    assert type(loaded) is cls and loaded.get_config() == config
    np.testing.assert_array_equal(to_numpy(loaded(photos)),
                                  to_numpy(backbone(photos)))
    again = keras_hub.models.RetinaNetBackbone(
        image_encoder=loaded, min_level=3, max_level=5, use_p5=False)
    assert sorted(again.pyramid_outputs) == ["P3", "P4", "P5"]


def test_named_presets_load_the_released_weights_through_the_package(
        release, tmp_path):
    """``from_preset("igcv3_1.0_imagenet")``: the package's fetch (blob id
    checked) and conversion of the authors' file, here an MXNet-written
    checkpoint of the authors' graph served as the release."""
    _, reference, cached = release
    assert sorted(hub.PRESETS) == sorted(f"{n}_imagenet" for n in PRETRAINED)
    assert list(hub.IGCV3Backbone.presets) == ["igcv3_1.0_imagenet"]
    images = reference["images_nhwc"].astype("float32")
    backbone = hub.IGCV3Backbone.from_preset("igcv3_1.0_imagenet")
    assert cached.exists()
    features = IGCV3(weights="imagenet", include_top=False)
    np.testing.assert_array_equal(to_numpy(backbone(images)),
                                  to_numpy(features(images)))
    # the classifier with the authors' 1000-class head: MXNet's logits
    classifier = hub.IGCV3ImageClassifier.from_preset("igcv3_1.0_imagenet")
    logits = to_numpy(classifier(images)).astype("float64")
    np.testing.assert_allclose(logits, reference["logits"], rtol=0,
                               atol=1e-4 * np.abs(reference["logits"]).max())
    # its preprocessor: the table's (x - mean) at 224 px
    pixels = np.full((1, 224, 224, 3), 200.0, "float32")
    np.testing.assert_allclose(
        to_numpy(classifier.preprocessor(pixels))[0, 0, 0],
        200 - np.array(PRETRAINED["igcv3_1.0"].preprocessing.mean),
        rtol=1e-6)
    # a new head, and the preset saved and loaded by plain KerasHub
    five = hub.IGCV3ImageClassifier.from_preset("igcv3_1.0_imagenet",
                                                num_classes=5)
    assert five.output_dense.units == 5
    folder = str(tmp_path / "classifier")
    five.save_to_preset(folder)
    loaded = keras_hub.models.ImageClassifier.from_preset(folder)
    assert type(loaded) is hub.IGCV3ImageClassifier
    assert type(loaded.preprocessor) is hub.IGCV3ImageClassifierPreprocessor
    np.testing.assert_array_equal(to_numpy(loaded(images)),
                                  to_numpy(five(images)))
    with pytest.raises(ConfigError, match="preset='igcv1_l4m32_imagenet' is "
                                          "an IGCV1 checkpoint"):
        hub.IGCV3Backbone.from_preset("igcv1_l4m32_imagenet")


def test_image_classifier_fine_tunes_on_real_images(tmp_path):
    """KerasHub's fit on 600 real CIFAR-10 photos (RGB 0..255 through the
    IGCV3 preprocessor): the loss falls and held-out accuracy beats chance;
    the fine-tuned preset reloads with the same predictions."""
    data = np.load(os.path.join(DATA, "cifar10", "original_test_first932.npz"))
    x, y = data["x"].astype("float32"), data["y"]
    keras.utils.set_random_seed(0)
    converter = hub.IGCV3ImageConverter.from_preset("igcv3_1.0_imagenet",
                                                    image_size=(32, 32))
    classifier = hub.IGCV3ImageClassifier(
        backbone=hub.IGCV3Backbone(alpha=0.5, image_shape=(32, 32, 3)),
        num_classes=10, preprocessor=hub.IGCV3ImageClassifierPreprocessor(
            converter))
    classifier.compile(optimizer=keras.optimizers.Adam(2e-3))
    history = classifier.fit(x[:600], y[:600], batch_size=50, epochs=6,
                             verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    predicted = classifier.predict(x[600:], verbose=0).argmax(-1)
    accuracy = float((predicted == y[600:]).mean())
    print(f"held-out accuracy {accuracy:.3f} on {len(predicted)} images, "
          f"losses {losses}")
    assert accuracy > 0.15, accuracy  # chance 0.1, its std on 332: 0.016
    folder = str(tmp_path / "finetuned")
    classifier.save_to_preset(folder)
    loaded = keras_hub.models.ImageClassifier.from_preset(folder)
    np.testing.assert_allclose(loaded.predict(x[600:632], verbose=0),
                               classifier.predict(x[600:632], verbose=0),
                               rtol=0, atol=1e-5)


def test_retinanet_on_igcv3_trains_on_coco_and_is_scored_by_pycocotools():
    from igc_keras.detection.coco import evaluate_coco, load_coco_annotations
    from igc_keras.hub import retinanet
    train = os.path.join(COCO, "annotations", "instances_train2017.json")
    val = os.path.join(COCO, "annotations", "instances_val2017.json")
    # the scoring path: the reader's own boxes, as detections, score AP 1
    coco = load_coco_annotations(val)
    records = coco.select()
    truth = list(retinanet.coco_dataset(os.path.join(COCO, "val2017"), val,
                                        128, 16, training=False)
                 .map(lambda x, y: y).as_numpy_iterator())
    labels = np.concatenate([t["labels"] for t in truth])
    detections = {"boxes": np.concatenate([t["boxes"] for t in truth]),
                  "labels": labels.clip(0).astype(int),
                  "confidence": np.ones_like(labels),
                  "num_detections": (labels >= 0).sum(1)}
    results = retinanet.coco_results(records, detections, 128,
                                     coco.categories)
    assert evaluate_coco(val, results, [r.image_id for r in records])[
        "AP"] == 1.0
    # a short run: the loss falls; pycocotools scores the detections
    keras.utils.set_random_seed(0)
    detector = retinanet.igcv3_retinanet(num_classes=80, image_size=128,
                                         alpha=0.35)
    detector.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = detector.fit(retinanet.coco_dataset(
        os.path.join(COCO, "train2017"), train, image_size=128,
        batch_size=8), epochs=4, steps_per_epoch=5, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.1 * losses[0] and np.isfinite(losses).all(), losses
    scores = retinanet.evaluate(detector, os.path.join(COCO, "val2017"), val)
    print(f"RetinaNet-IGCV3 losses {losses}; COCO {scores}")
    assert scores["detections"] > 0
    assert 0.0 <= scores["AP"] <= 1.0
    with pytest.raises(ValueError, match="`image_size` must be a positive "
                                         "multiple of 128"):
        retinanet.igcv3_retinanet(image_size=300)
