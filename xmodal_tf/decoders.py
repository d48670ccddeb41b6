"""Decoder builders, the mirror of ``xmodal_tf.encoders``: each returns a named functional
``keras.Model`` that maps a code (or noise and a condition) to data, and, beside the
generators, the discriminators that judge their images.

    >>> from xmodal_tf import decoders
    >>> images = decoders.image_decoder(64, (28, 28, 1))        # code (batch, 64) -> images
    >>> vectors = decoders.dense_decoder(64, (392,))             # code -> (batch, 392)
    >>> g = decoders.build_generator((28, 28, 1), 64, num_classes=10)    # [z, label] -> images
    >>> d = decoders.build_discriminator((28, 28, 1), num_classes=10)    # [images, label] -> logit

``dense_decoder`` and ``image_decoder`` serve ``MultimodalAutoencoder`` and DCCAE;
``build_generator`` / ``build_discriminator`` (the default cGAN recipe) and their dense
textbook versions serve ``ConditionalGAN``. Generators output [0, 1] (sigmoid) by
default, the range of the package's image loaders. Layers get stable names derived
from the model name, as in ``xmodal_tf.encoders``.
"""

from __future__ import annotations

import keras
import numpy as np

from xmodal_tf._validation import (
    check_bool,
    check_image_shape,
    check_int_sequence,
    check_positive_int,
    check_rate,
    check_shape,
)
from xmodal_tf.layers import ReplicaDropout

__all__ = [
    "build_dense_discriminator",
    "build_dense_generator",
    "build_discriminator",
    "build_generator",
    "check_condition_kind",
    "dense_decoder",
    "image_decoder",
]


# ----------------------------------------------------------------------------- decoders
def dense_decoder(
    code_dim, output_shape, *, hidden_units=(128,), activation="relu", output_activation=None, name="dense_decoder"
) -> keras.Model:
    """Dense decoder: code (batch, code_dim) -> (batch, *output_shape).

    Dense hidden layers, a Dense to prod(output_shape) units with ``output_activation``,
    then Reshape. Layer names: f"{name}_dense{i}", f"{name}_output", f"{name}_reshape".

    Args:
        code_dim: the size of the code.
        output_shape: the shape of one output, e.g. (392,).
        hidden_units: the widths of the hidden Dense layers; () for none.
        activation: the hidden layers' activation.
        output_activation: None (default) gives a linear output for data in any range
            (standardised features such as MFCCs, noisy or centred images); "sigmoid" only
            for data known to lie in [0, 1].
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The decoder, a functional ``keras.Model`` named ``name``.

    Raises:
        TypeError: a size or shape of a wrong type.
        ValueError: a size or shape of a wrong value.
    """
    code_dim = check_positive_int(code_dim, "dense_decoder code_dim")
    output_shape = check_shape(output_shape, "dense_decoder output_shape")
    inputs = keras.Input((code_dim,), name=f"{name}_code")
    x = inputs
    for index, units in enumerate(check_int_sequence(hidden_units, "dense_decoder hidden_units", allow_empty=True)):
        x = keras.layers.Dense(units, activation=activation, name=f"{name}_dense{index}")(x)
    x = keras.layers.Dense(int(np.prod(output_shape)), activation=output_activation, name=f"{name}_output")(x)
    return keras.Model(inputs, keras.layers.Reshape(output_shape, name=f"{name}_reshape")(x), name=name)


