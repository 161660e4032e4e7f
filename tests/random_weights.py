"""Random but sane weights for equivalence tests (bridge, TFLite)."""

import numpy as np


def randomize_weights(model, seed=0, depthwise=("depthwise_kernel",)):
    """He-scaled random kernels and BatchNorms near identity, so outputs
    differ between images and anchors and stay in range through every
    block. Kernels whose path holds one of ``depthwise`` count 3x3 fan-in
    only. Returns ``model``."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        shape, path = tuple(weight.shape), weight.path
        if "kernel" in path and any(name in path for name in depthwise):
            value = rng.normal(0, np.sqrt(2 / np.prod(shape[:2])), shape)
        elif "kernel" in path:
            value = rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape)
        elif "variance" in path:
            value = 1 + 0.1 * np.abs(rng.normal(size=shape))
        elif "gamma" in path:
            value = 1 + 0.1 * rng.normal(size=shape)
        else:  # beta, biases, moving means
            value = 0.1 * rng.normal(size=shape)
        values.append(value.astype("float32"))
    model.set_weights(values)
    return model
