"""``Trainer``: one explicit ``tf.function`` training loop for every xmodal_tf model.

    >>> strategy = xmodal_tf.training.make_strategy("auto")
    >>> with strategy.scope():
    ...     model = xm.models.DualEncoder(image_encoder, text_encoder)
    ...     trainer = xm.training.Trainer(model, keras.optimizers.Adam(1e-3), strategy=strategy,
    ...                                   checkpoint_dir="ckpt", logdir="tensorboard_logs/clip")
    >>> history = trainer.fit(train_dataset, epochs=20, validation_data=val_dataset)

It drives any model whose ``train_step`` / ``test_step`` are Keras' contract: the
models of ``xmodal_tf.models`` (all built on ``CrossModalModel``, whose loss is built in),
the ``ConditionalGAN`` (``optimizer=(g_optimizer, d_optimizer)``), and compiled Keras
models such as the fusion classifiers (``optimizer=None`` keeps the compiled one).

Design notes (the step, precision, strategies, checkpoints and resuming, validation,
TensorBoard): docs/DESIGN.md (section xmodal_tf/training/trainer.py).
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import shutil
import tempfile
import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._validation import check_int, check_number, check_positive_int
from xmodal_tf.precision import (
    apply_precision,
    avoid_slow_cpu_float16,
    check_jit,
    check_mixed_precision,
    inner_optimizer,
    loss_scaled,
    model_precision,
    resolve_jit,
)
from xmodal_tf.training.checkpoints import read_history, remove_temporary, write_history
from xmodal_tf.training.strategies import is_chief

__all__ = ["Trainer"]

_MAX_LIST_SCALARS = 10


def _placeholder(spec):
    """A zero (or empty-string) tensor of ``spec``'s dtype and shape, unknown sizes as 1."""
    shape = [1 if size is None else size for size in spec.shape]
    if spec.dtype == tf.string:
        return tf.fill(shape, "")
    return tf.zeros(shape, spec.dtype)


