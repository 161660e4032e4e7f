"""Training: YAML recipes on any strategy, and fine-tuning on image folders.

Recipes::

    from igc_keras.training import load_experiment, train, evaluate
    config = load_experiment("recipes/quickstart.yaml", ["trainer.epochs=3"])
    model, result = train(config)          # fit or custom loop, resumable
    evaluate(config, "runs/quickstart/best.keras")
    # task.quantization / task.pruning: tfmot QAT or pruning fine-tuning
    train(load_experiment("recipes/quickstart_qat.yaml"))

Fine-tuning::

    from igc_keras.training.finetune import finetune
    result = finetune("igcv3_1.0", "data/flowers", weights="imagenet",
                      output_dir="runs/flowers")

``igc_keras.training.finetune`` is the module (the function of the same name
lives inside it and is deliberately not re-exported here, so the module is
never shadowed).
"""

from igc_keras.training.config import ConfigError, load_experiment
from igc_keras.training.finetune import (FinetuneResult, FolderScan,
                                         add_arguments, augment_dataset,
                                         augmentation_layers, build_classifier,
                                         default_image_size,
                                         freeze_backbone,
                                         image_folder_datasets, run,
                                         scan_image_folder, unfreeze_backbone)
from igc_keras.training.trainer import evaluate, train

__all__ = ["ConfigError", "evaluate", "load_experiment", "train",
           "FinetuneResult", "FolderScan", "add_arguments", "augment_dataset",
           "augmentation_layers", "build_classifier", "default_image_size",
           "freeze_backbone", "image_folder_datasets", "run",
           "scan_image_folder", "unfreeze_backbone"]
