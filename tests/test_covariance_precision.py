"""Tests for the Deep CCA objective's covariance precision: compute_dtype="auto" and float32."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_losses import loss_and_gradients as loss_and_view_gradients

from xmodal_tf.encoders import mlp_encoder
from xmodal_tf.losses import DeepCCALoss, _covariance_dtype_for, cca_correlations, resolve_compute_dtype
from xmodal_tf.models import DeepCCA


def well_conditioned_views(m=64, d1=6, d2=5, seed=0):
    """Two float32 views sharing 3 signals, with unit-scale, well-separated variances."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(m, 3))
    h1 = np.c_[latent, rng.normal(size=(m, d1 - 3))] + 0.3 * rng.normal(size=(m, d1))
    h2 = np.c_[latent, rng.normal(size=(m, d2 - 3))] + 0.3 * rng.normal(size=(m, d2))
    return h1.astype(np.float32), h2.astype(np.float32)


def loss_and_gradients(h1, h2, **kwargs):
    """(loss, the gradients w.r.t. both views flattened into one vector)."""
    loss, g1, g2 = loss_and_view_gradients(h1, h2, **kwargs)
    return loss, np.concatenate([g1.ravel(), g2.ravel()])


# ------------------------------------------------------------------ the device rule
@pytest.mark.parametrize(
    "device_type, expected",
    [
        ("CPU", tf.float64),
        ("cpu", tf.float64),
        ("", tf.float64),
        ("GPU", tf.float32),
        ("gpu", tf.float32),
        ("TPU", tf.float32),
    ],
)
def test_covariance_dtype_for_device_type(device_type, expected):
    assert _covariance_dtype_for(device_type) == expected


def test_covariance_dtype_for_rejects_non_strings():
    with pytest.raises(TypeError, match="device_type must be a string"):
        _covariance_dtype_for(None)


def test_auto_resolves_to_float64_on_cpu_eagerly_and_in_tf_function():
    h1, h2 = (tf.constant(v) for v in well_conditioned_views())
    assert "CPU" in h1.device
    assert resolve_compute_dtype("auto", h1, h2) == tf.float64
    seen = []

    @tf.function
    def traced(a, b):
        seen.append(resolve_compute_dtype("auto", a, b))
        with tf.device("/CPU:0"):
            c = a * 1.0
            seen.append(resolve_compute_dtype("auto", c, c))
        return a

    traced(h1, h2)
    assert seen == [tf.float64, tf.float64]


def test_auto_resolves_to_float32_for_mixed_precision_outputs_on_cpu():
    h1, h2 = (tf.constant(v) for v in well_conditioned_views())
    for half in (tf.bfloat16, tf.float16):
        assert resolve_compute_dtype("auto", tf.cast(h1, half), tf.cast(h2, half)) == tf.float32
    # One float32 view keeps float64: the half-precision rule needs both.
    assert resolve_compute_dtype("auto", tf.cast(h1, tf.bfloat16), h2) == tf.float64
    assert resolve_compute_dtype("float64", tf.cast(h1, tf.bfloat16), tf.cast(h2, tf.bfloat16)) == tf.float64


def test_auto_resolves_to_float32_under_a_gpu_device_scope():
    """Traced only (no GPU needed): the graph tensors carry the scope's device."""
    seen = []

    @tf.function
    def traced(a):
        with tf.device("/device:GPU:0"):
            b = a * 2.0
            seen.append(resolve_compute_dtype("auto", b, b))
            seen.append(resolve_compute_dtype("auto", tf.cast(b, tf.float64), b))  # float64 outputs stay float64
            seen.append(resolve_compute_dtype("float64", b, b))
        return a

    traced.get_concrete_function(tf.TensorSpec((8, 3), tf.float32))
    assert seen == [tf.float32, tf.float64, tf.float64]


def test_explicit_and_none_compute_dtypes_keep_their_meaning():
    h32, h64 = tf.zeros((4, 2), tf.float32), tf.zeros((4, 2), tf.float64)
    assert resolve_compute_dtype("float32", h32, h32) == tf.float32
    assert resolve_compute_dtype("float64", h32, h32) == tf.float64
    assert resolve_compute_dtype(None, h32, h32) == tf.float32
    assert resolve_compute_dtype(None, h32, h64) == tf.float64
    assert resolve_compute_dtype(None, tf.zeros((4, 2), tf.bfloat16), h32) == tf.float32


