"""DeepCCATrainer: the explicit tf.function loop, checkpoints, TensorBoard, early stopping, strategies."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from xmodal_tf.encoders import mlp_encoder
from xmodal_tf.models import DeepCCA
from xmodal_tf.training import DeepCCATrainer


def planted_views(n=500, seed=0):
    """Two 20-dim views sharing a 2-dim latent through a nonlinear mixing."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, 2))
    views = []
    for _ in range(2):
        mixing = rng.normal(size=(20, 20)) / np.sqrt(20)
        views.append(np.tanh(np.concatenate([shared, rng.normal(size=(n, 18))], axis=1) @ mixing).astype("float32"))
    return views


@pytest.fixture(scope="module")
def data():
    x, y = planted_views()
    return {
        "train": tf.data.Dataset.from_tensor_slices((x[:400], y[:400])).batch(100),
        "validation": tf.data.Dataset.from_tensor_slices((x[400:], y[400:])).batch(50),
        "arrays": (x, y),
    }


def build_model(seed=0):
    keras.utils.set_random_seed(seed)
    return DeepCCA(
        mlp_encoder(20, 4, hidden_units=(16,), name="encoder_x"),
        mlp_encoder(20, 4, hidden_units=(16,), name="encoder_y"),
        n_components=2,
    )


def test_fit_trains_with_one_trace(data):
    trainer = DeepCCATrainer(build_model(), keras.optimizers.Adam(1e-2), progress=False)
    history = trainer.fit(data["train"], epochs=6, validation_data=data["validation"])
    assert history["epoch"] == list(range(6))
    assert history["steps"] == [4] * 6 and trainer.iterations == 24 and trainer.epoch == 6
    assert trainer._train_epoch.experimental_get_tracing_count() == 1  # not once per epoch
    assert history["val_total_correlation"][-1] > history["val_total_correlation"][0] + 0.1
    assert history["total_correlation"][-1] > history["total_correlation"][0]
    np.testing.assert_allclose(history["loss"], -np.asarray(history["total_correlation"]), rtol=1e-6)
    assert history["skipped_batches"] == [0.0] * 6
    assert len(history["val_correlations"][0]) == 2
    np.testing.assert_allclose(np.sum(history["val_correlations"][-1]), history["val_total_correlation"][-1])
    # The held-out value is the objective on the whole validation set at once.
    x, y = data["arrays"]
    expected = trainer.model.batch_loss(x[400:], y[400:])["total_correlation"].numpy()
    np.testing.assert_allclose(history["val_total_correlation"][-1], expected, rtol=1e-5)


def test_pair_of_encoders_eval_every_and_progress(data, capsys):
    keras.utils.set_random_seed(0)
    encoders = (mlp_encoder(20, 3, hidden_units=(), name="ex"), mlp_encoder(20, 3, hidden_units=(), name="ey"))
    trainer = DeepCCATrainer(encoders, "sgd", eval_every=2)
    x, y = data["arrays"]
    history = trainer.fit(data["train"], epochs=3, validation_data=(x[400:], y[400:]))
    assert isinstance(trainer.model, DeepCCA) and trainer.model.k == 3
    evaluated = [not np.isnan(value) for value in history["val_total_correlation"]]
    assert evaluated == [False, True, True]  # epoch 2, and the last one
    assert history["val_correlations"][0] is None
    output = capsys.readouterr().out
    assert "Epoch 1/3" in output and "Epoch 3/3" in output and "val_total_correlation" in output


