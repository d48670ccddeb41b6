"""An explicit ``tf.function`` training loop for Deep CCA / DCCAE.

``DeepCCA`` trains with ``model.fit``; this trainer is the same step in a custom loop,
for users who want the loop in plain sight, a ``tf.distribute`` strategy without
Keras' ``fit``, checkpoints that resume mid-run, and TensorBoard scalars::

    from xmodal_tf.training import DeepCCATrainer
    trainer = DeepCCATrainer(model, keras.optimizers.Adam(1e-3), checkpoint_dir="ckpt",
                             logdir="tensorboard_logs/dcca", early_stopping_patience=5)
    history = trainer.fit(train_dataset, epochs=50, validation_data=val_dataset)

Decisions
---------
* The step: one ``tf.function(jit_compile=False)`` runs a whole epoch, a
  ``tf.while_loop`` over the dataset's iterator that calls ``strategy.run`` on each
  batch. It is traced once per dataset structure (not per epoch), there is no Python
  work and no host transfer per step, and the metrics accumulate in the model's
  Keras metric variables, read once per epoch. The per-batch work is the model's
  ``compute_and_apply_gradients``, the same as ``model.fit``'s ``train_step``.
* Distribution (``strategy=``): the dataset is split with
  ``strategy.experimental_distribute_dataset``; each replica computes the CCA loss on
  its local batch and divides it by ``num_replicas_in_sync`` before differentiating,
  so the summed update is the mean of the replicas' gradients. The reported loss and
  correlation are the replicas' batch values averaged (on-read metric variables).
  Create the model and the optimizer inside ``strategy.scope()``, and batch with
  ``drop_remainder=True`` so that every replica gets a full share of each batch (a
  replica share of fewer than two samples makes the step skipped).
* Held-out correlation (``validation_data``, every ``eval_every`` epochs and after the
  last one): the top-k canonical correlations of the encoders' outputs on the whole
  validation set at once, with the model's ridge (``DeepCCA.held_out_correlations``):
  one forward pass over the validation set plus one small k-dimensional CCA, so it is
  cheap, and it is the training objective measured on data the networks did not see.
  Its CCA directions are those of the validation set itself (slightly optimistic for
  small sets); the paper's protocol (a linear CCA fitted on training outputs, scored
  on test data) is ``model.fit_linear_cca(...).score(...)`` after training.
* Checkpoints (``checkpoint_dir``): a ``tf.train.CheckpointManager`` writes, at the end
  of every epoch, the model (encoders, decoders, the stored linear CCA), the
  optimizer (its step counter ``iterations`` and slots; it is built before restoring),
  the number of completed epochs and the early-stopping state (best value,
  evaluations without improvement). The best weights for early stopping are kept in
  ``checkpoint_dir/best``. A new trainer pointed at the same directory restores the
  latest checkpoint when it is created and ``fit`` continues from the saved epoch.
  Random state is not checkpointed: Keras layers' seed generators are model variables
  (restored), but ``tf.data`` shuffling is not, so a resumed run sees a different
  shuffle order than an uninterrupted one.
* TensorBoard (``logdir``): per epoch, ``logdir/train`` gets ``loss``,
  ``total_correlation``, ``skipped_batches`` (and ``reconstruction_x`` / ``_y`` for
  DCCAE); ``logdir/validation`` gets ``total_correlation`` and the top correlations
  ``correlation/01``, ``correlation/02``, ... (at most 10). The step is the epoch
  number (1 for the first epoch).
* Early stopping (``early_stopping_patience``, needs ``validation_data``): training
  stops after that many evaluations without an improvement of the held-out total
  correlation, and the best weights are restored at the end of ``fit``.
* Non-finite batches are skipped and counted as described in ``xmodal_tf.models.deepcca``.
"""
from __future__ import annotations

import numbers
import os
import time

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf.models.deepcca import DeepCCA

__all__ = ["DeepCCATrainer"]

_MAX_CORRELATION_SCALARS = 10


def _check_positive_int(value, name: str, allow_none: bool = False, minimum: int = 1):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{' or None' if allow_none else ''}; got {value!r}.")
    return int(value)


