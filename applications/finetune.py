"""Fine-tune an IGC network on your own images: a runnable program.

Put the images in one subfolder per class (``data/train/cats/*.jpg``,
``data/train/dogs/*.jpg``, ...; optionally the same layout for validation)
and run::

    python applications/finetune.py --data data/train --val-data data/val \\
        --model igcv3_1.0 --weights imagenet --head-epochs 5 --epochs 10 \\
        --output runs/cats_dogs

The installed command does the same::

    igc-keras finetune --data data/train --model igcv3_1.0 --weights imagenet \\
        --output runs/cats_dogs

and so does Python::

    from igc_keras.training.finetune import finetune
    result = finetune("igcv3_1.0", "data/train", validation_dir="data/val",
                      weights="imagenet", epochs_head=5, epochs_full=10,
                      output_dir="runs/cats_dogs")
    print(result.val_accuracy, result.final_path, result.class_names)

Phase 1 trains a new classifier on the frozen backbone (``--head-epochs``,
``--head-lr``); phase 2 fine-tunes the whole backbone (``--epochs``, ``--lr``)
with its BatchNormalization layers kept in inference mode. ``--weights`` is
``imagenet`` (variants with released weights: ``igcv3_1.0``,
``igcv1_l100m2``, ``igcv1_l16m16``, ``igcv1_l4m32``; downloaded once), the path
of a backbone weights file saved with ``include_top=False, pooling="avg"``,
or omitted (random initialisation). Outputs in ``--output``: ``best.keras``,
``final.keras``, ``training_log.csv``, ``class_names.json``, ``metrics.json``.
Load the result with ``keras.models.load_model(".../final.keras")`` after
``import igc_keras`` (it registers the custom layers); it takes RGB images
with values 0..255 at the training size.

``python applications/finetune.py --help`` lists every option.
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
    sys.exit(main(["finetune"] + sys.argv[1:]))
