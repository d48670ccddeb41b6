"""Argument checks shared across the library (NumPy only, so ``xmodal_tf.cca`` can use
them without importing TensorFlow): a TypeError for a wrong type, a ValueError for a
wrong value, each one line naming the argument and the fix.

``check_finite_rows`` is the one check for NaN/inf in numeric inputs at inference
(``predict``, ``encode``, ``transform``, ``retrieve``, ``generate``): a model fed a
non-finite value gives NaN or, worse, plausible-looking output (a fusion classifier's
masked softmax turned one NaN pixel into exactly uniform probabilities), so such rows
are refused up front, by index, on the host arrays, in one vectorised pass.
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_finite_rows", "non_finite_rows"]

#: How many offending row indices a message lists.
SHOWN_ROWS = 5


def _float_array(values) -> np.ndarray | None:
    """``values`` as a NumPy array if it holds floating-point (or complex) numbers, else
    None: integers are always finite, and strings, objects and things NumPy cannot
    convert (ragged lists, symbolic tensors) are not this check's business."""
    if isinstance(values, (str, bytes)):
        return None
    try:
        array = values if isinstance(values, np.ndarray) else np.asarray(values)
    except Exception:  # noqa: BLE001 - anything NumPy cannot convert is left to the caller's checks
        return None
    if array.dtype.kind in "fc":
        return array
    if array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 is kind "V"
        return array.astype(np.float32)
    return None


def non_finite_rows(values) -> np.ndarray:
    """Indices (int64) of the rows (first axis) of ``values`` that hold a NaN or inf;
    empty for non-float data. A 0-d array counts as one row."""
    array = _float_array(values)
    if array is None or array.size == 0:
        return np.zeros(0, dtype=np.int64)
    rows = array.reshape(1, -1) if array.ndim == 0 else array.reshape(array.shape[0], -1)
    return np.flatnonzero(~np.isfinite(rows).all(axis=1)).astype(np.int64)


def check_finite_rows(values, name: str, *, where: str | None = None,
                      fix: str = "remove or impute them first", offset: int = 0) -> None:
    """Raise ValueError if the numeric array ``values`` holds NaN or inf.

    The message names the argument (``name``), the number of offending rows and the
    first few indices (``offset`` is added, for a batch of a larger input), and the
    ``fix``: ``"{where}: {name} has non-finite values (NaN or inf) in 2 row(s) [3, 17];
    {fix}."``. Non-float data (ints, strings) passes unchecked.
    """
    bad = non_finite_rows(values)
    if not bad.size:
        return
    shown = ", ".join(str(int(row) + offset) for row in bad[:SHOWN_ROWS]) + (", ..." if bad.size > SHOWN_ROWS else "")
    prefix = f"{where}: " if where else ""
    raise ValueError(f"{prefix}{name} has non-finite values (NaN or inf) in {bad.size} row(s) [{shown}]; "
                     f"{fix.rstrip('.')}.")
