"""What the models compute on one Keras backend, for tests/test_backends.py.

``KERAS_BACKEND=jax python tests/backend_outputs.py FOLDER`` reads
``FOLDER/images.npz`` (real photos, written by the test under TensorFlow)
and each network's ``NAME.weights.h5`` / ``NAME.keras`` (saved under
TensorFlow), and writes ``FOLDER/outputs-<backend>.npz``: per network the
builder's logits with the weights file, the ``.keras`` file's logits, every
``pyramid_outputs`` level, ``fuse``'s logits (dense and native forms), the
same network in each group-convolution implementation, and the ``design``
counts; and a KerasHub classifier preset saved under TensorFlow, loaded by
``keras_hub.models.ImageClassifier.from_preset``; with a second argument
(an MXNet-written IGCV3 ``.params`` file), IGCV3-1.0's logits with it. It also records whether importing the package and building and
running a network from a weights file imported TensorFlow (Keras' own
``get_config`` imports it where it is installed, so the check comes before
any), and the one-line error a TensorFlow-only part gives on this backend.
"""

import json
import sys

import keras
import numpy as np

#: name -> (builder, kwargs, image size). Real variants, cut in size where
#: a full one would only cost time.
NETWORKS = {
    "igcv3_1.0": ("IGCV3", {"alpha": 1.0}, 224),
    "igcv1_l4m32": ("IGCV1", {"variant": "L4M32", "alpha": 0.5}, 128),
    "igcv2_1.0": ("IGCV2", {"alpha": 1.0}, 160),
    "igcv1_cifar": ("IGCV1CIFAR", {}, 32),
    "igcv2_cifar": ("IGCV2CIFAR", {"family": "igcv2_star"}, 32),
}


def build(name, weights=None, **extra):
    from igc_keras import applications
    builder, kwargs, size = NETWORKS[name]
    return getattr(applications, builder)(
        input_shape=(size, size, 3), classifier_activation=None,
        weights=weights, **kwargs, **extra)


def images(folder, name):
    return np.load(f"{folder}/images.npz")[f"size{NETWORKS[name][2]}"]


def compute(folder, name):
    """``{key: array}`` of everything one network computes here."""
    from igc_keras.design import count_mult_adds, count_params
    from igc_keras.layers import group_conv_implementation
    from igc_keras.optimize import fuse
    x = images(folder, name)
    run = lambda model: keras.ops.convert_to_numpy(model(x, training=False))
    model = build(name, weights=f"{folder}/{name}.weights.h5")
    out = {"logits": run(model),
           "keras_file": run(keras.saving.load_model(
               f"{folder}/{name}.keras")),
           "fused_dense": run(fuse(model, group_convolutions="dense")),
           "fused_native": run(fuse(model, group_convolutions="native")),
           "counts": np.array([count_params(model), count_mult_adds(model)])}
    if hasattr(model, "pyramid_outputs"):  # the ImageNet builders
        features = keras.Model(model.inputs, model.pyramid_outputs)
        for level, value in features(x, training=False).items():
            out[level] = keras.ops.convert_to_numpy(value)
    for implementation in ("split", "dense"):
        with group_conv_implementation(implementation):
            other = build(name, weights=f"{folder}/{name}.weights.h5")
        out[implementation] = run(other)
    return out


def save_hub_preset(folder):
    """An IGCV3 KerasHub classifier preset (random weights) in
    ``FOLDER/hub_classifier``."""
    from igc_keras import hub
    from random_weights import randomize_weights
    backbone = hub.IGCV3Backbone(alpha=0.35, image_shape=(128, 128, 3))
    converter = hub.IGCV3ImageConverter.from_preset("igcv3_1.0_imagenet",
                                                    image_size=(128, 128))
    classifier = hub.IGCV3ImageClassifier(
        backbone=backbone, num_classes=7,
        preprocessor=hub.IGCV3ImageClassifierPreprocessor(converter))
    randomize_weights(classifier)
    classifier.save_to_preset(f"{folder}/hub_classifier")


def hub_outputs(folder):
    """The saved preset, loaded by plain KerasHub: the classifier's logits
    on the photos through its preprocessor, and its backbone's P3."""
    import keras_hub

    import igc_keras.hub  # noqa: F401  (registers the classes)
    classifier = keras_hub.models.ImageClassifier.from_preset(
        f"{folder}/hub_classifier")
    x = np.load(f"{folder}/images.npz")["size128"]
    pixels = (x + 1) * 127.5  # RGB 0..255
    backbone = classifier.backbone
    features = keras.Model(backbone.inputs, backbone.pyramid_outputs["P3"])
    return {"hub/logits": classifier.predict(pixels, verbose=0),
            "hub/P3": keras.ops.convert_to_numpy(features(x))}


def tensorflow_only_error():
    """The message a TensorFlow-only part gives here (None on TensorFlow)."""
    try:
        import igc_keras.training  # noqa: F401
    except ImportError as error:
        return str(error)
    return None


def tensorflow_imported(folder):
    """Whether the package's imports, a build and a run import TensorFlow."""
    import igc_keras  # noqa: F401  (registers the layers)
    import igc_keras.applications  # noqa: F401
    import igc_keras.design  # noqa: F401
    from igc_keras.optimize import fuse  # noqa: F401
    name = "igcv3_1.0"
    build(name, weights=f"{folder}/{name}.weights.h5")(images(folder, name))
    return "tensorflow" in sys.modules


def authors_checkpoint_logits(params, images):
    """IGCV3-1.0's logits with an authors'-format ``.params`` checkpoint
    (converted on the fly, as ``weights="imagenet"`` does)."""
    from igc_keras.applications import IGCV3
    model = IGCV3(weights=params, classifier_activation=None)
    return keras.ops.convert_to_numpy(model(images))


def main(folder, params=None):
    imported = tensorflow_imported(folder)
    results = {f"{name}/{key}": value for name in NETWORKS
               for key, value in compute(folder, name).items()}
    results.update(hub_outputs(folder))
    if params:  # an MXNet-written checkpoint of the authors' graph
        images = np.load(f"{params[:-len('model-0000.params')]}"
                         f"reference.npz")["images_nhwc"].astype("float32")
        results["authors/logits"] = authors_checkpoint_logits(params, images)
    report = {"backend": keras.backend.backend(),
              "tensorflow_imported": imported,
              "tensorflow_only_error": tensorflow_only_error()}
    np.savez(f"{folder}/outputs-{report['backend']}.npz", **results)
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
