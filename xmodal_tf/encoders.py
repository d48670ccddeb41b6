"""Encoder builders: each returns a named functional ``keras.Model``, one modality's input -> (batch, embedding_dim).

    >>> from xmodal_tf import encoders
    >>> image_net = encoders.cnn_encoder((28, 14, 1), embedding_dim=50)        # images
    >>> text_net = encoders.rnn_encoder(vocab_size=5000, embedding_dim=50)      # token ids
    >>> audio_net = encoders.attention_encoder(input_dim=13, max_length=200)    # MFCC frames
    >>> vector_net = encoders.mlp_encoder(392, embedding_dim=50)                # DeepCCA nets
    >>> photo_net = encoders.backbone_encoder("mobilenet_v3_small", embedding_dim=128)
    >>> name_net = encoders.text_encoder(["red apple", "grinning face"], embedding_dim=50)  # raw strings

Layers get stable names derived from the model name (``f"{name}_conv0"``, ``f"{name}_embedding"`` ...),
because weight transfer matches layers by name. Every model reloads with ``keras.models.load_model``
(custom layers live in ``xmodal_tf.layers`` and are registered).

Design notes (inputs by builder, distribution): docs/DESIGN.md (section xmodal_tf/encoders.py).
"""

from __future__ import annotations

import numbers
import os
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._validation import (
    check_bool,
    check_image_shape,
    check_int,
    check_int_sequence,
    check_positive_int,
    check_rate,
)
from xmodal_tf.layers import (
    ImageNetPreprocessing,
    MaskedMeanPooling,
    PositionalEmbedding,
    ReplicaDropout,
    TransformerEncoderBlock,
)
from xmodal_tf.network import network_reachable

__all__ = [
    "BACKBONE_ARCHITECTURES",
    "attention_encoder",
    "backbone_encoder",
    "cnn_encoder",
    "mlp_encoder",
    "rnn_encoder",
    "normalize_text",
    "text_encoder",
]

POOLING_CHOICES = ("max", "avg", None)
GLOBAL_POOLING_CHOICES = ("auto", "avg", "max", "flatten")
#: global_pooling="auto" flattens while the flattened feature map has at most this many
#: entries (128x128 images with the default filters: 32 * 32 * 64), and averages above.
AUTO_FLATTEN_MAX_FEATURES = 65536
RNN_CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
BACKBONE_POOLING_CHOICES = ("avg", "max")
TEXT_TOKENS = ("char_ngrams", "words", "words_and_char_ngrams")
# keras.applications downloads ImageNet weights from here.
KERAS_WEIGHTS_HOST = "storage.googleapis.com"


# ----------------------------------------------------------------------------- validation
#: Entries one weight tensor of a builder may have: 2**31 - 1 (8 GiB of float32). Larger
#: sizes are almost surely a wrong argument (an unflattened image, a sample count for a
#: feature count); refused before TensorFlow tries to allocate them.
MAX_WEIGHT_ENTRIES = 2**31 - 1


def _batch_norm(sync_batch_norm: bool, name: str) -> keras.layers.BatchNormalization:
    # synchronized=True all-reduces the batch moments over replicas (a no-op on one device).
    return keras.layers.BatchNormalization(synchronized=sync_batch_norm, name=name)


def _check_weight_size(shape, layer: str, builder: str) -> None:
    """ValueError if a weight of ``shape`` would exceed MAX_WEIGHT_ENTRIES entries."""
    entries = 1
    for size in shape:
        entries *= int(size)
    if entries > MAX_WEIGHT_ENTRIES:
        dims = " x ".join(str(int(size)) for size in shape)
        raise ValueError(
            f"{builder}: layer {layer!r} would need a {dims} weight ({entries:.3g} entries, "
            f"{entries * 4 / 2**30:.3g} GiB in float32), above the {MAX_WEIGHT_ENTRIES} entries one "
            "weight may have; check the sizes passed (input_dim, embedding_dim, hidden_units, filters)."
        )


def _check_choice(value, choices, what: str):
    if value not in choices:
        raise ValueError(f"Unknown {what} {value!r}; choose one of {tuple(choices)}.")
    return value


def _sequence_source(vocab_size, input_dim, builder: str) -> str:
    """'tokens' or 'frames'; exactly one of vocab_size / input_dim must be given."""
    if (vocab_size is None) == (input_dim is None):
        raise ValueError(
            f"{builder} needs exactly one of vocab_size (integer token ids, id 0 = padding) or "
            f"input_dim (float feature frames, all-zero frame = padding); "
            f"got vocab_size={vocab_size!r}, input_dim={input_dim!r}."
        )
    if vocab_size is not None:
        check_int(vocab_size, "vocab_size", minimum=2)
        return "tokens"
    check_positive_int(input_dim, "input_dim")
    return "frames"


# ----------------------------------------------------------------------------- shared parts


def _sequence_input(source: str, max_length, input_dim, name: str) -> keras.KerasTensor:
    if source == "tokens":
        return keras.Input(shape=(max_length,), dtype="int32", name=f"{name}_tokens")
    return keras.Input(shape=(max_length, input_dim), dtype="float32", name=f"{name}_frames")


