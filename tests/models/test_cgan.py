"""ConditionalGAN (keras.Model): training with fit, generate, save/load with both optimizers,
distribution, learning a toy conditional distribution, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip, assert_keras_round_trip, assert_same_optimizer_state, assert_same_weights

from xmodal_tf.models.cgan import (
    ConditionalGAN,
    build_dense_discriminator,
    build_dense_generator,
    build_discriminator,
    build_generator,
    discriminator_loss,
    generator_loss,
)

IMAGE_SHAPE = (8, 8, 1)


def adam():
    return keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9)


def build_gan(seed=0, num_classes=3, condition_dim=None, classifier_head=False, **kwargs):
    """A tiny ConditionalGAN on IMAGE_SHAPE (also used by test_cgan_recipe.py)."""
    keras.utils.set_random_seed(seed)
    kind = {"num_classes": num_classes} if condition_dim is None else {"condition_dim": condition_dim}
    generator = build_generator(IMAGE_SHAPE, 8, base_filters=4, **kind)
    discriminator = build_discriminator(IMAGE_SHAPE, base_filters=4, classifier_head=classifier_head, **kind)
    return ConditionalGAN(generator, discriminator, seed=seed, **kind, **kwargs)


@pytest.fixture(scope="module")
def toy_images():
    """32 8x8 images in [0, 1] whose brightness depends on the class (3 classes)."""
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 3
    images = np.clip(rng.uniform(0, 0.3, size=(32, *IMAGE_SHAPE)) + labels[:, None, None, None] * 0.3, 0, 1)
    return images.astype("float32"), labels.astype("int64")


# ----------------------------------------------------------------------------- losses
def test_gan_losses_match_their_formulas():
    real, fake = tf.constant([2.0, -0.5]), tf.constant([0.3, -3.0])
    np.testing.assert_allclose(discriminator_loss(real, fake, "hinge"), [0.0 + 1.3, 1.5 + 0.0], rtol=1e-6)
    np.testing.assert_allclose(generator_loss(fake, "hinge"), [-0.3, 3.0], rtol=1e-6)
    cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)

    def bce(target, logits):
        return cross_entropy(np.full((2, 1), target, "float32"), logits[:, None])

    np.testing.assert_allclose(
        discriminator_loss(real, fake, "non_saturating"), bce(1.0, real) + bce(0.0, fake), rtol=1e-5
    )
    np.testing.assert_allclose(
        discriminator_loss(real, fake, "non_saturating", 0.1), bce(0.9, real) + bce(0.0, fake), rtol=1e-5
    )
    np.testing.assert_allclose(generator_loss(fake, "non_saturating"), bce(1.0, fake), rtol=1e-5)
    np.testing.assert_allclose(
        discriminator_loss(real, fake, "least_squares"), 0.5 * ((real - 1) ** 2 + fake**2), rtol=1e-6
    )
    with pytest.raises(ValueError, match="Unknown GAN loss 'wgan'"):
        generator_loss(fake, "wgan")


# ----------------------------------------------------------------------------- training
def test_fit_evaluate_predict_and_finite_logs(toy_images):
    images, labels = toy_images
    gan = build_gan()
    gan.compile(g_optimizer=adam(), d_optimizer=adam())
    generator_before = [w.numpy() for w in gan.generator.trainable_weights]
    discriminator_before = [w.numpy() for w in gan.discriminator.trainable_weights]
    history = gan.fit(images, labels, batch_size=16, epochs=3, verbose=0).history
    assert set(history) == {"d_loss", "g_loss", "real_score", "fake_score", "r1_penalty"}  # default R1
    assert all(np.isfinite(values).all() for values in history.values())
    # One optimizer per network, each stepped once per batch; both networks learn.
    assert gan.g_optimizer.iterations.numpy() == gan.d_optimizer.iterations.numpy() == 6
    assert gan.optimizer is None
    for before, variable in zip(
        generator_before + discriminator_before, gan.generator.trainable_weights + gan.discriminator.trainable_weights
    ):
        if "kernel" in variable.path or "embeddings" in variable.path:
            assert not np.array_equal(before, variable.numpy()), variable.path
    assert min(history["d_loss"]) >= 0 and min(history["r1_penalty"]) > 0
    logs = gan.evaluate(tf.data.Dataset.from_tensor_slices((images, labels)).batch(16), verbose=0, return_dict=True)
    assert set(logs) == {"d_loss", "g_loss", "real_score", "fake_score"}
    assert np.isfinite(list(logs.values())).all()
    assert gan.g_optimizer.iterations.numpy() == 6  # evaluate does not train
    predicted = gan.predict(labels[:10], verbose=0)
    assert predicted.shape == (10, *IMAGE_SHAPE)
    assert predicted.min() >= 0 and predicted.max() <= 1


def test_vector_conditions_and_a_dataset_of_dicts(toy_images):
    images, labels = toy_images
    vectors = np.eye(3, dtype="float32")[labels] + 0.1
    gan = build_gan(condition_dim=3)
    gan.compile(g_optimizer=adam(), d_optimizer=adam(), loss="non_saturating", label_smoothing=0.1)
    dataset = tf.data.Dataset.from_tensor_slices({"images": images, "conditions": vectors}).batch(16)
    history = gan.fit(dataset, epochs=2, verbose=0).history
    assert np.isfinite(history["d_loss"]).all() and np.isfinite(history["g_loss"]).all()
    samples = gan.generate(vectors[:4], n=2, seed=0)
    assert samples.shape == (8, *IMAGE_SHAPE)


def test_r1_penalty_is_logged_and_raises_the_discriminator_loss(toy_images):
    images, labels = toy_images
    logs = {}
    for r1_weight in (0.0, 10.0):
        gan = build_gan()
        gan.compile(
            g_optimizer=keras.optimizers.SGD(0.0),
            d_optimizer=keras.optimizers.SGD(0.0),
            loss="least_squares",
            r1_weight=r1_weight,
            run_eagerly=True,
        )  # eager: no tracing
        logs[r1_weight] = gan.fit(images, labels, batch_size=32, shuffle=False, verbose=0).history
    assert "r1_penalty" not in logs[0.0]
    penalty = logs[10.0]["r1_penalty"][0]
    assert penalty > 0
    # With frozen weights (lr 0) and the same seed, the only difference is the penalty term.
    np.testing.assert_allclose(logs[10.0]["d_loss"][0], logs[0.0]["d_loss"][0] + 5.0 * penalty, rtol=1e-4)


def test_dense_baseline_builders_train(toy_images):
    images, labels = toy_images
    keras.utils.set_random_seed(0)
    gan = ConditionalGAN(
        build_dense_generator(IMAGE_SHAPE, 8, num_classes=3, hidden_units=(16,)),
        build_dense_discriminator(IMAGE_SHAPE, num_classes=3, hidden_units=(16,)),
        num_classes=3,
        seed=0,
    )
    gan.compile(g_optimizer="adam", d_optimizer="adam", loss="non_saturating")
    history = gan.fit(images, labels, batch_size=16, epochs=2, verbose=0).history
    assert np.isfinite(history["d_loss"]).all()
    assert gan.generate([2], n=3).shape == (3, *IMAGE_SHAPE)


@pytest.mark.parametrize("image_shape", [(8, 8, 1), (28, 28, 1), (12, 6, 3)])
def test_builders_produce_the_requested_image_shape(image_shape):
    generator = build_generator(image_shape, 4, num_classes=2, base_filters=2)
    discriminator = build_discriminator(image_shape, num_classes=2, base_filters=2)
    gan = ConditionalGAN(generator, discriminator, num_classes=2)
    assert gan.image_shape == image_shape and gan.latent_dim == 4
    assert gan.generate([0, 1], seed=0).shape == (2, *image_shape)


# ----------------------------------------------------------------------------- generation
def test_generate_groups_rows_by_condition_and_is_reproducible():
    gan = build_gan()
    samples = gan.generate([2, 0], n=3, seed=7)
    assert samples.shape == (6, *IMAGE_SHAPE) and samples.dtype == np.float32
    # Rows i*n .. (i+1)*n - 1 are images of conditions[i], from the seed's z.
    z = gan.sample_latent(6, seed=7)
    expected = gan((z, np.array([2, 2, 2, 0, 0, 0])), training=False).numpy()
    np.testing.assert_allclose(samples, expected, atol=1e-6)
    np.testing.assert_array_equal(samples, gan.generate([2, 0], n=3, seed=7))
    assert not np.allclose(samples[:3], samples[3:])  # the condition changes the images
    # seed=None continues the model's noise stream: new images each call, the same
    # sequence for two models built with the same seed.
    twin = build_gan()
    first, second = gan.generate([1, 1]), gan.generate([1, 1])
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(first, twin.generate([1, 1]))
    np.testing.assert_array_equal(second, twin.generate([1, 1]))
    assert gan.generate(np.array([[1], [2]]), n=2, seed=0).shape == (4, *IMAGE_SHAPE)
    assert gan.generate(2, n=5, seed=0).shape == (5, *IMAGE_SHAPE)


def test_generator_average_follows_its_formula_and_draws_the_samples(toy_images):
    images, labels = toy_images
    gan = build_gan(ema_decay=0.9)
    gan.compile(g_optimizer=adam(), d_optimizer=adam(), run_eagerly=True)
    before = [w.numpy() for w in gan.generator_ema.weights]
    np.testing.assert_array_equal(before[0], gan.generator.weights[0].numpy())  # starts as a copy
    gan.fit(images[:16], labels[:16], batch_size=16, verbose=0)
    decay = min(0.9, (1 + 1) / (10 + 1))  # generator step t = 1
    for average, old, weight in zip(gan.generator_ema.weights, before, gan.generator.weights):
        np.testing.assert_allclose(average.numpy(), decay * old + (1 - decay) * weight.numpy(), rtol=1e-5, atol=1e-7)
    assert gan.sampling_generator is gan.generator_ema
    z = gan.sample_latent(4, seed=0)
    expected = gan.generator_ema([z, tf.constant(labels[:4], tf.int32)], training=False).numpy()
    np.testing.assert_allclose(gan.generate(labels[:4], seed=0), expected, atol=1e-6)
    assert not np.allclose(expected, gan.generator([z, tf.constant(labels[:4], tf.int32)], training=False).numpy())
    with pytest.raises(ValueError, match=r"ema_decay must be None or a float in \(0, 1\)"):
        build_gan(ema_decay=1.0)


# ----------------------------------------------------------------------------- saving
def test_keras_round_trip_restores_outputs_optimizers_and_continues_training(toy_images, tmp_path):
    images, labels = toy_images
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    gan = build_gan(ema_decay=0.99)
    # Eager steps: no tracing (the graph-mode steps are covered by the other tests).
    gan.compile(
        g_optimizer=adam(), d_optimizer=keras.optimizers.Adam(4e-4, beta_1=0.5), loss="least_squares", run_eagerly=True
    )
    gan.fit(dataset, epochs=2, verbose=0)
    z = gan.sample_latent(5, seed=3)
    loaded = assert_keras_round_trip(
        gan, tmp_path, inputs=(z, labels[:5]), outputs=lambda m: m.generate([0, 1, 2], seed=1)
    )
    assert loaded.get_config()["num_classes"] == 3 and loaded.image_shape == IMAGE_SHAPE
    # Both optimizers come back with their own settings and state.
    assert loaded.gan_loss == "least_squares" and loaded.run_eagerly and loaded.ema_decay == 0.99
    assert_same_weights(loaded.generator_ema.weights, gan.generator_ema.weights)
    assert float(loaded.d_optimizer.learning_rate.numpy()) == pytest.approx(4e-4)
    assert float(loaded.d_optimizer.beta_1) == 0.5
    for original, restored in ((gan.g_optimizer, loaded.g_optimizer), (gan.d_optimizer, loaded.d_optimizer)):
        assert restored.iterations.numpy() == 4
        assert_same_optimizer_state(restored, original)
    # One more step on each gives identical networks: the noise stream and the Adam
    # moments were restored (fresh optimizers would take a different first step).
    one_batch = dataset.take(1)
    for model in (gan, loaded):
        model.fit(one_batch, verbose=0)
    assert_same_weights(loaded.weights, gan.weights)
    assert loaded.g_optimizer.iterations.numpy() == 5


def test_from_config_and_subclassed_generator_with_explicit_latent_dim():
    gan = build_gan(condition_dim=5)
    clone = assert_config_round_trip(gan)
    assert clone.condition_dim == 5 and clone.num_classes is None

    class TinyGenerator(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(64, activation="sigmoid")
            self.reshape = keras.layers.Reshape(IMAGE_SHAPE)

        def call(self, inputs):
            z, conditions = inputs
            return self.reshape(self.dense(tf.concat([z, conditions], axis=-1)))

    with pytest.raises(ValueError, match="latent_dim is required"):
        ConditionalGAN(TinyGenerator(), build_discriminator(IMAGE_SHAPE, condition_dim=5), condition_dim=5)
    gan = ConditionalGAN(
        TinyGenerator(), build_discriminator(IMAGE_SHAPE, condition_dim=5), condition_dim=5, latent_dim=6
    )
    assert gan.image_shape == IMAGE_SHAPE
    assert gan.generate(np.ones((2, 5), "float32"), n=2).shape == (4, *IMAGE_SHAPE)


# ----------------------------------------------------------------------------- learning
MODES = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]], dtype="float32")


def test_tiny_gan_learns_a_conditional_mixture():
    """Class k of a 2-D mixture sits at MODES[k]; generated points of class k must land there."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=2048)
    points = (MODES[labels] + 0.1 * rng.normal(size=(2048, 2))).astype("float32")
    keras.utils.set_random_seed(0)
    z, c = keras.Input((4,)), keras.Input((), dtype="int32")
    h = keras.layers.Concatenate()([z, keras.layers.Embedding(3, 8)(c)])
    h = keras.layers.Dense(32, activation="relu")(keras.layers.Dense(32, activation="relu")(h))
    generator = keras.Model([z, c], keras.layers.Dense(2)(h))
    x, c = keras.Input((2,)), keras.Input((), dtype="int32")
    h = keras.layers.Concatenate()([x, keras.layers.CategoryEncoding(3, output_mode="one_hot")(c)])
    h = keras.layers.Dense(32, activation="relu")(keras.layers.Dense(32, activation="relu")(h))
    discriminator = keras.Model([x, c], keras.layers.Dense(1)(h))
    gan = ConditionalGAN(generator, discriminator, num_classes=3, seed=0)
    assert gan.image_shape == (2,)
    gan.compile(
        g_optimizer=keras.optimizers.Adam(2e-3, beta_1=0.5),
        d_optimizer=keras.optimizers.Adam(2e-3, beta_1=0.5),
        loss="non_saturating",
    )
    gan.fit(points, labels, batch_size=64, epochs=6, verbose=0)
    samples = gan.generate([0, 1, 2], n=200, seed=0).reshape(3, 200, 2)
    for k in range(3):
        distances = np.linalg.norm(samples[k][:, None, :] - MODES[None], axis=-1)
        nearest = distances.argmin(axis=1)
        assert (nearest == k).mean() > 0.95, f"class {k}: nearest modes {np.bincount(nearest, minlength=3)}"
        assert np.median(distances[:, k]) < 0.5


