"""Tests for xmodal_tf.losses: the Deep CCA objective, its gradients and its edge cases."""

import warnings

import keras
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

import xmodal_tf as xm
from xmodal_tf.losses import DeepCCALoss, cca_correlations, deep_cca_loss


# ------------------------------------------------------------------------- helpers
def correlated_views(m=40, d1=5, d2=4, shared=3, noise=0.5, seed=0, dtype=np.float64):
    """Two views that share ``shared`` latent signals, mixed and noised."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(m, shared))
    h1 = np.c_[latent, rng.normal(size=(m, d1 - shared))] @ rng.normal(size=(d1, d1))
    h2 = np.c_[latent, rng.normal(size=(m, d2 - shared))] @ rng.normal(size=(d2, d2))
    h1 += noise * rng.normal(size=h1.shape)
    h2 += noise * rng.normal(size=h2.shape)
    return h1.astype(dtype), h2.astype(dtype)


def reference_correlations(h1, h2, reg):
    """Singular values of S11^-1/2 S12 S22^-1/2 with symmetric square roots (SciPy)."""
    r1, r2 = (reg, reg) if np.isscalar(reg) else reg
    m = h1.shape[0]
    c1, c2 = h1 - h1.mean(0), h2 - h2.mean(0)
    s11 = c1.T @ c1 / (m - 1) + r1 * np.eye(h1.shape[1])
    s22 = c2.T @ c2 / (m - 1) + r2 * np.eye(h2.shape[1])
    s12 = c1.T @ c2 / (m - 1)
    inverse_root1 = np.real(scipy.linalg.inv(scipy.linalg.sqrtm(s11)))
    values, vectors = np.linalg.eigh(s22)
    inverse_root2 = (vectors / np.sqrt(values)) @ vectors.T
    return np.linalg.svd(inverse_root1 @ s12 @ inverse_root2, compute_uv=False)


def loss_and_gradients(h1, h2, **kwargs):
    h1, h2 = tf.constant(h1), tf.constant(h2)
    with tf.GradientTape() as tape:
        tape.watch([h1, h2])
        loss = deep_cca_loss(h1, h2, **kwargs)
    g1, g2 = tape.gradient(loss, [h1, h2])
    return loss.numpy(), g1.numpy(), g2.numpy()


def assert_all_finite(*arrays):
    for array in arrays:
        assert np.all(np.isfinite(array)), array


def hadamard_view(m=8, d=4, scale=1.0):
    """Columns with mean 0, pairwise orthogonal and of equal norm: S11 = c I exactly."""
    return scale * scipy.linalg.hadamard(m)[:, 1 : d + 1].astype(np.float64)


# ----------------------------------------------------------------------- values
def test_matches_linear_cca_without_ridge():
    h1, h2 = correlated_views()
    for k in (1, 2, 4):
        loss = deep_cca_loss(h1, h2, n_components=k, reg=0.0)
        expected = xm.CCA(n_components=k, reg=0.0).fit(h1, h2).canonical_correlations_.sum()
        assert loss.dtype == tf.float64
        np.testing.assert_allclose(-loss.numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("reg", [1e-4, 1e-2, (1e-3, 1e-1)])
def test_ridge_matches_linear_cca_and_symmetric_square_roots(reg):
    """With a ridge the loss uses the singular values of the regularised T; linear CCA
    reports its variates' correlations, larger by the factor derived in losses.py."""
    h1, h2 = correlated_views(seed=1)
    r1, r2 = (reg, reg) if np.isscalar(reg) else reg
    k = 3
    values = cca_correlations(h1, h2, n_components=k, reg=reg).numpy()
    np.testing.assert_allclose(values, reference_correlations(h1, h2, reg)[:k], atol=1e-10)
    cca = xm.CCA(n_components=k, reg=reg).fit(h1, h2)
    shrink = np.sqrt((1 + r1 * (cca.x_weights_**2).sum(0)) * (1 + r2 * (cca.y_weights_**2).sum(0)))
    np.testing.assert_allclose(values, cca.canonical_correlations_ / shrink, atol=1e-10)
    # On outputs of variance ~1e4 the ridge is negligible: the two agree to 1e-5.
    loss_scaled = deep_cca_loss(100 * h1, 100 * h2, n_components=k, reg=reg)
    expected = xm.CCA(n_components=k, reg=reg).fit(100 * h1, 100 * h2).canonical_correlations_
    np.testing.assert_allclose(-loss_scaled.numpy(), expected.sum(), atol=1e-5)


