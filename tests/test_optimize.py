"""igc_keras.optimize on real CIFAR-10 images (``../shared/data/cifar10``):
the tf_keras bridge, tfmot QAT and pruning, TFLite export checked in the
TFLite interpreter, and the CLI."""

import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from random_weights import randomize_weights

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                    os.pardir, "shared", "data", "cifar10")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _cifar_train(per_class):
    """The first ``per_class`` CIFAR-10 training JPEGs of each class."""
    images, labels = [], []
    with tarfile.open(os.path.join(DATA, "cifar10_train.tar.gz")) as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
        classes = sorted({m.name.split("/")[1] for m in members})
        for member in members:
            _, name, file = member.name.split("/")
            if int(file.split(".")[0]) < per_class:
                images.append(tf.io.decode_jpeg(
                    archive.extractfile(member).read()).numpy())
                labels.append(classes.index(name))
    return np.stack(images).astype("float32"), np.array(labels), classes


@pytest.fixture(scope="module")
def cifar():
    """Training subset + the original (lossless) first 932 test images."""
    x, y, classes = _cifar_train(300)
    test = np.load(os.path.join(DATA, "original_test_first932.npz"))
    assert [str(n) for n in test["label_names"]] == classes
    return x, y, test["x"].astype("float32"), test["y"]


def _classifier(name, size, classes=10, implementation="split"):
    """Registry network behind its preprocessing (RGB 0..255 in, logits
    out): the recipe trainer's model, a nested functional model."""
    import keras

    import igc_keras
    from igc_keras.applications.imagenet_utils import preprocessing_layer
    from igc_keras.layers import group_conv_implementation
    with group_conv_implementation(implementation):
        network = igc_keras.create_model(
            name, input_shape=(size, size, 3), classes=classes,
            classifier_activation=None, weights=None)
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, network(preprocessing_layer(name)(inputs)))


@pytest.mark.parametrize("name, size", [
    ("igcv3_1.0", 32), ("igcv1_cifar_l24m2_d20", 32)])
def test_bridge_rebuilds_the_model_exactly(cifar, name, size):
    """The tf_keras rebuild computes what the Keras 3 model computes on real
    images, and weights move back by name."""
    from igc_keras.optimize import copy_weights, to_tf_keras
    model = randomize_weights(_classifier(name, size))
    legacy = to_tf_keras(model)
    assert type(legacy).__module__.startswith("tf_keras")
    images = cifar[2][:16]
    expected = model.predict(images, verbose=0)
    assert np.std(expected) > 1e-3
    np.testing.assert_allclose(legacy.predict(images, verbose=0), expected,
                               rtol=1e-4, atol=1e-4)
    kinds = {type(layer).__name__ for layer in legacy.layers}
    assert "Functional" not in kinds  # nested model inlined
    assert {"Reshape", "Permute"} <= kinds  # the permutation, lowered
    fresh = _classifier(name, size)
    copy_weights(legacy, fresh)
    np.testing.assert_allclose(fresh.predict(images, verbose=0), expected,
                               rtol=1e-5, atol=1e-5)


def test_optimize_imports_no_keras2_until_used():
    code = ("import os, sys, igc_keras, igc_keras.optimize, "
            "igc_keras.optimize.tflite_export, "
            "igc_keras.optimize.tflite_interpreter, "
            "igc_keras.optimize.detector_tflite; "
            "print(sorted(m for m in ('tf_keras', "
            "'tensorflow_model_optimization') if m in sys.modules), "
            "os.environ.get('TF_USE_LEGACY_KERAS'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=ENV, check=True).stdout
    assert out.strip() == "[] None"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["igcv1_cifar_l24m2_d20", "igcv3_1.0"])
