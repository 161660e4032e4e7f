"""Input pipeline images/s beside the model's training images/s.

The pipeline is the recipes' ImageNet training input (TFRecords in Model
Garden's layout, fused decode + random crop 0.08-1 + flip + resize, batched,
prefetched), fed by the real ImageNet validation JPEGs in
``../shared/data/imagenet/val_samples`` written to temporary TFRecords. The
model figure is one training step of the recipe's model (IGCV3-1.0 by
default, the group-conv implementation the trainer picks) on batches of the
same shape. If the pipeline's rate is below the model's, training is
input-bound on this machine.

    python benchmarks/input_pipeline.py [--model igcv3_1.0] [--batch 32] [--size 224]
"""

import argparse
import glob
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from igc_keras.data.classification import build_classification_dataset  # noqa: E402
from igc_keras.training.config import load_experiment  # noqa: E402
from igc_keras.training.trainer import (build_model, group_conv_choice,  # noqa: E402
                                        loss_function)

SAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                       "shared", "data", "imagenet", "val_samples")


def write_tfrecords(directory, images):
    """The JPEGs as ``train-0000x-of-00004`` TFRecords (label = index % 1000)."""
    shards = 4
    writers = [tf.io.TFRecordWriter(os.path.join(
        directory, f"train-{i:05d}-of-{shards:05d}")) for i in range(shards)]
    for index, path in enumerate(images):
        example = tf.train.Example(features=tf.train.Features(feature={
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[open(path, "rb").read()])),
            "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(
                value=[index % 1000]))}))
        writers[index % shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()


def images_per_second(step, batch, seconds):
    step()  # warm up (tracing, first decode)
    step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += batch
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="igcv3_1.0")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    images = sorted(glob.glob(os.path.join(SAMPLES, "*.JPEG")))
    if not images:
        raise SystemExit(f"no JPEGs under {SAMPLES}")
    with tempfile.TemporaryDirectory() as directory:
        write_tfrecords(directory, images)
        config = load_experiment(overrides=[
            "task.train_data.source=tfrecord",
            f"task.train_data.data_dir={directory}",
            f"task.train_data.global_batch_size={args.batch}",
            f"task.model.name={args.model}",
            f"task.model.input_size=[{args.size}, {args.size}, 3]",
            "trainer.steps_per_epoch=1"])
        dataset = build_classification_dataset(
            config.task.train_data, (args.size, args.size), args.batch)
        iterator = iter(dataset)
        pipeline = images_per_second(lambda: next(iterator)[0].numpy(),
                                     args.batch, args.seconds)

    strategy = tf.distribute.get_strategy()
    model = build_model(config, group_conv_choice(config, strategy))
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = loss_function(config)
    x = tf.random.uniform((args.batch, args.size, args.size, 3), 0, 255)
    y = tf.one_hot(tf.range(args.batch) % 1000, 1000)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    training = images_per_second(lambda: train_step().numpy(), args.batch,
                                 args.seconds)
    print(f"input pipeline (ImageNet training augmentation, {len(images)} real "
          f"JPEGs, batch {args.batch}, {args.size}px): {pipeline:8.1f} images/s")
    print(f"{args.model} training step ({group_conv_choice(config, strategy)} "
          f"group convs, batch {args.batch}):        {training:8.1f} images/s")
    print(f"pipeline / model = {pipeline / training:.2f} "
          f"({'input-bound' if pipeline < training else 'compute-bound'} "
          f"on this machine)")


if __name__ == "__main__":
    main()
