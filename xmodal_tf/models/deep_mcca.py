"""Deep multiview (generalised) CCA as a subclassed ``keras.Model`` (``DeepMCCA``) that trains with ``model.fit``.

One encoder per view maps it to k outputs; the encoders are trained together on an
objective of all V views' outputs (by default the Eckart–Young objective of Chapman et
al. 2023, ``xmodal_tf.eckart_young.EYLoss``, which takes any number of views). After
training, ``fit_linear_mcca`` fits a linear multiset CCA (``xmodal_tf.cca.MCCA``) on
the encoders' outputs as the final linear step; ``transform`` gives canonical variates
and ``score`` the total correlation of the top ``n_components`` directions on held-out
data::

    >>> from xmodal_tf.encoders import mlp_encoder
    >>> from xmodal_tf.models import DeepMCCA
    >>> model = DeepMCCA([mlp_encoder(64, 10, name="image"), mlp_encoder(32, 10, name="left"),
    ...                   mlp_encoder(32, 10, name="right")])
    >>> model.compile(optimizer="adam")                # jit_compile=False by default
    >>> model.fit(train_dataset, epochs=10)            # batches of (v0, v1, v2) or ((v0, v1, v2), labels)
    >>> model.fit_linear_mcca([a_train, b_train, c_train]).score([a_test, b_test, c_test])  # at most k

Total correlation, here and in the logs: for each canonical component, the mean over
the V (V - 1) / 2 pairs of views of the correlation of the pair's variates (what
``MCCA.canonical_correlations_`` holds), summed over the top ``n_components``
components. For two views it is Deep CCA's total correlation; its maximum is
``n_components``.
"""

from __future__ import annotations

import copy
import itertools
import numbers

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._compute_dtype import resolve_compute_dtype
from xmodal_tf._validation import check_finite_rows, check_positive_int, check_ridges, describe, non_finite_rows
from xmodal_tf.cca import MCCA, column_correlations
from xmodal_tf.eckart_young import EYLoss
from xmodal_tf.models.base import (
    CrossModalModel,
    as_input_tensor,
    check_layer,
    check_output_shape,
    num_rows,
    static_output_width,
    to_numpy,
)
from xmodal_tf.view_loss import ViewLoss, step_loss

__all__ = ["DeepMCCA"]

_NON_FINITE_FIX = "remove or impute those rows first"
# The batch correlation's Cholesky factors get at least this many machine epsilons
# (times the width and the largest variance) on their diagonal, so that a dead output
# unit with reg=0 does not make the factorisation fail.
_JITTER_FACTOR = 100.0


# ----------------------------------------------------------------------------- helpers
def _view_keys(n_views: int) -> list[str]:
    return [f"view_{index}" for index in range(n_views)]


def _views_form(n_views: int) -> str:
    names = ", ".join(_view_keys(n_views))
    return (
        f"a tuple or list of the {n_views} views ({names}), a dict {{'view_0': ..., "
        f"'view_{n_views - 1}': ...}}, or (views, labels)"
    )


def _split_views(data, n_views: int, where: str) -> tuple:
    """The ``n_views`` views of a batch: a tuple / list of views, a dict keyed
    "view_0".., or either followed by labels (and sample weights), as ``fit`` and
    datasets give them."""
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], (tuple, list, dict)):
        data = data[0]  # (views, labels[, sample_weight]) or Keras' (views,)
    if isinstance(data, dict):
        keys = _view_keys(n_views)
        missing = [key for key in keys if key not in data]
        extra = sorted(str(key) for key in data if key not in keys)
        if missing or extra:
            raise ValueError(
                f"{where}: a dict of views needs exactly the keys {keys} (one per encoder); got keys "
                f"{sorted(map(str, data))}."
            )
        return tuple(data[key] for key in keys)
    if isinstance(data, (tuple, list)):
        if len(data) != n_views:
            raise ValueError(
                f"{where}: this model has {n_views} encoders, so it takes {n_views} views; got {len(data)} "
                f"({describe(data)}). Pass {_views_form(n_views)}."
            )
        return tuple(data)
    raise ValueError(f"{where} expects {_views_form(n_views)}; got {describe(data)}.")


