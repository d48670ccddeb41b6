"""Subclassed ``keras.Model``s of xmodal_tf (one file per model)."""
from xmodal_tf.models.deepcca import DeepCCA

__all__ = ["DeepCCA"]
