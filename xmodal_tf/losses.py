"""TensorFlow losses for cross-modal models: Deep CCA, the symmetric contrastive (InfoNCE / CLIP) loss, GAN losses.

* Deep CCA (Andrew et al., 2013): ``deep_cca_loss`` / ``DeepCCALoss``, minus the total (or squared)
  canonical correlation of a batch of paired outputs H1 (m x d1) and H2 (m x d2), with the conventions
  of ``xmodal_tf.CCA``; ``cca_correlations`` gives the correlations themselves, and ``batch_statistics``
  with ``correlations_from_statistics`` split the computation (global batches under a strategy).
* Contrastive: ``contrastive_loss`` / ``ContrastiveLoss``, ``contrastive_loss_from_logits`` and
  ``replica_contrastive_loss``. DCCAE: ``reconstruction_error``.
* Small-batch deep CCA: ``ey_loss`` / ``EYLoss``, the Eckart–Young objective for two or more views
  and its unbiased stochastic form (``xmodal_tf.eckart_young``).
* Self-supervised relatives of CCA: ``barlow_twins_loss`` / ``BarlowTwinsLoss`` and ``vicreg_loss`` /
  ``VICRegLoss`` (``xmodal_tf.ssl_losses``).
* GAN: ``discriminator_loss`` and ``generator_loss`` (one of ``GAN_LOSSES``).

Every objective of views' outputs is a ``ViewLoss`` (``xmodal_tf.view_loss``): called as
``loss(h1, h2, ...)``, configured, serializable; ``ConcatenatedViews`` makes one a
``keras.losses.Loss`` for ``model.compile``.

XLA: ``tf.linalg.svd`` and eigen-decompositions are not trusted under XLA (see docs/DESIGN.md), so
only ``objective="squared"`` with all components (no SVD) may run inside ``tf.function(jit_compile=True)``;
everything else needs ``jit_compile=False``.

Design notes (definitions, gradients, precision, small batches): docs/DESIGN.md (section xmodal_tf/losses.py).
"""

from __future__ import annotations

import math
import numbers
import warnings

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._compute_dtype import (  # noqa: F401  (re-exported names)
    _COMPUTE_DTYPE_CHOICES,
    AUTO,
    _covariance_dtype_for,
    _current_device_type,
    _device_type_of,
    check_compute_dtype,
    common_float_dtype,
    resolve_compute_dtype,
)
from xmodal_tf._replicas import all_gather_rows, all_reduce_sum, in_replica_context
from xmodal_tf._validation import check_bool, check_choice, check_ridges
from xmodal_tf.eckart_young import EYLoss, ey_loss
from xmodal_tf.ssl_losses import BarlowTwinsLoss, VICRegLoss, barlow_twins_loss, vicreg_loss
from xmodal_tf.view_loss import ConcatenatedViews, ViewLoss, as_view

__all__ = [
    "BarlowTwinsLoss",
    "ConcatenatedViews",
    "ContrastiveLoss",
    "DeepCCALoss",
    "EYLoss",
    "GAN_LOSSES",
    "batch_statistics",
    "cca_correlations",
    "check_gan_loss",
    "contrastive_loss",
    "contrastive_loss_from_logits",
    "correlations_from_statistics",
    "deep_cca_loss",
    "discriminator_loss",
    "ey_loss",
    "generator_loss",
    "reconstruction_error",
    "replica_contrastive_loss",
    "resolve_compute_dtype",
    "VICRegLoss",
    "ViewLoss",
    "barlow_twins_loss",
    "vicreg_loss",
]

OBJECTIVES = ("trace", "squared")
# With reg=0, a Cholesky pivot below this fraction of the largest variance (times the
# number of features) marks the covariance as singular, as in xmodal_tf.cca.
_SINGULAR_PIVOT_FACTOR = 100.0


# ----------------------------------------------------------------------------- checks
def _check_regs(reg) -> tuple[float, float]:
    """Expand ``reg`` (a float, or one float per view) to a pair of floats >= 0."""
    values = list(reg) if isinstance(reg, (list, tuple, np.ndarray)) else [reg, reg]
    if len(values) != 2:
        raise ValueError(f"reg must be one float or a pair (one per view); got {reg!r}.")
    return tuple(check_ridges(values, reg, "a float >= 0 or a pair of them"))


def _check_n_components_type(n_components):
    if n_components is None:
        return None
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
        raise TypeError(f"n_components must be None or a positive int; got {n_components!r}.")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1 (or None for all); got {n_components}.")
    return int(n_components)


