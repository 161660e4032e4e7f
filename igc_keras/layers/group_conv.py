"""Group convolution with two weight-compatible implementations.

``GroupConv2D`` is a ``keras.layers.Conv2D`` (same config, same kernel of shape
``(kh, kw, C_in / groups, C_out)``) whose forward pass is chosen by
``implementation``:

* ``"native"``: one grouped convolution (``Conv2D(groups=...)``); on CPU Keras
  runs it through XLA.
* ``"split"``: one convolution per group on a slice of the input and of the
  kernel, then a concatenation. Exporters and converters that cannot take
  grouped convolutions (older TFLite delegates, some int8 paths) accept it.
* ``"dense"``: one ordinary convolution with the block-diagonal kernel
  assembled from the grouped kernel at each call (tile x constant mask), so
  gradients reach only the grouped weights: ``groups`` times the mult-adds,
  but the convolution (and its gradient) every CPU library optimises best —
  in TensorFlow on CPU grouped convolutions go through per-op XLA and their
  gradients are slow (``benchmarks/speed.py``).

All read the same variables, so a model can switch implementation without
touching its weights (see :func:`with_group_conv_implementation`).
"""

import contextlib

import keras
import numpy as np
from keras import ops

from igc_keras.layers.checks import check_divisible, check_positive_int

IMPLEMENTATIONS = ("native", "split", "dense")
_default_implementation = ["native"]


def _check_implementation(implementation):
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"`implementation` must be one of {IMPLEMENTATIONS}; got "
            f"implementation={implementation!r}."
        )


def default_group_conv_implementation():
    """The implementation new ``GroupConv2D`` layers get when none is given."""
    return _default_implementation[0]


def resolve_group_conv_implementation(implementation="auto",
                                     accelerator=None):
    """``native`` / ``split`` as given; ``auto`` (or None): ``split`` on a
    CPU-only machine (its gradients are much faster there), else ``native``.

    Args:
        accelerator: whether a GPU / TPU runs the model (default: whether
            backend sees a GPU).
    """
    if implementation not in (None, "auto"):
        _check_implementation(implementation)
        return implementation
    if accelerator is None:
        from igc_keras.backends import accelerator_present
        accelerator = accelerator_present()
    return "native" if accelerator else "split"


@contextlib.contextmanager
def group_conv_implementation(implementation):
    """Context manager: builders called inside it create ``implementation`` layers.

    Example::

        with igc_keras.layers.group_conv_implementation("split"):
            model = IGCV3()
    """
    _check_implementation(implementation)
    previous = _default_implementation[0]
    _default_implementation[0] = implementation
    try:
        yield
    finally:
        _default_implementation[0] = previous


def block_diagonal(kernel, groups):
    """The dense ``(kh, kw, C_in, C_out)`` kernel of a grouped
    ``(kh, kw, C_in / groups, C_out)`` kernel: zeros outside the groups'
    blocks. Works on NumPy arrays and backend tensors (differentiable)."""
    cin, cout = kernel.shape[-2], kernel.shape[-1]
    rows = np.arange(cin * groups)[:, None] // cin
    columns = np.arange(cout)[None, :] // (cout // groups)
    mask = (rows == columns).astype(
        keras.backend.standardize_dtype(kernel.dtype))
    if isinstance(kernel, np.ndarray):
        return np.tile(kernel, [1, 1, groups, 1]) * mask
    return ops.multiply(ops.tile(kernel, [1, 1, groups, 1]),
                        ops.convert_to_tensor(mask))


@keras.saving.register_keras_serializable(package="igc_keras")
class GroupConv2D(keras.layers.Conv2D):
    """``Conv2D`` with ``groups`` branches and a selectable implementation.

    Input shape ``(batch, H, W, C_in)``; output ``(batch, H', W', filters)``.
    ``groups`` must divide both ``C_in`` and ``filters``; the error names the
    argument and lists the allowed values.

    Args:
        filters, kernel_size, strides, padding, groups, use_bias, ...: as for
            ``keras.layers.Conv2D``.
        implementation: ``"native"``, ``"split"`` or ``"dense"`` (default:
            the value set by
            :func:`group_conv_implementation`, else ``"native"``).
    """

    def __init__(self, filters, kernel_size, groups=1, implementation=None,
                 **kwargs):
        if implementation is None:
            implementation = default_group_conv_implementation()
        _check_implementation(implementation)
        check_positive_int(groups, "groups", kwargs.get("name", ""))
        if filters % groups:
            check_divisible(filters, groups, "groups", kwargs.get("name", ""))
        self.implementation = implementation
        super().__init__(filters, kernel_size, groups=groups, **kwargs)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % self.groups:
            divisors = [d for d in range(1, channels + 1)
                        if channels % d == 0 and self.filters % d == 0]
            raise ValueError(
                f"{self.name}: `groups`={self.groups} does not divide the "
                f"{channels} input channels; allowed values (dividing both "
                f"{channels} inputs and {self.filters} filters): {divisors}."
            )
        super().build(input_shape)

    def convolution_op(self, inputs, kernel):
        if self.implementation == "native" or self.groups == 1:
            return super().convolution_op(inputs, kernel)
        g = self.groups
        if self.implementation == "dense":
            return ops.conv(inputs, block_diagonal(kernel, g),
                            strides=list(self.strides), padding=self.padding,
                            dilation_rate=self.dilation_rate,
                            data_format=self.data_format)
        cin = kernel.shape[-2]
        cout = self.filters // g
        outputs = []
        for i in range(g):
            x = inputs[..., i * cin:(i + 1) * cin]
            k = kernel[..., i * cout:(i + 1) * cout]
            outputs.append(
                ops.conv(x, k, strides=list(self.strides), padding=self.padding,
                         dilation_rate=self.dilation_rate,
                         data_format=self.data_format))
        return ops.concatenate(outputs, axis=-1)

    def get_config(self):
        config = super().get_config()
        config["implementation"] = self.implementation
        return config


def with_group_conv_implementation(model, implementation):
    """A copy of ``model`` whose ``GroupConv2D`` layers use ``implementation``.

    The copy has the same architecture, layer names and weights; only the way
    grouped convolutions are computed changes.
    """
    _check_implementation(implementation)

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, GroupConv2D):
            config["implementation"] = implementation
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy
