"""tf.data input pipelines for paired views (TensorFlow is imported on first use).

Shaped to keep an accelerator fed: the arrays sit once in host memory, each batch is
one parallel, order-keeping gather of shuffled indices, unshuffled batches are cached
after the first pass, and every pipeline ends in ``prefetch(tf.data.AUTOTUNE)``.
``benchmarks/bench_pipeline.py`` times them against the same batches as tensors.
"""

from __future__ import annotations

import numpy as np

from xmodal_tf._validation import check_bool, check_int, check_positive_int
from xmodal_tf.data.datasets import TwoViewSplit


def make_dataset(
    views,
    labels=None,
    *,
    batch_size: int = 256,
    shuffle: bool = True,
    seed: int | None = None,
    drop_remainder: bool = False,
    repeat: bool = False,
    cache: bool = True,
):
    """A batched, optionally shuffled ``tf.data.Dataset`` over paired arrays.

    Pipeline: the arrays are held once as CPU tensors; example indices (0..n-1) are
    shuffled and batched, and a parallel, order-keeping map gathers each batch's rows.
    The shuffle buffer holds n indices, not a copy of the examples, and the elements
    (their order under a seed included) equal those of slicing, shuffling and
    batching the arrays themselves.

    Args:
        views: one array (n, ...), a tuple/list of arrays, or a dict name -> array;
            every array has the same number n of rows (examples). Each element
            has the same structure (a list of arrays becomes a tuple; a list of
            numbers or rows is one array). A ``TwoViewSplit``
            gives elements ((view1, view2), labels).
        labels: optional (n, ...) array-like; elements become (views, labels).
        batch_size: examples per batch, a positive int.
        shuffle: shuffle all n examples (a buffer of n indices), in a new order each epoch.
        seed: makes the shuffle order reproducible.
        drop_remainder: drop the last batch if it has fewer than batch_size examples.
        repeat: repeat forever (batches then run across epoch boundaries).
        cache: keep the batches of the first pass in memory and replay them on later
            passes. Only an unshuffled pipeline caches (its batches are the same on
            every pass), and with ``repeat`` only when batch_size divides n (else
            batches straddle epochs and differ). Costs one more copy of the arrays;
            a pass stopped early (``take``) fills nothing. False: gather every pass.

    Returns:
        A ``tf.data.Dataset`` ending in ``prefetch(AUTOTUNE)``. float64 arrays are
        cast to float32; other dtypes are kept.

    Raises:
        ValueError: row counts differ, no examples, batch_size not positive, or
            drop_remainder would leave no batch at all.
        TypeError: non-numeric / ragged arrays, wrong argument types.
    """
    if isinstance(views, TwoViewSplit):
        if labels is not None:
            raise TypeError("labels must be None when views is a TwoViewSplit: its labels are used")
        views, labels = (views.view1, views.view2), views.labels
    check_positive_int(batch_size, "batch_size", expected="a positive int")
    for name, flag in (("shuffle", shuffle), ("drop_remainder", drop_remainder), ("repeat", repeat), ("cache", cache)):
        check_bool(flag, name)
    check_int(seed, "seed", allow_none=True)
    named_arrays = []
    views = _to_arrays(views, "views", named_arrays)
    if labels is not None:
        labels = _to_arrays(labels, "labels", named_arrays)
    num_examples = _common_num_rows(named_arrays)
    if drop_remainder and not repeat and batch_size > num_examples:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {num_examples} examples, so "
            "drop_remainder=True would yield no batch; lower batch_size or "
            "pass drop_remainder=False"
        )

    import tensorflow as tf

    elements = views if labels is None else (views, labels)
    tensors = in_memory_tensors(elements)
    # Shuffling indices instead of examples gives the same order under a seed: the
    # permutation depends on the seed, the buffer size and n, not on the elements.
    indices = tf.data.Dataset.range(num_examples)
    if shuffle:
        indices = indices.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    cache_batches = cache and not shuffle and (not repeat or num_examples % batch_size == 0)
    if repeat and not cache_batches:
        indices = indices.repeat()
    dataset = indices.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda batch_indices: gather_rows(tensors, batch_indices),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if cache_batches:
        dataset = dataset.cache()
        if repeat:
            dataset = dataset.repeat()
    return dataset.prefetch(tf.data.AUTOTUNE)


def in_memory_tensors(structure):
    """``structure`` with its NumPy leaves as tensors in host memory.

    tf.data runs on the CPU, so a pipeline that gathers from them never copies back
    from a GPU.

    Args:
        structure: a nest of NumPy arrays.

    Returns:
        The same nest of CPU tensors.
    """
    import tensorflow as tf

    with tf.device("/CPU:0"):
        return tf.nest.map_structure(tf.convert_to_tensor, structure)


def gather_rows(tensors, rows):
    """The ``rows`` (a 1-D index tensor) of every tensor in the structure ``tensors``."""
    import tensorflow as tf

    return tf.nest.map_structure(lambda tensor: tf.gather(tensor, rows), tensors)


def _to_arrays(structure, name: str, named_arrays: list):
    """Same structure with NumPy leaves; appends (name, array) per leaf to named_arrays."""
    if isinstance(structure, dict):
        if not structure:
            raise ValueError(f"{name} is an empty dict; give at least one array")
        return {key: _to_arrays(value, f"{name}[{key!r}]", named_arrays) for key, value in structure.items()}
    if isinstance(structure, tuple) or _is_list_of_arrays(structure):
        if not structure:
            raise ValueError(f"{name} is an empty {type(structure).__name__}; give at least one array")
        items = [_to_arrays(value, f"{name}[{i}]", named_arrays) for i, value in enumerate(structure)]
        # A list would be stacked into one tensor by tf.data, so it becomes a tuple.
        return type(structure)(*items) if hasattr(structure, "_fields") else tuple(items)
    array = _to_array(structure, name)
    named_arrays.append((name, array))
    return array


def _is_list_of_arrays(value) -> bool:
    """A list of arrays holds several views; a list of numbers or rows is one array."""
    return isinstance(value, list) and all(hasattr(item, "shape") or isinstance(item, dict) for item in value)


def _to_array(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise TypeError(f"{name} cannot be made into one array ({error}); give equal-length rows") from error
    if array.dtype == object:
        raise TypeError(
            f"{name} must be a numeric array; got {type(value).__name__} of dtype object (ragged rows or None?)"
        )
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
