"""Deep CCA and DCCAE as a subclassed ``keras.Model`` (``DeepCCA``) that trains with ``model.fit``.

Deep CCA (Andrew et al., 2013) trains two encoders so that their outputs on paired
samples are maximally correlated (the loss is minus the batch's total canonical
correlation); DCCAE (Wang et al., 2015) adds a decoder per view and a weighted
reconstruction error. After training, ``fit_linear_cca`` fits a linear CCA on the
encoders' outputs; ``transform`` gives canonical variates and ``score`` the total
correlation of the top ``n_components`` directions on held-out data::

    >>> from xmodal_tf.encoders import mlp_encoder
    >>> from xmodal_tf.models import DeepCCA
    >>> model = DeepCCA(mlp_encoder(392, 50, name="left"), mlp_encoder(392, 50, name="right"))
    >>> model.compile(optimizer="adam")              # jit_compile=False by default
    >>> model.fit(train_dataset, epochs=10)          # batches of (x, y) or ((x, y), labels)
    >>> model.fit_linear_cca(x_train, y_train).score(x_test, y_test)   # e.g. 39.7 of 50

Design notes: docs/DESIGN.md (section xmodal_tf/models/deepcca.py).
"""

from __future__ import annotations

import math
import numbers
import warnings

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._replicas import in_replica_context
from xmodal_tf._validation import check_choice, check_positive_int, describe, non_finite_rows
from xmodal_tf.cca import CCA, column_correlations
from xmodal_tf.eckart_young import EYLoss
from xmodal_tf.losses import DeepCCALoss, reconstruction_error
from xmodal_tf.models.base import (
    CrossModalModel,
    as_input_tensor,
    check_finite_rows,
    check_layer,
    check_output_shape,
    deserialize_entries,
    num_rows,
    split_pair,
    static_output_width,
    to_numpy,
)
from xmodal_tf.view_loss import ViewLoss, step_loss

__all__ = ["DeepCCA", "OBJECTIVES"]

#: The objectives ``DeepCCA`` takes by name: the whitened ones (Deep CCA's own, which need
#: batches well above n_components) and the Eckart-Young ones (``xmodal_tf.eckart_young``).
WHITENED_OBJECTIVES = ("trace", "squared")
OBJECTIVES = (*WHITENED_OBJECTIVES, "ey", "ey_unbiased")

_SUBMODEL_KEYS = ("encoder_x", "encoder_y", "decoder_x", "decoder_y")

#: DCCAE's reconstruction weight (the paper's lambda) when decoders are given without
#: one, chosen on validation (benchmarks/bench_dccae_sweep.py): on two-view digits and
#: split MNIST, 0.001 and 0.01 tie for the best validation total correlation (both at
#: or above Deep CCA's), 0.1 loses 0.2 of 50 on MNIST and 1 loses 2.7; of the ties the
#: larger keeps more of the views (digits: 5% lower validation reconstruction error
#: than at 1e-4). Its correlation gain over Deep CCA is within seed noise.
DEFAULT_RECONSTRUCTION_WEIGHT = 0.01


# ----------------------------------------------------------------------------- helpers
def _check_submodel(model, name: str, required: bool):
    if model is None:
        if required:
            raise TypeError(f"{name} is required: pass a keras.Model (e.g. from xmodal_tf.encoders).")
        return None
    return check_layer(model, name)


def _view_loss_for(objective, compute_dtype, global_batch):
    """The ``ViewLoss`` behind ``objective``, or None for a whitened objective ("trace" / "squared")."""
    if isinstance(objective, ViewLoss):
        objective.check_view_count(2)
        return objective
    if not isinstance(objective, str):
        raise TypeError(
            f"DeepCCA: objective must be one of {list(OBJECTIVES)} or a two-view xmodal_tf ViewLoss "
            f"(e.g. xm.losses.BarlowTwinsLoss()); got {describe(objective)}."
        )
    objective = check_choice(objective, "objective", OBJECTIVES)
    if objective in WHITENED_OBJECTIVES:
        return None
    return EYLoss(unbiased=objective == "ey_unbiased", compute_dtype=compute_dtype, global_batch=global_batch)


def _split_views(data, where: str):
    """(x, y) from a batch: (x, y), {"x": x, "y": y}, or those followed by labels."""
    return split_pair(data, ("x", "y"), f"DeepCCA.{where}", "views")


_NON_FINITE_FIX = "remove or impute those rows first"