def test_squared_objective_values():
    h1, h2 = correlated_views(seed=2)
    reference = reference_correlations(h1, h2, 1e-3)
    full = deep_cca_loss(h1, h2, reg=1e-3, objective="squared").numpy()
    np.testing.assert_allclose(full, -(reference**2).sum(), atol=1e-10)
    top2 = deep_cca_loss(h1, h2, n_components=2, reg=1e-3, objective="squared").numpy()
    np.testing.assert_allclose(top2, -(reference[:2] ** 2).sum(), atol=1e-10)
    trace = deep_cca_loss(h1, h2, reg=1e-3).numpy()
    np.testing.assert_allclose(trace, -reference.sum(), atol=1e-10)


def test_correlations_are_descending_and_in_unit_interval():
    h1, h2 = correlated_views(d1=6, d2=3, seed=3)
    values = cca_correlations(h1, h2).numpy()
    assert values.shape == (3,)
    assert np.all(np.diff(values) <= 0) and values[0] <= 1 and values[-1] >= 0
    loss = DeepCCALoss(n_components=2)
    np.testing.assert_allclose(loss.correlations(h1, h2).numpy(), values[:2])


def test_identical_views_are_perfectly_correlated():
    h1, _ = correlated_views(m=60, seed=4)
    values = cca_correlations(h1, h1, reg=1e-8).numpy()
    np.testing.assert_allclose(values, 1.0, atol=1e-6)
    np.testing.assert_allclose(deep_cca_loss(h1, h1, reg=1e-8).numpy(), -5.0, atol=1e-5)
    # The ridge shrinks them, exactly to lambda / (lambda + reg) for covariance eigenvalues lambda.
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(h1, rowvar=False)))[::-1]
    np.testing.assert_allclose(cca_correlations(h1, h1, reg=0.1).numpy(), eigenvalues / (eigenvalues + 0.1), atol=1e-10)


def test_independent_noise_has_small_correlations():
    rng = np.random.default_rng(5)
    h1, h2 = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4))
    values = cca_correlations(h1, h2).numpy()
    assert values[0] < 0.15, values  # of order sqrt(d / m)
    assert -0.3 < deep_cca_loss(h1, h2).numpy() <= 0


def test_float32_inputs_give_float32_and_match_float64():
    h1, h2 = correlated_views(seed=6)
    expected = deep_cca_loss(h1, h2).numpy()
    for compute_dtype in ("float64", None):
        loss = deep_cca_loss(h1.astype(np.float32), h2.astype(np.float32), compute_dtype=compute_dtype)
        assert loss.dtype == tf.float32
        np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-4)
    mixed = deep_cca_loss(tf.cast(h1, tf.float16), tf.cast(h2, tf.bfloat16))
    assert mixed.dtype == tf.float32 and np.isfinite(mixed.numpy())


