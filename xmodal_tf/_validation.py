"""Argument checks shared across the library (NumPy only, so ``xmodal_tf.cca`` can use
them without importing TensorFlow). One rule: a TypeError for a wrong type, a ValueError
for a wrong value, each one line naming the argument, what it got, and the fix.

``check_finite_rows`` is the one check for NaN/inf in numeric inputs at inference
(``predict``, ``encode``, ``transform``, ``retrieve``, ``generate``): a model fed a
non-finite value gives NaN or, worse, plausible-looking output (a fusion classifier's
masked softmax turned one NaN pixel into exactly uniform probabilities), so such rows
are refused up front, by index, on the host arrays, in one vectorised pass.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "check_bool",
    "check_choice",
    "check_finite_rows",
    "check_image_shape",
    "check_int",
    "check_int_sequence",
    "check_number",
    "check_positive_int",
    "check_rate",
    "check_ridges",
    "check_shape",
    "describe",
    "non_finite_rows",
]

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
    """The rows (first axis) of ``values`` that hold a NaN or inf.

    Args:
        values: an array-like; a 0-d array counts as one row.

    Returns:
        The rows' indices, an int64 array; empty for non-float data.
    """
    array = _float_array(values)
    if array is None or array.size == 0:
        return np.zeros(0, dtype=np.int64)
    rows = array.reshape(1, -1) if array.ndim == 0 else array.reshape(array.shape[0], -1)
    return np.flatnonzero(~np.isfinite(rows).all(axis=1)).astype(np.int64)


def check_finite_rows(
    values, name: str, *, where: str | None = None, fix: str = "remove or impute them first", offset: int = 0
) -> None:
    """Raise ValueError if the numeric array ``values`` holds NaN or inf.

    The message names the argument, the number of offending rows, the first few indices
    and the fix: ``"{where}: {name} has non-finite values (NaN or inf) in 2 row(s)
    [3, 17]; {fix}."``. Non-float data (ints, strings) passes unchecked.

    Args:
        values: the array-like to check, rows along the first axis.
        name: the argument's name in the message.
        where: optional prefix naming the caller (e.g. "CCA.transform").
        fix: what to do about it.
        offset: added to the row indices, for a batch of a larger input.

    Raises:
        ValueError: some row holds NaN or inf.
    """
    bad = non_finite_rows(values)
    if not bad.size:
        return
    shown = ", ".join(str(int(row) + offset) for row in bad[:SHOWN_ROWS]) + (", ..." if bad.size > SHOWN_ROWS else "")
    prefix = f"{where}: " if where else ""
    raise ValueError(
        f"{prefix}{name} has non-finite values (NaN or inf) in {bad.size} row(s) [{shown}]; {fix.rstrip('.')}."
    )


def describe(value) -> str:
    """A short description of ``value`` for messages.

    Args:
        value: anything.

    Returns:
        E.g. "a ndarray of shape (3, 4)", "a list of 2 (a ndarray of shape (3,), a str)",
        "a dict with keys ['a', 'b']", "int".
    """
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(describe(item) for item in value)})"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    shape = getattr(value, "shape", None)
    if shape is not None:
        try:
            shape = tuple(shape)
        except TypeError:  # a symbolic shape of unknown rank
            pass
        return f"a {type(value).__name__} of shape {shape}"
    return type(value).__name__


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(
    value,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
    expected: str | None = None,
) -> int | None:
    """``value`` as a checked int.

    Args:
        value: the value to check.
        name: the argument's name in messages.
        minimum: the smallest allowed value, or None.
        maximum: the largest allowed value, or None.
        allow_none: let None pass (and return it).
        expected: replaces the generated "an int >= 1" in messages where the argument's
            meaning says more (e.g. "a positive integer (images per condition)").

    Returns:
        ``int(value)``, or None.

    Raises:
        TypeError: ``value`` is not an integer (bools are not).
        ValueError: ``value`` is outside ``[minimum, maximum]``.
    """
    if value is None and allow_none:
        return None
    bounds = " and ".join(
        part
        for part in (f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else "")
        if part
    )
    wanted = expected or f"an int{' ' + bounds if bounds else ''}{' or None' if allow_none else ''}"
    if not _is_int(value):
        raise TypeError(f"{name} must be {wanted}; got {value!r} ({type(value).__name__}).")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {wanted}; got {value}.")
    return int(value)


def check_positive_int(value, name: str, *, allow_none: bool = False, expected: str | None = None) -> int | None:
    """``check_int(value, name, minimum=1)``: sizes, counts, epochs."""
    return check_int(value, name, minimum=1, allow_none=allow_none, expected=expected)


def check_int_sequence(
    values, name: str, *, minimum: int = 1, allow_empty: bool = False, example: str = "(64,)"
) -> tuple[int, ...]:
    """``values`` as a tuple of ints >= ``minimum`` (layer widths, filter counts).

    Args:
        values: a sequence of ints; a single int is one entry; None is () with
            ``allow_empty``.
        name: the argument's name in messages.
        minimum: the smallest allowed entry.
        allow_empty: accept an empty sequence (or None).
        example: a valid value, shown in messages.

    Returns:
        A tuple of ints.

    Raises:
        TypeError: a string, a non-sequence, or an entry that is not an int.
        ValueError: an empty sequence (unless ``allow_empty``), or an entry below
            ``minimum`` (each entry is checked by ``check_int`` as "each entry of {name}").
    """
    if values is None and allow_empty:
        return ()
    if _is_int(values):
        values = (values,)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(
            f"{name} must be a sequence of ints >= {minimum} such as {example}; got {values!r} "
            f"({type(values).__name__})."
        )
    values = tuple(values)
    if not values and not allow_empty:
        raise ValueError(f"{name} must not be empty; pass e.g. {example}.")
    return tuple(check_int(value, f"each entry of {name}", minimum=minimum) for value in values)


def check_number(
    value,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    allow_none: bool = False,
    expected: str | None = None,
) -> float | None:
    """``value`` as a finite float.

    Args:
        value: the value to check.
        name: the argument's name in messages.
        minimum: the lower bound, or None.
        maximum: the upper bound, or None.
        exclusive_minimum: the lower bound itself is not allowed.
        exclusive_maximum: the upper bound itself is not allowed.
        allow_none: let None pass (and return it).
        expected: replaces the generated "a finite number >= 0" in messages (e.g. "a rate
            in [0, 1)").

    Returns:
        ``float(value)``, or None.

    Raises:
        TypeError: ``value`` is not a real number (bools are not).
        ValueError: ``value`` is NaN or inf, or outside the bounds.
    """
    if value is None and allow_none:
        return None
    low = f"{'>' if exclusive_minimum else '>='} {minimum:g}" if minimum is not None else ""
    high = f"{'<' if exclusive_maximum else '<='} {maximum:g}" if maximum is not None else ""
    bounds = " and ".join(part for part in (low, high) if part)
    wanted = expected or f"a finite number{' ' + bounds if bounds else ''}{' or None' if allow_none else ''}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {wanted}; got {value!r} ({type(value).__name__}).")
    value = float(value)
    below = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    above = maximum is not None and (value >= maximum if exclusive_maximum else value > maximum)
    if not math.isfinite(value) or below or above:
        raise ValueError(f"{name} must be {wanted}; got {value!r}.")
    return value


def check_rate(value, name: str) -> float:
    """``value`` as a float in [0, 1): a dropout rate. TypeError for a non-number."""
    return check_number(value, name, minimum=0, maximum=1, exclusive_maximum=True, expected="a rate in [0, 1)")


def check_ridges(values, reg, expected: str) -> list[float]:
    """Each of ``values``, the entries of a ridge argument ``reg``, as a float >= 0.

    Args:
        values: the ridges, one per view.
        reg: the argument as given, shown in messages.
        expected: what ``reg`` must be, for the TypeError (e.g. "a float >= 0 or a pair of them").

    Returns:
        The ridges as floats.

    Raises:
        TypeError: an entry that is not a real number (bools are not).
        ValueError: an entry that is NaN, inf or negative.
    """
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"reg must be {expected}; got {reg!r}.")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"reg must be finite and >= 0; got {reg!r}.")
    return [float(value) for value in values]


def check_bool(value, name: str) -> bool:
    """``value`` if it is True or False (NumPy bools too), else TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
    return bool(value)


def check_choice(value, name: str, choices) -> object:
    """``value`` if it is one of ``choices``, else ValueError listing them."""
    choices = tuple(choices)
    if isinstance(value, (list, dict, set)) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value


def check_shape(shape, name: str, *, rank: int | None = None, allow_none: bool = False, hint: str = "") -> tuple:
    """``shape`` as a tuple of positive ints.

    Args:
        shape: a sequence of sizes, or a single int (one entry).
        name: the argument's name in messages.
        rank: the required number of entries, or None.
        allow_none: allow None entries (unknown sizes).
        hint: appended to the rank message (e.g. how to add a channel axis).

    Returns:
        A tuple of ints (and Nones with ``allow_none``).

    Raises:
        TypeError: ``shape`` is not a sequence.
        ValueError: a wrong rank, or an entry that is not a positive int.
    """
    if _is_int(shape):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"{name} must be a tuple of positive ints; got {shape!r} ({type(shape).__name__}).")
    shape = tuple(shape)
    if rank is not None and len(shape) != rank:
        raise ValueError(f"{name} must have {rank} entries; got {shape!r}.{' ' + hint if hint else ''}")
    for size in shape:
        if size is None and allow_none:
            continue
        if not _is_int(size) or size < 1:
            kind = "positive ints or None" if allow_none else "positive ints"
            raise ValueError(f"{name} must hold {kind}; got {shape!r}.")
    return tuple(None if size is None else int(size) for size in shape)


def check_image_shape(shape, name: str, *, allow_none: bool = False, example: str = "(28, 28, 1)") -> tuple:
    """``shape`` as (height, width, channels) of positive ints.

    Args:
        shape: the image shape to check.
        name: the argument's name in messages.
        allow_none: let the height and width be None (images of any size); the channels
            never may.
        example: a valid shape, shown with the hint to add a channel axis.

    Returns:
        A tuple (height, width, channels).

    Raises:
        TypeError: ``shape`` is not a sequence.
        ValueError: another rank, a bad entry, or unknown channels.
    """
    if _is_int(shape) or (hasattr(shape, "__len__") and not isinstance(shape, (str, bytes)) and len(shape) != 3):
        raise ValueError(
            f"{name} must be (height, width, channels), rank 3; got {shape!r}. For grayscale "
            f"images add a channel axis, e.g. {example}."
        )
    shape = check_shape(shape, name, rank=3, allow_none=allow_none)
    if shape[2] is None:
        raise ValueError(f"{name} must have a known number of channels; got {shape!r}.")
    return shape
