"""Multimodal autoencoder (Ngiam et al., 2011) as a subclassed ``keras.Model``.

``MultimodalAutoencoder`` fuses the modalities that are PRESENT into one shared code and
decodes EVERY modality from it; modality dropout makes ``translate`` work::

    >>> from xmodal_tf.encoders import cnn_encoder, rnn_encoder
    >>> model = MultimodalAutoencoder(
    ...     encoders={"image": cnn_encoder((28, 28, 1), 64, global_pooling="flatten", name="image_encoder"),
    ...               "audio": rnn_encoder(input_dim=13, max_length=92, cell="gru", name="audio_encoder")},
    ...     decoders={"image": image_decoder(64, (28, 28, 1)),            # code -> (28, 28, 1)
    ...               "audio": dense_decoder(64, (92, 13))},              # code -> (92, 13)
    ...     code_dim=64, modality_dropout=0.5, seed=0)
    >>> model.compile(optimizer="adam")
    >>> model.fit({"image": images, "audio": mfccs}, epochs=10, batch_size=128)
    >>> model.translate(mfccs, source="audio", target="image")             # (n, 28, 28, 1)
    >>> model.encode({"image": images})                                   # (n, 64) shared codes

Design notes: docs/DESIGN.md (section xmodal_tf/models/mae.py).
"""

from __future__ import annotations

import copy
import numbers
import re
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._replicas import draw_rows
from xmodal_tf._validation import check_int, check_number, check_positive_int, describe

# The decoder builders live in xmodal_tf.decoders; imported here too, so
# ``from xmodal_tf.models.mae import image_decoder`` still works.
from xmodal_tf.decoders import dense_decoder, image_decoder
from xmodal_tf.models.base import (
    CrossModalModel,
    as_input_tensor,
    check_finite_rows,
    check_layer,
    declared_inputs,
    to_numpy,
)

__all__ = ["MultimodalAutoencoder", "RECONSTRUCTION_LOSSES", "dense_decoder", "image_decoder"]

_MODALITY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SEED_STATE_KEY = "modality_dropout_seed_state"


def _squared_error(y_true, y_pred):
    return tf.square(y_true - y_pred)


def _absolute_error(y_true, y_pred):
    return tf.abs(y_true - y_pred)


def _binary_crossentropy(y_true, y_pred):
    # Element-wise, on probabilities (a sigmoid decoder), clipped away from 0 and 1.
    epsilon = 1e-7
    y_pred = tf.clip_by_value(y_pred, epsilon, 1.0 - epsilon)
    return -(y_true * tf.math.log(y_pred) + (1.0 - y_true) * tf.math.log(1.0 - y_pred))


RECONSTRUCTION_LOSSES = {"mse": _squared_error, "mae": _absolute_error, "binary_crossentropy": _binary_crossentropy}


# ----------------------------------------------------------------------------- validation
def _check_submodels(models, what: str) -> dict:
    if not isinstance(models, Mapping):
        raise TypeError(f"{what} must be a dict {{modality name: keras.Model}}; got {describe(models)}.")
    checked = {}
    for name, model in models.items():
        if not isinstance(name, str) or not _MODALITY_NAME.match(name):
            raise ValueError(
                f"{what}: modality names must be identifiers (a letter, then letters, digits or "
                f"'_'), such as 'image' or 'audio_mfcc'; got {name!r}."
            )
        checked[name] = check_layer(model, f"{what}[{name!r}]")
    return checked


def _check_same_modalities(encoders: dict, decoders: dict) -> None:
    missing = [name for name in encoders if name not in decoders]
    extra = [name for name in decoders if name not in encoders]
    if missing:
        raise ValueError(
            f"decoders has no entry for modality {missing[0]!r} (modalities, from encoders: "
            f"{list(encoders)}); every modality needs a decoder from the shared code back to it."
        )
    if extra:
        raise ValueError(
            f"decoders has an entry for {extra[0]!r}, which is not a modality of encoders "
            f"({list(encoders)}); encoders and decoders must have the same keys."
        )


