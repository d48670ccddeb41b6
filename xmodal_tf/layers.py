"""Small reusable Keras layers: sequence and image helpers for the encoders, and fusion layers.

Encoder helpers: ``PositionalEmbedding``, ``TransformerEncoderBlock``, ``MaskedMeanPooling`` and
``ImageNetPreprocessing``; padding masks follow Keras: boolean (batch, time), True where a step holds data.
Fusion layers combine per-modality embeddings, a list ``[e_1, ..., e_n]`` or a dict ``{name: e_i}`` of
(batch, d_i) tensors, into one (batch, d) tensor: ``AverageFusion``, ``WeightedFusion``, ``ConcatFusion``,
``GatedFusion``, ``AttentionFusion``, ``TensorFusion`` and ``LateFusion``. Each takes ``mask``, a
(batch, n_modalities) presence mask (True / nonzero = present; ``None``: all present); absent embeddings
are zeroed and get weight 0. ``ModalityDropout`` drops modalities from that mask in training;
``ReplicaDropout`` is ``keras.layers.Dropout`` with masks that differ between ``tf.distribute`` replicas.

Every layer is registered under the ``xmodal_tf`` package, so models that use them reload with plain
``keras.models.load_model(path)``.

Design notes (the presence mask, replicas): docs/DESIGN.md (section xmodal_tf/layers.py).
"""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf
from keras import ops

from xmodal_tf._replicas import draw_rows
from xmodal_tf._validation import check_int_sequence, check_positive_int, check_rate

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

    Args:
        max_length: the longest sequence: how many position vectors are learned.
        embeddings_initializer: initializer of the (max_length, features) position vectors.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype`` ...).

    Raises:
        ValueError: when built or called, a sequence longer than ``max_length``.
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
            name="position_embeddings", shape=(self.max_length, feature_dim), initializer=self.embeddings_initializer
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
            raise ValueError(
                f"Sequence length {length} exceeds max_length={self.max_length} of "
                f"{self.name}; truncate the inputs or build the encoder with a larger max_length."
            )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_length": self.max_length,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TransformerEncoderBlock(_ShapeAndMaskPreserving, keras.layers.Layer):
    """One post-LayerNorm Transformer encoder block.

    x = LayerNorm(x + Dropout(SelfAttention(x)))
    x = LayerNorm(x + Dropout(FeedForward(x)))

    Input and output (batch, time, model_dim). With a padding mask, padded steps are
    removed from the keys, so they cannot change the outputs at real steps.

    Args:
        model_dim: the width of the inputs and outputs, divisible by ``num_heads``.
        num_heads: attention heads, each with keys of size model_dim // num_heads.
        ff_dim: the hidden width of the feed-forward part.
        dropout: dropout rate of the attention weights and of both residual branches.
        activation: the activation of the feed-forward hidden layer.
        **kwargs: ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: ``model_dim`` is not divisible by ``num_heads``.
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
            num_heads=self.num_heads,
            key_dim=self.model_dim // self.num_heads,
            dropout=self.dropout,
            name="self_attention",
        )
        self.attention_dropout = ReplicaDropout(self.dropout, name="attention_dropout")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.feed_forward_hidden = keras.layers.Dense(
            self.ff_dim, activation=self.activation, name="feed_forward_hidden"
        )
        self.feed_forward_output = keras.layers.Dense(self.model_dim, name="feed_forward_output")
        self.feed_forward_dropout = ReplicaDropout(self.dropout, name="feed_forward_dropout")
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
        config.update(
            {
                "model_dim": self.model_dim,
                "num_heads": self.num_heads,
                "ff_dim": self.ff_dim,
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
            }
        )
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
_TORCH_MEAN_RGB = (123.675, 116.28, 103.53)  # (0.485, 0.456, 0.406) * 255
_TORCH_STD_RGB = (58.395, 57.12, 57.375)  # (0.229, 0.224, 0.225) * 255
PREPROCESSING_MODES = ("caffe", "tf", "torch")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ImageNetPreprocessing(keras.layers.Layer):
    """Scales 0..255 RGB images the way an ImageNet backbone expects.

    mode="caffe": RGB -> BGR, then subtract the ImageNet mean (ResNet50, VGG).
    mode="tf":    scale to [-1, 1] (MobileNetV2, ResNetV2, Inception).
    mode="torch": scale to [0, 1], then standardise with the ImageNet mean / std (DenseNet).
    Input and output (batch, height, width, 3).

    Args:
        mode: "caffe" (default), "tf" or "torch" (``PREPROCESSING_MODES``).
        **kwargs: ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: an unknown ``mode``.
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


