"""Multimodal fusion classifiers: one encoder per modality, a fusion layer, a classifier head.

    >>> from xmodal_tf.encoders import cnn_encoder, rnn_encoder
    >>> from xmodal_tf.models.fusion import build_fusion_classifier
    >>> model = build_fusion_classifier(
    ...     {"image": cnn_encoder((28, 28, 1), 64, name="image_encoder"),
    ...      "audio": rnn_encoder(input_dim=13, embedding_dim=64, name="audio_encoder")},
    ...     fusion="gated", num_classes=10, modality_dropout=0.3)
    >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> model.fit({"image": images, "audio": mfccs}, labels, epochs=5)
    >>> model.predict({"image": images})                        # audio absent for every example
    >>> model.predict({"image": images, "audio": mfccs,
    ...                "modality_mask": [[1, 0], [1, 1], ...]})  # per-example presence

Main names: ``build_fusion_classifier``, ``FusionClassifier``, ``FUSION_STRATEGIES``.
Design notes: docs/DESIGN.md (section xmodal_tf/models/fusion.py).
"""

from __future__ import annotations

import copy
import inspect
import numbers

import keras
import numpy as np
from keras import ops

from xmodal_tf._replicas import in_replica_context, num_replicas
from xmodal_tf._validation import check_int, check_int_sequence, check_number, check_positive_int, check_rate
from xmodal_tf.layers import (
    AttentionFusion,
    AverageFusion,
    ConcatFusion,
    GatedFusion,
    LateFusion,
    ModalityDropout,
    ReplicaDropout,
    TensorFusion,
    WeightedFusion,
)
from xmodal_tf.models.base import MultiWorkerFitMixin, check_finite_rows, declared_inputs

__all__ = ["FUSION_STRATEGIES", "MASK_INPUT", "FusionClassifier", "build_fusion_classifier"]

FUSION_STRATEGIES = ("average", "weighted", "concat", "gated", "attention", "tensor", "late")
MASK_INPUT = "modality_mask"


# ----------------------------------------------------------------------------- validation
def _check_encoders(encoders) -> dict:
    if not isinstance(encoders, dict) or not encoders:
        raise TypeError(
            "encoders must be a non-empty dict {modality name: keras.Model}, e.g. "
            f"{{'image': cnn_encoder(...), 'audio': rnn_encoder(...)}}; got {type(encoders).__name__}."
        )
    owners = {}
    for modality, encoder in encoders.items():
        if not isinstance(modality, str) or not modality or modality == MASK_INPUT:
            raise ValueError(f"Modality names must be non-empty strings other than {MASK_INPUT!r}; got {modality!r}.")
        if not isinstance(encoder, keras.Model):
            raise TypeError(
                f"encoders[{modality!r}] must be a keras.Model (e.g. from xmodal_tf.encoders); "
                f"got {type(encoder).__name__}."
            )
        _encoder_input(encoder, modality)
        _encoder_output_dim(encoder, modality)
        if encoder.name in encoders:
            raise ValueError(
                f"encoders[{modality!r}] is named {encoder.name!r}, which is also a modality name "
                "(the name of an input layer); build the encoder with another name, e.g. "
                f"name='{encoder.name}_encoder'."
            )
        other = owners.setdefault(encoder.name, (modality, encoder))
        if other[1] is not encoder:
            raise ValueError(
                f"encoders[{other[0]!r}] and encoders[{modality!r}] are different models with the "
                f"same name {encoder.name!r}; layer names must be unique, so build them with "
                "distinct names (or pass the same model twice to share it)."
            )
    return dict(encoders)


def _encoder_input(encoder, modality: str):
    inputs = declared_inputs(encoder)
    if not inputs or len(inputs) != 1:
        raise ValueError(
            f"encoders[{modality!r}] must be a built model with exactly one input (a functional "
            f"model such as those of xmodal_tf.encoders); it has {len(inputs or [])} inputs."
        )
    return inputs[0]