def image_decoder(
    code_dim, image_shape, *, filters=(64, 32), activation="relu", output_activation=None, name="image_decoder"
) -> keras.Model:
    """Image decoder, the mirror of ``cnn_encoder``: code (batch, code_dim) -> images (batch, H, W, C).

    Dense to an (H / 2^k, W / 2^k, filters[0]) grid, k = len(filters), then a stride-2
    Conv2DTranspose per entry of ``filters[1:]`` and a last one to C channels with
    ``output_activation``. Layer names: f"{name}_dense", f"{name}_reshape",
    f"{name}_deconv{i}", f"{name}_output".

    Args:
        code_dim: the size of the code.
        image_shape: (H, W, C); H and W divisible by 2^k.
        filters: the filters of the grid and of each upsampling but the last (one
            upsampling per entry).
        activation: the activation of the Dense layer and the hidden transposed
            convolutions.
        output_activation: None (default since issue 16) gives a linear output, which
            reconstructs images in any range: [0, 1], standardised, or with noise added,
            and reconstructed MNIST better than "sigmoid" even on [0, 1] images (figures in
            docs/DESIGN.md, section Benchmarks: xmodal_tf/decoders.py). Pass "sigmoid" for
            outputs that must stay in [0, 1], "tanh" for [-1, 1].
            ``MultimodalAutoencoder``'s "binary_crossentropy" reconstruction loss expects
            probabilities: use "sigmoid" with it.
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The decoder, a functional ``keras.Model`` named ``name``.

    Raises:
        TypeError: a size or shape of a wrong type.
        ValueError: a wrong size or shape, or H and W not divisible by 2^k.
    """
    code_dim = check_positive_int(code_dim, "image_decoder code_dim")
    height, width, channels = check_image_shape(image_shape, "image_decoder image_shape")
    filters = check_int_sequence(filters, "image_decoder filters (one upsampling each)", example="(64, 32)")
    scale = 2 ** len(filters)
    if height % scale or width % scale:
        raise ValueError(
            f"image_decoder: {len(filters)} upsamplings need height and width divisible by {scale}; "
            f"got {height}x{width}. Use fewer filters, or dense_decoder."
        )
    inputs = keras.Input((code_dim,), name=f"{name}_code")
    grid = (height // scale, width // scale, filters[0])
    x = keras.layers.Dense(int(np.prod(grid)), activation=activation, name=f"{name}_dense")(inputs)
    x = keras.layers.Reshape(grid, name=f"{name}_reshape")(x)
    for index, count in enumerate(filters[1:]):
        x = keras.layers.Conv2DTranspose(
            count, 3, strides=2, padding="same", activation=activation, name=f"{name}_deconv{index}"
        )(x)
    outputs = keras.layers.Conv2DTranspose(
        channels, 3, strides=2, padding="same", activation=output_activation, name=f"{name}_output"
    )(x)
    return keras.Model(inputs, outputs, name=name)


# ----------------------------------------------------------------------------- generators and discriminators
def check_condition_kind(num_classes, condition_dim) -> None:
    """Check that exactly one kind of condition is given.

    Args:
        num_classes: the number of classes, for integer class labels; or None.
        condition_dim: the size of float condition vectors; or None.

    Raises:
        ValueError: both or neither are given, or the one given is < 1.
        TypeError: the one given is not an int.
    """
    if (num_classes is None) == (condition_dim is None):
        raise ValueError(
            "Give exactly one of num_classes= (conditions are integer class labels) or "
            f"condition_dim= (conditions are float vectors); got num_classes={num_classes!r}, "
            f"condition_dim={condition_dim!r}."
        )
    if num_classes is not None:
        check_positive_int(num_classes, "num_classes")
    else:
        check_positive_int(condition_dim, "condition_dim")


def _upsampling_steps(height: int, width: int, most: int = 2) -> int:
    """How many times both sides can be halved exactly (at most ``most``)."""
    steps = 0
    while steps < most and height % 2 == 0 and width % 2 == 0:
        height, width, steps = height // 2, width // 2, steps + 1
    return steps


def _condition_input(num_classes, condition_dim, name):
    check_condition_kind(num_classes, condition_dim)
    if num_classes is not None:
        return keras.Input(shape=(), dtype="int32", name=f"{name}_labels")
    return keras.Input(shape=(condition_dim,), name=f"{name}_conditions")


def _condition_code(condition, num_classes, name):
    """The condition as a float vector: one-hot labels, or the condition vector itself."""
    if num_classes is None:
        return condition
    return keras.layers.CategoryEncoding(num_classes, output_mode="one_hot", name=f"{name}_one_hot")(condition)


def _conditional_batch_norm(x, code, name, synchronized=False):
    """Batch norm whose scale and shift are linear functions of the condition code
    (class-conditional batch norm for one-hot codes); starts as plain batch norm."""
    channels = x.shape[-1]
    broadcast = (1,) * (len(x.shape) - 2) + (channels,)
    x = keras.layers.BatchNormalization(center=False, scale=False, synchronized=synchronized, name=f"{name}_bn")(x)
    gamma = keras.layers.Dense(channels, kernel_initializer="zeros", bias_initializer="ones", name=f"{name}_gamma")(
        code
    )
    beta = keras.layers.Dense(channels, kernel_initializer="zeros", name=f"{name}_beta")(code)
    gamma = keras.layers.Reshape(broadcast, name=f"{name}_gamma_grid")(gamma)
    beta = keras.layers.Reshape(broadcast, name=f"{name}_beta_grid")(beta)
    x = keras.layers.Multiply(name=f"{name}_scale")([x, gamma])
    return keras.layers.Add(name=f"{name}_shift")([x, beta])


def build_generator(
    image_shape,
    latent_dim=64,
    *,
    num_classes=None,
    condition_dim=None,
    base_filters=16,
    sync_batch_norm=False,
    output_activation="sigmoid",
    name="generator",
) -> keras.Model:
    """A small DCGAN-style conv generator: [z (batch, latent_dim), condition] -> (batch, H, W, C).

    The condition enters twice: concatenated with z (as its one-hot code for labels), and
    through conditional batch norm after every layer (per-condition scale and shift,
    as in projection-discriminator cGANs). A Dense layer maps [z, code] to a (H/4, W/4,
    4*base_filters) grid (fewer halvings when H or W is not divisible by 4); each
    stride-2 4x4 transposed convolution doubles the size and halves the filters (then
    conditional batch norm + ReLU); a 3x3 convolution with ``output_activation`` gives
    the C channels. Works from 8x8 (2x2 start) to 28x28 (7x7 start) and beyond.
    Layer names: f"{name}_project", f"{name}_up{i}", f"{name}_image" ...

    Args:
        image_shape: (H, W, C) of the generated images.
        latent_dim: the size of the noise z.
        num_classes: the number of classes, for integer labels (batch,). Give exactly one
            of ``num_classes`` and ``condition_dim``.
        condition_dim: the size of float condition vectors (batch, condition_dim).
        base_filters: the filters of the last upsampling; the start grid has
            base_filters * 2^k of them for k upsamplings, each upsampling halving them.
        sync_batch_norm: compute the batch statistics over the global batch under a
            ``tf.distribute`` strategy.
        output_activation: "sigmoid" (default) gives images in [0, 1], the range of the
            package's image loaders (pixels / 255) that ``ConditionalGAN`` expects; scale
            real images to [0, 1], or pass "tanh" for [-1, 1] data or None for any range
            (the discriminator sees real and generated images alike, so a range the
            generator cannot reach lets it tell them apart trivially).
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The generator, a functional ``keras.Model`` with inputs [z, condition].

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: a wrong shape or size, or not exactly one kind of condition.
    """
    height, width, channels = check_image_shape(image_shape, "build_generator image_shape")
    sync_batch_norm = check_bool(sync_batch_norm, "sync_batch_norm")
    latent_dim = check_positive_int(latent_dim, "latent_dim")
    base_filters = check_positive_int(base_filters, "base_filters")
    steps = _upsampling_steps(height, width)
    start_h, start_w, start_filters = height >> steps, width >> steps, base_filters * 2**steps

    z = keras.Input(shape=(latent_dim,), name=f"{name}_z")
    condition = _condition_input(num_classes, condition_dim, name)
    code = _condition_code(condition, num_classes, name)
    x = keras.layers.Concatenate(name=f"{name}_concat")([z, code])
    x = keras.layers.Dense(start_h * start_w * start_filters, use_bias=False, name=f"{name}_project")(x)
    x = _conditional_batch_norm(x, code, f"{name}_project", sync_batch_norm)
    x = keras.layers.ReLU(name=f"{name}_project_relu")(x)
    x = keras.layers.Reshape((start_h, start_w, start_filters), name=f"{name}_grid")(x)
    filters = start_filters
    for i in range(steps):
        filters = max(filters // 2, 1)
        x = keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"{name}_up{i}")(x)
        x = _conditional_batch_norm(x, code, f"{name}_up{i}", sync_batch_norm)
        x = keras.layers.ReLU(name=f"{name}_up{i}_relu")(x)
    images = keras.layers.Conv2D(channels, 3, padding="same", activation=output_activation, name=f"{name}_image")(x)
    return keras.Model([z, condition], images, name=name)


def build_discriminator(
    image_shape,
    *,
    num_classes=None,
    condition_dim=None,
    base_filters=32,
    spectral_normalization=False,
    classifier_head=False,
    name="discriminator",
) -> keras.Model:
    """A small projection discriminator: [images (batch, H, W, C), condition] -> logits (batch, 1).

    Images in the generator's output range ([0, 1] for the default generators); the
    layers themselves assume no range. Two stride-2 4x4 convolutions (base_filters,
    2*base_filters; LeakyReLU 0.2) give features phi(x) (flattened); the logit is
    ``Dense(1)(phi) + <V c, phi>``, where V c is a learned embedding of the label (a
    bias-free Dense on its one-hot code) or a linear map of the condition vector.
    Layer names: f"{name}_conv{i}", f"{name}_score", f"{name}_projection",
    f"{name}_classes" ...

    Args:
        image_shape: (H, W, C) of the images.
        num_classes: the number of classes, for integer labels (batch,). Give exactly one
            of ``num_classes`` and ``condition_dim``.
        condition_dim: the size of float condition vectors (batch, condition_dim).
        base_filters: the filters of the first convolution (the second has twice as many).
        spectral_normalization: wrap every layer with a kernel in
            ``keras.layers.SpectralNormalization`` (for hinge-loss recipes; the default
            recipe uses the R1 penalty instead).
        classifier_head: (labels only) add a second output, class logits (batch,
            num_classes) = ``Dense(num_classes)(phi)``, for the auxiliary classifier terms
            of ``ConditionalGAN.compile(classifier_weight=...)``.
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The discriminator, a functional ``keras.Model`` with inputs [images, condition]
        and output logits, or [logits, class logits] with ``classifier_head``.

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: a wrong shape or size, not exactly one kind of condition, or
            ``classifier_head`` without ``num_classes``.
    """
    height, width, channels = check_image_shape(image_shape, "build_discriminator image_shape")
    base_filters = check_positive_int(base_filters, "base_filters")
    classifier_head = check_bool(classifier_head, "classifier_head")
    if classifier_head and num_classes is None:
        raise ValueError(
            "build_discriminator: classifier_head=True needs class labels (num_classes=...); "
            "condition vectors have no classes to predict."
        )

    def normalized(layer):
        if not spectral_normalization:
            return layer
        return keras.layers.SpectralNormalization(layer, name=f"{layer.name}_sn")

    images = keras.Input(shape=(height, width, channels), name=f"{name}_images")
    condition = _condition_input(num_classes, condition_dim, name)
    x = images
    for i, filters in enumerate((base_filters, 2 * base_filters)):
        x = normalized(keras.layers.Conv2D(filters, 4, strides=2, padding="same", name=f"{name}_conv{i}"))(x)
        x = keras.layers.LeakyReLU(0.2, name=f"{name}_conv{i}_lrelu")(x)
    features = keras.layers.Flatten(name=f"{name}_features")(x)
    # One-hot codes through a bias-free Dense = a class embedding (Keras'
    # SpectralNormalization casts an Embedding's output to the integer input dtype).
    code = _condition_code(condition, num_classes, name)
    embedded = normalized(keras.layers.Dense(features.shape[-1], use_bias=False, name=f"{name}_projection"))(code)
    projection = keras.layers.Dot(axes=1, name=f"{name}_projection_dot")([features, embedded])
    score = normalized(keras.layers.Dense(1, name=f"{name}_score"))(features)
    logits = keras.layers.Add(name=f"{name}_logits")([score, projection])
    if classifier_head:
        classes = normalized(keras.layers.Dense(num_classes, name=f"{name}_classes"))(features)
        return keras.Model([images, condition], [logits, classes], name=name)
    return keras.Model([images, condition], logits, name=name)


def build_dense_generator(
    image_shape,
    latent_dim=64,
    *,
    num_classes,
    hidden_units=(256, 512, 1024),
    batch_norm=True,
    sync_batch_norm=False,
    output_activation="sigmoid",
    name="dense_generator",
) -> keras.Model:
    """The textbook conditional generator (Mirza & Osindero; the Keras GAN examples).

    [z, label] -> concat(z, one_hot(label)) -> Dense (+ batch norm) + LeakyReLU layers ->
    pixels reshaped to ``image_shape``.

    Args:
        image_shape: (H, W, C) of the generated images.
        latent_dim: the size of the noise z.
        num_classes: the number of classes of the integer labels (batch,).
        hidden_units: the widths of the Dense layers.
        batch_norm: batch norm after each Dense layer.
        sync_batch_norm: batch statistics over the global batch under a
            ``tf.distribute`` strategy.
        output_activation: "sigmoid" (default): values in [0, 1], the range of the
            package's image loaders; "tanh" for [-1, 1] data, None for any range.
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The generator, a functional ``keras.Model`` with inputs [z, labels].

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: a wrong shape or size.
    """
    shape = check_image_shape(image_shape, "build_dense_generator image_shape")
    sync_batch_norm = check_bool(sync_batch_norm, "sync_batch_norm")
    latent_dim = check_positive_int(latent_dim, "latent_dim")
    z = keras.Input(shape=(latent_dim,), name=f"{name}_z")
    labels = _condition_input(num_classes, None, name)
    one_hot = keras.layers.CategoryEncoding(num_classes, output_mode="one_hot", name=f"{name}_one_hot")(labels)
    x = keras.layers.Concatenate(name=f"{name}_concat")([z, one_hot])
    for i, units in enumerate(check_int_sequence(hidden_units, "hidden_units", allow_empty=True)):
        x = keras.layers.Dense(units, name=f"{name}_dense{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=0.8, synchronized=sync_batch_norm, name=f"{name}_dense{i}_bn")(
                x
            )
        x = keras.layers.LeakyReLU(0.2, name=f"{name}_dense{i}_lrelu")(x)
    x = keras.layers.Dense(int(np.prod(shape)), activation=output_activation, name=f"{name}_pixels")(x)
    images = keras.layers.Reshape(shape, name=f"{name}_image")(x)
    return keras.Model([z, labels], images, name=name)


def build_dense_discriminator(
    image_shape, *, num_classes, hidden_units=(512, 256), dropout=0.3, name="dense_discriminator"
) -> keras.Model:
    """The textbook conditional discriminator: [images, label] -> one logit (batch, 1).

    concat(flat images, one_hot(label)) -> Dense + LeakyReLU (+ Dropout) layers -> a
    Dense logit. Images in the generator's output range ([0, 1] for the default
    generators).

    Args:
        image_shape: (H, W, C) of the images.
        num_classes: the number of classes of the integer labels (batch,).
        hidden_units: the widths of the Dense layers.
        dropout: rate of the dropout after each Dense layer, in [0, 1); 0 for none.
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The discriminator, a functional ``keras.Model`` with inputs [images, labels].

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: a wrong shape, size or rate.
    """
    shape = check_image_shape(image_shape, "build_dense_discriminator image_shape")
    dropout = check_rate(dropout, "dropout")
    images = keras.Input(shape=shape, name=f"{name}_images")
    labels = _condition_input(num_classes, None, name)
    one_hot = keras.layers.CategoryEncoding(num_classes, output_mode="one_hot", name=f"{name}_one_hot")(labels)
    x = keras.layers.Concatenate(name=f"{name}_concat")([keras.layers.Flatten(name=f"{name}_flat")(images), one_hot])
    for i, units in enumerate(check_int_sequence(hidden_units, "hidden_units", allow_empty=True)):
        x = keras.layers.Dense(units, name=f"{name}_dense{i}")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"{name}_dense{i}_lrelu")(x)
        if dropout:
            x = ReplicaDropout(dropout, name=f"{name}_dense{i}_dropout")(x)
    logits = keras.layers.Dense(1, name=f"{name}_logit")(x)
    return keras.Model([images, labels], logits, name=name)