class DeepCCATrainer:
    """Custom training loop for a ``DeepCCA`` model (see the module docstring).

    Args:
        model: a ``xmodal_tf.models.DeepCCA``, or a pair of encoders ``(encoder_x,
            encoder_y)`` that is wrapped in a default ``DeepCCA``.
        optimizer: a Keras optimizer (created in ``strategy.scope()`` when a strategy
            is used), or a name such as "adam".
        strategy: a ``tf.distribute.Strategy``; None for the default (no distribution).
        checkpoint_dir: where to save a checkpoint after every epoch and resume from.
        logdir: TensorBoard log directory (``train`` and ``validation`` runs inside).
        max_to_keep: how many epoch checkpoints to keep.
        early_stopping_patience: stop after this many evaluations without a better
            held-out total correlation, then restore the best weights; None: no early
            stopping.
        eval_every: evaluate on ``validation_data`` every this many epochs (and after
            the last epoch).
        progress: print one line per epoch.
    """

    def __init__(self, model, optimizer, *, strategy=None, checkpoint_dir=None, logdir=None,
                 max_to_keep=3, early_stopping_patience=None, eval_every=1, progress=True):
        self._explicit_strategy = strategy is not None
        self.strategy = strategy if strategy is not None else tf.distribute.get_strategy()
        if not isinstance(self.strategy, tf.distribute.Strategy):
            raise TypeError(f"strategy must be a tf.distribute.Strategy or None; got {type(strategy).__name__}.")
        with self.strategy.scope():
            self.model = self._as_model(model)
            self.optimizer = self._as_optimizer(optimizer)
            # Build before restoring and before tracing (no variables created in the loop).
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)
        self.max_to_keep = _check_positive_int(max_to_keep, "max_to_keep")
        self.early_stopping_patience = _check_positive_int(
            early_stopping_patience, "early_stopping_patience", allow_none=True)
        self.eval_every = _check_positive_int(eval_every, "eval_every")
        self.progress = bool(progress)
        self.logdir = None if logdir is None else os.fspath(logdir)
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)

        # Loop state that is checkpointed next to the model and optimizer.
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self._best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_total_correlation")
        self._wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="evaluations_without_improvement")
        self._best_weights = None
        self._writers = None
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, epoch=self._epoch,
            best_total_correlation=self._best, evaluations_without_improvement=self._wait)
        self.checkpoint_manager = None
        self._best_manager = None
        self.restored_from = None
        if self.checkpoint_dir is not None:
            self.checkpoint_manager = tf.train.CheckpointManager(
                self.checkpoint, self.checkpoint_dir, max_to_keep=self.max_to_keep,
                checkpoint_name="epoch")
            self._best_manager = tf.train.CheckpointManager(
                tf.train.Checkpoint(model=self.model), os.path.join(self.checkpoint_dir, "best"),
                max_to_keep=1, checkpoint_name="best")
            latest = self.checkpoint_manager.latest_checkpoint
            if latest is not None:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
                self.restored_from = latest
        self._train_epoch = tf.function(self._train_epoch_loop, jit_compile=False)

    # ------------------------------------------------------------------ setup
    def _as_model(self, model) -> DeepCCA:
        if isinstance(model, (tuple, list)):
            if len(model) != 2:
                raise ValueError(f"Pass a DeepCCA model or a pair of encoders; got {len(model)} models.")
            model = DeepCCA(model[0], model[1])
        if not isinstance(model, DeepCCA):
            raise TypeError(
                f"model must be a xmodal_tf.models.DeepCCA or a pair of encoders; got {type(model).__name__}.")
        if not model.built:
            raise ValueError(
                "The DeepCCA model is not built (its encoders' output sizes are unknown); call it "
                "once on a batch, model((x, y)), before creating the trainer.")
        if self._explicit_strategy:
            outside = [v.path for v in model.trainable_variables
                       if not self.strategy.extended.variable_created_in_scope(v.value)]
            if outside:
                raise ValueError(
                    f"The model's variables (e.g. {outside[0]}) were not created under the "
                    "strategy: build the encoders and the DeepCCA model inside `with strategy.scope():`.")
        return model

    def _as_optimizer(self, optimizer):
        if isinstance(optimizer, (str, dict)):
            return keras.optimizers.get(optimizer)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"optimizer must be a keras optimizer or its name; got {type(optimizer).__name__}.")
        owner = getattr(optimizer, "_distribution_strategy", None)
        if owner is not None and owner is not self.strategy:
            raise ValueError(
                "The optimizer was created outside this trainer's strategy; create it inside "
                "`with strategy.scope():` (or pass its name, e.g. 'adam').")
        return optimizer

    # ------------------------------------------------------------------ the loop
    def _replica_step(self, batch):
        self.model.compute_and_apply_gradients(batch, self.optimizer)

    def _train_epoch_loop(self, iterator):
        """All the steps of one epoch, in graph; returns the number of batches run."""
        def condition(steps, optional):
            return optional.has_value()

        def body(steps, optional):
            self.strategy.run(self._replica_step, args=(optional.get_value(),))
            return steps + 1, iterator.get_next_as_optional()

        steps, _ = tf.while_loop(condition, body, (tf.constant(0, tf.int64), iterator.get_next_as_optional()))
        return steps

    @property
    def epoch(self) -> int:
        """Number of completed epochs (restored from a checkpoint when resuming)."""
        return int(self._epoch.numpy())

    @property
    def iterations(self) -> int:
        """Number of optimizer updates applied (skipped batches are not counted)."""
        return int(self.optimizer.iterations.numpy())

    def fit(self, train_dataset, epochs, validation_data=None, initial_epoch=None) -> dict:
        """Train until ``epochs`` epochs are completed in total; returns a history dict.

        Args:
            train_dataset: a ``tf.data.Dataset`` of (x, y) or ((x, y), labels) batches.
            epochs: the epoch to stop at (as in Keras: the total, counting resumed epochs).
            validation_data: optional dataset of the same kind, or an (x, y) pair of
                arrays, for the held-out correlation and early stopping.
            initial_epoch: epoch to start from; None continues from the trainer's
                completed epochs (restored from the checkpoint when resuming).

        Returns:
            {"epoch": [...], "loss": [...], "total_correlation": [...],
             "skipped_batches": [...], "steps": [...], "seconds": [...],
             (DCCAE: "reconstruction_x", "reconstruction_y"), and with validation_data
             "val_total_correlation": [...], "val_correlations": [[...], ...]}; one entry
            per epoch run by this call, NaN / None for epochs without evaluation.
        """
        if not isinstance(train_dataset, tf.data.Dataset):
            raise TypeError(
                "train_dataset must be a tf.data.Dataset yielding (x, y) batches, e.g. from "
                f"xmodal_tf.data.make_dataset((x, y)); got {type(train_dataset).__name__}.")
        epochs = _check_positive_int(epochs, "epochs", minimum=0)
        start = self.epoch if initial_epoch is None else _check_positive_int(initial_epoch, "initial_epoch", minimum=0)
        if self.early_stopping_patience is not None and validation_data is None:
            raise ValueError("early_stopping_patience needs validation_data (the held-out correlation).")
        distributed = self.strategy.experimental_distribute_dataset(train_dataset)
        history = {"epoch": []}
        for epoch in range(start, epochs):
            began = time.perf_counter()
            self.model.reset_metrics()
            iterator = iter(distributed)
            steps = int(self._train_epoch(iterator))
            logs = {metric.name: float(metric.result()) for metric in self.model.metrics}
            logs["steps"] = steps
            evaluate = validation_data is not None and ((epoch + 1) % self.eval_every == 0 or epoch + 1 == epochs)
            stop = False
            if validation_data is not None:
                correlations = self.model.held_out_correlations(validation_data) if evaluate else None
                logs["val_total_correlation"] = float(np.sum(correlations)) if evaluate else float("nan")
                logs["val_correlations"] = correlations.tolist() if evaluate else None
                if evaluate and self.early_stopping_patience is not None:
                    stop = self._early_stopping_update(logs["val_total_correlation"])
            self._epoch.assign(epoch + 1)
            logs["seconds"] = time.perf_counter() - began
            self._write_summaries(epoch + 1, logs)
            if self.checkpoint_manager is not None:
                self.checkpoint_manager.save(checkpoint_number=epoch + 1)
            history["epoch"].append(epoch)
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            if self.progress:
                self._print_progress(epoch, epochs, logs)
            if stop:
                if self.progress:
                    print(f"Early stopping: no better held-out total correlation for "
                          f"{self.early_stopping_patience} evaluations (best {float(self._best.numpy()):.4f}).")
                break
        if self.early_stopping_patience is not None:
            self._restore_best_weights()
        if self._writers is not None:
            for writer in self._writers.values():
                writer.flush()
        return history

    # ------------------------------------------------------------------ early stopping
    def _early_stopping_update(self, value: float) -> bool:
        """Record an evaluation; True when training should stop."""
        if value > float(self._best.numpy()):
            self._best.assign(value)
            self._wait.assign(0)
            self._best_weights = [v.numpy().copy() for v in self.model.weights]
            if self._best_manager is not None:
                self._best_manager.save()
            return False
        self._wait.assign_add(1)
        return int(self._wait.numpy()) >= self.early_stopping_patience

    def _restore_best_weights(self) -> None:
        if self._best_weights is not None:
            for variable, value in zip(self.model.weights, self._best_weights):
                variable.assign(value)
        elif self._best_manager is not None and self._best_manager.latest_checkpoint is not None:
            # Resumed run whose best epoch came before the restart.
            tf.train.Checkpoint(model=self.model).restore(self._best_manager.latest_checkpoint).expect_partial()

    # ------------------------------------------------------------------ reporting
    def _write_summaries(self, step: int, logs: dict) -> None:
        if self.logdir is None:
            return
        if self._writers is None:
            self._writers = {run: tf.summary.create_file_writer(os.path.join(self.logdir, run))
                             for run in ("train", "validation")}
        with self._writers["train"].as_default(step=step):
            for metric in self.model.metrics:
                tf.summary.scalar(metric.name, logs[metric.name])
        if logs.get("val_correlations") is not None:
            with self._writers["validation"].as_default(step=step):
                tf.summary.scalar("total_correlation", logs["val_total_correlation"])
                for index, value in enumerate(logs["val_correlations"][:_MAX_CORRELATION_SCALARS]):
                    tf.summary.scalar(f"correlation/{index + 1:02d}", value)

    def _print_progress(self, epoch: int, epochs: int, logs: dict) -> None:
        parts = [f"Epoch {epoch + 1}/{epochs}", f"{logs['steps']} steps", f"{logs['seconds']:.1f}s"]
        for metric in self.model.metrics:
            value = logs[metric.name]
            digits = 0 if metric.name == "skipped_batches" else 4
            parts.append(f"{metric.name} {value:.{digits}f}")
        if "val_total_correlation" in logs and logs["val_correlations"] is not None:
            parts.append(f"val_total_correlation {logs['val_total_correlation']:.4f}")
        print(" - ".join(parts), flush=True)