class Trainer:
    """The explicit training loop.

    One ``tf.function`` per epoch runs the model's ``train_step`` under the strategy;
    the Trainer checkpoints and resumes, validates, stops early and writes TensorBoard
    summaries. Design notes: docs/DESIGN.md (section xmodal_tf/training/trainer.py).

    Args:
        model: an xmodal_tf model, or a compiled ``keras.Model``.
        optimizer: a Keras optimizer or its name (compiles the model with it); for a
            ``ConditionalGAN`` a pair ``(g_optimizer, d_optimizer)`` or a dict with
            those keys; None to keep the optimizer(s) the model was compiled with.
        strategy: a ``tf.distribute.Strategy``; None for the current one.
        checkpoint_dir: where to save checkpoints and resume from.
        checkpoint_every: save a checkpoint every this many epochs (and after the last
            epoch of every ``fit``).
        checkpoint_seconds: and only once this many seconds have passed since the last
            save (a checkpoint of a small model takes about 50 ms, more than its epoch):
            a kill loses at most about this much training.
        callbacks: Keras callbacks for every ``fit`` call, after its own.
        logdir: TensorBoard run directory (``train/`` and ``validation/`` tags).
        max_to_keep: how many epoch checkpoints to keep.
        early_stopping_patience: stop after this many evaluations without improvement of
            ``monitor``, then restore the best weights; None: no early stopping.
        early_stopping_min_delta: an improvement must beat the best ``monitor`` so far by
            more than this (in the monitor's units, >= 0), as in Keras'
            ``EarlyStopping(min_delta=)``; smaller gains neither reset the patience nor
            replace the best weights.
        monitor: ``(log name, "min" | "max")`` or a log name (mode "min", or "max" for
            names containing "correlation" or "accuracy"); None: the model's default.
        eval_every: evaluate on ``validation_data`` every this many epochs (and after
            the last).
        progress: print one line per epoch (chief only).
        mixed_precision: "off", "float16" or "bfloat16" (``xmodal_tf.precision``): the
            model is switched to that compute precision (variables stay float32) and,
            for float16, its optimizer(s) wrapped in a ``LossScaleOptimizer``; None keeps
            the precision the model was built in.
        jit: "auto" (XLA with a GPU, one replica and a model that supports it), "on"
            (XLA, or a ValueError naming why not) or "off". The choice is the model's
            ``jit_compile`` too, so ``model.fit`` does the same.
    """

    def __init__(
        self,
        model,
        optimizer=None,
        *,
        strategy=None,
        checkpoint_dir=None,
        logdir=None,
        max_to_keep=3,
        early_stopping_patience=None,
        early_stopping_min_delta=0.0,
        monitor=None,
        eval_every=1,
        progress=True,
        mixed_precision=None,
        jit="auto",
        checkpoint_every=1,
        checkpoint_seconds=0.0,
        callbacks=None,
    ):
        if mixed_precision is not None:
            check_mixed_precision(mixed_precision)
        self.jit = check_jit(jit)
        self._explicit_strategy = strategy is not None
        self.strategy = strategy if strategy is not None else tf.distribute.get_strategy()
        if not isinstance(self.strategy, tf.distribute.Strategy):
            raise TypeError(f"strategy must be a tf.distribute.Strategy or None; got {type(strategy).__name__}.")
        self.is_chief = is_chief(self.strategy)
        with self.strategy.scope():
            self.model = self._as_model(model)
            if mixed_precision is not None:
                apply_precision(self.model, mixed_precision)
            self.mixed_precision = model_precision(self.model)
            if self.mixed_precision == "float16":
                avoid_slow_cpu_float16()
            self.jit_compile = resolve_jit(self.jit, self.model, self.strategy.num_replicas_in_sync)
            self._compile(optimizer)
            for optimizer_ in self.optimizers.values():
                # Before restoring, and before tracing. (The GAN's compile builds its two
                # optimizers itself, each on its own network.)
                if not optimizer_.built:
                    optimizer_.build(self.model.trainable_variables)
        self.max_to_keep = check_positive_int(max_to_keep, "max_to_keep")
        self.early_stopping_patience = check_positive_int(
            early_stopping_patience, "early_stopping_patience", allow_none=True
        )
        self.early_stopping_min_delta = check_number(
            early_stopping_min_delta,
            "early_stopping_min_delta",
            minimum=0,
            expected="a finite number >= 0 (in the monitored value's units)",
        )
        self.monitor, self.monitor_mode = self._check_monitor(monitor)
        self.eval_every = check_positive_int(eval_every, "eval_every")
        self.checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
        # math.inf is allowed: save at the end of every fit only.
        self.checkpoint_seconds = (
            math.inf
            if checkpoint_seconds == math.inf
            else check_number(
                checkpoint_seconds, "checkpoint_seconds", minimum=0, expected="a number >= 0 (seconds) or math.inf"
            )
        )
        self._last_save = time.perf_counter()
        self.callbacks = list(callbacks or [])
        self.progress = bool(progress) and self.is_chief
        self.logdir = None if logdir is None or not self.is_chief else os.fspath(logdir)
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self._scratch_dir = None  # a non-chief worker's checkpoints go here
        self._remove_scratch = lambda: None

        # Loop state checkpointed next to the model and the optimizers.
        sign = 1.0 if self.monitor_mode == "max" else -1.0
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self._best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_signed_monitor")
        self._sign = sign
        self._wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="evaluations_without_improvement")
        self._best_weights = None
        self._writer = None
        self._validation_keys = None
        # Every epoch's logs ({"epoch": e, ...}) and the fit calls ({"first", "until"}):
        # kept in history.json beside the checkpoints.
        self._epoch_logs, self._calls, self._call_index = [], [], 0
        self._checkpointed = dict(
            model=_ModelWeights(self.model),
            epoch=self._epoch,
            best=self._best,
            evaluations_without_improvement=self._wait,
            random_states=_seed_states(self.model),
            **self._optimizer_state(),
        )
        self.checkpoint = tf.train.Checkpoint(**self._checkpointed)
        self.checkpoint_manager = self._best_manager = None
        self.restored_from = None
        self._write_dir = None
        if self.checkpoint_dir is not None:
            self._open_checkpoints()
        self._train_step, self._test_step = self.model.train_step, self.model.test_step
        if self.jit_compile:  # XLA compiles the step; the loop around it stays a plain graph
            self._train_step = tf.function(self._train_step, jit_compile=True, reduce_retracing=True)
            self._test_step = tf.function(self._test_step, jit_compile=True, reduce_retracing=True)
        self._train_epoch = tf.function(functools.partial(self._epoch_loop, self._train_step), jit_compile=False)
        self._train_steps = tf.function(self._train_steps_loop, jit_compile=False)
        self._test_epoch = tf.function(functools.partial(self._epoch_loop, self._test_step), jit_compile=False)

    # ------------------------------------------------------------------ setup
    def _as_model(self, model):
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"model must be a keras.Model (an xmodal_tf model or a compiled Keras model); "
                f"got {type(model).__name__}."
            )
        if not model.built:
            raise ValueError(
                f"The model {model.name!r} is not built (the sizes of its sub-models are unknown); "
                "call it once on a batch before creating the Trainer."
            )
        if self._explicit_strategy:
            outside = [
                v.path
                for v in model.trainable_variables
                if not self.strategy.extended.variable_created_in_scope(v.value)
            ]
            if outside:
                raise ValueError(
                    f"The model's variables (e.g. {outside[0]}) were not created under the strategy: "
                    "build the model inside `with strategy.scope():`."
                )
        return model

    def _compile(self, optimizer) -> None:
        """Compile the model with ``optimizer`` (or its own), loss-scaled for float16 and
        with the Trainer's ``jit_compile``."""
        model = self.model
        keep = optimizer is None
        if keep:
            if not self.optimizers or any(o is None for o in self.optimizers.values()):
                raise ValueError(
                    f"The model {model.name!r} is not compiled: pass optimizer= to the Trainer "
                    "(or compile the model first)."
                )
            optimizer = self.optimizers.get("optimizer", self.optimizers)
        if hasattr(model, "g_optimizer"):  # the conditional GAN: one optimizer per network
            g_optimizer, d_optimizer = self._gan_optimizers(optimizer)
            arguments = {**(getattr(model, "gan_compile_arguments", None) or {}), "jit_compile": self.jit_compile}
            model.compile(g_optimizer=self._prepared(g_optimizer), d_optimizer=self._prepared(d_optimizer), **arguments)
        elif keep:  # the model's own compile settings (its loss may not be serialisable)
            prepared = self._prepared(optimizer)
            if prepared is not optimizer:
                model.optimizer = prepared  # as Keras' compile itself wraps for mixed_float16
            model.jit_compile = self.jit_compile
            model.train_function = model.test_function = model.predict_function = None
        elif _has_builtin_loss(model):
            model.compile(optimizer=self._prepared(optimizer), jit_compile=self.jit_compile)
        elif model.compiled:
            config = keras.saving.deserialize_keras_object(model.get_compile_config())
            config.update(optimizer=self._prepared(optimizer), jit_compile=self.jit_compile)
            model.compile(**config)
        else:
            raise ValueError(
                f"The model {model.name!r} has no built-in loss and is not compiled: compile it with "
                "its loss first, e.g. model.compile(optimizer, loss=...), then pass optimizer=None."
            )
        for optimizer_ in self.optimizers.values():
            self._checked_optimizer(optimizer_)

    def _prepared(self, optimizer):
        """A checked optimizer, wrapped in (or freed from) a LossScaleOptimizer as the
        model's precision needs."""
        optimizer = self._checked_optimizer(optimizer)
        return optimizer if self.mixed_precision == "mixed" else loss_scaled(optimizer, self.mixed_precision)

    def _gan_optimizers(self, optimizer):
        if isinstance(optimizer, dict):
            unknown = sorted(set(optimizer) - {"g_optimizer", "d_optimizer"})
            if unknown or len(optimizer) != 2:
                raise ValueError(
                    "For a ConditionalGAN pass optimizer={'g_optimizer': ..., 'd_optimizer': ...}; "
                    f"got keys {sorted(optimizer)}."
                )
            return optimizer["g_optimizer"], optimizer["d_optimizer"]
        if isinstance(optimizer, (tuple, list)) and len(optimizer) == 2:
            return tuple(optimizer)
        raise ValueError("A ConditionalGAN trains with two optimizers: pass optimizer=(g_optimizer, d_optimizer).")

    def _checked_optimizer(self, optimizer):
        if isinstance(optimizer, (str, dict)):
            return keras.optimizers.get(optimizer)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"optimizer must be a keras optimizer or its name; got {type(optimizer).__name__}.")
        owner = getattr(optimizer, "_distribution_strategy", None)
        if owner is not None and owner is not self.strategy:
            raise ValueError(
                "The optimizer was created outside this trainer's strategy; create it inside "
                "`with strategy.scope():` (or pass its name, e.g. 'adam')."
            )
        return optimizer

    @property
    def optimizers(self) -> dict:
        """{checkpoint name: optimizer} of the model (``optimizer``, or the GAN's two)."""
        optimizers = getattr(self.model, "training_optimizers", None)
        if optimizers is None:
            optimizers = {"optimizer": getattr(self.model, "optimizer", None)}
        return dict(optimizers)

    def _optimizer_state(self) -> dict:
        """What a checkpoint holds of the optimizers: each inner optimizer under its
        name (the same in every precision, so checkpoints load across precisions) and,
        for a LossScaleOptimizer, its scale and step counter under ``<name>_loss_scale``."""
        state = {}
        for name, optimizer in self.optimizers.items():
            state[name] = inner_optimizer(optimizer)
            if optimizer is not state[name]:
                state[f"{name}_loss_scale"] = tf.train.Checkpoint(
                    scale=optimizer.dynamic_scale.value, steps=optimizer.step_counter.value
                )
        return state

    @property
    def optimizer(self):
        """The model's optimizer (the generator's for a GAN)."""
        optimizers = self.optimizers
        return optimizers.get("optimizer", optimizers.get("g_optimizer"))

    def _check_monitor(self, monitor):
        if monitor is None:
            monitor = getattr(self.model, "default_monitor", ("val_loss", "min"))
        if isinstance(monitor, str):
            larger = any(word in monitor for word in ("correlation", "accuracy", "recall"))
            monitor = (monitor, "max" if larger else "min")
        if (
            not isinstance(monitor, (tuple, list))
            or len(monitor) != 2
            or not isinstance(monitor[0], str)
            or monitor[1] not in ("min", "max")
        ):
            raise ValueError(f"monitor must be a log name or (name, 'min' | 'max'); got {monitor!r}.")
        return monitor[0], monitor[1]

    def restart(self, checkpoint_dir=None) -> None:
        """Start over at epoch 0, early-stopping state and history too.

        For one Trainer reused for several runs of its model, after the caller
        re-initialised the weights: the traced step is kept.

        Args:
            checkpoint_dir: if given, checkpoint there from now on, first restoring its
                latest checkpoint if it has one.
        """
        self._finish()
        self._remove_scratch()
        self._epoch.assign(0)
        self._best.assign(-np.inf)
        self._wait.assign(0)
        self._best_weights = None
        self._epoch_logs, self._calls, self._call_index = [], [], 0
        self.restored_from = None
        self.checkpoint_manager = self._best_manager = self._write_dir = None
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        if self.checkpoint_dir is not None:
            self._open_checkpoints()

    def _open_checkpoints(self) -> None:
        write_dir = self.checkpoint_dir
        if not self.is_chief:
            self._scratch_dir = tempfile.mkdtemp(prefix="xmodal_tf_worker_checkpoints_")
            # Kept while the Trainer lives (every fit saves, with the chief), then removed.
            self._remove_scratch = weakref.finalize(self, shutil.rmtree, self._scratch_dir, True)
            write_dir = self._scratch_dir
        else:
            remove_temporary(write_dir)
        self._write_dir = write_dir
        self.checkpoint_manager = tf.train.CheckpointManager(
            self.checkpoint, write_dir, max_to_keep=self.max_to_keep, checkpoint_name="epoch"
        )
        self._best_manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=_ModelWeights(self.model)),
            os.path.join(write_dir, "best"),
            max_to_keep=1,
            checkpoint_name="best",
        )
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)  # every worker resumes the chief's state
        if latest is not None:
            self._restore(latest)
            self.restored_from = latest
            self._calls, self._epoch_logs = read_history(self.checkpoint_dir, self.epoch)

    def _restore(self, path: str) -> None:
        """Restore the checkpoint at ``path``; one saved without loss scaling (another
        precision) leaves this run's loss scale at its initial value."""
        saved = {key.split("/")[0] for key in tf.train.load_checkpoint(path).get_variable_to_shape_map()}
        parts = {
            name: part for name, part in self._checkpointed.items() if not name.endswith("_loss_scale") or name in saved
        }
        tf.train.Checkpoint(**parts).restore(path).assert_existing_objects_matched()

    # ------------------------------------------------------------------ the loops
    def _epoch_loop(self, step, iterator):
        """``step`` (the model's train or test step) on every batch of ``iterator``, in
        graph; returns the number of batches run."""

        def body(steps, optional):
            self.strategy.run(step, args=(optional.get_value(),))
            return steps + 1, iterator.get_next_as_optional()

        steps, _ = tf.while_loop(
            lambda steps, optional: optional.has_value(),
            body,
            (tf.constant(0, tf.int64), iterator.get_next_as_optional()),
        )
        return steps

    def _train_steps_loop(self, iterator, steps):
        """``steps`` steps from an iterator that runs on across epochs, in graph. Only the
        batches used are fetched, so none is lost between epochs."""
        for _ in tf.range(steps):
            self.strategy.run(self._train_step, args=(next(iterator),))
        return steps

    @property
    def epoch(self) -> int:
        """Number of completed epochs (restored from a checkpoint when resuming)."""
        return int(self._epoch.numpy())

    @property
    def train_seconds(self) -> float:
        """Seconds spent in the epochs trained so far, those before a restart included."""
        return float(sum(logs.get("seconds", 0.0) for logs in self._epoch_logs))

    @property
    def history(self) -> dict:
        """The logs of every epoch trained so far (before a restart too), as ``fit`` returns them."""
        return _as_history(self._epoch_logs)

    @property
    def iterations(self) -> int:
        """Number of optimizer updates applied (skipped batches are not counted)."""
        return int(self.optimizer.iterations.numpy())

    def fit(
        self, train_dataset, epochs, validation_data=None, initial_epoch=None, *, steps_per_epoch=None, callbacks=None
    ) -> dict:
        """Train until ``epochs`` epochs are completed in total; returns a history dict.

        Args:
            train_dataset: a ``tf.data.Dataset`` of global batches, in the form the
                model's ``train_step`` takes; or a function ``epoch -> tf.data.Dataset``
                called for every epoch (exact resumption whatever the pipeline draws).
            epochs: the epoch to stop at (as in Keras: the total, counting resumed epochs).
            validation_data: held-out data for ``val_`` logs and early stopping: a
                dataset like ``train_dataset`` (or whatever the model's
                ``held_out_logs`` takes, e.g. an (x, y) pair for DeepCCA).
            initial_epoch: epoch to start from; None continues from the completed epochs.
            steps_per_epoch: None: an epoch is one pass over ``train_dataset``. An int:
                an epoch is that many batches of ONE iterator that runs on across epochs
                (as in Keras; for a repeated dataset), ending early if it runs out.
            callbacks: Keras callbacks; they get ``on_train_begin`` / ``on_epoch_begin``
                / ``on_epoch_end`` (with this epoch's logs) / ``on_train_end``, on the
                chief only (batch-level hooks are not called: the epoch runs in graph).

        Returns:
            {"epoch": [...], one list per metric, "steps": [...], "seconds": [...],
            and the ``val_`` logs}: one entry per epoch of this call, those trained
            before a restart included (NaN / None for epochs without evaluation).
        """
        per_epoch = callable(train_dataset) and not isinstance(train_dataset, tf.data.Dataset)
        if not per_epoch and not isinstance(train_dataset, tf.data.Dataset):
            raise TypeError(
                "train_dataset must be a tf.data.Dataset of batches, e.g. from "
                f"xmodal_tf.data.make_dataset(...), or a function epoch -> dataset; got "
                f"{type(train_dataset).__name__}."
            )
        epochs = check_int(epochs, "epochs", minimum=0)
        start = self.epoch if initial_epoch is None else check_int(initial_epoch, "initial_epoch", minimum=0)
        if self.early_stopping_patience is not None and validation_data is None:
            raise ValueError("early_stopping_patience needs validation_data (the monitored value is held out).")
        steps_per_epoch = check_positive_int(steps_per_epoch, "steps_per_epoch", allow_none=True)
        if per_epoch and steps_per_epoch is not None:
            raise TypeError(
                "steps_per_epoch runs one iterator across epochs: pass a tf.data.Dataset, not a function of the epoch."
            )
        first = self._begin_call(start, epochs, explicit=initial_epoch is not None)
        if self._stopped_early():
            start = max(start, epochs)  # a resumed run that had stopped early: nothing to train
        datasets = self._epoch_datasets(train_dataset, per_epoch, start, first, epochs, steps_per_epoch)
        callbacks = keras.callbacks.CallbackList(
            [*(callbacks or []), *self.callbacks] if self.is_chief else None,
            model=self.model,
            epochs=epochs,
            steps=steps_per_epoch,
        )
        callbacks.on_train_begin()
        try:
            for epoch in range(start, epochs):
                callbacks.on_epoch_begin(epoch)
                logs, stop = self._run_epoch(datasets(epoch), steps_per_epoch, epoch, epochs, validation_data)
                callbacks.on_epoch_end(epoch, logs)
                if stop or getattr(self.model, "stop_training", False):
                    if self.progress:
                        print(
                            f"Early stopping: no better {self.monitor} for {self.early_stopping_patience} "
                            f"evaluations (best {self._sign * float(self._best.numpy()):.4f}).",
                            flush=True,
                        )
                    break
            if self.early_stopping_patience is not None:
                self._restore_best_weights()
            history = _as_history([logs for logs in self._epoch_logs if first <= logs["epoch"] < epochs])
            callbacks.on_train_end(history)
        finally:
            self._finish()
        return history

    def _begin_call(self, start: int, epochs: int, explicit: bool) -> int:
        """The first epoch of this ``fit`` call: that of the same call (the same place
        among the Trainer's calls, the same ``epochs``) before a restart, else ``start``."""
        index = self._call_index
        self._call_index += 1
        saved = self._calls[index] if index < len(self._calls) else None
        if saved is not None and not explicit and saved["until"] == epochs and saved["first"] <= start:
            return int(saved["first"])
        del self._calls[index:]
        self._calls.append({"first": start, "until": epochs})
        return start

    def _stopped_early(self) -> bool:
        return self.early_stopping_patience is not None and int(self._wait.numpy()) >= self.early_stopping_patience

    def _epoch_datasets(self, train_dataset, per_epoch: bool, start: int, first: int, epochs: int, steps_per_epoch):
        """``epoch -> iterator`` of distributed batches, positioned where the
        uninterrupted call would be at ``start`` (see docs/DESIGN.md, section
        xmodal_tf/training/trainer.py)."""
        if start >= epochs:
            return None
        dataset = train_dataset(start) if per_epoch else train_dataset
        if not isinstance(dataset, tf.data.Dataset):
            raise TypeError(f"train_dataset({start}) must return a tf.data.Dataset; got {type(dataset).__name__}.")
        self._check_global_batch(dataset, "train_dataset")
        self._build_compiled_state(dataset)
        if per_epoch:

            def for_epoch(epoch):
                data = dataset if epoch == start else train_dataset(epoch)
                return iter(self.strategy.experimental_distribute_dataset(data))

            return for_epoch
        if steps_per_epoch is not None:
            if start > first:  # the batches the completed epochs of this call used
                dataset = dataset.skip((start - first) * steps_per_epoch)
            batches = iter(self.strategy.experimental_distribute_dataset(dataset))
            return lambda epoch: batches
        distributed = self.strategy.experimental_distribute_dataset(dataset)
        for _ in range(start - first):  # each new iterator advances a seeded shuffle's order
            iter(distributed)
        return lambda epoch: iter(distributed)

    def _run_epoch(self, iterator, steps_per_epoch, epoch: int, epochs: int, validation_data):
        began = time.perf_counter()
        self.model.reset_metrics()
        try:
            if steps_per_epoch is None:
                steps = int(self._train_epoch(iterator))
            else:
                steps = int(self._train_steps(iterator, tf.constant(steps_per_epoch, tf.int64)))
        except tf.errors.OutOfRangeError:
            raise ValueError(
                f"train_dataset ran out of batches within an epoch of steps_per_epoch={steps_per_epoch}; "
                "repeat it (dataset.repeat()) or leave steps_per_epoch=None."
            ) from None
        logs = {name: _as_python(value) for name, value in self.model.get_metrics_result().items()}
        logs["steps"] = steps
        stop = False
        if validation_data is not None:
            evaluate = (epoch + 1) % self.eval_every == 0 or epoch + 1 == epochs
            held_out = self.evaluate(validation_data) if evaluate else None
            logs.update(held_out if evaluate else self._empty_held_out_logs())
            if evaluate and self.early_stopping_patience is not None:
                stop = self._early_stopping_update(logs)
        self._epoch.assign(epoch + 1)
        logs["seconds"] = time.perf_counter() - began
        self._write_summaries(epoch + 1, logs)
        self._epoch_logs = [entry for entry in self._epoch_logs if entry["epoch"] < epoch]
        self._epoch_logs.append({"epoch": epoch, **logs})
        due = (
            epoch + 1
        ) % self.checkpoint_every == 0 and time.perf_counter() - self._last_save >= self.checkpoint_seconds
        if self.checkpoint_manager is not None and (due or epoch + 1 == epochs or stop):
            # The history first: read back, it is cut to the epochs of the checkpoint.
            write_history(self._write_dir, self._calls, self._epoch_logs)
            self.checkpoint_manager.save(checkpoint_number=epoch + 1)
            self._last_save = time.perf_counter()
        if self.progress:
            self._print_progress(epoch, epochs, logs)
        return logs, stop

    def evaluate(self, validation_data) -> dict:
        """The ``val_`` logs of ``validation_data``.

        The model's own ``held_out_logs(data)`` when it has one (DeepCCA: the held-out
        canonical correlations), else its ``test_step`` over the dataset (``val_`` +
        each metric).

        Args:
            validation_data: whatever the model's ``held_out_logs`` takes, else a
                ``tf.data.Dataset`` of batches like the training data.

        Returns:
            A dict of ``val_`` logs.

        Raises:
            TypeError: ``validation_data`` is not a dataset and the model has no
                ``held_out_logs``.
        """
        held_out = getattr(self.model, "held_out_logs", None)
        if held_out is not None:
            return held_out(validation_data)
        if not isinstance(validation_data, tf.data.Dataset):
            raise TypeError(
                "validation_data must be a tf.data.Dataset of batches like train_dataset; got "
                f"{type(validation_data).__name__}."
            )
        self._check_global_batch(validation_data, "validation_data")
        self.model.reset_metrics()
        self._test_epoch(iter(self.strategy.experimental_distribute_dataset(validation_data)))
        logs = {f"val_{name}": _as_python(value) for name, value in self.model.get_metrics_result().items()}
        self.model.reset_metrics()
        self._validation_keys = list(logs)
        return logs

    def _empty_held_out_logs(self) -> dict:
        """Placeholders for an epoch without evaluation: NaN (None for list values)."""
        held_out = getattr(self.model, "held_out_logs", None)
        if held_out is not None:
            return held_out(None)
        return {key: float("nan") for key in self._validation_keys or [self.monitor]}

    def _check_global_batch(self, dataset, what: str) -> None:
        replicas = self.strategy.num_replicas_in_sync
        if replicas <= 1 or not isinstance(dataset, tf.data.Dataset):
            return
        leaves = tf.nest.flatten(dataset.element_spec)
        rows = leaves[0].shape[0] if leaves and leaves[0].shape.rank else None
        if rows is not None and rows % replicas:
            lower = max(replicas, rows - rows % replicas)
            raise ValueError(
                f"{what}: a global batch of {rows} rows does not split evenly over {replicas} replicas; "
                f"use a multiple of {replicas} (e.g. {lower}) with drop_remainder=True."
            )

    def _build_compiled_state(self, dataset) -> None:
        """Build a compiled Keras model's loss and metric containers from one batch,
        outside the traced loop (variables must not be created inside it)."""
        if _has_builtin_loss(self.model) or getattr(self.model, "_compile_loss", None) is None:
            return
        if self.model._compile_loss.built:
            return
        # A placeholder batch of the dataset's structure: no element is drawn, so the
        # data's shuffle order and pipeline are untouched.
        batch = keras.tree.map_structure(_placeholder, dataset.element_spec)
        with self.strategy.scope():
            self.model._symbolic_build(data_batch=batch)

    # ------------------------------------------------------------------ early stopping
    def _early_stopping_update(self, logs: dict) -> bool:
        """Record an evaluation; True when training should stop."""
        if self.monitor not in logs:
            raise ValueError(
                f"monitor {self.monitor!r} is not among the held-out logs {sorted(logs)}; pass "
                "monitor= with one of them."
            )
        value = self._sign * float(logs[self.monitor])
        if math.isfinite(value) and value > float(self._best.numpy()) + self.early_stopping_min_delta:
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
            return
        best_dir = None if self.checkpoint_dir is None else os.path.join(self.checkpoint_dir, "best")
        latest = None if best_dir is None else tf.train.latest_checkpoint(best_dir)
        if latest is not None:  # a resumed run whose best epoch came before the restart
            tf.train.Checkpoint(model=_ModelWeights(self.model)).restore(latest).expect_partial()

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    # ------------------------------------------------------------------ reporting
    def _write_summaries(self, step: int, logs: dict) -> None:
        """The epoch's logs as ``train/<name>`` and ``validation/<name>`` (a list such as
        ``val_correlations`` as ``validation_details/correlations_01`` ...), at step
        ``epoch + 1``, in one run: ``logdir``."""
        if self.logdir is None:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.logdir)
        with self._writer.as_default(step=step):
            for name, value in logs.items():
                if name in ("steps", "seconds"):
                    continue
                split, key = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
                if isinstance(value, (list, tuple)):
                    for index, item in enumerate(value[:_MAX_LIST_SCALARS]):
                        tf.summary.scalar(f"{split}_details/{key}_{index + 1:02d}", item)
                elif _is_number(value) and (split == "train" or math.isfinite(value)):  # (NaN: not evaluated)
                    tf.summary.scalar(f"{split}/{key}", value)

    def _print_progress(self, epoch: int, epochs: int, logs: dict) -> None:
        parts = [f"Epoch {epoch + 1}/{epochs}", f"{logs['steps']} steps", f"{logs['seconds']:.1f}s"]
        for name, value in logs.items():
            if name in ("steps", "seconds") or not _is_number(value) or not math.isfinite(value):
                continue
            parts.append(f"{name} {value:.{0 if name == 'skipped_batches' else 4}f}")
        print(" - ".join(parts), flush=True)


