"""The tf_keras bridge: the one place the package touches Keras 2.

``tensorflow-model-optimization`` (QAT, pruning) works only on ``tf_keras``
models, while every model here is Keras 3. :func:`to_tf_keras` rebuilds a
Keras 3 functional model in ``tf_keras`` from the model's own serialized
graph (``model.get_config()``: layer configs and their connections), so no
builder or block code is copied: whatever graph the builders made is the
graph rebuilt. Nested functional models are inlined (tfmot refuses nested
models); the package's two custom layers are lowered to standard ones that
tfmot's quantize registry already knows:

* ``GroupConv2D`` (either implementation) -> ``Conv2D(groups=G)`` (same
  kernel layout, so weights move unchanged);
* ``ChannelPermutation(G)`` -> ``Reshape((H, W, G, C/G))``,
  ``Permute((1, 2, 4, 3))``, ``Reshape((H, W, C))`` — a pure data move,
  which the default 8-bit scheme leaves unquantized (the output keeps its
  input's scale) and the TFLite converter turns into RESHAPE / TRANSPOSE.

Weights move both ways by layer name (:func:`copy_weights`). ``tf_keras``
and ``tfmot`` are imported only when called (importing tfmot sets
``TF_USE_LEGACY_KERAS=1``), never when ``igc_keras`` is imported.
"""

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.optimize.to_tf_keras (tfmot)")

import inspect

from igc_keras.optimize.graph import read_graph
from igc_keras.walk import walk_layers

#: Config keys Keras 3 writes that tf_keras layers do not take.
_BASE_KEYS = ("name", "trainable", "dtype")


def tf_keras():
    """The ``tf_keras`` module (Keras 2), imported on first use."""
    try:
        import tf_keras as module
    except ImportError as error:  # pragma: no cover - a dependency
        raise ImportError("igc_keras.optimize needs tf_keras (pip install "
                          "tf_keras); tfmot runs only on Keras 2 models."
                          ) from error
    return module


def tfmot():
    """``tensorflow_model_optimization``, imported on first use.

    Importing it sets ``TF_USE_LEGACY_KERAS=1`` for the process, so that
    TensorFlow's bundled Keras alias resolves to tf_keras from then on (tfmot
    needs that); the package itself imports Keras 3 as ``keras`` only, so its
    code is unaffected.
    """
    tf_keras()
    import tensorflow_model_optimization as module
    return module


def output_quantize_config():
    """A tfmot ``QuantizeConfig`` that quantizes only a layer's output (8
    bits, per tensor, asymmetric, from moving min / max): for per-channel
    affine layers tfmot's registry lacks (input normalisation, BatchNorm not
    after a convolution). Written against tfmot's public API.

    Returns:
        ``(config instance, {name: class})`` — the class for
        ``quantize_scope``.
    """
    keras_q = tfmot().quantization.keras

    class OutputQuantizeConfig(keras_q.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [keras_q.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False,
                narrow_range=False)]

        def get_config(self):
            return {}
    return OutputQuantizeConfig(), {
        "OutputQuantizeConfig": OutputQuantizeConfig}


def _plain(value):
    """Keras 3 serialized objects -> the ``{"class_name", "config"}`` form
    tf_keras deserializes; dtype policies -> their dtype name."""
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return value["config"]["name"]
        if "class_name" in value and "config" in value:
            return {"class_name": value["class_name"],
                    "config": _plain(value["config"])}
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _accepted(cls):
    """The constructor arguments a tf_keras layer class takes by name."""
    names = set(_BASE_KEYS)
    for klass in cls.__mro__:
        if klass.__name__ == "Layer":
            break
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {"self"}


