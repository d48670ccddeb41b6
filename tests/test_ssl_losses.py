"""Barlow Twins and VICReg (xmodal_tf.ssl_losses): values against NumPy, edge cases, errors, config, compile."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from xmodal_tf.ssl_losses import BarlowTwinsLoss, VICRegLoss, barlow_twins_loss, vicreg_loss
from xmodal_tf.view_loss import ConcatenatedViews


# ----------------------------------------------------------------------------- NumPy references
def _off_diagonal_squares(matrix):
    return float((matrix**2).sum() - (np.diag(matrix) ** 2).sum())


def barlow_reference(h1, h2, off_diagonal_weight=None, eps=1e-5):
    h1, h2 = np.asarray(h1, np.float64), np.asarray(h2, np.float64)
    m, d = h1.shape
    z1 = (h1 - h1.mean(axis=0)) / np.sqrt(h1.var(axis=0) + eps)
    z2 = (h2 - h2.mean(axis=0)) / np.sqrt(h2.var(axis=0) + eps)
    c = z1.T @ z2 / m
    weight = 1.0 / d if off_diagonal_weight is None else off_diagonal_weight
    return float(((1.0 - np.diag(c)) ** 2).sum()) + weight * _off_diagonal_squares(c)


def vicreg_reference(h1, h2, invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0, eps=1e-4):
    h1, h2 = np.asarray(h1, np.float64), np.asarray(h2, np.float64)
    d = h1.shape[1]
    invariance = np.mean((h1 - h2) ** 2)
    variance = sum(np.mean(np.maximum(0.0, 1.0 - np.sqrt(h.var(axis=0, ddof=1) + eps))) for h in (h1, h2))
    covariance = sum(_off_diagonal_squares(np.cov(h, rowvar=False)) / d for h in (h1, h2))
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance


def paired(m=48, d=6, seed=0, dtype="float32", noise=0.5):
    rng = np.random.default_rng(seed)
    h1 = rng.normal(size=(m, d)) * rng.uniform(0.2, 3.0, size=d) + rng.normal(size=d)
    h2 = h1 @ rng.normal(scale=0.5, size=(d, d)) + h1 + noise * rng.normal(size=(m, d))
    return h1.astype(dtype), h2.astype(dtype)


LOSSES = {"barlow_twins": (barlow_twins_loss, barlow_reference), "vicreg": (vicreg_loss, vicreg_reference)}


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-5), ("float64", 1e-11)])
@pytest.mark.parametrize("m,d,seed", [(48, 6, 0), (7, 12, 1), (2, 3, 2)])
def test_values_match_numpy(name, dtype, rtol, m, d, seed):
    function, reference = LOSSES[name]
    h1, h2 = paired(m, d, seed, dtype)
    value = function(h1, h2)
    assert value.dtype == tf.as_dtype(dtype) and value.shape == ()
    np.testing.assert_allclose(value.numpy(), reference(h1, h2), rtol=rtol, atol=1e-6 if dtype == "float32" else 0)


def test_weights_and_eps_enter_as_defined():
    h1, h2 = paired(seed=3)
    np.testing.assert_allclose(
        barlow_twins_loss(h1, h2, off_diagonal_weight=5e-3, eps=1e-2).numpy(),
        barlow_reference(h1, h2, 5e-3, 1e-2),
        rtol=2e-5,
    )
    weights = {"invariance_weight": 1.0, "variance_weight": 3.0, "covariance_weight": 0.5, "eps": 1e-3}
    np.testing.assert_allclose(vicreg_loss(h1, h2, **weights).numpy(), vicreg_reference(h1, h2, **weights), rtol=2e-5)
    # Each weight scales its own term: with the others at 0 the loss is that term alone.
    only_invariance = vicreg_loss(h1, h2, variance_weight=0.0, covariance_weight=0.0).numpy()
    np.testing.assert_allclose(only_invariance, 25.0 * np.mean((h1.astype(float) - h2) ** 2), rtol=2e-5)
    # The classes give the functions' values.
    np.testing.assert_allclose(
        BarlowTwinsLoss(off_diagonal_weight=0.2)(h1, h2), barlow_twins_loss(h1, h2, off_diagonal_weight=0.2)
    )
    np.testing.assert_allclose(VICRegLoss(**weights)(h1, h2), vicreg_loss(h1, h2, **weights))


def decorrelated_units(m=64, d=8, seed=0):
    """Columns with mean 0, biased variance 1 and zero correlation with each other."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d))
    q, _ = np.linalg.qr(x - x.mean(axis=0))
    return q * np.sqrt(m) * rng.uniform(0.5, 4.0, size=d) + rng.normal(size=d)  # any scale and shift


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_perfect_case_costs_nothing(dtype):
    h = decorrelated_units().astype(dtype)
    # Barlow Twins standardises: identical views with uncorrelated units give C = I (up to eps).
    assert abs(float(barlow_twins_loss(h, h))) < 1e-6
    # Unrelated views instead leave d = 8 unmatched diagonal entries.
    other = decorrelated_units(seed=1).astype(dtype)
    assert float(barlow_twins_loss(h, other)) > 4.0
    # VICReg: identical views of uncorrelated units with standard deviations >= 1.
    v = decorrelated_units().astype(dtype)
    v = (v - v.mean(axis=0)) / v.std(axis=0)  # unbiased variance m / (m - 1) > 1
    assert abs(float(vicreg_loss(v, v))) < 1e-5


