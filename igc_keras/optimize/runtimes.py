"""The deployment runtimes: their optional packages and the form of the group
convolutions each one runs fastest.

ONNX Runtime, OpenVINO, NNCF and tf2onnx are the ``deploy`` extra
(``pip install 'igc_keras[deploy]'``); :func:`require` imports one when an
export or a check asks for it, and a missing one is a one-line
:class:`~igc_keras.errors.MissingExtraError` naming that command.

:data:`FASTEST_FORMS` is where each runtime's default
``group_convolutions`` comes from (``fuse``'s vocabulary), measured on this
project's 2-core CPU (IGCV3-1.0, random weights, 224 px, median ms; "-":
the form does not convert):

==============  =============  =============  ============  ===========
runtime         batch          ``native``     ``split``     ``dense``
==============  =============  =============  ============  ===========
TF graph [1]    32             647.4 (native or split)      320.4
TFLite [1]      1, f32 / int8  13.0 / 8.8 (native, else     12.8 / 7.8
                               split)
ONNX RT [2]     1 / 32         -              13.1 / 577    5.5 / 199
OpenVINO [2]    1 / 32, f32    16.1 / 319     29.5 / 558    7.7 / 208
                               (SavedModel)   (SavedModel)  (SavedModel)
                                              14.3 / 486    7.8 / 218
                                              (ONNX)        (ONNX)
==============  =============  =============  ============  ===========

[1] ``python3 benchmarks/speed.py`` (README "Speed"); [2] ``python3
benchmarks/runtimes.py --forms``.

``native`` cannot reach ONNX: Keras' TensorFlow backend wraps each grouped
convolution in an XLA-compiled function, which tf2onnx leaves as an
unconvertible call. OpenVINO reads the ONNX file as fast as it reads the
SavedModel (7.8 / 7.7 ms above), so both runtimes take the same file, and
only the ONNX route carries a detector's non-max suppression (OpenVINO's
TensorFlow reader has no ``CombinedNonMaxSuppression``).
"""

import importlib

from igc_keras.errors import MissingExtraError
from igc_keras.layers.group_conv import resolve_group_conv_implementation

#: module -> the pip command that installs it.
EXTRAS = {
    "onnxruntime": "pip install 'igc_keras[deploy]'  (or: pip install "
                   "onnxruntime)",
    "openvino": "pip install 'igc_keras[deploy]'  (or: pip install openvino)",
    "tf2onnx": "pip install 'igc_keras[deploy]'  (or: pip install tf2onnx "
               "onnx)",
    "onnx": "pip install 'igc_keras[deploy]'  (or: pip install onnx)",
    "nncf": "pip install 'igc_keras[deploy]'  (or: pip install nncf)",
    "keras_hub": "pip install 'igc_keras[hub]'  (or: pip install keras-hub)",
}

#: export format -> the group-convolution form it runs fastest (see the
#: module docstring for the measurements; ``tf`` resolves per device).
FASTEST_FORMS = {
    "onnx": "dense",
    "openvino": "dense",
    "tflite": "dense",
    "saved_model": "tf",
}

FORMATS = tuple(FASTEST_FORMS)


def require(module, purpose):
    """Imports an optional runtime ``module`` or raises a one-line
    :class:`MissingExtraError` naming ``purpose`` and the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{purpose} needs {module}, which is not installed: "
            f"{EXTRAS[module]}") from error


def fastest_form(format, accelerator=None):
    """The ``group_convolutions`` form ``format`` runs fastest (see
    :data:`FASTEST_FORMS`); ``saved_model`` (the TF graph): ``dense`` on a
    CPU-only machine, ``native`` with a GPU / TPU (``accelerator``: default
    whether TensorFlow sees a GPU)."""
    form = FASTEST_FORMS[format]
    if form == "tf":
        return tf_graph_form(accelerator)
    return form


def tf_graph_form(accelerator=None):
    """``dense`` where TensorFlow runs on CPU only (grouped convolutions go
    through per-op XLA there), ``native`` on an accelerator."""
    return ("dense" if resolve_group_conv_implementation(
        "auto", accelerator) == "split" else "native")