# --------------------------------------------------------------------- gradients
def finite_difference(function, array, index, step=1e-6):
    plus, minus = array.copy(), array.copy()
    plus[index] += step
    minus[index] -= step
    return (function(plus) - function(minus)) / (2 * step)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(objective="trace"),
        dict(objective="trace", n_components=2),
        dict(objective="squared"),
        dict(objective="squared", n_components=2),
        dict(objective="trace", reg=(1e-3, 1e-1)),
    ],
)
def test_gradients_match_finite_differences(kwargs):
    h1, h2 = correlated_views(m=12, d1=4, d2=3, seed=7)
    kwargs = {"reg": 1e-3, **kwargs}
    _, g1, g2 = loss_and_gradients(h1, h2, **kwargs)
    rng = np.random.default_rng(8)
    for _ in range(4):
        i1 = (rng.integers(12), rng.integers(4))
        i2 = (rng.integers(12), rng.integers(3))
        numeric1 = finite_difference(lambda a: deep_cca_loss(a, h2, **kwargs).numpy(), h1, i1)
        numeric2 = finite_difference(lambda a: deep_cca_loss(h1, a, **kwargs).numpy(), h2, i2)
        np.testing.assert_allclose(g1[i1], numeric1, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(g2[i2], numeric2, rtol=1e-5, atol=1e-8)


def test_gradient_of_trace_norm_with_exactly_repeated_correlations():
    """h1 == h2 with S11 = c I: T = c/(c+reg) I, every correlation tied; the trace norm
    is still differentiable and the gradient matches finite differences."""
    h = hadamard_view()
    rng = np.random.default_rng(9)
    h2 = h + 1e-3 * rng.normal(size=h.shape)  # keep a generic perturbation direction
    for first, second in ((h, h.copy()), (h, h2)):
        _, g1, _ = loss_and_gradients(first, second, reg=1e-2)
        for index in ((0, 0), (3, 2), (7, 3)):
            numeric = finite_difference(lambda a, b=second: deep_cca_loss(a, b, reg=1e-2).numpy(), first, index)
            np.testing.assert_allclose(g1[index], numeric, rtol=1e-5, atol=1e-8)


def test_tie_at_top_k_boundary_splits_the_gradient_evenly():
    h = hadamard_view(d=4)
    _, all1, all2 = loss_and_gradients(h, h.copy(), reg=1e-2)
    for k in (1, 2, 3):
        loss, top1, top2 = loss_and_gradients(h, h.copy(), n_components=k, reg=1e-2)
        c = 8 / 7
        np.testing.assert_allclose(loss, -k * c / (c + 1e-2), atol=1e-12)
        np.testing.assert_allclose(top1, k / 4 * all1, atol=1e-12)
        np.testing.assert_allclose(top2, k / 4 * all2, atol=1e-12)


def test_correlation_gradient_is_singular_vector_outer_product():
    h1, h2 = correlated_views(m=12, d1=4, d2=3, seed=10)
    h1_t = tf.constant(h1)
    with tf.GradientTape() as tape:
        tape.watch(h1_t)
        second = cca_correlations(h1_t, h2, reg=1e-3)[1]
    gradient = tape.gradient(second, h1_t).numpy()
    numeric = finite_difference(lambda a: cca_correlations(a, h2, reg=1e-3).numpy()[1], h1, (5, 2))
    np.testing.assert_allclose(gradient[5, 2], numeric, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------ degenerate cases
def degenerate_cases():
    rng = np.random.default_rng(11)
    h1, h2 = correlated_views(m=20, d1=5, d2=5, seed=12)
    dead1, dead2 = h1.copy(), h2.copy()
    dead1[:, 1] = 3.0
    dead2[:, [0, 4]] = -1.0
    hadamard = hadamard_view(m=16, d=5, scale=2.0)
    all_dead = np.ones((20, 5))
    return {
        "dead units": (dead1, dead2),
        "dead units, identical views": (dead1, dead1.copy()),
        "identical views": (h1, h1.copy()),
        "S11 multiple of identity": (hadamard, rng.normal(size=(16, 5))),
        "S11 = S22 = S12 multiple of identity": (hadamard, hadamard.copy()),
        "every unit dead": (all_dead, h2),
        "batch smaller than dimension": (h1[:4], h2[:4]),
    }


CASES = degenerate_cases()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    "dtype, reg, compute_dtype",
    [
        (np.float64, 1e-4, "float64"),
        (np.float64, 1e-8, "float64"),
        (np.float32, 1e-4, "float64"),
        (np.float32, 1e-4, None),
    ],
)
def test_degenerate_inputs_give_finite_loss_and_gradients(case, dtype, reg, compute_dtype):
    h1, h2 = (view.astype(dtype) for view in CASES[case])
    for kwargs in (
        dict(objective="trace"),
        dict(objective="trace", n_components=2),
        dict(objective="squared"),
        dict(objective="squared", n_components=2),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the small-batch case warns, tested elsewhere
            loss, g1, g2 = loss_and_gradients(h1, h2, reg=reg, compute_dtype=compute_dtype, **kwargs)
        assert loss.dtype == dtype
        assert_all_finite(loss, g1, g2)
        k = kwargs.get("n_components", 5)
        assert -k - 1e-4 <= loss <= 0, (kwargs, loss)


def test_degenerate_correlation_values():
    h1, h2 = CASES["dead units, identical views"]
    values = cca_correlations(h1, h2, reg=1e-8).numpy()
    np.testing.assert_allclose(values[:4], 1.0, atol=1e-6)
    assert abs(values[4]) < 1e-10  # the dead unit correlates with nothing
    dead1, dead2 = CASES["dead units"]
    assert cca_correlations(dead1, dead2, reg=1e-8).numpy()[-2:].max() < 1e-10
    values = cca_correlations(*CASES["every unit dead"]).numpy()
    np.testing.assert_allclose(values, 0.0, atol=1e-12)


def test_dead_unit_gets_no_gradient_through_its_zero_correlation():
    dead1, dead2 = CASES["dead units"]
    _, g1, _ = loss_and_gradients(dead1, dead2, reg=1e-4)
    # Moving a constant column changes the loss only at second order (a kink at zero).
    np.testing.assert_allclose(g1[:, 1], 0.0, atol=1e-8)


def test_small_batch_with_ridge_warns_and_is_regularised():
    h1, h2 = correlated_views(m=20, d1=5, d2=5, seed=13)
    with pytest.warns(UserWarning, match="larger than the output dimension"):
        values = cca_correlations(h1[:4], h2[:4], reg=1e-2).numpy()
    assert np.all(values <= 1) and np.all(np.isfinite(values))
    np.testing.assert_allclose(values, reference_correlations(h1[:4], h2[:4], 1e-2), atol=1e-10)
    assert values[3] < 1e-10  # at most batch - 1 = 3 nonzero correlations


# ------------------------------------------------------------------------ bad input
def test_bad_inputs_raise_clear_errors():
    h1, h2 = correlated_views(m=10, d1=4, d2=3)
    with pytest.raises(ValueError, match="same batch size"):
        deep_cca_loss(h1, h2[:8])
    with pytest.raises(ValueError, match="rank-2"):
        deep_cca_loss(h1[:, :, None], h2)
    with pytest.raises(ValueError, match="rank-2"):
        deep_cca_loss(h1, h2[:, 0])
    with pytest.raises(ValueError, match="n_components=4 is larger than min"):
        deep_cca_loss(h1, h2, n_components=4)
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        deep_cca_loss(h1, h2, n_components=0)
    with pytest.raises(TypeError, match="n_components"):
        deep_cca_loss(h1, h2, n_components=2.0)
    with pytest.raises(ValueError, match="objective must be one of"):
        deep_cca_loss(h1, h2, objective="frobenius")
    with pytest.raises(ValueError, match="reg must be finite and >= 0"):
        deep_cca_loss(h1, h2, reg=-1e-4)
    with pytest.raises(ValueError, match="reg must be finite and >= 0"):
        deep_cca_loss(h1, h2, reg=(1e-4, float("nan")))
    with pytest.raises(ValueError, match="one float or a pair"):
        deep_cca_loss(h1, h2, reg=(1e-4, 1e-4, 1e-4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        deep_cca_loss(h1[:1], h2[:1])
    with pytest.raises(ValueError, match="compute_dtype"):
        deep_cca_loss(h1, h2, compute_dtype="float16")
    with pytest.raises(ValueError, match="objective"):
        DeepCCALoss(objective="sum")
    with pytest.raises(ValueError, match="reg"):
        DeepCCALoss(reg=-1.0)


def test_zero_ridge_with_small_batch_raises():
    h1, h2 = correlated_views(m=10, d1=4, d2=3)
    with pytest.raises(ValueError, match="With reg=0 the covariance of h1 is singular"):
        deep_cca_loss(h1[:4], h2[:4], reg=0.0)
    with pytest.raises(ValueError, match="covariance of h2 is singular"):
        deep_cca_loss(h1[:3], h2[:3], reg=(1e-4, 0.0))


def test_zero_ridge_with_dead_unit_raises_instead_of_nan():
    dead1, dead2 = CASES["dead units"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="not numerically positive definite"):
        deep_cca_loss(dead1, dead2, reg=0.0)
    bad = dead1.copy()
    bad[3, 2] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite outputs"):
        deep_cca_loss(bad, dead2)


def test_float32_dependent_units_at_large_scale_never_give_silent_nan():
    """Rounding in a float32 covariance of entries ~1e6 swamps reg=1e-4: float64
    computation copes, float32 computation either copes or raises, never returns NaN."""
    rng = np.random.default_rng(17)
    failures = 0
    for _ in range(6):
        h1 = rng.normal(size=(50, 6))
        h1[:, 2] = h1[:, 0] + h1[:, 1]
        h1 = (1e3 * h1).astype(np.float32)
        h2 = rng.normal(size=(50, 6)).astype(np.float32)
        loss, g1, g2 = loss_and_gradients(h1, h2)
        assert_all_finite(loss, g1, g2)
        try:
            loss32 = deep_cca_loss(h1, h2, compute_dtype=None).numpy()
        except tf.errors.InvalidArgumentError as error:
            assert "increase reg" in str(error)
            failures += 1
        else:
            assert np.isfinite(loss32)
    assert failures > 0  # float32 does fail on some of these


def test_dynamic_batch_sizes_are_checked_at_run_time():
    h1, h2 = correlated_views(m=10, d1=4, d2=3)
    spec = tf.TensorSpec([None, None], tf.float64)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float64), tf.TensorSpec([None, 3], tf.float64)])
    def loss_fn(a, b):
        return deep_cca_loss(a, b, reg=0.0)

    np.testing.assert_allclose(loss_fn(h1, h2).numpy(), deep_cca_loss(h1, h2, reg=0.0).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        loss_fn(h1, h2[:8])
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than 4 samples"):
        loss_fn(h1[:4], h2[:4])
    with pytest.raises(ValueError, match="known number of features"):
        tf.function(lambda a: deep_cca_loss(a, a)).get_concrete_function(spec)


# ----------------------------------------------------------- graphs and serialization
def test_works_inside_tf_function_with_gradients():
    h1, h2 = (tf.constant(v, tf.float32) for v in correlated_views(m=16, seed=14))
    loss_object = DeepCCALoss(n_components=2)

    @tf.function(jit_compile=False)
    def step(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            loss = loss_object(a, b)
        return loss, tape.gradient(loss, [a, b])

    loss, (g1, g2) = step(h1, h2)
    np.testing.assert_allclose(loss.numpy(), loss_object(h1, h2).numpy(), rtol=1e-6)
    assert_all_finite(g1.numpy(), g2.numpy())


def test_squared_objective_with_all_components_compiles_with_xla():
    h1, h2 = correlated_views(m=16, seed=15)
    h1, h2 = tf.constant(h1), tf.constant(h2)

    @tf.function(jit_compile=True)
    def step(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            loss = deep_cca_loss(a, b, objective="squared")
        return loss, tape.gradient(loss, [a, b])

    loss, (g1, _) = step(h1, h2)
    expected, e1, _ = loss_and_gradients(h1.numpy(), h2.numpy(), objective="squared")
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(g1.numpy(), e1, rtol=1e-8, atol=1e-12)


def test_deep_cca_loss_serialization_round_trip():
    original = DeepCCALoss(n_components=3, reg=(1e-3, 1e-2), objective="squared", compute_dtype=None)
    config = keras.saving.serialize_keras_object(original)
    assert config["registered_name"] == "xmodal_tf>DeepCCALoss"
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, DeepCCALoss)
    assert restored.get_config() == original.get_config()
    h1, h2 = correlated_views(seed=16)
    np.testing.assert_allclose(restored(h1, h2).numpy(), original(h1, h2).numpy())
    default = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(DeepCCALoss()))
    assert default.get_config() == DeepCCALoss().get_config()
    assert "DeepCCALoss(n_components=3" in repr(original)


def test_training_two_linear_encoders_raises_the_correlation():
    h1, h2 = correlated_views(m=64, d1=6, d2=5, shared=2, noise=0.3, seed=18, dtype=np.float32)
    keras.utils.set_random_seed(0)
    encoders = [keras.Sequential([keras.Input((d,)), keras.layers.Dense(2)]) for d in (6, 5)]
    variables = encoders[0].trainable_variables + encoders[1].trainable_variables
    optimizer = keras.optimizers.Adam(0.05)
    loss_fn = DeepCCALoss(n_components=2, reg=1e-3)

    @tf.function(jit_compile=False)
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(encoders[0](h1), encoders[1](h2))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    first = step().numpy()
    for _ in range(60):
        last = step().numpy()
    best = -xm.CCA(n_components=2).fit(h1, h2).canonical_correlations_.sum()
    assert last < first - 0.1 and last > best - 1e-3, (first, last, best)


# ----------------------------------------------------------------------------- DCCAE
def test_reconstruction_error_sums_features_and_averages_examples():
    from xmodal_tf.losses import reconstruction_error

    rng = np.random.default_rng(0)
    view = rng.normal(size=(5, 4, 3, 1)).astype("float32")  # image-shaped: every non-batch axis is a feature
    reconstruction = rng.normal(size=(5, 4, 3, 1)).astype("float32")
    value = reconstruction_error(view, reconstruction)
    assert value.dtype == tf.float32 and value.shape == ()
    expected = np.mean(np.sum((view - reconstruction).reshape(5, -1) ** 2, axis=1))
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-6)
    # 12 features: 12 times Keras' mean squared error over every entry.
    mse = float(np.mean((view - reconstruction) ** 2))
    np.testing.assert_allclose(value.numpy(), 12 * mse, rtol=1e-6)
    assert reconstruction_error(view.astype("float64"), tf.constant(reconstruction, tf.float16)).dtype == tf.float64
    assert reconstruction_error(view, tf.constant(reconstruction, tf.float16)).dtype == tf.float32
    with pytest.raises(ValueError, match="reconstruction has shape"):
        reconstruction_error(view, reconstruction[:, :2])
