"""Custom training loops (``tf.function`` steps, distribution strategies, checkpoints)."""
from xmodal_tf.training.deepcca_trainer import DeepCCATrainer

__all__ = ["DeepCCATrainer"]
