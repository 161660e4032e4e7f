"""Training: fine-tuning on image folders (:mod:`igc_keras.training.finetune`).

Example::

    from igc_keras.training import finetune
    result = finetune("igcv3_1.0", "data/flowers", weights="imagenet",
                      output_dir="runs/flowers")

Note: ``igc_keras.training.finetune`` (the attribute) is the function; the
module is ``sys.modules["igc_keras.training.finetune"]``, reached with
``from igc_keras.training.finetune import ...``.
"""

from igc_keras.training.finetune import (FinetuneResult, FolderScan,
                                         add_arguments, augment_dataset,
                                         augmentation_layers, build_classifier,
                                         default_image_size, finetune,
                                         freeze_backbone,
                                         image_folder_datasets, run,
                                         scan_image_folder, unfreeze_backbone)

__all__ = ["FinetuneResult", "FolderScan", "add_arguments", "augment_dataset",
           "augmentation_layers", "build_classifier", "default_image_size",
           "finetune", "freeze_backbone", "image_folder_datasets", "run",
           "scan_image_folder", "unfreeze_backbone"]