def _encoder_output_dim(encoder, modality: str) -> int:
    outputs = encoder.outputs
    shape = tuple(outputs[0].shape) if len(outputs) == 1 else None
    if shape is None or len(shape) != 2 or shape[1] is None:
        raise ValueError(
            f"encoders[{modality!r}] must have one (batch, features) output with a known size; "
            f"got {[tuple(o.shape) for o in outputs]}. Pool or flatten its output."
        )
    return int(shape[1])


def _dropout_rates(modality_dropout, modalities) -> list[float]:
    """One rate per modality, in ``modalities`` order (ModalityDropout checks the values)."""
    if isinstance(modality_dropout, dict):
        unknown = sorted(set(modality_dropout) - set(modalities))
        if unknown:
            raise ValueError(
                f"modality_dropout names unknown modalities {unknown}; the modalities are {list(modalities)}."
            )
        return [modality_dropout.get(modality, 0.0) for modality in modalities]
    if isinstance(modality_dropout, numbers.Real) and not isinstance(modality_dropout, bool):
        return [modality_dropout] * len(modalities)
    if isinstance(modality_dropout, (list, tuple)):
        if len(modality_dropout) != len(modalities):
            raise ValueError(
                f"modality_dropout has {len(modality_dropout)} rates for {len(modalities)} "
                f"modalities {list(modalities)}; give one per modality, one for all, or a dict."
            )
        return list(modality_dropout)
    raise TypeError(
        f"modality_dropout must be a rate, a sequence of rates or a dict {{modality: rate}}; got {modality_dropout!r}."
    )


def _check_loss_weight(weight) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(
            f"unimodal_loss_weight must be a number >= 0 (0 turns the auxiliary losses off); got {weight!r}."
        )
    if not 0.0 <= float(weight) < float("inf"):
        raise ValueError(
            f"unimodal_loss_weight must be a finite number >= 0 (0 turns the auxiliary losses off); got {weight!r}."
        )
    return float(weight)


def _check_distillation(share) -> float:
    return check_number(
        share,
        "unimodal_distillation",
        minimum=0,
        maximum=1,
        expected="a number in [0, 1] (the share of the fused prediction in the unimodal heads' target)",
    )


UNIMODAL_HEADS = ("auxiliary", "fusion")


def _check_unimodal_head(head) -> str:
    if head not in UNIMODAL_HEADS:
        raise ValueError(
            f'unimodal_head must be one of {UNIMODAL_HEADS} ("auxiliary": a softmax head of its own per '
            f'modality; "fusion": the classifier itself with only that modality present); '
            f"got {head!r}."
        )
    return head


def _is_tensor(value) -> bool:
    return ops.is_tensor(value) or keras.backend.is_keras_tensor(value)


# ----------------------------------------------------------------------------- graph pieces
def _dense_head(x, hidden_units, dropout, prefix: str):
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"{prefix}_dense{i}")(x)
        if dropout:
            x = ReplicaDropout(dropout, name=f"{prefix}_dropout{i}")(x)
    return x


def _fusion_layer(fusion, dims, modalities, hidden_units, dropout, projection_dim):
    """(fusion layer, hidden units still to add in the head) for a strategy name or a layer."""
    if isinstance(fusion, keras.layers.Layer):
        if "mask" not in inspect.signature(fusion.call).parameters:
            raise TypeError(
                f"The fusion layer {fusion.name!r} ({type(fusion).__name__}) must accept the presence "
                "mask: call(self, embeddings, mask=None), mask of shape (batch, n_modalities)."
            )
        return fusion, hidden_units
    if not isinstance(fusion, str) or fusion not in FUSION_STRATEGIES:
        raise ValueError(
            f"Unknown fusion strategy {fusion!r}; choose one of {FUSION_STRATEGIES} or pass a "
            "fusion layer instance (e.g. xmodal_tf.layers.GatedFusion(units=32))."
        )
    units = projection_dim or max(dims)
    name = f"{fusion}_fusion"
    if fusion == "concat":
        return ConcatFusion(hidden_units, dropout=dropout, modalities=modalities, name=name), ()
    if fusion == "tensor":
        return TensorFusion(hidden_units, dropout=dropout, modalities=modalities, name=name), ()
    layers = {
        "average": lambda: AverageFusion(modalities=modalities, name=name),
        "weighted": lambda: WeightedFusion(modalities=modalities, name=name),
        "gated": lambda: GatedFusion(units, modalities=modalities, name=name),
        "attention": lambda: AttentionFusion(units, modalities=modalities, name=name),
        "late": lambda: LateFusion(modalities=modalities, name=name),
    }
    return layers[fusion](), hidden_units