# ----------------------------------------------------------------------------- edge cases
def edge_cases():
    rng = np.random.default_rng(4)
    h = rng.normal(size=(16, 5))
    dead = h.copy()
    dead[:, :3] = 2.5  # constant units
    yield "dead units", dead, h
    yield "both all dead", np.zeros((16, 5)), np.zeros((16, 5))
    yield "identical views", h, h
    yield "identical with dead units", dead, dead
    yield "two rows", h[:2], h[2:4]
    yield "two identical rows", np.ones((2, 5)), np.ones((2, 5))
    yield "tiny variance", 1.0 + 1e-7 * h, h


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("case", [case[0] for case in edge_cases()])
def test_finite_loss_and_gradients_in_degenerate_cases(name, dtype, case):
    function, reference = LOSSES[name]
    _, h1, h2 = next(item for item in edge_cases() if item[0] == case)
    v1, v2 = tf.Variable(tf.constant(h1, dtype)), tf.Variable(tf.constant(h2, dtype))
    with tf.GradientTape() as tape:
        loss = function(v1, v2)
    gradients = tape.gradient(loss, [v1, v2])
    assert np.isfinite(loss.numpy())
    assert all(np.isfinite(gradient.numpy()).all() for gradient in gradients)
    if dtype == tf.float64:
        np.testing.assert_allclose(loss.numpy(), reference(h1, h2), rtol=1e-9, atol=1e-12)


def test_dead_units_cost_their_share_but_get_no_gradient():
    h = decorrelated_units(m=16, d=4, seed=5).astype("float32")
    h[:, 0] = 3.0
    v = tf.Variable(h)
    with tf.GradientTape() as tape:
        loss = barlow_twins_loss(v, v)
    # The dead unit standardises to 0: C_00 = 0 costs (1 - 0)^2 = 1; the rest match.
    assert float(loss) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_array_equal(tape.gradient(loss, v).numpy()[:, 0], 0.0)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("half", [tf.float16, tf.bfloat16])