def test_qat_and_pruning_fine_tune_and_export_running_tflite(
        cifar, tmp_path, name):
    """QAT and pruning on real CIFAR-10: a short tf_keras fine-tune each,
    then the TFLite files run in the interpreter and agree with the models
    they came from; the pruned model is half zeros and exports smaller."""
    from igc_keras import optimize
    x, y, test_x, _ = cifar
    model = randomize_weights(_classifier(name, 32), seed=1)
    train = (x[:8], y[:8])  # grouped-conv gradients are slow on CPU

    qat = optimize.quantize_aware(model)
    history = optimize.fine_tune(qat, train, epochs=1, learning_rate=1e-3,
                                 batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    info = optimize.export_tflite(qat, str(tmp_path / "qat.tflite"), "int8")
    check = optimize.compare_tflite(qat, info["path"], test_x[:100])
    # random-weight logits have near-ties: IGCV3-1.0 measured 0.94 with the
    # largest logit difference 0.094
    assert check["top1_agreement"] >= 0.9, check
    assert check["max_abs_diff"] < 0.2, check

    pruned = optimize.prune(model, target_sparsity=0.5, begin_step=0,
                            end_step=1, frequency=1)
    optimize.fine_tune(pruned, train, epochs=1, batch_size=4, verbose=0)
    sparse = optimize.strip(pruned, like=model)   # back in Keras 3
    assert type(sparse).__module__.startswith("keras")
    report = optimize.sparsity(sparse)
    assert 0.45 <= report["overall"] <= 0.55, report["overall"]
    dense_file = optimize.export_tflite(model, str(tmp_path / "dense.tflite"))
    sparse_file = optimize.export_tflite(sparse, str(tmp_path / "sparse.tflite"))
    check = optimize.compare_tflite(sparse, sparse_file["path"], test_x[:50])
    assert check["top1_agreement"] == 1.0 and check["max_abs_diff"] < 1e-3
    assert optimize.compressed_size(sparse_file["path"]) < 0.8 * \
        optimize.compressed_size(dense_file["path"])


def test_cli_exports_int8_with_calibration_and_benches(cifar, tmp_path):
    """``igc-keras export --int8 --calibration DIR --check DIR`` and
    ``igc-keras bench`` on a saved model; bad folders exit 2 naming them."""
    import json

    import keras
    x, _, test_x, _ = cifar
    model = randomize_weights(_classifier("igcv2_cifar_igcv2_c64_d8", 32), seed=2)
    path = str(tmp_path / "model.keras")
    model.save(path)
    for folder, images in (("calibration", x[:40]), ("check", test_x[:40])):
        os.makedirs(tmp_path / folder)
        for i, image in enumerate(images):
            keras.utils.save_img(str(tmp_path / folder / f"{i:03d}.png"),
                                 image)
    out = str(tmp_path / "int8.tflite")
    run = subprocess.run(
        [sys.executable, "-m", "igc_keras_cli", "export", path, "--int8",
         "--calibration", str(tmp_path / "calibration"), "--check",
         str(tmp_path / "check"), "-o", out],
        capture_output=True, text=True, env=ENV)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout[run.stdout.index("{"):])
    assert report["quantization"] == "int8" and os.path.exists(out)
    assert report["check"]["images"] == 40
    assert report["check"]["top1_agreement"] >= 0.9
    bench = subprocess.run(
        [sys.executable, "-m", "igc_keras_cli", "bench", out, "--baseline",
         "none", "--runs", "5"], capture_output=True, text=True, env=ENV)
    assert bench.returncode == 0, bench.stderr[-2000:]
    row = json.loads(bench.stdout[bench.stdout.index("{"):])
    assert row["quantization"] == "int8" and row["latency_ms"] > 0
    os.makedirs(tmp_path / "empty")
    for extra, message in (
            (["--int8", "--calibration", str(tmp_path / "empty")],
             "--calibration="),
            (["--int8"], "needs representative_data")):
        bad = subprocess.run(
            [sys.executable, "-m", "igc_keras_cli", "export", path] + extra,
            capture_output=True, text=True, env=ENV)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr


def test_per_tensor_int8_drops_the_per_channel_parameters(cifar, tmp_path):
    """``per_channel=False``: every weight tensor of the file has one scale,
    the file is smaller than the per-channel one, runs, and keeps the
    model's top-1 on real CIFAR-10 test images."""
    from tensorflow.lite.tools import flatbuffer_utils

    from igc_keras.optimize import compare_tflite, export_tflite
    x, _, test_x, _ = cifar
    model = randomize_weights(_classifier("igcv3_1.0", 32, classes=10),
                              seed=2)
    files = {per_channel: export_tflite(
        model, str(tmp_path / f"{per_channel}.tflite"), "int8", x[:100],
        per_channel=per_channel) for per_channel in (True, False)}
    scales = {}
    for per_channel, info in files.items():
        content = flatbuffer_utils.read_model(info["path"])
        scales[per_channel] = {
            len(t.quantization.scale) > 1 for t in content.subgraphs[0].tensors
            if t.type == 9 and content.buffers[t.buffer].data is not None}
    assert scales == {True: {True, False}, False: {False}}, scales
    assert files[False]["bytes"] < 0.9 * files[True]["bytes"]
    check = compare_tflite(model, files[False]["path"], test_x[:100])
    assert check["top1_agreement"] >= 0.9, check