def _check_encoder_output(h: np.ndarray, view: str, method: str, offset: int) -> None:
    """ValueError if an encoder's output ``h`` (a batch whose first row is ``offset``)
    is not finite although its input was checked to be."""
    bad = non_finite_rows(h)
    if bad.size:
        raise ValueError(
            f"DeepCCA.{method}: the encoder output of view {view} is not finite (NaN or inf) at row "
            f"{offset + int(bad[0])} although the input is: values beyond float32's range (3.4e38) overflow "
            "(rescale the input), or the model's weights have diverged (retrain with a lower learning rate or "
            "a larger reg)."
        )


# ----------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="xmodal_tf")
class DeepCCA(CrossModalModel):
    """Deep CCA (or DCCAE with decoders) between two views.

    DCCAE's loss is::

        loss = -sum(top-k batch correlations)
               + reconstruction_weight * (SE(x, dec_x(enc_x(x))) + SE(y, dec_y(enc_y(y))))

    where SE is an example's squared error summed over its features, averaged over the
    batch.

    Args:
        encoder_x: Keras model mapping the x view to (batch, d_x) outputs, e.g.
            ``xmodal_tf.encoders.mlp_encoder``.
        encoder_y: Keras model mapping the y view to (batch, d_y) outputs.
        n_components: k, the number of top canonical correlations maximised (and kept
            by the linear CCA); None for all min(d_x, d_y).
        reg: ridge added to each view's output covariance (a float, or one per view).
        objective: what the encoders minimise: "trace" (minus the sum of the top-k
            whitened batch correlations, Andrew et al.), "squared" (minus the sum of
            their squares), "ey" (the Eckart-Young objective, ``xmodal_tf.eckart_young``:
            no whitening, so batches may be smaller than the output width; needs
            d_x == d_y), "ey_unbiased" (its stochastic form, penalty from the batch's two
            halves), or any two-view ``xmodal_tf.view_loss.ViewLoss`` (e.g.
            ``BarlowTwinsLoss()``, ``VICRegLoss()``), used with its own settings. The
            ``total_correlation`` metric is the whitened top-k correlation in every case.
        decoder_x: optional model mapping ``encoder_x``'s outputs back to the x view's
            input shape (DCCAE).
        decoder_y: the same for the y view.
        reconstruction_weight: lambda of Wang et al. (2015), the weight of each
            decoder's reconstruction error: the squared error of an example summed over
            its features, averaged over the batch (``xmodal_tf.losses.reconstruction_error``).
            None (default): ``DEFAULT_RECONSTRUCTION_WEIGHT`` with decoders, 0 without.
            A weight > 0 needs a decoder; decoders with weight 0 are refused (they
            would never train: drop them for plain Deep CCA).
        compute_dtype: dtype of the CCA algebra (covariances, Cholesky, SVD): "auto"
            (default: float64 where the encoder outputs live on a CPU, float32 on a
            GPU/TPU; see ``xmodal_tf.losses.resolve_compute_dtype``), "float64",
            "float32", or None (the outputs' dtype, at least float32).
        global_batch: under a ``tf.distribute`` strategy, compute the objective on the
            global batch (True, default) or on each replica's share (False).
        **kwargs: ``name``, ``trainable``... for ``keras.Model``.
    """

    skip_non_finite_batches = True
    default_jit_compile = False
    default_monitor = ("val_total_correlation", "max")

    def xla_unsupported_reason(self):
        return (
            "the Deep CCA objective's SVD and decompositions are kept out of XLA (XLA's eigen-"
            "decompositions have returned wrong results; see xmodal_tf.losses)"
        )

    def __init__(
        self,
        encoder_x,
        encoder_y,
        n_components=None,
        reg=1e-4,
        objective="trace",
        decoder_x=None,
        decoder_y=None,
        reconstruction_weight=None,
        compute_dtype="auto",
        global_batch=True,
        **kwargs,
    ):
        kwargs.setdefault("name", "deep_cca")
        super().__init__(**kwargs)
        self.encoder_x = _check_submodel(encoder_x, "encoder_x", required=True)
        self.encoder_y = _check_submodel(encoder_y, "encoder_y", required=True)
        self.decoder_x = _check_submodel(decoder_x, "decoder_x", required=False)
        self.decoder_y = _check_submodel(decoder_y, "decoder_y", required=False)
        self.view_loss = _view_loss_for(objective, compute_dtype, global_batch)
        # Validates n_components' type, reg and compute_dtype; with a view loss, it only
        # gives the whitened correlations that are monitored.
        self.objective_fn = DeepCCALoss(
            n_components=n_components,
            reg=reg,
            objective="trace" if self.view_loss is not None else objective,
            compute_dtype=compute_dtype,
            global_batch=global_batch,
        )
        self.global_batch = global_batch
        self.n_components = self.objective_fn.n_components
        self.reg = self.objective_fn.reg
        self.objective = objective
        self.compute_dtype_name = self.objective_fn.compute_dtype
        has_decoder = decoder_x is not None or decoder_y is not None
        if reconstruction_weight is None:
            reconstruction_weight = DEFAULT_RECONSTRUCTION_WEIGHT if has_decoder else 0.0
        if (
            isinstance(reconstruction_weight, bool)
            or not isinstance(reconstruction_weight, numbers.Real)
            or not math.isfinite(reconstruction_weight)
            or reconstruction_weight < 0
        ):
            raise ValueError(
                f"reconstruction_weight must be a finite float >= 0 (or None for the "
                f"default); got {reconstruction_weight!r}."
            )
        self.reconstruction_weight = float(reconstruction_weight)
        if self.reconstruction_weight > 0 and not has_decoder:
            raise ValueError("reconstruction_weight > 0 needs decoder_x and/or decoder_y (DCCAE).")
        if self.reconstruction_weight == 0 and has_decoder:
            raise ValueError(
                "DeepCCA: decoders with reconstruction_weight=0 would never train (no loss reaches "
                "them). Give a weight > 0 for DCCAE (None: the default "
                f"{DEFAULT_RECONSTRUCTION_WEIGHT:g}), or drop decoder_x / decoder_y for plain Deep CCA."
            )

        self.create_trackers(
            ["loss", "total_correlation"]
            + [
                f"reconstruction_{view}"
                for view, decoder in (("x", decoder_x), ("y", decoder_y))
                if decoder is not None
            ]
        )
        self.linear_cca_ = None
        self._encode_function = None
        self._output_dims = None

        width_x = static_output_width(self.encoder_x, "encoder_x")
        width_y = static_output_width(self.encoder_y, "encoder_y")
        if width_x is not None and width_y is not None:
            self._create_state(width_x, width_y)
            # Functional sub-models are built: the model needs no symbolic build in fit.
            if all(
                getattr(m, "built", True)
                for m in (self.encoder_x, self.encoder_y, self.decoder_x, self.decoder_y)
                if m is not None
            ):
                self.built = True

    # ------------------------------------------------------------------ state
    @property
    def k(self) -> int | None:
        """The number of canonical components: n_components, or min(d_x, d_y) for None."""
        if self._output_dims is None:
            return self.n_components
        return self.n_components or min(self._output_dims)

    @property
    def whitened_objective(self) -> bool:
        """True for "trace" / "squared", which need batches well above n_components."""
        return self.view_loss is None

    def _check_dims(self, dim_x: int, dim_y: int) -> None:
        if self.view_loss is not None and dim_x != dim_y:
            raise ValueError(
                f"DeepCCA(objective={self._objective_label()}) pairs output unit i of encoder_x with unit i "
                f"of encoder_y, so the encoders need the same output width; got {dim_x} and {dim_y}. Give "
                "both encoders the same output size, or use objective='trace'."
            )
        if self.n_components is not None:
            for name, dim in (("encoder_x", dim_x), ("encoder_y", dim_y)):
                if self.n_components > dim:
                    raise ValueError(
                        f"n_components={self.n_components} is larger than {name}'s output "
                        f"dimension ({dim} units); use n_components <= min(d_x, d_y) = "
                        f"{min(dim_x, dim_y)} or None for all."
                    )

    def _create_state(self, dim_x: int, dim_y: int) -> None:
        """Validate the output sizes and create the linear CCA's (non-trainable) weights."""
        dim_x, dim_y = int(dim_x), int(dim_y)
        self._check_dims(dim_x, dim_y)
        self._output_dims = (dim_x, dim_y)
        k = self.k
        self._cca_weights = []
        for name, shape in (
            ("linear_cca_x_weights", (dim_x, k)),
            ("linear_cca_x_mean", (dim_x,)),
            ("linear_cca_y_weights", (dim_y, k)),
            ("linear_cca_y_mean", (dim_y,)),
            ("linear_cca_correlations", (k,)),
        ):
            self._cca_weights.append(
                self.add_weight(shape=shape, initializer="zeros", dtype="float64", trainable=False, name=name)
            )
        self._cca_fitted = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="linear_cca_fitted"
        )

    def build(self, input_shape):
        """Build unbuilt sub-models from the pair of input shapes ((None, ...), (None, ...))."""
        if isinstance(input_shape, dict):
            shapes = (input_shape["x"], input_shape["y"])
        else:
            shapes = tuple(input_shape)
        self._build_sub_models(shapes, (keras.backend.floatx(),) * 2)

    def _build_sub_models(self, shapes, dtypes) -> None:
        """Build the sub-models by calling them symbolically (no computation), check the
        encoders' outputs and create the linear CCA weights."""
        outputs = []
        for model, shape, dtype, name in zip(
            (self.encoder_x, self.encoder_y), shapes, dtypes, ("encoder_x", "encoder_y")
        ):
            output = model(keras.KerasTensor((None, *tuple(shape)[1:]), dtype=dtype))
            if isinstance(output, (tuple, list, dict)):
                raise ValueError(f"{name} must have a single output of shape (batch, features).")
            check_output_shape(tuple(output.shape), name)
            outputs.append(output)
        for decoder, output in zip((self.decoder_x, self.decoder_y), outputs):
            if decoder is not None and not decoder.built:
                decoder(output)
        if self._output_dims is None:
            self._create_state(outputs[0].shape[1], outputs[1].shape[1])
        self._input_specs = [[[None, *list(shape)[1:]], str(dtype)] for shape, dtype in zip(shapes, dtypes)]
        self.built = True

    def _build_from_input_specs(self, specs) -> None:
        shapes = [tuple(None if d is None else int(d) for d in shape) for shape, _ in specs]
        self._build_sub_models(shapes, [dtype for _, dtype in specs])

    def build_from_batch(self, x, y) -> None:
        """Build unbuilt (subclassed) encoders from the first batch, before the optimizer."""
        if not self.built:
            x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
            self._build_sub_models((tuple(x.shape), tuple(y.shape)), (x.dtype.name, y.dtype.name))

    # ------------------------------------------------------------------ forward
    def call(self, inputs, training=None):
        """Encode a pair of views; returns ``(h_x, h_y)``."""
        if not isinstance(inputs, (tuple, list, dict)):
            raise ValueError(
                f"DeepCCA.call expects a pair of views (x, y) or a dict {{'x': x, 'y': y}}; got "
                f"{describe(inputs)}. (Under a distribution strategy, model.fit builds an unbuilt "
                "model with the first view alone: build it first by calling it once, "
                "model((x_batch, y_batch)).)"
            )
        x, y = _split_views(inputs, "call")
        return self.encoder_x(x, training=training), self.encoder_y(y, training=training)

    def unpack_batch(self, data, where: str):
        return _split_views(data, where)

    def batch_loss(self, x, y, training=False) -> dict:
        """The loss of one batch and its parts, as a dict of tensors.

        A batch whose encoder outputs are not finite, or that has fewer than two
        samples, gets NaN correlations (the CCA algebra is not run on it), hence a NaN
        loss.

        Args:
            x: the batch's x view.
            y: the batch's y view, one row per row of ``x``.
            training: whether the sub-models run in training mode.

        Returns:
            A dict with ``loss`` (scalar), ``correlations`` ((k,), the batch's top-k
            ridge-shrunk canonical correlations, largest first), ``total_correlation``
            (their sum), and ``reconstruction_x`` / ``reconstruction_y`` when the
            decoders exist.

        Raises:
            ValueError: the views have different batch sizes, or a decoder's output
                does not have its view's shape.
        """
        x_size, y_size = x.shape[0] if hasattr(x, "shape") else None, y.shape[0] if hasattr(y, "shape") else None
        if x_size is not None and y_size is not None and x_size != y_size:
            raise ValueError(
                f"DeepCCA: the two views must have the same batch size (one row per paired "
                f"sample); got {x_size} rows for x and {y_size} for y."
            )
        h_x = self.encoder_x(x, training=training)
        h_y = self.encoder_y(y, training=training)
        for h, name in ((h_x, "encoder_x"), (h_y, "encoder_y")):
            check_output_shape(tuple(h.shape), name)
        if self._output_dims is None:  # subclassed encoders built by this call
            self._check_dims(h_x.shape[1], h_y.shape[1])
        else:
            self._check_dims(*self._output_dims)
        k = self.n_components or min(h_x.shape[1], h_y.shape[1])
        self._check_replica_share(h_x, k)
        output_dtype = tf.float64 if tf.float64 in (h_x.dtype, h_y.dtype) else tf.float32
        # Statistics first, outside any tf.cond: with global_batch they are all-reduced
        # over replicas, and collectives cannot run inside a cond branch.
        if self.view_loss is None:
            statistics = self.objective_fn.statistics(h_x, h_y, runtime_checks=False)
            correlations = self.correlations_from_statistics(statistics, output_dtype)
            squared = self.objective == "squared"
            loss = -tf.reduce_sum(tf.square(correlations) if squared else correlations)
        else:
            # Monitored only (no gradient through the whitening). Before the loss, so that
            # every replica runs the collectives in one order: these, then the loss's
            # forward ones, then its backward ones.
            statistics = self.objective_fn.statistics(tf.stop_gradient(h_x), tf.stop_gradient(h_y), False)
            loss = tf.cast(step_loss(self.view_loss, (h_x, h_y), after=statistics), output_dtype)
            correlations = self.correlations_from_statistics(statistics, output_dtype)
        total_correlation = tf.reduce_sum(correlations)
        results = {"correlations": correlations, "total_correlation": total_correlation}
        for view, h, decoder, key in (
            (x, h_x, self.decoder_x, "reconstruction_x"),
            (y, h_y, self.decoder_y, "reconstruction_y"),
        ):
            if decoder is None:
                continue
            reconstruction = decoder(h, training=training)
            view = tf.convert_to_tensor(view)
            if tuple(reconstruction.shape[1:]) != tuple(view.shape[1:]):
                raise ValueError(
                    f"DeepCCA: {key.replace('reconstruction', 'decoder')} outputs shape "
                    f"{tuple(reconstruction.shape)}, but its view has shape {tuple(view.shape)}; "
                    "a decoder must reconstruct its view's input."
                )
            # Summed over features, averaged over examples; float32 at least, also for
            # mixed-precision decoders.
            results[key] = tf.cast(reconstruction_error(view, reconstruction), output_dtype)
            loss = loss + self.reconstruction_weight * results[key]
        results["loss"] = loss
        return results

    def correlations_from_statistics(self, statistics, output_dtype):
        """The batch's top-k correlations from the objective's statistics.

        Args:
            statistics: ``(count, c11, c22, c12)`` from ``DeepCCALoss.statistics``.
            output_dtype: the dtype of the result.

        Returns:
            The (k,) correlations in ``output_dtype``; NaN for a batch whose statistics
            are not finite or that has fewer than two samples (the CCA algebra is not
            run on it).
        """
        count, c11, c22, c12 = statistics
        usable = tf.logical_and(tf.reduce_all([tf.reduce_all(tf.math.is_finite(s)) for s in statistics]), count >= 2)
        # The CCA algebra raises (rather than returning NaN) on non-finite outputs, so an
        # unusable batch's statistics are swapped for harmless ones (two samples, identity
        # covariances, no cross-covariance) and its correlations for NaN. Branch-free: a
        # tf.cond would make a GPU copy its predicate to the host and wait, every step.
        safe = (
            tf.where(usable, count, tf.constant(2.0, count.dtype)),
            tf.where(usable, c11, tf.eye(c11.shape[0], dtype=c11.dtype)),
            tf.where(usable, c22, tf.eye(c22.shape[0], dtype=c22.dtype)),
            tf.where(usable, c12, tf.zeros_like(c12)),
        )
        correlations = tf.cast(self.objective_fn.correlations_from(safe), output_dtype)
        return tf.where(usable, correlations, tf.constant(np.nan, output_dtype))

    def _check_replica_share(self, h_x, k: int) -> None:
        """With global_batch=False under several replicas, each share must exceed k rows."""
        if self.global_batch or not in_replica_context():
            return
        rows = h_x.shape[0]
        if rows is not None and rows <= k:
            raise ValueError(
                f"DeepCCA(global_batch=False): each replica's share of the batch has {rows} rows, at or "
                f"below n_components={k}, so its covariance carries no signal. Use global_batch=True "
                "(the objective of the whole global batch) or a global batch larger than "
                f"{k} x the number of replicas."
            )

    # ------------------------------------------------------------------ training
    def compile(self, optimizer="rmsprop", *, jit_compile=False, **kwargs):
        """``keras.Model.compile`` with ``jit_compile=False`` by default (no XLA).

        The loss is built in; passing ``loss`` or ``metrics`` is an error.

        Args:
            optimizer: as in ``keras.Model.compile``.
            jit_compile: anything but False warns (the objective's SVD is not trusted
                under XLA) and is passed on.
            **kwargs: other ``keras.Model.compile`` settings.
        """
        if jit_compile is not False:
            warnings.warn(
                f"DeepCCA.compile(jit_compile={jit_compile!r}): the Deep CCA objective uses an "
                "SVD, whose XLA implementation has returned wrong results; keep "
                "jit_compile=False.",
                stacklevel=2,
            )
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)

    def predict_step(self, data):
        return self(_split_views(data, "predict_step"), training=False)

    # ------------------------------------------------------------------ evaluation
    def _batches(self, x, y, batch_size: int, method: str):
        """Yield (x, y) batches from arrays, a pair, a dict, or a tf.data.Dataset."""
        check_positive_int(batch_size, "batch_size")
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise TypeError(f"DeepCCA.{method}: y must be None when x is a tf.data.Dataset of pairs.")
            rows_seen = 0
            for index, element in enumerate(x):
                batch_x, batch_y = _split_views(element, method)
                rows_x, rows_y = int(tf.shape(batch_x)[0]), int(tf.shape(batch_y)[0])
                if rows_x != rows_y:
                    raise ValueError(
                        f"DeepCCA.{method}: batch {index} has {rows_x} rows for x and {rows_y} "
                        "for y; the views must be paired row by row."
                    )
                for name, view in (("x", batch_x), ("y", batch_y)):
                    check_finite_rows(view, name, where=f"DeepCCA.{method}", fix=_NON_FINITE_FIX, offset=rows_seen)
                rows_seen += rows_x
                yield batch_x, batch_y
            return
        if y is None:
            x, y = _split_views(x, method)
        rows_x, rows_y = num_rows(x), num_rows(y)
        if rows_x != rows_y:
            raise ValueError(
                f"DeepCCA.{method}: x has {rows_x} rows and y has {rows_y}; the views must be "
                "paired row by row (same number of samples)."
            )
        if rows_x == 0:
            raise ValueError(f"DeepCCA.{method}: the views have no rows.")
        for name, view in (("x", x), ("y", y)):  # NaN/inf rows would give plausible-looking variates
            check_finite_rows(view, name, where=f"DeepCCA.{method}", fix=_NON_FINITE_FIX)
        for start in range(0, rows_x, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]

    def _encode_batch(self, x, y):
        x, y = as_input_tensor(x), as_input_tensor(y)
        # One trace per input dtype / feature shape, whatever the batch sizes.
        key = (x.dtype, tuple(x.shape[1:]), y.dtype, tuple(y.shape[1:]))
        if self._encode_function is None:
            self._encode_function = {}
        if key not in self._encode_function:

            def encode(x, y):
                return self.encoder_x(x, training=False), self.encoder_y(y, training=False)

            signature = [tf.TensorSpec((None, *t.shape[1:]), t.dtype) for t in (x, y)]
            self._encode_function[key] = tf.function(encode, jit_compile=False, input_signature=signature)
        return self._encode_function[key](x, y)

    def encode(self, x=None, y=None, *, batch_size: int = 1024):
        """Encoder outputs as float NumPy arrays (inference mode).

        * One view: ``encode(x_array)`` gives ``h_x`` and ``encode(y=y_array)`` gives
          ``h_y`` (an array or tensor; no paired view needed, e.g. to embed a new image).
        * Two views: ``encode(x, y)`` with paired arrays, or ``x`` alone as a pair /
          dict / ``tf.data.Dataset`` yielding (x, y) or ((x, y), labels) batches, gives
          ``(h_x, h_y)``.

        Args:
            x: the x view, or both views as a pair / dict / dataset.
            y: the y view, or None.
            batch_size: rows per encoder call.

        Returns:
            ``h_x``, ``h_y`` or the pair ``(h_x, h_y)``, as above.

        Raises:
            ValueError: the views have different numbers of rows, an input holds NaN or
                inf (naming the rows) or an output is not finite (diverged weights).
        """
        single = self._single_view(x, y, "encode")
        if single is not None:
            return self._encode_view(*single, batch_size, "encode")
        return self._encode(x, y, batch_size, "encode")

    @staticmethod
    def _single_view(x, y, method: str):
        """("x", array) or ("y", array) for a call with one view's array; None for a pair."""
        if x is None and y is None:
            raise ValueError(f"DeepCCA.{method} needs data: x, y, or both (paired).")
        if x is None:
            if isinstance(y, (tuple, list, dict, tf.data.Dataset)):
                raise ValueError(
                    f"DeepCCA.{method}(y=...) with x=None takes the y view alone as one array or "
                    f"tensor; got {describe(y)}."
                )
            return "y", y
        if y is None and not isinstance(x, (tuple, list, dict, tf.data.Dataset)):
            return "x", x
        return None

    def _encode_view(self, view: str, array, batch_size: int, method: str) -> np.ndarray:
        """One view's encoder outputs, (n, d) float NumPy, in batches of ``batch_size``."""
        check_positive_int(batch_size, "batch_size")
        if getattr(array, "shape", None) is None:
            array = np.asarray(array)
        rows = num_rows(array)
        if rows == 0:
            raise ValueError(f"DeepCCA.{method}: view {view} has no rows.")
        check_finite_rows(array, view, where=f"DeepCCA.{method}", fix=_NON_FINITE_FIX)
        encoder = self.encoder_x if view == "x" else self.encoder_y
        parts = []
        for start in range(0, rows, batch_size):
            batch = as_input_tensor(array[start : start + batch_size])
            key = (view, batch.dtype, tuple(batch.shape[1:]))
            if self._encode_function is None:
                self._encode_function = {}
            if key not in self._encode_function:

                def encode(inputs, encoder=encoder):
                    return encoder(inputs, training=False)

                signature = [tf.TensorSpec((None, *batch.shape[1:]), batch.dtype)]
                self._encode_function[key] = tf.function(encode, jit_compile=False, input_signature=signature)
            h = to_numpy(self._encode_function[key](batch))
            _check_encoder_output(h, view, method, offset=start)
            parts.append(h)
        return np.concatenate(parts)

    def _encode(self, x, y, batch_size: int, method: str):
        parts_x, parts_y = [], []
        rows_seen = 0
        for batch_x, batch_y in self._batches(x, y, batch_size, method):
            h_x, h_y = self._encode_batch(batch_x, batch_y)
            for h, name in ((h_x, "x"), (h_y, "y")):
                h = to_numpy(h)
                _check_encoder_output(h, name, method, offset=rows_seen)
                (parts_x if name == "x" else parts_y).append(h)
            rows_seen += parts_x[-1].shape[0]
        if not parts_x:
            raise ValueError(f"DeepCCA.{method}: the dataset yielded no batches.")
        return np.concatenate(parts_x), np.concatenate(parts_y)

    def held_out_correlations(self, x, y=None, *, batch_size: int = 1024) -> np.ndarray:
        """Top-k ridge-shrunk canonical correlations of the encoders' outputs on the given data.

        Computed on all of the data at once (the training objective evaluated on the
        whole set, with the same ``reg``). The CCA directions are those of this data set
        itself, so the values are slightly optimistic for small sets; see
        ``fit_linear_cca`` + ``score`` for the paper's protocol (directions fitted on
        training outputs).

        Args:
            x: the x view, or both views as a pair / dict / dataset (as in ``encode``).
            y: the y view, or None.
            batch_size: rows per encoder call.

        Returns:
            A NumPy (k,) array, largest first.
        """
        h_x, h_y = self._encode(x, y, batch_size, "held_out_correlations")
        correlations = self.objective_fn.correlations(tf.constant(h_x, tf.float64), tf.constant(h_y, tf.float64))
        return correlations.numpy()

    def held_out_logs(self, data, *, batch_size: int = 1024) -> dict:
        """The held-out logs that ``xmodal_tf.training.Trainer`` reports and early-stops on.

        Args:
            data: held-out data for ``held_out_correlations``, or None.
            batch_size: rows per encoder call.

        Returns:
            ``{"val_total_correlation": float, "val_correlations": [k floats]}`` of
            ``held_out_correlations(data)``; ``data=None`` gives the placeholders (NaN,
            None) of an epoch without evaluation.
        """
        if data is None:
            return {"val_total_correlation": float("nan"), "val_correlations": None}
        correlations = self.held_out_correlations(data, batch_size=batch_size)
        return {"val_total_correlation": float(np.sum(correlations)), "val_correlations": correlations.tolist()}

    def fit_linear_cca(self, x, y=None, *, batch_size: int = 1024, reg=None) -> DeepCCA:
        """Fit a linear CCA (``xmodal_tf.CCA``, float64) on the encoders' outputs.

        The projection is stored in the model's non-trainable weights (kept by save/load
        and checkpoints) and as ``linear_cca_``.

        Args:
            x: the x view, or both views as a pair / dict / dataset (as in ``encode``).
            y: the y view, or None.
            batch_size: rows per encoder call.
            reg: the linear CCA's ridge; None (default) uses the model's ``reg``.

        Returns:
            self.
        """
        h_x, h_y = self._encode(x, y, batch_size, "fit_linear_cca")
        cca = CCA(n_components=self.k, reg=self.reg if reg is None else reg, dtype="float64")
        cca.fit(h_x, h_y)
        if self._output_dims is None:
            self._create_state(h_x.shape[1], h_y.shape[1])
        arrays = (cca.x_weights_, cca.x_mean_, cca.y_weights_, cca.y_mean_, cca.canonical_correlations_)
        for variable, array in zip(self._cca_weights, arrays):
            variable.assign(np.asarray(array, dtype=np.float64))
        self._cca_fitted.assign(1)
        self.linear_cca_ = cca
        return self

    @property
    def linear_cca_fitted(self) -> bool:
        return self._output_dims is not None and bool(int(self._cca_fitted.numpy()))

    @property
    def canonical_correlations_(self) -> np.ndarray:
        """Training correlations of the fitted linear CCA's variates, (k,)."""
        self._check_linear_cca("canonical_correlations_")
        return self._cca_weights[4].numpy()

    def _check_linear_cca(self, method: str) -> None:
        if not self.linear_cca_fitted:
            raise ValueError(
                f"DeepCCA.{method} needs the linear CCA on the encoder outputs: call "
                "model.fit_linear_cca(x_train, y_train) after training first."
            )

    def transform(self, x=None, y=None, *, batch_size: int = 1024):
        """Canonical variates through the fitted linear CCA (``fit_linear_cca`` first).

        As ``xmodal_tf.CCA.transform``: ``transform(x_array)`` gives the x view's
        variates alone and ``transform(y=y_array)`` the y view's (no paired view needed);
        ``transform(x, y)`` (or a pair / dict / dataset, as in ``encode``) gives
        ``(x_c, y_c)``.

        Args:
            x: as for ``encode``.
            y: as for ``encode``.
            batch_size: as for ``encode``.

        Returns:
            The variates, each (n, k) float64.
        """
        self._check_linear_cca("transform")
        w_x, m_x, w_y, m_y = (v.numpy() for v in self._cca_weights[:4])
        single = self._single_view(x, y, "transform")
        if single is not None:
            view, array = single
            h = self._encode_view(view, array, batch_size, "transform").astype(np.float64)
            return (h - m_x) @ w_x if view == "x" else (h - m_y) @ w_y
        h_x, h_y = self._encode(x, y, batch_size, "transform")
        return (h_x.astype(np.float64) - m_x) @ w_x, (h_y.astype(np.float64) - m_y) @ w_y

    def correlations(self, x, y=None, *, batch_size: int = 1024) -> np.ndarray:
        """(k,) correlation of each pair of canonical variates on the given data."""
        return column_correlations(*self.transform(x, y, batch_size=batch_size))

    def score(self, x, y=None, *, batch_size: int = 1024) -> float:
        """Total correlation of the top ``k`` canonical directions on the given data.

        The sum of the correlations of the transformed pairs (Andrew et al.'s metric;
        the maximum is k). Unlike ``xmodal_tf.CCA.score`` (a mean), this is a sum.

        Args:
            x: the x view, or both views as a pair / dict / dataset (as in ``encode``).
            y: the y view, or None.
            batch_size: rows per encoder call.

        Returns:
            The total correlation, a float.
        """
        return float(np.sum(self.correlations(x, y, batch_size=batch_size)))

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        reg = list(self.reg) if isinstance(self.reg, tuple) else self.reg
        config = {"name": self.name, "trainable": self.trainable}
        for key in _SUBMODEL_KEYS:
            model = getattr(self, key)
            config[key] = None if model is None else keras.saving.serialize_keras_object(model)
        config.update(
            {
                "n_components": self.n_components,
                "reg": reg,
                "objective": (
                    keras.saving.serialize_keras_object(self.objective)
                    if isinstance(self.objective, ViewLoss)
                    else self.objective
                ),
                "reconstruction_weight": self.reconstruction_weight,
                "compute_dtype": self.compute_dtype_name,
                "global_batch": self.global_batch,
            }
        )
        return config

    def _objective_label(self) -> str:
        return repr(self.objective) if isinstance(self.objective, str) else type(self.objective).__name__ + "()"

    @classmethod
    def from_config(cls, config, custom_objects=None):
        keys = _SUBMODEL_KEYS + (("objective",) if isinstance(config.get("objective"), dict) else ())
        return cls(**deserialize_entries(config, keys, custom_objects))