def test_mixed_precision_outputs_are_computed_in_float32(name, half):
    function, _ = LOSSES[name]
    h1, h2 = paired(m=32, d=5, seed=6)
    low_1, low_2 = tf.cast(h1, half), tf.cast(h2, half)
    value = function(low_1, low_2)
    assert value.dtype == tf.float32
    # The same as float32 math on the rounded values (float16 sums would differ, or overflow).
    expected = function(tf.cast(low_1, tf.float32), tf.cast(low_2, tf.float32))
    np.testing.assert_allclose(value.numpy(), expected.numpy(), rtol=1e-6)
    # Mixed float32 / float64 views: float64.
    assert function(h1, h2.astype("float64")).dtype == tf.float64


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_dynamic_batch_sizes_are_checked_when_the_graph_runs(name):
    function, reference = LOSSES[name]
    spec = tf.TensorSpec((None, 4), tf.float32)
    traced = tf.function(lambda a, b: function(a, b), input_signature=[spec, spec])
    h1, h2 = paired(m=10, d=4, seed=7)
    np.testing.assert_allclose(traced(h1, h2).numpy(), reference(h1, h2), rtol=2e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 2 rows"):
        traced(h1[:1], h2[:1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        traced(h1[:5], h2[:6])


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bad_views(name):
    function, _ = LOSSES[name]
    h = np.ones((8, 4), "float32")
    with pytest.raises(ValueError, match="same number of features; got 4 and 3"):
        function(h, h[:, :3])
    with pytest.raises(ValueError, match=r"at least 2 rows .*got 1\. Use a larger batch_size"):
        function(h[:1], h[:1])
    with pytest.raises(ValueError, match="same batch size .* got 8 and 6 rows"):
        function(h, h[:6])
    with pytest.raises(ValueError, match="rank-2"):
        function(h[None], h[None])
    loss = BarlowTwinsLoss() if name == "barlow_twins" else VICRegLoss()
    with pytest.raises(ValueError, match="exactly 2 views"):
        loss(h, h, h)


@pytest.mark.parametrize(
    "cls,kwargs,error,message",
    [
        (BarlowTwinsLoss, {"off_diagonal_weight": -1.0}, ValueError, "off_diagonal_weight must be a finite float >= 0"),
        (BarlowTwinsLoss, {"off_diagonal_weight": "1/d"}, TypeError, "off_diagonal_weight must be .* or None"),
        (BarlowTwinsLoss, {"eps": 0.0}, ValueError, "eps must be a finite float > 0"),
        (BarlowTwinsLoss, {"eps": float("nan")}, ValueError, "eps must be"),
        (BarlowTwinsLoss, {"global_batch": "yes"}, TypeError, "global_batch must be True or False"),
        (BarlowTwinsLoss, {"name": ""}, TypeError, "name must be a non-empty string"),
        (VICRegLoss, {"invariance_weight": float("inf")}, ValueError, "invariance_weight must be a finite float >= 0"),
        (VICRegLoss, {"variance_weight": -25.0}, ValueError, "variance_weight"),
        (VICRegLoss, {"covariance_weight": None}, TypeError, "covariance_weight must be a finite float >= 0"),
        (VICRegLoss, {"eps": -1e-4}, ValueError, "eps must be a finite float > 0"),
        (VICRegLoss, {"global_batch": 1}, TypeError, "global_batch"),
    ],
)
def test_bad_arguments(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)
    function = barlow_twins_loss if cls is BarlowTwinsLoss else vicreg_loss
    if "name" not in kwargs:
        h = np.ones((4, 2), "float32")
        with pytest.raises(error, match=message):
            function(h, h, **kwargs)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "loss",
    [
        BarlowTwinsLoss(),
        BarlowTwinsLoss(off_diagonal_weight=5e-3, eps=1e-3, global_batch=True, name="bt"),
        VICRegLoss(),
        VICRegLoss(invariance_weight=1.0, variance_weight=2.0, covariance_weight=0.0, eps=1e-3, name="vic"),
    ],
    ids=repr,
)
def test_config_and_keras_serialization_round_trip(loss):
    config = loss.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = type(loss).from_config(config)
    assert type(clone) is type(loss) and clone.get_config() == config
    assert keras.saving.get_registered_name(type(loss)) == f"xmodal_tf>{type(loss).__name__}"
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(loss) and restored.get_config() == config
    assert repr(restored) == repr(loss) and loss.name in repr(loss)
    h1, h2 = paired(m=12, d=4, seed=8)
    assert float(restored(h1, h2)) == float(loss(h1, h2))


def test_default_names_and_off_diagonal_weight():
    assert BarlowTwinsLoss().name == "barlow_twins_loss" and VICRegLoss().name == "vicreg_loss"
    assert BarlowTwinsLoss().get_config()["off_diagonal_weight"] is None
    h1, h2 = paired(m=20, d=10, seed=9)
    np.testing.assert_allclose(barlow_twins_loss(h1, h2), barlow_twins_loss(h1, h2, off_diagonal_weight=0.1))


# ----------------------------------------------------------------------------- compile / fit
@pytest.mark.parametrize("loss", [BarlowTwinsLoss(), VICRegLoss()], ids=lambda loss: loss.name)
def test_concatenated_views_train_a_functional_model(loss):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(10)
    latent = rng.normal(size=(128, 3))
    x = np.tanh(latent @ rng.normal(size=(3, 8)) + 0.1 * rng.normal(size=(128, 8))).astype("float32")
    y = np.tanh(latent @ rng.normal(size=(3, 6)) + 0.1 * rng.normal(size=(128, 6))).astype("float32")
    input_x, input_y = keras.Input((8,)), keras.Input((6,))
    outputs = keras.layers.Concatenate()([keras.layers.Dense(4)(input_x), keras.layers.Dense(4)(input_y)])
    model = keras.Model([input_x, input_y], outputs)
    model.compile(keras.optimizers.Adam(1e-2), loss=ConcatenatedViews(loss, view_dims=[4, 4]))
    history = model.fit([x, y], np.zeros(len(x)), batch_size=32, epochs=2, shuffle=False, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[1] < history[0]
    # The logged loss is the loss of the model's outputs.
    h = model.predict([x[:32], y[:32]], verbose=0)
    value = model.evaluate([x[:32], y[:32]], np.zeros(32), batch_size=32, verbose=0)
    np.testing.assert_allclose(value, float(loss(h[:, :4], h[:, 4:])), rtol=1e-4)


# ----------------------------------------------------------------------------- global batch
GLOBAL_BATCH_SCRIPT = textwrap.dedent("""
    import json
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from xmodal_tf.ssl_losses import BarlowTwinsLoss, VICRegLoss

    rng = np.random.default_rng(0)
    h1 = rng.normal(size=(12, 3)).astype("float64")
    h2 = (h1 + rng.normal(size=(12, 3))).astype("float64")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    halves = strategy.experimental_distribute_values_from_function(
        lambda context: (h1[6 * context.replica_id_in_sync_group:][:6], h2[6 * context.replica_id_in_sync_group:][:6])
    )
    results = {}
    for loss in (BarlowTwinsLoss(global_batch=True), VICRegLoss(global_batch=True), VICRegLoss()):
        def step(pair):
            a, b = tf.identity(pair[0]), tf.identity(pair[1])
            with tf.GradientTape() as tape:
                tape.watch([a, b])
                value = loss(a, b)
                scaled = value / 2.0  # as a model's step: the replicas' gradients are summed
            return value, tape.gradient(scaled, [a, b])

        values, gradients = strategy.run(tf.function(step), args=(halves,))
        local = strategy.experimental_local_results
        a, b = tf.constant(h1), tf.constant(h2)
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            whole = loss(a, b)
        expected = tape.gradient(whole, [a, b])
        key = f"{loss.name}_{loss.global_batch}"
        results[key + "_values"] = [float(v) for v in local(values)]
        results[key + "_whole"] = float(whole)
        results[key + "_halves"] = [float(loss(h1[:6], h2[:6])), float(loss(h1[6:], h2[6:]))]
        results[key + "_gradient_error"] = max(
            float(np.abs(np.concatenate([g.numpy() for g in local(got)]) - want.numpy()).max())
            for got, want in zip(gradients, expected)
        )
    print(json.dumps(results))
""")


def test_global_batch_statistics_under_two_replicas_equal_one_device():
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    completed = subprocess.run(
        [sys.executable, "-c", GLOBAL_BATCH_SCRIPT],
        capture_output=True,
        text=True,
        cwd=repo_root,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    for key in ("barlow_twins_loss_True", "vicreg_loss_True"):
        # Every replica computes the loss of the whole batch, and the gradients of its rows.
        np.testing.assert_allclose(results[key + "_values"], [results[key + "_whole"]] * 2, rtol=1e-12)
        assert results[key + "_gradient_error"] < 1e-12
    # Not vacuous: the halves' own losses differ from the whole batch's.
    assert abs(results["vicreg_loss_True_whole"] - results["vicreg_loss_False_halves"][0]) > 1e-3
    # Without global_batch each replica scores its own half.
    np.testing.assert_allclose(results["vicreg_loss_False_values"], results["vicreg_loss_False_halves"], rtol=1e-12)
