"""The one interface of the objectives (ViewLoss, ConcatenatedViews) and the Eckart-Young loss.

Every ViewLoss passes the degenerate-input checks deep_cca_loss passes (dead units,
identical views, float32 / float64, tiny batches), round-trips through Keras
serialization and trains a plain Keras model through ConcatenatedViews.
"""

import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_losses import CASES

from xmodal_tf.cca import CCA
from xmodal_tf.eckart_young import EYLoss, ey_loss
from xmodal_tf.losses import ContrastiveLoss, DeepCCALoss
from xmodal_tf.ssl_losses import BarlowTwinsLoss, VICRegLoss
from xmodal_tf.view_loss import ConcatenatedViews, ViewLoss

LOSSES = {
    "deep_cca": lambda: DeepCCALoss(reg=1e-4),
    "deep_cca_squared": lambda: DeepCCALoss(objective="squared", n_components=2),
    "ey": lambda: EYLoss(),
    "ey_unbiased": lambda: EYLoss(unbiased=True),
    "contrastive": lambda: ContrastiveLoss(temperature=0.1),
    "barlow_twins": lambda: BarlowTwinsLoss(),
    "vicreg": lambda: VICRegLoss(),
}


def value_and_gradients(loss, *views):
    views = [tf.constant(view) for view in views]
    with tf.GradientTape() as tape:
        tape.watch(views)
        value = loss(*views)
    return value, tape.gradient(value, views)


# ----------------------------------------------------------------------------- every ViewLoss
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_degenerate_inputs_give_finite_values_and_gradients(name, case, dtype):
    loss = LOSSES[name]()
    h1, h2 = (view.astype(dtype) for view in CASES[case])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Deep CCA warns on batches below the width
        value, gradients = value_and_gradients(loss, h1, h2)
    assert value.shape == ()
    assert value.dtype == dtype
    assert np.isfinite(value.numpy()), (name, case)
    for gradient in gradients:
        assert gradient is not None
        assert np.all(np.isfinite(gradient.numpy())), (name, case)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_two_row_batches_are_finite_or_refused_clearly(name):
    loss = LOSSES[name]()
    rng = np.random.default_rng(0)
    h1, h2 = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    if name == "ey_unbiased":
        with pytest.raises(ValueError, match="at least 4 rows"):
            loss(h1, h2)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value, gradients = value_and_gradients(loss, h1, h2)
    assert np.isfinite(value.numpy())
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_half_precision_outputs_are_computed_in_float32(name):
    loss = LOSSES[name]()
    rng = np.random.default_rng(1)
    h1 = rng.normal(size=(32, 4)).astype(np.float16)
    h2 = (h1 + rng.normal(size=(32, 4)).astype(np.float16)).astype(np.float16)
    value = loss(h1, h2)
    reference = loss(h1.astype(np.float32), h2.astype(np.float32))
    assert value.dtype == tf.float32
    np.testing.assert_allclose(value.numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_serialization_round_trip_keeps_config_and_value(name):
    loss = LOSSES[name]()
    assert isinstance(loss, ViewLoss)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    rng = np.random.default_rng(2)
    h1, h2 = rng.normal(size=(16, 3)), rng.normal(size=(16, 3))
    assert float(restored(h1, h2)) == float(loss(h1, h2))
    assert repr(restored) == repr(loss)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_wrong_number_of_views_is_refused(name):
    loss = LOSSES[name]()
    h = np.zeros((8, 3))
    with pytest.raises(ValueError, match="views' outputs"):
        loss(h)


# ----------------------------------------------------------------------------- ConcatenatedViews
def paired_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, 2))
    x = np.tanh(np.c_[shared, rng.normal(size=(n, 6))] @ rng.normal(size=(8, 8))).astype("float32")
    y = np.tanh(np.c_[shared, rng.normal(size=(n, 6))] @ rng.normal(size=(8, 8))).astype("float32")
    return x, y


