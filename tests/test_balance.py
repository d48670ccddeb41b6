"""xmodal_tf.data.balance: class weights against scikit-learn, class-balanced tf.data sampling."""

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from xmodal_tf.data.balance import as_class_labels, balanced_dataset, class_weights

# Classes 0, 2 and 5 in proportions 80 : 15 : 5; classes 1, 3, 4 never occur.
IMBALANCED = np.random.default_rng(0).permutation(np.repeat([0, 2, 5], [80, 15, 5]))


def test_class_weights_match_sklearn_as_plain_ints_and_floats():
    weights = class_weights(IMBALANCED)
    present = np.array([0, 2, 5])
    expected = compute_class_weight("balanced", classes=present, y=IMBALANCED)
    assert list(weights) == [0, 2, 5]
    np.testing.assert_allclose([weights[label] for label in present], expected)
    assert all(type(key) is int and type(value) is float for key, value in weights.items())
    # Each class then carries the same total weight.
    totals = [weights[label] * np.sum(IMBALANCED == label) for label in present]
    np.testing.assert_allclose(totals, totals[0])
    softer = class_weights(IMBALANCED, method="sqrt_balanced")
    np.testing.assert_allclose([softer[label] for label in present], np.sqrt(expected))
    # Float labels with whole values (as Keras often stores them) give the same weights.
    assert class_weights(IMBALANCED.astype("float32")) == weights


@pytest.mark.parametrize(
    "labels, kwargs, error, match",
    [
        (np.zeros((4, 2)), {}, ValueError, "1-D"),
        ([0, 1, -2], {}, ValueError, "non-negative"),
        ([0.0, 0.5], {}, ValueError, "whole numbers"),
        ([0.0, np.nan], {}, ValueError, "NaN"),
        (["a", "b"], {}, TypeError, "integer class indices"),
        ([True, False], {}, TypeError, "integer class indices"),
        ([], {}, ValueError, "empty"),
        ([0, 1], {"method": "inverse"}, ValueError, "method must be one of"),
    ],
)
def test_class_weights_bad_input(labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        class_weights(labels, **kwargs)


def _take_labels(dataset, num_batches):
    return np.concatenate([labels.numpy() for _, labels in dataset.take(num_batches)])


def test_balanced_dataset_draws_classes_equally_and_gathers_matching_rows():
    n = len(IMBALANCED)
    inputs = {
        "row": np.arange(n, dtype=np.int64),
        "image": np.arange(n, dtype=np.float64)[:, None, None] * np.ones((1, 2, 3)),
    }
    dataset = balanced_dataset(inputs, IMBALANCED, batch_size=60, seed=0)
    batches = list(dataset.take(100))
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in batches])
    frequencies = np.array([np.mean(labels == label) for label in (0, 2, 5)])
    np.testing.assert_allclose(frequencies, 1 / 3, atol=0.02)  # 6000 draws; raw shares .80/.15/.05
    assert all(batch_labels.shape == (60,) for _, batch_labels in batches)  # endless: full batches
    # Every element is a real example: its inputs and label come from the same row.
    for batch_inputs, batch_labels in batches[:5]:
        rows = batch_inputs["row"].numpy()
        np.testing.assert_array_equal(batch_labels.numpy(), IMBALANCED[rows])
        assert batch_inputs["image"].dtype == "float32" and batch_inputs["image"].shape == (60, 2, 3)
        np.testing.assert_array_equal(batch_inputs["image"].numpy()[:, 1, 2], rows)
    # The rare class's 5 examples all turn up, although it is 5% of the data.
    rare_rows = np.concatenate([inputs_["row"].numpy()[labels_.numpy() == 5] for inputs_, labels_ in batches])
    assert set(rare_rows) == set(np.flatnonzero(IMBALANCED == 5))


def test_balanced_dataset_is_reproducible_by_seed_and_takes_plain_arrays():
    features = np.arange(len(IMBALANCED), dtype=np.float32)[:, None]
    first = _take_labels(balanced_dataset(features, IMBALANCED, batch_size=32, seed=7), 3)
    again = _take_labels(balanced_dataset(features, IMBALANCED, batch_size=32, seed=7), 3)
    other = _take_labels(balanced_dataset(features, IMBALANCED, batch_size=32, seed=8), 3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    x, y = next(iter(balanced_dataset(features, IMBALANCED, batch_size=32, seed=7)))
    assert x.shape == (32, 1)
    np.testing.assert_array_equal(IMBALANCED[x.numpy()[:, 0].astype(int)], y.numpy())


@pytest.mark.parametrize(
    "inputs, labels, kwargs, error, match",
    [
        (np.zeros((5, 2)), [0, 1, 0, 1], {}, ValueError, "same number of rows"),
        ({"a": np.zeros((4, 2)), "b": np.zeros((3, 2))}, [0, 1, 0, 1], {}, ValueError, "same number of rows"),
        (np.zeros((4, 2)), [0, 1, 0, 1], {"batch_size": 0}, ValueError, "batch_size must be a positive int"),
        (np.zeros((4, 2)), [0, 1, 0, 1], {"seed": "zero"}, TypeError, "seed must be an int"),
        ([np.zeros(4)], [0, 1, 0, 1], {}, TypeError, "an array or a dict"),
        (np.zeros((4, 2)), np.eye(4), {}, ValueError, "argmax"),
    ],
)
def test_balanced_dataset_bad_input(inputs, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        balanced_dataset(inputs, labels, **{"batch_size": 2, **kwargs})


def test_as_class_labels_returns_int64():
    labels = as_class_labels(np.array([2.0, 0.0, 1.0]))
    assert labels.dtype == np.int64 and labels.tolist() == [2, 0, 1]