def _embed_sequence(inputs, source: str, vocab_size, feature_dim: int, name: str):
    """Token ids -> Embedding(mask_zero); frames -> Masking(0.0). Both carry a padding mask."""
    if source == "tokens":
        return keras.layers.Embedding(vocab_size, feature_dim, mask_zero=True, name=f"{name}_token_embedding")(inputs)
    return keras.layers.Masking(mask_value=0.0, name=f"{name}_masking")(inputs)


def _pooled_size(size):
    """Spatial size after a 2x pool with padding='same' (never below 1)."""
    return None if size is None else -(-size // 2)


# ----------------------------------------------------------------------------- CNN


def cnn_encoder(
    input_shape,
    embedding_dim=64,
    *,
    filters=(32, 64),
    kernel_size=3,
    pooling="max",
    batch_norm=False,
    sync_batch_norm=False,
    dropout=0.25,
    global_pooling="auto",
    activation="relu",
    name="cnn_encoder",
) -> keras.Model:
    """Convolutional image encoder: (batch, H, W, C) -> (batch, embedding_dim).

    One block per entry of ``filters``: Conv2D(padding="same") -> optional BatchNorm ->
    activation -> optional 2x pooling. A side of size 1 is never pooled, so tiny inputs
    such as 8x4x1 or 28x14x1 halves work with any number of blocks. Then global pooling,
    optional dropout and a linear Dense to ``embedding_dim``. The defaults were chosen by
    measurement (issue 16, ``benchmarks/bench_defaults.py``; figures in docs/DESIGN.md,
    section Benchmarks: xmodal_tf/encoders.py): with a linear head they beat a plain
    two-layer CNN of the same size on 8x8 digits, noisy MNIST and OpenMoji skin tones.

    Layer names: f"{name}_conv{i}", f"{name}_bn{i}" (with batch_norm), f"{name}_act{i}",
    f"{name}_pool{i}", f"{name}_global_pool", f"{name}_dropout", f"{name}_embedding".

    Args:
        input_shape: (H, W, C); H and W may be None for variable-size images.
        embedding_dim: the size of the embedding.
        filters: the number of filters of each block.
        kernel_size: the convolutions' kernel size, an int or a pair.
        pooling: the 2x pooling after each block: "max" (default), "avg" or None.
        batch_norm: BatchNorm after each convolution. False by default: with flatten
            pooling it lowered validation accuracy on noisy MNIST and OpenMoji skin tones.
        sync_batch_norm: under a ``tf.distribute`` strategy, BatchNorm uses the global
            batch's statistics; only matters with ``batch_norm=True``.
        dropout: rate of the dropout after the global pooling, before the embedding
            Dense; 0 turns it off. 0.25 by default: it raised validation accuracy on noisy
            MNIST and digits.
        global_pooling: how the last feature map becomes a vector.

            * "auto" (default): "flatten" when H and W are fixed and the flattened
              feature map has at most ``AUTO_FLATTEN_MAX_FEATURES`` (65536) entries, up to
              128x128 images with the default filters; "avg" for variable-size images
              (``input_shape=(None, None, C)``) and larger maps (a size guard).
            * "flatten": keeps where features are; needs a fixed H and W. Its Dense has
              (H/2^k * W/2^k * filters[-1]) x embedding_dim weights (k pooled blocks):
              1 M for 64x64 images with the default filters, 13 M for 224x224.
            * "avg" / "max": one number per channel; position is lost. With the default
              two blocks this fails on classification where position matters (on noisy
              28x28 digits "avg" scored far below "flatten"). Use it for variable-size
              images, or with deeper ``filters``.
        activation: the activation of each block.
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The encoder, a functional ``keras.Model`` named ``name``.

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: an argument of a wrong value (a shape that is not (H, W, C), an
            unknown pooling), "flatten" for variable-size images, or a weight of more
            than ``MAX_WEIGHT_ENTRIES`` entries.
    """
    height, width, channels = check_image_shape(
        input_shape, "cnn_encoder input_shape", allow_none=True, example="(28, 14, 1)"
    )
    embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
    filters = check_int_sequence(filters, "filters", example="(32, 64)")
    _check_choice(pooling, POOLING_CHOICES, "pooling")
    _check_choice(global_pooling, GLOBAL_POOLING_CHOICES, "global_pooling")
    if global_pooling == "auto":
        global_pooling = _auto_global_pooling(height, width, filters, pooling)
    dropout = check_rate(dropout, "dropout")
    sync_batch_norm = check_bool(sync_batch_norm, "cnn_encoder sync_batch_norm")
    if global_pooling == "flatten" and (height is None or width is None):
        raise ValueError(
            "global_pooling='flatten' needs a fixed height and width; use 'avg' or 'max' "
            f"for variable-size images (input_shape={input_shape!r})."
        )

    _check_cnn_weight_sizes(
        (height, width, channels), embedding_dim, filters, kernel_size, pooling, global_pooling, name
    )
    inputs = keras.Input(shape=(height, width, channels), name=f"{name}_images")
    x = inputs
    for i, num_filters in enumerate(filters):
        x = keras.layers.Conv2D(
            num_filters, kernel_size, padding="same", use_bias=not batch_norm, name=f"{name}_conv{i}"
        )(x)
        if batch_norm:
            x = _batch_norm(sync_batch_norm, f"{name}_bn{i}")(x)
        x = keras.layers.Activation(activation, name=f"{name}_act{i}")(x)
        if pooling is not None:
            x, height, width = _pool_block(x, pooling, height, width, f"{name}_pool{i}")
    x = _global_pool(x, global_pooling, f"{name}_global_pool")
    if dropout:
        x = ReplicaDropout(dropout, name=f"{name}_dropout")(x)
    outputs = keras.layers.Dense(embedding_dim, name=f"{name}_embedding")(x)
    return keras.Model(inputs, outputs, name=name)


def _check_cnn_weight_sizes(shape, embedding_dim, filters, kernel_size, pooling, global_pooling, name) -> None:
    """``_check_weight_size`` for every conv kernel and the embedding layer (a kernel_size
    that is not an int or a pair of ints is left to Keras to refuse)."""
    sizes = (kernel_size, kernel_size) if isinstance(kernel_size, numbers.Integral) else kernel_size
    if not (
        isinstance(sizes, (tuple, list))
        and len(sizes) == 2
        and all(isinstance(size, numbers.Integral) and size > 0 for size in sizes)
    ):
        return
    height, width, channels = shape
    for i, num_filters in enumerate(filters):
        _check_weight_size((*sizes, channels, num_filters), f"{name}_conv{i}", "cnn_encoder")
        channels = num_filters
        if pooling is not None:
            pool = [1 if size is not None and size < 2 else 2 for size in (height, width)]
            height = _pooled_size(height) if pool[0] == 2 else height
            width = _pooled_size(width) if pool[1] == 2 else width
    features = channels * (height * width if global_pooling == "flatten" else 1)
    _check_weight_size((features, embedding_dim), f"{name}_embedding", "cnn_encoder")


def _auto_global_pooling(height, width, filters, pooling) -> str:
    """ "flatten" for a fixed size whose flattened map is small enough, else "avg"."""
    if height is None or width is None:
        return "avg"
    for _ in filters:
        if pooling is not None:
            height = _pooled_size(height) if height >= 2 else height
            width = _pooled_size(width) if width >= 2 else width
    return "flatten" if height * width * filters[-1] <= AUTO_FLATTEN_MAX_FEATURES else "avg"


def _pool_block(x, pooling: str, height, width, layer_name: str):
    # Pool a side only if it is at least 2 (or unknown): a 1-pixel side stays 1.
    pool_size = tuple(1 if size is not None and size < 2 else 2 for size in (height, width))
    if pool_size == (1, 1):
        return x, height, width
    pool_layer = keras.layers.MaxPooling2D if pooling == "max" else keras.layers.AveragePooling2D
    x = pool_layer(pool_size, padding="same", name=layer_name)(x)
    new_height = _pooled_size(height) if pool_size[0] == 2 else height
    new_width = _pooled_size(width) if pool_size[1] == 2 else width
    return x, new_height, new_width


def _global_pool(x, global_pooling: str, layer_name: str):
    if global_pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=layer_name)(x)
    if global_pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=layer_name)(x)
    return keras.layers.Flatten(name=layer_name)(x)