# ----------------------------------------------------------------------------- fusion
# Products of (d_i + 1) sizes above this are refused: the next Dense would need
# millions of weights per unit. Project the embeddings to fewer dimensions first.
MAX_TENSOR_FUSION_FEATURES = 2**20


def _check_modality_names(modalities, layer: str) -> tuple[str, ...]:
    if isinstance(modalities, str) or not hasattr(modalities, "__iter__"):
        raise TypeError(
            f"{layer}: modalities must be a sequence of names such as ('image', 'audio'); got {modalities!r}."
        )
    names = tuple(modalities)
    if not names or not all(isinstance(name, str) for name in names) or len(set(names)) != len(names):
        raise ValueError(f"{layer}: modalities must be distinct, non-empty strings; got {names!r}.")
    return names


def _masked_softmax(logits, present):
    """Softmax over the last axis using only the entries where ``present`` is True.

    Absent entries get weight exactly 0; a row with nothing present gets all zeros.
    Every intermediate value is finite, so no NaN reaches the gradients either.
    """
    if present is None:
        return ops.softmax(logits, axis=-1)
    any_present = ops.any(present, axis=-1, keepdims=True)
    lowest = ops.full_like(logits, -1e9)
    # initial=: the same maximum, and no "empty tensor" error for a batch of 0 rows.
    row_max = ops.max(ops.where(present, logits, lowest), axis=-1, keepdims=True, initial=-1e9)
    row_max = ops.stop_gradient(ops.where(any_present, row_max, ops.zeros_like(row_max)))
    exps = ops.exp(ops.where(present, logits - row_max, ops.zeros_like(logits)))
    exps = exps * ops.cast(present, logits.dtype)
    # A row with something present sums to >= 1 (its maximum contributes exp(0)).
    return exps / ops.maximum(ops.sum(exps, axis=-1, keepdims=True), 1.0)


def _dense_stack(hidden_units, activation, dropout, prefix: str):
    """[(Dense, Dropout or None), ...] for an MLP."""
    return [
        (
            keras.layers.Dense(units, activation=activation, name=f"{prefix}_dense{i}"),
            ReplicaDropout(dropout, name=f"{prefix}_dropout{i}") if dropout else None,
        )
        for i, units in enumerate(hidden_units)
    ]


def _build_dense_stack(stack, input_dim: int) -> int:
    for dense, _ in stack:
        dense.build((None, input_dim))
        input_dim = dense.units
    return input_dim


def _run_dense_stack(stack, x, training):
    for dense, dropout in stack:
        x = dense(x)
        if dropout is not None:
            x = dropout(x, training=training)
    return x