def concatenated_model(width=3):
    keras.utils.set_random_seed(0)
    x_in, y_in = keras.Input((8,), name="x"), keras.Input((8,), name="y")
    h_x = keras.layers.Dense(width, name="dense_x")(keras.layers.Dense(16, activation="relu")(x_in))
    h_y = keras.layers.Dense(width, name="dense_y")(keras.layers.Dense(16, activation="relu")(y_in))
    return keras.Model([x_in, y_in], keras.layers.Concatenate()([h_x, h_y]))


def test_concatenated_views_trains_a_plain_keras_model_and_saves(tmp_path):
    x, y = paired_data()
    model = concatenated_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ConcatenatedViews(EYLoss(), view_dims=[3, 3]))
    history = model.fit([x, y], np.zeros(len(x)), batch_size=64, epochs=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 0.1
    h = model.predict([x, y], verbose=0)
    expected = float(ey_loss(h[:, :3], h[:, 3:]))
    assert float(model.evaluate([x, y], np.zeros(len(x)), batch_size=len(x), verbose=0)) == pytest.approx(
        expected, rel=1e-4
    )
    path = os.path.join(tmp_path, "concatenated.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, ConcatenatedViews)
    assert restored.loss.view_dims == [3, 3]
    assert restored.loss.loss.get_config() == EYLoss().get_config()
    np.testing.assert_allclose(restored.predict([x, y], verbose=0), h, rtol=1e-6)


def test_concatenated_views_splits_equal_parts_and_checks_widths():
    rng = np.random.default_rng(3)
    h = rng.normal(size=(20, 6))
    equal = ConcatenatedViews(EYLoss(), view_dims=3)  # three views of 2 units
    assert float(equal(np.zeros(20), h)) == pytest.approx(float(ey_loss(h[:, :2], h[:, 2:4], h[:, 4:])))
    with pytest.raises(ValueError, match="sum to 5"):
        ConcatenatedViews(EYLoss(), view_dims=[2, 3])(np.zeros(20), h)
    with pytest.raises(ValueError, match="4 equal views"):
        ConcatenatedViews(EYLoss(), view_dims=4)(np.zeros(20), h)
    with pytest.raises(TypeError, match="ViewLoss"):
        ConcatenatedViews("mse")
    with pytest.raises(ValueError, match="exactly 2"):
        ConcatenatedViews(DeepCCALoss(), view_dims=3)
    with pytest.raises(TypeError, match="view_dims"):
        ConcatenatedViews(EYLoss(), view_dims=2.5)


# ----------------------------------------------------------------------------- Eckart-Young
def ey_reference(views, unbiased=False):
    """-2 tr(sum_{i != j} C_ij) / (V - 1) + ||sum_i C_ii||^2, in NumPy."""
    views = [np.asarray(v, np.float64) for v in views]

    def covariances(parts):
        joint = np.cov(np.hstack(parts), rowvar=False)
        d = parts[0].shape[1]
        blocks = [
            [joint[i * d : (i + 1) * d, j * d : (j + 1) * d] for j in range(len(parts))] for i in range(len(parts))
        ]
        within = sum(blocks[i][i] for i in range(len(parts)))
        cross = sum(blocks[i][j] for i in range(len(parts)) for j in range(len(parts)) if i != j)
        return cross, within

    cross, within = covariances(views)
    reward = np.trace(cross) / (len(views) - 1)
    if unbiased:
        half = len(views[0]) // 2
        _, first = covariances([v[:half] for v in views])
        _, second = covariances([v[half : 2 * half] for v in views])
        return -2 * reward + np.sum(first * second)
    return -2 * reward + np.sum(within**2)


@pytest.mark.parametrize("count", [2, 3, 4])
@pytest.mark.parametrize("unbiased", [False, True])
def test_ey_matches_the_numpy_reference(count, unbiased):
    rng = np.random.default_rng(count)
    shared = rng.normal(size=(41, 4))
    views = [shared + rng.normal(size=(41, 4)) for _ in range(count)]
    np.testing.assert_allclose(ey_loss(*views, unbiased=unbiased).numpy(), ey_reference(views, unbiased), rtol=1e-10)


def test_ey_minimum_is_minus_the_sum_of_squared_canonical_correlations():
    rng = np.random.default_rng(4)
    latent = rng.normal(size=(500, 3))
    x = latent @ rng.normal(size=(3, 6)) + rng.normal(size=(500, 6))
    y = latent @ rng.normal(size=(3, 5)) + rng.normal(size=(500, 5))
    cca = CCA(n_components=3).fit(x, y)
    u, v = cca.transform(x, y)
    rho = np.array([np.corrcoef(u[:, i], v[:, i])[0, 1] for i in range(3)])
    # Canonical variates scaled to variance rho / 2 minimise the loss (see the module docstring).
    scale = np.sqrt(rho / 2)
    z1, z2 = u / u.std(axis=0, ddof=1) * scale, v / v.std(axis=0, ddof=1) * scale
    optimum = ey_loss(z1, z2).numpy()
    np.testing.assert_allclose(optimum, -np.sum(rho**2), rtol=1e-8)
    for seed in range(5):  # any nearby representation does worse
        nudge = np.random.default_rng(seed).normal(size=(3, 3)) * 0.05
        assert ey_loss(z1 @ (np.eye(3) + nudge), z2).numpy() > optimum


def test_unbiased_ey_averages_to_the_population_loss_where_plain_ey_does_not():
    rng = np.random.default_rng(5)
    population = rng.normal(size=(20000, 3))
    other = population + rng.normal(size=(20000, 3))
    truth = ey_reference([population, other])
    batch = 8
    draws = [rng.choice(len(population), size=batch, replace=False) for _ in range(600)]
    compiled = {
        unbiased: tf.function(lambda a, b, u=unbiased: ey_loss(a, b, unbiased=u), reduce_retracing=True)
        for unbiased in (False, True)
    }
    estimates = {
        unbiased: np.array([compiled[unbiased](population[rows], other[rows]).numpy() for rows in draws])
        for unbiased in (False, True)
    }
    error = estimates[True].std() / np.sqrt(len(draws))
    assert abs(estimates[True].mean() - truth) < 4 * error
    assert estimates[False].mean() - truth > 10 * error  # the plug-in penalty is biased upwards


def test_ey_trains_linear_maps_to_the_canonical_correlations():
    rng = np.random.default_rng(6)
    latent = rng.normal(size=(2000, 2))
    x = np.c_[latent + 0.5 * rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2))]
    y = np.c_[latent + 0.5 * rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2))]
    rho = np.sort(CCA(n_components=2).fit(x, y).correlations(x, y))[::-1]
    w1 = tf.Variable(rng.normal(size=(4, 2)) * 0.1)
    w2 = tf.Variable(rng.normal(size=(4, 2)) * 0.1)
    optimizer = keras.optimizers.Adam(0.02)

    @tf.function
    def step(a, b):
        with tf.GradientTape() as tape:
            value = ey_loss(a @ w1, b @ w2, unbiased=True)
        optimizer.apply_gradients(zip(tape.gradient(value, [w1, w2]), [w1, w2]))

    for epoch in range(15):  # minibatches of 32, far below what whitening needs for stable estimates
        order = np.random.default_rng(epoch).permutation(2000)
        for start in range(0, 2000, 32):
            rows = order[start : start + 32]
            step(tf.constant(x[rows]), tf.constant(y[rows]))
    learned = CCA(n_components=2).fit(x @ w1.numpy(), y @ w2.numpy()).correlations(x @ w1.numpy(), y @ w2.numpy())
    np.testing.assert_allclose(np.sort(learned)[::-1], rho, atol=0.02)
    assert float(ey_loss(x @ w1.numpy(), y @ w2.numpy())) == pytest.approx(-np.sum(rho**2), abs=0.06)


