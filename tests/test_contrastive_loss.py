"""The symmetric InfoNCE (CLIP) loss in xmodal_tf.losses, against a NumPy reference."""

import keras
import numpy as np
import pytest
import scipy.special
import tensorflow as tf

from xmodal_tf.losses import ContrastiveLoss, contrastive_loss, contrastive_loss_from_logits


def reference_loss(a, b, temperature, normalize=True):
    """CLIP's loss in float64 NumPy: mean of the a->b and b->a cross-entropies."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if normalize:
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = a @ b.T / temperature
    log_p_rows = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    log_p_columns = logits - scipy.special.logsumexp(logits, axis=0, keepdims=True)
    return -0.5 * (np.mean(np.diag(log_p_rows)) + np.mean(np.diag(log_p_columns)))


def paired(n=12, d=5, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)) * scale
    b = a + 0.5 * rng.normal(size=(n, d)) * scale
    return a.astype("float32"), b.astype("float32")


@pytest.mark.parametrize("temperature,normalize", [(0.07, True), (1.0, True), (0.5, False), (0.01, True)])
def test_matches_numpy_reference(temperature, normalize):
    a, b = paired()
    value = contrastive_loss(a, b, temperature, normalize=normalize)
    assert value.dtype == tf.float32 and value.shape == ()
    np.testing.assert_allclose(value.numpy(), reference_loss(a, b, temperature, normalize), rtol=1e-5)


def test_known_values_chance_and_perfect_match():
    n = 8
    same = np.ones((n, 4), "float32")  # every item looks the same: uniform softmax
    np.testing.assert_allclose(contrastive_loss(same, same, 0.1).numpy(), np.log(n), rtol=1e-6)
    basis = np.eye(n, dtype="float32")  # orthogonal pairs at a small temperature: ~0
    value = contrastive_loss(basis, basis, 0.01).numpy()
    assert 0 <= value < 1e-6
    np.testing.assert_allclose(value, reference_loss(basis, basis, 0.01), atol=1e-9)


def test_symmetric_in_the_two_modalities():
    a, b = paired(seed=1)
    np.testing.assert_allclose(contrastive_loss(a, b).numpy(), contrastive_loss(b, a).numpy(), rtol=1e-6)
    logits = tf.constant(np.random.default_rng(2).normal(size=(6, 6)), tf.float32)
    np.testing.assert_allclose(
        contrastive_loss_from_logits(logits).numpy(),
        contrastive_loss_from_logits(tf.transpose(logits)).numpy(),
        rtol=1e-6,
    )


def test_large_logits_stay_finite_in_float32():
    # Unnormalised embeddings of size ~30 at T = 0.01: logits ~ 1e5, exp overflows float32.
    a, b = paired(n=10, d=8, seed=3, scale=10.0)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.exp(a @ b.T / np.float32(0.01))).all()
    value = contrastive_loss(a, b, 0.01, normalize=False)
    assert np.isfinite(value.numpy())
    np.testing.assert_allclose(value.numpy(), reference_loss(a, b, 0.01, normalize=False), rtol=1e-4)
    half = contrastive_loss(a.astype("float16"), b.astype("float16"), 0.07)
    assert half.dtype == tf.float32 and np.isfinite(half.numpy())


def test_gradient_with_respect_to_logits_matches_softmax_formula():
    logits = np.random.default_rng(4).normal(size=(5, 5)) * 3
    variable = tf.Variable(logits, dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = contrastive_loss_from_logits(variable)
    gradient = tape.gradient(value, variable).numpy()
    n = logits.shape[0]
    rows = scipy.special.softmax(logits, axis=1) - np.eye(n)
    columns = scipy.special.softmax(logits, axis=0) - np.eye(n)
    np.testing.assert_allclose(gradient, 0.5 * (rows + columns) / n, rtol=1e-10, atol=1e-12)


def test_learned_temperature_tensor_gets_a_gradient():
    a, b = paired(seed=5)
    temperature = tf.Variable(0.2)
    with tf.GradientTape() as tape:
        value = contrastive_loss(a, b, temperature)
    assert np.isfinite(tape.gradient(value, temperature).numpy())
    np.testing.assert_allclose(value.numpy(), reference_loss(a, b, 0.2), rtol=1e-5)


def test_callable_config_round_trip_and_temperature_override():
    a, b = paired(seed=6)
    loss_fn = ContrastiveLoss(temperature=0.2, normalize=False)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss_fn))
    assert isinstance(restored, ContrastiveLoss) and restored.get_config() == loss_fn.get_config()
    np.testing.assert_allclose(restored(a, b).numpy(), reference_loss(a, b, 0.2, normalize=False), rtol=1e-5)
    np.testing.assert_allclose(restored(a, b, temperature=0.5).numpy(), reference_loss(a, b, 0.5, False), rtol=1e-5)
    assert "temperature=0.2" in repr(loss_fn)


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda a, b: contrastive_loss(a[:5], b[:4]), ValueError, "same batch size.*5 and 4"),
        (lambda a, b: contrastive_loss(a, b[:, :3]), ValueError, "same width"),
        (lambda a, b: contrastive_loss(a.astype("int32"), b), TypeError, "float tensor.*int32"),
        (lambda a, b: contrastive_loss(a[0], b[0]), ValueError, "rank-2"),
        (lambda a, b: contrastive_loss(a[:0], b[:0]), ValueError, "empty"),
        (lambda a, b: contrastive_loss(a, b, 0.0), ValueError, "temperature must be finite and > 0"),
        (lambda a, b: contrastive_loss(a, b, "hot"), TypeError, "temperature"),
        (lambda a, b: contrastive_loss_from_logits(a @ b[:4].T), ValueError, "square"),
        (lambda a, b: ContrastiveLoss(temperature=-1.0), ValueError, "temperature"),
    ],
)
def test_bad_input_raises_clear_errors(call, error, message):
    a, b = paired()
    with pytest.raises(error, match=message):
        call(a, b)


def test_dynamic_batch_mismatch_is_caught_at_run_time():
    spec = tf.TensorSpec((None, 5), tf.float32)
    loss = tf.function(contrastive_loss, input_signature=[spec, spec])
    a, b = paired()
    np.testing.assert_allclose(loss(a, b).numpy(), reference_loss(a, b, 0.07), rtol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        loss(a[:5], b[:4])