class _ModalityFusion(keras.layers.Layer):
    """Shared machinery of the fusion layers.

    Inputs: a list of n (batch, d_i) embeddings, or a dict read in ``modalities`` order
    (sorted keys when ``modalities`` is None). ``mask``: optional (batch, n) presence
    mask (bool, or numbers where nonzero = present), columns in the same order.
    """

    requires_equal_sizes = False

    def __init__(self, modalities=None, **kwargs):
        super().__init__(**kwargs)
        self.modalities = None if modalities is None else _check_modality_names(modalities, self.name)
        # Lets Keras hand our (batch, n) presence mask to `call` without a "mask
        # destroyed" warning; compute_mask stops it from propagating downstream.
        self.supports_masking = True
        self.embedding_dims = None

    # ------------------------------------------------------------------ inputs
    def _ordered(self, inputs) -> list:
        kind = type(self).__name__
        if isinstance(inputs, dict):
            names = self.modalities or tuple(sorted(inputs))
            if set(names) != set(inputs):
                raise ValueError(
                    f"{self.name} ({kind}) expects the modalities {list(names)}; got a dict "
                    f"with keys {sorted(map(str, inputs))}."
                )
            return [inputs[name] for name in names]
        if isinstance(inputs, (list, tuple)) and inputs and not isinstance(inputs[0], (int, type(None))):
            if self.modalities is not None and len(inputs) != len(self.modalities):
                raise ValueError(
                    f"{self.name} ({kind}) was configured for {len(self.modalities)} modalities "
                    f"{list(self.modalities)}; got {len(inputs)} embeddings."
                )
            return list(inputs)
        raise TypeError(
            f"{self.name} ({kind}) expects a list or dict of (batch, features) embeddings, "
            f"one per modality; got {type(inputs).__name__} {inputs!r:.80}. "
            "Wrap a single embedding in a list: layer([embedding])."
        )

    def _inputs(self, inputs, mask) -> tuple:
        """(embeddings in order, (batch, n) boolean presence or None) for ``call``, with the
        shapes checked against the built sizes and each other where they are known (always
        when called eagerly): one ValueError naming the modality instead of an op error."""
        embeddings = self._ordered(inputs)
        kind = f"{self.name} ({type(self).__name__})"
        if self.embedding_dims is not None and len(embeddings) != len(self.embedding_dims):
            raise ValueError(f"{kind} was built for {len(self.embedding_dims)} embeddings; got {len(embeddings)}.")
        rows = {}
        for index, embedding in enumerate(embeddings):
            shape = tuple(getattr(embedding, "shape", ()))
            expected = None if self.embedding_dims is None else self.embedding_dims[index]
            if len(shape) != 2 or (expected is not None and shape[1] is not None and shape[1] != expected):
                features = "features" if expected is None else f"{expected} features"
                raise ValueError(
                    f"{kind}: the embedding of modality {self._label(index)} must be (batch, "
                    f"{features}); got shape {shape}."
                )
            if shape[0] is not None:
                rows[self._label(index)] = shape[0]
        present = self._presence(mask, len(embeddings))
        if present is not None and present.shape[0] is not None:
            rows["mask"] = present.shape[0]
        if len(set(rows.values())) > 1:
            raise ValueError(f"{kind}: the embeddings and the mask must have one row per example; got rows {rows}.")
        return embeddings, present

    def _label(self, index: int) -> str:
        return repr(self.modalities[index]) if self.modalities else f"#{index}"

    def _presence(self, mask, count: int):
        """The (batch, n) boolean presence mask, or None when every modality is present."""
        if mask is None:
            return None
        if isinstance(mask, (list, tuple, dict)):
            values = mask.values() if isinstance(mask, dict) else mask
            if all(value is None for value in values):
                return None  # Keras' automatic per-tensor (padding) masks: none set
            raise TypeError(
                f"{self.name}: mask must be ONE (batch, {count}) tensor saying which modalities "
                f"are present; got a {type(mask).__name__}. Stack per-modality masks along axis 1."
            )
        mask = ops.convert_to_tensor(mask)
        if len(mask.shape) != 2 or (mask.shape[1] is not None and mask.shape[1] != count):
            raise ValueError(
                f"{self.name} ({type(self).__name__}): mask must have shape (batch, {count}), one "
                f"column per modality; got shape {tuple(mask.shape)}."
            )
        if mask.dtype == "bool":
            return mask
        return ops.not_equal(mask, ops.zeros_like(mask))

    @staticmethod
    def _masked(embeddings, present) -> list:
        """Absent embeddings replaced by zeros (``where``: NaN or inf there cannot leak)."""
        if present is None:
            return list(embeddings)
        return [
            ops.where(present[:, i : i + 1], embedding, ops.zeros_like(embedding))
            for i, embedding in enumerate(embeddings)
        ]

    def _mean_of_present(self, inputs, mask) -> tuple:
        """(mean of the present embeddings (batch, d), their count (batch, 1) or None
        without a mask); an example with none present gets zeros."""
        embeddings, present = self._inputs(inputs, mask)
        stacked = ops.stack(self._masked(embeddings, present), axis=1)  # (batch, n, d)
        if present is None:
            return ops.mean(stacked, axis=1), None
        count = ops.sum(ops.cast(present, stacked.dtype), axis=1, keepdims=True)
        return ops.sum(stacked, axis=1) / ops.maximum(count, 1.0), count

    @staticmethod
    def _indicators(present, embeddings):
        """(batch, n) 0/1 presence features in the embeddings' dtype (all ones without a mask)."""
        reference = embeddings[0]
        if present is None:
            return ops.ones((ops.shape(reference)[0], len(embeddings)), dtype=reference.dtype)
        return ops.cast(present, reference.dtype)

    # ------------------------------------------------------------------ shapes
    def build(self, input_shape):
        dims = []
        for index, shape in enumerate(self._ordered(input_shape)):
            shape = tuple(shape)
            if len(shape) != 2 or shape[-1] is None:
                raise ValueError(
                    f"{self.name} ({type(self).__name__}): the embedding of modality {self._label(index)} must "
                    f"be (batch, features) with a known size; got shape {shape}. Flatten or pool it first."
                )
            dims.append(int(shape[-1]))
        if self.requires_equal_sizes and len(set(dims)) > 1:
            sizes = ", ".join(f"{self._label(i)}: {d}" for i, d in enumerate(dims))
            raise ValueError(
                f"{self.name} ({type(self).__name__}) needs embeddings of one size, got sizes {{{sizes}}}. "
                "Project them to a common size first (a Dense layer per modality, or "
                "build_fusion_classifier(..., projection_dim=...)), or use a strategy that accepts "
                "different sizes: concat, gated, attention or tensor."
            )
        self.embedding_dims = tuple(dims)
        self._build_fusion(dims)
        super().build(input_shape)

    def _build_fusion(self, dims) -> None:
        """Create the weights for embeddings of sizes ``dims``."""

    def compute_mask(self, inputs, mask=None):
        return None  # the presence mask is consumed here

    def compute_output_shape(self, input_shape):
        shapes = self._ordered(input_shape)
        return (tuple(shapes[0])[0], self._output_dim([int(tuple(s)[-1]) for s in shapes]))

    def _output_dim(self, dims) -> int:
        return dims[0]

    def get_config(self):
        config = super().get_config()
        config["modalities"] = None if self.modalities is None else list(self.modalities)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AverageFusion(_ModalityFusion):
    """Mean of the present modalities' embeddings: n x (batch, d) -> (batch, d).

    Args:
        modalities: optional modality names: the order in which a dict input and the
            mask's columns are read (default: the dict's sorted keys).
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    requires_equal_sizes = True

    def call(self, inputs, mask=None):
        return self._mean_of_present(inputs, mask)[0]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedFusion(_ModalityFusion):
    """Weighted sum with one learned weight per modality: n x (batch, d) -> (batch, d).

    The weights are ``softmax(modality_logits)`` over the present modalities of each
    example (zero-initialised logits: the plain average at the start of training).

    Args:
        modalities: optional modality names, as in ``AverageFusion``.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    requires_equal_sizes = True

    def _build_fusion(self, dims):
        self.modality_logits = self.add_weight(name="modality_logits", shape=(len(dims),), initializer="zeros")

    @property
    def modality_weights(self):
        """The learned weights with every modality present, a NumPy (n,) array summing to 1."""
        return keras.ops.convert_to_numpy(ops.softmax(self.modality_logits))

    def call(self, inputs, mask=None):
        embeddings, present = self._inputs(inputs, mask)
        stacked = ops.stack(self._masked(embeddings, present), axis=1)  # (batch, n, d)
        logits = ops.cast(self.modality_logits, stacked.dtype)
        logits = ops.broadcast_to(logits, (ops.shape(stacked)[0], len(embeddings)))
        weights = _masked_softmax(logits, present)
        return ops.sum(stacked * ops.expand_dims(weights, -1), axis=1)