# ----------------------------------------------------------------------------- distribution
# ----------------------------------------------------------------------------- bad input
def test_constructor_errors():
    generator = build_generator(IMAGE_SHAPE, 8, num_classes=3, base_filters=4)
    discriminator = build_discriminator(IMAGE_SHAPE, num_classes=3, base_filters=4)
    with pytest.raises(ValueError, match="exactly one of num_classes"):
        ConditionalGAN(generator, discriminator)
    with pytest.raises(ValueError, match="exactly one of num_classes"):
        ConditionalGAN(generator, discriminator, num_classes=3, condition_dim=4)
    with pytest.raises(ValueError, match="latent_dim=5 but the generator's z input has 8"):
        ConditionalGAN(generator, discriminator, num_classes=3, latent_dim=5)
    with pytest.raises(ValueError, match="build the GAN with condition_dim=4"):
        ConditionalGAN(build_generator(IMAGE_SHAPE, 8, condition_dim=4), discriminator, num_classes=3)
    with pytest.raises(ValueError, match=r"condition_dim=3 but the generator's condition input has shape \(batch, 4\)"):
        ConditionalGAN(
            build_generator(IMAGE_SHAPE, 8, condition_dim=4),
            build_discriminator(IMAGE_SHAPE, condition_dim=3),
            condition_dim=3,
        )
    with pytest.raises(ValueError, match=r"outputs images of shape \(8, 8, 1\) but the discriminator expects"):
        ConditionalGAN(generator, build_discriminator((28, 28, 1), num_classes=3), num_classes=3)
    with pytest.raises(TypeError, match="discriminator must be a keras.Model"):
        ConditionalGAN(generator, "discriminator", num_classes=3)
    with pytest.raises(ValueError, match="image_shape must be"):
        build_generator((28, 28), 8, num_classes=3)


