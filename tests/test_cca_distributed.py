"""Covariance statistics combined across chunks, estimators and workers (CCA, MCCA)."""

import textwrap

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from xmodal_tf.cca import CCA, MCCA, CovarianceStatistics


def paired_views(n_samples=1200, dims=(10, 7, 5), seed=0, offsets=(3.0, -1e4, 0.5)):
    """Views sharing a 3-dimensional latent; the second sits far from the origin, so a
    shift that is not near the mean would cost digits."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_samples, 3)) * np.array([2.0, 1.0, 0.5])
    return [
        latent @ rng.standard_normal((3, dim)) + 0.7 * rng.standard_normal((n_samples, dim)) + offset
        for dim, offset in zip(dims, offsets)
    ]


def assert_same_statistics(actual, expected, atol=1e-9):
    assert actual.n_samples == expected.n_samples
    assert actual.dims == expected.dims and actual.dtype == expected.dtype
    for got, want in zip(actual.means(), expected.means()):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    for i in range(expected.n_views):
        for j in range(expected.n_views):
            np.testing.assert_allclose(actual.covariance(i, j), expected.covariance(i, j), rtol=0, atol=atol)


def assert_same_fit(actual, expected, atol=1e-8):
    np.testing.assert_allclose(actual.canonical_correlations_, expected.canonical_correlations_, rtol=0, atol=atol)
    for got, want in zip(actual.weights_, expected.weights_):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    for got, want in zip(actual.means_, expected.means_):
        np.testing.assert_allclose(got, want, rtol=1e-13 if got.dtype == np.float64 else 1e-6, atol=0)
    assert actual.n_samples_seen_ == expected.n_samples_seen_


# ------------------------------------------------------------------------ statistics
def test_halves_around_a_common_shift_add_to_the_whole():
    X, Y, _ = paired_views()
    shift = [X[:50].mean(axis=0), Y[:50].mean(axis=0)]
    whole = CovarianceStatistics.from_views([X, Y], shift=shift)
    first = CovarianceStatistics.from_views([X[:500], Y[:500]], shift=shift)
    second = CovarianceStatistics.from_views([X[500:], Y[500:]], shift=shift)
    combined = first + second
    # Equal shifts: the counts, sums and products simply add.
    assert all(np.array_equal(a, b) for a, b in zip(combined.shifts, shift))
    np.testing.assert_allclose(combined.to_array(), whole.to_array(), rtol=1e-12, atol=1e-8)
    assert_same_statistics(combined, whole)
    assert_same_statistics(combined, CovarianceStatistics.from_views([X, Y]))  # the whole around its mean
    assert first.n_samples == 500  # the operands are unchanged


@pytest.mark.parametrize("shifts", ["own means", "one far off"])
def test_halves_around_different_shifts_add_to_the_whole(shifts):
    X, Y, _ = paired_views()
    whole = CovarianceStatistics.from_views([X, Y])
    first = CovarianceStatistics.from_views([X[:300], Y[:300]])
    # A shift off the means costs digits in the statistics themselves (eps * offset^2 / variance);
    # 30 standard deviations cost few, and the means of the halves still differ from both shifts.
    far = None if shifts == "own means" else [0.0, -1e4 + 30]
    second = CovarianceStatistics.from_views([X[300:], Y[300:]], shift=far)
    for combined in (first + second, second + first):
        # Re-centred on the pooled mean: zero sums around it.
        assert all(np.all(total == 0) for total in combined.sums)
        assert_same_statistics(combined, whole)


def test_sum_of_several_and_empty_statistics():
    views = paired_views()
    whole = CovarianceStatistics.from_views(views)
    parts = [CovarianceStatistics.from_views([v[start : start + 400] for v in views]) for start in range(0, 1200, 400)]
    assert_same_statistics(sum(parts), whole)
    empty = CovarianceStatistics([10, 7, 5])
    assert empty.n_samples == 0
    assert_same_statistics(empty + whole, whole)
    assert_same_statistics(whole + empty, whole)
    assert (empty + empty).n_samples == 0
    assert "n_samples=1200" in repr(whole)


def test_flat_arrays_of_a_common_shift_sum_like_the_statistics():
    X, Y, Z = paired_views()
    shift = [0.0, -1e4, 0.0]
    parts = [
        CovarianceStatistics.from_views([X[rows], Y[rows], Z[rows]], shift=shift)
        for rows in (slice(0, 100), slice(100, 1000), slice(1000, None))
    ]
    assert parts[0].to_array().shape == (CovarianceStatistics.array_size([10, 7, 5]),)
    assert CovarianceStatistics.array_size([10, 7, 5]) == 1 + 22 + 100 + 70 + 50 + 49 + 35 + 25
    summed = sum(part.to_array() for part in parts)  # what an all-reduce computes
    rebuilt = CovarianceStatistics.from_array(summed, parts[0].shifts)
    assert rebuilt.n_samples == 1200
    assert_same_statistics(rebuilt, sum(parts), atol=1e-12)
    assert_same_statistics(rebuilt, CovarianceStatistics.from_views([X, Y, Z]))
    # float32 statistics travel as float64 and come back as float32.
    single = CovarianceStatistics.from_views([X, Y], dtype="float32", shift=[0.0, -1e4])
    back = CovarianceStatistics.from_array(single.to_array("float64"), single.shifts, dtype="float32")
    assert back.dtype == np.float32 and np.array_equal(back.to_array(), single.to_array())


def test_statistics_convert_and_copy():
    X, Y, _ = paired_views(n_samples=200)
    stats = CovarianceStatistics.from_views([X, Y])
    copy = stats.copy()
    copy.products[0, 0][:] = 0  # a copy shares no arrays
    assert np.any(stats.products[0, 0] != 0)
    single = stats.astype("float32")
    assert single.dtype == np.float32 and single.products[0, 1].dtype == np.float32
    np.testing.assert_allclose(single.covariance(0, 1), stats.covariance(0, 1), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------ estimators
@pytest.mark.parametrize("reg", [0.0, 1e-3])
def test_fit_statistics_equals_fit(reg):
    X, Y, Z = paired_views()
    halves = [CovarianceStatistics.from_views([X[rows], Y[rows]]) for rows in (slice(0, 600), slice(600, None))]
    fitted = CCA(3, reg=reg).fit_statistics(halves[0] + halves[1])
    assert_same_fit(fitted, CCA(3, reg=reg).fit(X, Y))
    np.testing.assert_allclose(fitted.transform(X[:5]), CCA(3, reg=reg).fit(X, Y).transform(X[:5]), atol=1e-8)
    mcca = MCCA(2, reg=reg).fit_statistics(CovarianceStatistics.from_views([X, Y, Z]))
    assert_same_fit(mcca, MCCA(2, reg=reg).fit([X, Y, Z]))
    np.testing.assert_allclose(mcca.eigenvalues_, MCCA(2, reg=reg).fit([X, Y, Z]).eigenvalues_, atol=1e-10)


def test_fit_statistics_then_partial_fit_continues():
    X, Y, _ = paired_views()
    model = CCA(3).fit_statistics(CovarianceStatistics.from_views([X[:700], Y[:700]]))
    model.partial_fit(X[700:], Y[700:])
    assert_same_fit(model, CCA(3).fit(X, Y))


def test_merge_equals_fit_on_the_union():
    X, Y, Z = paired_views()
    left = CCA(3).partial_fit(X[:400], Y[:400]).partial_fit(X[400:500], Y[400:500])
    right = CCA(3).fit(X[500:], Y[500:])
    merged = left.merge(right)
    assert merged is not left and merged is not right
    assert_same_fit(merged, CCA(3).fit(X, Y))
    assert left.n_samples_seen_ == 500 and right.n_samples_seen_ == 700  # both unchanged
    merged.partial_fit(X[:10], Y[:10])  # the merged estimator keeps accumulating
    assert merged.n_samples_seen_ == 1210
    head = MCCA(2, reg=1e-4).fit([X[:900], Y[:900], Z[:900]])
    mcca = head.merge(MCCA(2).partial_fit([X[900:], Y[900:], Z[900:]]))
    assert_same_fit(mcca, MCCA(2, reg=1e-4).fit([X, Y, Z]))


def test_merge_of_estimators_too_small_to_solve():
    X, Y, _ = paired_views()
    tiny = CCA(3).partial_fit(X[:2], Y[:2])
    other = CCA(3).partial_fit(X[2:3], Y[2:3])
    merged = tiny.merge(other)  # 3 samples: not solvable yet, like partial_fit
    with pytest.raises(NotFittedError, match="n_components=3"):
        merged.transform(X)
    assert_same_fit(merged.merge(CCA(3).partial_fit(X[3:], Y[3:])), CCA(3).fit(X, Y))


def test_covariance_statistics_attribute():
    X, Y, _ = paired_views()
    model = CCA(2).fit(X, Y)
    stats = model.covariance_statistics_
    assert stats.n_samples == 1200 and stats.dims == [10, 7]
    stats.products[0, 0][:] = 0  # a copy: the model is unaffected
    assert_same_fit(CCA(2).fit_statistics(model.covariance_statistics_), model, atol=1e-10)
    with pytest.raises(AttributeError, match="no covariance statistics yet"):
        _ = CCA(2).covariance_statistics_


def _statistics(dims=(4, 3), dtype="float64", rows=20, seed=0):
    rng = np.random.default_rng(seed)
    return CovarianceStatistics.from_views([rng.standard_normal((rows, dim)) for dim in dims], dtype=dtype)


@pytest.mark.parametrize(
    "action, error, message",
    [
        (lambda: _statistics() + _statistics(dims=(4, 3, 2)), ValueError, "2 views and of 3 views"),
        (lambda: _statistics() + _statistics(dims=(4, 2)), ValueError, r"\[4, 3\] and \[4, 2\] features"),
        (lambda: _statistics() + _statistics(dtype="float32"), TypeError, r"astype\('float64'\)"),
        (lambda: _statistics() + 1.5, TypeError, "only be added to CovarianceStatistics"),
        (lambda: _statistics() + np.zeros(3), TypeError, "got ndarray"),
        (lambda: CovarianceStatistics.from_views(np.zeros((5, 3))), TypeError, "list of"),
        (lambda: CovarianceStatistics.from_views([]), ValueError, "at least one"),
        (
            lambda: CovarianceStatistics.from_views([np.ones((5, 2)), np.ones((4, 2))]),
            ValueError,
            "same number of rows",
        ),
        (
            lambda: CovarianceStatistics.from_views([np.ones((5, 2))], shift=[np.zeros(3)]),
            ValueError,
            r"view 0 has shape \(3,\).*\(2,\)",
        ),
        (lambda: CovarianceStatistics.from_views([np.ones((5, 2))], shift=[0, 0]), ValueError, "2 entries"),
        (lambda: CovarianceStatistics.from_views([np.ones((5, 2))], dtype="float16"), TypeError, "float64 or float32"),
        (lambda: CovarianceStatistics.from_views([np.full((5, 2), np.nan)]), ValueError, "NaN"),
        (
            lambda: CovarianceStatistics.from_array(np.zeros(7), [np.zeros(2), np.zeros(2)]),
            ValueError,
            "array has 7 values.*take 17",
        ),
        (
            lambda: CovarianceStatistics.from_array(np.full(6, 0.5), [np.zeros(1), np.zeros(1)]),
            ValueError,
            "sample count",
        ),
        (lambda: CovarianceStatistics([3, 0]), ValueError, "positive ints"),
        (lambda: CovarianceStatistics([3]).means(), ValueError, "no samples"),
        (lambda: CCA(2).fit_statistics("stats"), TypeError, "expects CovarianceStatistics"),
        (lambda: CCA(2).fit_statistics(_statistics(dims=(4, 3, 2))), ValueError, "exactly two views.*MCCA"),
        (lambda: MCCA(2).fit_statistics(_statistics(dims=(4,))), ValueError, "at least two views"),
        (lambda: CCA(2).fit_statistics(_statistics(dtype="float32")), TypeError, r"astype\('float64'\)"),
        (lambda: CCA(2).fit_statistics(CovarianceStatistics([4, 3])), ValueError, "no samples"),
        (lambda: CCA(2).merge(CCA(2).partial_fit(np.eye(5), np.eye(5))), NotFittedError, "self has none"),
        (lambda: CCA(2).partial_fit(np.eye(5), np.eye(5)).merge(MCCA(2)), TypeError, "expects another CCA"),
    ],
    ids=[
        "views",
        "features",
        "dtype",
        "number",
        "array",
        "not-a-list",
        "no-views",
        "rows",
        "shift-shape",
        "shift-count",
        "float16",
        "nan",
        "array-length",
        "count",
        "dims",
        "empty-mean",
        "fit-type",
        "fit-views",
        "mcca-views",
        "fit-dtype",
        "fit-empty",
        "merge-unfitted",
        "merge-type",
    ],
)
def test_bad_statistics_are_named(action, error, message):
    with pytest.raises(error, match=message):
        action()


# ------------------------------------------------------------------ fit_batches(strategy)
def _chunks(views, size=256):
    return [tuple(view[start : start + size] for view in views) for start in range(0, len(views[0]), size)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_single_worker_strategy_changes_nothing(dtype):
    tf = pytest.importorskip("tensorflow")
    X, Y, Z = paired_views()
    expected = CCA(3, dtype=dtype).fit_batches(_chunks([X, Y]))
    for strategy in (
        tf.distribute.get_strategy(),
        tf.distribute.MirroredStrategy(["/cpu:0"]),
        tf.distribute.OneDeviceStrategy("/cpu:0"),
    ):
        fitted = CCA(3, dtype=dtype).fit_batches(_chunks([X, Y]), strategy=strategy)
        for got, want in zip(
            [*fitted.weights_, fitted.canonical_correlations_], [*expected.weights_, expected.canonical_correlations_]
        ):
            assert got.dtype == np.dtype(dtype) and np.array_equal(got, want)  # bit for bit
    dataset = tf.data.Dataset.from_tensor_slices((X, Y, Z)).batch(300)
    mcca = MCCA(2, dtype=dtype).fit_batches(dataset, strategy=tf.distribute.get_strategy())
    assert_same_fit(mcca, MCCA(2, dtype=dtype).fit([X, Y, Z]), atol=1e-8 if dtype == "float64" else 1e-3)


def test_strategy_sum_keeps_float64():
    tf = pytest.importorskip("tensorflow")
    from xmodal_tf.cca import _StrategySum

    values = np.array([1.0 + 2.0**-40, 3e-300, 2.0**53])  # none of these survives float32
    total = _StrategySum(tf.distribute.MirroredStrategy(["/cpu:0"]))(values)
    assert total.dtype == np.float64 and np.array_equal(total, values)


def test_fit_batches_strategy_errors():
    tf = pytest.importorskip("tensorflow")
    X, Y, _ = paired_views(n_samples=300)
    strategy = tf.distribute.get_strategy()
    with pytest.raises(TypeError, match="strategy must be a tf.distribute.Strategy"):
        CCA(2).fit_batches(_chunks([X, Y]), strategy="mirrored")
    with pytest.raises(ValueError, match="no batches on any worker"):
        CCA(2).fit_batches([], strategy=strategy)
    with pytest.raises(ValueError, match="X has 3 features, but this model was fitted on 10"):
        CCA(2).fit_batches([(X, Y), (X[:, :3], Y)], strategy=strategy)
    with pytest.raises(TypeError, match=r"\(X, Y\) pair"):
        CCA(2).fit_batches([X], strategy=strategy)


class OtherWorker:
    """Stands in for the all-reduce of a two-worker run: adds what a second worker
    contributes to each call in turn (the protocol of ``fit_batches(..., strategy=)``)."""

    def __init__(self, *contributions):
        self.contributions = list(contributions)

    def __call__(self, values):
        return np.asarray(values, dtype=np.float64) + np.asarray(self.contributions.pop(0), dtype=np.float64)


def test_workers_that_disagree_or_fail_stop_together():
    X, Y, _ = paired_views(n_samples=300)
    # Call 1: [failed, has data, views, views^2]; call 2: features and their squares.
    other = OtherWorker([0, 1, 2, 4], [5, 7, 25, 49])
    with pytest.raises(ValueError, match=r"disagree on the number of features of each view \(mean \[7.5, 7.0\]"):
        CCA(2)._fit_batches_across_workers(_chunks([X, Y]), other)
    with pytest.raises(ValueError, match="disagree on the number of views"):
        MCCA(2)._fit_batches_across_workers(_chunks([X, Y]), OtherWorker([0, 1, 3, 9]))
    with pytest.raises(RuntimeError, match="failed on 1 other worker"):
        CCA(2)._fit_batches_across_workers(_chunks([X, Y]), OtherWorker([1, 0, 0, 0]))
    # A second worker with the same rows: the statistics of the rows twice over, so the
    # same means and (for reg=0, scale-free) the same correlations.
    twice = CCA(2)._fit_batches_across_workers(_chunks([X, Y]), lambda values: 2 * np.asarray(values))
    assert twice.n_samples_seen_ == 600
    np.testing.assert_allclose(twice.canonical_correlations_, CCA(2).fit(X, Y).canonical_correlations_, atol=1e-12)


MULTIWORKER_SCRIPT = textwrap.dedent("""
    import json
    import sys
    import numpy as np
    import tensorflow as tf
    sys.path.insert(0, "tests")
    from test_cca_distributed import paired_views
    from xmodal_tf.cca import CCA, MCCA, _StrategySum

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = strategy.cluster_resolver.task_id
    X, Y, Z = paired_views()
    # Uneven shards, in uneven batches: worker 0 has rows 0-299, worker 1 rows 300-1199.
    rows = slice(0, 300) if task == 0 else slice(300, None)
    size = 128 if task == 0 else 250
    shard = tf.data.Dataset.from_tensor_slices((X[rows], Y[rows])).batch(size)
    cca = CCA(3, reg=1e-6).fit_batches(shard, strategy=strategy)
    three = [v[rows] for v in (X, Y, Z)]
    mcca = MCCA(2).fit_batches(([v[i:i + 200] for v in three] for i in range(0, len(three[0]), 200)),
                               strategy=strategy)
    # Worker 1 alone holds the data.
    lonely = CCA(3).fit_batches([] if task == 0 else [(X[:600], Y[:600]), (X[600:], Y[600:])], strategy=strategy)
    # A bad batch on worker 1 fails both workers instead of leaving worker 0 waiting.
    bad = [(X[:100], Y[:100])] + ([(X[100:110] * np.nan, Y[100:110])] if task == 1 else [])
    try:
        CCA(2).fit_batches(bad, strategy=strategy)
        failure = None
    except (ValueError, RuntimeError) as error:
        failure = f"{type(error).__name__}: {error}"
    tiny = _StrategySum(strategy)([1.0 + 2.0 ** -40 * (task + 1), 1e-300 * (task + 1)])
    print(json.dumps({
        "task": task, "n_samples": cca.n_samples_seen_, "correlations": cca.canonical_correlations_.tolist(),
        "x_weights": cca.x_weights_.tolist(), "y_weights": cca.y_weights_.tolist(),
        "x_mean": cca.x_mean_.tolist(), "y_mean": cca.y_mean_.tolist(),
        "mcca_weights": [w.tolist() for w in mcca.weights_],
        "mcca_correlations": mcca.canonical_correlations_.tolist(),
        "lonely_weights": lonely.x_weights_.tolist(), "failure": failure,
        "float64_sum": [float.hex(float(value)) for value in tiny]}))
