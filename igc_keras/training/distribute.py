"""One strategy factory, keyed by ``runtime.distribution_strategy``.

``auto`` picks ``mirrored`` with several GPUs, else ``one_device``; ``tpu``
resolves, connects to and initialises the TPU system; ``multi_worker_mirrored``
reads the cluster from ``TF_CONFIG``. Failures name the config key.
"""

import json
import os

import tensorflow as tf

from igc_keras.training.config import ConfigError


def _tpu_strategy(tpu, resolver_factory=None):
    factory = resolver_factory or tf.distribute.cluster_resolver.TPUClusterResolver
    try:
        resolver = factory(tpu=None if tpu == "local" else tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as error:  # resolvers raise ValueError, URLError, OpError
        raise ConfigError(
            f"runtime.tpu={tpu!r}: could not resolve or initialise the TPU "
            f"({type(error).__name__}: {error}). Name a reachable TPU, or 'local' "
            f"on a TPU VM.") from error
    return tf.distribute.TPUStrategy(resolver)


def get_strategy(runtime, resolver_factory=None):
    """The ``tf.distribute.Strategy`` for a :class:`RuntimeConfig`.

    Args:
        runtime: ``RuntimeConfig``.
        resolver_factory: TPU resolver class (a test double in tests only).
    """
    kind = runtime.distribution_strategy
    if runtime.logical_cpu_devices:
        split_cpu(runtime.logical_cpu_devices)
    # physical devices: listing logical ones would start the TF context,
    # after which multi-worker collectives can no longer be configured
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "auto":
        kind = "mirrored" if len(gpus) > 1 else "one_device"
    if kind == "tpu":
        return _tpu_strategy(runtime.tpu, resolver_factory)
    if kind == "multi_worker_mirrored":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise ConfigError(
                "runtime.distribution_strategy='multi_worker_mirrored' needs the "
                "TF_CONFIG environment variable (cluster and task) on every "
                "worker.")
        try:
            json.loads(raw)["cluster"]["worker"]
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"TF_CONFIG is not a valid cluster spec with "
                              f"workers: {raw!r}.") from error
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored":
        if runtime.num_gpus > len(gpus):
            raise ConfigError(
                f"runtime.num_gpus={runtime.num_gpus} but {len(gpus)} GPU(s) are "
                f"visible.")
        devices = ([g.name for g in gpus[:runtime.num_gpus]] if runtime.num_gpus
                   else None)
        cpus = tf.config.list_logical_devices("CPU")
        if not gpus and len(cpus) > 1:
            devices = [c.name for c in cpus]
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    raise ConfigError(f"runtime.distribution_strategy: {kind!r} is not "
                      f"supported.")


def split_cpu(count):
    """Splits the CPU into ``count`` logical devices (before TF starts)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != count:
            raise ConfigError(
                f"runtime.logical_cpu_devices={count}: TensorFlow is already "
                f"running with {have} CPU device(s); set it before anything "
                f"else uses TensorFlow (e.g. from the command line).") from error


def is_chief(strategy):
    """Whether this process writes checkpoints, logs and exports.

    The ``chief`` task, else worker 0; every process outside a cluster.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True
    if task_type == "chief":
        return True
    jobs = resolver.cluster_spec().as_dict()
    return task_type == "worker" and resolver.task_id == 0 and "chief" not in jobs


def task_label(strategy):
    """``worker_1`` etc. for a cluster task, ``""`` outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    return f"{task_type}_{resolver.task_id}" if task_type else ""


def per_replica_batch_size(global_batch_size, strategy, key):
    """``global / replicas``, or a ``ConfigError`` naming ``key``."""
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ConfigError(
            f"{key}={global_batch_size} is not divisible by the "
            f"{replicas} replicas in sync; use a multiple of {replicas}.")
    return global_batch_size // replicas
