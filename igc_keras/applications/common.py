"""What every builder shares: argument checks, the input, the head, weights.

keras.applications semantics: ``input_shape`` is ``(H, W, C)`` channels last
(``None`` entries allowed when ``include_top=False``), ``input_tensor`` may be
any Keras tensor or backend tensor, ``pooling`` is ``None``/``"avg"``/``"max"``
when ``include_top=False``, and ``weights`` is ``None`` or the path of a
weights file saved from the same architecture.
"""

import os

import keras

POOLINGS = (None, "avg", "max")


def check_arguments(*, weights, include_top, pooling, classes,
                    classifier_activation, input_shape, builder,
                    min_size=32, alpha=1.0, pretrained_name=None):
    """Fail before any layer exists, naming the argument and what is allowed.

    ``pretrained_name`` is the registry name of the variant being built (used
    to find its ImageNet weights); returns its pretrained config when
    ``weights="imagenet"``, else ``None``.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or (
            alpha <= 0):
        raise ValueError(f"{builder}: `alpha` must be a number > 0; got "
                         f"alpha={alpha!r}.")
    config = None
    if isinstance(weights, str) and weights == "imagenet":
        from igc_keras.applications import pretrained
        config = pretrained.pretrained_config(pretrained_name, builder)
    elif not (weights is None or (isinstance(weights, (str, os.PathLike)) and
                                  os.path.exists(weights))):
        raise ValueError(
            f"{builder}: `weights` must be None, 'imagenet' or the path of an "
            f"existing weights file; got weights={weights!r}.")
    if not isinstance(include_top, bool):
        raise ValueError(f"{builder}: `include_top` must be True or False; got "
                         f"include_top={include_top!r}.")
    if pooling not in POOLINGS:
        raise ValueError(f"{builder}: `pooling` must be one of {POOLINGS}; got "
                         f"pooling={pooling!r}.")
    if include_top and (not isinstance(classes, int) or classes < 1):
        raise ValueError(f"{builder}: `classes` must be a positive integer when "
                         f"include_top=True; got classes={classes!r}.")
    if classifier_activation is not None and not (
            isinstance(classifier_activation, str) or
            callable(classifier_activation)):
        raise ValueError(f"{builder}: `classifier_activation` must be None, a "
                         f"name or a callable; got {classifier_activation!r}.")
    if input_shape is not None:
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ValueError(
                f"{builder}: `input_shape` must be (height, width, channels) "
                f"(channels last); got input_shape={input_shape!r}.")
        for dim, label in zip(shape[:2], ("height", "width")):
            if dim is not None and dim < min_size:
                raise ValueError(
                    f"{builder}: input {label} must be at least {min_size}; got "
                    f"input_shape={input_shape!r}.")
        if shape[2] is not None and shape[2] < 1:
            raise ValueError(f"{builder}: input channels must be >= 1; got "
                             f"input_shape={input_shape!r}.")
        if config is not None and shape[2] != 3:
            raise ValueError(f"{builder}: weights='imagenet' needs 3 input "
                             f"channels; got input_shape={input_shape!r}.")
    if config is not None:
        from igc_keras.applications import pretrained
        pretrained.check_imagenet_arguments(
            config, include_top=include_top, classes=classes,
            classifier_activation=classifier_activation,
            input_shape=input_shape, builder=builder)
    return config


def make_input(input_shape, input_tensor, default_shape):
    """Returns ``(img_input, model_inputs)`` as keras.applications does."""
    shape = tuple(input_shape) if input_shape is not None else None
    if input_tensor is None:
        img_input = keras.Input(shape=shape or default_shape)
        return img_input, img_input
    if not keras.utils.is_keras_tensor(input_tensor):
        img_input = keras.Input(tensor=input_tensor, shape=shape)
        return img_input, img_input
    sources = keras.utils.get_source_inputs(input_tensor)
    return input_tensor, sources[0] if len(sources) == 1 else sources


def head(x, *, include_top, pooling, classes, classifier_activation):
    """Global average pooling + dense classifier, or the pooling choice.

    The classifier computes in float32 under a mixed-precision policy, so
    probabilities and logits come out in float32 (Keras' mixed-precision
    guidance for the last layer).
    """
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        mixed = keras.config.dtype_policy().name.startswith("mixed")
        return keras.layers.Dense(classes, activation=classifier_activation,
                                  dtype="float32" if mixed else None,
                                  name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def finish(model, weights, config, include_top, pyramid=None):
    """Attaches ``pyramid_outputs`` and loads the requested weights.

    Args:
        pyramid: ``{"P1": layer_name, ...}`` (KerasHub convention: ``Pn`` has
            stride ``2**n``); exposed as ``model.pyramid_outputs`` (tensors).
    """
    if pyramid:
        model.pyramid_outputs = {level: model.get_layer(layer).output
                                 for level, layer in pyramid.items()}
    if config is not None:
        from igc_keras.applications import pretrained
        return pretrained.load_imagenet_weights(model, config,
                                                include_top=include_top)
    return load_weights(model, weights)


def load_weights(model, weights):
    """Loads a weights file; a mismatch is an error, never a half-loaded model."""
    if weights is None:
        return model
    try:
        model.load_weights(weights)
    except Exception as error:  # keras raises several types here
        raise ValueError(
            f"could not load weights={os.fspath(weights)!r} into "
            f"{model.name!r}: {error}") from error
    return model
