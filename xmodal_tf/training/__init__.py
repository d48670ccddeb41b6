"""Training loops, distribution strategies and TensorBoard callbacks.

The explicit ``tf.function`` loop for every model (``Trainer``, and ``DeepCCATrainer``
for Deep CCA), strategies by name (``make_strategy``, ``is_chief``), and TensorBoard
callbacks (image grids of generated samples and reconstructions, the embedding
projector, a classifier's confusion matrix).
"""

from xmodal_tf.training.callbacks import (
    ConfusionMatrixCallback,
    EmbeddingProjectorCallback,
    GeneratedImagesCallback,
    ReconstructionImagesCallback,
)
from xmodal_tf.training.deepcca_trainer import DeepCCATrainer
from xmodal_tf.training.strategies import STRATEGIES, describe_strategy, is_chief, make_strategy
from xmodal_tf.training.trainer import Trainer

__all__ = [
    "ConfusionMatrixCallback",
    "DeepCCATrainer",
    "EmbeddingProjectorCallback",
    "GeneratedImagesCallback",
    "ReconstructionImagesCallback",
    "STRATEGIES",
    "Trainer",
    "describe_strategy",
    "is_chief",
    "make_strategy",
]