def _check_share(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be a share in [0, 1]; got {value!r}.")
    return float(value)


def _dropout_shares(modality_dropout, modalities: tuple) -> tuple:
    """Per-modality "kept alone" shares, in model order."""
    if isinstance(modality_dropout, Mapping):
        _check_known_keys(modality_dropout, modalities, "modality_dropout")
        shares = tuple(
            _check_share(modality_dropout.get(name, 0.0), f"modality_dropout[{name!r}]") for name in modalities
        )
        if sum(shares) > 1.0 + 1e-9:
            raise ValueError(
                f"modality_dropout shares must sum to at most 1 (the rest of each batch keeps every "
                f"modality); got {dict(zip(modalities, shares))}, summing to {sum(shares):g}."
            )
        return shares
    total = _check_share(
        modality_dropout,
        "modality_dropout (the share of examples that keep only one modality), or a dict of per-modality shares,",
    )
    return (total / len(modalities),) * len(modalities)


def _check_known_keys(mapping: Mapping, modalities: tuple, what: str) -> None:
    for key in mapping:
        if key not in modalities:
            raise ValueError(f"{what} names an unknown modality {key!r}; the modalities are {list(modalities)}.")


def _per_modality(value, modalities: tuple, what: str, default) -> dict:
    """A dict modality -> value from one value for all or a (partial) dict."""
    if isinstance(value, Mapping):
        _check_known_keys(value, modalities, what)
        return {name: value.get(name, default) for name in modalities}
    return {name: default if value is None else value for name in modalities}


def _resolve_loss(spec, name: str):
    if isinstance(spec, str):
        if spec not in RECONSTRUCTION_LOSSES:
            raise ValueError(
                f"reconstruction_losses[{name!r}]: unknown loss {spec!r}; use one of "
                f"{list(RECONSTRUCTION_LOSSES)} or a callable fn(y_true, y_pred)."
            )
        return RECONSTRUCTION_LOSSES[spec]
    if not callable(spec):
        raise TypeError(
            f"reconstruction_losses[{name!r}] must be a loss name or a callable "
            f"fn(y_true, y_pred); got {type(spec).__name__}."
        )
    return spec


def _shape_text(shape) -> str:
    return "(batch, " + ", ".join("?" if d is None else str(d) for d in shape) + ")"


# ----------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="xmodal_tf")
class MultimodalAutoencoder(CrossModalModel):
    """Multimodal autoencoder with a shared code and modality dropout.

    The code is computed from the present modalities, and every modality decoded from it::

        h_m    = encoders[m](x_m)                                  (batch, d_m)
        p_m    = Dense(fusion_units, name=f"{m}_projection")(h_m)  (batch, fusion_units)
        fused  = fusion_activation(mean of p_m over the present m) (batch, fusion_units)
        code   = Dense(code_dim, name="code")(fused)               (batch, code_dim), linear
        x'_m   = decoders[m](code)                                 every modality, always

    Args:
        encoders: dict modality name -> Keras model mapping that modality's batch to
            (batch, d_m), e.g. from ``xmodal_tf.encoders``. The dict order is the model's
            modality order.
        decoders: dict with the same keys -> Keras model mapping (batch, code_dim) to
            that modality's shape (batch, *shape), e.g. Dense + Reshape, or Dense +
            Reshape + Conv2DTranspose for images.
        code_dim: size of the shared code.
        fusion_units: width of the per-modality projections that are averaged
            (default ``code_dim``).
        fusion_activation: applied to the masked mean of the projections ("relu").
        modality_dropout: share of training examples that keep only one modality
            (split evenly between modalities), or a dict of per-modality shares.
        reconstruction_losses: "mse" (default), "mae", "binary_crossentropy" or a
            callable, for every modality or as a dict per modality.
        loss_weights: dict modality -> weight >= 0 (missing ones 1.0).
        seed: seed of the modality-dropout draws (``keras.random.SeedGenerator``).
        **kwargs: ``name``, ``trainable``... for ``keras.Model``.
    """

    seed_state_key = "modality_dropout_seed_state"

    def __init__(
        self,
        encoders,
        decoders,
        code_dim=64,
        *,
        fusion_units=None,
        fusion_activation="relu",
        modality_dropout=0.5,
        reconstruction_losses="mse",
        loss_weights=None,
        seed=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "multimodal_autoencoder")
        super().__init__(**kwargs)
        encoders = _check_submodels(encoders, "encoders")
        decoders = _check_submodels(decoders, "decoders")
        if len(encoders) < 2:
            raise ValueError(
                f"A multimodal autoencoder needs at least two modalities; encoders has "
                f"{list(encoders)}. For one modality use a plain autoencoder."
            )
        _check_same_modalities(encoders, decoders)
        self.modalities = tuple(encoders)
        self.encoders = encoders
        self.decoders = {name: decoders[name] for name in self.modalities}
        self.code_dim = check_positive_int(code_dim, "code_dim")
        self.fusion_units = check_positive_int(code_dim if fusion_units is None else fusion_units, "fusion_units")
        self.fusion_activation = keras.activations.get(fusion_activation)
        self.modality_dropout = dict(modality_dropout) if isinstance(modality_dropout, Mapping) else modality_dropout
        self.dropout_shares = _dropout_shares(modality_dropout, self.modalities)
        self.reconstruction_losses = _per_modality(
            reconstruction_losses, self.modalities, "reconstruction_losses", "mse"
        )
        self._loss_functions = {name: _resolve_loss(spec, name) for name, spec in self.reconstruction_losses.items()}
        self.loss_weights = {
            name: check_number(weight, f"loss_weights[{name!r}]", minimum=0)
            for name, weight in _per_modality(loss_weights, self.modalities, "loss_weights", 1.0).items()
        }
        if not any(self.loss_weights.values()):
            raise ValueError(
                f"loss_weights are all 0 ({self.loss_weights}); at least one modality must be reconstructed."
            )
        self.seed = check_int(seed, "seed", allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(seed, name="modality_dropout_seed")

        self.projections = {
            name: keras.layers.Dense(self.fusion_units, name=f"{name}_projection") for name in self.modalities
        }
        self.code_layer = keras.layers.Dense(self.code_dim, name="code")
        self.create_trackers(["loss"] + [f"reconstruction_{name}" for name in self.modalities])
        self._input_specs = None
        self._inference_functions = {}

        specs = self._functional_input_specs()
        if specs is not None:
            # Functional sub-models know their shapes: build now, not inside fit's trace.
            self._build_from_specs(specs)

    # ------------------------------------------------------------------ building
    def _functional_input_specs(self):
        """{modality: (shape without batch, dtype)} when every encoder declares its input."""
        specs = {}
        for name, encoder in self.encoders.items():
            inputs = declared_inputs(encoder)
            if inputs is None:
                return None
            if len(inputs) != 1:
                raise ValueError(
                    f"encoders[{name!r}] has {len(inputs)} inputs; each modality's encoder must take one tensor."
                )
            specs[name] = (tuple(inputs[0].shape[1:]), inputs[0].dtype)
        return specs

    def _build_from_specs(self, specs: dict) -> None:
        """Build every sub-layer symbolically from {modality: (shape, dtype)} and check that
        encoders output (batch, d) and decoders reproduce their modality's shape."""
        code = keras.KerasTensor((None, self.code_dim))
        for name in self.modalities:
            shape, dtype = specs[name]
            embedding = self.encoders[name](keras.KerasTensor((None, *shape), dtype=dtype))
            if isinstance(embedding, (tuple, list, dict)) or len(embedding.shape) != 2 or embedding.shape[1] is None:
                raise ValueError(
                    f"encoders[{name!r}] must output one (batch, features) tensor with a known "
                    f"number of features; it outputs {getattr(embedding, 'shape', embedding)}. "
                    "Flatten or pool it, e.g. keras.layers.GlobalAveragePooling2D()."
                )
            if not self.projections[name].built:
                self.projections[name].build(embedding.shape)
            try:
                reconstruction = self.decoders[name](code)
            except ValueError as error:
                raise ValueError(
                    f"decoders[{name!r}] must take the shared code (batch, {self.code_dim}) "
                    f"(code_dim={self.code_dim}); calling it on that failed: {error}"
                ) from None
            self._check_decoder_output(name, shape, reconstruction)
        if not self.code_layer.built:
            self.code_layer.build((None, self.fusion_units))
        self._input_specs = {
            name: (tuple(shape), keras.backend.standardize_dtype(dtype)) for name, (shape, dtype) in specs.items()
        }
        self.built = True

    def _check_decoder_output(self, name: str, shape: tuple, reconstruction) -> None:
        output_shape = tuple(getattr(reconstruction, "shape", ()))[1:]
        matches = len(output_shape) == len(shape) and all(
            a is None or b is None or a == b for a, b in zip(output_shape, shape)
        )
        if isinstance(reconstruction, (tuple, list, dict)) or not matches:
            raise ValueError(
                f"decoders[{name!r}] maps the code (batch, {self.code_dim}) to "
                f"{_shape_text(output_shape)}, but modality {name!r} has shape {_shape_text(shape)} "
                f"(encoders[{name!r}]'s input); a decoder must reconstruct its modality's shape "
                "(add e.g. keras.layers.Reshape)."
            )

    def build(self, input_shape):
        """Build from a dict {modality: (batch, ...) shape} holding every modality."""
        if not isinstance(input_shape, Mapping):
            raise ValueError(f"{type(self).__name__}.build expects a dict {{modality: shape}}; got {input_shape!r}.")
        self._check_can_build(input_shape)
        self._build_from_specs(
            {name: (tuple(input_shape[name])[1:], keras.backend.floatx()) for name in self.modalities}
        )

    def _check_can_build(self, inputs: Mapping) -> None:
        missing = [name for name in self.modalities if name not in inputs]
        if missing:
            raise ValueError(
                f"{type(self).__name__} is not built yet (its encoders do not declare input shapes), "
                f"and the inputs lack {missing}: call it once on a batch holding every modality "
                f"{list(self.modalities)} (or fit it), or model.build({{modality: shape}}), first."
            )

    def _build_from_inputs(self, inputs: dict) -> None:
        if not self.built:
            self._check_can_build(inputs)
            tensors = {name: tf.convert_to_tensor(inputs[name]) for name in self.modalities}
            self._build_from_specs({name: (tuple(t.shape[1:]), t.dtype.name) for name, t in tensors.items()})

    def get_build_config(self):
        if self._input_specs is None:
            return None
        return {"input_specs": {name: [list(shape), dtype] for name, (shape, dtype) in self._input_specs.items()}}

    def _build_from_input_specs(self, specs) -> None:
        self._build_from_specs({name: (tuple(shape), dtype) for name, (shape, dtype) in specs.items()})

    # ------------------------------------------------------------------ input checks
    def _check_inputs(self, inputs, where: str, require_all: bool) -> dict:
        """The dict of modality batches; clear errors for unknown names, missing modalities
        (when ``require_all``) and batches whose shape does not match the modality."""
        if not isinstance(inputs, Mapping):
            raise TypeError(
                f"{type(self).__name__}.{where} expects a dict {{modality: batch}} with modalities "
                f"{list(self.modalities)}; got {describe(inputs)}."
            )
        _check_known_keys(inputs, self.modalities, f"{type(self).__name__}.{where}: the inputs")
        present = [name for name in self.modalities if name in inputs]
        if require_all and len(present) < len(self.modalities):
            missing = [name for name in self.modalities if name not in inputs]
            raise ValueError(
                f"{type(self).__name__}.{where} needs every modality {list(self.modalities)} (the "
                f"loss reconstructs all of them); the inputs lack {missing}."
            )
        if not present:
            raise ValueError(
                f"{type(self).__name__}.{where}: the inputs hold no modality; give at "
                f"least one of {list(self.modalities)}."
            )
        for name in present:
            self._check_shape(name, inputs[name], where)
        return {name: inputs[name] for name in present}

    def _check_shape(self, name: str, batch, where: str) -> None:
        if self._input_specs is None:
            return
        expected = self._input_specs[name][0]
        shape = tuple(getattr(batch, "shape", np.shape(batch)))
        actual = shape[1:]
        if len(actual) != len(expected) or any(
            e is not None and a is not None and int(a) != e for a, e in zip(actual, expected)
        ):
            raise ValueError(
                f"{type(self).__name__}.{where}: modality {name!r} expects batches of shape "
                f"{_shape_text(expected)}; got shape {tuple(shape)} (rank {len(shape)}, expected rank "
                f"{len(expected) + 1})."
            )

    def _unpack(self, data, where: str) -> dict:
        """The inputs dict of a batch: a dict, or (dict, labels[, sample_weight])."""
        if isinstance(data, (tuple, list)):
            data = keras.utils.unpack_x_y_sample_weight(tuple(data))[0]
        return self._check_inputs(data, where, require_all=True)

    # ------------------------------------------------------------------ forward
    def draw_modality_mask(self, batch_size):
        """Which modalities each example keeps in a training step.

        Advances the model's seed generator; under a distribution strategy the draw is
        made for the global batch and each replica keeps its own rows.

        Args:
            batch_size: the number of examples.

        Returns:
            A (batch_size, n_modalities) float32 tensor of 0/1 (columns in
            ``model.modalities`` order; a row is all ones or a single one).
        """
        columns = len(self.modalities)
        if not any(self.dropout_shares):
            return tf.ones((batch_size, columns), tf.float32)
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        uniform = draw_rows(lambda rows: tf.random.stateless_uniform(tf.reshape(rows, (1,)), seed=seed), batch_size)
        bounds = np.cumsum((0.0,) + self.dropout_shares)
        kept_alone = [(uniform >= low) & (uniform < high) for low, high in zip(bounds[:-1], bounds[1:])]
        anyone_alone = uniform < bounds[-1]
        mask = [tf.where(anyone_alone, alone, True) for alone in kept_alone]
        return tf.cast(tf.stack(mask, axis=1), tf.float32)

    def _shared_code(self, inputs: dict, training=None, mask=None):
        """The code (batch, code_dim) from the modalities in ``inputs``; ``mask``
        (batch, n_modalities) additionally drops modalities per example (zeroed input,
        left out of the fusion mean)."""
        projections, weights = [], []
        for index, name in enumerate(self.modalities):
            if name not in inputs:
                continue
            batch = inputs[name]
            if mask is None:
                weight = None
            else:
                weight = mask[:, index]
                keep = tf.reshape(tf.cast(weight, batch.dtype), [-1] + [1] * (len(batch.shape) - 1))
                batch = batch * keep
            projection = self.projections[name](self.encoders[name](batch, training=training))
            projections.append(projection)
            weights.append(weight)
        if mask is None:
            fused = tf.add_n(projections) / float(len(projections))
        else:
            stacked = tf.stack(projections, axis=1)  # (batch, present, units)
            kept = tf.cast(tf.stack(weights, axis=1), stacked.dtype)  # (batch, present)
            total = tf.reduce_sum(stacked * kept[:, :, None], axis=1)
            fused = total / tf.maximum(tf.reduce_sum(kept, axis=1, keepdims=True), 1.0)
        return self.code_layer(self.fusion_activation(fused))

    def _decode(self, code, training=None) -> dict:
        return {name: self.decoders[name](code, training=training) for name in self.modalities}

    def call(self, inputs, training=None):
        """Reconstruct every modality from the modalities in ``inputs``.

        Args:
            inputs: a dict holding a non-empty subset of the modalities.
            training: whether the sub-models run in training mode.

        Returns:
            A dict {modality: (batch, *shape)}.
        """
        inputs = self._check_inputs(inputs, "call", require_all=False)
        return self._decode(self._shared_code(inputs, training=training), training=training)

    # ------------------------------------------------------------------ loss and steps
    def compute_reconstruction_losses(self, inputs: dict, reconstructions: dict) -> dict:
        """{modality: batch mean of the per-example reconstruction loss} in float32."""
        losses = {}
        for name in self.modalities:
            target = tf.cast(inputs[name], tf.float32)
            values = tf.cast(self._loss_functions[name](target, tf.cast(reconstructions[name], tf.float32)), tf.float32)
            losses[name] = tf.reduce_mean(values)  # per-example means are equal-sized: one mean
        return losses

    def _total_loss(self, losses: dict):
        total = tf.add_n([self.loss_weights[name] * losses[name] for name in self.modalities])
        if self.losses:  # regularisation losses of the sub-models
            total = total + tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses])
        return total

    def unpack_batch(self, data, where: str):
        return (self._unpack(data, where),)

    def build_from_batch(self, inputs) -> None:
        self._build_from_inputs(inputs)

    def tracker_weight(self, inputs):
        return tf.shape(inputs[self.modalities[0]])[0]  # example-weighted epoch means

    def batch_loss(self, inputs, training=False) -> dict:
        """The loss of a batch holding every modality and its reconstruction terms.

        In training, with modality dropout (``draw_modality_mask``).

        Args:
            inputs: a dict with every modality.
            training: whether this is a training step.

        Returns:
            ``{"loss": ..., "reconstruction_<modality>": ...}``.
        """
        mask = self.draw_modality_mask(tf.shape(inputs[self.modalities[0]])[0]) if training else None
        reconstructions = self._decode(self._shared_code(inputs, training=training, mask=mask), training=training)
        losses = self.compute_reconstruction_losses(inputs, reconstructions)
        return {
            "loss": self._total_loss(losses),
            **{f"reconstruction_{name}": losses[name] for name in self.modalities},
        }

    def predict_step(self, data):
        if isinstance(data, (tuple, list)):
            data = keras.utils.unpack_x_y_sample_weight(tuple(data))[0]
        return self(data, training=False)

    # ------------------------------------------------------------------ inference
    def _present(self, present, inputs: Mapping, method: str) -> tuple:
        """The present modalities in model order: ``present`` (a name or names) or, for
        None, the modalities found in ``inputs``."""
        if present is None:
            names = [name for name in self.modalities if name in inputs]
        else:
            names = [present] if isinstance(present, str) else list(present)
            if not names:
                raise ValueError(
                    f"{type(self).__name__}.{method}: present is empty; name at least one "
                    f"of the modalities {list(self.modalities)}."
                )
            _check_known_keys(dict.fromkeys(names), self.modalities, f"{type(self).__name__}.{method}: present")
            absent = [name for name in names if name not in inputs]
            if absent:
                raise ValueError(
                    f"{type(self).__name__}.{method}: present includes {absent} but the "
                    f"inputs have no such entry (they have {sorted(map(str, inputs))})."
                )
        _check_known_keys(inputs, self.modalities, f"{type(self).__name__}.{method}: the inputs")
        if not names:
            raise ValueError(
                f"{type(self).__name__}.{method}: the inputs hold no modality; give at "
                f"least one of {list(self.modalities)}."
            )
        return tuple(name for name in self.modalities if name in names)

    def _inference_function(self, present: tuple, targets: tuple):
        """A tf.function inputs -> (code, {target: reconstruction}) for one subset of present
        modalities and of decoded ones (none: the code alone), traced once for any batch size."""
        key = (present, targets)
        if key not in self._inference_functions:

            def infer(inputs):
                code = self._shared_code(inputs, training=False)
                return code, {name: self.decoders[name](code, training=False) for name in targets}

            signature = {
                name: tf.TensorSpec((None, *self._input_specs[name][0]), self._input_specs[name][1]) for name in present
            }
            # No tensor-dependent Python control flow inside: autograph would only slow tracing.
            self._inference_functions[key] = tf.function(infer, input_signature=[signature], autograph=False)
        return self._inference_functions[key]

    def _infer(self, inputs, present, targets: tuple, method: str, batch_size: int):
        """(codes, {target: reconstructions}) as NumPy arrays over all rows, in batches."""
        check_positive_int(batch_size, "batch_size")
        if not isinstance(inputs, Mapping):
            raise TypeError(
                f"{type(self).__name__}.{method} expects a dict {{modality: array}}; got {describe(inputs)}."
            )
        present = self._present(present, inputs, method)
        arrays = self._check_inputs({name: inputs[name] for name in present}, method, require_all=False)
        if not self.built:
            self._build_from_inputs(arrays)  # explains what is missing when it cannot
        rows = {name: int(np.shape(array)[0]) for name, array in arrays.items()}
        if len(set(rows.values())) != 1:
            raise ValueError(
                f"{type(self).__name__}.{method}: the modalities have different numbers "
                f"of rows {rows}; they must be paired row by row."
            )
        count = next(iter(rows.values()))
        if count == 0:
            raise ValueError(f"{type(self).__name__}.{method}: the inputs have no rows.")
        for name, array in arrays.items():  # NaN/inf would flow into every code and reconstruction
            check_finite_rows(
                array,
                f"inputs[{name!r}]",
                where=f"{type(self).__name__}.{method}",
                fix="remove or impute those rows first, or leave that modality out "
                "(present=...) if it is the only one affected",
            )
        targets = tuple(name for name in self.modalities if name in targets)
        function = self._inference_function(present, targets)
        codes, reconstructions = [], {name: [] for name in targets}
        for start in range(0, count, batch_size):
            batch = {
                name: tf.cast(as_input_tensor(array[start : start + batch_size]), self._input_specs[name][1])
                for name, array in arrays.items()
            }
            code, decoded = function(batch)
            codes.append(to_numpy(code))
            for name in targets:
                reconstructions[name].append(to_numpy(decoded[name]))
        return np.concatenate(codes), {name: np.concatenate(parts) for name, parts in reconstructions.items()}

    def encode(self, inputs, present=None, *, batch_size: int = 256) -> np.ndarray:
        """Shared codes of ``inputs`` from the ``present`` modalities (inference mode).

        Args:
            inputs: a dict of arrays with n rows; it may omit the absent modalities.
            present: a name or names; default: every modality in ``inputs``.
            batch_size: rows per call.

        Returns:
            A NumPy (n, code_dim) array.
        """
        return self._infer(inputs, present, (), "encode", batch_size)[0]

    def reconstruct(self, inputs, present=None, *, batch_size: int = 256) -> dict:
        """Every modality, decoded from the code of the ``present`` modalities.

        Args:
            inputs: a dict of arrays with n rows, as in ``encode``.
            present: a name or names, as in ``encode``.
            batch_size: rows per call.

        Returns:
            {modality: (n, *shape) array} for EVERY modality.
        """
        return self._infer(inputs, present, self.modalities, "reconstruct", batch_size)[1]

    def translate(self, inputs, source, target, *, batch_size: int = 256):
        """Encode from ``source`` only and decode ``target``.

        Args:
            inputs: a dict of arrays, or the source's array itself when the source is a
                single modality.
            source: a modality name or names.
            target: a modality name or names.
            batch_size: rows per call.

        Returns:
            For one target name an (n, *shape) array, for several names a dict.

        Raises:
            TypeError: several sources but ``inputs`` is not a dict.
            ValueError: ``target`` is empty or names an unknown modality.
        """
        sources = [source] if isinstance(source, str) else list(source)
        if not isinstance(inputs, Mapping):
            if len(sources) != 1:
                raise TypeError(
                    f"{type(self).__name__}.translate: with several sources {sources}, "
                    "inputs must be a dict {modality: array}."
                )
            inputs = {sources[0]: inputs}
        targets = [target] if isinstance(target, str) else list(target)
        if not targets:
            raise ValueError(f"{type(self).__name__}.translate: target is empty; name one of {list(self.modalities)}.")
        _check_known_keys(dict.fromkeys(targets), self.modalities, f"{type(self).__name__}.translate: target")
        reconstructions = self._infer(inputs, sources, tuple(targets), "translate", batch_size)[1]
        if isinstance(target, str):
            return reconstructions[target]
        return {name: reconstructions[name] for name in targets}

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        losses = {
            name: spec if isinstance(spec, str) else keras.saving.serialize_keras_object(spec)
            for name, spec in self.reconstruction_losses.items()
        }
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoders": {name: keras.saving.serialize_keras_object(model) for name, model in self.encoders.items()},
            "decoders": {name: keras.saving.serialize_keras_object(model) for name, model in self.decoders.items()},
            "code_dim": self.code_dim,
            "fusion_units": self.fusion_units,
            "fusion_activation": keras.activations.serialize(self.fusion_activation),
            "modality_dropout": (
                dict(self.modality_dropout) if isinstance(self.modality_dropout, Mapping) else self.modality_dropout
            ),
            "reconstruction_losses": losses,
            "loss_weights": dict(self.loss_weights),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = copy.deepcopy(config)  # Keras' deserialization empties the dicts it reads
        for key in ("encoders", "decoders"):
            config[key] = {
                name: keras.saving.deserialize_keras_object(model, custom_objects=custom_objects)
                for name, model in config[key].items()
            }
        config["reconstruction_losses"] = {
            name: spec
            if isinstance(spec, str)
            else keras.saving.deserialize_keras_object(spec, custom_objects=custom_objects)
            for name, spec in config["reconstruction_losses"].items()
        }
        config["fusion_activation"] = keras.activations.deserialize(config["fusion_activation"])
        return cls(**config)