def _validate(h1, h2, n_components, reg, compute_dtype, global_batch=False):
    """Check inputs and parameters; return tensors, ridges, k and the run-time checks.

    With ``global_batch`` inside several replicas, the sample-count checks are left to
    the Cholesky check: the replica's share alone says nothing about the global batch.
    """
    regs = _check_regs(reg)
    k = _check_n_components_type(n_components)
    check_compute_dtype(compute_dtype)
    h1, h2 = as_view(h1, "h1"), as_view(h2, "h2")
    compute = resolve_compute_dtype(compute_dtype, h1, h2)
    dims = (int(h1.shape[1]), int(h2.shape[1]))
    rank_limit = min(dims)
    if k is None:
        k = rank_limit
    elif k > rank_limit:
        raise ValueError(
            f"n_components={k} is larger than min(d1, d2) = {rank_limit} (h1 has {dims[0]} "
            f"features, h2 has {dims[1]}); use n_components <= {rank_limit} or None for all."
        )
    batches = (h1.shape[0], h2.shape[0])
    if None not in batches and batches[0] != batches[1]:
        raise ValueError(
            f"h1 and h2 must have the same batch size (one row per paired sample); got {batches[0]} and {batches[1]}."
        )
    static_batch = next((b for b in batches if b is not None), None)
    checks = []
    if None in batches:
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(h1)[0],
                tf.shape(h2)[0],
                message="h1 and h2 must have the same batch size (one row per paired sample)",
            )
        )
    if global_batch and in_replica_context():
        return h1, h2, regs, k, compute, checks
    if static_batch is not None:
        if static_batch < 2:
            raise ValueError(f"A batch needs at least 2 samples for a covariance; got {static_batch}.")
        for name, dim, ridge in zip(("h1", "h2"), dims, regs):
            if ridge == 0 and static_batch <= dim:
                raise ValueError(
                    f"With reg=0 the covariance of {name} is singular: the batch has "
                    f"{static_batch} samples and {name} has {dim} features (it needs more "
                    f"samples than features). Use a batch of more than {dim} samples, or a "
                    "positive reg such as 1e-4."
                )
        if static_batch - 1 <= max(dims):
            warnings.warn(
                f"Deep CCA batch of {static_batch} samples for outputs of {dims[0]} and "
                f"{dims[1]} features: with batch - 1 <= max(d1, d2), "
                f"{min(static_batch - 1, *dims)} correlations are 1 without the ridge "
                "whatever the data, so the loss carries little signal. Use batches larger "
                "than the output dimension.",
                stacklevel=3,
            )
    else:
        m1 = tf.shape(h1)[0]
        checks.append(
            tf.debugging.assert_greater_equal(m1, 2, message="A batch needs at least 2 samples for a covariance")
        )
        for name, dim, ridge in zip(("h1", "h2"), dims, regs):
            if ridge == 0:
                checks.append(
                    tf.debugging.assert_greater(
                        m1,
                        dim,
                        message=(
                            f"With reg=0 the covariance of {name} ({dim} features) is singular "
                            f"unless the batch has more than {dim} samples; use larger batches or "
                            "a positive reg such as 1e-4"
                        ),
                    )
                )
    return h1, h2, regs, k, compute, checks


# ------------------------------------------------------------------------ algebra
def _checked_cholesky(covariance: tf.Tensor, ridge: float, name: str) -> tf.Tensor:
    """Lower Cholesky factor, with a run-time error (not NaN) when it does not exist.

    TensorFlow returns NaN for a matrix that is not positive definite. NaN pivots fail
    the comparison below, and with reg=0 so do pivots too small to trust.
    """
    factor = tf.linalg.cholesky(covariance)
    pivots = tf.linalg.diag_part(factor)
    if ridge == 0:
        eps = np.finfo(covariance.dtype.as_numpy_dtype).eps
        largest = tf.reduce_max(tf.linalg.diag_part(covariance))
        floor = _SINGULAR_PIVOT_FACTOR * covariance.shape[0] * eps * largest
        advice = "set reg to a small positive value such as 1e-4, or remove those output units"
    else:
        floor = tf.zeros([], covariance.dtype)
        advice = (
            f"increase reg (now {ridge}), rescale the outputs, or keep "
            "compute_dtype='float64' (the 'auto' default uses float32 on a GPU)"
        )
    check = tf.debugging.assert_greater(
        tf.square(pivots),
        floor,
        message=(
            f"Deep CCA: the covariance of {name} (+ reg I, reg={ridge}) is not numerically "
            "positive definite; typical causes are constant or linearly dependent output "
            f"units, batches not larger than the output dimension, or non-finite outputs. "
            f"To fix it, {advice}."
        ),
    )
    with tf.control_dependencies([check]):
        return tf.identity(factor)


def batch_statistics(h1, h2, compute, checks=(), global_batch=False):
    """The sufficient statistics of a batch for Deep CCA, in the compute dtype.

    Call it outside ``tf.cond`` branches (collectives cannot run inside them).

    Args:
        h1: (m, d1) outputs of the first view.
        h2: (m, d2) outputs of the second view, for the same m samples.
        compute: a float ``tf.DType``, or a ``compute_dtype`` setting ("auto", "float64",
            "float32", None) resolved by ``resolve_compute_dtype``.
        checks: run-time assertions that must pass before the statistics are computed.
        global_batch: inside a ``tf.distribute`` replica, the statistics of the GLOBAL
            batch: the sums and counts are all-reduced first (so every replica centres on
            the global mean), then the cross-products, both with gradients. Outside a
            strategy it is the batch itself.

    Returns:
        ``(count, c11, c22, c12)``: the number of rows m (a scalar), and the centred
        cross-products H1c^T H1c (d1 x d1), H2c^T H2c (d2 x d2) and H1c^T H2c (d1 x d2),
        not yet divided by m - 1.
    """
    if not isinstance(compute, tf.DType):
        h1, h2 = tf.convert_to_tensor(h1), tf.convert_to_tensor(h2)
        compute = resolve_compute_dtype(compute, h1, h2)
    # tf.identity: a cast to the same dtype creates no op to hang the checks on.
    with tf.control_dependencies(list(checks)):
        h1 = tf.identity(tf.cast(h1, compute))
        h2 = tf.identity(tf.cast(h2, compute))
    reduce = all_reduce_sum if global_batch else (lambda values: values)
    count = tf.cast(tf.shape(h1)[0], compute)
    count, sum1, sum2 = reduce((count, tf.reduce_sum(h1, axis=0), tf.reduce_sum(h2, axis=0)))
    centred1 = h1 - sum1 / count
    centred2 = h2 - sum2 / count
    products = (
        tf.matmul(centred1, centred1, transpose_a=True),
        tf.matmul(centred2, centred2, transpose_a=True),
        tf.matmul(centred1, centred2, transpose_a=True),
    )
    return (count, *reduce(products))


