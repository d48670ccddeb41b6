"""xmodal_tf: cross-modal transfer learning for TensorFlow 2 / Keras 3.

The linear CCA estimators are imported eagerly (NumPy/SciPy only); submodules that
need TensorFlow (``encoders``, ``decoders``, ``layers``, ``losses``, ``transfer`` ...) load on first
attribute access, so ``import xmodal_tf`` stays fast.
"""

import importlib

from xmodal_tf.cca import CCA, MCCA
from xmodal_tf.kernel_cca import KernelCCA

__version__ = "0.1.0"

_LAZY_SUBMODULES = (
    "cca",
    "data",
    "decoders",
    "encoders",
    "experiments",
    "layers",
    "losses",
    "metrics",
    "models",
    "network",
    "optimizers",
    "plots",
    "precision",
    "pretrained",
    "training",
    "transfer",
)

__all__ = ["CCA", "KernelCCA", "MCCA", "__version__", *_LAZY_SUBMODULES]


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"xmodal_tf.{name}")
    raise AttributeError(f"module 'xmodal_tf' has no attribute {name!r}")