# ----------------------------------------------------------------------------- RNN


def rnn_encoder(
    *,
    vocab_size=None,
    input_dim=None,
    max_length=None,
    embedding_dim=64,
    token_embedding_dim=64,
    units=(64,),
    cell="lstm",
    bidirectional=False,
    dropout=0.0,
    name="rnn_encoder",
) -> keras.Model:
    """Recurrent sequence encoder: token ids or float frames -> (batch, embedding_dim).

    One recurrent layer per entry of ``units`` (every layer but the last returns
    sequences), then a linear Dense to ``embedding_dim``. Padding is masked: extra
    trailing padding does not change the embedding.

    Layer names: f"{name}_token_embedding" or f"{name}_masking", f"{name}_{cell}{i}",
    f"{name}_embedding".

    Args:
        vocab_size: inputs are int32 token ids (batch, time); Embedding(vocab_size,
            token_embedding_dim, mask_zero=True), so id 0 is padding. Give exactly one
            of ``vocab_size`` and ``input_dim``.
        input_dim: inputs are float frames (batch, time, input_dim), e.g. MFCCs; all-zero
            frames are padding (Masking(0.0)), so a real frame must not be exactly all
            zeros.
        max_length: fixed time length, or None for variable length.
        embedding_dim: the size of the embedding.
        token_embedding_dim: the size of the token embedding (with ``vocab_size``).
        units: the units of each recurrent layer.
        cell: "lstm" or "gru".
        bidirectional: wrap every recurrent layer in ``Bidirectional``.
        dropout: the input dropout of every recurrent layer.
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The encoder, a functional ``keras.Model`` named ``name``.

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: both or neither of ``vocab_size`` and ``input_dim``, an unknown
            ``cell``, another wrong value, or a weight of more than
            ``MAX_WEIGHT_ENTRIES`` entries.
    """
    source = _sequence_source(vocab_size, input_dim, "rnn_encoder")
    embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
    if max_length is not None:
        max_length = check_positive_int(max_length, "max_length")
    units = check_int_sequence(units, "units", example="(64,)")
    recurrent_layer = RNN_CELLS[_check_choice(cell, RNN_CELLS, "cell")]
    dropout = check_rate(dropout, "dropout")
    if source == "tokens":
        token_embedding_dim = check_positive_int(token_embedding_dim, "token_embedding_dim")
        _check_weight_size((vocab_size, token_embedding_dim), f"{name}_token_embedding", "rnn_encoder")

    inputs = _sequence_input(source, max_length, input_dim, name)
    x = _embed_sequence(inputs, source, vocab_size, token_embedding_dim, name)
    for i, layer_units in enumerate(units):
        layer_name = f"{name}_{cell}{i}"
        layer = recurrent_layer(layer_units, return_sequences=i < len(units) - 1, dropout=dropout, name=layer_name)
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"{name}_bidirectional_{cell}{i}")
        x = layer(x)
    outputs = keras.layers.Dense(embedding_dim, name=f"{name}_embedding")(x)
    return keras.Model(inputs, outputs, name=name)