def test_quantize_aware_starts_calibrated_on_real_images(cifar):
    """tfmot starts activation ranges at [-6, 6] (moved by a 0.999 moving
    average per step) and weight ranges at [-6, 6] until the first training
    step; with representative_data the QAT model starts calibrated: the input
    range is the images' own, and before any training it computes what the
    float model computes, to int8 precision, on held-out real images."""
    from igc_keras import optimize
    x, _, test_x, _ = cifar
    model = randomize_weights(_classifier("igcv2_cifar_igcv2_c64_d8", 32),
                              seed=1)
    calibration = x[:64]
    qat = optimize.quantize_aware(model, representative_data=calibration)
    # the input's QuantizeLayer (quantize_layer_<n> after the first QAT
    # model of a process)
    quantize_layer, = [layer for layer in qat.layers
                       if type(layer).__name__ == "QuantizeLayer"]
    ranges = {w.name.split(":")[0][-3:]: float(w.numpy())
              for w in quantize_layer.weights}
    assert ranges["min"] == min(calibration.min(), 0.0)
    assert ranges["max"] == calibration.max()
    expected = model.predict(test_x[:100], verbose=0)
    for candidate, bound in ((qat, 0.3),
                             (optimize.quantize_aware(model), None)):
        logits = candidate.predict(test_x[:100], verbose=0)
        error = np.abs(logits - expected).max() / np.abs(expected).max()
        agreement = np.mean(logits.argmax(1) == expected.argmax(1))
        print("calibrated" if bound else "tfmot's start", error, agreement)
        if bound:  # measured 0.145 and 1.0
            assert error < bound and agreement >= 0.9, (error, agreement)
        else:  # weights still at [-6, 6]: logits near 0 (measured 0.9997)
            assert error > 0.5, error
    with pytest.raises(ValueError, match="representative_data must be"):
        optimize.quantize_aware(model, representative_data=x[:0])


def test_qat_exports_int8_and_pruning_exports_smaller(cifar, tmp_path):
    """The default-suite version of the slow test above: QAT on the
    IGC-V2(C64) D8 net (group convolutions + permutations; no fine-tuning)
    exports a full-int8 file that runs and agrees with the QAT model; pruning
    (the same net, two fine-tuning steps) leaves a Keras 3 model
    whose pruned kernels are half zeros, whose TFLite file runs, agrees and
    gzips smaller."""
    from igc_keras import optimize
    x, y, test_x, _ = cifar
    model = randomize_weights(_classifier("igcv2_cifar_igcv2_c64_d8", 32),
                              seed=1)
    qat = optimize.quantize_aware(model)
    info = optimize.export_tflite(qat, str(tmp_path / "qat.tflite"), "int8")
    assert optimize.run_tflite(info["path"], test_x[:2]).shape == (2, 10)
    check = optimize.compare_tflite(qat, info["path"], test_x[:100])
    assert check["top1_agreement"] >= 0.95, check

    model = randomize_weights(_classifier("igcv2_cifar_igcv2_c64_d8", 32),
                              seed=3)
    pruned = optimize.prune(model, target_sparsity=0.5, begin_step=0,
                            end_step=1, frequency=1)
    optimize.fine_tune(pruned, (x[:64], y[:64]), epochs=1, batch_size=32,
                       verbose=0)
    sparse = optimize.strip(pruned, like=model)
    report = optimize.sparsity(sparse)
    # overall: tfmot leaves the depthwise (channel-wise) kernels dense
    assert 0.4 <= report["overall"] <= 0.5, report["overall"]
    dense_file = optimize.export_tflite(model, str(tmp_path / "dense.tflite"))
    sparse_file = optimize.export_tflite(sparse,
                                         str(tmp_path / "sparse.tflite"))
    check = optimize.compare_tflite(sparse, sparse_file["path"], test_x[:50])
    assert check["top1_agreement"] == 1.0 and check["max_abs_diff"] < 1e-3
    assert optimize.compressed_size(sparse_file["path"]) < 0.8 * \
        optimize.compressed_size(dense_file["path"])


