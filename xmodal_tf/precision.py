"""Mixed precision and XLA, by one name each, for any xmodal_tf model.

    >>> with xm.precision.precision_scope("bfloat16"):     # models built here compute in bfloat16
    ...     model = xm.models.MultimodalAutoencoder(...)
    >>> trainer = xm.training.Trainer(model, "adam", mixed_precision="bfloat16", jit="auto")

Names (the CLI's ``--mixed-precision`` and ``--jit``, the experiments' settings and the ``Trainer``'s arguments):

* ``mixed_precision`` (``MIXED_PRECISION``): ``"off"`` (Keras policy ``float32``), ``"float16"``
  (``mixed_float16``, with a ``LossScaleOptimizer``) or ``"bfloat16"`` (``mixed_bfloat16``, no loss
  scaling). Variables stay float32 under every policy, and losses are computed in float32 or wider.
* ``jit`` (``JIT``): ``"auto"`` (XLA when a GPU is present, the model supports it and one replica trains
  it: Keras' own rule), ``"on"`` (XLA, or a ValueError naming why the model cannot compile) or ``"off"``.

Design notes (float16 on CPUs, XLA): docs/DESIGN.md (section xmodal_tf/precision.py).
"""

from __future__ import annotations

import contextlib
import warnings

import keras

__all__ = [
    "JIT",
    "MIXED_PRECISION",
    "apply_precision",
    "avoid_slow_cpu_float16",
    "check_jit",
    "check_mixed_precision",
    "inner_optimizer",
    "loss_scaled",
    "model_precision",
    "policy_name",
    "precision_scope",
    "resolve_jit",
    "xla_unsupported_reason",
]

MIXED_PRECISION = ("off", "float16", "bfloat16")
JIT = ("auto", "on", "off")
_POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
_COMPUTE_DTYPES = {"float32": "off", "float16": "float16", "bfloat16": "bfloat16"}


def check_mixed_precision(mixed_precision) -> str:
    """``mixed_precision`` if it is one of ``MIXED_PRECISION``, else a ValueError."""
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(
            f"mixed_precision must be one of {', '.join(map(repr, MIXED_PRECISION))}; got {mixed_precision!r}."
        )
    return mixed_precision


def check_jit(jit) -> str:
    """``jit`` if it is one of ``JIT``, else a ValueError (True/False read as "on"/"off")."""
    if isinstance(jit, bool):
        return "on" if jit else "off"
    if jit not in JIT:
        raise ValueError(f"jit must be one of {', '.join(map(repr, JIT))}; got {jit!r}.")
    return jit


def policy_name(mixed_precision: str) -> str:
    """The Keras dtype policy of a ``mixed_precision`` name ("bfloat16" -> "mixed_bfloat16")."""
    return _POLICIES[check_mixed_precision(mixed_precision)]