def test_compile_errors(toy_images):
    gan = build_gan()
    with pytest.raises(ValueError, match="needs d_optimizer"):
        gan.compile(g_optimizer="adam")
    with pytest.raises(ValueError, match="needs g_optimizer and d_optimizer"):
        gan.compile()
    with pytest.raises(ValueError, match="pass g_optimizer= and d_optimizer="):
        gan.compile(optimizer="adam")
    shared = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="two different optimizer instances"):
        gan.compile(g_optimizer=shared, d_optimizer=shared)
    with pytest.raises(ValueError, match="Unknown GAN loss"):
        gan.compile(g_optimizer="adam", d_optimizer="adam", loss="bce")
    with pytest.raises(ValueError, match="label_smoothing applies to loss='non_saturating'"):
        gan.compile(g_optimizer="adam", d_optimizer="adam", loss="hinge", label_smoothing=0.1)
    with pytest.raises(ValueError, match="r1_weight must be a float >= 0"):
        gan.compile(g_optimizer="adam", d_optimizer="adam", r1_weight=-1)
    with pytest.raises(RuntimeError, match="call compile"):
        gan.fit(*toy_images, verbose=0)


def test_bad_images_and_conditions(toy_images):
    images, labels = toy_images
    gan = build_gan()
    gan.compile(g_optimizer=adam(), d_optimizer=adam())
    with pytest.raises(ValueError, match=r"class label 3 is out of range; labels must be in \[0, 3\)"):
        gan.fit(images, np.full(32, 3), verbose=0)
    with pytest.raises(ValueError, match="class label -1 is out of range"):
        gan.generate([0, -1])
    with pytest.raises(TypeError, match="integer class labels"):
        gan.generate([0.0, 1.0])
    with pytest.raises(ValueError, match=r"images must have shape \(batch, 8, 8, 1\)"):
        gan.fit(images[..., 0], labels, verbose=0)
    with pytest.raises(ValueError, match=r"images must have shape \(batch, 8, 8, 1\)"):
        gan.fit(images[:, :4], labels, verbose=0)
    with pytest.raises(TypeError, match="images must be floats"):
        gan.fit((images * 255).astype("uint8"), labels, verbose=0)
    with pytest.raises(ValueError, match=r"class labels must have shape \(batch,\) or \(batch, 1\)"):
        gan.fit(tf.data.Dataset.from_tensors((images, np.eye(3, dtype="int64")[labels])), verbose=0)
    with pytest.raises(ValueError, match="32 images but 16 conditions"):
        gan.fit(tf.data.Dataset.from_tensors((images, labels[:16])), verbose=0)
    with pytest.raises(ValueError, match=r"expects \(images, conditions\) pairs"):
        gan.fit(images, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="class label is >= num_classes=3"):
        gan.fit(tf.data.Dataset.from_tensor_slices((images, labels + 1)).batch(16), verbose=0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        gan.generate([0], n=0)

    vector_gan = build_gan(condition_dim=4)
    vector_gan.compile(g_optimizer=adam(), d_optimizer=adam())
    with pytest.raises(ValueError, match=r"condition vectors must have shape \(m, 4\); got \(32, 3\)"):
        vector_gan.fit(images, np.zeros((32, 3), "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"shape \(m, 4\); for one vector use vector\[None, :\]"):
        vector_gan.generate(np.zeros(4, "float32"))
    conditions = np.zeros((5, 4), "float32")
    conditions[[1, 3], 2] = [np.nan, -np.inf]
    with pytest.raises(
        ValueError,
        match=r"^ConditionalGAN.generate: conditions has non-finite values \(NaN or inf\) "
        r"in 2 row\(s\) \[1, 3\]; give finite condition vectors",
    ):
        vector_gan.generate(conditions)
    with pytest.raises(ValueError, match=r"conditions has non-finite .* \[0\]; values beyond float32's range"):
        vector_gan.generate(np.full((1, 4), 1e300))  # finite in float64, inf in float32
    with pytest.raises(TypeError, match=r"condition vectors must be numbers \(float32\); got dtype <U1"):
        vector_gan.generate(np.full((1, 4), "a"))
    assert vector_gan.generate(np.zeros((2, 4), "int64")).shape == (2, *IMAGE_SHAPE)


# ----------------------------------------------------------------------------- mixed float16
@pytest.fixture
def mixed_float16():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy("float32")


def test_mixed_float16_loss_scales_both_optimizers_and_lowers_the_scale_on_overflow(
    toy_images, mixed_float16, tmp_path
):
    images, labels = toy_images
    gan = build_gan()
    assert gan.generator.layers[-1].compute_dtype == "float16"
    gan.compile(g_optimizer=adam(), d_optimizer=adam())
    optimizers = (gan.g_optimizer, gan.d_optimizer)
    assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers)
    assert gan.g_optimizer.inner_optimizer is not gan.d_optimizer.inner_optimizer
    initial = [float(o.dynamic_scale.numpy()) for o in optimizers]

    # A given LossScaleOptimizer is kept, not wrapped twice.
    wrapped = keras.optimizers.LossScaleOptimizer(adam())
    other = build_gan()
    other.compile(g_optimizer=wrapped, d_optimizer=adam())
    assert other.g_optimizer is wrapped and isinstance(other.d_optimizer, keras.optimizers.LossScaleOptimizer)

    history = gan.fit(images, labels, batch_size=16, epochs=2, verbose=0).history
    assert np.isfinite(history["d_loss"]).all() and np.isfinite(history["g_loss"]).all()
    assert all(np.isfinite(w.numpy()).all() for w in gan.weights)
    for optimizer, before in zip(optimizers, initial):
        scale = float(optimizer.dynamic_scale.numpy())
        assert np.isfinite(scale) and 1.0 <= scale <= before
        assert optimizer.iterations.numpy() == 4

    # Images beyond float16's range overflow the discriminator: its step is skipped and its
    # scale halved (the generator's step, on fakes only, goes on).
    d_scale, g_scale = (float(o.dynamic_scale.numpy()) for o in (gan.d_optimizer, gan.g_optimizer))
    d_before = [w.numpy() for w in gan.discriminator.trainable_weights]
    gan.fit(np.full_like(images[:16], 1e5), labels[:16], batch_size=16, verbose=0)
    assert float(gan.d_optimizer.dynamic_scale.numpy()) == d_scale / 2
    assert float(gan.g_optimizer.dynamic_scale.numpy()) == g_scale
    assert gan.d_optimizer.iterations.numpy() == 4 and gan.g_optimizer.iterations.numpy() == 5
    for before, variable in zip(d_before, gan.discriminator.trainable_weights):
        np.testing.assert_array_equal(before, variable.numpy())

    # .keras round trip: both come back loss-scaled (not wrapped twice), with their state.
    loaded = assert_keras_round_trip(gan, tmp_path, outputs=lambda m: m.generate([0, 1, 2], seed=1))
    for original, restored in ((gan.g_optimizer, loaded.g_optimizer), (gan.d_optimizer, loaded.d_optimizer)):
        assert isinstance(restored, keras.optimizers.LossScaleOptimizer)
        assert not isinstance(restored.inner_optimizer, keras.optimizers.LossScaleOptimizer)
        assert float(restored.dynamic_scale.numpy()) == float(original.dynamic_scale.numpy())
        assert_same_optimizer_state(restored, original)


def test_mixed_float16_trainer_checkpoint_holds_both_optimizers(toy_images, mixed_float16, tmp_path):
    from xmodal_tf.training import Trainer

    images, labels = toy_images
    gan = build_gan()
    gan.compile(g_optimizer=adam(), d_optimizer=adam())
    trainer = Trainer(gan, optimizer=None, checkpoint_dir=tmp_path, progress=False)
    trainer.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(16), epochs=1)
    assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in (gan.g_optimizer, gan.d_optimizer))
    assert all(np.isfinite(w.numpy()).all() for w in gan.weights)
    names = [name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(tmp_path))]
    for key in ("g_optimizer", "d_optimizer"):
        # The Adam moments of each network (iterations and per-variable slots) are saved.
        assert sum(name.startswith(f"{key}/") for name in names) > len(gan.generator.trainable_weights), key