def test_bad_compute_dtype_names_the_choices():
    h = tf.zeros((4, 2))
    with pytest.raises(ValueError, match="'auto', 'float64', 'float32' or None"):
        resolve_compute_dtype("float16", h, h)
    with pytest.raises(TypeError, match="compute_dtype must be"):
        DeepCCALoss(compute_dtype="automatic")


# ------------------------------------------------------------------ float32 accuracy
def test_auto_on_cpu_equals_float64_exactly():
    h1, h2 = well_conditioned_views(seed=1)
    auto_loss, auto_gradient = loss_and_gradients(h1, h2, n_components=3)
    loss64, gradient64 = loss_and_gradients(h1, h2, n_components=3, compute_dtype="float64")
    assert auto_loss == loss64
    np.testing.assert_array_equal(auto_gradient, gradient64)


@pytest.mark.parametrize("objective, k", [("trace", 3), ("trace", None), ("squared", None)])
def test_float32_loss_and_gradient_close_to_float64_on_a_well_conditioned_batch(objective, k):
    h1, h2 = well_conditioned_views(seed=2)
    loss64, gradient64 = loss_and_gradients(h1, h2, n_components=k, objective=objective, compute_dtype="float64")
    loss32, gradient32 = loss_and_gradients(h1, h2, n_components=k, objective=objective, compute_dtype="float32")
    # A real gap between the dtypes exists (so the comparison is not vacuous) but is tiny.
    assert loss32 != loss64 or not np.array_equal(gradient32, gradient64)
    assert abs(loss32 - loss64) <= 1e-5 * abs(loss64)
    relative = np.linalg.norm(gradient32 - gradient64) / np.linalg.norm(gradient64)
    cosine = gradient32 @ gradient64 / (np.linalg.norm(gradient32) * np.linalg.norm(gradient64))
    assert relative < 1e-4 and cosine > 1 - 1e-7


def test_float32_correlations_close_to_float64():
    h1, h2 = well_conditioned_views(seed=3)
    c64 = cca_correlations(h1, h2, compute_dtype="float64").numpy()
    c32 = cca_correlations(h1, h2, compute_dtype="float32").numpy()
    np.testing.assert_allclose(c32, c64, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ the model
def test_deepcca_defaults_to_auto_and_round_trips_compute_dtype(tmp_path):
    keras.utils.set_random_seed(0)
    model = DeepCCA(
        mlp_encoder(6, 3, hidden_units=(8,), name="ex"), mlp_encoder(5, 3, hidden_units=(8,), name="ey"), n_components=2
    )
    assert model.get_config()["compute_dtype"] == "auto"
    assert model.objective_fn.compute_dtype == "auto"
    explicit = DeepCCA(
        mlp_encoder(6, 3, hidden_units=(8,), name="fx"),
        mlp_encoder(5, 3, hidden_units=(8,), name="fy"),
        n_components=2,
        compute_dtype="float32",
    )
    path = str(tmp_path / "explicit.keras")
    explicit.save(path)
    restored = keras.models.load_model(path)
    assert restored.get_config()["compute_dtype"] == "float32"
    h1, h2 = well_conditioned_views(m=32)
    np.testing.assert_allclose(restored((h1, h2))[0].numpy(), explicit((h1, h2))[0].numpy())
    assert DeepCCA.from_config(model.get_config()).get_config()["compute_dtype"] == "auto"


def test_deepcca_batch_loss_with_float32_algebra_is_close_to_float64():
    keras.utils.set_random_seed(1)
    encoder_x = mlp_encoder(6, 3, hidden_units=(8,), name="gx")
    encoder_y = mlp_encoder(5, 3, hidden_units=(8,), name="gy")
    x, y = well_conditioned_views(m=64, seed=4)
    results = {}
    for dtype in ("float64", "float32", "auto"):
        model = DeepCCA(encoder_x, encoder_y, n_components=2, compute_dtype=dtype)
        results[dtype] = float(model.batch_loss(tf.constant(x), tf.constant(y), training=False)["loss"])
    assert results["auto"] == results["float64"]
    assert abs(results["float32"] - results["float64"]) <= 1e-5 * abs(results["float64"])