""")


@pytest.mark.multiworker
def test_two_workers_fit_equals_fit_on_all_rows():
    from multiworker import run_workers

    results = run_workers(MULTIWORKER_SCRIPT, count=2, timeout=180)
    X, Y, Z = paired_views()
    expected = CCA(3, reg=1e-6).fit(X, Y)
    expected_mcca = MCCA(2).fit([X, Y, Z])
    for result in results:
        assert result["n_samples"] == 1200
        # Signs are normalised by the estimator (largest x weight positive), so weights compare directly.
        np.testing.assert_allclose(result["correlations"], expected.canonical_correlations_, rtol=0, atol=1e-8)
        np.testing.assert_allclose(result["x_weights"], expected.x_weights_, rtol=0, atol=1e-8)
        np.testing.assert_allclose(result["y_weights"], expected.y_weights_, rtol=0, atol=1e-8)
        np.testing.assert_allclose(result["x_mean"], expected.x_mean_, rtol=1e-13, atol=0)
        np.testing.assert_allclose(result["y_mean"], expected.y_mean_, rtol=1e-13, atol=0)
        for got, want in zip(result["mcca_weights"], expected_mcca.weights_):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)
        np.testing.assert_allclose(result["mcca_correlations"], expected_mcca.canonical_correlations_, atol=1e-8)
        np.testing.assert_allclose(result["lonely_weights"], CCA(3).fit(X, Y).x_weights_, rtol=0, atol=1e-8)
        # Sums float32 cannot hold (its epsilon is 2^-23, its smallest normal 1e-38): float64 throughout.
        assert [float.fromhex(value) for value in result["float64_sum"]] == [2.0 + 3 * 2.0**-40, 1e-300 + 2e-300]
    first, second = results
    assert first["x_weights"] == second["x_weights"] and first["correlations"] == second["correlations"]
    assert first["failure"].startswith("RuntimeError: fit_batches failed on 1 other worker")
    assert second["failure"].startswith("ValueError: X has non-finite values (NaN or inf) in 10 row(s)")