def _layer(tfk, class_name, config):
    """One tf_keras layer from a Keras 3 layer's class name and config."""
    if class_name == "GroupConv2D":
        class_name = "Conv2D"
    cls = getattr(tfk.layers, class_name, None)
    if cls is None:
        raise ValueError(
            f"layer {config.get('name')!r} ({class_name}) has no tf_keras "
            f"counterpart; the bridge rebuilds standard Keras layers, "
            f"GroupConv2D and ChannelPermutation.")
    config = _plain(config)
    # initializers are not carried: the weights are copied afterwards
    kwargs = {k: v for k, v in config.items() if k in _accepted(cls) and
              not k.endswith("_initializer")}
    for key in ("padding", "kernel_size", "strides", "dilation_rate",
                "cropping", "target_shape", "dims", "size", "pool_size"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = _tuples(kwargs[key])
    return cls(**kwargs)


def _tuples(value):
    return tuple(_tuples(v) if isinstance(v, list) else v for v in value)


def _permutation(tfk, name, groups, inverse, tensor):
    """``ChannelPermutation`` as Reshape / Permute / Reshape."""
    shape = tuple(tensor.shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"{name}: the tf_keras bridge needs a fixed input size to express "
            f"the channel permutation with Reshape; got feature shape {shape}."
            f" Build the model with a fixed input_shape.")
    channels = shape[-1]
    rows, cols = (channels // groups, groups) if inverse else (
        groups, channels // groups)
    if groups in (1, channels):
        return tensor
    x = tfk.layers.Reshape(shape[:-1] + (rows, cols),
                           name=f"{name}_split")(tensor)
    rank = len(shape) + 1
    order = tuple(range(1, rank - 1)) + (rank, rank - 1)
    x = tfk.layers.Permute(order, name=f"{name}_transpose")(x)
    return tfk.layers.Reshape(shape, name=name)(x)


def _rebuild(tfk, model, inputs=None):
    """Rebuilds one functional model's graph; returns ``(input tensors,
    outputs)``.

    ``inputs``: tensors to feed the model's input layers (when inlining a
    nested model); new ``tfk.Input`` tensors otherwise.
    """
    graph = read_graph(model, "the tf_keras bridge", multi_output=True)
    tensors, created_inputs = {}, []
    for name, node in graph.nodes.items():
        cfg = node.config
        if node.kind == "InputLayer":
            if inputs is not None:
                tensor = inputs[graph.inputs.index(name)]
            else:
                tensor = tfk.Input(batch_shape=tuple(cfg["batch_shape"]),
                                   name=name)
                created_inputs.append(tensor)
            tensors[(name, 0)] = tensor
            continue
        args = [tensors[reference] for reference in zip(
            node.inputs, node.tensor_indices)]
        argument = args if node.list_call else args[0]
        if node.kind == "Functional":
            _, out = _rebuild(tfk, node.layer, args)
        elif node.kind == "ChannelPermutation":
            out = _permutation(tfk, name, cfg["groups"],
                               cfg.get("inverse", False), argument)
        else:
            out = _layer(tfk, node.kind, cfg)(argument)
        outs = out if isinstance(out, (list, tuple)) else [out]
        for index, tensor in enumerate(outs):
            tensors[(name, index)] = tensor
    outputs = [tensors[reference] for reference in graph.outputs]
    return created_inputs, outputs[0] if len(outputs) == 1 else outputs


def _weighted_layers(model):
    """Name -> layer for every layer holding weights, nested models
    flattened."""
    found = {}
    for layer in walk_layers(model):
        if layer.weights:
            if layer.name in found:
                raise ValueError(f"two layers are named {layer.name!r}; the "
                                 f"bridge moves weights by layer name.")
            found[layer.name] = layer
    return found


def copy_weights(source, target):
    """Copies weights layer by layer (matched by name) between a Keras 3
    model and its tf_keras rebuild, either way. Layers holding weights on
    one side only must not exist (an error names them); shapes must agree.

    Returns:
        the number of layers copied.
    """
    sources, targets = _weighted_layers(source), _weighted_layers(target)
    missing = sorted(set(sources) ^ set(targets))
    if missing:
        raise ValueError(f"layers with weights on one side only: {missing[:5]}"
                         f" ({len(missing)} in all).")
    for name, layer in sources.items():
        values = layer.get_weights()
        into = targets[name]
        expected = [tuple(w.shape) for w in into.get_weights()]
        if [tuple(v.shape) for v in values] != expected:
            raise ValueError(f"layer {name!r}: weight shapes "
                             f"{[tuple(v.shape) for v in values]} do not "
                             f"match {expected}.")
        into.set_weights(values)
    return len(sources)


def to_tf_keras(model):
    """A ``tf_keras`` functional model computing what the Keras 3 ``model``
    computes, with its weights (see the module docstring).

    Args:
        model: a built Keras 3 functional model with a fixed input size.

    Returns:
        ``tf_keras.Model`` with the same layer names (each permutation adds
        ``<name>_split`` and ``<name>_transpose``).
    """
    tfk = tf_keras()
    inputs, outputs = _rebuild(tfk, model)
    legacy = tfk.Model(inputs[0] if len(inputs) == 1 else inputs, outputs,
                       name=model.name)
    copy_weights(model, legacy)
    return legacy


def adapt_callback(callback):
    """A tf_keras callback that runs a Keras 3 ``callback``'s hooks, so the
    tfmot loop shares the package's callbacks (non-finite-loss stop, best
    checkpoint) with the Keras 3 loops."""
    tfk = tf_keras()

    class Adapter(tfk.callbacks.Callback):
        def set_model(self, model):
            super().set_model(model)
            callback.set_model(model)

        def on_train_begin(self, logs=None):
            callback.on_train_begin(logs)

        def on_epoch_begin(self, epoch, logs=None):
            callback.on_epoch_begin(epoch, logs)

        def on_train_batch_end(self, batch, logs=None):
            callback.on_train_batch_end(batch, logs)

        def on_epoch_end(self, epoch, logs=None):
            callback.on_epoch_end(epoch, logs)

        def on_train_end(self, logs=None):
            callback.on_train_end(logs)

    return Adapter()


def save_serving(model, directory):
    """Writes a tf_keras model (QAT / pruning wrappers included) as a
    SavedModel holding one ``serving_default`` signature: ``images``
    (any batch, the model's input shape) -> the model's outputs in
    inference mode. No per-layer call traces are saved (tf_keras'
    ``save_traces=False``) and no optimizer: the file serves and converts
    (TFLite, ``tf.saved_model.load``); rebuild the Keras model from the
    recipe and its weights to train on.
    """
    import tensorflow as tf
    tfk = tf_keras()
    spec = model.inputs[0]
    serve = tf.function(lambda images: model(images, training=False))
    signature = serve.get_concrete_function(tf.TensorSpec(
        (None,) + tuple(spec.shape[1:]), spec.dtype, name="images"))
    tfk.models.save_model(model, directory, save_format="tf",
                          include_optimizer=False, save_traces=False,
                          signatures=signature)
    return directory


def train(model, data, epochs=1, steps_per_epoch=None, validation_data=None,
        validation_steps=None, callbacks=(), verbose=2):
    """The tf_keras training loop (QAT and pruning, from a recipe or
    :func:`fine_tune`): tf_keras ``fit`` of a compiled bridged model, with
    tfmot's ``UpdatePruningStep`` added when the model has pruning wrappers.
    Keras 3 callbacks in ``callbacks`` run through :func:`adapt_callback`.

    Returns:
        the tf_keras ``History``.
    """
    import keras
    callbacks = [adapt_callback(c) if isinstance(c, keras.callbacks.Callback)
                 else c for c in callbacks]
    if any(hasattr(layer, "pruning_vars") for layer in model.layers):
        callbacks.append(tfmot().sparsity.keras.UpdatePruningStep())
    return model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                     validation_data=validation_data,
                     validation_steps=validation_steps, callbacks=callbacks,
                     verbose=verbose)


def fine_tune(model, data, epochs=1, steps_per_epoch=None, learning_rate=1e-3,
              from_logits=True, validation_data=None, batch_size=32,
              verbose=2):
    """Fine-tunes a bridged tf_keras model (QAT or pruning) in :func:`train`:
    SGD with momentum 0.9 and cosine decay, sparse softmax cross-entropy,
    training stopped at a NaN / infinite loss. ``data``: a
    ``tf.data.Dataset`` (or ``(x, y)`` arrays) of RGB 0..255 images and
    integer labels, as the recipes' pipelines give (one-hot labels: pass a
    dataset mapped back with ``argmax``); ``batch_size`` batches ``(x, y)``
    arrays.

    Grouped ``Conv2D`` gradients are slow on CPU in TensorFlow (tfmot wraps
    ``Conv2D(groups=G)``), so fine-tune many-group models on a GPU or TPU.

    Returns:
        the tf_keras ``History``.
    """
    from igc_keras.training.callbacks import StopOnNonFiniteLoss
    tfk = tf_keras()
    if isinstance(data, tuple):
        import tensorflow as tf
        data = tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
    steps = steps_per_epoch or int(data.cardinality())
    if steps < 1:
        raise ValueError("fine_tune: `data` is empty or of unknown length; "
                         "pass steps_per_epoch.")
    schedule = tfk.optimizers.schedules.CosineDecay(learning_rate,
                                                    epochs * steps)
    model.compile(tfk.optimizers.SGD(schedule, momentum=0.9),
                  tfk.losses.SparseCategoricalCrossentropy(
                      from_logits=from_logits), metrics=["accuracy"])
    return train(model, data, epochs=epochs, steps_per_epoch=steps_per_epoch,
               validation_data=validation_data,
               callbacks=[StopOnNonFiniteLoss(steps)], verbose=verbose)
