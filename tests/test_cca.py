"""Linear CCA / MCCA: agreement with independent references, streaming, sklearn API, errors."""

import numpy as np
import pytest
import scipy.linalg
from sklearn.base import clone
from sklearn.cross_decomposition import CCA as SklearnCCA
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from xmodal_tf import CCA, MCCA
from xmodal_tf.cca import column_correlations
from xmodal_tf.data import load_two_view_digits


def planted_views(n_samples=1500, dims=(12, 9), shared=4, noise=0.7, seed=0, offset=3.0):
    """Views that share a `shared`-dimensional latent, with distinct correlation strengths."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_samples, shared)) * np.linspace(2.0, 0.5, shared)
    views = []
    for dim in dims:
        mixing = rng.standard_normal((shared, dim))
        views.append(latent @ mixing + noise * rng.standard_normal((n_samples, dim)) + offset)
    return views


def digits_views():
    """Two-view digits (training split) without the (nearly) blank pixel columns, which make the
    covariance singular (two border pixels are inked in one and the same image), so reg=0 is defined."""
    x, y, _ = load_two_view_digits().train
    return [view[:, view.std(axis=0) > 0.02].astype(np.float64) for view in (x, y)]


def reference_correlations(X, Y, k):
    """Bjorck-Golub: canonical correlations are the singular values of Qx^T Qy (no covariances)."""
    qx, _ = np.linalg.qr(X - X.mean(axis=0))
    qy, _ = np.linalg.qr(Y - Y.mean(axis=0))
    return np.linalg.svd(qx.T @ qy, compute_uv=False)[:k]


def reference_regularised_correlations(X, Y, k, reg):
    """Generalised symmetric eigenproblem [[0, Cxy], [Cyx, 0]] w = s blockdiag(Cxx + rI, Cyy + rI) w;
    returns the training correlations of the top-k variate pairs it defines."""
    p = X.shape[1]
    covariance = np.cov(np.hstack([X, Y]), rowvar=False)
    cross = np.zeros_like(covariance)
    cross[:p, p:] = covariance[:p, p:]
    cross[p:, :p] = covariance[p:, :p]
    within = scipy.linalg.block_diag(covariance[:p, :p], covariance[p:, p:])
    within += reg * np.eye(within.shape[0])
    _, vectors = scipy.linalg.eigh(cross, within)
    vectors = vectors[:, ::-1][:, :k]
    return column_correlations(X @ vectors[:p], Y @ vectors[p:])


@pytest.mark.parametrize("views", [planted_views(), digits_views()], ids=["planted", "digits"])
def test_canonical_correlations_match_independent_reference(views):
    X, Y = views
    k = 4
    model = CCA(k).fit(X, Y)
    np.testing.assert_allclose(model.canonical_correlations_, reference_correlations(X, Y, k), rtol=0, atol=1e-8)
    x_variates, y_variates = model.transform(X, Y)
    np.testing.assert_allclose(
        column_correlations(x_variates, y_variates), model.canonical_correlations_, rtol=0, atol=1e-8
    )


def test_planted_latent_is_recovered():
    X, Y = planted_views(noise=0.3)
    correlations = CCA(6).fit(X, Y).canonical_correlations_
    assert np.all(correlations[:4] > 0.8), correlations  # the 4 shared directions
    assert np.all(correlations[4:] < 0.2), correlations  # the rest is noise
    assert np.all(np.diff(correlations) <= 1e-12)  # sorted, largest first


@pytest.mark.parametrize("reg", [1e-3, (0.5, 0.01)])
def test_regularised_cca_matches_generalised_eigenproblem(reg):
    X, Y = digits_views()
    k = 5
    model = CCA(k, reg=reg).fit(X, Y)
    regs = reg if isinstance(reg, tuple) else (reg, reg)
    if regs[0] == regs[1]:
        expected = reference_regularised_correlations(X, Y, k, regs[0])
        np.testing.assert_allclose(model.canonical_correlations_, expected, atol=1e-8)
    # Exact CCA has the largest achievable training correlation; the ridge only lowers it.
    exact = CCA(k).fit(X, Y).canonical_correlations_
    assert np.all(model.canonical_correlations_ <= exact + 1e-10)
    assert model.canonical_correlations_[0] > 0.5


def test_agrees_with_sklearn_cca():
    X, Y = planted_views(n_samples=800, dims=(6, 5), shared=3)
    k = 3
    ours = CCA(k).fit(X, Y)
    theirs = SklearnCCA(k, max_iter=10000, tol=1e-12).fit(X, Y)
    x_scores, y_scores = theirs.transform(X, Y)
    np.testing.assert_allclose(ours.canonical_correlations_, column_correlations(x_scores, y_scores), atol=1e-4)
    # Same directions up to sign and scale: the variates are perfectly correlated.
    ours_x, _ = ours.transform(X, Y)
    agreement = np.abs(column_correlations(ours_x, x_scores))
    np.testing.assert_allclose(agreement, 1.0, atol=1e-4)


def test_training_variates_are_standardised_and_uncorrelated():
    X, Y = planted_views()
    model = CCA(4).fit(X, Y)
    x_variates, y_variates = model.transform(X, Y)
    for variates in (x_variates, y_variates):
        np.testing.assert_allclose(variates.mean(axis=0), 0, atol=1e-10)
        np.testing.assert_allclose(np.cov(variates, rowvar=False), np.eye(4), atol=1e-10)
    cross = np.cov(x_variates, y_variates, rowvar=False)[:4, 4:]
    np.testing.assert_allclose(cross, np.diag(model.canonical_correlations_), atol=1e-10)


@pytest.mark.parametrize("reg", [1e-2, 1e3])
def test_ridge_variates_have_unit_variance_and_reported_correlations(reg):
    """With a ridge the unit-variance scale comes from |d|^2 - reg |w|^2, or, where the
    ridge dominates (reg=1e3 here), from the covariance itself; either way the training
    variates have variance 1 and the reported correlations are theirs."""
    X, Y = planted_views()
    model = CCA(4, reg=reg).fit(X, Y)
    x_variates, y_variates = model.transform(X, Y)
    joint = np.cov(x_variates, y_variates, rowvar=False)
    np.testing.assert_allclose(np.diag(joint), 1, atol=1e-10)
    np.testing.assert_allclose(np.diag(joint[:4, 4:]), model.canonical_correlations_, atol=1e-10)
    np.testing.assert_allclose(model.canonical_correlations_, column_correlations(x_variates, y_variates), atol=1e-10)


def test_transform_x_alone_and_fit_transform_are_consistent():
    X, Y = planted_views()
    model = CCA(3).fit(X, Y)
    x_variates, y_variates = model.transform(X, Y)
    np.testing.assert_allclose(model.transform(X), x_variates)
    fitted_x, fitted_y = CCA(3).fit_transform(X, Y)
    np.testing.assert_allclose(fitted_x, x_variates)
    np.testing.assert_allclose(fitted_y, y_variates)
    assert model.x_weights_.shape == (12, 3) and model.y_weights_.shape == (9, 3)
    np.testing.assert_allclose(model.x_mean_, X.mean(axis=0))
    np.testing.assert_allclose(model.y_mean_, Y.mean(axis=0))


def test_score_is_mean_heldout_correlation():
    X, Y = planted_views(n_samples=2000)
    model = CCA(3).fit(X[:1500], Y[:1500])
    per_component = model.correlations(X[1500:], Y[1500:])
    assert model.score(X[1500:], Y[1500:]) == pytest.approx(per_component.mean())
    # Held-out correlations are close to, and on average below, the training ones.
    assert np.all(np.abs(per_component - model.canonical_correlations_) < 0.1)


def test_large_offset_falls_back_to_centring():
    """Uncentred products lose every digit when the mean dwarfs the spread; the fit must not."""
    X, Y = planted_views(offset=0.0)
    centred = CCA(3).fit(X, Y)
    shifted = CCA(3).fit(X + 1e9, Y - 1e9)
    np.testing.assert_allclose(shifted.canonical_correlations_, centred.canonical_correlations_, atol=1e-8)
    np.testing.assert_allclose(shifted.x_weights_, centred.x_weights_, atol=1e-6)


def test_float32():
    X, Y = planted_views()
    single = CCA(3, dtype="float32").fit(X, Y)
    double = CCA(3).fit(X, Y)
    assert single.x_weights_.dtype == np.float32
    assert single.transform(X).dtype == np.float32
    np.testing.assert_allclose(single.canonical_correlations_, double.canonical_correlations_, atol=1e-4)


# ----------------------------------------------------------------------------- streaming
def test_partial_fit_over_chunks_equals_fit():
    X, Y = planted_views(n_samples=2000)
    full = CCA(4, reg=1e-3).fit(X, Y)
    streamed = CCA(4, reg=1e-3)
    for start in range(0, 2000, 300):
        streamed.partial_fit(X[start : start + 300], Y[start : start + 300])
    assert streamed.n_samples_seen_ == 2000
    np.testing.assert_allclose(streamed.canonical_correlations_, full.canonical_correlations_, atol=1e-10)
    np.testing.assert_allclose(streamed.x_weights_, full.x_weights_, atol=1e-8)
    np.testing.assert_allclose(streamed.y_weights_, full.y_weights_, atol=1e-8)
    np.testing.assert_allclose(streamed.x_mean_, full.x_mean_, atol=1e-10)


def test_partial_fit_waits_for_enough_samples():
    X, Y = planted_views(n_samples=100)
    model = CCA(3).partial_fit(X[:3], Y[:3])  # 3 samples: n_components must be <= 2
    with pytest.raises(NotFittedError, match="n_components=3"):
        model.transform(X, Y)
    assert not hasattr(model, "x_weights_")  # no stale or partial solution is exposed
    model.partial_fit(X[3:], Y[3:])
    np.testing.assert_allclose(model.canonical_correlations_, CCA(3).fit(X, Y).canonical_correlations_, atol=1e-10)
    model.partial_fit(np.full((2, 12), np.pi), np.full((2, 9), np.e))  # keeps accumulating
    assert model.n_samples_seen_ == 102
    fresh = CCA(3).partial_fit(X[:3], Y[:3]).fit(X, Y)  # fit starts over
    np.testing.assert_allclose(fresh.x_weights_, CCA(3).fit(X, Y).x_weights_)


def test_partial_fit_rejects_changed_feature_count():
    X, Y = planted_views()
    model = CCA(2).partial_fit(X, Y)
    with pytest.raises(ValueError, match="X has 11 features, but this model was fitted on 12"):
        model.partial_fit(X[:, :11], Y)


def test_fit_batches_from_generator_and_tf_dataset():
    tf = pytest.importorskip("tensorflow")
    X, Y = planted_views(n_samples=1000)
    full = CCA(3).fit(X, Y)
    from_generator = CCA(3).fit_batches((X[i : i + 128], Y[i : i + 128]) for i in range(0, 1000, 128))
    np.testing.assert_allclose(from_generator.x_weights_, full.x_weights_, atol=1e-8)
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(100)
    from_dataset = CCA(3).fit_batches(dataset)
    np.testing.assert_allclose(from_dataset.canonical_correlations_, full.canonical_correlations_, atol=1e-10)
    with pytest.raises(ValueError, match="empty"):
        CCA(3).fit_batches([])
    with pytest.raises(TypeError, match=r"\(X, Y\) pair"):
        CCA(3).fit_batches([X])


# ----------------------------------------------------------------------------------- MCCA
def test_mcca_on_two_views_equals_cca():
    X, Y = planted_views()
    cca = CCA(4, reg=1e-3).fit(X, Y)
    mcca = MCCA(4, reg=1e-3).fit([X, Y])
    np.testing.assert_allclose(mcca.canonical_correlations_, cca.canonical_correlations_, atol=1e-8)
    np.testing.assert_allclose(mcca.weights_[0], cca.x_weights_, atol=1e-6)
    np.testing.assert_allclose(mcca.weights_[1], cca.y_weights_, atol=1e-6)
    x_variates, y_variates = mcca.transform([X, Y])
    np.testing.assert_allclose(x_variates, cca.transform(X), atol=1e-6)
    # Without a ridge the whitened block matrix has eigenvalues 1 + rho_i.
    exact = CCA(4).fit(X, Y).canonical_correlations_
    np.testing.assert_allclose(MCCA(4).fit([X, Y]).eigenvalues_, 1 + exact, atol=1e-10)


def test_mcca_three_views():
    views = planted_views(n_samples=2000, dims=(10, 8, 6), shared=2, noise=0.5)
    train, test = [v[:1500] for v in views], [v[1500:] for v in views]
    model = MCCA(3, reg=1e-4).fit(train)
    variates = model.transform(test)
    assert [v.shape for v in variates] == [(500, 3)] * 3
    # Two shared directions: strong agreement between every pair of views, then noise.
    assert np.all(model.canonical_correlations_[:2] > 0.8)
    assert model.canonical_correlations_[2] < 0.3
    assert 0.5 < model.score(test) <= 1
    streamed = MCCA(3, reg=1e-4)
    for start in range(0, 1500, 500):
        streamed.partial_fit([v[start : start + 500] for v in train])
    np.testing.assert_allclose(streamed.canonical_correlations_, model.canonical_correlations_, atol=1e-10)
    with pytest.raises(ValueError, match="Expected 3 views, got 2"):
        model.transform(test[:2])


# ---------------------------------------------------------------------------- sklearn API
def test_pipeline_and_grid_search():
    X, Y = planted_views()
    pipeline = make_pipeline(StandardScaler(), CCA(3, reg=1e-3)).fit(X, Y)
    direct = CCA(3, reg=1e-3).fit(StandardScaler().fit_transform(X), Y)
    assert pipeline.score(X, Y) == pytest.approx(direct.score(StandardScaler().fit_transform(X), Y))
    assert pipeline.transform(X).shape == (1500, 3)

    search = GridSearchCV(CCA(2), {"reg": [1e-4, 1e-1, 100.0], "n_components": [2]}, cv=3)
    search.fit(X, Y)
    assert search.best_params_["reg"] in (1e-4, 1e-1)  # a huge ridge washes the signal out
    assert 0.5 < search.best_score_ <= 1
    assert clone(CCA(5, reg=(0.1, 0.2))).get_params() == {"n_components": 5, "reg": (0.1, 0.2), "dtype": "float64"}


# ----------------------------------------------------------------------------- bad input
X_GOOD, Y_GOOD = planted_views(n_samples=50)


@pytest.mark.parametrize(
    "X, Y, error, message",
    [
        (X_GOOD[:40], Y_GOOD, ValueError, "same number of rows.*X: 40, Y: 50"),
        (
            np.where(np.arange(12) == 3, np.nan, X_GOOD),
            Y_GOOD,
            ValueError,
            (
                r"^X has non-finite values \(NaN or inf\) in 50 row\(s\) \[0, 1, 2, 3, 4, \.\.\.\]; "
                r"impute or drop them before fitting\.$"
            ),
        ),
        (X_GOOD, np.where(np.arange(9) == 0, np.inf, Y_GOOD), ValueError, "Y has non-finite values .* in 50 row"),
        (X_GOOD.astype(complex), Y_GOOD, TypeError, r"X must hold real numbers; got dtype complex128"),
        (X_GOOD[:, 0], Y_GOOD, ValueError, r"X must be 2-D.*reshape\(-1, 1\)"),
        (np.empty((0, 3)), np.empty((0, 3)), ValueError, "X is empty"),
        (X_GOOD, np.empty((50, 0)), ValueError, "Y is empty"),
        (np.full((50, 2), "a"), Y_GOOD, TypeError, "X must hold numbers"),
        ("data", Y_GOOD, TypeError, "X must be a numeric 2-D array"),
        (X_GOOD * 1e300, Y_GOOD, ValueError, "overflow"),
    ],
)
def test_bad_input_is_named(X, Y, error, message):
    with pytest.raises(error, match=message):
        CCA(2).fit(X, Y)


@pytest.mark.parametrize(
    "params, error, message",
    [
        ({"n_components": 10}, ValueError, r"n_components=10 is larger than min\(n_samples - 1, features"),
        ({"n_components": 0}, ValueError, "n_components must be a positive int; got 0"),
        ({"n_components": 2.5}, TypeError, "n_components must be a positive int"),
        ({"reg": -1.0}, ValueError, "reg must be finite and >= 0"),
        ({"reg": (0.1, 0.2, 0.3)}, ValueError, "reg must be one float or one per view"),
        ({"reg": "big"}, TypeError, "reg must be a float"),
        ({"dtype": "int32"}, TypeError, "dtype must be float64 or float32"),
    ],
)
def test_bad_parameters_are_named(params, error, message):
    X, Y = X_GOOD, Y_GOOD[:, :9]
    params = {"n_components": 2, **params}
    if params["n_components"] == 10:
        X, Y = X_GOOD[:, :12], Y_GOOD[:, :9]  # min(49, 12, 9) = 9 < 10
    with pytest.raises(error, match=message):
        CCA(**params).fit(X, Y)


def test_singular_covariance_suggests_reg():
    X, Y = planted_views(n_samples=200)
    X = np.hstack([X, X[:, :1] * 2.0])  # a linearly dependent column
    with pytest.raises(ValueError, match=r"view X .* singular.*reg=1e-4"):
        CCA(2).fit(X, Y)
    assert CCA(2, reg=1e-4).fit(X, Y).canonical_correlations_[0] > 0.5
    with pytest.raises(ValueError, match="fewer samples"):
        CCA(2).fit(X[:8], Y[:8])


def test_unfitted_and_missing_view_errors():
    with pytest.raises(NotFittedError, match="call fit"):
        CCA(2).transform(X_GOOD)
    with pytest.raises(TypeError, match=r"needs both views: fit\(X, Y\)"):
        CCA(2).fit(X_GOOD)
    model = CCA(2).fit(X_GOOD, Y_GOOD)
    with pytest.raises(ValueError, match="Y has 3 features, but this model was fitted on 9"):
        model.transform(X_GOOD, Y_GOOD[:, :3])
    with pytest.raises(ValueError, match="X has non-finite"):
        model.transform(np.full_like(X_GOOD, np.nan))
    with pytest.raises(TypeError, match="list of views"):
        MCCA(2).fit(X_GOOD)
    with pytest.raises(ValueError, match="at least two views"):
        MCCA(2).fit([X_GOOD])


def test_a_1d_y_is_one_feature_as_in_scikit_learn():
    """As sklearn.cross_decomposition.CCA reads y: a (n,) Y is the (n, 1) view."""
    X, Y = X_GOOD, Y_GOOD[:, 0]
    one_d = CCA(1).fit(X, Y)
    column = CCA(1).fit(X, Y[:, None])
    np.testing.assert_array_equal(one_d.canonical_correlations_, column.canonical_correlations_)
    np.testing.assert_array_equal(one_d.transform(X, Y)[1], column.transform(X, Y[:, None])[1])
    assert one_d.y_weights_.shape == (1, 1)
    reference = SklearnCCA(1, scale=False, max_iter=2000, tol=1e-12).fit(X, Y)
    sklearn_correlation = column_correlations(*reference.transform(X, Y[:, None]))
    np.testing.assert_allclose(one_d.canonical_correlations_, np.abs(sklearn_correlation), rtol=1e-5)
    with pytest.raises(ValueError, match=r"X must be 2-D .*Reshape your data: X\.reshape\(-1, 1\)"):
        CCA(1).fit(X[:, 0], Y)  # X stays 2-D, as in scikit-learn


def test_sparse_views_are_refused_with_the_fix():
    import scipy.sparse

    with pytest.raises(TypeError, match=r"X is a sparse csr_matrix; CCA needs dense arrays.*X\.toarray\(\)"):
        CCA(2).fit(scipy.sparse.csr_matrix(X_GOOD), Y_GOOD)
    with pytest.raises(TypeError, match=r"view 1 is a sparse csr_array"):
        MCCA(2).fit([X_GOOD, scipy.sparse.csr_array(Y_GOOD)])


def test_empty_views_say_what_is_missing():
    with pytest.raises(ValueError, match=r"X is empty: 0 feature\(s\) \(shape=\(50, 0\)\) while a minimum of 1"):
        CCA(1).fit(X_GOOD[:, :0], Y_GOOD)
    with pytest.raises(ValueError, match=r"X is empty: 0 sample\(s\) \(shape=\(0, 12\)\)"):
        CCA(1).fit(X_GOOD[:0], Y_GOOD[:0])


def test_unfitted_mcca_transform_says_so_before_checking_the_views():
    with pytest.raises(NotFittedError, match="MCCA is not fitted yet"):
        MCCA(2).transform(X_GOOD)  # one array, not a list: fitting comes first


def test_fit_reads_the_inputs_only_through_asarray():
    """No NumPy function on the caller's object after the conversion (scikit-learn's
    check_transformer_data_not_an_array, which cannot run here, checks the same)."""

    class Counted(np.ndarray):
        conversions = 0

        def __array_function__(self, func, types, args, kwargs):
            type(self).conversions += 1
            return super().__array_function__(func, types, args, kwargs)

    X = X_GOOD.view(Counted)
    CCA(2).fit(X, Y_GOOD)
    assert Counted.conversions == 0


def test_fit_warns_when_the_samples_do_not_exceed_a_views_features():
    import warnings

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 30)), rng.normal(size=(20, 5))
    with pytest.warns(UserWarning, match=r"20 samples for views of 30 and 5 features.*overfit"):
        fitted = CCA(n_components=3, reg=1e-3).fit(x, y)
    assert fitted.canonical_correlations_[0] > 0.99  # pure noise, yet near 1: what the warning is about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CCA(n_components=3, reg=1e-3).fit(rng.normal(size=(200, 30)), rng.normal(size=(200, 5)))


def test_transform_and_score_name_the_non_finite_rows():
    model = CCA(2).fit(X_GOOD, Y_GOOD)
    bad = X_GOOD.copy()
    bad[[7, 9], 1] = [np.nan, -np.inf]
    with pytest.raises(
        ValueError,
        match=r"^CCA.transform: X has non-finite values \(NaN or inf\) in 2 row\(s\) "
        r"\[7, 9\]; remove or impute those rows first\.$",
    ):
        model.transform(bad)
    with pytest.raises(ValueError, match=r"^CCA.score: X has non-finite .* \[7, 9\]"):
        model.score(bad, Y_GOOD)
    with pytest.raises(ValueError, match=r"^CCA.correlations: Y has non-finite .* \[0\]"):
        model.correlations(X_GOOD, np.where(np.arange(50)[:, None] == 0, np.inf, Y_GOOD))
    mcca = MCCA(2).fit([X_GOOD, Y_GOOD, X_GOOD[:, :5]])
    with pytest.raises(ValueError, match=r"^MCCA.transform: view 1 has non-finite .* \[49\]"):
        mcca.transform([X_GOOD, np.where(np.arange(50)[:, None] == 49, np.nan, Y_GOOD), X_GOOD[:, :5]])
    with pytest.raises(ValueError, match=r"^MCCA.score: view 0 has non-finite .* \[7, 9\]"):
        mcca.score([bad, Y_GOOD, X_GOOD[:, :5]])


def test_float32_overflow_is_named_as_such():
    model = CCA(2, dtype="float32").fit(X_GOOD, Y_GOOD)
    with (
        np.errstate(over="ignore"),
        pytest.raises(ValueError, match=r"X has non-finite .* \[3\]; .*beyond float32's range"),
    ):
        model.transform(np.where(np.arange(50)[:, None] == 3, 1e300, X_GOOD))
