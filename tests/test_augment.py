"""Random whole-image shifts of paired image halves (xmodal_tf.data.augment)."""

import numpy as np
import pytest
import tensorflow as tf

from xmodal_tf.data import make_dataset
from xmodal_tf.data.augment import random_shift_pairs, random_translations

SHAPES = ((5, 3, 1), (5, 4, 1))  # a 5 x 7 image split into 3 + 4 columns


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(1, 2, size=(n, 5, 7, 1)).astype(np.float32)


def _halves(images, flat=True):
    left, right = images[:, :, :3], images[:, :, 3:]
    return (left.reshape(len(images), -1), right.reshape(len(images), -1)) if flat else (left, right)


def _whole(left, right):
    n = left.shape[0]
    return np.concatenate([np.reshape(left, (n, 5, 3)), np.reshape(right, (n, 5, 4))], axis=2)


def _shift(image, dy, dx):
    """Reference: image moved down by dy and right by dx, zeros shifted in."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@pytest.mark.parametrize("flat", [True, False])
def test_each_example_is_its_whole_image_shifted_by_at_most_max_shift(flat):
    images = _images(64)
    left, right = _halves(images, flat)
    augment = random_shift_pairs(SHAPES, max_shift=1, seed=0)
    new_left, new_right = (t.numpy() for t in augment(tf.constant(left), tf.constant(right)))
    assert new_left.shape == left.shape and new_right.shape == right.shape
    assert new_left.dtype == np.float32
    shifted = _whole(new_left, new_right)
    seen = set()
    for image, result in zip(images[..., 0], shifted):
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if np.array_equal(_shift(image, dy, dx), result)]
        assert len(matches) == 1  # pixel values are distinct, so only one shift fits
        seen.add(matches[0])
    # Columns cross from one view to the other: both views moved together.
    assert len(seen) == 9  # 64 draws cover all nine shifts


def test_shifts_differ_between_batches_and_repeat_with_the_seed():
    left, right = _halves(_images(32))

    def epoch(seed):
        dataset = make_dataset((left, right), batch_size=8, shuffle=False)
        dataset = dataset.map(random_shift_pairs(SHAPES, 2, seed=seed))
        return np.concatenate([x.numpy() for x, _ in dataset])

    first, again = epoch(7), epoch(7)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, epoch(8))
    assert not np.array_equal(first, left)


def test_zero_shift_is_the_identity():
    left, right = _halves(_images(4))
    out = random_shift_pairs(SHAPES, 0)(tf.constant(left), tf.constant(right))
    np.testing.assert_array_equal(out[0].numpy(), left)
    np.testing.assert_array_equal(out[1].numpy(), right)


@pytest.mark.parametrize(
    "shapes, max_shift, message",
    [
        (((5, 3, 1), (4, 4, 1)), 1, "same height"),
        (((15,), (20,)), 1, "image shapes"),
        (SHAPES, -1, "max_shift"),
        (SHAPES, 1.5, "max_shift"),
        (SHAPES, 5, "out of view"),
    ],
)
def test_bad_arguments_are_named(shapes, max_shift, message):
    with pytest.raises(ValueError, match=message):
        random_shift_pairs(shapes, max_shift)


def test_wrong_number_of_views_is_named():
    left, right = _halves(_images(2))
    with pytest.raises(ValueError, match="2 views"):
        random_shift_pairs(SHAPES, 1)(tf.constant(left))


def test_random_translations_move_each_image_and_fill_with_the_background():
    images = np.random.default_rng(0).uniform(0, 0.5, size=(40, 6, 5, 3)).astype(np.float32)
    moved = random_translations(images, 2, np.random.default_rng(1), fill=1.0)
    assert moved.shape == images.shape and moved.dtype == images.dtype
    shifts = set()
    for image, out in zip(images, moved):
        # Exactly one shift in {-2..2}^2 explains each output; pixels from outside are the fill.
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(out, _shift_rgb(image, dy, dx, 1.0))
        ]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 10  # the draws vary across images
    again = random_translations(images, 2, np.random.default_rng(1), fill=1.0)
    np.testing.assert_array_equal(again, moved)  # seeded
    assert random_translations(images, 0, np.random.default_rng(1)) is images


def _shift_rgb(image, dy, dx, fill):
    out = np.full_like(image, fill)
    h, w = image.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@pytest.mark.parametrize(
    "shape, max_shift, message",
    [((4, 6, 6), 1, "must be"), ((4, 6, 6, 1), -1, "max_shift"), ((4, 6, 6, 1), 6, "out of view")],
)
def test_random_translations_bad_arguments(shape, max_shift, message):
    with pytest.raises(ValueError, match=message):
        random_translations(np.zeros(shape), max_shift, np.random.default_rng(0))