def _check_encoders(encoders) -> list:
    if isinstance(encoders, dict):
        raise TypeError(
            "encoders must be a list of keras.Models, one per view, in the order of the views; got a dict "
            f"with keys {sorted(map(str, encoders))}: pass list(encoders.values())."
        )
    if not isinstance(encoders, (list, tuple)):
        raise TypeError(f"encoders must be a list of keras.Models, one per view; got {describe(encoders)}.")
    if len(encoders) < 2:
        raise ValueError(f"DeepMCCA needs at least two views, one encoder each; got {len(encoders)} encoder(s).")
    return [check_layer(encoder, f"encoders[{index}]") for index, encoder in enumerate(encoders)]


def _check_objective(objective, n_views: int) -> ViewLoss:
    if objective is None:
        return EYLoss()
    if not isinstance(objective, ViewLoss):
        raise TypeError(
            "objective must be an xmodal_tf ViewLoss of the views' outputs (e.g. "
            f"xmodal_tf.losses.EYLoss()), or None for EYLoss(); got {describe(objective)}."
        )
    try:
        objective.check_view_count(n_views)
    except ValueError as error:
        raise ValueError(
            f"DeepMCCA has {n_views} encoders, but its objective cannot take {n_views} views: {error} "
            "Use an objective of any number of views, e.g. xmodal_tf.losses.EYLoss() (the default)."
        ) from None
    return objective


def _check_reg(reg, n_views: int):
    """A float >= 0, or a tuple of one per view."""
    if isinstance(reg, (list, tuple, np.ndarray)):
        values = check_ridges(list(reg), reg, f"a float >= 0 or a list of {n_views} of them")
        if len(values) != n_views:
            raise ValueError(f"reg must be one float or one per view ({n_views}); got {len(values)} values.")
        return tuple(values)
    if isinstance(reg, bool) or not isinstance(reg, numbers.Real):
        raise TypeError(f"reg must be a float >= 0 or a list of {n_views} of them; got {reg!r}.")
    return check_ridges([reg], reg, "a float >= 0")[0]


def _check_widths(widths, where: str) -> int:
    """The common output width of the encoders, or a ValueError naming them all."""
    if len(set(widths)) > 1:
        listed = ", ".join(f"encoders[{index}]: {width}" for index, width in enumerate(widths))
        raise ValueError(
            f"{where}: every encoder must output the same number of features k (unit i of one view is "
            f"compared with unit i of the others); got {listed}. Give every encoder the same output size, "
            "e.g. mlp_encoder(d_v, k) for each view."
        )
    return int(widths[0])


