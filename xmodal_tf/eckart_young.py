"""The Eckart–Young (EY) objective of deep CCA, for two or more views, and its unbiased stochastic form.

Chapman et al. ("Efficient algorithms for the CCA family: unconstrained objectives with
unbiased gradients", 2023) write CCA of k-dimensional outputs Z_1..Z_V as the
minimisation of an unconstrained loss of their covariances C_ij = Cov(Z_i, Z_j)::

    A = sum_{i != j} C_ij / (V - 1)        B = sum_i C_ii
    loss = -2 tr(A) + ||B||_F^2

No inverse, no decomposition: it is finite for any batch of two or more rows (dead
units and identical views included), its gradient is plain automatic differentiation,
and it may be XLA-compiled. At its minimum the outputs are canonical variates scaled
so that ``loss = -sum_i rho_i^2`` over the k correlations (two views), the value of
Deep CCA's "squared" objective. The penalty ||B||^2 of one minibatch is a biased
estimate of the population's; ``unbiased=True`` replaces it by tr(B_a B_b) of the
batch's two halves, which are independent samples, so that the minibatch gradient is
unbiased for the population loss (the paper's stochastic EY).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from xmodal_tf._compute_dtype import check_compute_dtype, resolve_compute_dtype
from xmodal_tf._replicas import all_reduce_sum
from xmodal_tf._validation import check_bool
from xmodal_tf.view_loss import ViewLoss, checked_views

__all__ = ["EYLoss", "ey_loss"]


def _covariance_sums(groups, global_batch: bool):
    """For each group of views (the same rows of every view): (joint, within), Cov(sum_i Z_i)
    and sum_i Cov(Z_i), each (k, k), about the group's (global) mean.

    All groups share one all-reduce of counts and sums and one of products, so that every
    replica issues the same collectives in the same order.
    """
    reduce = all_reduce_sum if global_batch else (lambda values: values)
    counts = [tf.cast(tf.shape(views[0])[0], views[0].dtype) for views in groups]
    sums = [[tf.reduce_sum(view, axis=0) for view in views] for views in groups]
    counts, sums = reduce((counts, sums))
    products = []
    for views, count, totals in zip(groups, counts, sums):
        centred = [view - total / count for view, total in zip(views, totals)]
        summed = tf.add_n(centred)
        products.append(
            (
                tf.matmul(summed, summed, transpose_a=True),
                tf.add_n([tf.matmul(c, c, transpose_a=True) for c in centred]),
            )
        )
    products = reduce(products)
    return [(joint / (count - 1.0), within / (count - 1.0)) for (joint, within), count in zip(products, counts)]


def ey_loss(*views, unbiased=False, compute_dtype="auto", global_batch=False):
    """The Eckart–Young loss of the views' outputs (see the module docstring).

    Args:
        *views: two or more (m, k) tensors, the views' outputs for the same m samples.
        unbiased: estimate the penalty ||B||^2 by tr(B_a B_b) of the batch's two halves
            (rows [0, m/2) and [m/2, 2 floor(m/2))), an unbiased estimate; needs m >= 4.
        compute_dtype: as in ``xmodal_tf.losses.deep_cca_loss`` ("auto": float64 on a
            CPU, float32 on an accelerator).
        global_batch: inside a ``tf.distribute`` replica, the loss of the global batch
            (covariances all-reduced, with gradients); each replica halves its own rows.

    Returns:
        A scalar tensor, float32 (float64 when a view is float64). Two views whose k
        outputs reach correlations rho_1..rho_k give at best -sum(rho_i^2).

    Raises:
        ValueError: fewer than 2 views, views that are not rank 2 or differ in width,
            different static batch sizes, or a static batch below 2 (4 when unbiased).
        TypeError: a ``compute_dtype`` that is not a dtype, "auto" or None.
    """
    unbiased = check_bool(unbiased, "unbiased")
    check_compute_dtype(compute_dtype)
    if len(views) < 2:
        raise ValueError(f"The EY objective needs at least 2 views' outputs; got {len(views)}.")
    objective = "The unbiased EY objective (two halves of two or more rows)" if unbiased else "The EY objective"
    views, checks = checked_views(views, objective, min_rows=4 if unbiased else 2, global_batch=global_batch)
    output_dtype = tf.float64 if any(view.dtype == tf.float64 for view in views) else tf.float32
    compute = resolve_compute_dtype(compute_dtype, views[0], views[1])
    with tf.control_dependencies(checks):
        views = [tf.identity(tf.cast(view, compute)) for view in views]
    groups = [views]
    if unbiased:
        half = tf.shape(views[0])[0] // 2
        groups += [[view[:half] for view in views], [view[half : 2 * half] for view in views]]
    covariances = _covariance_sums(groups, global_batch)
    joint, within = covariances[0]
    reward = tf.linalg.trace(joint - within) / (len(views) - 1)
    if unbiased:
        penalty = tf.reduce_sum(covariances[1][1] * covariances[2][1])
    else:
        penalty = tf.reduce_sum(tf.square(within))
    return tf.cast(-2.0 * reward + penalty, output_dtype)


@keras.saving.register_keras_serializable(package="xmodal_tf")
class EYLoss(ViewLoss):
    """The Eckart–Young objective as a ``ViewLoss``: ``EYLoss()(h1, h2[, h3, ...])``.

    Small-batch friendly: unlike Deep CCA's whitening (``DeepCCALoss``) it needs no
    batch larger than the output width, and its gradients stay finite for any batch of
    two or more rows.

    Args:
        unbiased: the stochastic form (penalty from the batch's two halves); see ``ey_loss``.
        compute_dtype: as in ``ey_loss``; "auto" is kept and resolved on each call.
        global_batch: as in ``ey_loss``.
        name: the loss's name.

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: a ``compute_dtype`` other than float32 / float64.
    """

    min_views = 2
    max_views = None

    def __init__(self, unbiased=False, compute_dtype="auto", global_batch=False, name=None):
        self.unbiased = check_bool(unbiased, "unbiased")
        compute = check_compute_dtype(compute_dtype)
        self.compute_dtype = compute if compute is None or isinstance(compute, str) else compute.name
        self.global_batch = check_bool(global_batch, "global_batch")
        super().__init__(name or ("ey_unbiased_loss" if self.unbiased else "ey_loss"))

    @property
    def min_rows(self) -> int:
        return 4 if self.unbiased else 2

    def call(self, *views):
        return ey_loss(*views, unbiased=self.unbiased, compute_dtype=self.compute_dtype, global_batch=self.global_batch)

    def get_config(self) -> dict:
        return {
            "unbiased": self.unbiased,
            "compute_dtype": self.compute_dtype,
            "global_batch": self.global_batch,
            "name": self.name,
        }
