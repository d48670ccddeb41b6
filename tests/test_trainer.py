"""xmodal_tf.training.Trainer on every kind of model: checkpoints that resume, validation
and early stopping, callbacks, steps_per_epoch, loss scaling and clear errors. (Its
behaviour under strategies is in test_distributed.py.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from xmodal_tf.encoders import mlp_encoder
from xmodal_tf.models import (
    ConditionalGAN,
    DeepCCA,
    DualEncoder,
    MultimodalAutoencoder,
    build_dense_discriminator,
    build_dense_generator,
    build_fusion_classifier,
)
from xmodal_tf.models.base import SUPPORTED_KERAS
from xmodal_tf.training import Trainer

RNG = np.random.default_rng(0)
X = RNG.normal(size=(128, 8)).astype("float32")
Y = (X[:, :4] @ RNG.normal(size=(4, 6)) + 0.3 * RNG.normal(size=(128, 6))).astype("float32")
LABELS = (X[:, 0] > 0).astype("int32")


def autoencoder():
    keras.utils.set_random_seed(0)
    return MultimodalAutoencoder(
        {"x": mlp_encoder(8, 4, hidden_units=(), name="ex"), "y": mlp_encoder(6, 4, hidden_units=(), name="ey")},
        {"x": mlp_encoder(3, 8, hidden_units=(), name="dx"), "y": mlp_encoder(3, 6, hidden_units=(), name="dy")},
        code_dim=3,
        modality_dropout=0.5,
        seed=1,
    )


def fusion_classifier(compiled=True):
    keras.utils.set_random_seed(0)
    model = build_fusion_classifier(
        {"x": mlp_encoder(8, 4, hidden_units=(), name="ex"), "y": mlp_encoder(6, 4, hidden_units=(), name="ey")},
        num_classes=2,
    )
    if compiled:
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def pairs(batch=32):
    return tf.data.Dataset.from_tensor_slices({"x": X, "y": Y}).batch(batch)


def labelled(batch=32):
    return tf.data.Dataset.from_tensor_slices(({"x": X, "y": Y}, LABELS)).batch(batch)


def test_keras_internals_that_the_multi_worker_fit_fix_overrides_are_there():
    # MultiWorkerFitMixin overrides Keras' TensorFlow trainer for keras-team/keras#20585;
    # outside the checked range the overridden steps may have changed.
    from keras.src.backend.tensorflow import trainer as tf_trainer

    version = tuple(int(part) for part in keras.__version__.split(".")[:2])
    assert SUPPORTED_KERAS[0] <= version < SUPPORTED_KERAS[1], keras.__version__
    assert hasattr(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build")
    assert hasattr(tf_trainer.TensorFlowTrainer, "_symbolic_build")
    assert callable(tf_trainer.reduce_per_replica)


def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    # The autoencoder draws modality masks from a seed generator: its state is part of
    # the checkpoint, so the resumed third epoch is the uninterrupted one's.
    uninterrupted = Trainer(autoencoder(), keras.optimizers.Adam(1e-2), progress=False)
    uninterrupted.fit(pairs(), epochs=3)

    first = Trainer(autoencoder(), keras.optimizers.Adam(1e-2), checkpoint_dir=tmp_path, progress=False)
    first.fit(pairs(), epochs=2)
    resumed = Trainer(autoencoder(), keras.optimizers.Adam(1e-2), checkpoint_dir=tmp_path, progress=False)
    assert resumed.restored_from.endswith("epoch-2") and resumed.epoch == 2 and resumed.iterations == 8
    history = resumed.fit(pairs(), epochs=3)
    assert history["epoch"] == [2]
    for a, b in zip(uninterrupted.model.weights, resumed.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_a_checkpoint_holds_every_weight_of_a_model_with_sub_models_in_dicts(tmp_path):
    # The mae experiment's autoencoder keeps its encoders and decoders in dicts, which
    # Keras 3 leaves out of the model's object graph: a checkpoint of the model itself
    # held only its code layer, and a resumed run retrained from fresh weights.
    from xmodal_tf.experiments import mae

    settings = mae.settings_for(dict(mae.DEFAULTS, code_dim=4, embedding_dim=4, filters=[4], decoder_hidden_units=[8]))
    shapes = {"left": (8, 4, 1), "right": (8, 4, 1)}
    inputs = {name: RNG.uniform(size=(64, *shape)).astype("float32") for name, shape in shapes.items()}
    trained = mae.build_model(shapes, settings, 0.5, seed=0)
    trainer = Trainer(trained, keras.optimizers.Adam(1e-2), checkpoint_dir=tmp_path, progress=False)
    trainer.fit(tf.data.Dataset.from_tensor_slices(inputs).batch(32), epochs=2)
    restored = mae.build_model(shapes, settings, 0.5, seed=1)  # other initial weights
    Trainer(restored, keras.optimizers.Adam(1e-2), checkpoint_dir=tmp_path, progress=False)
    assert len(restored.weights) == len(trained.weights) > 10
    for a, b in zip(trained.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_checkpoint_seconds_spaces_the_saves_and_the_end_of_fit_always_saves(tmp_path):
    trainer = Trainer(
        autoencoder(), keras.optimizers.Adam(1e-2), checkpoint_dir=tmp_path, checkpoint_seconds=1e9, progress=False
    )
    trainer.fit(pairs(), epochs=3)
    assert sorted(path.name for path in tmp_path.glob("epoch-*.index")) == ["epoch-3.index"]
    every = Trainer(autoencoder(), keras.optimizers.Adam(1e-2), checkpoint_dir=tmp_path / "every", progress=False)
    every.fit(pairs(), epochs=3)
    assert len(list((tmp_path / "every").glob("epoch-*.index"))) == 3
    with pytest.raises(ValueError, match="checkpoint_seconds must be a number >= 0"):
        Trainer(autoencoder(), keras.optimizers.Adam(1e-2), checkpoint_seconds=-1)


def test_gan_with_two_optimizers_checkpoints_both(tmp_path):
    images = RNG.uniform(size=(64, 4, 4, 1)).astype("float32")
    labels = RNG.integers(0, 3, size=64).astype("int32")

    def gan():
        keras.utils.set_random_seed(0)
        return ConditionalGAN(
            build_dense_generator((4, 4, 1), 4, num_classes=3, hidden_units=(8,)),
            build_dense_discriminator((4, 4, 1), num_classes=3, hidden_units=(8,)),
            num_classes=3,
            seed=0,
        )

    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    trainer = Trainer(
        gan(), (keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3)), checkpoint_dir=tmp_path, progress=False
    )
    history = trainer.fit(data, epochs=2)
    assert set(history) >= {"d_loss", "g_loss", "real_score", "fake_score", "r1_penalty"}
    assert trainer.model.g_optimizer.iterations.numpy() == trainer.model.d_optimizer.iterations.numpy() == 8
    restored = Trainer(
        gan(),
        {"g_optimizer": keras.optimizers.Adam(1e-3), "d_optimizer": keras.optimizers.Adam(1e-3)},
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert restored.epoch == 2 and restored.model.d_optimizer.iterations.numpy() == 8
    for a, b in zip(trainer.model.weights, restored.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match=r"optimizer=\(g_optimizer, d_optimizer\)"):
        Trainer(gan(), keras.optimizers.Adam())


def test_compiled_keras_model_validation_early_stopping_and_tensorboard(tmp_path):
    model = fusion_classifier()
    trainer = Trainer(model, None, logdir=tmp_path, early_stopping_patience=1, monitor="val_loss", progress=False)
    # Held-out labels that are the opposite of the training rule: the better the fit, the
    # worse the held-out loss, so training stops early.
    validation = tf.data.Dataset.from_tensor_slices(({"x": X[:32], "y": Y[:32]}, 1 - LABELS[:32])).batch(32)
    history = trainer.fit(labelled(), epochs=30, validation_data=validation)
    losses = history["val_loss"]
    assert len(losses) < 30 and len(history["val_accuracy"]) == len(losses)
    best = int(np.argmin(losses))
    assert len(losses) == best + 2
    restored = model.evaluate(validation, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(restored, losses[best], rtol=1e-5)
    accumulator = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert len(accumulator.Tensors("validation/loss")) == len(losses)
    assert len(accumulator.Tensors("validation/accuracy")) == len(losses)
    assert [event.step for event in accumulator.Tensors("train/loss")] == list(range(1, len(losses) + 1))


def test_steps_per_epoch_runs_one_iterator_on_and_callbacks_see_every_epoch():
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs)))

    model = autoencoder()
    trainer = Trainer(model, keras.optimizers.Adam(1e-2), progress=False)
    history = trainer.fit(pairs().repeat(), epochs=3, steps_per_epoch=5, callbacks=[Record()])
    assert history["steps"] == [5, 5, 5] and trainer.iterations == 15
    assert [epoch for epoch, _ in seen] == [0, 1, 2] and "reconstruction_x" in seen[0][1]
    with pytest.raises(ValueError, match="ran out of batches.*repeat"):
        Trainer(autoencoder(), keras.optimizers.Adam(1e-2), progress=False).fit(pairs(), epochs=1, steps_per_epoch=9)


def test_loss_scale_optimizer_sees_non_finite_steps_and_lowers_its_scale():
    # DeepCCA skips non-finite steps itself; with a LossScaleOptimizer the step must reach
    # the optimizer, which skips it AND lowers its scale (else the scale would freeze).
    keras.utils.set_random_seed(0)
    model = DeepCCA(mlp_encoder(8, 3, hidden_units=(), name="ex"), mlp_encoder(6, 3, hidden_units=(), name="ey"))
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=2.0**10)
    trainer = Trainer(model, optimizer, progress=False)
    bad = X.copy()
    bad[:32] = np.nan  # the first of four batches
    before = [w.numpy() for w in model.trainable_weights]
    history = trainer.fit(tf.data.Dataset.from_tensor_slices((bad[:32], Y[:32])).batch(32), epochs=1)
    assert history["skipped_batches"] == [1.0]
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**9
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(before, model.trainable_weights))
    trainer.fit(tf.data.Dataset.from_tensor_slices((X, Y)).batch(32), epochs=2)
    assert not all(np.array_equal(a, b.numpy()) for a, b in zip(before, model.trainable_weights))


def test_clear_errors():
    with pytest.raises(ValueError, match="not compiled: pass optimizer="):
        Trainer(autoencoder(), None)
    with pytest.raises(ValueError, match="compile it with its loss first"):
        Trainer(fusion_classifier(compiled=False), keras.optimizers.Adam())
    with pytest.raises(TypeError, match="keras.Model"):
        Trainer("model", "adam")
    with pytest.raises(ValueError, match="monitor must be"):
        Trainer(autoencoder(), "adam", monitor=("val_loss", "lowest"))
    trainer = Trainer(autoencoder(), "adam", early_stopping_patience=1, monitor="val_nothing", progress=False)
    with pytest.raises(ValueError, match="monitor 'val_nothing' is not among the held-out logs"):
        trainer.fit(pairs(), epochs=2, validation_data=pairs())
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        trainer.fit((X, Y), epochs=1)
    with pytest.raises(TypeError, match="validation_data must be a tf.data.Dataset"):
        Trainer(autoencoder(), "adam", progress=False).fit(pairs(), 1, validation_data=(X, Y))


def test_held_out_logs_are_the_mean_of_the_batch_losses():
    """A model without its own held-out measure: the mean of its test-step losses."""
    model = autoencoder()
    data = pairs()
    trainer = Trainer(model, "adam", progress=False)
    logs = trainer.evaluate(data)
    per_batch = [model.batch_loss(*model.unpack_batch(batch, "test_step"))["loss"].numpy() for batch in data]
    np.testing.assert_allclose(logs["val_loss"], np.mean(per_batch), rtol=1e-6)


def test_a_dual_encoder_validates_on_held_out_retrieval():
    keras.utils.set_random_seed(0)
    model = DualEncoder(mlp_encoder(8, 4, hidden_units=(), name="ea"), mlp_encoder(6, 4, hidden_units=(), name="eb"))
    trainer = Trainer(model, "adam", progress=False)
    logs = trainer.evaluate((X, Y))
    assert trainer.monitor == "val_mean_recall"
    assert logs == model.held_out_logs((X, Y)) and 0.0 <= logs["val_mean_recall"] <= 1.0


def test_early_stopping_min_delta_ignores_small_gains():
    """A validation set equal to the training data: the loss keeps falling, by less and
    less. With min_delta, gains below it count as none; the best weights are the last
    epoch that improved by at least min_delta."""
    validation = labelled()
    histories = {}
    for min_delta in (0.0, 0.05):
        trainer = Trainer(
            fusion_classifier(),
            None,
            early_stopping_patience=2,
            early_stopping_min_delta=min_delta,
            monitor="val_loss",
            progress=False,
        )
        histories[min_delta] = trainer.fit(labelled(), epochs=25, validation_data=validation)["val_loss"]
    assert len(histories[0.05]) < len(histories[0.0])
    losses = histories[0.05]
    best, kept = losses[0], [0]
    for epoch, loss in enumerate(losses[1:], start=1):
        if loss < best - 0.05:
            best, kept = loss, kept + [epoch]
    assert len(losses) == kept[-1] + 3  # stopped 2 evaluations after the last real gain
    with pytest.raises(ValueError, match="early_stopping_min_delta must be a finite number >= 0"):
        Trainer(fusion_classifier(), None, early_stopping_patience=2, early_stopping_min_delta=-1.0)
