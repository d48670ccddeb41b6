"""The pieces of the cGAN recipe: the auxiliary classifier terms (AC-GAN) beside the
projection discriminator, the truncation trick, the EMA warm-up, class-balanced batches,
the learning-rate schedule, and the config checks of the ``cgan`` experiment."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_keras_round_trip, assert_same_weights
from test_cgan import IMAGE_SHAPE, toy_images  # noqa: F401 (toy_images is a fixture)
from test_cgan import build_gan as build_tiny_gan

from xmodal_tf.experiments import cgan as cgan_experiment
from xmodal_tf.experiments.config import ConfigError
from xmodal_tf.models.cgan import build_discriminator

# The ConditionalGAN of these tests: test_cgan's tiny one, with the class head on.
build_gan = functools.partial(build_tiny_gan, classifier_head=True)


def frozen_logs(images, labels, **compile_arguments):
    """The logs of one eager step with learning rate 0 (weights unchanged), same noise."""
    gan = build_gan()
    gan.compile(
        g_optimizer=keras.optimizers.SGD(0.0),
        d_optimizer=keras.optimizers.SGD(0.0),
        r1_weight=0.0,
        run_eagerly=True,
        **compile_arguments,
    )
    history = gan.fit(images, labels, batch_size=32, shuffle=False, verbose=0).history
    return {key: values[0] for key, values in history.items()}


def cross_entropy(class_logits, labels):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return float(loss(labels, class_logits))


def test_classifier_terms_add_the_heads_cross_entropies(toy_images):
    images, labels = toy_images
    plain = frozen_logs(images, labels)
    assert "real_class_loss" not in plain and "fake_class_loss" not in plain
    weighted = frozen_logs(images, labels, classifier_weight=0.5)
    both = frozen_logs(images, labels, classifier_weight=0.5, classifier_fake_weight=2.0)

    # The same networks and noise (a twin with the same seed): the D step's fakes come
    # first from the noise stream, then the G step's.
    twin = build_gan()
    conditions, images = tf.constant(labels, tf.int32), tf.constant(images)
    d_fakes = twin._fakes(conditions, training=True)
    g_fakes = twin._fakes(conditions, training=True)
    real_ce = cross_entropy(twin._scores(images, conditions, training=True)[1], labels)
    d_fake_ce = cross_entropy(twin._scores(d_fakes, conditions, training=True)[1], labels)
    g_class_logits = twin._scores(g_fakes, conditions, training=True)[1]
    g_fake_ce = cross_entropy(g_class_logits, labels)
    per_image = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(
        labels, g_class_logits
    ).numpy()
    margin = float(np.median(per_image))  # half of the fakes are past the margin
    margins = frozen_logs(images, labels, classifier_weight=0.5, classifier_margin=margin)

    assert weighted["real_class_loss"] == pytest.approx(real_ce, rel=1e-4)
    assert weighted["fake_class_loss"] == pytest.approx(g_fake_ce, rel=1e-4)
    # D: + w * CE(head(real), labels); G: + w * CE(head(G(z, c)), c).
    assert weighted["d_loss"] == pytest.approx(plain["d_loss"] + 0.5 * real_ce, rel=1e-4)
    assert weighted["g_loss"] == pytest.approx(plain["g_loss"] + 0.5 * g_fake_ce, rel=1e-4)
    # The margin: only the excess cross-entropy of each fake pushes the generator.
    assert margins["g_loss"] == pytest.approx(
        plain["g_loss"] + 0.5 * np.mean(np.maximum(per_image - margin, 0.0)), rel=1e-4
    )
    assert margins["d_loss"] == pytest.approx(weighted["d_loss"], rel=1e-6)
    # AC-GAN's term on the fakes joins D's loss only.
    assert both["d_loss"] == pytest.approx(plain["d_loss"] + 0.5 * real_ce + 2.0 * d_fake_ce, rel=1e-4)
    assert both["g_loss"] == pytest.approx(weighted["g_loss"], rel=1e-6)


def test_classifier_term_trains_the_head_and_pulls_the_generator_to_the_class(toy_images):
    images, labels = toy_images
    losses = {}
    for weight in (0.0, 5.0):
        gan = build_gan(seed=1)
        gan.compile(
            g_optimizer=keras.optimizers.Adam(1e-2), d_optimizer=keras.optimizers.Adam(1e-2), classifier_weight=weight
        )
        head = gan.discriminator.get_layer("discriminator_classes").kernel
        before = head.numpy()
        gan.fit(images, labels, batch_size=32, epochs=2 if weight == 0 else 15, verbose=0)
        if weight == 0:  # the unused head gets zero gradients, not an error
            np.testing.assert_array_equal(head.numpy(), before)
            continue
        assert not np.allclose(head.numpy(), before)
        conditions, real = tf.constant(labels, tf.int32), tf.constant(images)
        fakes = gan.generator([gan.sample_latent(32, seed=0), conditions], training=False)
        losses["real"] = cross_entropy(gan._scores(real, conditions, training=False)[1], labels)
        losses["fake"] = cross_entropy(gan._scores(fakes, conditions, training=False)[1], labels)
    # Chance is log(3) = 1.10 (measured after 15 steps: 0.66 and 0.64): the head reads
    # the class off real images, and the generator draws images the head reads as the
    # requested class.
    assert losses["real"] < 0.85 and losses["fake"] < 0.85


def test_classifier_head_checks(toy_images):
    with pytest.raises(ValueError, match="classifier_head=True needs class labels"):
        build_discriminator(IMAGE_SHAPE, condition_dim=4, classifier_head=True)
    gan = build_gan(classifier_head=False)
    assert not gan.discriminator_classifies
    with pytest.raises(ValueError, match="need a discriminator with a class head"):
        gan.compile(g_optimizer="adam", d_optimizer="adam", classifier_weight=1.0)
    with pytest.raises(ValueError, match="classifier_weight must be a float >= 0"):
        build_gan().compile(g_optimizer="adam", d_optimizer="adam", classifier_weight=-1.0)
    with pytest.raises(ValueError, match="classifier_margin must be a float >= 0"):
        build_gan().compile(g_optimizer="adam", d_optimizer="adam", classifier_weight=1.0, classifier_margin=-1)
    head = build_gan().discriminator
    assert [tuple(output.shape) for output in head.outputs] == [(None, 1), (None, 3)]


def test_truncation_scales_z_when_sampling():
    gan = build_gan(truncation=0.5)
    z = gan.sample_latent(6, seed=4)
    conditions = np.array([0, 0, 1, 1, 2, 2])
    expected = gan((z * 0.5, conditions), training=False).numpy()
    np.testing.assert_allclose(gan.generate([0, 1, 2], n=2, seed=4), expected, atol=1e-6)
    assert not np.allclose(expected, gan((z, conditions), training=False).numpy())
    for bad in (0.0, 1.5, True):
        with pytest.raises(ValueError, match=r"truncation must be None or a float in \(0, 1\]"):
            build_gan(truncation=bad)


def test_ema_warmup_sets_the_decay_schedule(toy_images):
    gan = build_gan(ema_decay=0.9, ema_warmup=1.0)  # no warm-up: the decay from the first step
    assert float(gan.ema_decay_at(1)) == pytest.approx(0.9)
    default = build_gan(ema_decay=0.999)
    assert float(default.ema_decay_at(1)) == pytest.approx(2 / 11)
    assert float(default.ema_decay_at(8990)) == pytest.approx(0.999, abs=1e-6)
    images, labels = toy_images
    gan.compile(g_optimizer="adam", d_optimizer="adam", run_eagerly=True)
    before = [w.numpy() for w in gan.generator_ema.weights]
    gan.fit(images[:16], labels[:16], batch_size=16, verbose=0)
    for average, old, weight in zip(gan.generator_ema.weights, before, gan.generator.weights):
        np.testing.assert_allclose(average.numpy(), 0.9 * old + 0.1 * weight.numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="ema_warmup must be a number >= 1"):
        build_gan(ema_decay=0.9, ema_warmup=0.5)


def test_round_trip_keeps_the_head_the_loss_weights_and_sampling_settings(toy_images, tmp_path):
    images, labels = toy_images
    gan = build_gan(ema_decay=0.99, ema_warmup=4.0, truncation=0.8)
    gan.compile(
        g_optimizer="adam",
        d_optimizer="adam",
        classifier_weight=0.5,
        classifier_fake_weight=0.25,
        classifier_margin=0.1,
        run_eagerly=True,
    )
    gan.fit(images, labels, batch_size=16, verbose=0)
    loaded = assert_keras_round_trip(gan, tmp_path, outputs=lambda m: m.generate([0, 1, 2], n=2, seed=1))
    assert loaded.discriminator_classifies
    assert (loaded.classifier_weight, loaded.classifier_fake_weight, loaded.classifier_margin) == (0.5, 0.25, 0.1)
    assert (loaded.ema_warmup, loaded.truncation) == (4.0, 0.8)
    assert loaded.get_config()["truncation"] == 0.8
    one_batch = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16).take(1)
    for model in (gan, loaded):
        logs = model.fit(one_batch, verbose=0).history
    assert "real_class_loss" in logs
    assert_same_weights(loaded.weights, gan.weights)


# ----------------------------------------------------------------------------- experiment
def recipe_config(**settings):
    return cgan_experiment.resolve_data_defaults({**cgan_experiment.DEFAULTS, **settings})


def test_balanced_batches_request_every_class_equally():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)  # very unequal classes
    images = np.zeros((100, *IMAGE_SHAPE), "float32") + labels[:, None, None, None]
    counts = {}
    for balanced in (False, True):
        config = recipe_config(balanced_batches=balanced)
        batches = cgan_experiment.gan_batches(images, labels, config, 50, seed=0, labels=labels)
        drawn = np.concatenate([conditions.numpy() for _, conditions in batches.take(60)])
        for batch_images, conditions in batches.take(2):  # images still go with their labels
            np.testing.assert_array_equal(batch_images.numpy()[:, 0, 0, 0], conditions.numpy())
        counts[balanced] = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(counts[False], [0.9, 0.09, 0.01], atol=0.01)
    np.testing.assert_allclose(counts[True], [1 / 3] * 3, atol=0.03)


@pytest.mark.parametrize("schedule, halfway", [("constant", 1e-3), ("linear", 5e-4), ("cosine", 5e-4)])
def test_learning_rate_schedule_decays_to_zero_over_the_steps(schedule, halfway):
    rate = cgan_experiment.learning_rate_schedule(recipe_config(steps=100, learning_rate_schedule=schedule))
    value = (lambda step: float(rate(step))) if callable(rate) else (lambda step: rate)
    assert value(0) == pytest.approx(1e-3)
    assert value(50) == pytest.approx(halfway, rel=1e-4)
    assert value(100) == pytest.approx(0.0 if schedule != "constant" else 1e-3, abs=1e-9)


def test_build_gan_follows_the_recipe_settings():
    config = recipe_config(
        classifier_weight=0.5,
        classifier_fake_weight=0.1,
        classifier_margin=0.2,
        truncation=0.9,
        ema_warmup=2.0,
        learning_rate_schedule="linear",
        generator_filters=4,
        discriminator_filters=4,
    )
    gan = cgan_experiment.build_gan(IMAGE_SHAPE, config, num_classes=10, seed=0)
    assert gan.discriminator_classifies and gan.classifier_weight == 0.5 and gan.classifier_fake_weight == 0.1
    assert gan.classifier_margin == 0.2
    assert gan.truncation == 0.9 and gan.ema_warmup == 2.0
    assert isinstance(gan.g_optimizer.learning_rate, tf.Variable) or callable(gan.g_optimizer._learning_rate)
    plain = cgan_experiment.build_gan(
        IMAGE_SHAPE,
        recipe_config(classifier_weight=0.0, classifier_fake_weight=0.0, generator_filters=4, discriminator_filters=4),
        num_classes=10,
        seed=0,
    )
    assert not plain.discriminator_classifies and not plain.uses_classifier
    # Vector conditions (audio) have no classes: no head.
    audio = cgan_experiment.build_gan(IMAGE_SHAPE, config, condition_dim=4, seed=0)
    assert not audio.discriminator_classifies


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"classifier_weight": -0.1}, "classifier_weight must be >= 0"),
        ({"classifier_fake_weight": -1.0}, "classifier_fake_weight must be >= 0"),
        ({"classifier_margin": -1.0}, "classifier_margin must be >= 0"),
        ({"classifier_weight": 1.0, "condition": "audio"}, "need class labels as the condition"),
        ({"ema_warmup": 0.5}, "ema_warmup must be >= 1"),
        ({"truncation": 0.0}, r"truncation must be a number in \(0, 1\]"),
        ({"truncation": 1.2}, r"truncation must be a number in \(0, 1\]"),
        ({"truncation": "yes"}, r"truncation must be a number in \(0, 1\]"),
        ({"steps": 0}, "steps must be a positive integer or null"),
    ],
)
def test_config_checks(settings, message):
    config = {**cgan_experiment.DEFAULTS, "classifier_weight": 0.0, "classifier_fake_weight": 0.0, **settings}
    with pytest.raises(ConfigError, match=message):
        cgan_experiment.EXPERIMENT.validate(config)


def test_learning_rate_schedule_is_a_choice():
    assert cgan_experiment.EXPERIMENT.choices["learning_rate_schedule"] == ("constant", "linear", "cosine")


def test_data_defaults_resolve_by_data_and_condition():
    defaults = cgan_experiment.DEFAULTS
    for data in ("digits", "mnist"):
        config = cgan_experiment.resolve_data_defaults({**defaults, "data": data})
        expected = cgan_experiment.DATA_DEFAULTS[data]
        assert {key: config[key] for key in expected} == expected
        assert config["classifier_weight"] > 0  # label conditions: the classifier terms are on
    audio = cgan_experiment.resolve_data_defaults({**defaults, "data": "mnist", "condition": "audio"})
    assert audio["classifier_weight"] == 0.0 and audio["classifier_margin"] == 0.0  # no classes to predict
    cgan_experiment.EXPERIMENT.validate({**defaults, "condition": "audio"})
    explicit = cgan_experiment.resolve_data_defaults({**defaults, "classifier_weight": 0.3, "steps": 7})
    assert explicit["classifier_weight"] == 0.3 and explicit["steps"] == 7
    with pytest.raises(ConfigError, match="classifier_weight must be a number >= 0 or null"):
        cgan_experiment.EXPERIMENT.validate({**defaults, "classifier_weight": "lots"})
