"""Paired-view augmentation for image halves, applied to whole batches in tf.data.

When two views are the left and right parts of one image (split MNIST, two-view
digits), a random translation of the *whole* image, re-split into its parts, is a new
pair that still shares what the original pair shared: both views move together, and a
column that leaves one view enters the other. This is the augmentation the ``deepcca``
experiment uses on split MNIST; it narrows the train/test gap of the correlation.
"""
from __future__ import annotations

import numbers

__all__ = ["random_shift_pairs"]


def _check_shapes(view_shapes) -> tuple[int, list[int], int]:
    """(height, widths, channels) of views that are side-by-side parts of one image."""
    shapes = [tuple(int(d) for d in shape) for shape in view_shapes]
    if len(shapes) < 2 or any(len(shape) != 3 for shape in shapes):
        raise ValueError(f"view_shapes must be two or more (height, width, channels) image shapes; "
                         f"got {view_shapes!r}.")
    heights = {shape[0] for shape in shapes}
    channels = {shape[2] for shape in shapes}
    if len(heights) != 1 or len(channels) != 1:
        raise ValueError(f"random shifts need views that are side-by-side parts of one image (the "
                         f"same height and channels); got view_shapes {view_shapes!r}.")
    return heights.pop(), [shape[1] for shape in shapes], channels.pop()


def random_shift_pairs(view_shapes, max_shift: int = 1, seed: int | None = None):
    """A function for ``dataset.map`` that shifts each example's whole image at random.

    Args:
        view_shapes: the (height, width, channels) of each view, left to right, e.g.
            ``((28, 14, 1), (28, 14, 1))`` (``TwoViewDataset.view_shapes``).
        max_shift: each example moves by dy, dx drawn uniformly from
            {-max_shift, ..., max_shift} pixels; pixels shifted in are 0.
        seed: seeds the shift draws (a ``tf.random.Generator``); with a sequential
            ``dataset.map`` the same batches get the same shifts in every run.

    Returns:
        ``augment(*views)`` for ``dataset.map`` over batches of view tuples (such as
        ``make_dataset((x, y))``), each view (batch, height * width_i * channels)
        flattened or (batch, height, width_i, channels); it returns the tuple of
        shifted views, with the same shapes and dtypes.
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, numbers.Integral) or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0 (pixels); got {max_shift!r}.")
    height, widths, channels = _check_shapes(view_shapes)
    width = sum(widths)
    if max_shift >= min(height, width):
        raise ValueError(f"max_shift={max_shift} would move the whole {height}x{width} image out of "
                         f"view; use a few pixels.")

    import tensorflow as tf

    generator = (tf.random.Generator.from_non_deterministic_state() if seed is None
                 else tf.random.Generator.from_seed(int(seed)))
    rows = tf.range(height)[:, None]
    columns = tf.range(width)[None, :]

    def shift_indices(batch):
        """(batch, height * width) source index of every pixel; height * width means 0."""
        shifts = generator.uniform((batch, 2), -max_shift, max_shift + 1, dtype=tf.int32)
        source_rows = rows[None] - shifts[:, 0, None, None]
        source_columns = columns[None] - shifts[:, 1, None, None]
        inside = ((source_rows >= 0) & (source_rows < height)
                  & (source_columns >= 0) & (source_columns < width))
        flat = source_rows * width + source_columns
        return tf.reshape(tf.where(inside, flat, height * width), (batch, height * width))

    def augment(*views):
        if len(views) != len(widths):
            raise ValueError(f"random_shift_pairs was built for {len(widths)} views; the dataset "
                             f"gives {len(views)} per element.")
        if max_shift == 0:
            return views
        batch = tf.shape(views[0])[0]
        images = [tf.reshape(view, (batch, height, w, channels)) for view, w in zip(views, widths)]
        whole = tf.reshape(tf.concat(images, axis=2), (batch, height * width, channels))
        # One zero pixel at index height * width for everything shifted in from outside.
        padded = tf.concat([whole, tf.zeros((batch, 1, channels), whole.dtype)], axis=1)
        shifted = tf.reshape(tf.gather(padded, shift_indices(batch), batch_dims=1),
                             (batch, height, width, channels))
        parts = tf.split(shifted, widths, axis=2)
        return tuple(tf.reshape(part, tf.shape(view)) for part, view in zip(parts, views))

    return augment
