"""Training: fine-tuning on image folders, experiment configs, strategies.

Example::

    from igc_keras.training.finetune import finetune
    result = finetune("igcv3_1.0", "data/flowers", weights="imagenet",
                      output_dir="runs/flowers")

``igc_keras.training.finetune`` is the module (the function of the same name
lives inside it and is deliberately not re-exported here, so the module is
never shadowed).
"""


from igc_keras.training.finetune import (FinetuneResult, FolderScan,
                                         add_arguments, augment_dataset,
                                         augmentation_layers, build_classifier,
                                         default_image_size,
                                         freeze_backbone,
                                         image_folder_datasets, run,
                                         scan_image_folder, unfreeze_backbone)

__all__ = ["FinetuneResult", "FolderScan", "add_arguments", "augment_dataset",
           "augmentation_layers", "build_classifier", "default_image_size",
           "freeze_backbone", "image_folder_datasets", "run",
           "scan_image_folder", "unfreeze_backbone"]
