"""Paired-view augmentation for image halves, applied to whole batches in tf.data.

When two views are the left and right parts of one image (split MNIST, two-view
digits), a random translation of the *whole* image, re-split into its parts, is a new
pair that still shares what the original pair shared: both views move together, and a
column that leaves one view enters the other. This is the augmentation the ``deepcca``
experiment uses on split MNIST; it narrows the train/test gap of the correlation.
``map_random_shifts(dataset, augment)`` maps it with the pixel work in parallel (the
same shifts as ``dataset.map(augment)``).

``random_translations(images, max_shift, rng, fill)`` moves whole single-view images in
NumPy (an epoch's copy), filling with the background colour: the ``retrieval``
experiment's augmentation of emoji on white, which keeps what an emoji means (no
flips: "left arrow"; no colour changes: "dark skin tone").
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["map_random_shifts", "random_shift_pairs", "random_translations"]


def _check_shapes(view_shapes) -> tuple[int, list[int], int]:
    """(height, widths, channels) of views that are side-by-side parts of one image."""
    shapes = [tuple(int(d) for d in shape) for shape in view_shapes]
    if len(shapes) < 2 or any(len(shape) != 3 for shape in shapes):
        raise ValueError(
            f"view_shapes must be two or more (height, width, channels) image shapes; got {view_shapes!r}."
        )
    heights = {shape[0] for shape in shapes}
    channels = {shape[2] for shape in shapes}
    if len(heights) != 1 or len(channels) != 1:
        raise ValueError(
            f"random shifts need views that are side-by-side parts of one image (the "
            f"same height and channels); got view_shapes {view_shapes!r}."
        )
    return heights.pop(), [shape[1] for shape in shapes], channels.pop()


def random_shift_pairs(view_shapes, max_shift: int = 1, seed: int | None = None):
    """A function for ``dataset.map`` that shifts each example's whole image at random.

    Args:
        view_shapes: the (height, width, channels) of each view, left to right, e.g.
            ``((28, 14, 1), (28, 14, 1))`` (``TwoViewDataset.view_shapes``).
        max_shift: each example moves by dy, dx drawn uniformly from
            {-max_shift, ..., max_shift} pixels; pixels shifted in are 0.
        seed: seeds the shift draws (a ``tf.random.Generator``); with a sequential
            ``dataset.map`` (or ``map_random_shifts``, which moves the pixels in
            parallel) the same batches get the same shifts in every run. A parallel
            ``dataset.map(augment)`` would hand the draws to batches in any order.

    Returns:
        ``augment(*views)`` for ``dataset.map`` over batches of view tuples (such as
        ``make_dataset((x, y))``), each view (batch, height * width_i * channels)
        flattened or (batch, height, width_i, channels); it returns the tuple of
        shifted views, with the same shapes and dtypes. ``augment.draw_shifts`` and
        ``augment.apply_shifts`` are its two halves (``map_random_shifts`` uses them).
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, numbers.Integral) or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0 (pixels); got {max_shift!r}.")
    height, widths, channels = _check_shapes(view_shapes)
    width = sum(widths)
    if max_shift >= min(height, width):
        raise ValueError(
            f"max_shift={max_shift} would move the whole {height}x{width} image out of view; use a few pixels."
        )

    import tensorflow as tf

    with tf.device("/CPU:0"):  # tf.data runs the map on the host: keep its state there
        generator = (
            tf.random.Generator.from_non_deterministic_state()
            if seed is None
            else tf.random.Generator.from_seed(int(seed))
        )
    # The source index of every pixel under each of the (2 * max_shift + 1)^2 shifts, once:
    # a batch then looks its examples' index rows up instead of recomputing them.
    offsets = np.arange(-max_shift, max_shift + 1)
    dy, dx = (grid.reshape(-1, 1, 1) for grid in np.meshgrid(offsets, offsets, indexing="ij"))
    source_rows = np.arange(height)[None, :, None] - dy
    source_columns = np.arange(width)[None, None, :] - dx
    inside = (source_rows >= 0) & (source_rows < height) & (source_columns >= 0) & (source_columns < width)
    # height * width points at one zero pixel appended to every image.
    table = np.where(inside, source_rows * width + source_columns, height * width)
    index_table = tf.constant(table.reshape(len(table), height * width), dtype=tf.int32)

    def draw_shifts(batch):
        """(batch,) int32 id of each example's shift, drawn from the seeded generator."""
        if max_shift == 0:
            return tf.zeros((batch,), tf.int32)
        shifts = generator.uniform((batch, 2), -max_shift, max_shift + 1, dtype=tf.int32)
        return (shifts[:, 0] + max_shift) * len(offsets) + shifts[:, 1] + max_shift

    def check_views(views):
        if len(views) != len(widths):
            raise ValueError(
                f"random_shift_pairs was built for {len(widths)} views; the dataset gives {len(views)} per element."
            )

    def apply_shifts(shift_ids, *views):
        """The views moved by the shifts ``draw_shifts`` drew.

        No random draw, so it may run in a parallel map.
        """
        check_views(views)
        if max_shift == 0:
            return tuple(views)
        batch = tf.shape(views[0])[0]
        images = [tf.reshape(view, (batch, height, w, channels)) for view, w in zip(views, widths)]
        whole = tf.reshape(tf.concat(images, axis=2), (batch, height * width, channels))
        # One zero pixel at index height * width for everything shifted in from outside.
        padded = tf.concat([whole, tf.zeros((batch, 1, channels), whole.dtype)], axis=1)
        shifted = tf.reshape(
            tf.gather(padded, tf.gather(index_table, shift_ids), batch_dims=1), (batch, height, width, channels)
        )
        parts = tf.split(shifted, widths, axis=2)
        return tuple(tf.reshape(part, tf.shape(view)) for part, view in zip(parts, views))

    def augment(*views):
        check_views(views)
        if max_shift == 0:
            return views
        return apply_shifts(draw_shifts(tf.shape(views[0])[0]), *views)

    augment.draw_shifts = draw_shifts
    augment.apply_shifts = apply_shifts
    return augment