class _ModelWeights(tf.__internal__.tracking.Trackable):
    """A model's weights as a checkpoint sees them: every variable of ``model.weights``
    (trainable or not), keyed by its position, which is stable for one architecture.

    Not the model's own object graph: Keras 3 keeps sub-models held in dicts (the
    autoencoder's encoders and decoders) out of it, so a checkpoint of the model held
    only a few of its weights. Nor its optimizers: the Trainer checkpoints them itself,
    each unwrapped from any LossScaleOptimizer (``Trainer._optimizer_state``), so that a
    checkpoint loads across precisions.
    """

    def __init__(self, model):
        self._model = model

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        return {f"{index:04d}": variable.value for index, variable in enumerate(self._model.weights)}


def _seed_states(model) -> dict:
    """{key: state variable} of every ``keras.random.SeedGenerator`` in the model, keyed
    by the layer's position and name (stable for one architecture)."""
    states = {}
    for index, layer in enumerate(model._flatten_layers(include_self=True, recursive=True)):
        for number, generator in enumerate(getattr(layer, "_seed_generators", [])):
            states[f"{index}_{layer.name}_{number}"] = generator.state.value
    return states


def _has_builtin_loss(model) -> bool:
    from xmodal_tf.models.base import CrossModalModel

    return isinstance(model, CrossModalModel) and not hasattr(model, "g_optimizer")


def _as_history(epoch_logs: list) -> dict:
    """[{"epoch": e, name: value, ...}, ...] as {"epoch": [...], name: [...], ...}; a name
    missing from an epoch's logs is None there."""
    names = ["epoch"]
    for logs in epoch_logs:
        names.extend(name for name in logs if name not in names)
    return {name: [logs.get(name) for logs in epoch_logs] for name in names}


def _as_python(value):
    value = np.asarray(value)
    return float(value) if value.size == 1 else value.tolist()


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
