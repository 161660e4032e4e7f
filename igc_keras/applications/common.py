"""What every builder shares: argument checks, the input, the head, weights.

keras.applications semantics: ``input_shape`` is ``(H, W, C)`` channels last
(``None`` entries allowed when ``include_top=False``), ``input_tensor`` may be
any Keras tensor or backend tensor (its shape must agree with
``input_shape``), ``pooling`` is ``None``/``"avg"``/``"max"`` when
``include_top=False``, and ``weights`` is ``None``, ``"imagenet"`` or a file
(:mod:`igc_keras.applications.weights`).
"""

import math

import keras

POOLINGS = (None, "avg", "max")


def check_arguments(*, weights, include_top, pooling, classes,
                    classifier_activation, input_shape, builder,
                    min_size=32, alpha=1.0, architecture=None,
                    input_tensor=None):
    """Fail before any layer exists, naming the argument and what is allowed.

    ``architecture``: the builder's arguments that fix the network (``alpha``
    and the rest), by which the released checkpoints are looked up
    (:func:`~igc_keras.applications.pretrained.find_pretrained`). Returns
    the released config of that architecture, or None.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (
            math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"{builder}: `alpha` must be a finite number > 0; got "
                         f"alpha={alpha!r}.")
    from igc_keras.applications import pretrained
    from igc_keras.applications.weights import check_weights_argument
    check_weights_argument(weights, builder)
    config = (pretrained.find_pretrained(builder, architecture)
              if architecture is not None else None)
    imagenet = isinstance(weights, str) and weights == "imagenet"
    if imagenet and config is None:
        raise pretrained.imagenet_unavailable(builder, architecture or {})
    if not isinstance(include_top, bool):
        raise ValueError(f"{builder}: `include_top` must be True or False; got "
                         f"include_top={include_top!r}.")
    if pooling not in POOLINGS:
        raise ValueError(f"{builder}: `pooling` must be one of {POOLINGS}; got "
                         f"pooling={pooling!r}.")
    if include_top and (isinstance(classes, bool) or
                        not isinstance(classes, int) or classes < 1):
        raise ValueError(f"{builder}: `classes` must be a positive integer when "
                         f"include_top=True; got classes={classes!r}.")
    if classifier_activation is not None and not (
            isinstance(classifier_activation, str) or
            callable(classifier_activation)):
        raise ValueError(f"{builder}: `classifier_activation` must be None, a "
                         f"name or a callable; got {classifier_activation!r}.")
    if input_shape is not None:
        _check_input_shape(input_shape, builder, min_size)
        if imagenet and input_shape[2] != 3:
            raise ValueError(f"{builder}: weights='imagenet' needs 3 input "
                             f"channels; got input_shape={input_shape!r}.")
    if input_tensor is not None:
        _check_input_tensor(input_tensor, input_shape, builder)
    if imagenet:
        pretrained.check_imagenet_arguments(
            config, include_top=include_top, classes=classes,
            classifier_activation=classifier_activation,
            input_shape=input_shape, builder=builder)
    return config


def _check_input_shape(input_shape, builder, min_size):
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or any(
            d is not None and (isinstance(d, bool) or not isinstance(d, int))
            for d in input_shape):
        raise ValueError(
            f"{builder}: `input_shape` must be a tuple of 3 integers (height, "
            f"width, channels; channels last; None for any size without the "
            f"top); got input_shape={input_shape!r}.")
    for dim, label in zip(input_shape[:2], ("height", "width")):
        if dim is not None and dim < min_size:
            raise ValueError(
                f"{builder}: input {label} must be at least {min_size}; got "
                f"input_shape={input_shape!r}.")
    if input_shape[2] is not None and input_shape[2] < 1:
        raise ValueError(f"{builder}: input channels must be >= 1; got "
                         f"input_shape={input_shape!r}.")


def _check_input_tensor(input_tensor, input_shape, builder):
    """``input_tensor`` agrees with ``input_shape`` (keras.applications
    refuses a mismatch) and is at least 4-D."""
    try:
        shape = tuple(keras.ops.shape(input_tensor))
    except Exception as error:  # not a tensor at all
        raise ValueError(f"{builder}: `input_tensor` must be a Keras or "
                         f"backend tensor; got {type(input_tensor).__name__}."
                         ) from error
    if len(shape) != 4:
        raise ValueError(f"{builder}: `input_tensor` must be a batch of "
                         f"images (batch, height, width, channels); got shape "
                         f"{shape}.")
    if input_shape is not None and any(
            want is not None and have is not None and int(want) != int(have)
            for want, have in zip(input_shape, shape[1:])):
        raise ValueError(
            f"{builder}: input_shape={tuple(input_shape)} does not match "
            f"input_tensor's shape {shape[1:]}; pass one of them, or both "
            f"agreeing.")


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


def add_pyramid_and_load_weights(model, weights, config, include_top,
                                 pyramid=None, converter=None, builder=""):
    """Attaches ``pyramid_outputs`` and loads the requested weights
    (:func:`igc_keras.applications.weights.load_weights`).

    Args:
        pyramid: ``{"P1": layer_name, ...}`` (KerasHub convention: ``Pn`` has
            stride ``2**n``); exposed as ``model.pyramid_outputs`` (tensors).
        converter: the builder's authors' checkpoint naming (``.params``
            weights), if it has one.
    """
    if pyramid:
        model.pyramid_outputs = {level: model.get_layer(layer).output
                                 for level, layer in pyramid.items()}
    from igc_keras.applications.weights import load_weights
    return load_weights(model, weights, config, include_top=include_top,
                        converter=converter, builder=builder or model.name)