# ----------------------------------------------------------------------------- Transformer


def attention_encoder(
    *,
    vocab_size=None,
    input_dim=None,
    max_length=None,
    embedding_dim=64,
    model_dim=64,
    num_heads=4,
    num_layers=2,
    ff_dim=128,
    dropout=0.0,
    name="attention_encoder",
) -> keras.Model:
    """Transformer sequence encoder: token ids or float frames -> (batch, embedding_dim).

    Tokens -> Embedding(model_dim) / frames -> Dense(model_dim); + learned positions;
    ``num_layers`` TransformerEncoderBlocks (self-attention that ignores padded keys,
    residual + LayerNorm, feed-forward of width ``ff_dim``); mean over the real time
    steps; linear Dense to ``embedding_dim``. Extra trailing padding does not change
    the embedding.

    Layer names: f"{name}_token_embedding" or f"{name}_masking" + f"{name}_frame_projection",
    f"{name}_position_embedding", f"{name}_block{i}", f"{name}_pooling", f"{name}_embedding".

    Args:
        vocab_size: inputs are int32 token ids (batch, time), id 0 = padding, as in
            ``rnn_encoder``. Give exactly one of ``vocab_size`` and ``input_dim``.
        input_dim: inputs are float frames (batch, time, input_dim), all-zero = padding.
        max_length: the longest sequence (required: it sizes the learned positional
            embeddings); inputs may have any length up to it.
        embedding_dim: the size of the embedding.
        model_dim: the width of the Transformer blocks, divisible by ``num_heads``.
        num_heads: attention heads per block.
        num_layers: the number of Transformer blocks (0 or more).
        ff_dim: the hidden width of each block's feed-forward part.
        dropout: dropout rate after the positional embedding and inside each block.
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The encoder, a functional ``keras.Model`` named ``name``.

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: both or neither of ``vocab_size`` and ``input_dim``, no
            ``max_length``, ``model_dim`` not divisible by ``num_heads``, another wrong
            value, or a weight of more than ``MAX_WEIGHT_ENTRIES`` entries.
    """
    source = _sequence_source(vocab_size, input_dim, "attention_encoder")
    if max_length is None:
        raise ValueError(
            "attention_encoder needs max_length (the longest sequence it will see): "
            "it sizes the learned positional embeddings, e.g. max_length=128."
        )
    max_length = check_positive_int(max_length, "max_length")
    embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
    model_dim = check_positive_int(model_dim, "model_dim")
    num_heads = check_positive_int(num_heads, "num_heads")
    num_layers = check_int(num_layers, "num_layers", minimum=0)
    ff_dim = check_positive_int(ff_dim, "ff_dim")
    dropout = check_rate(dropout, "dropout")
    if model_dim % num_heads:
        raise ValueError(
            f"model_dim ({model_dim}) must be divisible by num_heads ({num_heads}), "
            f"e.g. model_dim={num_heads * max(1, round(model_dim / num_heads))}."
        )
    if source == "tokens":
        _check_weight_size((vocab_size, model_dim), f"{name}_token_embedding", "attention_encoder")
    _check_weight_size((max_length, model_dim), f"{name}_position_embedding", "attention_encoder")

    # Variable time axis: sequences may be shorter than max_length.
    inputs = _sequence_input(source, None, input_dim, name)
    x = _embed_sequence(inputs, source, vocab_size, model_dim, name)
    if source == "frames":
        x = keras.layers.Dense(model_dim, name=f"{name}_frame_projection")(x)
    x = PositionalEmbedding(max_length, name=f"{name}_position_embedding")(x)
    if dropout:
        x = ReplicaDropout(dropout, name=f"{name}_dropout")(x)
    for i in range(num_layers):
        x = TransformerEncoderBlock(model_dim, num_heads, ff_dim, dropout=dropout, name=f"{name}_block{i}")(x)
    x = MaskedMeanPooling(name=f"{name}_pooling")(x)
    outputs = keras.layers.Dense(embedding_dim, name=f"{name}_embedding")(x)
    return keras.Model(inputs, outputs, name=name)


# ----------------------------------------------------------------------------- MLP


