"""Train an IGC network from a YAML recipe: a runnable program.

    python applications/train.py recipes/quickstart.yaml
    python applications/train.py recipes/imagenet_igcv3_1.0_tpu.yaml --set runtime.tpu=my-tpu
    python applications/train.py recipes/imagenet_igcv3_1.0_gpu.yaml --set trainer.epochs=10

is ``igc-keras train`` (and ``python applications/train.py --evaluate RECIPE
--checkpoint PATH`` is ``igc-keras evaluate``). A recipe is an experiment in
TF Model Garden's layout (``runtime``, ``task``, ``trainer``); ``--set
key=value`` overrides any key. The same recipe runs on one CPU or GPU,
mirrored GPUs, several workers (``TF_CONFIG``) or a TPU: only
``runtime.distribution_strategy`` changes. Restarting a killed run with the
same recipe resumes it. Outputs in ``trainer.model_dir``: ``log.csv``,
``tensorboard/``, ``last.keras``, ``best.keras``, ``export/`` (SavedModel),
``result.json``.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

try:
    import igc_keras  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))))

from igc_keras_cli import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--evaluate"]:
        sys.exit(main(["evaluate"] + argv[1:]))
    sys.exit(main(["train"] + argv))