def _whitened_from_statistics(statistics, regs):
    """T = L1^-1 S12 L2^-T (d1 x d2) from ``batch_statistics``, with S = products / (m - 1)."""
    count, c11, c22, c12 = statistics
    degrees = count - 1.0
    factors = []
    for product, ridge, name in zip((c11, c22), regs, ("h1", "h2")):
        covariance = product / degrees
        regularised = covariance + ridge * tf.eye(covariance.shape[0], dtype=covariance.dtype)
        factors.append(_checked_cholesky(regularised, ridge, name))
    left = tf.linalg.triangular_solve(factors[0], c12 / degrees, lower=True)  # L1^-1 S12
    whitened = tf.linalg.triangular_solve(factors[1], tf.transpose(left), lower=True)
    return tf.transpose(whitened)


def correlations_from_statistics(statistics, *, n_components=None, reg=1e-4):
    """The top-k ridge-shrunk canonical correlations from ``batch_statistics``, largest first.

    Args:
        statistics: ``(count, c11, c22, c12)`` from ``batch_statistics``.
        n_components: k, how many correlations to return; None for all min(d1, d2).
        reg: ridge r added to each view's covariance, a float >= 0 or a pair (r1, r2).

    Returns:
        A (k,) tensor in the statistics' dtype (see ``cca_correlations``).
    """
    regs = _check_regs(reg)
    k = min(statistics[3].shape) if n_components is None else _check_n_components_type(n_components)
    return _correlations_of_statistics(statistics, regs)[:k]


def _correlations_of_statistics(statistics, regs):
    """All min(d1, d2) singular values of T from ``batch_statistics``, descending, with
    their gradient with respect to the cross-products in closed form.

    With S11 = L1 L1^T, S22 = L2 L2^T, T = L1^-1 S12 L2^-T = U diag(s) V^T and g the
    upstream gradient on s (tie-averaged as in ``_singular_values``), A = L1^-T U and
    B = L2^-T V (two triangular solves)::

        d/dS12 = A diag(g) B^T      d/dS11 = -1/2 A diag(g s) A^T      d/dS22 = -1/2 B diag(g s) B^T

    (Andrew et al.'s gradient, with Cholesky factors in place of the symmetric inverse
    square roots: they differ by the orthogonal factors that U and V absorb). It equals
    what automatic differentiation through the Cholesky factors, the solves and the SVD
    gives, in fewer and smaller operations (no Cholesky gradient).
    """
    count, c11, c22, c12 = statistics
    p, q = c12.shape
    eps = float(np.finfo(c12.dtype.as_numpy_dtype).eps)
    degrees = count - 1.0

    @tf.custom_gradient
    def values_of(c11, c22, c12):
        factors = []
        for product, ridge, name in zip((c11, c22), regs, ("h1", "h2")):
            regularised = product / degrees + ridge * tf.eye(product.shape[0], dtype=product.dtype)
            factors.append(_checked_cholesky(regularised, ridge, name))
        left = tf.linalg.triangular_solve(factors[0], c12 / degrees, lower=True)  # L1^-1 S12
        whitened = tf.transpose(tf.linalg.triangular_solve(factors[1], tf.transpose(left), lower=True))
        values, u, v = tf.linalg.svd(whitened, full_matrices=False, compute_uv=True)

        def gradient(upstream):
            weights = _tie_averaged(upstream, values, eps, p, q) / degrees
            a = tf.linalg.triangular_solve(factors[0], u, lower=True, adjoint=True)  # L1^-T U
            b = tf.linalg.triangular_solve(factors[1], v, lower=True, adjoint=True)  # L2^-T V
            shrink = -0.5 * weights * values
            return (
                tf.matmul(a * shrink, a, transpose_b=True),
                tf.matmul(b * shrink, b, transpose_b=True),
                tf.matmul(a * weights, b, transpose_b=True),
            )

        return values, gradient

    return values_of(c11, c22, c12)


def _whitened_cross_covariance(h1, h2, regs, compute, checks, global_batch=False):
    """T = L1^-1 S12 L2^-T (d1 x d2) in the compute dtype, and the dtype to return in."""
    output_dtype = common_float_dtype(h1, h2)
    compute = compute or output_dtype
    statistics = batch_statistics(h1, h2, compute, checks, global_batch=global_batch)
    return _whitened_from_statistics(statistics, regs), output_dtype