def mlp_encoder(
    input_dim,
    embedding_dim=50,
    *,
    hidden_units=(1024, 1024),
    activation="sigmoid",
    batch_norm=False,
    sync_batch_norm=False,
    dropout=0.0,
    output_activation=None,
    name="mlp_encoder",
) -> keras.Model:
    """Fully connected encoder: (batch, input_dim) -> (batch, embedding_dim).

    The defaults give the DeepCCA nets of Andrew et al. 2013 (392-1024-1024-50, sigmoid).
    Each hidden layer: Dense -> optional BatchNorm -> activation -> optional dropout.

    Layer names: f"{name}_dense{i}", f"{name}_bn{i}", f"{name}_act{i}", f"{name}_dropout{i}",
    f"{name}_embedding".

    Args:
        input_dim: the input's size, an int or a 1-tuple such as (392,).
        embedding_dim: the size of the embedding.
        hidden_units: the widths of the hidden layers; () gives a single linear (or
            ``output_activation``) layer.
        activation: the hidden layers' activation.
        batch_norm: BatchNorm after each hidden Dense.
        sync_batch_norm: under a ``tf.distribute`` strategy, BatchNorm uses the global
            batch's statistics.
        dropout: rate of the dropout after each hidden layer; 0 for none.
        output_activation: the embedding layer's activation (None: linear).
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The encoder, a functional ``keras.Model`` named ``name``.

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: an argument of a wrong value (e.g. a 2-D ``input_dim``), or a weight
            of more than ``MAX_WEIGHT_ENTRIES`` entries.
    """
    if isinstance(input_dim, (tuple, list)):
        if len(input_dim) != 1:
            raise ValueError(
                f"mlp_encoder input_dim must be a positive int or a 1-tuple such as (392,); "
                f"got shape {tuple(input_dim)!r}. Flatten images first, or use cnn_encoder."
            )
        (input_dim,) = input_dim
    input_dim = check_positive_int(input_dim, "mlp_encoder input_dim")
    embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
    hidden_units = () if not hidden_units else check_int_sequence(hidden_units, "hidden_units", example="(1024, 1024)")
    dropout = check_rate(dropout, "dropout")
    sync_batch_norm = check_bool(sync_batch_norm, "mlp_encoder sync_batch_norm")

    for i, (rows, columns) in enumerate(zip((input_dim, *hidden_units), (*hidden_units, embedding_dim))):
        _check_weight_size(
            (rows, columns), f"{name}_dense{i}" if i < len(hidden_units) else f"{name}_embedding", "mlp_encoder"
        )
    inputs = keras.Input(shape=(input_dim,), name=f"{name}_inputs")
    x = inputs
    for i, layer_units in enumerate(hidden_units):
        if batch_norm:
            x = keras.layers.Dense(layer_units, use_bias=False, name=f"{name}_dense{i}")(x)
            x = _batch_norm(sync_batch_norm, f"{name}_bn{i}")(x)
            x = keras.layers.Activation(activation, name=f"{name}_act{i}")(x)
        else:
            x = keras.layers.Dense(layer_units, activation=activation, name=f"{name}_dense{i}")(x)
        if dropout:
            x = ReplicaDropout(dropout, name=f"{name}_dropout{i}")(x)
    outputs = keras.layers.Dense(embedding_dim, activation=output_activation, name=f"{name}_embedding")(x)
    return keras.Model(inputs, outputs, name=name)


# ----------------------------------------------------------------------------- text


@keras.saving.register_keras_serializable(package="xmodal_tf")
def normalize_text(texts):
    """Normalise text for tokenizing: "Man-Woman: Kiss" -> " man woman kiss ".

    Lower-case; every run of characters other than letters and digits becomes one
    space, and one space is added at each end. The end spaces mark word boundaries for
    character n-grams (" ma", "an " differ from "man"). Registered, so a saved
    ``TextVectorization`` that uses it reloads.

    Args:
        texts: a ``tf.string`` tensor.

    Returns:
        The normalised texts, a ``tf.string`` tensor of the same shape.
    """
    texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, r"[^\pL\pN]+", " ")
    texts = tf.strings.strip(texts)
    return tf.strings.join([" ", texts, " "])