# ----------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="xmodal_tf")
class FusionClassifier(MultiWorkerFitMixin, keras.Model):
    """A functional fusion classifier; build it with ``build_fusion_classifier``.

    The constructor's arguments are those of ``build_fusion_classifier``.

    Attributes:
        modalities: tuple of the modality names, the mask's column order.
        encoders: dict {modality: encoder}.
        fusion_layer: the fusion layer.
        unimodal_loss_weight: the weight of the auxiliary unimodal losses.
        unimodal_network: inputs -> {modality: its own head's probabilities}; None when
            the weight is 0.
    """

    def __init__(
        self,
        encoders,
        fusion="concat",
        num_classes=None,
        *,
        modality_dropout=0.0,
        hidden_units=(64,),
        projection_dim=None,
        dropout=0.0,
        unimodal_loss_weight=0.0,
        unimodal_distillation=0.0,
        unimodal_head="auxiliary",
        seed=None,
        name="fusion_classifier",
        **kwargs,
    ):
        encoders = _check_encoders(encoders)
        unimodal_loss_weight = _check_loss_weight(unimodal_loss_weight)
        unimodal_head = _check_unimodal_head(unimodal_head)
        unimodal_distillation = _check_distillation(unimodal_distillation)
        num_classes = check_int(num_classes, "num_classes", minimum=2, expected="an integer >= 2")
        hidden_units = check_int_sequence(hidden_units, "hidden_units", allow_empty=True)
        projection_dim = check_positive_int(projection_dim, "projection_dim", allow_none=True)
        dropout = check_rate(dropout, "dropout")
        modalities = tuple(encoders)
        rates = _dropout_rates(modality_dropout, modalities)

        inputs = {}
        for modality, encoder in encoders.items():
            spec = _encoder_input(encoder, modality)
            inputs[modality] = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype, name=modality)
        inputs[MASK_INPUT] = keras.Input(shape=(len(modalities),), name=MASK_INPUT)
        mask = inputs[MASK_INPUT]
        if any(rates):
            mask = ModalityDropout(rates, seed=seed, name="modality_dropout")(mask)

        embeddings = [encoders[modality](inputs[modality]) for modality in modalities]
        if projection_dim:
            embeddings = [
                keras.layers.Dense(projection_dim, name=f"{modality}_projection")(embedding)
                for modality, embedding in zip(modalities, embeddings)
            ]
        dims = [int(embedding.shape[-1]) for embedding in embeddings]
        layer, head_units = _fusion_layer(fusion, dims, modalities, hidden_units, dropout, projection_dim)
        if fusion == "late":
            per_modality = [
                keras.layers.Dense(num_classes, activation="softmax", name=f"{modality}_classifier")(
                    _dense_head(embedding, head_units, dropout, f"{modality}_head")
                )
                for modality, embedding in zip(modalities, embeddings)
            ]
            outputs = layer(per_modality, mask=mask)
            unimodal = dict(zip(modalities, per_modality))
        else:
            fused = _dense_head(layer(embeddings, mask=mask), head_units, dropout, "head")
            outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(fused)
            unimodal = (
                {
                    modality: keras.layers.Dense(
                        num_classes, activation="softmax", name=f"{modality}_unimodal_classifier"
                    )(embedding)
                    for modality, embedding in zip(modalities, embeddings)
                }
                if unimodal_loss_weight and unimodal_head == "auxiliary"
                else {}
            )
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        self.unimodal_loss_weight = unimodal_loss_weight
        self.unimodal_distillation = unimodal_distillation
        self.unimodal_head = unimodal_head
        # The auxiliary heads are off the inference graph (except late fusion's own heads):
        # a second functional model over the same layers reaches them, and as an attribute
        # it is tracked, trained and saved with the classifier.
        self.unimodal_network = (
            keras.Model({modality: inputs[modality] for modality in modalities}, unimodal, name=f"{name}_unimodal")
            if unimodal_loss_weight and unimodal_head == "auxiliary"
            else None
        )
        self._unimodal_loss_tracker = keras.metrics.Mean(name="unimodal_loss") if unimodal_loss_weight else None

        self.modalities = modalities
        self.num_classes = num_classes
        self._fusion_argument = fusion if isinstance(fusion, str) else None
        self._fusion_layer_name = layer.name
        self._encoder_names = tuple(encoder.name for encoder in encoders.values())
        self._settings = {
            "num_classes": num_classes,
            "modality_dropout": modality_dropout,
            "hidden_units": list(hidden_units),
            "projection_dim": projection_dim,
            "dropout": float(dropout),
            "unimodal_loss_weight": unimodal_loss_weight,
            "unimodal_distillation": unimodal_distillation,
            "unimodal_head": unimodal_head,
            "seed": seed,
        }

    # ------------------------------------------------------------------ access
    @property
    def encoders(self) -> dict:
        return {modality: self.get_layer(name) for modality, name in zip(self.modalities, self._encoder_names)}

    @property
    def fusion_layer(self) -> keras.layers.Layer:
        return self.get_layer(self._fusion_layer_name)

    # ------------------------------------------------------------------ inputs
    def predict(self, x, *args, **kwargs):
        """``keras.Model.predict``, with a dict of arrays checked first.

        The check gives one ValueError or TypeError naming the modality, instead of an
        error from deep inside Keras or, for NaN or inf values, probabilities that look
        valid.

        Args:
            x: the inputs, as for ``keras.Model.predict`` (a dict is checked by
                ``check_prediction_inputs``).
            *args: passed to ``keras.Model.predict``.
            **kwargs: passed to ``keras.Model.predict``.

        Returns:
            The class probabilities (n, num_classes).

        Raises:
            ValueError: a bad input dict, weights that hold NaN or inf, or rows whose
                probabilities are not finite.
            TypeError: an input of the wrong type.
        """
        if not isinstance(x, dict):
            return super().predict(x, *args, **kwargs)
        self.check_prediction_inputs(x)
        # NaN weights (diverged training) give uniform probabilities in predict's graph, not NaN.
        bad = [weight.path for weight in self.weights if not np.isfinite(np.asarray(weight.numpy())).all()]
        if bad:
            raise ValueError(
                f"{self.name}.predict: the weights {bad[:3]}{' ...' if len(bad) > 3 else ''} hold NaN or "
                "inf (training diverged); retrain (a lower learning rate) or load a good checkpoint."
            )
        probabilities = super().predict(x, *args, **kwargs)
        # Finite inputs can still overflow inside the network (values near 3e38): NaN
        # probabilities are refused too, by row, where the backend lets NaN through.
        check_finite_rows(
            probabilities,
            "the predicted probabilities",
            where=f"{self.name}.predict",
            fix="the inputs of those rows are too large for the network; rescale them as in training",
        )
        return probabilities

    def check_prediction_inputs(self, inputs: dict) -> None:
        """Check a dict of NumPy arrays or tensors for ``predict``.

        Checks: not empty, known keys, one row per example in every entry, each
        modality's feature shape, the mask's shape (n, number of modalities), finite
        values (``check_finite_rows``). Messages give the shapes of the whole arrays,
        not of a batch.

        Args:
            inputs: the dict given to ``predict``.

        Raises:
            ValueError: a check fails.
            TypeError: an entry of the wrong type.
        """
        where = f"{self.name}.predict"
        if not inputs or all(value is None for value in inputs.values()):
            raise ValueError(
                f"{where}: the input dict is empty; pass at least one modality of "
                f"{list(self.modalities)} as an array of shape (n, ...)."
            )
        unknown = sorted(set(map(str, inputs)) - set(self.modalities) - {MASK_INPUT})
        if unknown:
            raise ValueError(
                f"{where}: unknown input(s) {unknown}; the inputs are the modalities "
                f"{list(self.modalities)} and optionally {MASK_INPUT!r}."
            )
        shapes = {}
        for key, value in inputs.items():
            if value is None:
                continue
            array = np.asarray(value)
            if array.dtype.kind not in "biuf":
                raise TypeError(
                    f"{where}: {key!r} must be a numeric array; got {type(value).__name__} of dtype {array.dtype}."
                )
            if array.ndim == 0:
                raise ValueError(f"{where}: {key!r} must have one row per example; got a scalar.")
            shapes[key] = tuple(array.shape)
            if key == MASK_INPUT:
                columns = len(self.modalities)
                if array.ndim != 2 or array.shape[1] != columns:
                    raise ValueError(
                        f"{where}: {MASK_INPUT!r} must have shape (n, {columns}), one column per "
                        f"modality in the order {list(self.modalities)}; got shape {array.shape}."
                    )
                check_finite_rows(array, repr(MASK_INPUT), where=where, fix="use 1 (present) or 0 (absent)")
                continue
            expected = tuple(self.input[key].shape[1:])
            if len(expected) != array.ndim - 1 or any(
                e is not None and e != g for e, g in zip(expected, array.shape[1:])
            ):
                raise ValueError(
                    f"{where}: modality {key!r} takes rows of shape {expected}; got an array of shape {array.shape}."
                )
            fix = (
                f"replace them (e.g. with zeros) and mark the modality absent for those rows in {MASK_INPUT!r}, "
                "or drop the rows"
            )
            check_finite_rows(array, f"modality {key!r}", where=where, fix=fix)
            target = np.dtype(self.input[key].dtype)
            if array.dtype.kind == "f" and target.kind == "f" and np.finfo(array.dtype).max > np.finfo(target).max:
                with np.errstate(over="ignore"):  # float64 values beyond float32's range become inf
                    check_finite_rows(
                        array.astype(target),
                        f"modality {key!r}",
                        where=where,
                        fix=f"its values exceed {target}'s range ({np.finfo(target).max:.3g}) there; rescale them",
                    )
        listed = ", ".join(f"{key!r}: {shape}" for key, shape in shapes.items())
        if len({shape[0] for shape in shapes.values()}) > 1:
            raise ValueError(
                f"{where}: the inputs have different numbers of rows ({listed}); give one row per "
                "example in every modality (and in the mask)."
            )
        if not next(iter(shapes.values()))[0]:
            raise ValueError(f"{where}: the inputs have no rows ({listed}); give at least one example.")

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, dict):
            inputs = self.complete_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def complete_inputs(self, inputs: dict) -> dict:
        """The full input dict.

        Absent modalities are filled with zeros, and the presence mask (float 0/1,
        (batch, n)) is made from the given mask and the given modalities.

        Args:
            inputs: a dict with some of the modalities and optionally the mask.

        Returns:
            A dict with every modality and the mask.
        """
        unknown = sorted(set(map(str, inputs)) - set(self.modalities) - {MASK_INPUT})
        if unknown:
            raise ValueError(
                f"{self.name}: unknown input(s) {unknown}; the inputs are the modalities "
                f"{list(self.modalities)} and optionally {MASK_INPUT!r}."
            )
        # Keras refuses dicts that mix NumPy arrays and tensors, and the mask below is a tensor.
        inputs = {
            key: value if value is None or _is_tensor(value) else ops.convert_to_tensor(value)
            for key, value in inputs.items()
        }
        given = [modality for modality in self.modalities if inputs.get(modality) is not None]
        if not given:
            raise ValueError(
                f"{self.name}: pass at least one modality of {list(self.modalities)}; to mark a "
                f"modality absent for some examples use {MASK_INPUT!r}."
            )
        reference = ops.cast(inputs[given[0]], "float32")
        # (batch,) ones built from the data, so this works for eager, graph and symbolic tensors.
        ones = ops.ones_like(ops.sum(reference, axis=tuple(range(1, len(reference.shape)))))
        completed, columns = {}, []
        for modality in self.modalities:
            if inputs.get(modality) is None:
                completed[modality] = self._zeros_for(modality, ones)
                columns.append(ops.zeros_like(ones))
            else:
                completed[modality] = inputs[modality]
                columns.append(ones)
        presence = ops.stack(columns, axis=1)
        mask = inputs.get(MASK_INPUT)
        if mask is not None:
            mask = ops.cast(mask, "float32")
            if len(mask.shape) != 2 or mask.shape[1] not in (None, len(self.modalities)):
                raise ValueError(
                    f"{self.name}: {MASK_INPUT} must have shape (batch, {len(self.modalities)}), one "
                    f"column per modality in the order {list(self.modalities)}; got shape "
                    f"{tuple(mask.shape)}."
                )
            presence = presence * ops.cast(ops.not_equal(mask, 0.0), "float32")
        completed[MASK_INPUT] = presence
        return completed

    def _zeros_for(self, modality: str, ones):
        """Zeros of the modality's input shape for every example (unknown sizes become 1)."""
        spec = self.input[modality]
        shape = tuple(1 if size is None else size for size in spec.shape[1:])
        column = ops.reshape(ops.zeros_like(ones), (-1,) + (1,) * len(shape))
        return ops.cast(column + ops.zeros(shape), spec.dtype)

    # ------------------------------------------------------------------ auxiliary losses
    def unimodal_loss(
        self,
        inputs: dict,
        labels,
        sample_weight=None,
        training=False,
        predictions=None,
        teachers: dict | None = None,
        teacher_share: float = 0.0,
    ):
        """The auxiliary loss: the summed cross-entropies of the modalities' own heads.

        The sum over modalities of the cross-entropy of that modality's own head (on its
        embedding alone), averaged over the batch. The target is the labels, or with
        ``unimodal_distillation`` = a > 0 the mixture (1 - a) one_hot(labels) +
        a stop_gradient(predictions), the fused classifier's own probabilities. Examples
        whose input lacks the modality (missing key or mask 0; modality dropout does not
        count) add nothing to that modality's term.

        Args:
            inputs: the input dict (completed with ``complete_inputs``).
            labels: integer class labels (batch,).
            sample_weight: optional per-example weights (batch,).
            training: whether the heads (and the classifier, for ``predictions``) run in
                training mode.
            predictions: the fused classifier's probabilities, the distillation target;
                computed with ``training`` if not given.
            teachers: {modality: (batch, classes) probabilities} of another classifier of
                that modality alone (e.g. a single-modality classifier trained beside
                this one). A modality without a teacher keeps (1 - a) one_hot + a fused.
            teacher_share: b, the share of a modality's target that becomes
                stop_gradient(teacher), taken from the labels' share: (1 - a - b) one_hot
                + a fused + b teacher (distillation from unimodal teachers). a + b must be
                at most 1.

        Returns:
            The loss, a scalar tensor.

        Raises:
            ValueError: the classifier was built with ``unimodal_loss_weight=0`` (it has
                no such heads), a + b exceeds 1, or ``teachers`` names unknown modalities.
        """
        if not self.unimodal_loss_weight:
            raise ValueError(f"{self.name} has no unimodal heads: build it with unimodal_loss_weight > 0.")
        completed = self.complete_inputs(inputs)
        probabilities = self.unimodal_probabilities(completed, training=training)
        present = completed[MASK_INPUT]
        if sample_weight is not None:
            present = present * ops.reshape(ops.cast(sample_weight, present.dtype), (-1, 1))
        teachers = dict(teachers or {})
        teacher_share = _check_distillation(teacher_share) if teachers else 0.0
        if teacher_share + self.unimodal_distillation > 1.0 + 1e-9:
            raise ValueError(
                f"teacher_share ({teacher_share:g}) plus unimodal_distillation "
                f"({self.unimodal_distillation:g}) must be at most 1 (the labels take the rest)."
            )
        unknown = sorted(set(teachers) - set(self.modalities))
        if unknown:
            raise ValueError(
                f"teachers names unknown modalities {unknown}; the modalities are {list(self.modalities)}."
            )
        labels_one_hot = ops.one_hot(ops.reshape(ops.cast(labels, "int32"), (-1,)), self.num_classes)
        targets = labels_one_hot
        if self.unimodal_distillation:
            if predictions is None:
                predictions = self(completed, training=training)
            share = self.unimodal_distillation
            targets = (1.0 - share) * targets + share * ops.stop_gradient(ops.cast(predictions, targets.dtype))
        cross_entropy = keras.losses.CategoricalCrossentropy(reduction="sum_over_batch_size")
        terms = []
        for index, modality in enumerate(self.modalities):
            target = targets
            if modality in teachers and teacher_share:
                teacher = ops.stop_gradient(ops.cast(teachers[modality], targets.dtype))
                target = targets + teacher_share * (teacher - labels_one_hot)
            weight = present[:, index]
            # Absent rows get weight 0, and (``where``) a finite stand-in for whatever their
            # head made of the filler or garbage input, so NaN there cannot leak into the loss.
            uniform = ops.full_like(probabilities[modality], 1.0 / self.num_classes)
            given = ops.where(ops.expand_dims(weight, 1) > 0, probabilities[modality], uniform)
            terms.append(cross_entropy(target, given, sample_weight=weight))
        return ops.sum(ops.stack(terms))

    def unimodal_probabilities(self, inputs: dict, training=False) -> dict:
        """The probabilities of each modality's unimodal head.

        With ``unimodal_head="auxiliary"``, each modality's own softmax head on its
        embedding (``unimodal_network``); with ``"fusion"``, the classifier itself with
        only that modality marked present (the path its predictions take when the other
        modalities are absent).

        Args:
            inputs: a dict with every modality, as ``complete_inputs`` returns.
            training: whether the networks run in training mode.

        Returns:
            {modality: (batch, classes) probabilities}.
        """
        if self.unimodal_head == "auxiliary":
            return self.unimodal_network(
                {modality: inputs[modality] for modality in self.modalities}, training=training
            )
        given = {modality: inputs[modality] for modality in self.modalities}
        probabilities = {}
        for index, modality in enumerate(self.modalities):
            only = ops.one_hot(ops.full_like(ops.cast(inputs[MASK_INPUT][:, 0], "int32"), index), len(self.modalities))
            probabilities[modality] = self({**given, MASK_INPUT: only}, training=training)
        return probabilities

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss plus ``unimodal_loss_weight`` x ``unimodal_loss``.

        Added in training and in evaluation, like a regularization loss; ``y_pred`` is
        the distillation target. The unimodal loss is also reported as the metric
        ``unimodal_loss``.
        """
        loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if not self.unimodal_loss_weight or y is None or not isinstance(x, dict):
            return loss
        unimodal = self.unimodal_loss(x, y, sample_weight, training=training, predictions=y_pred)
        # The compiled loss is already divided by the number of replicas; the auxiliary
        # one is too (CategoricalCrossentropy's call scales it the same way). The metric
        # reports it unscaled, like Keras' own loss metric.
        replicas = num_replicas() if in_replica_context() else 1
        self._unimodal_loss_tracker.update_state(unimodal * replicas)
        return loss + ops.cast(self.unimodal_loss_weight, loss.dtype) * unimodal

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        encoders, first_owner = [], {}
        for modality, encoder in self.encoders.items():
            if id(encoder) in first_owner:
                encoders.append([modality, {"shared_with": first_owner[id(encoder)]}])
            else:
                first_owner[id(encoder)] = modality
                encoders.append([modality, keras.saving.serialize_keras_object(encoder)])
        fusion = self._fusion_argument
        if fusion is None:
            fusion = keras.saving.serialize_keras_object(self.fusion_layer)
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoders": encoders,
            "fusion": fusion,
            **self._settings,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = copy.deepcopy(config)  # Keras' deserialization empties the dicts it reads
        encoders = {}
        for modality, encoder in config.pop("encoders"):
            if "shared_with" in encoder:
                encoders[modality] = encoders[encoder["shared_with"]]
            else:
                encoders[modality] = keras.saving.deserialize_keras_object(encoder, custom_objects=custom_objects)
        if isinstance(config["fusion"], dict):
            config["fusion"] = keras.saving.deserialize_keras_object(config["fusion"], custom_objects=custom_objects)
        return cls(encoders, **config)


def build_fusion_classifier(encoders, fusion="concat", num_classes=None, **settings) -> FusionClassifier:
    """A fusion classifier over named modalities.

    The graph is ``inputs[m] -> encoders[m] -> [Dense(projection_dim)] -> fusion(embeddings,
    mask) -> head -> softmax``; the output is class PROBABILITIES (compile with
    ``sparse_categorical_crossentropy``). The inputs are a dict with one entry per
    modality plus the presence mask ``"modality_mask"`` (batch, n_modalities); both are
    optional when calling the model. More conventions: docs/DESIGN.md (section
    xmodal_tf/models/fusion.py).

    Args:
        encoders: dict {modality name: keras.Model}, each from that modality's input to a
            (batch, d) embedding (e.g. ``xmodal_tf.encoders``); the dict order is the
            order of the presence mask's columns.
        fusion: a name in ``FUSION_STRATEGIES`` or a fusion layer instance.
        num_classes: number of classes (>= 2); the output is (batch, num_classes) probabilities.
        modality_dropout: training-time rate of dropping each modality (a number, a
            sequence in ``encoders`` order or a dict {modality: rate}).
        hidden_units: MLP between the fused vector and the softmax (per modality for "late").
        projection_dim: if set, each embedding first goes through its own Dense(projection_dim)
            (needed for average/weighted fusion of embeddings of different sizes).
        dropout: dropout rate after each hidden layer.
        unimodal_loss_weight: weight (>= 0) of the auxiliary unimodal losses added in
            training: each modality's embedding also feeds its own softmax head (for
            "late", its existing per-modality classifier), trained on the labels with
            that weight. 0 (the default): no auxiliary heads.
        unimodal_distillation: share in [0, 1] of the fused prediction (stop-gradient) in
            the unimodal heads' target, the rest being the labels: online distillation
            from the fused classifier into each modality's pathway. 0: labels only.
        unimodal_head: where the unimodal losses apply: "auxiliary" (the default), a
            softmax head of its own per modality on its embedding; "fusion", the
            classifier itself with only that modality present.
        seed: seed of the modality dropout draws.
        name: the model name.
        **settings: the keyword-only settings above (``modality_dropout`` to ``name``),
            passed on to ``FusionClassifier``.

    Returns:
        The ``FusionClassifier``.

    Raises:
        TypeError: a keyword that ``FusionClassifier`` does not take.
    """
    unknown = sorted(set(settings) - set(_classifier_settings()))
    if unknown:
        raise TypeError(
            f"build_fusion_classifier() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(_classifier_settings())}."
        )
    return FusionClassifier(encoders, fusion, num_classes, **settings)


def _classifier_settings() -> tuple:
    """The keyword-only settings of ``FusionClassifier`` (what the builder passes on)."""
    parameters = inspect.signature(FusionClassifier.__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)