class _NetworkFusion(_ModalityFusion):
    """Fusion into one feature vector, then an MLP: the shared part of ``ConcatFusion``
    and ``TensorFusion``.

    A subclass gives ``_feature_dim(dims)`` and ``_features(masked, indicators)``, the
    (batch, feature_dim) features of the masked embeddings and the (batch, n) presence
    indicators. They go through Dense(hidden_units[k], activation) [-> Dropout] layers;
    ``hidden_units=()`` returns the features themselves.
    """

    def __init__(self, hidden_units=(64,), activation="relu", dropout=0.0, modalities=None, **kwargs):
        super().__init__(modalities=modalities, **kwargs)
        kind = type(self).__name__
        self.hidden_units = check_int_sequence(hidden_units, f"{kind} hidden_units", allow_empty=True)
        self.activation = keras.activations.get(activation)
        self.dropout = check_rate(dropout, f"{kind} dropout")
        self.network = _dense_stack(self.hidden_units, self.activation, self.dropout, "fusion")

    def _feature_dim(self, dims) -> int:
        raise NotImplementedError

    def _features(self, masked: list, indicators):
        raise NotImplementedError

    def _build_fusion(self, dims):
        _build_dense_stack(self.network, self._feature_dim(dims))

    def _output_dim(self, dims):
        return self.hidden_units[-1] if self.hidden_units else self._feature_dim(dims)

    def call(self, inputs, mask=None, training=None):
        embeddings, present = self._inputs(inputs, mask)
        features = self._features(self._masked(embeddings, present), self._indicators(present, embeddings))
        return _run_dense_stack(self.network, features, training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_units": list(self.hidden_units),
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConcatFusion(_NetworkFusion):
    """Concatenation followed by an MLP (the "fusion network").

    n x (batch, d_i) -> concat(e_1, ..., e_n, presence indicators) (batch, sum d_i + n)
    -> Dense(hidden_units[k], activation) [-> Dropout] ... -> (batch, hidden_units[-1]).
    ``hidden_units=()`` returns the concatenation itself. Absent embeddings are zeros,
    and the n indicator columns (1 = present) tell the network which ones are absent.

    Args:
        hidden_units: the widths of the MLP's Dense layers; () for none.
        activation: the activation of every Dense layer.
        dropout: rate of the Dropout after each Dense layer, in [0, 1); 0 for none.
        modalities: optional modality names, as in ``AverageFusion``.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def _feature_dim(self, dims) -> int:
        return sum(dims) + len(dims)

    def _features(self, masked, indicators):
        return ops.concatenate(masked + [indicators], axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GatedFusion(_ModalityFusion):
    """Gated fusion with per-example gates (a gated multimodal unit, Arevalo et al. 2017).

    h_i = activation(Dense_i(e_i))                         (batch, units) per modality
    g   = softmax over present modalities of Dense(concat(e_1..e_n, presence))   (batch, n)
    out = sum_i g_i h_i                                    (batch, units)

    The gates see every present embedding, so each example chooses how much to trust
    each modality. Embedding sizes may differ.

    Args:
        units: the width of the projections h_i and of the output.
        activation: the activation of the projections.
        modalities: optional modality names, as in ``AverageFusion``.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, units, activation="tanh", modalities=None, **kwargs):
        super().__init__(modalities=modalities, **kwargs)
        self.units = check_positive_int(units, "GatedFusion units")
        self.activation = keras.activations.get(activation)
        self.projections = []
        self.gate = None

    def _build_fusion(self, dims):
        self.projections = [
            keras.layers.Dense(self.units, activation=self.activation, name=f"projection{i}") for i in range(len(dims))
        ]
        for projection, dim in zip(self.projections, dims):
            projection.build((None, dim))
        self.gate = keras.layers.Dense(len(dims), name="gate")
        self.gate.build((None, sum(dims) + len(dims)))

    def _output_dim(self, dims):
        return self.units

    def gates(self, inputs, mask=None):
        """The per-example gates of the embeddings.

        Args:
            inputs: the embeddings, as for ``call``.
            mask: optional (batch, n) presence mask.

        Returns:
            (batch, n) gates; each row sums to 1 over the present modalities (all zeros
            for an example with none present).
        """
        embeddings, present = self._inputs(inputs, mask)
        masked = self._masked(embeddings, present)
        logits = self.gate(ops.concatenate(masked + [self._indicators(present, embeddings)], axis=-1))
        return _masked_softmax(logits, present)

    def call(self, inputs, mask=None):
        embeddings, present = self._inputs(inputs, mask)
        masked = self._masked(embeddings, present)
        gates = self.gates(masked, present)
        projected = ops.stack([projection(e) for projection, e in zip(self.projections, masked)], axis=1)
        return ops.sum(projected * ops.expand_dims(ops.cast(gates, projected.dtype), -1), axis=1)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "activation": keras.activations.serialize(self.activation)})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AttentionFusion(_ModalityFusion):
    """Self-attention across modality tokens, then the mean of the present tokens.

    token_i = Dense_i(e_i) + modality_embedding_i            (batch, n, units)
    x       = LayerNorm(tokens + MultiHeadAttention(tokens, tokens))
    out     = mean of x over the present modalities          (batch, units)

    Absent modalities are removed from the keys (never attended to) and from the mean.
    Embedding sizes may differ.

    Args:
        units: the width of the tokens and of the output, divisible by ``num_heads``.
        num_heads: attention heads.
        dropout: dropout rate of the attention weights, in [0, 1).
        modalities: optional modality names, as in ``AverageFusion``.
        **kwargs: ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: ``units`` is not divisible by ``num_heads``.
    """

    def __init__(self, units, num_heads=1, dropout=0.0, modalities=None, **kwargs):
        super().__init__(modalities=modalities, **kwargs)
        self.units = check_positive_int(units, "AttentionFusion units")
        self.num_heads = check_positive_int(num_heads, "AttentionFusion num_heads")
        if self.units % self.num_heads:
            raise ValueError(f"AttentionFusion units ({self.units}) must be divisible by num_heads ({self.num_heads}).")
        self.dropout = check_rate(dropout, "AttentionFusion dropout")
        self.projections = []
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=self.units // self.num_heads, dropout=self.dropout, name="attention"
        )
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")

    def _build_fusion(self, dims):
        self.projections = [keras.layers.Dense(self.units, name=f"projection{i}") for i in range(len(dims))]
        for projection, dim in zip(self.projections, dims):
            projection.build((None, dim))
        self.modality_embeddings = self.add_weight(
            name="modality_embeddings", shape=(len(dims), self.units), initializer="glorot_uniform"
        )
        token_shape = (None, len(dims), self.units)
        self.attention.build(token_shape, token_shape)
        self.norm.build(token_shape)

    def _output_dim(self, dims):
        return self.units

    def call(self, inputs, mask=None, training=None):
        embeddings, present = self._inputs(inputs, mask)
        masked = self._masked(embeddings, present)
        tokens = ops.stack([projection(e) for projection, e in zip(self.projections, masked)], axis=1)
        tokens = tokens + ops.cast(self.modality_embeddings, tokens.dtype)
        attention_mask = None
        if present is not None:
            # (batch, 1, keys). A row with nothing present may attend to everything,
            # which keeps its softmax finite; that row is discarded by the mean below.
            any_present = ops.any(present, axis=-1, keepdims=True)
            attention_mask = ops.expand_dims(ops.logical_or(present, ops.logical_not(any_present)), axis=1)
        attended = self.attention(tokens, tokens, attention_mask=attention_mask, training=training)
        x = self.norm(tokens + attended)
        if present is None:
            return ops.mean(x, axis=1)
        weights = ops.expand_dims(ops.cast(present, x.dtype), -1)
        x = ops.where(ops.expand_dims(present, -1), x, ops.zeros_like(x))
        return ops.sum(x, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "num_heads": self.num_heads, "dropout": self.dropout})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TensorFusion(_NetworkFusion):
    """Tensor fusion (Zadeh et al. 2017): the outer product of [e_1, 1] x ... x [e_n, 1].

    n x (batch, d_i) -> flattened product (batch, prod(d_i + 1)) concatenated with the n
    presence indicators, then the optional MLP ``hidden_units`` (none by default). The
    appended 1s keep every unimodal and lower-order term in the product. An absent
    modality's embedding is zero, so the product reduces to that of the present
    modalities, and the indicator columns tell the network which modalities those are.

    Args:
        hidden_units: the widths of the optional MLP's Dense layers; () (default) for none.
        activation: the activation of every Dense layer.
        dropout: rate of the Dropout after each Dense layer, in [0, 1); 0 for none.
        modalities: optional modality names, as in ``AverageFusion``.
        **kwargs: ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: when built, a product of more than ``MAX_TENSOR_FUSION_FEATURES``
            features.
    """

    def __init__(self, hidden_units=(), activation="relu", dropout=0.0, modalities=None, **kwargs):
        super().__init__(hidden_units, activation, dropout, modalities, **kwargs)

    @staticmethod
    def _product_size(dims) -> int:
        size = 1
        for dim in dims:
            size *= dim + 1
        return size

    def _feature_dim(self, dims) -> int:
        return self._product_size(dims) + len(dims)

    def _build_fusion(self, dims):
        size = self._product_size(dims)
        if size > MAX_TENSOR_FUSION_FEATURES:
            raise ValueError(
                f"{self.name} (TensorFusion): embeddings of sizes {list(dims)} give an outer product of "
                f"{size} features (limit {MAX_TENSOR_FUSION_FEATURES}). Project the embeddings to fewer "
                "dimensions first, e.g. build_fusion_classifier(..., projection_dim=16)."
            )
        super()._build_fusion(dims)

    def _features(self, masked, indicators):
        batch = ops.shape(masked[0])[0]
        ones = ops.ones((batch, 1), dtype=masked[0].dtype)
        product = ops.concatenate([masked[0], ones], axis=-1)
        for embedding in masked[1:]:
            extended = ops.concatenate([embedding, ones], axis=-1)
            outer = ops.expand_dims(product, 2) * ops.expand_dims(extended, 1)
            product = ops.reshape(outer, (batch, product.shape[-1] * extended.shape[-1]))
        return ops.concatenate([product, indicators], axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LateFusion(_ModalityFusion):
    """Late fusion: the mean of per-modality classifier outputs over the present modalities.

    n x (batch, num_classes) class probabilities -> (batch, num_classes). An example with
    no modality present gets the uniform distribution (no evidence for any class).

    Args:
        modalities: optional modality names, as in ``AverageFusion``.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    requires_equal_sizes = True

    def call(self, inputs, mask=None):
        mean, count = self._mean_of_present(inputs, mask)
        if count is None:
            return mean
        uniform = ops.full_like(mean, 1.0 / mean.shape[-1])
        return ops.where(count > 0, mean, uniform)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ModalityDropout(keras.layers.Layer):
    """Training-time dropout of whole modalities by editing the presence mask.

    Input and output: the (batch, n) presence mask (bool or 0/1 numbers; the output has
    the input's dtype). In training each example loses modality i with probability
    ``rates[i]``; at inference (and with all rates 0) the mask passes unchanged.

    An example never loses all its modalities. To keep that AND the configured rates
    exactly, the drops of one example are coupled: its modalities get consecutive arcs
    of lengths rates[i] on a circle of circumference 1, in a random order, and those
    whose arc covers one uniform point are dropped. Each modality is then dropped with
    probability exactly ``rates[i]``, and at most n - 1 are dropped when the rates sum
    to at most n - 1 (required; with two modalities, "image missing" and "audio
    missing" become exclusive events). Rates apply to examples with every modality
    present; if an example's input mask already lacks some modality and the draw would
    remove all of the rest, that example keeps its input mask.

    Under a ``tf.distribute`` strategy the draws are made for the global batch and each
    replica keeps its own rows: replicas drop differently, as one device would.

    Args:
        rates: one rate in [0, 1] for every modality, or a sequence with one per modality.
        seed: optional int for reproducible draws.
        **kwargs: ``keras.layers.Layer`` arguments.

    Raises:
        TypeError: ``rates`` is neither a number nor a sequence of numbers.
        ValueError: a rate outside [0, 1]; when built, a mask that is not
            (batch, n_modalities), not one rate per modality, or rates summing to more
            than n - 1.
    """

    def __init__(self, rates=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rates = self._check_rates(rates)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._rates_per_modality = None

    @staticmethod
    def _check_rates(rates):
        values = [rates] if isinstance(rates, numbers.Real) and not isinstance(rates, bool) else rates
        if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
            raise TypeError(
                f"ModalityDropout rates must be a number or a sequence of numbers (one per modality); got {rates!r}."
            )
        values = list(values)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
                raise ValueError(f"ModalityDropout rates must lie in [0, 1]; got {rates!r}.")
        return float(values[0]) if isinstance(rates, numbers.Real) else [float(v) for v in values]

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                f"{self.name} (ModalityDropout) expects a (batch, n_modalities) presence mask; "
                f"got shape {tuple(input_shape)}."
            )
        count = int(input_shape[-1])
        rates = [self.rates] * count if isinstance(self.rates, float) else list(self.rates)
        if len(rates) != count:
            raise ValueError(
                f"{self.name} (ModalityDropout) has {len(rates)} rates {rates} for a mask of "
                f"{count} modalities; give one rate per modality, or one rate for all."
            )
        if sum(rates) > count - 1 + 1e-6:
            raise ValueError(
                f"{self.name} (ModalityDropout): the rates {rates} sum to {sum(rates):g}, but with {count} "
                f"modalities they may sum to at most {count - 1}, since an example never loses all of "
                "its modalities. Lower the rates."
            )
        self._rates_per_modality = tuple(rates)
        super().build(input_shape)

    def call(self, inputs, training=None):
        if not training or not any(self._rates_per_modality):
            return inputs
        present = inputs if inputs.dtype == "bool" else ops.not_equal(inputs, ops.zeros_like(inputs))
        batch, count = ops.shape(present)[0], len(self._rates_per_modality)
        rates = ops.convert_to_tensor(self._rates_per_modality, dtype="float32")
        # One draw of (order, point) per example, made for the global batch under a strategy.
        draws = draw_rows(lambda rows: keras.random.uniform((rows, count + 1), seed=self.seed_generator), batch)
        order, point = draws[:, :count], draws[:, count:]
        # start[b, i]: total length of the arcs placed before modality i in example b's order.
        placed_before = ops.cast(ops.expand_dims(order, 1) < ops.expand_dims(order, 2), "float32")
        start = ops.sum(placed_before * rates, axis=-1)
        dropped = ops.mod(point - start, 1.0) < rates
        kept = ops.logical_and(present, ops.logical_not(dropped))
        kept = ops.where(ops.any(kept, axis=-1, keepdims=True), kept, present)
        return kept if inputs.dtype == "bool" else ops.cast(kept, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rates": self.rates, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReplicaDropout(keras.layers.Dropout):
    """``keras.layers.Dropout`` whose masks differ between ``tf.distribute`` replicas.

    Keras' ``Dropout`` draws from a seed that every replica shares, so under a strategy
    each replica drops the same units of its rows. This layer draws the mask for the
    global batch and keeps this replica's rows (``xmodal_tf._replicas.draw_rows``):
    replicas drop differently, and N replicas drop exactly what one device drops on the
    same global batch. Inference behaviour and scaling (kept units are divided by
    1 - rate) are those of ``keras.layers.Dropout``.

    Args:
        rate: the fraction of units to drop, as for ``keras.layers.Dropout``.
        noise_shape: optional shape of the mask, as for ``keras.layers.Dropout`` (a
            first entry of 1 shares one mask across the whole batch).
        seed: optional int for reproducible draws.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def call(self, inputs, training=False):
        if not training or self.rate <= 0:
            return inputs
        noise_shape = self.noise_shape
        shape = tf.shape(inputs)
        if noise_shape is not None:  # None entries take the input's size
            shape = tf.stack([shape[i] if size is None else size for i, size in enumerate(noise_shape)])
        tail = shape[1:]

        def draw(rows):
            return keras.random.uniform(tf.concat([tf.reshape(rows, [1]), tail], axis=0), seed=self.seed_generator)

        if noise_shape is not None and noise_shape[0] == 1:
            uniform = draw(1)  # one mask shared by the whole batch, by request
        else:
            uniform = draw_rows(draw, shape[0])
        keep = uniform >= self.rate
        scaled = inputs / ops.cast(1.0 - self.rate, inputs.dtype)
        return ops.where(keep, scaled, ops.zeros_like(inputs))
