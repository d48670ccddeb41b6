"""Tests for xmodal_tf.decoders: the decoder, generator and discriminator builders.

Tiny models only. The cGAN's training with these builders is tested in
tests/models/test_cgan*.py, the autoencoder's in tests/models/test_mae.py.
"""

import numpy as np
import pytest
from helpers import assert_keras_round_trip

from xmodal_tf import decoders
from xmodal_tf.decoders import (
    build_dense_discriminator,
    build_dense_generator,
    build_discriminator,
    build_generator,
    check_condition_kind,
    dense_decoder,
    image_decoder,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation")  # Keras 3.15's save under NumPy 2
BATCH = 3


@pytest.fixture
def rng():
    return np.random.default_rng(7)  # inputs only: no test here depends on the initial weights


# ----------------------------------------------------------------------------- decoders
def test_dense_decoder_maps_a_code_to_the_output_shape(rng, tmp_path):
    decoder = dense_decoder(4, (5, 2), hidden_units=(8, 6), name="vec")
    assert [layer.name for layer in decoder.layers] == [
        "vec_code",
        "vec_dense0",
        "vec_dense1",
        "vec_output",
        "vec_reshape",
    ]
    codes = rng.normal(size=(BATCH, 4)).astype("float32")
    assert decoder(codes).shape == (BATCH, 5, 2)
    assert dense_decoder(4, 7, hidden_units=None).output_shape == (None, 7)  # an int shape, no hidden layer
    assert_keras_round_trip(decoder, tmp_path, inputs=codes)


def test_image_decoder_upsamples_once_per_filter_entry(rng, tmp_path):
    decoder = image_decoder(6, (8, 4, 1), filters=(4, 2))
    assert decoder.get_layer("image_decoder_reshape").output.shape == (None, 2, 1, 4)  # 8x4 halved twice
    codes = rng.normal(size=(BATCH, 6)).astype("float32")
    assert decoder(codes).shape == (BATCH, 8, 4, 1)
    assert_keras_round_trip(decoder, tmp_path, inputs=codes)


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: dense_decoder(0, (4,)), ValueError, r"dense_decoder code_dim must be an int >= 1; got 0"),
        (lambda: dense_decoder(4, (4, 0)), ValueError, "output_shape must hold positive ints"),
        (lambda: dense_decoder(4, (4,), hidden_units=(8, 2.5)), TypeError, "each entry of dense_decoder hidden_units"),
        (
            lambda: image_decoder(4, (8, 8)),
            ValueError,
            r"image_shape must be \(height, width, channels\).*\(28, 28, 1\)",
        ),
        (lambda: image_decoder(4, (8, 8, 1), filters=()), ValueError, "filters .* must not be empty"),
        (lambda: image_decoder(4, (6, 6, 1), filters=(4, 2)), ValueError, "divisible by 4; got 6x6"),
        (lambda: image_decoder("4", (8, 8, 1)), TypeError, "code_dim"),
    ],
)
def test_decoder_arguments_follow_the_one_rule(build, error, message):
    with pytest.raises(error, match=message):
        build()


# ----------------------------------------------------------------------------- generators and discriminators
@pytest.mark.parametrize("kind", [{"num_classes": 3}, {"condition_dim": 4}])
def test_generator_and_discriminator_shapes(rng, kind):
    generator = build_generator((8, 8, 1), 5, base_filters=2, **kind)
    discriminator = build_discriminator((8, 8, 1), base_filters=2, **kind)
    z = rng.normal(size=(BATCH, 5)).astype("float32")
    conditions = np.arange(BATCH) % 3 if "num_classes" in kind else rng.normal(size=(BATCH, 4)).astype("float32")
    images = generator([z, conditions]).numpy()
    assert images.shape == (BATCH, 8, 8, 1) and 0.0 <= images.min() and images.max() <= 1.0  # sigmoid
    assert discriminator([images, conditions]).shape == (BATCH, 1)


def test_discriminator_class_head_and_dense_textbook_pair(rng):
    labels = np.arange(BATCH) % 3
    images = rng.random((BATCH, 8, 8, 1)).astype("float32")
    logits, classes = build_discriminator((8, 8, 1), num_classes=3, base_filters=2, classifier_head=True)(
        [images, labels]
    )
    assert logits.shape == (BATCH, 1) and classes.shape == (BATCH, 3)
    generator = build_dense_generator((8, 8, 1), 5, num_classes=3, hidden_units=(6,))
    assert generator([rng.normal(size=(BATCH, 5)).astype("float32"), labels]).shape == (BATCH, 8, 8, 1)
    discriminator = build_dense_discriminator((8, 8, 1), num_classes=3, hidden_units=(6,), dropout=0.0)
    assert discriminator([images, labels]).shape == (BATCH, 1)
    assert "dense_discriminator_dense0_dropout" not in [layer.name for layer in discriminator.layers]


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: build_generator((8, 8), 5, num_classes=3), ValueError, r"build_generator image_shape must be \("),
        (lambda: build_generator((8, 8, 1), 0, num_classes=3), ValueError, "latent_dim must be an int >= 1"),
        (
            lambda: build_generator((8, 8, 1), 5, num_classes=3, sync_batch_norm=1),
            TypeError,
            "sync_batch_norm must be True or False",
        ),
        (lambda: build_discriminator((8, 8, 1), num_classes=3, base_filters=2.0), TypeError, "base_filters"),
        (
            lambda: build_discriminator((8, 8, 1), condition_dim=4, classifier_head=True),
            ValueError,
            "classifier_head=True needs class labels",
        ),
        (
            lambda: build_dense_discriminator((8, 8, 1), num_classes=3, dropout=1.0),
            ValueError,
            r"dropout must be a rate in \[0, 1\); got 1.0",
        ),
        (lambda: build_dense_discriminator((8, 8, 1), num_classes=3, dropout="0.1"), TypeError, "dropout"),
        (lambda: build_generator((8, 8, 1), 5), ValueError, "exactly one of num_classes"),
    ],
)
def test_generator_and_discriminator_arguments_follow_the_one_rule(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_check_condition_kind():
    check_condition_kind(3, None)
    check_condition_kind(None, 4)
    with pytest.raises(ValueError, match="exactly one of"):
        check_condition_kind(3, 4)
    with pytest.raises(TypeError, match="num_classes must be an int >= 1"):
        check_condition_kind(3.0, None)
    with pytest.raises(ValueError, match="condition_dim must be an int >= 1; got 0"):
        check_condition_kind(None, 0)


def test_every_public_name_is_a_builder_or_the_condition_check():
    defined_here = [
        name
        for name, value in vars(decoders).items()
        if callable(value) and not name.startswith("_") and value.__module__ == decoders.__name__
    ]
    assert sorted(decoders.__all__) == sorted(defined_here)