def map_random_shifts(dataset, augment):
    """``dataset.map(augment)`` for a ``random_shift_pairs`` function, with the pixel work in parallel.

    The same batches get the same shifts as with ``dataset.map(augment)``.
    A sequential map draws each batch's shifts (the generator's order is the batches'
    order, as in ``dataset.map(augment)``); a parallel, order-keeping map (AUTOTUNE)
    moves the pixels; the result ends in ``prefetch(tf.data.AUTOTUNE)``. Map after any
    cache: the draws differ on every pass.

    Args:
        dataset: a ``tf.data.Dataset`` of view tuples, e.g. ``make_dataset((x, y))``.
        augment: the function ``random_shift_pairs`` returned.

    Returns:
        The dataset of shifted view tuples.

    Raises:
        TypeError: ``dataset`` is not a ``tf.data.Dataset`` or ``augment`` is not from
            ``random_shift_pairs``.
    """
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"dataset must be a tf.data.Dataset of view tuples; got {type(dataset).__name__}.")
    if not (callable(getattr(augment, "draw_shifts", None)) and callable(getattr(augment, "apply_shifts", None))):
        raise TypeError(
            "augment must be the function random_shift_pairs(...) returned; for any "
            "other function use dataset.map(function)."
        )
    drawn = dataset.map(lambda *views: (augment.draw_shifts(tf.shape(views[0])[0]), views))
    shifted = drawn.map(
        lambda shift_ids, views: augment.apply_shifts(shift_ids, *views),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return shifted.prefetch(tf.data.AUTOTUNE)


def random_translations(images: np.ndarray, max_shift: int, rng: np.random.Generator, fill: float = 0.0) -> np.ndarray:
    """Each image moved by its own dy, dx, drawn uniformly from {-max_shift, ..., max_shift}.

    Args:
        images: (n, height, width, channels) array.
        max_shift: pixels, an int >= 0 and below both sides; 0 returns ``images``.
        rng: the draws (seed it per epoch, e.g. ``np.random.default_rng([seed, epoch])``,
            for the same epochs after a resume).
        fill: the value of pixels moved in from outside (1.0 for white on [0, 1] images).

    Returns:
        A new (n, height, width, channels) array of the same dtype.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be (n, height, width, channels); got shape {images.shape}.")
    if isinstance(max_shift, bool) or not isinstance(max_shift, numbers.Integral) or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0 (pixels); got {max_shift!r}.")
    height, width = images.shape[1:3]
    if max_shift >= min(height, width):
        raise ValueError(
            f"max_shift={max_shift} would move a whole {height}x{width} image out of view; use a few pixels."
        )
    if max_shift == 0:
        return images
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), constant_values=fill)
    starts = rng.integers(0, 2 * max_shift + 1, size=(len(images), 2))
    moved = np.empty_like(images)
    for i, (top, left) in enumerate(starts):
        moved[i] = padded[i, top : top + height, left : left + width]
    return moved
