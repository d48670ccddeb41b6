"""The ``text_encoder`` / ``image_encoder`` settings: "pretrained:<preset or directory>" swaps
an experiment's own encoder for a keras-hub backbone (``xmodal_tf.pretrained``).

The experiments' images are floats in [0, 1] of their own size and channels; a pretrained
image encoder takes 0..255 RGB. ``pretrained_image_encoder`` puts the conversion in front
of it (scale, grey to RGB), inside one functional model; the pretrained encoder resizes to
its backbone's size where that is fixed.
"""

from __future__ import annotations

from xmodal_tf.experiments.config import Prefixed

__all__ = [
    "PRETRAINED",
    "PRETRAINED_CONSTRAINT",
    "pretrained_image_encoder",
    "pretrained_source",
    "pretrained_text_encoder",
]

PRETRAINED = "pretrained:"
PRETRAINED_CONSTRAINT = Prefixed(PRETRAINED, "<keras-hub preset name or local preset directory>")
PRETRAINED_NOTE = "null: the experiment's own encoder; pretrained:<preset or directory>: a keras-hub backbone"


def pretrained_source(value) -> str | None:
    """The preset name or directory of a "pretrained:<...>" setting; None for null."""
    return None if value is None else value[len(PRETRAINED) :].strip()


def pretrained_text_encoder(source: str, embedding_dim: int, *, trainable: bool, name: str):
    """A pretrained text encoder: raw strings (batch,) -> (batch, embedding_dim)."""
    from xmodal_tf.pretrained import pretrained_encoder

    return pretrained_encoder(source, modality="text", embedding_dim=embedding_dim, trainable=trainable, name=name)


def pretrained_image_encoder(source: str, input_shape, embedding_dim: int, *, trainable: bool, name: str):
    """A pretrained image encoder behind the conversion from an experiment's images.

    Args:
        source: the preset name or directory.
        input_shape: (H, W, C) of the experiment's images, floats in [0, 1], C = 1 or 3.
        embedding_dim: the output size (a Dense after the backbone's pooled features).
        trainable: whether the backbone trains (the Dense always does).
        name: the model's name; the pretrained part is f"{name}_pretrained".

    Returns:
        A functional ``keras.Model``: (batch, H, W, C) -> (batch, embedding_dim).
    """
    import keras

    from xmodal_tf.pretrained import pretrained_encoder

    height, width, channels = (int(size) for size in input_shape)
    encoder = pretrained_encoder(
        source,
        modality="image",
        embedding_dim=embedding_dim,
        trainable=trainable,
        image_size=(height, width),
        name=f"{name}_pretrained",
    )
    inputs = keras.Input((height, width, channels), name=f"{name}_images")
    images = keras.layers.Rescaling(255.0, name=f"{name}_to_255")(inputs)
    if channels == 1:
        images = keras.layers.Concatenate(name=f"{name}_to_rgb")([images, images, images])
    # The pretrained encoder resizes to its backbone's fixed size itself (``image_size``).
    return keras.Model(inputs, encoder(images), name=name)
