"""Which dtype the covariance algebra of the CCA-family objectives runs in (``compute_dtype``).

``resolve_compute_dtype`` turns a ``compute_dtype`` setting ("auto", "float64", "float32" or
None) into float32 or float64 for given outputs: "auto" is float64 on a CPU and float32 on
an accelerator. Shared by ``xmodal_tf.losses`` and ``xmodal_tf.eckart_young``.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["AUTO", "check_compute_dtype", "common_float_dtype", "resolve_compute_dtype"]

#: ``compute_dtype`` that picks float64 on a CPU and float32 on an accelerator.
AUTO = "auto"

_COMPUTE_DTYPE_CHOICES = "'auto', 'float64', 'float32' or None"


def check_compute_dtype(compute_dtype):
    """Return a float tf.DType, "auto", or None (meaning: the output dtype)."""
    if compute_dtype is None:
        return None
    if isinstance(compute_dtype, str) and compute_dtype == AUTO:
        return AUTO
    try:
        dtype = tf.as_dtype(compute_dtype)
    except TypeError as error:
        raise TypeError(f"compute_dtype must be {_COMPUTE_DTYPE_CHOICES}; got {compute_dtype!r}.") from error
    if dtype not in (tf.float32, tf.float64):
        raise ValueError(
            f"compute_dtype must be {_COMPUTE_DTYPE_CHOICES}; got {dtype.name}. "
            "Use 'auto' to pick float64 on a CPU and float32 on a GPU."
        )
    return dtype


def _covariance_dtype_for(device_type) -> tf.DType:
    """The ``"auto"`` choice of covariance dtype for a device type ("CPU", "GPU", "TPU").

    float64 on a CPU, where it costs about 1 ms a step for 50 x 50 covariances and keeps a
    margin for badly scaled outputs; float32 on an accelerator, where float64 runs at
    1/2 to 1/64 of the float32 speed and float32 changes the loss and its gradient by far
    less than the minibatch noise (``benchmarks/bench_covariance_precision.py``). An
    unknown or empty device type is treated as a CPU.
    """
    if not isinstance(device_type, str):
        raise TypeError(f"device_type must be a string such as 'CPU' or 'GPU'; got {device_type!r}.")
    return tf.float64 if device_type.upper() in ("", "CPU") else tf.float32


def _device_type_of(tensor) -> str:
    """The device type ("CPU", "GPU", ...) a tensor is placed on, or "" when unknown
    (a graph tensor created outside any ``tf.device`` scope)."""
    try:
        name = tensor.device or ""
    except (AttributeError, ValueError):  # a symbolic tensor without a device
        return ""
    if not name:
        return ""
    return (tf.DeviceSpec.from_string(name).device_type or "").upper()


def _current_device_type() -> str:
    """Where TensorFlow will run the next op: the enclosing ``tf.device`` scope (inside a
    ``tf.function``, e.g. a ``tf.distribute`` replica), else a GPU when one is visible
    (the placer prefers it), else the CPU."""
    if not tf.executing_eagerly():
        scoped = _device_type_of(tf.constant(0.0, name="device_probe"))
        if scoped:
            return scoped
    for kind in ("GPU", "TPU"):
        if tf.config.list_logical_devices(kind):
            return kind
    return "CPU"


def resolve_compute_dtype(compute_dtype, h1, h2) -> tf.DType:
    """The dtype the covariance algebra of outputs ``h1``, ``h2`` runs in.

    Works eagerly and while a ``tf.function`` traces.

    Args:
        compute_dtype: ``"auto"``: float64 for float64 outputs; float32 for half-precision
            outputs (both float16 or bfloat16, i.e. mixed precision: their own rounding,
            about 4e-3 relative for bfloat16, dwarfs float32's 6e-8, so float64 algebra
            buys nothing); otherwise ``_covariance_dtype_for`` the device of ``h1`` / ``h2``
            (their placement, else the enclosing device scope, else the visible devices).
            None: the wider of the outputs' dtypes, at least float32. A dtype ("float64",
            "float32"): itself.
        h1: the first view's outputs, a tensor.
        h2: the second view's outputs, a tensor.

    Returns:
        ``tf.float32`` or ``tf.float64``.

    Raises:
        TypeError: ``compute_dtype`` is not a dtype, "auto" or None.
        ValueError: ``compute_dtype`` is a dtype other than float32 and float64.
    """
    compute = check_compute_dtype(compute_dtype)
    if compute is None:
        return common_float_dtype(h1, h2)
    if compute != AUTO:
        return compute
    if common_float_dtype(h1, h2) == tf.float64:
        return tf.float64
    half = (tf.float16, tf.bfloat16)
    if tf.as_dtype(h1.dtype) in half and tf.as_dtype(h2.dtype) in half:
        return tf.float32
    device = _device_type_of(h1) or _device_type_of(h2) or _current_device_type()
    return _covariance_dtype_for(device)


def common_float_dtype(h1: tf.Tensor, h2: tf.Tensor) -> tf.DType:
    """Output dtype: the wider of the two inputs', and at least float32."""
    widths = {tf.float16: 0, tf.bfloat16: 0, tf.float32: 1, tf.float64: 2}
    widest = max(widths.get(h1.dtype, 1), widths.get(h2.dtype, 1))
    return tf.float64 if widest == 2 else tf.float32
