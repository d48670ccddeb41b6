"""Barlow Twins and VICReg: the self-supervised objectives that are close relatives of CCA.

Both take the (m, d) outputs ``h1``, ``h2`` of two views of the same m samples and pull
unit i of one view towards unit i of the other while keeping each view's units
informative and decorrelated, the goals of CCA's constraints, as soft penalties:

* Barlow Twins (Zbontar et al., "Barlow Twins: self-supervised learning via redundancy
  reduction", 2021) standardises each unit over the batch and drives the (d, d)
  cross-correlation matrix C of the two views to the identity::

      z_v = (h_v - mean_v) / sqrt(var_v + eps)       (mean, biased variance over the batch)
      C = z_1^T z_2 / m
      loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2

* VICReg (Bardes et al., "VICReg: variance-invariance-covariance regularization for
  self-supervised learning", 2022) keeps the outputs unstandardised and adds three terms::

      invariance = mean over rows and units of (h_1 - h_2)^2
      variance_v = mean over units j of relu(1 - sqrt(Var(h_v)_jj + eps))
      covariance_v = sum_{i != j} Cov(h_v)_ij^2 / d          (Var, Cov: unbiased, over the batch)
      loss = lambda * invariance + mu * (variance_1 + variance_2) + nu * (covariance_1 + covariance_2)

Neither needs an inverse or a decomposition: both are finite, with finite gradients, for
any batch of two or more rows, dead (constant) units and identical views included (the
``eps`` inside the square roots sees to that), and both may be XLA-compiled. float64
outputs are computed in float64; every other float (float32, and the float16 / bfloat16
of mixed precision) in float32. ``global_batch=True`` computes the batch statistics of
the global batch inside a ``tf.distribute`` replica (sums all-reduced, with gradients).

Main names: ``barlow_twins_loss`` / ``BarlowTwinsLoss``, ``vicreg_loss`` / ``VICRegLoss``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from xmodal_tf._compute_dtype import common_float_dtype
from xmodal_tf._replicas import all_reduce_sum
from xmodal_tf._validation import check_bool, check_number
from xmodal_tf.view_loss import ViewLoss, checked_views

__all__ = ["BarlowTwinsLoss", "VICRegLoss", "barlow_twins_loss", "vicreg_loss"]


# ----------------------------------------------------------------------------- checks
def _checked_pair(h1, h2, objective: str, global_batch: bool):
    """``(h1, h2, dtype)``: the views (see ``checked_views``) cast to their compute dtype, checks attached."""
    (h1, h2), checks = checked_views((h1, h2), objective, names=("h1", "h2"), global_batch=global_batch)
    dtype = common_float_dtype(h1, h2)
    with tf.control_dependencies(checks):
        h1, h2 = tf.identity(tf.cast(h1, dtype)), tf.identity(tf.cast(h2, dtype))
    return h1, h2, dtype


def _check_eps(eps) -> float:
    return check_number(
        eps, "eps", minimum=0, exclusive_minimum=True, expected="a finite float > 0 (it keeps dead units finite)"
    )


def _check_weight(value, name: str, allow_none: bool = False) -> float | None:
    expected = f"a finite float >= 0{' or None' if allow_none else ''}"
    return check_number(value, name, minimum=0, allow_none=allow_none, expected=expected)


def _off_diagonal_sum_of_squares(matrix: tf.Tensor) -> tf.Tensor:
    """sum_{i != j} M_ij^2 of a square matrix (the diagonal zeroed, not subtracted: no cancellation)."""
    return tf.reduce_sum(tf.square(tf.linalg.set_diag(matrix, tf.zeros_like(tf.linalg.diag_part(matrix)))))


def _centred(views, global_batch: bool):
    """``(count, centred)``: the (global) number of rows, and the views minus their (global) column means."""
    reduce = all_reduce_sum if global_batch else (lambda values: values)
    count = tf.cast(tf.shape(views[0])[0], views[0].dtype)
    count, sums = reduce((count, [tf.reduce_sum(view, axis=0) for view in views]))
    return count, [view - total / count for view, total in zip(views, sums)]


# ----------------------------------------------------------------------------- Barlow Twins
def barlow_twins_loss(h1, h2, *, off_diagonal_weight=None, eps=1e-5, global_batch=False):
    """The Barlow Twins loss of two views' outputs (see the module docstring).

    Args:
        h1: (m, d) tensor, the first view's outputs; row i is paired with row i of ``h2``.
        h2: (m, d) tensor, the second view's outputs.
        off_diagonal_weight: lambda, the weight of the off-diagonal (redundancy) term; None
            for 1 / d. The paper's 5e-3 suits its d = 8192 units; at the 10 to 50 units of
            a small model it would all but drop the term, while 1 / d keeps the two terms
            on one scale (d diagonal entries against d (d - 1) off-diagonal ones).
        eps: added to each unit's variance inside the square root (as batch normalisation
            does), so that a dead (constant) unit standardises to 0 rather than NaN.
        global_batch: inside a ``tf.distribute`` replica, the statistics (means, variances,
            cross-correlations) of the global batch, all-reduced with gradients; each
            replica then returns the same loss. Outside replicas it changes nothing.

    Returns:
        A scalar tensor, float64 when a view is float64, else float32. 0 when the two
        views' standardised units are identical and uncorrelated with each other (up to
        the ``eps`` shrinkage); d when the views are unrelated and redundancy-free.

    Raises:
        ValueError: views that are not rank-2 (batch, features) tensors, different widths
            or static batch sizes, a static batch below 2 rows, or a bad argument value.
        TypeError: an argument of a wrong type.
        tf.errors.InvalidArgumentError: a dynamic batch below 2 rows or of different sizes,
            when the graph runs.
    """
    off_diagonal_weight = _check_weight(off_diagonal_weight, "off_diagonal_weight", allow_none=True)
    eps = _check_eps(eps)
    global_batch = check_bool(global_batch, "global_batch")
    h1, h2, dtype = _checked_pair(h1, h2, "The Barlow Twins loss", global_batch)
    width = int(h1.shape[1])
    weight = 1.0 / width if off_diagonal_weight is None else off_diagonal_weight
    count, (c1, c2) = _centred([h1, h2], global_batch)
    sums = (
        tf.reduce_sum(tf.square(c1), axis=0),
        tf.reduce_sum(tf.square(c2), axis=0),
        tf.matmul(c1, c2, transpose_a=True),
    )
    squares_1, squares_2, cross = all_reduce_sum(sums) if global_batch else sums
    scale_1 = tf.sqrt(squares_1 / count + eps)  # (d,) standard deviations, biased as in batch norm
    scale_2 = tf.sqrt(squares_2 / count + eps)
    correlation = cross / (count * scale_1[:, None] * scale_2[None, :])  # (d, d) = z_1^T z_2 / m
    on_diagonal = tf.reduce_sum(tf.square(1.0 - tf.linalg.diag_part(correlation)))
    return on_diagonal + tf.constant(weight, dtype) * _off_diagonal_sum_of_squares(correlation)


@keras.saving.register_keras_serializable(package="xmodal_tf")
class BarlowTwinsLoss(ViewLoss):
    """The Barlow Twins objective as a ``ViewLoss``: ``BarlowTwinsLoss()(h1, h2)``.

    Args:
        off_diagonal_weight: lambda, the weight of the redundancy term; None (the default)
            for 1 / d, d the views' width (see ``barlow_twins_loss``).
        eps: the variance floor of the standardisation, a float > 0.
        global_batch: as in ``barlow_twins_loss``.
        name: the loss's name; None for "barlow_twins_loss".

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: a negative or non-finite ``off_diagonal_weight``, or ``eps`` <= 0.
    """

    def __init__(self, off_diagonal_weight=None, eps=1e-5, global_batch=False, name=None):
        self.off_diagonal_weight = _check_weight(off_diagonal_weight, "off_diagonal_weight", allow_none=True)
        self.eps = _check_eps(eps)
        self.global_batch = check_bool(global_batch, "global_batch")
        super().__init__("barlow_twins_loss" if name is None else name)

    def call(self, h1, h2):
        return barlow_twins_loss(
            h1, h2, off_diagonal_weight=self.off_diagonal_weight, eps=self.eps, global_batch=self.global_batch
        )

    def get_config(self) -> dict:
        return {
            "off_diagonal_weight": self.off_diagonal_weight,
            "eps": self.eps,
            "global_batch": self.global_batch,
            "name": self.name,
        }


# ----------------------------------------------------------------------------- VICReg
def vicreg_loss(
    h1,
    h2,
    *,
    invariance_weight=25.0,
    variance_weight=25.0,
    covariance_weight=1.0,
    eps=1e-4,
    global_batch=False,
):
    """The VICReg loss of two views' outputs (see the module docstring).

    Args:
        h1: (m, d) tensor, the first view's outputs; row i is paired with row i of ``h2``.
        h2: (m, d) tensor, the second view's outputs.
        invariance_weight: lambda, the weight of the mean squared error between the views.
        variance_weight: mu, the weight of the hinge on each unit's standard deviation
            (summed over the two views).
        covariance_weight: nu, the weight of the off-diagonal covariances (summed over the
            two views). The defaults 25, 25, 1 are the paper's.
        eps: added to each unit's variance inside the square root, so that a dead unit's
            gradient stays finite.
        global_batch: inside a ``tf.distribute`` replica, the mean squared error, variances
            and covariances of the global batch (sums all-reduced, with gradients); each
            replica then returns the same loss. Outside replicas it changes nothing.

    Returns:
        A scalar tensor, float64 when a view is float64, else float32: 0 when the views
        are equal, every unit's standard deviation is at least 1 and the units are
        uncorrelated.

    Raises:
        ValueError: views that are not rank-2 (batch, features) tensors, different widths
            or static batch sizes, a static batch below 2 rows, or a bad argument value.
        TypeError: an argument of a wrong type.
        tf.errors.InvalidArgumentError: a dynamic batch below 2 rows or of different sizes,
            when the graph runs.
    """
    weights = [
        _check_weight(value, name)
        for value, name in (
            (invariance_weight, "invariance_weight"),
            (variance_weight, "variance_weight"),
            (covariance_weight, "covariance_weight"),
        )
    ]
    eps = _check_eps(eps)
    global_batch = check_bool(global_batch, "global_batch")
    h1, h2, dtype = _checked_pair(h1, h2, "The VICReg loss", global_batch)
    width = int(h1.shape[1])
    count, centred = _centred([h1, h2], global_batch)
    sums = (tf.reduce_sum(tf.square(h1 - h2)), [tf.matmul(c, c, transpose_a=True) for c in centred])
    squared_error, scatters = all_reduce_sum(sums) if global_batch else sums
    invariance = squared_error / (count * width)
    variance = tf.zeros((), dtype)
    covariance = tf.zeros((), dtype)
    for scatter in scatters:
        matrix = scatter / (count - 1.0)  # (d, d) unbiased covariance
        deviation = tf.sqrt(tf.linalg.diag_part(matrix) + eps)
        variance += tf.reduce_mean(tf.nn.relu(1.0 - deviation))
        covariance += _off_diagonal_sum_of_squares(matrix) / width
    invariance_weight, variance_weight, covariance_weight = (tf.constant(weight, dtype) for weight in weights)
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance


@keras.saving.register_keras_serializable(package="xmodal_tf")
class VICRegLoss(ViewLoss):
    """The VICReg objective as a ``ViewLoss``: ``VICRegLoss()(h1, h2)``.

    Args:
        invariance_weight: lambda (see ``vicreg_loss``), a float >= 0.
        variance_weight: mu, a float >= 0.
        covariance_weight: nu, a float >= 0.
        eps: the variance floor inside the standard deviation, a float > 0.
        global_batch: as in ``vicreg_loss``.
        name: the loss's name; None for "vicreg_loss".

    Raises:
        TypeError: an argument of a wrong type.
        ValueError: a negative or non-finite weight, or ``eps`` <= 0.
    """

    def __init__(
        self,
        invariance_weight=25.0,
        variance_weight=25.0,
        covariance_weight=1.0,
        eps=1e-4,
        global_batch=False,
        name=None,
    ):
        self.invariance_weight = _check_weight(invariance_weight, "invariance_weight")
        self.variance_weight = _check_weight(variance_weight, "variance_weight")
        self.covariance_weight = _check_weight(covariance_weight, "covariance_weight")
        self.eps = _check_eps(eps)
        self.global_batch = check_bool(global_batch, "global_batch")
        super().__init__("vicreg_loss" if name is None else name)

    def call(self, h1, h2):
        return vicreg_loss(
            h1,
            h2,
            invariance_weight=self.invariance_weight,
            variance_weight=self.variance_weight,
            covariance_weight=self.covariance_weight,
            eps=self.eps,
            global_batch=self.global_batch,
        )

    def get_config(self) -> dict:
        return {
            "invariance_weight": self.invariance_weight,
            "variance_weight": self.variance_weight,
            "covariance_weight": self.covariance_weight,
            "eps": self.eps,
            "global_batch": self.global_batch,
            "name": self.name,
        }
