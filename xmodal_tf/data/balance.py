"""Class imbalance: class weights for ``model.fit`` and class-balanced ``tf.data`` pipelines.

    >>> from xmodal_tf.data.balance import class_weights, balanced_dataset
    >>> model.fit(x, y, class_weight=class_weights(y))                      # reweight the loss
    >>> model.fit(balanced_dataset(x, y, batch_size=64, seed=0), steps_per_epoch=50)  # resample

Two ways to stop a classifier from favouring its frequent classes: ``class_weights``
scales each example's loss by its class's weight (every example is seen once per epoch);
``balanced_dataset`` draws examples so that every class is equally frequent in the
batches (rare-class examples repeat, frequent-class ones are skipped within an epoch).

Labels are class indices ``0 .. num_classes - 1``: a 1-D array of integers (floats with
integer values are accepted, as Keras produces them). Importing this module loads NumPy
only; TensorFlow is imported by ``balanced_dataset``.
"""

from __future__ import annotations

import numpy as np

from xmodal_tf._validation import check_int, check_positive_int
from xmodal_tf.data.pipeline import _common_num_rows, _to_arrays, gather_rows, in_memory_tensors

__all__ = ["as_class_labels", "balanced_dataset", "class_weights"]

CLASS_WEIGHT_METHODS = ("balanced", "sqrt_balanced")


def as_class_labels(labels, *, name: str = "labels") -> np.ndarray:
    """``labels`` as a 1-D int64 array of class indices, checked.

    Args:
        labels: (n,) array-like of non-negative integer class indices; floats are
            accepted when every value is a whole number.
        name: how error messages call the argument.

    Returns:
        The labels as a 1-D int64 array.

    Raises:
        ValueError: not 1-D (a one-hot or probability matrix, a column), empty,
            NaN/inf, negative or fractional values.
        TypeError: strings, objects or booleans.
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        hint = (
            ("take np.argmax(..., axis=1) of a one-hot or probability matrix, or .ravel() a column of labels")
            if array.ndim == 2
            else "give one label per example"
        )
        raise ValueError(f"{name} must be a 1-D array of class indices; got shape {array.shape}: {hint}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: give at least one example")
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(
            f"{name} must hold integer class indices 0..num_classes-1; got dtype "
            f"{array.dtype} (map class names to indices first)"
        )
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contains NaN or inf at index {int(np.flatnonzero(~np.isfinite(array))[0])}")
        if not np.all(array == np.round(array)):
            raise ValueError(
                f"{name} must be whole numbers (class indices); got fractional values "
                f"such as {array[array != np.round(array)][0]!r}: are these probabilities?"
            )
    if array.min() < 0:
        raise ValueError(f"{name} must be non-negative class indices; got {array.min()}")
    return array.astype(np.int64)


def class_weights(labels, *, method: str = "balanced") -> dict[int, float]:
    """Per-class loss weights that undo class imbalance, as ``model.fit(class_weight=)`` takes.

    Args:
        labels: (n,) class indices of the TRAINING examples.
        method: ``"balanced"``: weight_c = n / (num_present_classes * count_c), the
            scikit-learn ``compute_class_weight("balanced")`` formula: every class then
            carries the same total weight, and the weights average to 1 over the
            examples. ``"sqrt_balanced"``: the square root of that, a milder correction
            for severe imbalance (rare classes are not weighted up as hard).

    Returns:
        {class index: weight} (Python int -> float) for every class present in
        ``labels``; a class that never occurs has no entry (it has no examples to weight).
    """
    labels = as_class_labels(labels)
    if method not in CLASS_WEIGHT_METHODS:
        raise ValueError(f"method must be one of {CLASS_WEIGHT_METHODS}; got {method!r}")
    classes, counts = np.unique(labels, return_counts=True)
    weights = len(labels) / (len(classes) * counts)
    if method == "sqrt_balanced":
        weights = np.sqrt(weights)
    return {int(label): float(weight) for label, weight in zip(classes, weights)}


def balanced_dataset(inputs, labels, *, batch_size: int, seed: int | None = None):
    """An endless ``tf.data.Dataset`` of (inputs, labels) batches with equally frequent classes.

    Each class present in ``labels`` gets its own endlessly repeated stream of example
    indices, reshuffled on every pass; ``tf.data.Dataset.sample_from_datasets`` picks
    the class of each example uniformly at random, so every batch holds about
    ``batch_size / num_classes`` examples of each class (the expected share is exactly
    equal; a batch varies around it). Examples are gathered from the arrays batch by
    batch, so the arrays are held once, not once per class.

    Pipeline: the arrays are held as CPU tensors (the in-memory cache); the batches of
    drawn indices go through a parallel, order-keeping gather and ``prefetch(AUTOTUNE)``.
    Nothing after the draws is cached: every batch is a new random draw.

    Args:
        inputs: an array (n, ...) or a dict name -> array (n, ...) (a multimodal input).
        labels: (n,) class indices.
        batch_size: examples per batch, a positive int.
        seed: makes the class draws and the shuffles reproducible; None draws afresh.

    Returns:
        An infinite, prefetched dataset of ``(inputs_batch, labels_batch)`` with the
        structure of ``inputs``; float64 arrays become float32. Because it never ends,
        give ``model.fit`` a ``steps_per_epoch`` (e.g. ``len(labels) // batch_size``).

    Raises:
        ValueError: row counts differ, bad labels, batch_size not positive.
        TypeError: inputs not an array or a dict of arrays, seed not an int.
    """
    labels = as_class_labels(labels)
    check_positive_int(batch_size, "batch_size", expected="a positive int")
    check_int(seed, "seed", allow_none=True)
    if not (isinstance(inputs, dict) or hasattr(inputs, "shape")):
        raise TypeError(f"inputs must be an array or a dict name -> array; got {type(inputs).__name__}")
    named_arrays = []
    inputs = _to_arrays(inputs, "inputs", named_arrays)
    named_arrays.append(("labels", labels))
    _common_num_rows(named_arrays)

    import tensorflow as tf

    class_seeds = _derived_seeds(seed, len(np.unique(labels)) + 1)
    per_class = [
        tf.data.Dataset.from_tensor_slices(np.flatnonzero(labels == label))
        .shuffle(int(np.sum(labels == label)), seed=class_seed, reshuffle_each_iteration=True)
        .repeat()
        for label, class_seed in zip(np.unique(labels), class_seeds[1:])
    ]
    indices = tf.data.Dataset.sample_from_datasets(
        per_class, weights=[1.0 / len(per_class)] * len(per_class), seed=class_seeds[0]
    )
    tensors = in_memory_tensors((inputs, labels))
    batches = indices.batch(batch_size).map(
        lambda batch_indices: gather_rows(tensors, batch_indices),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return batches.prefetch(tf.data.AUTOTUNE)


def _derived_seeds(seed: int | None, count: int) -> list:
    """``count`` independent seeds from one (all None when seed is None)."""
    if seed is None:
        return [None] * count
    return [int(value) for value in np.random.default_rng(seed).integers(0, 2**31 - 1, size=count)]