@pytest.mark.slow
@pytest.mark.parametrize("classes, per_class, epochs, minimum", [
    (("airplane", "frog", "truck"), 1000, 4, 0.95),   # measured 0.974
    (None, 800, 6, 0.90),                              # measured 0.930
])  # briefly trained (75% / 42% test accuracy): small margins flip
def test_int8_agreement_of_briefly_trained_igcv3(classes, per_class, epochs,
                                                  minimum, tmp_path):
    """README figures: IGCV3-1.0 at 32x32 trained briefly on real CIFAR-10
    (Adam 2e-3 cosine, batch 64, split group convs), then post-training full
    int8 (100 training images for calibration): top-1 agreement with the
    float model on the original CIFAR-10 test images of those classes, and
    the file sizes."""
    import keras

    from igc_keras.optimize import compare_tflite, export_tflite
    x, y, names = _cifar_train(per_class)
    keep = list(classes or names)
    mask = np.isin(y, [names.index(k) for k in keep])
    x, y = x[mask], np.array([keep.index(names[i]) for i in y[mask]])
    test = np.load(os.path.join(DATA, "original_test_first932.npz"))
    selected = np.isin(test["y"], [names.index(k) for k in keep])
    test_x = test["x"][selected].astype("float32")
    keras.utils.set_random_seed(0)
    model = _classifier("igcv3_1.0", 32, classes=len(keep))
    steps = epochs * (len(x) // 64)
    model.compile(keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(2e-3, steps)),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=2)
    calibration = x[::max(1, len(x) // 100)]
    # as built (fuse=False): the README's figures were measured so
    int8 = export_tflite(model, str(tmp_path / "int8.tflite"), "int8",
                         calibration, fuse=False)
    float32 = export_tflite(model, str(tmp_path / "float.tflite"),
                            fuse=False)
    check = compare_tflite(model, int8["path"], test_x)
    print(check, int8["bytes"] / float32["bytes"])
    assert check["top1_agreement"] >= minimum


def _cifar_test_jpegs(keep):
    """All CIFAR-10 test JPEGs (1,000 a class) of the classes ``keep``."""
    images, labels = [], []
    with tarfile.open(os.path.join(DATA, "cifar10_test.tar.gz")) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.split("/")[1] in keep:
                images.append(tf.io.decode_jpeg(
                    archive.extractfile(member).read()).numpy())
                labels.append(keep.index(member.name.split("/")[1]))
    return np.stack(images).astype("float32"), np.array(labels)


@pytest.mark.slow
def test_int8_agreement_of_a_trained_igcv3_is_at_least_99_percent(tmp_path):
    """The issue's goal, on a model trained enough that its test images are
    not coin flips: IGCV3-1.0 at 32x32 on the 15,000 CIFAR-10 training
    images of 3 classes (flip + pad-4 crop, AdamW 2e-3 cosine, weight decay
    0.05, batch 64, 12 epochs, dense group convs; about 17 minutes on 2
    cores), post-training full int8 calibrated on 100 training images; top-1
    agreement with the float model on the 3,302 test images of those classes
    (the 302 original test images and the 3,000 test JPEGs), for the default
    (fused) export, the model as built and the fused per-tensor export, whose
    file must also be under 30% of the float file (the issue's size goal).
    Measured in two runs: fused 99.36% / 99.12%, as built 99.39% / 99.36%;
    per-tensor 99.36% at 27.1% of the float file (second run). At 8 epochs
    the goal sat on the boundary (99.24% in one training, 98.82% in
    another), so the test trains 12. The per-channel int8 file is 36.6% of
    the float file here (3 classes: the classifier is small, so the
    per-channel scales weigh more; 31.8% at 1000 classes,
    benchmarks/tflite_size.py)."""
    import keras

    from igc_keras.optimize import compare_tflite, export_tflite
    keep = ["airplane", "frog", "truck"]
    x, y, names = _cifar_train(5000)
    mask = np.isin(y, [names.index(k) for k in keep])
    x, y = x[mask], np.array([keep.index(names[i]) for i in y[mask]])
    original = np.load(os.path.join(DATA, "original_test_first932.npz"))
    selected = np.isin(original["y"], [names.index(k) for k in keep])
    jpegs, jpeg_labels = _cifar_test_jpegs(keep)
    test_x = np.concatenate([original["x"][selected].astype("float32"),
                             jpegs])
    keras.utils.set_random_seed(0)
    model = _classifier("igcv3_1.0", 32, classes=3, implementation="dense")

    def augment(image, label):
        image = tf.image.random_flip_left_right(image)
        image = tf.image.resize_with_crop_or_pad(image, 36, 36)
        return tf.image.random_crop(image, (32, 32, 3)), label
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        len(x), seed=0).map(augment, num_parallel_calls=2).batch(
        64, drop_remainder=True).prefetch(2)
    epochs = 12
    model.compile(keras.optimizers.AdamW(
        keras.optimizers.schedules.CosineDecay(2e-3, epochs * (len(x) // 64)),
        weight_decay=0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train, epochs=epochs, verbose=2)
    accuracy = np.mean(model.predict(jpegs, verbose=0).argmax(1) ==
                       jpeg_labels)
    assert accuracy >= 0.88, accuracy  # trained, not a coin flip
    calibration = x[::len(x) // 200][:200]  # export_tflite uses the first 100
    float32 = export_tflite(model, str(tmp_path / "float.tflite"))
    for fuse, per_channel in ((True, True), (False, True), (True, False)):
        int8 = export_tflite(model, str(tmp_path / f"int8_{fuse}.tflite"),
                             "int8", calibration, fuse=fuse,
                             per_channel=per_channel)
        check = compare_tflite(model, int8["path"], test_x)
        size = int8["bytes"] / float32["bytes"]
        print("fused" if fuse else "as built",
              "per-channel" if per_channel else "per-tensor", check, size)
        assert check["images"] == 3302
        assert check["top1_agreement"] >= 0.99, (fuse, check)
        if not per_channel:  # the size goal too
            assert size < 0.30, size