def text_encoder(
    texts=None,
    *,
    vocabulary=None,
    tokens="char_ngrams",
    ngram_sizes=None,
    max_tokens=20000,
    sequence_length=None,
    token_embedding_dim=64,
    hidden_units=(),
    embedding_dim=64,
    dropout=0.0,
    name="text_encoder",
) -> keras.Model:
    """Bag-of-n-grams encoder of raw strings: (batch,) tf.string -> (batch, embedding_dim).

    The tokenizer is a ``TextVectorization`` layer inside the model, so the model (and a
    ``.keras`` file of it) takes raw text such as ``np.array(["red apple"])``. Model:
    token ids (0 = padding, 1 = out of vocabulary) -> Embedding(mask_zero) -> mean over
    the real tokens -> Dense + ReLU per entry of ``hidden_units`` (each followed by
    ``dropout``) -> linear Dense to ``embedding_dim``. Padding is masked: the embedding
    does not depend on ``sequence_length`` for texts that fit.

    Layer names: f"{name}_vectorizer", f"{name}_token_embedding", f"{name}_pooling",
    f"{name}_dense{i}", f"{name}_dropout{i}", f"{name}_embedding"; with
    "words_and_char_ngrams" also f"{name}_word_vectorizer", f"{name}_word_embedding",
    f"{name}_word_pooling" and f"{name}_sum" (the first three names are the characters').
    The input is a string tensor f"{name}_text" of shape (batch,): numbers are rejected
    by ``DualEncoder`` with a TypeError, and by Keras (a cast error) when called directly.

    Args:
        texts: strings to learn the vocabulary from (the training texts). Give exactly
            one of ``texts`` and ``vocabulary``.
        vocabulary: the token list itself (e.g. ``other.get_layer(...).get_vocabulary()``
            without its first two entries, "" and "[UNK]"); a pair (character tokens,
            word tokens) with ``tokens="words_and_char_ngrams"``.
        tokens: what a token is.

            * "char_ngrams" (default): character n-grams of the normalised text
              (``normalize_text``: lower case, letters and digits, word boundaries marked
              by spaces), ``ngram_sizes`` default (3,). An unseen word still shares most of
              its n-grams with known words ("apples" with "apple"), which matters for
              zero-shot use on new names.
            * "words": whitespace words of the normalised text, ``ngram_sizes`` default
              (1,) (add 2 for word pairs). An unseen word is the single out-of-vocabulary
              token.
            * "words_and_char_ngrams": both bags, each embedded and mean-pooled on its
              own, their pooled vectors added (``ngram_sizes`` are the character
              n-grams'). Whole words weigh as much as all of a text's character n-grams
              together, so a short distinguishing word ("dark" against "medium dark") is
              not drowned, while unseen words still share n-grams.
        ngram_sizes: the n-gram sizes; None for the default of ``tokens``.
        max_tokens: vocabulary cap (most frequent first), including "" and "[UNK]".
        sequence_length: tokens kept per text, default 128 for "char_ngrams" (about 125
            characters with trigrams) and 32 for "words"; longer texts are truncated.
        token_embedding_dim: the size of the token embedding.
        hidden_units: the widths of the Dense + ReLU layers after the pooling; () for none.
        embedding_dim: the size of the embedding.
        dropout: rate of the dropout after each hidden layer; 0 for none.
        name: the model's name, and the prefix of its layers' names.

    Returns:
        The encoder, a functional ``keras.Model`` named ``name``.

    Raises:
        TypeError: an argument of a wrong type (e.g. texts that are not strings).
        ValueError: both or neither of ``texts`` and ``vocabulary``, an empty one, an
            unknown ``tokens``, or another wrong value.
    """
    _check_choice(tokens, TEXT_TOKENS, "tokens")
    default_sizes, default_length = ((1,), 32) if tokens == "words" else ((3,), 128)
    ngram_sizes = (
        default_sizes if ngram_sizes is None else check_int_sequence(ngram_sizes, "ngram_sizes", example="(3,)")
    )
    sequence_length = check_positive_int(
        default_length if sequence_length is None else sequence_length, "sequence_length"
    )
    max_tokens = check_int(max_tokens, "max_tokens", minimum=3)
    token_embedding_dim = check_positive_int(token_embedding_dim, "token_embedding_dim")
    embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
    hidden_units = () if not hidden_units else check_int_sequence(hidden_units, "hidden_units", example="(128,)")
    dropout = check_rate(dropout, "dropout")

    both = tokens == "words_and_char_ngrams"
    if both and vocabulary is not None and (isinstance(vocabulary, (str, bytes)) or len(vocabulary) != 2):
        raise ValueError(
            "tokens='words_and_char_ngrams' takes vocabulary as a pair (character tokens, word "
            "tokens), or texts to learn both from."
        )
    inputs = keras.Input(shape=(), dtype="string", name=f"{name}_text")
    x = _pooled_tokens(
        inputs,
        "character" if tokens != "words" else "whitespace",
        ngram_sizes,
        max_tokens,
        sequence_length,
        token_embedding_dim,
        texts,
        vocabulary[0] if both and vocabulary is not None else vocabulary,
        (f"{name}_vectorizer", f"{name}_token_embedding", f"{name}_pooling"),
    )
    if both:
        words = _pooled_tokens(
            inputs,
            "whitespace",
            (1,),
            max_tokens,
            32,
            token_embedding_dim,
            texts,
            None if vocabulary is None else vocabulary[1],
            (f"{name}_word_vectorizer", f"{name}_word_embedding", f"{name}_word_pooling"),
        )
        x = keras.layers.Add(name=f"{name}_sum")([x, words])
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"{name}_dense{i}")(x)
        if dropout:
            x = ReplicaDropout(dropout, name=f"{name}_dropout{i}")(x)
    outputs = keras.layers.Dense(embedding_dim, name=f"{name}_embedding")(x)
    return keras.Model(inputs, outputs, name=name)


def _pooled_tokens(inputs, split, ngram_sizes, max_tokens, sequence_length, embedding_dim, texts, vocabulary, names):
    """Raw strings -> tokens (``split``: "character" or "whitespace") -> Embedding ->
    mean over the real tokens: (batch, embedding_dim). ``names``: the three layers'."""
    vectorizer = keras.layers.TextVectorization(
        max_tokens=max_tokens,
        standardize=normalize_text,
        split=split,
        ngrams=ngram_sizes,
        output_mode="int",
        output_sequence_length=sequence_length,
        name=names[0],
    )
    _set_text_vocabulary(vectorizer, texts, vocabulary)
    x = keras.layers.Embedding(vectorizer.vocabulary_size(), embedding_dim, mask_zero=True, name=names[1])(
        vectorizer(inputs)
    )
    return MaskedMeanPooling(name=names[2])(x)


