"""Training: YAML recipes on any strategy, and fine-tuning on image folders
(a front-end on the same trainer).

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

from igc_keras.backends import require_tensorflow

require_tensorflow("igc_keras.training (tf.data, tf.distribute)")

from igc_keras.errors import ConfigError, NonFiniteLossError, TrainingError
from igc_keras.training.config import load_experiment
from igc_keras.training.finetune import FinetuneResult, default_image_size
from igc_keras.training.trainer import evaluate, train

__all__ = ["ConfigError", "NonFiniteLossError", "TrainingError", "evaluate",
           "load_experiment", "train", "FinetuneResult", "default_image_size"]