@contextlib.contextmanager
def precision_scope(mixed_precision: str):
    """Context manager: build models under ``mixed_precision``.

    Sets Keras' global dtype policy for the block and restores the previous one after it.

    Args:
        mixed_precision: one of ``MIXED_PRECISION``.

    Raises:
        ValueError: an unknown ``mixed_precision``.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy_name(mixed_precision))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _float_layers(model):
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if keras.backend.is_float_dtype(layer.dtype_policy.compute_dtype) and not layer.dtype_policy.quantization_mode:
            yield layer


def model_precision(model) -> str:
    """The precision a model computes in.

    Args:
        model: a Keras model.

    Returns:
        "off", "float16", "bfloat16", or "mixed" when its layers disagree (layers pinned
        to float32 in a mixed model do not count).
    """
    counts = {}
    for layer in _float_layers(model):
        name = _COMPUTE_DTYPES.get(layer.dtype_policy.compute_dtype, "off")
        counts[name] = counts.get(name, 0) + 1
    low = [name for name in counts if name != "off"]
    if len(low) > 1:
        return "mixed"
    return low[0] if low else "off"


def apply_precision(model, mixed_precision: str) -> None:
    """Make a built ``model`` compute in ``mixed_precision`` (variables stay float32).

    Sets the dtype policy of its floating-point layers (Keras casts inputs at each
    layer's call); layers with a non-float policy (string lookups, integer inputs) are
    left alone.

    Args:
        model: a built Keras model; changed in place.
        mixed_precision: one of ``MIXED_PRECISION``.

    Raises:
        ValueError: an unknown ``mixed_precision``.
    """
    target = policy_name(mixed_precision)
    for layer in _float_layers(model):
        if layer.dtype_policy.name != target:
            layer.dtype_policy = target


def inner_optimizer(optimizer):
    """The optimizer inside a ``LossScaleOptimizer`` (the optimizer itself otherwise)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer


def loss_scaled(optimizer, mixed_precision: str):
    """``optimizer`` as ``mixed_precision`` needs it.

    Args:
        optimizer: a Keras optimizer.
        mixed_precision: one of ``MIXED_PRECISION``.

    Returns:
        For float16, ``optimizer`` wrapped in a dynamic ``LossScaleOptimizer`` (unless it
        already is one); otherwise ``optimizer`` unchanged (a LossScaleOptimizer the user
        chose is kept: it is harmless in float32).

    Raises:
        ValueError: an unknown ``mixed_precision``.
    """
    if check_mixed_precision(mixed_precision) == "float16" and not isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer
    ):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def xla_unsupported_reason(model) -> str | None:
    """Why ``model`` cannot run under XLA, or None if it can."""
    own = getattr(model, "xla_unsupported_reason", None)
    reason = own() if callable(own) else None
    if reason:
        return reason
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if not getattr(layer, "supports_jit", True):
            return (
                f"its layer {layer.name!r} ({type(layer).__name__}) does not support XLA (for text, "
                "tokenize in the tf.data pipeline instead of inside the model)"
            )
    return None


def resolve_jit(jit: str, model, replicas: int = 1) -> bool:
    """Whether to compile ``model``'s step with XLA for the choice ``jit``.

    Several replicas rule XLA out: each replica's variables live on its own device, and
    one compiled step cannot reach them all (TensorFlow refuses: "Trying to access
    resource ... located in device ... CPU:1 from device ... CPU:0").

    Args:
        jit: "auto": with a GPU, one replica and a model that supports XLA (as Keras
            decides). "on": always, or a ValueError saying why the model cannot. "off":
            never. True and False read as "on" and "off".
        model: the model to train.
        replicas: the number of replicas that train it.

    Returns:
        True to compile with XLA.

    Raises:
        ValueError: an unknown ``jit``, or "on" for a model that cannot run under XLA.
    """
    jit = check_jit(jit)
    if jit == "off":
        return False
    reason = xla_unsupported_reason(model)
    if replicas > 1 and not reason:
        reason = (
            f"it trains on {replicas} replicas, whose variables live on different devices (one XLA-compiled "
            "step cannot reach them all)"
        )
    if jit == "on":
        if reason:
            raise ValueError(
                f"jit='on': the model {model.name!r} cannot be compiled with XLA: {reason}. "
                "Use jit='auto' or 'off' (--jit auto)."
            )
        return True
    import tensorflow as tf

    return reason is None and bool(tf.config.list_logical_devices("GPU"))


def avoid_slow_cpu_float16() -> bool:
    """Without a GPU, turn off Grappler's remapping pass for the process, and warn once.

    That pass makes float16 graphs about 1000x slower on CPUs (docs/DESIGN.md, section
    xmodal_tf/precision.py); bfloat16 is the mixed precision to use there.

    Returns:
        True if the pass was turned off now.
    """
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return False
    if tf.config.optimizer.get_experimental_options().get("remapping") is False:
        return False
    tf.config.optimizer.set_experimental_options({"remapping": False})
    warnings.warn(
        "mixed_precision='float16' without a GPU: float16 is emulated on CPUs, and TensorFlow's CPU op "
        "fusion (Grappler 'remapping') makes it about 1000x slower, so that pass is now off for this "
        "process. On CPUs use mixed_precision='bfloat16'.",
        stacklevel=3,
    )
    return True
