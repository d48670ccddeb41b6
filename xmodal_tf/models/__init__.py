"""Subclassed ``keras.Model``s of xmodal_tf (one file per model)."""
from xmodal_tf.models.deepcca import DeepCCA
from xmodal_tf.models.dual_encoder import DualEncoder

__all__ = ["DeepCCA", "DualEncoder"]