def _as_string_array(values, what: str) -> np.ndarray:
    """A 1-D NumPy array of str from a list, array or tensor of strings; TypeError otherwise."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of strings, not a single string; wrap it in a list.")
    if isinstance(values, tf.Tensor):
        values = values.numpy()
    array = np.asarray(values, dtype=object).reshape(-1) if not isinstance(values, np.ndarray) else values.reshape(-1)
    for value in array:
        if not isinstance(value, (str, bytes, np.str_, np.bytes_)):
            raise TypeError(f"{what} must contain strings; found {value!r} ({type(value).__name__}).")
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array])


def _set_text_vocabulary(vectorizer, texts, vocabulary) -> None:
    if (texts is None) == (vocabulary is None):
        raise ValueError(
            "text_encoder needs exactly one of texts (strings to learn the vocabulary from) or "
            f"vocabulary (a list of tokens); got texts={'None' if texts is None else '...'}, "
            f"vocabulary={'None' if vocabulary is None else '...'}."
        )
    if texts is not None:
        texts = _as_string_array(texts, "texts")
        if texts.size == 0:
            raise ValueError("texts is empty: pass the training texts to learn the vocabulary from.")
        vectorizer.adapt(tf.constant(texts))
    else:
        vocabulary = _as_string_array(vocabulary, "vocabulary")
        if vocabulary.size == 0:
            raise ValueError("vocabulary is empty: pass at least one token.")
        vectorizer.set_vocabulary([str(token) for token in vocabulary])


# ----------------------------------------------------------------------------- pretrained backbones


class _Backbone(NamedTuple):
    application: str  # constructor name in keras.applications
    preprocessing: str | None  # ImageNetPreprocessing mode, None if the application scales itself
    options: dict  # extra constructor arguments


BACKBONE_ARCHITECTURES = {
    "resnet50": _Backbone("ResNet50", "caffe", {}),
    "mobilenet_v2": _Backbone("MobileNetV2", "tf", {}),
    "mobilenet_v3_small": _Backbone("MobileNetV3Small", None, {"include_preprocessing": True}),
    "mobilenet_v3_large": _Backbone("MobileNetV3Large", None, {"include_preprocessing": True}),
    "efficientnet_b0": _Backbone("EfficientNetB0", None, {}),  # rescales and normalises inside
}


def backbone_encoder(
    architecture="mobilenet_v3_small",
    *,
    input_shape=None,
    embedding_dim=None,
    weights=None,
    trainable=False,
    pooling="avg",
    name=None,
) -> keras.Model:
    """A ``keras.applications`` image model as an encoder: (batch, H, W, 3) -> (batch, dim).

    Inputs are 0..255 RGB images (uint8 range, float dtype); the scaling the backbone was
    trained with is inside the model ("caffe" mean subtraction for resnet50, [-1, 1] for
    mobilenet_v2, the applications' own rescaling for mobilenet_v3_* and efficientnet_b0).

    A keras-hub image preset works too: ``architecture="pretrained:<preset name, handle or
    directory>"``, or the path of a local preset directory, builds
    ``xmodal_tf.pretrained.pretrained_encoder(preset, modality="image", ...)`` (needs
    keras-hub; a handle needs the internet). There ``input_shape`` gives the image size,
    ``weights`` must stay None (the preset holds its weights), and ``pooling`` "avg" (the
    default) leaves the pooling to the preset's output ("cls" token for ViT-like
    backbones, the spatial mean for feature maps); "cls" or "mean" choose it.

        >>> backbone_encoder("pretrained:/data/presets/vit_tiny", input_shape=(32, 32, 3), embedding_dim=64)

    Args:
        architecture: one of ``BACKBONE_ARCHITECTURES``, or a keras-hub image preset as above.
        input_shape: (H, W, 3); H and W may be None. None: (224, 224, 3), or for a preset
            its own size (also when H and W are None).
        embedding_dim: if given, a linear Dense f"{name}_embedding" to this size follows
            the pooled features; None outputs the pooled features themselves.
        weights: None (random init), "imagenet" (downloaded by Keras, needs internet), or
            the path of a local weights file (.h5 / .weights.h5) for the backbone
            without its top, e.g. a downloaded ``..._notop.h5`` or a file written by
            ``model.get_layer(f"{name}_backbone").save_weights(...)``.
        trainable: whether the backbone's weights train (the projection always does).
        pooling: the backbone's global pooling, "avg" or "max" (a preset: "avg", "cls" or "mean").
        name: model name, default f"{architecture}_encoder" (a preset: f"{preset}_encoder");
            the wrapped application is the layer f"{name}_backbone".

    Returns:
        The encoder, a functional ``keras.Model`` named ``name``.

    Raises:
        TypeError: ``weights`` is neither None, "imagenet" nor a path, or another
            argument has a wrong type.
        ValueError: an unknown architecture or pooling, a weights path not ending in
            ".h5", or weights that do not fit the backbone.
        FileNotFoundError: the weights file does not exist, or a preset directory is missing.
        RuntimeError: "imagenet" weights while offline, or their download failed.
        xmodal_tf.pretrained.HubUnreachableError: a preset handle while offline.
    """
    preset = os.fspath(architecture) if isinstance(architecture, (str, os.PathLike)) else None
    if preset is not None and (
        preset.startswith("pretrained:") or (preset not in BACKBONE_ARCHITECTURES and os.path.isdir(preset))
    ):
        from xmodal_tf.pretrained import pretrained_encoder

        if weights is not None:
            raise ValueError(
                f"weights={weights!r} does not apply to the keras-hub preset {preset!r}, which holds its own "
                "weights; leave weights=None."
            )
        if pooling not in ("avg", "cls", "mean"):
            raise ValueError(
                f"pooling for a keras-hub preset must be 'avg' (its default), 'cls' or 'mean'; got {pooling!r}."
            )
        size = None
        if input_shape is not None:
            height, width, channels = check_image_shape(
                input_shape, "backbone_encoder input_shape", allow_none=True, example="(224, 224, 3)"
            )
            if channels != 3:
                raise ValueError(
                    f"A keras-hub image preset takes RGB images (H, W, 3); got input_shape={input_shape!r}."
                )
            size = None if height is None or width is None else (height, width)
        return pretrained_encoder(
            preset.removeprefix("pretrained:"),
            modality="image",
            embedding_dim=embedding_dim,
            pooling=None if pooling == "avg" else pooling,
            image_size=size,
            trainable=trainable,
            name=name,
        )
    if input_shape is None:
        input_shape = (224, 224, 3)
    if architecture not in BACKBONE_ARCHITECTURES:
        raise ValueError(
            f"Unknown backbone architecture {architecture!r}; choose one of {tuple(BACKBONE_ARCHITECTURES)}, "
            "or a keras-hub image preset as 'pretrained:<preset name or directory>'."
        )
    spec = BACKBONE_ARCHITECTURES[architecture]
    input_shape = check_image_shape(
        input_shape, "backbone_encoder input_shape", allow_none=True, example="(224, 224, 3)"
    )
    if embedding_dim is not None:
        embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
    _check_choice(pooling, BACKBONE_POOLING_CHOICES, "pooling")
    weights_path = _check_backbone_weights(weights)
    name = name or f"{architecture}_encoder"

    backbone = _build_application(spec, input_shape, pooling, imagenet=weights == "imagenet", name=f"{name}_backbone")
    if weights_path is not None:
        _load_backbone_weights(backbone, weights_path, architecture)
    backbone.trainable = trainable

    inputs = keras.Input(shape=input_shape, name=f"{name}_images")
    x = inputs
    if spec.preprocessing is not None:
        x = ImageNetPreprocessing(spec.preprocessing, name=f"{name}_preprocessing")(x)
    x = backbone(x)
    if embedding_dim is not None:
        x = keras.layers.Dense(embedding_dim, name=f"{name}_embedding")(x)
    return keras.Model(inputs, x, name=name)


def _check_backbone_weights(weights) -> str | None:
    """The local weights path to load, or None for weights=None / "imagenet"."""
    if weights is None:
        return None
    if weights == "imagenet":
        if not network_reachable(KERAS_WEIGHTS_HOST):
            raise RuntimeError(
                f"weights='imagenet' needs internet access to download the weights from "
                f"{KERAS_WEIGHTS_HOST}, which is unreachable (offline?). Download the '..._notop.h5' "
                "weights file elsewhere and pass its local path instead, e.g. weights='/path/to/file.h5', "
                "or use weights=None for random initialisation."
            )
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be None, 'imagenet' or a path to a local .h5 / .weights.h5 file, got {weights!r}."
        )
    path = os.fspath(weights)
    if not path.endswith(".h5"):
        raise ValueError(f"weights must be None, 'imagenet' or a path to a .h5 / .weights.h5 file, got {path!r}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Backbone weights file not found: {path!r}. Pass an existing .h5 / .weights.h5 "
            "file, weights='imagenet' (needs internet) or weights=None."
        )
    return path


def _build_application(spec: _Backbone, input_shape, pooling: str, *, imagenet: bool, name: str) -> keras.Model:
    constructor = getattr(keras.applications, spec.application)
    try:
        return constructor(
            include_top=False,
            weights="imagenet" if imagenet else None,
            input_shape=input_shape,
            pooling=pooling,
            name=name,
            **spec.options,
        )
    except (ValueError, TypeError):
        raise
    except Exception as error:  # keras.utils.get_file raises a bare Exception on download failure
        if not imagenet:
            raise
        raise RuntimeError(
            f"Downloading the ImageNet weights for {spec.application} failed ({error}). "
            "Pass the path of a local weights file instead, e.g. weights='/path/to/file.h5'."
        ) from error


def _load_backbone_weights(backbone: keras.Model, path: str, architecture: str) -> None:
    try:
        backbone.load_weights(path)
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"Could not load {path!r} into the {architecture} backbone (include_top=False, "
            f"input_shape={backbone.input_shape[1:]}): {error}"
        ) from error