def _tie_averaged(upstream, values, eps: float, p: int, q: int):
    """The upstream gradient on descending singular ``values`` of a (p x q) matrix,
    averaged over each group of values tied within sqrt(eps) * s_max, and zero for
    values below max(p, q) * eps * s_max (see docs/DESIGN.md, section xmodal_tf/losses.py)."""
    largest = values[0]
    gaps = values[:-1] - values[1:]
    starts_group = tf.cast(gaps > math.sqrt(eps) * largest, tf.int32)
    group = tf.concat([tf.zeros([1], tf.int32), tf.cumsum(starts_group)], axis=0)
    group_mean = tf.math.unsorted_segment_mean(upstream, group, num_segments=min(p, q))
    weights = tf.gather(group_mean, group)
    nonzero = values > max(p, q) * eps * largest
    return tf.where(nonzero, weights, tf.zeros_like(weights))


# ----------------------------------------------------------------------------- API
def cca_correlations(h1, h2, *, n_components=None, reg=1e-4, compute_dtype="auto", global_batch=False):
    """Canonical correlations of a batch of paired outputs, largest first.

    Args:
        h1: (m, d1) tensor, one view's outputs for m paired samples.
        h2: (m, d2) tensor, the other view's outputs for the same samples.
        n_components: k, how many correlations to return; None for all min(d1, d2).
        reg: ridge r added to each view's covariance (C + r I, with C divided by m - 1),
            a float >= 0 or a pair (r1, r2). 0 is exact CCA and needs m > d1, d2 and
            non-singular covariances.
        compute_dtype: dtype of the covariances and the algebra: "auto" (default:
            float64 on a CPU or for float64 outputs, float32 on a GPU/TPU; see
            ``resolve_compute_dtype``), "float64", "float32", or None for the output dtype.
        global_batch: inside a ``tf.distribute`` replica, compute the correlations of
            the global batch (statistics all-reduced across replicas, gradients
            through the all-reduce) instead of this replica's share. No effect
            outside a strategy.

    Returns:
        A (k,) tensor, float32 (float64 for float64 inputs): the singular values of
        T = S11^-1/2 S12 S22^-1/2, each in [0, 1] (smaller than the unregularised
        correlations by the ridge's shrinkage). Differentiable with a gradient that is
        finite for repeated and zero correlations. Uses an SVD: do not XLA-compile.

    Raises:
        ValueError: bad shapes or values: views that are not rank 2 with a known, nonzero
            number of features, different static batch sizes, a static batch of fewer than
            2 samples (or, with reg=0, not more samples than a view's features),
            ``n_components`` outside [1, min(d1, d2)], a negative or non-finite ridge, or a
            non-float ``compute_dtype``.
        TypeError: ``reg``, ``n_components`` or ``compute_dtype`` of a wrong type.
        tf.errors.InvalidArgumentError: at run time, for dynamic-shape mismatches and
            covariances that are not positive definite.
    """
    h1, h2, regs, k, compute, checks = _validate(h1, h2, n_components, reg, compute_dtype, global_batch)
    output_dtype = common_float_dtype(h1, h2)
    statistics = batch_statistics(h1, h2, compute, checks, global_batch=global_batch)
    return tf.cast(_correlations_of_statistics(statistics, regs)[:k], output_dtype)


def deep_cca_loss(h1, h2, *, n_components=None, reg=1e-4, objective="trace", compute_dtype="auto", global_batch=False):
    """The Deep CCA loss of a batch: minus the total (or squared) canonical correlation.

    Only objective="squared" with all components may be XLA-compiled
    (``tf.function(jit_compile=True)``); the others use an SVD and need
    ``jit_compile=False``.

    Args:
        h1: (m, d1) tensor, the first network's outputs for m paired samples.
        h2: (m, d2) tensor, the second network's outputs for the same samples.
        n_components: k, the number of top correlations counted; None for all
            min(d1, d2).
        reg: ridge r added to each view's covariance (C + r I, with C divided by m - 1),
            a float >= 0 or a pair (r1, r2).
        objective: "trace" for minus the sum of the top-k correlations (the trace norm
            of T when k is all), or "squared" for minus the sum of their squares
            (||T||_F^2 when k is all, computed without an SVD).
        compute_dtype: dtype of the covariances and the algebra: "auto" (default:
            float64 on a CPU or for float64 outputs, float32 on a GPU/TPU; see
            ``resolve_compute_dtype``), "float64", "float32", or None for the output dtype.
        global_batch: inside a ``tf.distribute`` replica, the loss of the global batch
            (identical on every replica; see ``cca_correlations``).

    Returns:
        A scalar tensor in [-k, 0], float32 (float64 for float64 inputs). For example
        -20 with k=50 and objective="trace" means that the top 50 correlations of this
        batch sum to 20. Gradients with respect to h1 and h2 stay finite for dead
        (constant) units, identical views and repeated correlations.

    Raises:
        ValueError: an unknown ``objective``, or as ``cca_correlations``.
        TypeError: as ``cca_correlations``.
        tf.errors.InvalidArgumentError: as ``cca_correlations``, at run time.
    """
    objective = check_choice(objective, "objective", OBJECTIVES)
    h1, h2, regs, k, compute, checks = _validate(h1, h2, n_components, reg, compute_dtype, global_batch)
    if objective == "squared" and k == min(h1.shape[1], h2.shape[1]):
        whitened, output_dtype = _whitened_cross_covariance(h1, h2, regs, compute, checks, global_batch)
        total = tf.reduce_sum(tf.square(whitened))
    else:
        output_dtype = common_float_dtype(h1, h2)
        statistics = batch_statistics(h1, h2, compute, checks, global_batch=global_batch)
        values = _correlations_of_statistics(statistics, regs)[:k]
        total = tf.reduce_sum(values if objective == "trace" else tf.square(values))
    return tf.cast(-total, output_dtype)