def test_checkpoint_resume_continues_from_the_saved_step(data, tmp_path):
    first = DeepCCATrainer(build_model(seed=0), keras.optimizers.Adam(1e-2), checkpoint_dir=tmp_path, progress=False)
    assert first.restored_from is None
    first.fit(data["train"], epochs=2)
    saved = [w.numpy() for w in first.model.weights]
    saved_slots = [v.numpy() for v in first.optimizer.variables]
    assert first.iterations == 8

    # A new model (other initial weights) and a new optimizer resume the saved state.
    second = DeepCCATrainer(build_model(seed=1), keras.optimizers.Adam(1e-2), checkpoint_dir=tmp_path, progress=False)
    assert second.restored_from.endswith("epoch-2")
    assert second.epoch == 2 and second.iterations == 8
    for a, b in zip(saved, second.model.weights):
        np.testing.assert_array_equal(a, b.numpy())
    for a, b in zip(saved_slots, second.optimizer.variables):
        np.testing.assert_array_equal(a, b.numpy())
    history = second.fit(data["train"], epochs=3)
    assert history["epoch"] == [2] and second.epoch == 3 and second.iterations == 12
    # The continued run is the uninterrupted run's third epoch.
    first.fit(data["train"], epochs=3)
    for a, b in zip(first.model.weights, second.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("epoch-3")


def test_tensorboard_scalars(data, tmp_path):
    trainer = DeepCCATrainer(build_model(), keras.optimizers.Adam(1e-2), logdir=tmp_path, progress=False)
    history = trainer.fit(data["train"], epochs=2, validation_data=data["validation"])

    def scalars(split, tag):
        accumulator = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
        accumulator.Reload()
        events = accumulator.Tensors(tag if split.endswith("_details") else f"{split}/{tag}")
        return [event.step for event in events], [float(tf.make_ndarray(event.tensor_proto)) for event in events]

    for tag in ("loss", "total_correlation", "skipped_batches"):
        steps, values = scalars("train", tag)
        assert steps == [1, 2]
        np.testing.assert_allclose(values, history[tag], rtol=1e-6)
    steps, values = scalars("validation", "total_correlation")
    assert steps == [1, 2]
    np.testing.assert_allclose(values, history["val_total_correlation"], rtol=1e-6)
    _, top = scalars("validation_details", "validation_details/correlations_01")
    np.testing.assert_allclose(top, [c[0] for c in history["val_correlations"]], rtol=1e-6)


def test_early_stopping_stops_and_restores_the_best_weights(data):
    x, y = data["arrays"]
    rng = np.random.default_rng(1)
    # Held-out views that share nothing: their correlation only fluctuates, so it stops.
    noise = (rng.normal(size=(60, 20)).astype("float32"), rng.normal(size=(60, 20)).astype("float32"))
    trainer = DeepCCATrainer(build_model(), keras.optimizers.Adam(5e-2), early_stopping_patience=2, progress=False)
    history = trainer.fit(data["train"], epochs=40, validation_data=noise)
    values = history["val_total_correlation"]
    assert len(values) < 40
    best = int(np.argmax(values))
    assert len(values) == best + 3  # two evaluations without improvement after the best
    restored = trainer.model.held_out_correlations(*noise).sum()
    np.testing.assert_allclose(restored, values[best], rtol=1e-6)
    assert restored > values[-1]


def test_nan_batch_is_skipped_and_counted(data):
    x, y = data["arrays"]
    x = x[:300].copy()
    x[120, 0] = np.nan
    trainer = DeepCCATrainer(build_model(), keras.optimizers.Adam(1e-2), progress=False)
    history = trainer.fit(tf.data.Dataset.from_tensor_slices((x, y[:300])).batch(100), epochs=2)
    assert history["skipped_batches"] == [1.0, 1.0]
    assert trainer.iterations == 4 and np.all(np.isfinite(history["loss"]))
    assert all(np.all(np.isfinite(w.numpy())) for w in trainer.model.weights)


def test_bad_arguments(data):
    model = build_model()
    with pytest.raises(TypeError, match="DeepCCA"):
        DeepCCATrainer(model.encoder_x, "sgd")
    trainer = DeepCCATrainer(model, "sgd", progress=False)
    with pytest.raises(ValueError, match="validation_data"):
        DeepCCATrainer(model, "sgd", early_stopping_patience=2).fit(data["train"], 1)
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        trainer.fit(data["arrays"], 1)
    with pytest.raises(ValueError, match="eval_every"):
        DeepCCATrainer(model, "sgd", eval_every=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with pytest.raises(ValueError, match="strategy.scope"):
        DeepCCATrainer(model, "sgd", strategy=strategy)
    with strategy.scope():
        inside = build_model()
    with pytest.raises(ValueError, match="strategy.scope"):
        DeepCCATrainer(inside, keras.optimizers.SGD(), strategy=strategy)


def test_batches_at_or_below_n_components_are_refused():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.normal(size=(64, 5)).astype("float32")
    model = DeepCCA(mlp_encoder(6, 4, hidden_units=(), name="ex"), mlp_encoder(5, 4, hidden_units=(), name="ey"))
    model((x[:8], y[:8]))
    trainer = DeepCCATrainer(model, "adam", progress=False)
    small = tf.data.Dataset.from_tensor_slices((x, y)).batch(4, drop_remainder=True)
    with pytest.raises(ValueError, match=r"batches of 4 rows are at or below n_components=4.*batch_size=100"):
        trainer.fit(small, epochs=1)
    assert trainer.epoch == 0
    history = trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True), epochs=1)
    assert history["steps"] == [4]
