"""KernelCCA: the linear kernel is CCA; RBF finds what linear CCA cannot; clear errors."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import xmodal_tf as xm
from xmodal_tf import CCA, KernelCCA


def paired(n=400, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, size=n)
    x = np.column_stack([t, rng.normal(size=n)])
    y = np.column_stack([t**2 + 0.05 * rng.normal(size=n), rng.normal(size=n)])  # t^2: no linear trace of t
    return x, y


def test_linear_kernel_equals_cca():
    x, y = paired()
    ours = KernelCCA(2, kernel="linear", reg=1e-3).fit(x, y)
    linear = CCA(2, reg=1e-3).fit(x, y)
    np.testing.assert_allclose(ours.canonical_correlations_, linear.canonical_correlations_, rtol=0, atol=1e-8)
    for a, b in zip(ours.transform(x[:50], y[:50]), linear.transform(x[:50], y[:50])):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.transform(x[:5]), linear.transform(x[:5]), rtol=0, atol=1e-8)


def test_rbf_finds_a_relation_linear_cca_misses_on_held_out_rows():
    x, y = paired(600)
    x_test, y_test = paired(300, seed=1)
    linear = CCA(1, reg=1e-3).fit(x, y).score(x_test, y_test)
    kernel = KernelCCA(1, kernel="rbf", gamma=1.0, reg=1e-2, n_landmarks=200, random_state=0).fit(x, y)
    assert linear < 0.3 < 0.8 < kernel.score(x_test, y_test)
    poly = KernelCCA(1, kernel="poly", degree=2, reg=1e-2, n_landmarks=200, random_state=0).fit(x, y)
    assert poly.score(x_test, y_test) > 0.8


def test_landmarks_bound_the_feature_count_and_the_seed_fixes_them():
    x, y = paired(300)
    model = KernelCCA(2, n_landmarks=50, random_state=3).fit(x, y)
    assert model.feature_maps_[0].components_.shape == (50, 2)
    again = KernelCCA(2, n_landmarks=50, random_state=3).fit(x, y)
    np.testing.assert_array_equal(model.transform(x[:10]), again.transform(x[:10]))
    with pytest.warns(UserWarning, match="overfit"):  # the exact map: as many features as rows
        exact = KernelCCA(2, n_landmarks=10_000).fit(x, y)
    assert exact.feature_maps_[1].components_.shape[0] == 300
    assert xm.KernelCCA is KernelCCA and clone(model).get_params()["n_landmarks"] == 50


@pytest.mark.parametrize(
    "settings, error, message",
    [
        ({"kernel": "sigmoid"}, ValueError, "kernel must be one of"),
        ({"n_landmarks": 0}, ValueError, "n_landmarks must be an int >= 1"),
        ({"gamma": -1.0}, ValueError, "gamma for X must be a finite number > 0"),
        ({"gamma": (1.0, 2.0, 3.0)}, ValueError, "one number or a pair"),
        ({"n_components": 1.5}, TypeError, "n_components"),
        ({"random_state": "a"}, TypeError, "random_state"),
    ],
)
def test_bad_settings_are_named(settings, error, message):
    x, y = paired(50)
    with pytest.raises(error, match=message):
        KernelCCA(**settings).fit(x, y)


def test_bad_data_and_unfitted_use():
    x, y = paired(50)
    with pytest.raises(ValueError, match="same number of rows .*; got X: 50, Y: 49"):
        KernelCCA().fit(x, y[:49])
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"KernelCCA.fit: X has non-finite values \(NaN or inf\) in 1 row\(s\) \[3\]"):
        KernelCCA().fit(bad, y)
    with pytest.raises(NotFittedError):
        KernelCCA().transform(x)