@keras.saving.register_keras_serializable(package="xmodal_tf")
class DeepCCALoss(ViewLoss):
    """The Deep CCA loss as a serializable callable: ``loss = DeepCCALoss(...)(h1, h2)``.

    A ``ViewLoss``: it takes the two views' outputs, not (y_true, y_pred). Models take it as
    their objective; for ``model.compile(loss=...)`` wrap it in ``ConcatenatedViews``; or
    call it in a custom ``train_step`` or training loop, for example::

        loss_fn = DeepCCALoss(n_components=10, reg=1e-4)
        with tf.GradientTape() as tape:
            h1, h2 = encoder1(x1, training=True), encoder2(x2, training=True)
            loss = loss_fn(h1, h2)          # scalar in [-10, 0]

    Store it in a model's ``get_config`` with ``keras.saving.serialize_keras_object``
    and restore it with ``keras.saving.deserialize_keras_object``.

    Under a distribution strategy with ``global_batch=False`` the value is a per-replica
    batch statistic: average it over replicas (do not scale it by the global batch
    size). With ``global_batch=True`` every replica gets the global batch's value.

    Args:
        n_components: as in ``deep_cca_loss``.
        reg: as in ``deep_cca_loss`` (a pair is kept as a tuple of floats).
        objective: as in ``deep_cca_loss``.
        compute_dtype: as in ``deep_cca_loss``; "auto" is kept and resolved on each call,
            where the outputs live.
        global_batch: as in ``deep_cca_loss``.
        name: the loss's name.

    Raises:
        TypeError: an argument of a wrong type (the arguments are checked here, the
            shapes on each call).
        ValueError: an argument of a wrong value.
    """

    def __init__(
        self,
        n_components=None,
        reg=1e-4,
        objective="trace",
        compute_dtype="auto",
        global_batch=False,
        name="deep_cca_loss",
    ):
        self.n_components = _check_n_components_type(n_components)
        regs = _check_regs(reg)
        self.reg = regs if isinstance(reg, (list, tuple, np.ndarray)) else regs[0]
        self.objective = check_choice(objective, "objective", OBJECTIVES)
        compute = check_compute_dtype(compute_dtype)
        # "auto" is stored as such and resolved on each call (where the outputs live).
        self.compute_dtype = compute if compute in (None, AUTO) else compute.name
        self.global_batch = check_bool(global_batch, "global_batch")
        super().__init__(name)

    def call(self, h1, h2):
        """Return the scalar loss for outputs h1 (m, d1) and h2 (m, d2)."""
        return deep_cca_loss(
            h1,
            h2,
            n_components=self.n_components,
            reg=self.reg,
            objective=self.objective,
            compute_dtype=self.compute_dtype,
            global_batch=self.global_batch,
        )

    def correlations(self, h1, h2):
        """The (k,) correlations behind the loss, largest first (see ``cca_correlations``)."""
        return cca_correlations(
            h1,
            h2,
            n_components=self.n_components,
            reg=self.reg,
            compute_dtype=self.compute_dtype,
            global_batch=self.global_batch,
        )

    def statistics(self, h1, h2, runtime_checks=True):
        """``batch_statistics`` of the outputs, after the same checks as the loss.

        They are all-reduced over replicas when ``global_batch``; ``correlations_from``
        finishes the job.

        Args:
            h1: (m, d1) outputs of the first view.
            h2: (m, d2) outputs of the second view.
            runtime_checks: False drops the run-time sample-count assertions (for a caller
                that skips unusable batches itself); the batch sizes are still checked
                against each other, and the shape checks still raise at trace time.

        Returns:
            ``(count, c11, c22, c12)``, as ``batch_statistics`` returns them.
        """
        h1, h2, _, _, compute, checks = _validate(
            h1, h2, self.n_components, self.reg, self.compute_dtype, self.global_batch
        )
        if not runtime_checks:
            checks = [
                tf.debugging.assert_equal(
                    tf.shape(h1)[0],
                    tf.shape(h2)[0],
                    message="h1 and h2 must have the same batch size (one row per paired sample)",
                )
            ]
        return batch_statistics(h1, h2, compute or common_float_dtype(h1, h2), checks, self.global_batch)

    def correlations_from(self, statistics):
        """The (k,) correlations from ``statistics``, in their dtype."""
        return correlations_from_statistics(statistics, n_components=self.n_components, reg=self.reg)

    def get_config(self) -> dict:
        reg = list(self.reg) if isinstance(self.reg, tuple) else self.reg
        return {
            "n_components": self.n_components,
            "reg": reg,
            "objective": self.objective,
            "compute_dtype": self.compute_dtype,
            "global_batch": self.global_batch,
            "name": self.name,
        }


