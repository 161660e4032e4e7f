"""The one walk over a model's layers, nested models included.

:func:`walk_layers` serves Keras 3 and tf_keras models alike: a nested model
is anything with its own ``layers`` list (a ``Functional``, ``Sequential`` or
subclassed ``Model``), so this module imports neither Keras nor the package.
"""


def _is_model(layer):
    return isinstance(getattr(layer, "layers", None), list)


def walk_layers(model, include_models=False):
    """Every layer of ``model``, depth first in ``model.layers`` order,
    descending into nested models.

    Args:
        model: a Keras 3 or tf_keras model.
        include_models: also yield each nested model, just before its
            layers; by default only the layers inside it.
    """
    for layer in model.layers:
        if _is_model(layer):
            if include_models:
                yield layer
            yield from walk_layers(layer, include_models)
        else:
            yield layer
