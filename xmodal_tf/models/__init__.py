"""Subclassed ``keras.Model``s of xmodal_tf (one file per model).

The models share the base ``CrossModalModel`` (``base.py``). The network builders live in
``xmodal_tf.encoders`` and ``xmodal_tf.decoders``; the decoder, generator and
discriminator builders are re-exported here under their old names.
"""

from xmodal_tf import pretrained as _pretrained  # noqa: F401  (registers the pretrained encoders for load_model)
from xmodal_tf.decoders import (
    build_dense_discriminator,
    build_dense_generator,
    build_discriminator,
    build_generator,
    dense_decoder,
    image_decoder,
)
from xmodal_tf.models.base import CrossModalModel, MultiWorkerFitMixin
from xmodal_tf.models.cgan import ConditionalGAN
from xmodal_tf.models.deep_mcca import DeepMCCA
from xmodal_tf.models.deepcca import DeepCCA
from xmodal_tf.models.dual_encoder import DualEncoder
from xmodal_tf.models.fusion import FUSION_STRATEGIES, MASK_INPUT, FusionClassifier, build_fusion_classifier
from xmodal_tf.models.mae import MultimodalAutoencoder

__all__ = [
    "FUSION_STRATEGIES",
    "MASK_INPUT",
    "ConditionalGAN",
    "CrossModalModel",
    "DeepCCA",
    "DeepMCCA",
    "DualEncoder",
    "FusionClassifier",
    "MultimodalAutoencoder",
    "MultiWorkerFitMixin",
    "build_dense_discriminator",
    "build_dense_generator",
    "build_discriminator",
    "build_fusion_classifier",
    "build_generator",
    "dense_decoder",
    "image_decoder",
]