# ======================================================================== DCCAE
def reconstruction_error(view, reconstruction) -> tf.Tensor:
    """DCCAE's reconstruction term: each example's squared error summed over its features, averaged.

    The term of Wang et al., 2015, eq. 4, which the weight lambda multiplies. Unlike a
    mean over every entry (``keras.losses.MeanSquaredError``), its size grows with the
    number of features, as the total correlation grows with k: a 784-pixel view gives
    784 times the per-pixel mean, so a weight of 1 here is a per-pixel-MSE weight of 784.

    Args:
        view: (batch, ...) the data.
        reconstruction: (batch, ...) the decoder's output, the shape of ``view``.

    Returns:
        A scalar tensor, float32 (float64 if either input is float64, also for
        mixed-precision decoders).

    Raises:
        ValueError: the shapes differ beyond the batch axis.
    """
    view, reconstruction = tf.convert_to_tensor(view), tf.convert_to_tensor(reconstruction)
    if tuple(view.shape[1:]) != tuple(reconstruction.shape[1:]):
        raise ValueError(
            f"reconstruction_error: the reconstruction has shape {tuple(reconstruction.shape)} "
            f"but the view has shape {tuple(view.shape)}."
        )
    dtype = tf.float64 if tf.float64 in (view.dtype, reconstruction.dtype) else tf.float32
    squared = tf.square(tf.cast(view, dtype) - tf.cast(reconstruction, dtype))
    per_example = tf.reduce_sum(tf.reshape(squared, [tf.shape(squared)[0], -1]), axis=1)
    return tf.reduce_mean(per_example)


# ======================================================================== contrastive
# The symmetric InfoNCE loss of CLIP (Radford et al., 2021) for a batch of n paired
# embeddings (a_i, b_i): each a_i must pick out its own b_i among the n b's of the
# batch, and each b_j its own a_j among the a's:
#
#     logits[i, j] = <a_i, b_j> / temperature            (n x n)
#     loss = mean_i( 1/2 [ logsumexp_j logits[i, j] - logits[i, i] ]
#                  + 1/2 [ logsumexp_j logits[j, i] - logits[i, i] ] )
#
# i.e. the mean of the two cross-entropies (rows: a -> b, columns: b -> a) with the
# matched pair on the diagonal as the label. The other n - 1 items of the batch are
# the negatives, so the value depends on the batch size: log(n) for embeddings that
# carry no information, 0 for a perfect match at a small temperature.


def contrastive_loss_from_logits(logits) -> tf.Tensor:
    """The symmetric InfoNCE loss of an (n, n) logits matrix, pairs on the diagonal.

    Args:
        logits: (n, n) float tensor, ``logits[i, j]`` the scaled similarity of a_i
            and b_j (already divided by the temperature).

    Returns:
        A scalar, the mean over the n pairs of the average of the row (a -> b) and
        column (b -> a) cross-entropies; float32 (float64 for float64 logits). The
        log-sum-exp runs in at least float32 with the maximum subtracted, so logits of
        any size (e.g. 100 for CLIP's smallest temperature) give a finite value.

    Raises:
        TypeError: non-float logits.
        ValueError: logits that are not a square (n, n) matrix, or an empty batch.
    """
    logits = _as_contrastive_logits(logits)
    matched = tf.linalg.diag_part(logits)
    rows = tf.reduce_logsumexp(logits, axis=1) - matched
    columns = tf.reduce_logsumexp(logits, axis=0) - matched
    return tf.reduce_mean(0.5 * (rows + columns))


def replica_contrastive_loss(embeddings_a, embeddings_b, logit_scale, *, global_batch=True):
    """The symmetric InfoNCE loss of this replica's pairs, and their in-batch accuracy.

    Args:
        embeddings_a: (n, d) embeddings of this replica's rows, normalised already (the
            logits are ``logit_scale * <a_i, b_j>``).
        embeddings_b: (n, d) embeddings paired with ``embeddings_a`` row by row.
        logit_scale: 1 / temperature, a scalar.
        global_batch: inside a ``tf.distribute`` replica, score the rows against the
            embeddings of every replica (all-gathered, with gradients), so the
            negatives are the global batch's (CLIP's distributed loss). Outside a
            strategy, or with False, the negatives are this replica's rows.

    Returns:
        ``(loss, accuracy)``: the mean over this replica's n pairs of the average of the
        a -> b and b -> a cross-entropies, and the fraction of the 2n queries whose
        partner scores highest. Averaged over equal replica shares, both equal one
        device's values on the global batch (``contrastive_loss_from_logits``).
    """
    a, b, checks = _check_paired_embeddings(embeddings_a, embeddings_b)
    with tf.control_dependencies(checks):
        a, b = tf.identity(a), tf.identity(b)
    all_a, all_b, offset = a, b, tf.constant(0, tf.int32)
    if global_batch:
        all_a, offset = all_gather_rows(a)
        all_b, _ = all_gather_rows(b)
    scale = tf.cast(logit_scale, a.dtype)
    a_to_b = scale * tf.matmul(a, all_b, transpose_b=True)  # (n, N): this replica's a against every b
    b_to_a = scale * tf.matmul(b, all_a, transpose_b=True)
    targets = offset + tf.range(tf.shape(a)[0])
    # The partners' logits a_to_b[i, offset + i], as one row-wise product: cheaper than
    # gathering them from the logits, forward and backward (all_b[offset + i] is b[i]).
    matched = scale * tf.reduce_sum(a * b, axis=1)
    rows = tf.reduce_logsumexp(a_to_b, axis=1) - matched
    columns = tf.reduce_logsumexp(b_to_a, axis=1) - matched
    loss = tf.reduce_mean(0.5 * (rows + columns))
    hits = [
        tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), targets), tf.float32)
        for logits in (a_to_b, b_to_a)
    ]
    return loss, 0.5 * (tf.reduce_mean(hits[0]) + tf.reduce_mean(hits[1]))


