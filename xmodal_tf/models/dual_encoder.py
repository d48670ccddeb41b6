"""A contrastive dual encoder (CLIP-style) as a subclassed ``keras.Model``.

``DualEncoder`` projects two encoders (images ``a``, captions ``b``) onto one unit sphere
and trains them with CLIP's symmetric InfoNCE loss at a learned temperature (or with
another objective of the two embeddings, ``loss=``, e.g. Barlow Twins or VICReg); the
cosine similarity then ranks a gallery of one modality for a query from the other::

    >>> from xmodal_tf.encoders import cnn_encoder, text_encoder
    >>> from xmodal_tf.models import DualEncoder
    >>> model = DualEncoder(cnn_encoder((64, 64, 3), 128, name="image"),
    ...                     text_encoder(train_names, name="text"), projection_dim=64)
    >>> model.compile(optimizer="adam")
    >>> model.fit(images, names, batch_size=128, epochs=20)      # NumPy str array for names
    >>> indices, scores = model.retrieve(query_images, gallery_names, k=5)   # image -> text
    >>> model.save("clip.keras")                                  # takes raw strings when reloaded

Main names: ``DualEncoder``, ``RETRIEVAL_DIRECTIONS``.
Design notes: docs/DESIGN.md (section xmodal_tf/models/dual_encoder.py).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._validation import check_bool, check_finite_rows, check_number, check_positive_int, describe
from xmodal_tf.losses import DeepCCALoss, replica_contrastive_loss
from xmodal_tf.models.base import (
    CrossModalModel,
    as_input_tensor,
    check_layer,
    check_output_shape,
    declared_inputs,
    deserialize_entries,
    num_rows,
    split_pair,
    static_output_width,
    to_numpy,
)
from xmodal_tf.view_loss import ViewLoss, step_loss

__all__ = ["DualEncoder", "RETRIEVAL_DIRECTIONS"]

RETRIEVAL_DIRECTIONS = ("a_to_b", "b_to_a")


# ----------------------------------------------------------------------------- helpers
class _ClipLogitScale(keras.constraints.Constraint):
    """Keeps the log-scale in [0, log(max_logit_scale)] after each optimizer step."""

    def __init__(self, maximum: float):
        self.maximum = float(maximum)

    def __call__(self, value):
        return keras.ops.clip(value, 0.0, self.maximum)

    def get_config(self):
        return {"maximum": self.maximum}


def _input_kind(encoder) -> str | None:
    """'string' or 'numeric' for a model with a known single input dtype, else None."""
    inputs = declared_inputs(encoder)
    if inputs is None or len(inputs) != 1:
        return None
    return "string" if str(inputs[0].dtype) == "string" else "numeric"


def _value_kind(values) -> str:
    """'string' for text (str / bytes arrays and lists, tf.string tensors), else 'numeric'."""
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        values = np.asarray(values)
        dtype = values.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind == "O":
            return "string" if _is_text_array(np.asarray(values)) else "numeric"
        return "string" if dtype.kind in "US" else "numeric"
    name = dtype.name if isinstance(dtype, tf.DType) else str(dtype)  # KerasTensor: a str
    return "string" if name == "string" else "numeric"


def _split_pair(data, where: str):
    """(a, b) from a batch: (a, b), {"a": a, "b": b}, or those followed by labels."""
    return split_pair(data, ("a", "b"), f"DualEncoder.{where}", "inputs")


def _is_text_array(item) -> bool:
    """A NumPy array of str / bytes (an object array is judged by its first element)."""
    if not isinstance(item, np.ndarray):
        return False
    if item.dtype.kind in "US":
        return True
    return item.dtype.kind == "O" and item.size > 0 and isinstance(item.flat[0], (str, bytes))


def _text_arrays_as_tensors(data):
    """NumPy str/bytes arrays anywhere in ``data`` become tf.string tensors (Keras' array
    adapter rejects them); everything else is left as it is."""
    if data is None or isinstance(data, (tf.data.Dataset, keras.utils.PyDataset)):
        return data
    return keras.tree.map_structure(
        lambda item: tf.constant(item, dtype=tf.string) if _is_text_array(item) else item, data
    )


def _static_rows(values):
    """The batch size if known before running (None for a dynamic tensor dimension)."""
    shape = getattr(values, "shape", None)
    if shape is None:
        return len(values) if isinstance(values, (list, tuple)) else None
    return shape[0] if len(shape) else None


def _slice_rows(values, start: int, stop: int):
    if isinstance(values, (list, tuple)):
        return np.asarray(values[start:stop])
    return values[start:stop]


def _held_out_pairs(data) -> tuple:
    """(a, b) NumPy arrays of held-out pairs given as a tuple or a dataset of batches;
    text arrives from a dataset as bytes and leaves as str."""
    if isinstance(data, tf.data.Dataset):
        batches = list(data.as_numpy_iterator())
        if not batches:
            raise ValueError("DualEncoder.held_out_logs: the validation dataset yielded no batches.")
        parts = [_split_pair(batch, "held_out_logs") for batch in batches]
        data = tuple(np.concatenate([part[side] for part in parts]) for side in (0, 1))
    return tuple(_decoded(values) for values in _split_pair(data, "held_out_logs"))


def _decoded(values):
    """UTF-8 bytes (a dataset's strings) as str; anything else unchanged."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "S":
        return np.char.decode(values, "utf-8")
    if (
        isinstance(values, np.ndarray)
        and values.dtype.kind == "O"
        and values.size
        and isinstance(values.flat[0], bytes)
    ):
        return np.array([value.decode("utf-8") for value in values.ravel()]).reshape(values.shape)
    return values


def _row_keys(values) -> np.ndarray:
    """One hashable key per row: the string itself, or the row's bytes."""
    values = np.asarray(values)
    if values.dtype.kind in "US":
        return values.astype(str)
    return np.array([row.tobytes() for row in values.reshape(len(values), -1)])


def _top_k(similarity: np.ndarray, k: int):
    """Indices and scores of the k largest entries per row, best first (ties: lower index)."""
    if k < similarity.shape[1]:
        candidates = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    else:
        candidates = np.tile(np.arange(similarity.shape[1]), (similarity.shape[0], 1))
    candidate_scores = np.take_along_axis(similarity, candidates, axis=1)
    order = np.lexsort((candidates, -candidate_scores), axis=1)
    indices = np.take_along_axis(candidates, order, axis=1)
    return indices.astype(np.int64), np.take_along_axis(similarity, indices, axis=1)


# ----------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="xmodal_tf")
class DualEncoder(CrossModalModel):
    """Two encoders projected into one L2-normalised space, trained contrastively (or with a ``ViewLoss``).

    The objective: by default (``loss=None``) CLIP's symmetric InfoNCE loss of the
    L2-normalised embeddings at the learned temperature. A ``ViewLoss`` of two views
    (``xmodal_tf.ssl_losses.BarlowTwinsLoss()``, ``VICRegLoss()``, ``xm.losses.EYLoss()``
    ...) replaces it: it is applied to the projected embeddings *before* the L2
    normalisation, (batch, projection_dim) (the encoders' outputs without a projection),
    in float32 for mixed-precision networks. Those objectives standardise, or penalise
    the variance and covariance of, each unit over the batch, which the normalisation
    onto the sphere would distort (Barlow Twins and VICReg apply them to the projector's
    raw output). The temperature then takes no part in training (``logit_scale`` is kept,
    frozen, so the weights are the same); inference, ``similarity``, ``retrieve`` and
    held-out retrieval still use the normalised embeddings (cosine similarity), and
    ``in_batch_accuracy`` is still logged.

    Args:
        encoder_a: Keras model for the first modality, (batch, ...) -> (batch, d_a).
        encoder_b: Keras model for the second modality, or None to share ``encoder_a``
            (Siamese: one encoder and one projection for both inputs).
        projection_dim: width of the shared space (a bias-free Dense per modality), or
            None for no projection (then d_a must equal d_b).
        shared: True to share ``encoder_a`` for both inputs (``encoder_b`` must then be
            None or ``encoder_a`` itself).
        temperature: initial softmax temperature T, in [1 / max_logit_scale, 1].
        learn_temperature: train log(1 / T) with the encoders (CLIP) or keep it fixed.
        max_logit_scale: the largest 1 / T allowed (CLIP: 100, so T >= 0.01).
        global_batch: under a ``tf.distribute`` strategy, contrast against the global
            batch (True) or each replica's share (False). With a ``loss`` it applies to the
            logged ``in_batch_accuracy`` only; the loss's own ``global_batch`` decides its
            batch statistics.
        loss: None for the contrastive loss above, or a ``ViewLoss`` that takes two
            views' outputs, (batch, d) each, in its place. Saved with the model's config.
        **kwargs: ``name``, ``trainable`` ... for ``keras.Model``.
    """

    def __init__(
        self,
        encoder_a,
        encoder_b=None,
        *,
        projection_dim=64,
        shared=False,
        temperature=0.07,
        learn_temperature=True,
        max_logit_scale=100.0,
        global_batch=True,
        loss=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "dual_encoder")
        super().__init__(**kwargs)
        self.view_loss = self._check_loss(loss)
        self.shared = self._check_shared(encoder_a, encoder_b, shared)
        self.encoder_a = check_layer(encoder_a, "encoder_a", " (e.g. from xmodal_tf.encoders)")
        if not self.shared:
            self._encoder_b = check_layer(encoder_b, "encoder_b", " (e.g. from xmodal_tf.encoders)")
        self.projection_dim = check_positive_int(
            projection_dim, "projection_dim", allow_none=True, expected="a positive int or None (no projection)"
        )
        self.max_logit_scale = check_number(
            max_logit_scale,
            "max_logit_scale",
            minimum=1,
            exclusive_minimum=True,
            expected="a finite float > 1 (CLIP uses 100)",
        )
        self.initial_temperature = self._check_temperature(temperature)
        self.learn_temperature = check_bool(learn_temperature, "learn_temperature")
        self.global_batch = check_bool(global_batch, "global_batch")
        self.input_kinds = (_input_kind(self.encoder_a), _input_kind(self.encoder_b))

        if self.projection_dim is not None:
            self.projection_a = keras.layers.Dense(self.projection_dim, use_bias=False, name="projection_a")
            if not self.shared:
                self._projection_b = keras.layers.Dense(self.projection_dim, use_bias=False, name="projection_b")
        self.logit_scale = self.add_weight(
            shape=(),
            name="logit_scale",
            trainable=self.learn_temperature and self.view_loss is None,
            initializer=keras.initializers.Constant(math.log(1.0 / self.initial_temperature)),
            constraint=_ClipLogitScale(math.log(self.max_logit_scale)),
        )

        self.create_trackers(
            ("loss", "temperature", "in_batch_accuracy") if self.view_loss is None else ("loss", "in_batch_accuracy")
        )
        self._encode_functions = {}

        widths = (static_output_width(self.encoder_a, "encoder_a"), static_output_width(self.encoder_b, "encoder_b"))
        if None not in widths:
            self._build_projections(*widths)

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _check_loss(loss) -> ViewLoss | None:
        if loss is None:
            return None
        if not isinstance(loss, ViewLoss):
            raise TypeError(
                "DualEncoder's loss must be None (the learned-temperature contrastive loss) or an xmodal_tf "
                "ViewLoss of the two embeddings, e.g. xmodal_tf.ssl_losses.BarlowTwinsLoss(), VICRegLoss() or "
                f"xm.losses.EYLoss(); got {describe(loss)}. A keras loss of (y_true, y_pred) does not apply here."
            )
        loss.check_view_count(2)
        return loss

    @staticmethod
    def _check_shared(encoder_a, encoder_b, shared) -> bool:
        if check_bool(shared, "shared") and encoder_b is not None and encoder_b is not encoder_a:
            raise ValueError(
                "shared=True uses encoder_a for both inputs; pass encoder_b=None (or the same "
                "encoder), or shared=False for two separate encoders."
            )
        return shared or encoder_b is None or encoder_b is encoder_a

    def _check_temperature(self, value) -> float:
        lowest = 1.0 / self.max_logit_scale
        return check_number(
            value,
            "temperature",
            minimum=lowest,
            maximum=1.0,
            expected=f"a float in [1 / max_logit_scale, 1] = [{lowest:g}, 1] (CLIP starts at 0.07)",
        )

    def _check_inputs(self, a, b, where: str) -> None:
        """Types per modality and equal static batch sizes, before any encoder runs."""
        for values, kind, side in ((a, self.input_kinds[0], "a"), (b, self.input_kinds[1], "b")):
            self._check_kind(values, kind, side, where)
        rows = tuple(_static_rows(values) for values in (a, b))
        if None not in rows and rows[0] != rows[1]:
            raise ValueError(
                f"DualEncoder.{where}: the paired inputs must have the same batch size (row i of a "
                f"goes with row i of b); got {rows[0]} rows for a and {rows[1]} for b."
            )

    def _check_kind(self, values, expected, side: str, where: str) -> None:
        if expected is None:
            return
        got = _value_kind(values)
        if got == expected:
            return
        encoder = f"encoder_{side}" if not self.shared else "the shared encoder"
        if expected == "string":
            raise TypeError(
                f"DualEncoder.{where}: {encoder} takes raw text (a string tensor or an array of str), "
                f"but input {side} holds numbers ({getattr(values, 'dtype', type(values).__name__)}). "
                "Pass the texts themselves, e.g. np.array(['red apple', ...])."
            )
        raise TypeError(
            f"DualEncoder.{where}: {encoder} takes numeric arrays, but input {side} holds strings. "
            "Give that modality a string encoder such as xmodal_tf.encoders.text_encoder."
        )

    # ------------------------------------------------------------------ structure
    @property
    def encoder_b(self):
        """The second encoder (``encoder_a`` itself in Siamese mode)."""
        return self.encoder_a if self.shared else self._encoder_b

    @property
    def projection_b(self):
        return self.projection_a if self.shared else self._projection_b

    def _build_projections(self, width_a: int, width_b: int) -> None:
        if self.projection_dim is None:
            if width_a != width_b:
                raise ValueError(
                    f"Without a projection the two encoders must output the same width; encoder_a gives "
                    f"{width_a} features and encoder_b {width_b}. Set projection_dim (e.g. 64)."
                )
        else:
            self.projection_a.build((None, width_a))
            if not self.shared:
                self.projection_b.build((None, width_b))
        self.built = True

    def build(self, input_shape):
        """Build from the pair of input shapes (for encoders whose output size is not known yet)."""
        shapes = (input_shape["a"], input_shape["b"]) if isinstance(input_shape, dict) else tuple(input_shape)
        self._build_from_specs(
            shapes, [("string" if kind == "string" else keras.backend.floatx()) for kind in self.input_kinds]
        )

    def _build_from_specs(self, shapes, dtypes) -> None:
        widths = []
        for encoder, shape, dtype, name in zip(
            (self.encoder_a, self.encoder_b), shapes, dtypes, ("encoder_a", "encoder_b")
        ):
            output = encoder(keras.KerasTensor((None, *tuple(shape)[1:]), dtype=dtype))
            widths.append(check_output_shape(tuple(output.shape), name))
        self._input_specs = [[[None, *list(shape)[1:]], str(dtype)] for shape, dtype in zip(shapes, dtypes)]
        self._build_projections(*widths)

    def build_from_batch(self, a, b) -> None:
        if not self.built:
            a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)
            self._build_from_specs((tuple(a.shape), tuple(b.shape)), (a.dtype.name, b.dtype.name))

    def _build_from_input_specs(self, specs) -> None:
        shapes = [tuple(None if d is None else int(d) for d in shape) for shape, _ in specs]
        self._build_from_specs(shapes, [dtype for _, dtype in specs])

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _project(values, encoder, projection, training):
        """The projected, un-normalised embeddings; float16 / bfloat16 ones as float32."""
        features = encoder(values, training=training)
        if projection is not None:
            features = projection(features)
        if features.dtype in (tf.float16, tf.bfloat16):
            features = tf.cast(features, tf.float32)
        return features

    def _embed(self, values, encoder, projection, training):
        # Normalise in float32 also for mixed-precision networks.
        return self._normalized(self._project(values, encoder, projection, training))

    @staticmethod
    def _normalized(features):
        return tf.math.l2_normalize(tf.cast(features, tf.float32), axis=1)

    def _projections(self):
        if self.projection_dim is None:
            return None, None
        return self.projection_a, self.projection_b

    def embed_a(self, a, training=False):
        """Normalised embeddings (batch, dim) of modality a, as a tensor (no batching)."""
        return self._embed(a, self.encoder_a, self._projections()[0], training)

    def embed_b(self, b, training=False):
        """Normalised embeddings (batch, dim) of modality b, as a tensor (no batching)."""
        return self._embed(b, self.encoder_b, self._projections()[1], training)

    def call(self, inputs, training=None):
        """Embed a pair of inputs; returns ``(z_a, z_b)``, rows of unit length."""
        a, b = _split_pair(inputs, "call")
        self._check_inputs(a, b, "call")
        return self.embed_a(a, training=training), self.embed_b(b, training=training)

    def current_logit_scale(self):
        """1 / T as a float32 scalar tensor, clipped to [1, max_logit_scale]."""
        return tf.exp(tf.clip_by_value(tf.cast(self.logit_scale, tf.float32), 0.0, math.log(self.max_logit_scale)))

    @property
    def temperature(self) -> float:
        """The current temperature T (the learned one when ``learn_temperature``)."""
        return float(1.0 / self.current_logit_scale().numpy())

    def batch_loss(self, a, b, training=False) -> dict:
        """Loss and metrics of one batch of n pairs, as a dict of scalar tensors.

        Args:
            a: the batch's inputs of modality a.
            b: the batch's inputs of modality b, one row per row of ``a``.
            training: whether the encoders run in training mode.

        Returns:
            A dict with ``loss`` (symmetric InfoNCE over the batch, or the ``loss`` given to
            the constructor, plus any regularisation losses of the encoders),
            ``temperature`` (contrastive loss only) and ``in_batch_accuracy`` (fraction of
            the 2n queries, a -> b and b -> a, whose partner scores highest in the batch).
        """
        self._check_inputs(a, b, "batch_loss")
        if self.view_loss is not None:
            return self._view_loss_results(a, b, training)
        z_a, z_b = self.embed_a(a, training=training), self.embed_b(b, training=training)
        scale = self.current_logit_scale()
        # Batch sizes: _check_inputs compares the static ones; the loss asserts equal
        # dynamic ones only when a static size is unknown (no run-time check otherwise).
        loss, accuracy = replica_contrastive_loss(z_a, z_b, scale, global_batch=self.global_batch)
        if self.losses:
            loss = loss + tf.add_n([tf.cast(extra, loss.dtype) for extra in self.losses])
        return {"loss": loss, "temperature": 1.0 / scale, "in_batch_accuracy": accuracy}

    def _view_loss_results(self, a, b, training) -> dict:
        """``batch_loss`` with the ``ViewLoss``, on the embeddings before normalisation."""
        projection_a, projection_b = self._projections()
        h_a = self._project(a, self.encoder_a, projection_a, training)
        h_b = self._project(b, self.encoder_b, projection_b, training)
        # The accuracy of the cosine similarities, as retrieval ranks (no gradient; the scale
        # does not change an argmax). Before the loss: replicas issue collectives in one order.
        z_a, z_b = (tf.stop_gradient(self._normalized(h)) for h in (h_a, h_b))
        _, accuracy = replica_contrastive_loss(z_a, z_b, 1.0, global_batch=self.global_batch)
        loss = step_loss(self.view_loss, (h_a, h_b), after=[accuracy])
        if self.losses:
            loss = loss + tf.add_n([tf.cast(extra, loss.dtype) for extra in self.losses])
        return {"loss": loss, "in_batch_accuracy": accuracy}

    def xla_unsupported_reason(self) -> str | None:
        if isinstance(self.view_loss, DeepCCALoss):
            return (
                "its Deep CCA loss's SVD and decompositions are kept out of XLA (XLA's eigen-decompositions "
                "have returned wrong results; see xmodal_tf.losses)"
            )
        return None

    def compile(self, optimizer="rmsprop", **kwargs):
        """``CrossModalModel.compile``; ``jit_compile`` defaults to False for a loss that XLA must not compile."""
        if self.xla_unsupported_reason():
            kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)

    # ------------------------------------------------------------------ training
    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        """``keras.Model.fit``; NumPy arrays of str are accepted for a text modality."""
        return super().fit(
            _text_arrays_as_tensors(x),
            _text_arrays_as_tensors(y),
            *args,
            validation_data=_text_arrays_as_tensors(validation_data),
            **kwargs,
        )

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.evaluate``; NumPy arrays of str are accepted for a text modality."""
        return super().evaluate(_text_arrays_as_tensors(x), _text_arrays_as_tensors(y), *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """``keras.Model.predict`` of ``(z_a, z_b)``; NumPy arrays of str are accepted."""
        return super().predict(_text_arrays_as_tensors(x), *args, **kwargs)

    def unpack_batch(self, data, where: str):
        a, b = _split_pair(data, where)
        self._check_inputs(a, b, where)
        return a, b

    def predict_step(self, data):
        return self(_split_pair(data, "predict_step"), training=False)

    # ------------------------------------------------------------------ inference
    def _encode(
        self, values, side: str, batch_size: int, argument: str | None = None, method: str | None = None
    ) -> np.ndarray:
        """Embeddings of ``values`` (modality ``side``); ``argument`` and ``method`` name the
        user's argument and call in messages (default ``side`` and ``encode_<side>``)."""
        argument, method = argument or side, method or f"encode_{side}"
        batch_size = check_positive_int(batch_size, "batch_size")
        if isinstance(values, (str, bytes)):
            raise TypeError(f"DualEncoder.{method} takes a batch of inputs, not a single string; wrap it in a list.")
        self._check_kind(values, self.input_kinds[0 if side == "a" else 1], side, method)
        rows = num_rows(values)
        if rows == 0:
            raise ValueError(f"DualEncoder.{method}: no inputs (0 rows) in {argument}.")
        # NaN/inf rows would embed as NaN, or rank arbitrarily in retrieval; text is not checked.
        check_finite_rows(
            values, argument, where=f"DualEncoder.{method}", fix="remove or impute those rows before encoding"
        )
        parts = [
            self._encode_batch(as_input_tensor(_slice_rows(values, start, start + batch_size)), side)
            for start in range(0, rows, batch_size)
        ]
        return np.concatenate(parts)

    def _encode_batch(self, batch: tf.Tensor, side: str) -> np.ndarray:
        # One trace per side, input dtype and feature shape, whatever the batch size.
        key = (side, batch.dtype, tuple(batch.shape[1:]))
        if key not in self._encode_functions:
            embed = self.embed_a if side == "a" else self.embed_b
            signature = [tf.TensorSpec((None, *batch.shape[1:]), batch.dtype)]
            self._encode_functions[key] = tf.function(lambda x: embed(x, training=False), input_signature=signature)
        return to_numpy(self._encode_functions[key](batch))

    def encode_a(self, a, *, batch_size: int = 256) -> np.ndarray:
        """Normalised embeddings of modality a, a float32 NumPy (n, dim) array (inference mode)."""
        return self._encode(a, "a", batch_size)

    def encode_b(self, b, *, batch_size: int = 256) -> np.ndarray:
        """Normalised embeddings of modality b, a float32 NumPy (n, dim) array (inference mode)."""
        return self._encode(b, "b", batch_size)

    def similarity(self, a, b, *, batch_size: int = 256) -> np.ndarray:
        """Cosine similarities (n_a, n_b) between every a and every b, in [-1, 1].

        Not divided by the temperature: rankings are the same, and these are the scores
        that ``xmodal_tf.metrics`` retrieval metrics take.

        Args:
            a: inputs of modality a.
            b: inputs of modality b.
            batch_size: rows per encoder call.

        Returns:
            A NumPy (n_a, n_b) array.
        """
        return self._similarity(a, b, batch_size, ("a", "b"), "similarity")

    def _similarity(self, a, b, batch_size: int, arguments: tuple, method: str) -> np.ndarray:
        return (
            self._encode(a, "a", batch_size, arguments[0], method)
            @ self._encode(b, "b", batch_size, arguments[1], method).T
        )

    def retrieve(self, queries, gallery, k: int = 5, *, direction: str = "a_to_b", batch_size: int = 256):
        """The top-k gallery items for each query, by cosine similarity.

        Args:
            queries: inputs of one modality (modality a for ``direction="a_to_b"``).
            gallery: inputs of the other modality (b for ``"a_to_b"``), searched for each query.
            k: how many items to return per query, 1 <= k <= len(gallery).
            direction: "a_to_b" (queries are a, e.g. image -> text) or "b_to_a".

        Returns:
            ``(indices, scores)``: int64 (n_queries, k) gallery indices, best first (ties
            broken by the lower index), and their float32 cosine similarities.
        """
        if direction not in RETRIEVAL_DIRECTIONS:
            raise ValueError(f"direction must be one of {RETRIEVAL_DIRECTIONS}; got {direction!r}.")
        check_positive_int(k, "k", expected="a positive int (results per query)")
        gallery_size = num_rows(gallery)
        if k > gallery_size:
            raise ValueError(f"k={k} is larger than the gallery ({gallery_size} items); use k <= {gallery_size}.")
        if direction == "a_to_b":
            similarity = self._similarity(queries, gallery, batch_size, ("queries", "gallery"), "retrieve")
        else:
            similarity = self._similarity(gallery, queries, batch_size, ("gallery", "queries"), "retrieve").T
        return _top_k(similarity, int(k))

    # ------------------------------------------------------------------ held-out retrieval
    default_monitor = ("val_mean_recall", "max")

    def held_out_logs(self, data, *, ks=(1, 5, 10), batch_size: int = 256) -> dict:
        """Retrieval both ways over held-out pairs.

        What ``xmodal_tf.training.Trainer`` reports and early-stops on for a dual
        encoder (``model.fit``'s validation keeps Keras' in-batch ``val_loss``). Each a_i
        queries the gallery of every b (and each b_i every a). Relevant items are its
        partner and the partners of equal b values (duplicate texts name the same
        thing), so several a may share one text.

        Args:
            data: ``(a, b)`` arrays of n pairs, or a ``tf.data.Dataset`` of such batches;
                None gives the placeholders (NaN) of an epoch without evaluation.
            ks: the k of the recalls@k.
            batch_size: rows per encoder call.

        Returns:
            A dict with ``val_a_to_b_recall@k`` and ``val_b_to_a_recall@k`` (each k up to
            the gallery size), ``val_a_to_b_median_rank``, ``val_b_to_a_median_rank`` and
            ``val_mean_recall``, the mean of those recalls.
        """
        from xmodal_tf.metrics import retrieval_metrics

        if data is None:
            return {"val_mean_recall": float("nan")}
        a, b = _held_out_pairs(data)
        _, groups = np.unique(_row_keys(b), return_inverse=True)
        relevant = groups[:, None] == groups[None, :]
        similarity = self._similarity(a, b, batch_size, ("validation a", "validation b"), "held_out_logs")
        usable = [k for k in ks if k <= len(groups)] or [1]
        logs = {}
        for direction, scores in (("a_to_b", similarity), ("b_to_a", similarity.T)):
            result = retrieval_metrics(scores, relevant, ks=usable)
            logs.update({f"val_{direction}_recall@{k}": result[f"recall@{k}"] for k in usable})
            logs[f"val_{direction}_median_rank"] = result["median_rank"]
        logs["val_mean_recall"] = float(np.mean([value for key, value in logs.items() if "recall@" in key]))
        return logs

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder_a": keras.saving.serialize_keras_object(self.encoder_a),
            "encoder_b": None if self.shared else keras.saving.serialize_keras_object(self.encoder_b),
            "projection_dim": self.projection_dim,
            "shared": self.shared,
            "temperature": self.initial_temperature,
            "learn_temperature": self.learn_temperature,
            "max_logit_scale": self.max_logit_scale,
            "global_batch": self.global_batch,
            "loss": None if self.view_loss is None else keras.saving.serialize_keras_object(self.view_loss),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**deserialize_entries(config, ("encoder_a", "encoder_b", "loss"), custom_objects))
