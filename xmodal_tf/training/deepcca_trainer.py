"""``DeepCCATrainer``: ``xmodal_tf.training.Trainer`` for Deep CCA / DCCAE models.

    from xmodal_tf.training import DeepCCATrainer
    trainer = DeepCCATrainer(model, keras.optimizers.Adam(1e-3), checkpoint_dir="ckpt",
                             logdir="tensorboard_logs/dcca", early_stopping_patience=5)
    history = trainer.fit(train_dataset, epochs=50, validation_data=(x_val, y_val))

It is the general ``Trainer`` with two conveniences: ``model`` may be a pair of
encoders, wrapped in a default ``DeepCCA``, and the validation data may be an ``(x, y)``
pair of arrays as well as a dataset.

Design notes (what it reports): docs/DESIGN.md (section xmodal_tf/training/deepcca_trainer.py).
"""

from __future__ import annotations

from xmodal_tf.models.deepcca import DeepCCA
from xmodal_tf.training.trainer import Trainer

__all__ = ["DeepCCATrainer"]


class DeepCCATrainer(Trainer):
    """``Trainer`` for a ``DeepCCA`` model or a pair of encoders.

    Per epoch it reports ``loss``, ``total_correlation``, ``skipped_batches`` (and
    ``reconstruction_x`` / ``_y`` for DCCAE); with validation data
    ``val_total_correlation`` (the top-k canonical correlations of the encoders' outputs
    on the whole validation set, with the model's ridge), which early stopping watches
    (larger is better), and ``val_correlations``, the list.

    Args:
        model: a ``xmodal_tf.models.DeepCCA``, or a pair ``(encoder_x, encoder_y)``
            wrapped in a default ``DeepCCA``.
        optimizer: required: a Keras optimizer created in ``strategy.scope()``, or a
            name such as "adam".
        **kwargs: the other arguments of ``Trainer``.
    """

    def __init__(self, model, optimizer, **kwargs):
        super().__init__(model, optimizer, **kwargs)

    def fit(self, train_dataset, epochs, validation_data=None, initial_epoch=None, **kwargs) -> dict:
        """``Trainer.fit``, refusing batches too small for the canonical components.

        With a whitened objective ("trace" / "squared"), a batch whose size is known and
        at or below the number of canonical components is refused: its covariances cannot
        carry k correlations (min(m - 1, d) of them come out 1 whatever the data).

        Raises:
            ValueError: the dataset's batches are at or below ``n_components`` rows.
        """
        self._check_batch_exceeds_components(train_dataset)
        return super().fit(train_dataset, epochs, validation_data, initial_epoch, **kwargs)

    def _check_batch_exceeds_components(self, dataset) -> None:
        import tensorflow as tf

        if not isinstance(dataset, tf.data.Dataset):
            return
        leaves = tf.nest.flatten(dataset.element_spec)
        rows = leaves[0].shape[0] if leaves and leaves[0].shape.rank else None
        k = self.model.k
        if self.model.whitened_objective and rows is not None and k is not None and rows <= k:
            raise ValueError(
                f"DeepCCATrainer: batches of {rows} rows are at or below n_components={k}, so each "
                "batch's canonical correlations are degenerate (near 1 whatever the data) and the "
                f"networks learn nothing useful; use batches well above {k} rows (e.g. "
                f"batch_size={max(4 * k, 100)}), fewer components, or objective='ey' (no whitening, "
                "made for small batches)."
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