def contrastive_loss(embeddings_a, embeddings_b, temperature=0.07, *, normalize=True) -> tf.Tensor:
    """The symmetric InfoNCE (CLIP) loss of a batch of n paired embeddings.

    Args:
        embeddings_a: (n, d) float tensor; row i is paired with row i of ``embeddings_b``.
        embeddings_b: (n, d) float tensor.
        temperature: a positive float or scalar tensor (e.g. a learned one); the
            cosine similarities are divided by it. CLIP starts at 0.07.
        normalize: L2-normalise the rows first (cosine similarity). Pass False for
            embeddings that are normalised already (or to use raw dot products).

    Returns:
        A scalar tensor (see ``contrastive_loss_from_logits``): log(n) for
        uninformative embeddings, near 0 when every pair is far closer than any
        mismatched pair. The in-batch negatives make it depend on n.

    Raises:
        ValueError: tensors that are not (n, d), different static batch sizes or widths,
            an empty batch, or a non-positive temperature.
        TypeError: non-float embeddings, or a temperature that is not a number.
        tf.errors.InvalidArgumentError: a dynamic batch mismatch, when the graph runs.
    """
    a, b, checks = _check_paired_embeddings(embeddings_a, embeddings_b)
    temperature = _check_temperature(temperature, a.dtype)
    with tf.control_dependencies(checks):
        a, b = tf.identity(a), tf.identity(b)
    if normalize:
        a, b = tf.math.l2_normalize(a, axis=1), tf.math.l2_normalize(b, axis=1)
    logits = tf.matmul(a, b, transpose_b=True) / temperature
    return contrastive_loss_from_logits(logits)


@keras.saving.register_keras_serializable(package="xmodal_tf")
class ContrastiveLoss(ViewLoss):
    """The symmetric InfoNCE loss as a serializable callable with a fixed temperature.

    Like ``DeepCCALoss`` it takes the two modalities' embeddings, not
    (y_true, y_pred), so it is called in a custom ``train_step``::

        loss_fn = ContrastiveLoss(temperature=0.1)
        loss = loss_fn(image_embeddings, text_embeddings)    # scalar, log(n) at chance

    ``temperature`` in the call overrides the stored one (for a learned temperature,
    see ``xmodal_tf.models.DualEncoder``). The value is a mean over the batch's pairs:
    under a distribution strategy each replica contrasts its own pairs, and its loss
    must be divided by ``num_replicas_in_sync`` before differentiating.

    Args:
        temperature: a finite float > 0 (CLIP starts at 0.07).
        normalize: L2-normalise the embeddings first (cosine similarity).
        name: the loss's name.

    Raises:
        TypeError: a temperature that is not a number, or a non-bool ``normalize``.
        ValueError: a temperature that is not finite and > 0.
    """

    def __init__(self, temperature=0.07, normalize=True, name="contrastive_loss"):
        self.temperature = float(_check_temperature(temperature, tf.float32))
        self.normalize = check_bool(normalize, "normalize")
        super().__init__(name)

    def __call__(self, embeddings_a, embeddings_b=None, temperature=None):
        """The scalar loss of paired embeddings (see ``contrastive_loss``).

        Args:
            embeddings_a: (n, d) float tensor; row i is paired with row i of ``embeddings_b``.
            embeddings_b: (n, d) float tensor.
            temperature: for this call instead of the stored one (e.g. a learned scalar
                tensor); None uses the stored one.

        Returns:
            A scalar tensor.
        """
        if embeddings_b is None:
            self.check_view_count(1)
        return contrastive_loss(
            embeddings_a,
            embeddings_b,
            self.temperature if temperature is None else temperature,
            normalize=self.normalize,
        )

    def call(self, embeddings_a, embeddings_b):
        return self(embeddings_a, embeddings_b)

    def get_config(self) -> dict:
        return {"temperature": self.temperature, "normalize": self.normalize, "name": self.name}


