"""Training: the explicit ``tf.function`` loop for every model (``Trainer``, and
``DeepCCATrainer`` for Deep CCA), strategies by name (``make_strategy``, ``is_chief``),
and TensorBoard callbacks (image grids of generated samples and reconstructions, the
embedding projector)."""
from xmodal_tf.training.callbacks import (
    EmbeddingProjectorCallback,
    GeneratedImagesCallback,
    ReconstructionImagesCallback,
)
from xmodal_tf.training.deepcca_trainer import DeepCCATrainer
from xmodal_tf.training.strategies import STRATEGIES, describe_strategy, is_chief, make_strategy
from xmodal_tf.training.trainer import Trainer

__all__ = ["DeepCCATrainer", "EmbeddingProjectorCallback", "GeneratedImagesCallback",
           "ReconstructionImagesCallback", "STRATEGIES", "Trainer", "describe_strategy", "is_chief",
           "make_strategy"]
