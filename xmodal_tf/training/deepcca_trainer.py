"""``DeepCCATrainer``: ``xmodal_tf.training.Trainer`` for Deep CCA / DCCAE models.

    from xmodal_tf.training import DeepCCATrainer
    trainer = DeepCCATrainer(model, keras.optimizers.Adam(1e-3), checkpoint_dir="ckpt",
                             logdir="tensorboard_logs/dcca", early_stopping_patience=5)
    history = trainer.fit(train_dataset, epochs=50, validation_data=(x_val, y_val))

It is the general ``Trainer`` (one ``tf.function`` per epoch, strategies, checkpoints
that resume, TensorBoard, early stopping, chief-only side effects) with two
conveniences: ``model`` may be a pair of encoders, wrapped in a default ``DeepCCA``, and
the validation data may be an ``(x, y)`` pair of arrays as well as a dataset.

What it reports (see ``xmodal_tf.models.deepcca``): per epoch ``loss``,
``total_correlation``, ``skipped_batches`` (and ``reconstruction_x`` / ``_y`` for
DCCAE); with validation data ``val_total_correlation``, the top-k canonical
correlations of the encoders' outputs on the whole validation set at once with the
model's ridge, and ``val_correlations``, the list. That is one forward pass over the
validation set and one small CCA: the training objective measured on data the networks
did not see. Its CCA directions are those of the validation set itself (slightly
optimistic for small sets); the paper's protocol is
``model.fit_linear_cca(x_train, y_train).score(x_test, y_test)`` after training. Early
stopping watches ``val_total_correlation`` (larger is better). TensorBoard's
``validation`` run gets ``total_correlation`` and ``correlations/01`` ... ``/10``.
"""

from __future__ import annotations

from xmodal_tf.models.deepcca import DeepCCA
from xmodal_tf.training.trainer import Trainer

__all__ = ["DeepCCATrainer"]


class DeepCCATrainer(Trainer):
    """``Trainer`` for a ``DeepCCA`` model or a pair of encoders (see the module docstring).

    Args: as ``Trainer``; ``model`` is a ``xmodal_tf.models.DeepCCA`` or a pair
    ``(encoder_x, encoder_y)`` wrapped in a default ``DeepCCA``, and ``optimizer`` is
    required (a Keras optimizer created in ``strategy.scope()``, or a name such as "adam").
    """

    def __init__(self, model, optimizer, **kwargs):
        super().__init__(model, optimizer, **kwargs)

    def fit(self, train_dataset, epochs, validation_data=None, initial_epoch=None, **kwargs) -> dict:
        """``Trainer.fit``, refusing batches whose size is known and at or below the
        number of canonical components (their covariances cannot carry k correlations:
        min(m - 1, d) of them come out 1 whatever the data)."""
        self._check_batch_exceeds_components(train_dataset)
        return super().fit(train_dataset, epochs, validation_data, initial_epoch, **kwargs)

    def _check_batch_exceeds_components(self, dataset) -> None:
        import tensorflow as tf

        if not isinstance(dataset, tf.data.Dataset):
            return
        leaves = tf.nest.flatten(dataset.element_spec)
        rows = leaves[0].shape[0] if leaves and leaves[0].shape.rank else None
        k = self.model.k
        if rows is not None and k is not None and rows <= k:
            raise ValueError(
                f"DeepCCATrainer: batches of {rows} rows are at or below n_components={k}, so each "
                "batch's canonical correlations are degenerate (near 1 whatever the data) and the "
                f"networks learn nothing useful; use batches well above {k} rows (e.g. "
                f"batch_size={max(4 * k, 100)}) or fewer components."
            )

    def _as_model(self, model):
        if isinstance(model, (tuple, list)):
            if len(model) != 2:
                raise ValueError(f"Pass a DeepCCA model or a pair of encoders; got {len(model)} models.")
            model = DeepCCA(model[0], model[1])
        if not isinstance(model, DeepCCA):
            raise TypeError(
                f"model must be a xmodal_tf.models.DeepCCA or a pair of encoders; got {type(model).__name__}."
            )
        if not model.built:
            raise ValueError(
                "The DeepCCA model is not built (its encoders' output sizes are unknown); call it "
                "once on a batch, model((x, y)), before creating the trainer."
            )
        return super()._as_model(model)