# ----------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="xmodal_tf")
class DeepMCCA(CrossModalModel):
    """Deep multiview CCA: one encoder per view (two or more), trained on a multiview objective.

    The loss of a batch is ``objective(h_0, ..., h_{V-1})`` of the encoders' outputs
    (by default the Eckart–Young loss, ``EYLoss()``: no inverse or decomposition, so
    small batches are fine). Batches are tuples / lists of the V views, a dict keyed
    "view_0", "view_1", ..., or those followed by labels (``((v0, v1, v2), labels)``);
    in a ``tf.data.Dataset`` give the views as a tuple (a list of equal-shaped arrays
    would be stacked into one tensor).

    Logged: ``loss`` and ``total_correlation``, the batch's total correlation: a
    multiset CCA (``MCCA``, ridge ``reg``) of the batch's outputs, and for each of its
    top ``n_components`` components the mean over pairs of views of the correlation of
    the variates, summed (for two views, the batch's total canonical correlation);
    under a ``tf.distribute`` strategy, of each replica's share of the batch.
    It runs on the batch's outputs without gradient (a k V x k V eigenproblem per step,
    negligible next to the encoders). ``default_monitor`` is ``val_total_correlation``
    (max), as for ``DeepCCA``; with ``model.fit`` it is the mean over validation
    batches, with ``xmodal_tf.training.Trainer`` (``held_out_logs``) the value of the
    whole validation set at once. Both are measured in the directions fitted on the data
    they are measured on, so optimistic, the more so the fewer rows per evaluation
    (batches of a few times V k rows overstate it clearly): ``fit_linear_mcca`` +
    ``score`` is the held-out protocol.

    Args:
        encoders: a list of Keras models, one per view, each mapping its view to
            (batch, k) outputs with the same k, e.g. ``xmodal_tf.encoders.mlp_encoder``.
        n_components: the number of top components of the batch metric and of the final
            linear MCCA; None for all k.
        objective: a ``ViewLoss`` that takes V views' outputs (e.g. ``EYLoss(unbiased=True)``);
            None for ``EYLoss()``.
        reg: ridge added to each view's output covariance in the batch metric and the
            linear MCCA (a float, or one per view).
        **kwargs: ``name``, ``trainable``... for ``keras.Model``.

    Raises:
        TypeError: encoders that are not a list of Keras models, or an objective that is
            not a ``ViewLoss``.
        ValueError: fewer than two encoders, encoders of different output widths, an
            objective that does not take V views, n_components above k, or a bad reg.
    """

    skip_non_finite_batches = True
    default_jit_compile = False
    default_monitor = ("val_total_correlation", "max")

    def xla_unsupported_reason(self):
        return (
            "the logged total correlation solves an eigenproblem per batch, and XLA's eigendecompositions "
            "have returned wrong results (see xmodal_tf.losses)"
        )

    def __init__(self, encoders, n_components=None, objective=None, reg=1e-4, **kwargs):
        kwargs.setdefault("name", "deep_mcca")
        super().__init__(**kwargs)
        encoders = _check_encoders(encoders)
        self.n_views = len(encoders)
        self.encoders = encoders
        self.n_components = check_positive_int(n_components, "n_components", allow_none=True)
        self.objective = _check_objective(objective, self.n_views)
        self.reg = _check_reg(reg, self.n_views)
        self.create_trackers(["loss", "total_correlation"])
        self.linear_mcca_ = None
        self._encode_function = {}
        self._output_dim = None

        widths = [static_output_width(encoder, f"encoders[{index}]") for index, encoder in enumerate(encoders)]
        known = [width for width in widths if width is not None]
        if len(known) == len(widths):
            self._create_state(_check_widths(widths, "DeepMCCA"))
            if all(getattr(encoder, "built", True) for encoder in encoders):
                self.built = True
        elif len(set(known)) > 1:
            _check_widths(known, "DeepMCCA")

    # ------------------------------------------------------------------ state
    @property
    def output_dim(self) -> int | None:
        """k, the encoders' common output width (None until known)."""
        return self._output_dim

    @property
    def k(self) -> int | None:
        """The number of canonical components: n_components, or the output width for None."""
        return self.n_components or self._output_dim

    def _regs(self) -> list[float]:
        return list(self.reg) if isinstance(self.reg, tuple) else [self.reg] * self.n_views

    def _create_state(self, width: int) -> None:
        """Check the output width and create the linear MCCA's (non-trainable) weights."""
        width = int(width)
        if self.n_components is not None and self.n_components > width:
            raise ValueError(
                f"n_components={self.n_components} is larger than the encoders' output width ({width}); "
                f"use n_components <= {width} or None for all."
            )
        self._output_dim = width
        k = self.k
        self._mcca_weights, self._mcca_means = [], []
        for index in range(self.n_views):
            self._mcca_weights.append(
                self.add_weight(
                    shape=(width, k),
                    initializer="zeros",
                    dtype="float64",
                    trainable=False,
                    name=f"linear_mcca_weights_{index}",
                )
            )
            self._mcca_means.append(
                self.add_weight(
                    shape=(width,),
                    initializer="zeros",
                    dtype="float64",
                    trainable=False,
                    name=f"linear_mcca_mean_{index}",
                )
            )
        self._mcca_correlations = self.add_weight(
            shape=(k,), initializer="zeros", dtype="float64", trainable=False, name="linear_mcca_correlations"
        )
        self._mcca_fitted = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="linear_mcca_fitted"
        )

    def build(self, input_shape):
        """Build unbuilt encoders from the views' input shapes, e.g. [(None, 64), (None, 32), (None, 32)]."""
        if isinstance(input_shape, dict):
            shapes = _split_views(input_shape, self.n_views, "DeepMCCA.build")
        else:  # a list of shapes, which _split_views would read as (views, labels)
            shapes = tuple(input_shape)
            if len(shapes) != self.n_views:
                raise ValueError(
                    f"DeepMCCA.build takes one input shape per view ({self.n_views}); got {len(shapes)}: {shapes}."
                )
        self._build_sub_models(shapes, (keras.backend.floatx(),) * self.n_views)

    def _build_sub_models(self, shapes, dtypes) -> None:
        """Call the encoders symbolically (no computation), check their outputs and
        create the linear MCCA weights."""
        widths = []
        for index, (encoder, shape, dtype) in enumerate(zip(self.encoders, shapes, dtypes)):
            name = f"encoders[{index}]"
            output = encoder(keras.KerasTensor((None, *tuple(shape)[1:]), dtype=dtype))
            if isinstance(output, (tuple, list, dict)):
                raise ValueError(f"{name} must have a single output of shape (batch, features).")
            widths.append(check_output_shape(tuple(output.shape), name))
        width = _check_widths(widths, "DeepMCCA")
        if self._output_dim is None:
            self._create_state(width)
        self._input_specs = [[[None, *list(shape)[1:]], str(dtype)] for shape, dtype in zip(shapes, dtypes)]
        self.built = True

    def _build_from_input_specs(self, specs) -> None:
        shapes = [tuple(None if d is None else int(d) for d in shape) for shape, _ in specs]
        self._build_sub_models(shapes, [dtype for _, dtype in specs])

    def build_from_batch(self, *views) -> None:
        """Build unbuilt (subclassed) encoders from the first batch, before the optimizer."""
        if not self.built:
            views = [tf.convert_to_tensor(view) for view in views]
            self._build_sub_models([tuple(view.shape) for view in views], [view.dtype.name for view in views])

    # ------------------------------------------------------------------ forward
    def call(self, inputs, training=None):
        """Encode the views; returns the list of the encoders' outputs, one per view."""
        if not isinstance(inputs, (tuple, list, dict)):
            raise ValueError(
                f"DeepMCCA.call expects {_views_form(self.n_views)}; got {describe(inputs)}. (Under a "
                "distribution strategy, model.fit builds an unbuilt model with the first view alone: build it "
                "first by calling it once, model((v0_batch, v1_batch, ...)).)"
            )
        views = _split_views(inputs, self.n_views, "DeepMCCA.call")
        return [encoder(view, training=training) for encoder, view in zip(self.encoders, views)]

    def unpack_batch(self, data, where: str) -> tuple:
        return _split_views(data, self.n_views, f"DeepMCCA.{where}")

    def batch_loss(self, *views, training=False) -> dict:
        """The loss of one batch and its total correlation, as a dict of tensors.

        Args:
            *views: the batch's V views, one row per sample in each.
            training: whether the encoders run in training mode.

        Returns:
            A dict with ``loss`` (the objective, a scalar), ``correlations`` ((n_components,),
            see ``batch_correlations``) and ``total_correlation`` (their sum).

        Raises:
            ValueError: another number of views, views of different (static) batch sizes,
                or encoders of different output widths.
        """
        if len(views) != self.n_views:
            raise ValueError(f"DeepMCCA.batch_loss takes {self.n_views} views (one per encoder); got {len(views)}.")
        rows = [getattr(view, "shape", (None,))[0] for view in views]
        known = sorted({row for row in rows if row is not None})
        if len(known) > 1:
            raise ValueError(
                f"DeepMCCA: the views must have the same batch size (one row per sample); got {rows} rows."
            )
        outputs = [encoder(view, training=training) for encoder, view in zip(self.encoders, views)]
        widths = [check_output_shape(tuple(h.shape), f"encoders[{index}]") for index, h in enumerate(outputs)]
        width = _check_widths(widths, "DeepMCCA")
        if self._output_dim is not None and width != self._output_dim:
            raise ValueError(
                f"DeepMCCA: the encoders output {width} features, but the model was built for {self._output_dim}."
            )
        correlations = self.batch_correlations(outputs)
        loss = step_loss(self.objective, outputs, after=[correlations])
        correlations = tf.cast(correlations, loss.dtype)
        return {"loss": loss, "correlations": correlations, "total_correlation": tf.reduce_sum(correlations)}

    def batch_correlations(self, outputs) -> tf.Tensor:
        """The top-``k`` MCCA correlations of one batch of outputs (no gradient).

        A multiset CCA of the outputs with the model's ridge ``reg`` (as ``MCCA(k, reg)``
        fitted on them): the top-k eigenvectors of the whitened block covariance (identity
        diagonal blocks), and for each the mean over pairs of views of the correlation of
        the variates. Float64 on a CPU, float32 on an accelerator.

        Args:
            outputs: the V encoders' outputs, each (m, width).

        Returns:
            A (k,) tensor, strongest component first; NaN for a batch whose outputs are
            not finite or that has fewer than two rows.
        """
        dtype = resolve_compute_dtype("auto", outputs[0], outputs[1])
        outputs = [tf.cast(tf.stop_gradient(h), dtype) for h in outputs]
        n_views, width = len(outputs), int(outputs[0].shape[1])
        size = n_views * width
        k = self.n_components or width
        count = tf.cast(tf.shape(outputs[0])[0], dtype)
        stacked = tf.concat(outputs, axis=1)
        centred = stacked - tf.reduce_mean(stacked, axis=0)
        covariance = tf.matmul(centred, centred, transpose_a=True) / tf.maximum(count - 1.0, 1.0)
        usable = tf.logical_and(tf.reduce_all(tf.math.is_finite(covariance)), count >= 2.0)
        # Branch-free, as DeepCCA: an unusable batch's covariance is swapped for the identity.
        covariance = tf.where(usable, covariance, tf.eye(size, dtype=dtype))
        view_of = np.repeat(np.arange(n_views), width)
        same_view = tf.constant(view_of[:, None] == view_of[None, :])
        ridge = tf.constant(np.repeat(self._regs(), width), dtype)
        largest = tf.reduce_max(tf.linalg.diag_part(covariance))
        jitter = (
            _JITTER_FACTOR * width * np.finfo(dtype.as_numpy_dtype).eps * largest + np.finfo(dtype.as_numpy_dtype).tiny
        )
        within = tf.where(same_view, covariance, tf.zeros_like(covariance))
        factor = tf.linalg.cholesky(within + tf.linalg.diag(ridge + jitter))  # block diagonal: L_v per view
        left = tf.linalg.triangular_solve(factor, covariance, lower=True)
        whitened = tf.linalg.triangular_solve(factor, tf.transpose(left), lower=True)  # L^-1 C L^-T
        whitened = tf.where(same_view, tf.eye(size, dtype=dtype), whitened)
        whitened = (whitened + tf.transpose(whitened)) / 2.0
        _, vectors = tf.linalg.eigh(whitened)
        top = tf.reverse(vectors[:, -k:], axis=[1])
        weights = tf.linalg.triangular_solve(factor, top, lower=True, adjoint=True)  # L^-T v, (size, k)
        blocks = [weights[index * width : (index + 1) * width] for index in range(n_views)]

        def block(i, j):
            return covariance[i * width : (i + 1) * width, j * width : (j + 1) * width]

        variances = [tf.reduce_sum(w * tf.matmul(block(i, i), w), axis=0) for i, w in enumerate(blocks)]
        pairs = list(itertools.combinations(range(n_views), 2))
        total = tf.add_n(
            [
                tf.math.divide_no_nan(
                    tf.reduce_sum(blocks[i] * tf.matmul(block(i, j), blocks[j]), axis=0),
                    tf.sqrt(tf.maximum(variances[i] * variances[j], 0.0)),
                )
                for i, j in pairs
            ]
        )
        correlations = total / len(pairs)
        return tf.where(usable, correlations, tf.constant(np.nan, dtype))

    def predict_step(self, data):
        return self(_split_views(data, self.n_views, "DeepMCCA.predict_step"), training=False)

    # ------------------------------------------------------------------ encoding
    def _encode_view(self, index: int, array, batch_size: int, method: str, offset: int = 0) -> np.ndarray:
        """One view's encoder outputs, (n, k) float NumPy, in batches of ``batch_size``."""
        encoder = self.encoders[index]
        parts = []
        for start in range(0, num_rows(array), batch_size):
            batch = as_input_tensor(array[start : start + batch_size])
            key = (index, batch.dtype, tuple(batch.shape[1:]))
            if key not in self._encode_function:

                def encode(inputs, encoder=encoder):
                    return encoder(inputs, training=False)

                signature = [tf.TensorSpec((None, *batch.shape[1:]), batch.dtype)]
                self._encode_function[key] = tf.function(encode, jit_compile=False, input_signature=signature)
            h = to_numpy(self._encode_function[key](batch))
            bad = non_finite_rows(h)
            if bad.size:
                raise ValueError(
                    f"DeepMCCA.{method}: the encoder output of view {index} is not finite (NaN or inf) at row "
                    f"{offset + start + int(bad[0])} although the input is: values beyond float32's range "
                    "overflow (rescale the input), or the weights have diverged (retrain with a lower learning "
                    "rate)."
                )
            parts.append(h)
        return np.concatenate(parts)

    def _checked_arrays(self, views, method: str, require_all: bool, offset: int = 0) -> list:
        """The views (None for a missing one), checked: count, rows, finite values."""
        views = list(_split_views(views, self.n_views, f"DeepMCCA.{method}"))
        present = [index for index, view in enumerate(views) if view is not None]
        if not present:
            raise ValueError(f"DeepMCCA.{method} needs data: at least one view (the others may be None).")
        if require_all and len(present) < self.n_views:
            missing = [index for index in range(self.n_views) if views[index] is None]
            raise ValueError(f"DeepMCCA.{method} needs all {self.n_views} views; view(s) {missing} are None.")
        for index in present:
            if getattr(views[index], "shape", None) is None:
                views[index] = np.asarray(views[index])
        rows = {index: num_rows(views[index]) for index in present}
        if len(set(rows.values())) > 1:
            listed = ", ".join(f"view {index}: {count}" for index, count in rows.items())
            raise ValueError(
                f"DeepMCCA.{method}: the views have different numbers of rows ({listed}); they must be paired "
                "row by row (one row per sample in every view)."
            )
        if not next(iter(rows.values())):
            raise ValueError(f"DeepMCCA.{method}: the views have no rows.")
        for index in present:  # NaN/inf rows would give plausible-looking variates
            check_finite_rows(
                views[index], f"view {index}", where=f"DeepMCCA.{method}", fix=_NON_FINITE_FIX, offset=offset
            )
        return views

    def _encode(self, views, batch_size: int, method: str, require_all: bool) -> list:
        check_positive_int(batch_size, "batch_size")
        if isinstance(views, tf.data.Dataset):
            parts, rows_seen = [], 0
            for element in views:
                batch = self._checked_arrays(element, method, require_all, offset=rows_seen)
                outputs = [
                    None if view is None else self._encode_view(index, view, batch_size, method, rows_seen)
                    for index, view in enumerate(batch)
                ]
                rows_seen += next(h.shape[0] for h in outputs if h is not None)
                parts.append(outputs)
            if not parts:
                raise ValueError(f"DeepMCCA.{method}: the dataset yielded no batches.")
            return [
                None if parts[0][index] is None else np.concatenate([p[index] for p in parts])
                for index in range(self.n_views)
            ]
        views = self._checked_arrays(views, method, require_all)
        return [
            None if view is None else self._encode_view(index, view, batch_size, method)
            for index, view in enumerate(views)
        ]

    def encode(self, views, *, batch_size: int = 1024) -> list:
        """The encoders' outputs as float NumPy arrays (inference mode).

        Args:
            views: the V views, paired row by row: a list / tuple (an entry may be None to
                skip that view, e.g. to embed new samples of one view), a dict keyed
                "view_0"..., or a ``tf.data.Dataset`` of such batches (or (views, labels)).
            batch_size: rows per encoder call.

        Returns:
            A list of V (n, k) arrays (None for a view given as None).

        Raises:
            ValueError: another number of views, views with different numbers of rows,
                an input holding NaN or inf (naming the rows), or a non-finite output.
        """
        return self._encode(views, batch_size, "encode", require_all=False)

    def held_out_correlations(self, views, *, batch_size: int = 1024) -> np.ndarray:
        """``batch_correlations`` of the outputs of all of ``views`` at once, (k,) NumPy.

        The MCCA directions are those of this data itself (slightly optimistic for small
        sets); ``fit_linear_mcca`` + ``score`` is the held-out protocol.
        """
        outputs = self._encode(views, batch_size, "held_out_correlations", require_all=True)
        return self.batch_correlations([tf.constant(h, tf.float64) for h in outputs]).numpy()

    def held_out_logs(self, data, *, batch_size: int = 1024) -> dict:
        """The held-out logs that ``xmodal_tf.training.Trainer`` reports and early-stops on.

        Args:
            data: held-out views for ``held_out_correlations`` (arrays or a dataset), or None.
            batch_size: rows per encoder call.

        Returns:
            ``{"val_total_correlation": float, "val_correlations": [k floats]}``; NaN and
            None for ``data=None`` (an epoch without evaluation).
        """
        if data is None:
            return {"val_total_correlation": float("nan"), "val_correlations": None}
        correlations = self.held_out_correlations(data, batch_size=batch_size)
        return {"val_total_correlation": float(np.sum(correlations)), "val_correlations": correlations.tolist()}

    # ------------------------------------------------------------------ linear MCCA
    def fit_linear_mcca(self, views, *, batch_size: int = 1024, reg=None) -> DeepMCCA:
        """Fit a linear multiset CCA (``xmodal_tf.cca.MCCA``, float64) on the encoders' outputs.

        The final linear step of deep MCCA. The projections are stored in the model's
        non-trainable weights (kept by save/load and checkpoints) and the estimator as
        ``linear_mcca_``.

        Args:
            views: all V views of the training data (as in ``encode``, no None).
            batch_size: rows per encoder call.
            reg: the linear MCCA's ridge (a float or one per view); None uses the model's ``reg``.

        Returns:
            self.
        """
        outputs = self._encode(views, batch_size, "fit_linear_mcca", require_all=True)
        reg = self.reg if reg is None else _check_reg(reg, self.n_views)
        mcca = MCCA(n_components=self.k, reg=list(reg) if isinstance(reg, tuple) else reg, dtype="float64")
        mcca.fit(outputs)
        if self._output_dim is None:
            self._create_state(_check_widths([h.shape[1] for h in outputs], "DeepMCCA"))
        for variable, array in zip(self._mcca_weights, mcca.weights_):
            variable.assign(np.asarray(array, dtype=np.float64))
        for variable, array in zip(self._mcca_means, mcca.means_):
            variable.assign(np.asarray(array, dtype=np.float64))
        self._mcca_correlations.assign(np.asarray(mcca.canonical_correlations_, dtype=np.float64))
        self._mcca_fitted.assign(1)
        self.linear_mcca_ = mcca
        return self

    @property
    def linear_mcca_fitted(self) -> bool:
        return self._output_dim is not None and bool(int(self._mcca_fitted.numpy()))

    @property
    def canonical_correlations_(self) -> np.ndarray:
        """(k,) mean pairwise training correlation of each component of the linear MCCA."""
        self._check_linear_mcca("canonical_correlations_")
        return self._mcca_correlations.numpy()

    def _check_linear_mcca(self, method: str) -> None:
        if not self.linear_mcca_fitted:
            raise ValueError(
                f"DeepMCCA.{method} needs the linear MCCA on the encoder outputs: call "
                "model.fit_linear_mcca([view_0_train, view_1_train, ...]) after training first."
            )

    def transform(self, views, *, batch_size: int = 1024) -> list:
        """Canonical variates through the fitted linear MCCA (``fit_linear_mcca`` first).

        Args:
            views: as for ``encode`` (an entry may be None: that view is skipped).
            batch_size: rows per encoder call.

        Returns:
            A list of V (n, k) float64 arrays (None for a view given as None).
        """
        self._check_linear_mcca("transform")
        outputs = self._encode(views, batch_size, "transform", require_all=False)
        return [
            None if h is None else (h.astype(np.float64) - mean.numpy()) @ weights.numpy()
            for h, weights, mean in zip(outputs, self._mcca_weights, self._mcca_means)
        ]

    def correlations(self, views, *, batch_size: int = 1024) -> np.ndarray:
        """(k,) correlation of each component's variates on the given data, averaged over view pairs."""
        return self._correlations(views, batch_size, "correlations")

    def _correlations(self, views, batch_size: int, method: str) -> np.ndarray:
        self._check_linear_mcca(method)
        variates = self._transform_all(views, batch_size, method)
        pairs = list(itertools.combinations(range(self.n_views), 2))
        return sum(column_correlations(variates[i], variates[j]) for i, j in pairs) / len(pairs)

    def _transform_all(self, views, batch_size: int, method: str) -> list:
        outputs = self._encode(views, batch_size, method, require_all=True)
        return [
            (h.astype(np.float64) - mean.numpy()) @ weights.numpy()
            for h, weights, mean in zip(outputs, self._mcca_weights, self._mcca_means)
        ]

    def score(self, views, *, batch_size: int = 1024) -> float:
        """Total correlation of the top ``k`` components on the given data.

        For each component, the mean over the V (V - 1) / 2 pairs of views of the
        correlation of their variates (the definition of ``MCCA.canonical_correlations_``),
        summed over the k components: at most k; Deep CCA's total correlation for two
        views. (``MCCA.score`` is the mean, this / k.)

        Args:
            views: all V views (as in ``encode``, no None).
            batch_size: rows per encoder call.

        Returns:
            The total correlation, a float.
        """
        return float(np.sum(self._correlations(views, batch_size, "score")))

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoders": [keras.saving.serialize_keras_object(encoder) for encoder in self.encoders],
            "n_components": self.n_components,
            "objective": keras.saving.serialize_keras_object(self.objective),
            "reg": list(self.reg) if isinstance(self.reg, tuple) else self.reg,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # A copy: Keras' deserialization empties the dicts it reads.
        config = copy.deepcopy(config)
        config["encoders"] = [
            keras.saving.deserialize_keras_object(encoder, custom_objects=custom_objects)
            for encoder in config["encoders"]
        ]
        if config.get("objective") is not None:
            config["objective"] = keras.saving.deserialize_keras_object(
                config["objective"], custom_objects=custom_objects
            )
        return cls(**config)
