"""tf.data input pipelines for paired views (TensorFlow is imported on first use)."""
from __future__ import annotations

import numbers

import numpy as np

from xmodal_tf.data.datasets import TwoViewSplit


def make_dataset(views, labels=None, *, batch_size: int = 256, shuffle: bool = True,
                 seed: int | None = None, drop_remainder: bool = False,
                 repeat: bool = False):
    """A batched, optionally shuffled ``tf.data.Dataset`` over paired arrays.

    Args:
        views: one array (n, ...), a tuple/list of arrays, or a dict name -> array;
            every array has the same number n of rows (examples). Each element
            has the same structure (a list of arrays becomes a tuple; a list of
            numbers or rows is one array). A ``TwoViewSplit``
            gives elements ((view1, view2), labels).
        labels: optional (n, ...) array-like; elements become (views, labels).
        batch_size: examples per batch, a positive int.
        shuffle: shuffle with a buffer of all n examples, in a new order each epoch.
        seed: makes the shuffle order reproducible.
        drop_remainder: drop the last batch if it has fewer than batch_size examples.
        repeat: repeat forever (batches then run across epoch boundaries).

    Returns:
        A prefetched ``tf.data.Dataset``. float64 arrays are cast to float32;
        other dtypes are kept.

    Raises:
        ValueError: row counts differ, no examples, batch_size not positive, or
            drop_remainder would leave no batch at all.
        TypeError: non-numeric / ragged arrays, wrong argument types.
    """
    if isinstance(views, TwoViewSplit):
        if labels is not None:
            raise TypeError("labels must be None when views is a TwoViewSplit: its labels are used")
        views, labels = (views.view1, views.view2), views.labels
    _check_batch_size(batch_size)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be an int or None; got {seed!r}")
    named_arrays = []
    views = _to_arrays(views, "views", named_arrays)
    if labels is not None:
        labels = _to_arrays(labels, "labels", named_arrays)
    num_examples = _common_num_rows(named_arrays)
    if drop_remainder and not repeat and batch_size > num_examples:
        raise ValueError(f"batch_size={batch_size} is larger than the {num_examples} examples, so "
                         "drop_remainder=True would yield no batch; lower batch_size or "
                         "pass drop_remainder=False")

    import tensorflow as tf

    elements = views if labels is None else (views, labels)
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        dataset = dataset.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be a positive int; got {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int; got {batch_size}")


def _to_arrays(structure, name: str, named_arrays: list):
    """Same structure with NumPy leaves; appends (name, array) per leaf to named_arrays."""
    if isinstance(structure, dict):
        if not structure:
            raise ValueError(f"{name} is an empty dict; give at least one array")
        return {key: _to_arrays(value, f"{name}[{key!r}]", named_arrays)
                for key, value in structure.items()}
    if isinstance(structure, tuple) or _is_list_of_arrays(structure):
        if not structure:
            raise ValueError(f"{name} is an empty {type(structure).__name__}; give at least one array")
        items = [_to_arrays(value, f"{name}[{i}]", named_arrays)
                 for i, value in enumerate(structure)]
        # A list would be stacked into one tensor by tf.data, so it becomes a tuple.
        return type(structure)(*items) if hasattr(structure, "_fields") else tuple(items)
    array = _to_array(structure, name)
    named_arrays.append((name, array))
    return array


def _is_list_of_arrays(value) -> bool:
    """A list of arrays holds several views; a list of numbers or rows is one array."""
    return isinstance(value, list) and all(
        hasattr(item, "shape") or isinstance(item, dict) for item in value)


def _to_array(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise TypeError(f"{name} cannot be made into one array ({error}); give equal-length rows") from error
    if array.dtype == object:
        raise TypeError(f"{name} must be a numeric array; got {type(value).__name__} of dtype object "
                        "(ragged rows or None?)")
    if array.ndim == 0:
        raise ValueError(f"{name} must have a leading axis of examples; got a scalar")
    return array.astype(np.float32) if array.dtype == np.float64 else array


def _common_num_rows(named_arrays: list) -> int:
    num_rows = {len(array) for _, array in named_arrays}
    if len(num_rows) > 1:
        lengths = ", ".join(f"{name}: {len(array)}" for name, array in named_arrays)
        raise ValueError(f"all arrays need the same number of rows (examples); got {lengths}")
    num_examples = num_rows.pop()
    if num_examples == 0:
        raise ValueError("the arrays have no rows: make_dataset needs at least one example")
    return num_examples
