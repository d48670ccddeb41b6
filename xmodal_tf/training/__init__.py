"""Custom training loops (``tf.function`` steps, distribution strategies, checkpoints)
and TensorBoard callbacks (image grids of generated samples and reconstructions, the
embedding projector)."""
from xmodal_tf.training.callbacks import (
    EmbeddingProjectorCallback,
    GeneratedImagesCallback,
    ReconstructionImagesCallback,
)
from xmodal_tf.training.deepcca_trainer import DeepCCATrainer

__all__ = ["DeepCCATrainer", "EmbeddingProjectorCallback", "GeneratedImagesCallback",
           "ReconstructionImagesCallback"]
