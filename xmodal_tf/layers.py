"""Small reusable Keras layers used by the encoders.

Every layer is registered under the ``xmodal_tf`` package, so models that use
them reload with plain ``keras.models.load_model(path)``.

* ``PositionalEmbedding``     -- adds a learned vector per time step; passes the mask on.
* ``TransformerEncoderBlock`` -- self-attention + feed-forward, each with residual and
  LayerNorm; padded time steps are never attended to.
* ``MaskedMeanPooling``       -- mean over the time steps that are not padding.
* ``ImageNetPreprocessing``   -- the input scaling an ImageNet backbone was trained with
  ("caffe", "tf" or "torch" mode), for images given as 0..255 RGB.

Masks follow the Keras convention: a boolean tensor (batch, time), True where the
step holds data and False where it is padding.
"""
from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "xmodal_tf"


class _ShapeAndMaskPreserving:
    """For layers whose output has the input's shape and keeps the input's padding mask."""

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PositionalEmbedding(_ShapeAndMaskPreserving, keras.layers.Layer):
    """Adds a learned position vector to each time step.

    Input (batch, time, features) with time <= max_length; output has the same shape.
    The incoming padding mask is passed on unchanged.
    """

    def __init__(self, max_length, embeddings_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.max_length = int(max_length)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        self._check_length(input_shape[1])
        feature_dim = input_shape[-1]
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(self.max_length, feature_dim),
            initializer=self.embeddings_initializer,
        )
        super().build(input_shape)

    def call(self, inputs):
        length = ops.shape(inputs)[1]
        self._check_length(length)
        positions = self.position_embeddings[:length]
        return inputs + ops.cast(positions, inputs.dtype)

    def _check_length(self, length):
        # Only a statically known length can be checked here (always the case when eager).
        if isinstance(length, int) and length > self.max_length:
            raise ValueError(f"Sequence length {length} exceeds max_length={self.max_length} of "
                             f"{self.name}; truncate the inputs or build the encoder with a larger max_length.")

    def get_config(self):
        config = super().get_config()
        config.update({
            "max_length": self.max_length,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        })
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TransformerEncoderBlock(_ShapeAndMaskPreserving, keras.layers.Layer):
    """One post-LayerNorm Transformer encoder block.

    x = LayerNorm(x + Dropout(SelfAttention(x)))
    x = LayerNorm(x + Dropout(FeedForward(x)))

    Input and output (batch, time, model_dim). With a padding mask, padded steps are
    removed from the keys, so they cannot change the outputs at real steps.
    """

    def __init__(self, model_dim, num_heads, ff_dim, dropout=0.0, activation="relu", **kwargs):
        super().__init__(**kwargs)
        if model_dim % num_heads:
            raise ValueError(f"model_dim ({model_dim}) must be divisible by num_heads ({num_heads}).")
        self.model_dim = int(model_dim)
        self.num_heads = int(num_heads)
        self.ff_dim = int(ff_dim)
        self.dropout = float(dropout)
        self.activation = keras.activations.get(activation)
        self.supports_masking = True

        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=self.model_dim // self.num_heads,
            dropout=self.dropout, name="self_attention")
        self.attention_dropout = keras.layers.Dropout(self.dropout, name="attention_dropout")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.feed_forward_hidden = keras.layers.Dense(
            self.ff_dim, activation=self.activation, name="feed_forward_hidden")
        self.feed_forward_output = keras.layers.Dense(self.model_dim, name="feed_forward_output")
        self.feed_forward_dropout = keras.layers.Dropout(self.dropout, name="feed_forward_dropout")
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="feed_forward_norm")

    def build(self, input_shape):
        hidden_shape = tuple(input_shape[:-1]) + (self.ff_dim,)
        self.attention.build(input_shape, input_shape)
        self.attention_norm.build(input_shape)
        self.feed_forward_hidden.build(input_shape)
        self.feed_forward_output.build(hidden_shape)
        self.feed_forward_norm.build(input_shape)
        super().build(input_shape)

    def call(self, inputs, mask=None, training=None):
        attention_mask = None
        if mask is not None:
            # (batch, 1, keys): every query may look at every real key, never at padding.
            # Masking keys only (not queries) keeps padded query rows finite.
            attention_mask = ops.expand_dims(ops.cast(mask, "bool"), axis=1)
        attended = self.attention(inputs, inputs, attention_mask=attention_mask, training=training)
        x = self.attention_norm(inputs + self.attention_dropout(attended, training=training))
        hidden = self.feed_forward_output(self.feed_forward_hidden(x))
        return self.feed_forward_norm(x + self.feed_forward_dropout(hidden, training=training))

    def get_config(self):
        config = super().get_config()
        config.update({
            "model_dim": self.model_dim,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
        })
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedMeanPooling(keras.layers.Layer):
    """Mean over time of the steps that are not padding.

    Input (batch, time, features) -> output (batch, features). Without a mask this is a
    plain mean. A sequence that is all padding gives zeros (not NaN).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.mean(inputs, axis=1)
        weights = ops.expand_dims(ops.cast(mask, inputs.dtype), axis=-1)
        total = ops.sum(inputs * weights, axis=1)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        return total / count

    def compute_mask(self, inputs, mask=None):
        return None  # the time axis is gone

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


# Per-channel ImageNet statistics in RGB order and 0..255 units. The caffe and torch
# conventions were computed separately and differ slightly; each mode keeps its own.
_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
_TORCH_MEAN_RGB = (123.675, 116.28, 103.53)   # (0.485, 0.456, 0.406) * 255
_TORCH_STD_RGB = (58.395, 57.12, 57.375)      # (0.229, 0.224, 0.225) * 255
PREPROCESSING_MODES = ("caffe", "tf", "torch")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ImageNetPreprocessing(keras.layers.Layer):
    """Scales 0..255 RGB images the way an ImageNet backbone expects.

    mode="caffe": RGB -> BGR, then subtract the ImageNet mean (ResNet50, VGG).
    mode="tf":    scale to [-1, 1] (MobileNetV2, ResNetV2, Inception).
    mode="torch": scale to [0, 1], then standardise with the ImageNet mean / std (DenseNet).
    Input and output (batch, height, width, 3).
    """

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"Unknown preprocessing mode {mode!r}; choose one of {PREPROCESSING_MODES}.")
        self.mode = mode

    def call(self, inputs):
        images = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN_RGB, dtype=images.dtype)
            std = ops.convert_to_tensor(_TORCH_STD_RGB, dtype=images.dtype)
            return (images - mean) / std
        mean = ops.convert_to_tensor(_CAFFE_MEAN_RGB, dtype=images.dtype)
        return ops.flip(images - mean, axis=-1)  # caffe: BGR channel order

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
