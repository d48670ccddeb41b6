"""The one interface of xmodal_tf's objectives: ``ViewLoss``, and ``ConcatenatedViews`` for ``compile``.

Every objective of paired (or multi-view) outputs is a ``ViewLoss``: Deep CCA
(``DeepCCALoss``), Eckart–Young (``EYLoss``), Barlow Twins, VICReg and the contrastive
loss. One is called on the views' outputs and returns a scalar tensor::

    loss = xm.losses.EYLoss()
    value = loss(h1, h2)                 # h1, h2: (batch, d) outputs of paired samples

Each has a config (its constructor's arguments) and is registered with Keras'
serialization, so a model that holds one saves and reloads it. The models take one as
their objective (``DeepCCA(objective=...)``, ``DeepMCCA(objective=...)``,
``DualEncoder(loss=...)``) and train with ``model.fit`` or ``xm.training.Trainer``.
For a plain Keras model, ``ConcatenatedViews`` makes any of them a
``keras.losses.Loss`` on the views' outputs concatenated along the features.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._replicas import in_replica_context
from xmodal_tf._validation import check_positive_int, describe

__all__ = ["ConcatenatedViews", "ViewLoss", "as_view", "checked_views", "step_loss"]


def as_view(h, name: str) -> tf.Tensor:
    """``h`` as a float rank-2 (batch, features) tensor with a known, nonzero width.

    Raises:
        ValueError: another rank, or an unknown or zero number of features.
    """
    h = tf.convert_to_tensor(h)
    if not h.dtype.is_floating:
        h = tf.cast(h, tf.float32)
    rank = h.shape.rank
    if rank is None:
        raise ValueError(f"{name} must be a rank-2 (batch, features) tensor; its rank is unknown.")
    if rank != 2:
        raise ValueError(
            f"{name} must be a rank-2 (batch, features) tensor; got rank {rank}, shape {h.shape}. "
            "Flatten or pool the network output to (batch, features) first."
        )
    if h.shape[1] is None:
        raise ValueError(f"{name} must have a known number of features; got shape {h.shape}.")
    if h.shape[1] == 0:
        raise ValueError(f"{name} has no features: shape {h.shape}.")
    return h


def _listed(values) -> str:
    """[4, 3, 5] -> "4, 3 and 5"."""
    values = [str(value) for value in values]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} and {values[-1]}"


def checked_views(views, objective: str, *, names=None, min_rows: int = 2, global_batch: bool = False):
    """Views paired unit by unit and row by row: checked, with the run-time checks of what is dynamic.

    Args:
        views: the views' outputs, each (m, d) with one d.
        objective: the loss's name for messages, e.g. "The VICReg loss".
        names: one name per view for ``as_view``'s messages; None for "view 1", "view 2" ...
        min_rows: the fewest rows a batch may have.
        global_batch: inside a ``tf.distribute`` replica the statistics are the global batch's,
            so a replica's share is not held to ``min_rows``.

    Returns:
        ``(views, checks)``: the views as float rank-2 tensors, and the ``tf.debugging``
        assertions (equal dynamic batch sizes, at least ``min_rows`` rows) to run first.

    Raises:
        ValueError: a view that is not rank 2, widths or static batch sizes that differ, or a
            static batch below ``min_rows``.
    """
    names = names or [f"view {index + 1}" for index in range(len(views))]
    views = [as_view(view, name) for view, name in zip(views, names)]
    widths = [int(view.shape[1]) for view in views]
    if len(set(widths)) > 1:
        raise ValueError(
            f"{objective} compares output unit i of every view with unit i of the others, so the views need the "
            f"same number of features; got {_listed(widths)}. Give every encoder (or projector) the same output size."
        )
    rows = [view.shape[0] for view in views]
    known = [row for row in rows if row is not None]
    if len(set(known)) > 1:
        raise ValueError(
            f"{objective}: the views must have the same batch size (one row per sample); got {_listed(rows)} rows."
        )
    checks = []
    if None in rows:
        first = tf.shape(views[0])[0]
        checks += [
            tf.debugging.assert_equal(
                tf.shape(view)[0], first, message=f"{objective}: the views must have the same batch size"
            )
            for view in views[1:]
        ]
    if global_batch and in_replica_context():
        return views, checks
    static = known[0] if known else None
    if static is not None and static < min_rows:
        raise ValueError(
            f"{objective} needs batches of at least {min_rows} rows (its statistics are over the batch); got "
            f"{static}. Use a larger batch_size."
        )
    if static is None:
        checks.append(
            tf.debugging.assert_greater_equal(
                tf.shape(views[0])[0], min_rows, message=f"{objective} needs batches of at least {min_rows} rows"
            )
        )
    return views, checks


class ViewLoss:
    """Base of the objectives of two or more views' outputs.

    A subclass sets ``min_views`` / ``max_views`` (None: no limit), implements
    ``call(*views)`` (which checks the views, e.g. with ``as_view``) and ``get_config()`` (its
    constructor's arguments, ``name`` included), and is registered with
    ``keras.saving.register_keras_serializable(package="xmodal_tf")``.

    Args:
        name: the loss's name (used in logs).
    """

    min_views = 2
    max_views: int | None = 2
    #: The fewest rows a batch needs (a covariance needs two).
    min_rows = 2

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string; got {name!r}.")
        self.name = name

    def __call__(self, *views):
        """The scalar loss of the views' outputs, each (batch, d_v) with the same rows."""
        self.check_view_count(len(views))
        return self.call(*views)

    def call(self, *views):
        raise NotImplementedError

    def check_view_count(self, count: int) -> None:
        """ValueError unless ``count`` views are allowed."""
        too_few = count < self.min_views
        too_many = self.max_views is not None and count > self.max_views
        if too_few or too_many:
            allowed = (
                f"exactly {self.min_views}"
                if self.min_views == self.max_views
                else f"at least {self.min_views}"
                if self.max_views is None
                else f"{self.min_views} to {self.max_views}"
            )
            raise ValueError(
                f"{type(self).__name__} takes {allowed} views' outputs, each (batch, features); got {count}."
            )

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


def step_loss(loss: ViewLoss, views, after=()) -> tf.Tensor:
    """``loss(*views)`` inside a model's training step.

    A batch whose size is only known at run time and is below ``loss.min_rows`` (the
    short last batch of an epoch) gives NaN, which the models' step skips, instead of
    failing the run: the loss sees the batch repeated, and its value is replaced. A
    static batch that is too small still raises the loss's ValueError at trace time.
    Replica shares of a global batch (``loss.global_batch`` under a strategy) are passed
    as they are.

    Args:
        loss: a ``ViewLoss``.
        views: the views' outputs, each (m, d_v).
        after: tensors the loss must run after: every replica must issue its
            collectives in one order, so statistics all-reduced before the loss are named here.

    Returns:
        The scalar loss, or NaN for a batch too small.
    """
    with tf.control_dependencies(list(after)):
        static = views[0].shape[0]
        if static is not None or (getattr(loss, "global_batch", False) and in_replica_context()):
            return loss(*views)
        rows = tf.shape(views[0])[0]
        enough = rows >= loss.min_rows
        repeats = tf.where(enough, 1, loss.min_rows)
        value = loss(*(tf.tile(view, [repeats, 1]) for view in views))
        return tf.where(enough, value, tf.constant(np.nan, value.dtype))


@keras.saving.register_keras_serializable(package="xmodal_tf")
class ConcatenatedViews(keras.losses.Loss):
    """A ``ViewLoss`` as a ``keras.losses.Loss`` for ``model.compile(loss=...)``.

    The model's output (``y_pred``) is its views' outputs concatenated along the
    features, (batch, d_1 + ... + d_V); ``y_true`` is ignored (pass any array with one
    row per sample, e.g. zeros)::

        h = keras.layers.Concatenate()([encoder_x(x), encoder_y(y)])      # (batch, 2 d)
        model = keras.Model([x, y], h)
        model.compile("adam", loss=ConcatenatedViews(EYLoss(), view_dims=[d, d]))
        model.fit([x_train, y_train], np.zeros(len(x_train)), batch_size=256)

    Args:
        loss: a ``ViewLoss``.
        view_dims: the widths d_v of the views, in order (their sum must be the output's
            width); an int V splits the output into V equal parts.
        name: the loss's name; None for ``loss.name``.

    Raises:
        TypeError: ``loss`` is not a ``ViewLoss``, or ``view_dims`` is not an int or a
            list of ints.
        ValueError: a width below 1, or a number of views ``loss`` does not take.
    """

    def __init__(self, loss, view_dims=2, name=None, **kwargs):
        if not isinstance(loss, ViewLoss):
            raise TypeError(
                f"ConcatenatedViews wraps an xmodal_tf ViewLoss (e.g. xm.losses.EYLoss()); got {describe(loss)}."
            )
        if isinstance(view_dims, (list, tuple)):
            if not view_dims:
                raise ValueError("view_dims must list at least one width.")
            view_dims = [check_positive_int(d, "view_dims entry") for d in view_dims]
            count = len(view_dims)
        else:
            count = check_positive_int(view_dims, "view_dims")
        loss.check_view_count(count)
        super().__init__(name=name or loss.name, **kwargs)
        self.loss = loss
        self.view_dims = view_dims

    def call(self, y_true, y_pred):
        y_pred = as_view(y_pred, "y_pred (the views' outputs, concatenated)")
        width = int(y_pred.shape[1])
        if isinstance(self.view_dims, int):
            if width % self.view_dims:
                raise ValueError(
                    f"ConcatenatedViews: the output has {width} features, which do not split into "
                    f"{self.view_dims} equal views; give view_dims as a list of the views' widths."
                )
            sizes = [width // self.view_dims] * self.view_dims
        else:
            sizes = self.view_dims
            if sum(sizes) != width:
                raise ValueError(
                    f"ConcatenatedViews: view_dims {sizes} sum to {sum(sizes)}, but the model's output has "
                    f"{width} features; give the width of every view's output, in order."
                )
        return self.loss(*tf.split(y_pred, sizes, axis=1))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "loss": keras.saving.serialize_keras_object(self.loss),
                "view_dims": list(self.view_dims) if isinstance(self.view_dims, list) else self.view_dims,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)