def _contrastive_dtype(dtype: tf.DType) -> tf.DType:
    """float64 stays; every other float (float16, bfloat16) is computed in float32."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def _as_float_matrix(value, name: str) -> tf.Tensor:
    value = tf.convert_to_tensor(value)
    if not value.dtype.is_floating:
        raise TypeError(
            f"{name} must be a float tensor of embeddings; got dtype {value.dtype.name}. Cast it to float32 first."
        )
    if value.shape.rank != 2:
        raise ValueError(f"{name} must be a rank-2 (batch, features) tensor; got shape {value.shape}.")
    return tf.cast(value, _contrastive_dtype(value.dtype))


def _as_contrastive_logits(logits) -> tf.Tensor:
    logits = _as_float_matrix(logits, "logits")
    rows, columns = logits.shape
    if rows is not None and columns is not None and rows != columns:
        raise ValueError(
            f"Contrastive logits must be square (n, n), one row and one column per pair; got shape {logits.shape}."
        )
    if rows == 0 or columns == 0:
        raise ValueError("The contrastive loss needs at least one pair; the batch is empty.")
    return logits


def _check_paired_embeddings(embeddings_a, embeddings_b):
    """Both as (n, d) float tensors of one dtype, and run-time checks of the batch size."""
    a = _as_float_matrix(embeddings_a, "embeddings_a")
    b = _as_float_matrix(embeddings_b, "embeddings_b")
    if a.dtype != b.dtype:
        a, b = tf.cast(a, tf.float64), tf.cast(b, tf.float64)
    if a.shape[1] is not None and b.shape[1] is not None and a.shape[1] != b.shape[1]:
        raise ValueError(
            f"Paired embeddings must have the same width to be compared; got {a.shape[1]} "
            f"features for embeddings_a and {b.shape[1]} for embeddings_b. Project both to "
            "one size (e.g. DualEncoder's projection_dim)."
        )
    batches = (a.shape[0], b.shape[0])
    if None not in batches and batches[0] != batches[1]:
        raise ValueError(
            f"embeddings_a and embeddings_b must have the same batch size (row i of one is "
            f"paired with row i of the other); got {batches[0]} and {batches[1]}."
        )
    if 0 in batches:
        raise ValueError("The contrastive loss needs at least one pair; the batch is empty.")
    checks = []
    if None in batches:
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(a)[0],
                tf.shape(b)[0],
                message="embeddings_a and embeddings_b must have the same batch size (paired rows)",
            )
        )
    return a, b, checks


def _check_temperature(temperature, dtype: tf.DType):
    """A Python temperature must be a finite float > 0; a tensor is cast to ``dtype``."""
    if isinstance(temperature, bool):
        raise TypeError(f"temperature must be a float > 0 or a scalar tensor; got {temperature!r}.")
    if isinstance(temperature, numbers.Real):
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be finite and > 0 (CLIP starts at 0.07); got {temperature!r}.")
        return float(temperature)
    try:
        tensor = tf.convert_to_tensor(temperature)
    except (TypeError, ValueError) as error:
        raise TypeError(f"temperature must be a float > 0 or a scalar tensor; got {temperature!r}.") from error
    if tensor.shape.rank not in (None, 0) or not (tensor.dtype.is_floating or tensor.dtype.is_integer):
        raise TypeError(f"temperature must be a scalar number; got shape {tensor.shape}, dtype {tensor.dtype.name}.")
    return tf.cast(tensor, dtype)


# ----------------------------------------------------------------------------- GAN losses
#: The adversarial losses of ``discriminator_loss``, ``generator_loss`` and ``ConditionalGAN``.
GAN_LOSSES = ("hinge", "non_saturating", "least_squares")


def check_gan_loss(loss) -> str:
    """``loss`` if it is one of ``GAN_LOSSES``, else a ValueError listing them."""
    if loss not in GAN_LOSSES:
        raise ValueError(f"Unknown GAN loss {loss!r}; choose one of {GAN_LOSSES}.")
    return loss


def discriminator_loss(real_logits, fake_logits, loss="non_saturating", label_smoothing=0.0):
    """Per-example discriminator loss from raw logits (no sigmoid).

    * ``hinge``:          relu(1 - D(x)) + relu(1 + D(G(z)))
    * ``non_saturating``: binary cross-entropy with real target 1 - label_smoothing
      (one-sided smoothing) and fake target 0
    * ``least_squares``:  ((D(x) - 1)^2 + D(G(z))^2) / 2

    Args:
        real_logits: (batch,) discriminator logits on real images.
        fake_logits: (batch,) discriminator logits on generated images.
        loss: one of ``GAN_LOSSES``.
        label_smoothing: one-sided smoothing of the real target, in [0, 1).

    Returns:
        The float32 loss of each example, shape (batch,).

    Raises:
        ValueError: ``loss`` is not one of ``GAN_LOSSES``.
    """
    check_gan_loss(loss)
    real_logits, fake_logits = tf.cast(real_logits, tf.float32), tf.cast(fake_logits, tf.float32)
    if loss == "hinge":
        return tf.nn.relu(1.0 - real_logits) + tf.nn.relu(1.0 + fake_logits)
    if loss == "non_saturating":
        target = 1.0 - float(label_smoothing)
        real = target * tf.nn.softplus(-real_logits) + (1.0 - target) * tf.nn.softplus(real_logits)
        return real + tf.nn.softplus(fake_logits)
    return 0.5 * (tf.square(real_logits - 1.0) + tf.square(fake_logits))


def generator_loss(fake_logits, loss="non_saturating"):
    """Per-example generator loss from raw discriminator logits.

    ``-D(G(z))`` (hinge), ``-log sigmoid(D(G(z)))`` (non_saturating) or
    ``(D(G(z)) - 1)^2 / 2`` (least_squares).

    Args:
        fake_logits: (batch,) discriminator logits on generated images.
        loss: one of ``GAN_LOSSES``.

    Returns:
        The float32 loss of each example, shape (batch,).

    Raises:
        ValueError: ``loss`` is not one of ``GAN_LOSSES``.
    """
    check_gan_loss(loss)
    fake_logits = tf.cast(fake_logits, tf.float32)
    if loss == "hinge":
        return -fake_logits
    if loss == "non_saturating":
        return tf.nn.softplus(-fake_logits)
    return 0.5 * tf.square(fake_logits - 1.0)