def test_ey_compiles_with_xla_and_matches_eager():
    rng = np.random.default_rng(7)
    h1, h2, h3 = (tf.constant(rng.normal(size=(30, 4)).astype("float32")) for _ in range(3))
    for unbiased in (False, True):
        compiled = tf.function(lambda a, b, c, u=unbiased: ey_loss(a, b, c, unbiased=u), jit_compile=True)
        np.testing.assert_allclose(
            compiled(h1, h2, h3).numpy(), ey_loss(h1, h2, h3, unbiased=unbiased).numpy(), rtol=1e-5
        )


def test_ey_checks_its_inputs_with_clear_errors():
    h = np.zeros((10, 3))
    with pytest.raises(ValueError, match="same number of features"):
        ey_loss(h, np.zeros((10, 4)))
    with pytest.raises(ValueError, match="same batch size"):
        ey_loss(h, np.zeros((9, 3)))
    with pytest.raises(ValueError, match="at least 2 views"):
        ey_loss(h)
    with pytest.raises(ValueError, match="at least 2 rows"):
        ey_loss(h[:1], h[:1])
    with pytest.raises(ValueError, match="at least 4 rows"):
        ey_loss(h[:3], h[:3], unbiased=True)
    with pytest.raises(ValueError, match="rank-2"):
        ey_loss(np.zeros((10, 3, 1)), np.zeros((10, 3, 1)))
    with pytest.raises(TypeError, match="unbiased"):
        EYLoss(unbiased="yes")
    with pytest.raises(TypeError, match="compute_dtype"):
        EYLoss(compute_dtype=3.5)
    with pytest.raises(ValueError, match="compute_dtype"):
        EYLoss(compute_dtype="float16")

    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float64)] * 2)
    def dynamic(a, b):
        return ey_loss(a, b, unbiased=True)

    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 4 rows"):
        dynamic(h[:3], h[:3])
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        dynamic(h[:6], h[:5])


# ----------------------------------------------------------------------------- step_loss
@pytest.mark.parametrize("name", ["ey", "ey_unbiased", "barlow_twins", "vicreg"])
def test_step_loss_gives_nan_for_a_short_dynamic_batch_and_the_loss_otherwise(name):
    from xmodal_tf.view_loss import step_loss

    loss = LOSSES[name]()

    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)] * 2)
    def dynamic(a, b):
        return step_loss(loss, (a, b))

    rng = np.random.default_rng(8)
    h1, h2 = rng.normal(size=(9, 3)).astype("float32"), rng.normal(size=(9, 3)).astype("float32")
    np.testing.assert_allclose(dynamic(h1, h2).numpy(), loss(h1, h2).numpy(), rtol=1e-6)
    assert np.isnan(dynamic(h1[:1], h2[:1]).numpy())
    short = loss.min_rows - 1
    assert np.isnan(dynamic(h1[:short], h2[:short]).numpy())
    with pytest.raises(ValueError, match="at least"):  # a static batch too small is the caller's error
        step_loss(loss, (h1[:1], h2[:1]))


@pytest.mark.parametrize("objective", ["ey", "ey_unbiased"])
def test_fit_skips_the_short_last_batch_instead_of_failing(objective):
    from xmodal_tf.encoders import mlp_encoder
    from xmodal_tf.models import DeepCCA

    x, y = paired_data(n=130)  # batches of 16: the last has 2 rows
    keras.utils.set_random_seed(0)
    model = DeepCCA(mlp_encoder(8, 3, hidden_units=(8,)), mlp_encoder(8, 3, hidden_units=(8,)), objective=objective)
    model.compile(optimizer="adam")
    history = model.fit((x, y), batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert history["skipped_batches"][0] == (1 if objective == "ey_unbiased" else 0)


def test_concatenated_views_trains_a_compiled_model_under_the_explicit_trainer(tmp_path):
    from xmodal_tf.training import Trainer

    x, y = paired_data()
    model = concatenated_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ConcatenatedViews(BarlowTwinsLoss(), view_dims=2))
    dataset = tf.data.Dataset.from_tensor_slices(((x, y), np.zeros(len(x), "float32"))).batch(64, drop_remainder=True)
    trainer = Trainer(model, None, checkpoint_dir=tmp_path / "ckpt", progress=False)
    history = trainer.fit(dataset, epochs=6)
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]
    # A new trainer on the same folder resumes where the first stopped.
    again = concatenated_model()
    again.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ConcatenatedViews(BarlowTwinsLoss(), view_dims=2))
    resumed = Trainer(again, None, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert resumed.epoch == 6
    np.testing.assert_array_equal(again.get_weights()[0], model.get_weights()[0])
