"""The base of xmodal_tf's models: one training step, under any ``tf.distribute`` strategy.

``CrossModalModel`` is the base class: a subclass declares what a batch is
(``unpack_batch``) and what it costs (``batch_loss``), and the base runs the step that
``model.fit`` and ``xmodal_tf.training.Trainer`` share, the metric trackers, skipping of
non-finite batches, the compile guard and saving. ``MultiWorkerFitMixin`` makes ``fit`` /
``evaluate`` work under ``MultiWorkerMirroredStrategy`` for the Keras versions in
``SUPPORTED_KERAS``.

The TensorFlow-side helpers every model module shares live here too: ``as_input_tensor``,
``num_rows``, ``split_pair``, ``check_layer``, ``check_output_shape``,
``static_output_width``, ``declared_inputs``, ``deserialize_entries`` and ``to_numpy``.

Design notes: docs/DESIGN.md (section xmodal_tf/models/base.py).
"""

from __future__ import annotations

import copy

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._replicas import all_reduce_sum
from xmodal_tf._validation import check_finite_rows, describe

__all__ = [
    "CrossModalModel",
    "MultiWorkerFitMixin",
    "SUPPORTED_KERAS",
    "as_input_tensor",
    "check_finite_rows",
    "check_layer",
    "check_output_shape",
    "declared_inputs",
    "deserialize_entries",
    "is_multi_worker",
    "num_rows",
    "split_pair",
    "static_output_width",
    "to_numpy",
]

# [lowest, highest) Keras versions whose trainer internals MultiWorkerFitMixin overrides.
SUPPORTED_KERAS = ((3, 15), (3, 16))


def is_multi_worker(strategy) -> bool:
    """True for a ``MultiWorkerMirroredStrategy`` that really spans several workers."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    in_multi_worker_mode = getattr(strategy.extended, "_in_multi_worker_mode", None)
    return bool(in_multi_worker_mode()) if in_multi_worker_mode is not None else True


def to_numpy(tensor) -> np.ndarray:
    """A model output as NumPy.

    float16 and bfloat16 (mixed precision) become float32, which NumPy, SciPy and
    scikit-learn compute in.
    """
    array = np.asarray(tensor)
    if array.dtype == np.float16 or array.dtype.name == "bfloat16":
        return array.astype(np.float32)
    return array


def as_input_tensor(values) -> tf.Tensor:
    """A batch as a tensor, as Keras' ``fit`` would feed it.

    float64 NumPy data becomes float32, and str / bytes arrays and lists become
    ``tf.string``.
    """
    if isinstance(values, (tf.Tensor, tf.Variable)):
        return tf.convert_to_tensor(values)
    array = np.asarray(values)
    if array.dtype.kind in "USO":
        return tf.constant(array, dtype=tf.string)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return tf.convert_to_tensor(array)


def num_rows(values) -> int:
    """The number of rows (first-axis length) of an array, tensor or list."""
    shape = getattr(values, "shape", None)
    if shape is not None and len(shape):
        return int(shape[0])
    return len(values)


def check_layer(value, name: str, hint: str = ""):
    """Check that ``value`` is a Keras layer or model.

    Args:
        value: the object to check.
        name: its name, for the message.
        hint: text that follows the expected type in the message (e.g. " taking [z, conditions]").

    Returns:
        ``value``.

    Raises:
        TypeError: ``value`` is not a ``keras.layers.Layer``.
    """
    if not isinstance(value, keras.layers.Layer):
        raise TypeError(f"{name} must be a keras.Model or keras.layers.Layer{hint}; got {describe(value)}.")
    return value


def check_output_shape(shape, name: str) -> int:
    """The number of features of an output shape (batch, features).

    Args:
        shape: the output shape.
        name: the model's name, for the message.

    Returns:
        The number of features.

    Raises:
        ValueError: the shape has another rank or an unknown number of features.
    """
    shape = tuple(shape)
    if len(shape) != 2 or shape[1] is None:
        raise ValueError(
            f"{name} must output a 2-D (batch, features) tensor with a known number of features; its output "
            f"has shape {shape}. Flatten or pool it to (batch, features), e.g. with keras.layers.Flatten() or "
            "GlobalAveragePooling."
        )
    return int(shape[1])


def declared_inputs(model) -> list | None:
    """A model's declared input tensors (functional and built Sequential models).

    Returns:
        The list of input tensors, or None when they are not known before a call (a
        subclassed model).
    """
    return _declared(model, "inputs")


def static_output_width(model, name: str) -> int | None:
    """The number of features of a model's one declared output.

    Args:
        model: a functional or built Sequential model (or any other model).
        name: the model's name, for messages.

    Returns:
        The number of features, or None when it is not known before a call.

    Raises:
        ValueError: several outputs, or an output that is not (batch, features).
    """
    outputs = _declared(model, "outputs")
    if outputs is None:
        return None
    if len(outputs) != 1:
        raise ValueError(f"{name} must have a single output of shape (batch, features); it has {len(outputs)} outputs.")
    return check_output_shape(outputs[0].shape, name)


def _declared(model, attribute: str) -> list | None:
    try:
        tensors = getattr(model, attribute)
    except (AttributeError, ValueError):  # Keras raises these for models not called yet
        return None
    return list(tensors) if tensors else None


def split_pair(data, keys: tuple, where: str, kind: str) -> tuple:
    """The two halves of a paired batch.

    The batch is ``(a, b)``, a dict with the two ``keys``, or either followed by labels
    (and sample weights), as ``fit`` and datasets give them.

    Args:
        data: the batch.
        keys: the names of the halves, e.g. ("x", "y").
        where: the method, for messages, e.g. "DeepCCA.encode".
        kind: what the halves are, for messages, e.g. "views".

    Returns:
        The two halves.

    Raises:
        ValueError: any other structure, or a dict without the keys.
    """
    first_key, second_key = keys
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict):
        if first_key in data and second_key in data:
            return data[first_key], data[second_key]
        raise ValueError(
            f"{where}: a dict of {kind} needs the keys {first_key!r} and {second_key!r}; got keys "
            f"{sorted(map(str, data))}."
        )
    if isinstance(data, (tuple, list)) and data:
        first = data[0]
        if isinstance(first, (tuple, list)):  # ((a, b), labels[, sample_weight])
            if len(first) == 2:
                return first[0], first[1]
        elif len(data) == 2:
            return data[0], data[1]
    pair = f"({first_key}, {second_key})"
    raise ValueError(
        f"{where} expects paired {kind}: a pair {pair}, a dict {{'{first_key}': {first_key}, "
        f"'{second_key}': {second_key}}}, or ({pair}, labels); got {describe(data)}."
    )


def deserialize_entries(config: dict, keys, custom_objects=None) -> dict:
    """A copy of ``config`` with its serialized sub-models rebuilt, for a ``from_config``.

    A deep copy, because Keras' deserialization empties the dicts it reads, and the
    caller's config must stay as it was.

    Args:
        config: the model's config.
        keys: the entries that hold serialized sub-models (an entry that is None stays None).
        custom_objects: as in ``keras.saving.deserialize_keras_object``.

    Returns:
        The new config.
    """
    config = copy.deepcopy(config)
    for key in keys:
        if config.get(key) is not None:
            config[key] = keras.saving.deserialize_keras_object(config[key], custom_objects=custom_objects)
    return config


def _first_local_value(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


class MultiWorkerFitMixin:
    """``model.fit`` and ``evaluate`` under ``MultiWorkerMirroredStrategy``.

    Keras 3.15's TensorFlow trainer fails there twice: ``_maybe_symbolic_build``
    all-reduces the first (per-replica) input batch only to learn its shapes, and
    ``reduce_per_replica`` reduces the scalar logs along an axis 0 they do not have.
    The mixin builds from this worker's local batch instead, and hands Keras logs of
    shape (1,), which that reduction averages over replicas to scalars. Elsewhere
    (one worker, MirroredStrategy, no strategy) Keras' own code runs unchanged.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or not is_multi_worker(strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        if iterator is not None:
            for _, _, batches in iterator:  # as Keras does: the first batch gives the shapes
                data_batch = keras.tree.map_structure(_first_local_value, next(batches))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def keras_reducible_logs(self, logs: dict) -> dict:
        """``logs`` as Keras' multi-worker reduction needs them (shape (1,) per value)."""
        if not is_multi_worker(tf.distribute.get_strategy()):
            return logs
        return {key: tf.reshape(value, [1]) for key, value in logs.items()}

    def train_step(self, data):
        return self.keras_reducible_logs(super().train_step(data))

    def test_step(self, data):
        return self.keras_reducible_logs(super().test_step(data))


class CrossModalModel(MultiWorkerFitMixin, keras.Model):
    """Base class of xmodal_tf's models with a built-in loss.

    Subclasses implement ``unpack_batch(data, where) -> tuple`` and
    ``batch_loss(*inputs, training=False) -> dict`` (``"loss"`` plus named scalar
    terms), call ``create_trackers(names)`` in ``__init__``, and may override
    ``build_from_batch(*inputs)``, ``tracker_weight(*inputs)`` and the class settings
    below::

        class MyModel(CrossModalModel):
            def __init__(self, ...):
                super().__init__(name=...)
                ...
                self.create_trackers(("loss", "term_a"))       # the keys batch_loss reports
            def unpack_batch(self, data, where):              # -> tuple of inputs
                return data["a"], data["b"]
            def batch_loss(self, a, b, training=False):       # -> {"loss": scalar, "term_a": scalar}
                ...

    What the base does with them (distribution, skipped batches, saving) is described
    in docs/DESIGN.md (section xmodal_tf/models/base.py).
    """

    #: Skip (and count) steps whose loss or gradients are not finite.
    skip_non_finite_batches = False
    #: ``compile``'s default for ``jit_compile``.
    default_jit_compile = "auto"
    #: The log an early-stopping Trainer watches by default, and whether larger is better.
    default_monitor = ("val_loss", "min")
    #: Key under which ``self.seed_generator``'s state is saved with the weights.
    seed_state_key = None

    # ------------------------------------------------------------------ trackers
    def create_trackers(self, names) -> None:
        """Create one ``keras.metrics.Mean`` per name reported by ``batch_loss``.

        A ``skipped_batches`` Sum is added when non-finite batches are skipped.

        Args:
            names: the names of the values ``batch_loss`` reports.
        """
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}
        if self.skip_non_finite_batches:
            self._trackers["skipped_batches"] = keras.metrics.Sum(name="skipped_batches")

    @property
    def metrics(self):
        return list(getattr(self, "_trackers", {}).values())

    def metric_results(self) -> dict:
        return {metric.name: metric.result() for metric in self.metrics}

    def tracker_weight(self, *inputs):
        """The weight of one batch in the epoch averages (default: 1 per batch)."""
        return tf.constant(1.0)

    def update_trackers(self, results: dict, inputs, finite=None, count_skip=True) -> None:
        weight = tf.cast(self.tracker_weight(*inputs), tf.float32)
        if finite is not None:
            weight = weight * tf.cast(finite, tf.float32)
        for name, tracker in self._trackers.items():
            if name == "skipped_batches":
                skipped = 0.0 if finite is None else 1.0 - tf.cast(finite, tf.float32)
                tracker.update_state(skipped * tf.cast(count_skip, tf.float32))
            elif name in results:
                value = tf.cast(results[name], tf.float32)
                if finite is not None:
                    value = tf.where(finite, value, tf.zeros_like(value))
                if value.shape.rank == 0 and type(tracker) is keras.metrics.Mean:
                    # A scalar's weighted mean in two updates (Mean.update_state adds
                    # some 14 ops of casts and shape handling per call, every step).
                    tracker.total.assign_add(value * weight)
                    tracker.count.assign_add(weight)
                else:
                    tracker.update_state(value, sample_weight=weight)

    # ------------------------------------------------------------------ hooks
    def unpack_batch(self, data, where: str) -> tuple:
        raise NotImplementedError(f"{type(self).__name__} must implement unpack_batch(data, where).")

    def batch_loss(self, *inputs, training=False) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement batch_loss(*inputs, training).")

    def xla_unsupported_reason(self) -> str | None:
        """Why this model's step cannot be compiled with XLA, or None (it can).

        See ``xmodal_tf.precision``.
        """
        return None

    def build_from_batch(self, *inputs) -> None:
        """Build sub-models that are not built yet from a batch (default: nothing)."""

    # ------------------------------------------------------------------ steps
    def compute_and_apply_gradients(self, data, optimizer) -> None:
        """One training step on a batch, in a replica context; updates the trackers.

        The core of ``train_step`` and of ``xmodal_tf.training.Trainer``.

        Args:
            data: the batch, as ``unpack_batch`` takes it.
            optimizer: the optimizer that applies the gradients (built here if it is not yet).
        """
        inputs = self.unpack_batch(data, "train_step")
        self.build_from_batch(*inputs)
        if not optimizer.built:
            optimizer.build(self.trainable_variables)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            results = self.batch_loss(*inputs, training=True)
            loss = results["loss"]
            # Gradients are summed over replicas: scale so their sum is the mean.
            scaled = optimizer.scale_loss(loss / replicas if replicas > 1 else loss)
        gradients = tape.gradient(scaled, variables)
        if not self.skip_non_finite_batches:
            optimizer.apply(gradients, variables)
            self.update_trackers(results, inputs)
            return
        finite = _all_finite(loss, gradients)
        if replicas > 1:
            bad = all_reduce_sum(tf.cast(tf.logical_not(finite), tf.float32))
            finite = tf.equal(bad, 0.0)
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            optimizer.apply(gradients, variables)  # it skips non-finite steps and lowers its scale
        else:
            _apply_if(optimizer, gradients, variables, finite)
        self.update_trackers(results, inputs, finite, count_skip=_is_first_replica())

    def train_step(self, data):
        self.compute_and_apply_gradients(data, self.optimizer)
        return self.keras_reducible_logs(self.metric_results())

    def test_step(self, data):
        inputs = self.unpack_batch(data, "test_step")
        self.build_from_batch(*inputs)
        results = self.batch_loss(*inputs, training=False)
        finite = tf.math.is_finite(results["loss"]) if self.skip_non_finite_batches else None
        self.update_trackers(results, inputs, finite)
        return self.keras_reducible_logs(self.metric_results())

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="rmsprop", **kwargs):
        """``keras.Model.compile``, with the loss and metrics built in.

        The optimizer is built at once when the model is.

        Args:
            optimizer: as in ``keras.Model.compile``.
            **kwargs: other ``keras.Model.compile`` settings; ``jit_compile`` defaults to
                ``default_jit_compile``.

        Raises:
            ValueError: ``loss=``, ``metrics=``, ``weighted_metrics=`` or ``loss_weights=`` is given.
        """
        for key in ("loss", "metrics", "weighted_metrics", "loss_weights"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"{type(self).__name__} computes its own loss and metrics; do not pass {key}= to compile."
                )
        kwargs.setdefault("jit_compile", self.default_jit_compile)
        super().compile(optimizer=optimizer, **kwargs)
        if self.built and self.optimizer is not None and not self.optimizer.built:
            # Building now, not while fit traces the step, saves creating variables in the
            # trace (which makes tf.function trace the step a second time).
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """Recompile on ``load_model`` (Keras skips models with a custom ``compile``).

        The optimizer is built, so its saved state loads.
        """
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def training_optimizers(self) -> dict:
        """{name: optimizer} that a Trainer checkpoints (one, ``optimizer``, by default)."""
        return {"optimizer": self.optimizer}

    # ------------------------------------------------------------------ saving
    def get_build_config(self):
        specs = getattr(self, "_input_specs", None)
        return None if specs is None else {"input_specs": specs}

    def build_from_config(self, config):
        if config and "input_specs" in config and not self.built:
            self._build_from_input_specs(config["input_specs"])

    def _build_from_input_specs(self, specs) -> None:
        raise NotImplementedError

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self.seed_state_key is not None:
            store[self.seed_state_key] = self.seed_generator.state

    def load_own_variables(self, store):
        keys = list(store.keys())
        if self.seed_state_key is not None and self.seed_state_key in keys:
            self.seed_generator.state.assign(store[self.seed_state_key])
        super().load_own_variables({key: store[key] for key in keys if key != self.seed_state_key})


# ----------------------------------------------------------------------------- helpers
def _all_finite(loss, gradients):
    """Whether the loss and every gradient are finite, in one pass over the gradients: a
    NaN or inf anywhere makes the sum of all entries NaN or inf. (Finite entries could
    only overflow that sum beyond 3e38, a step that has diverged anyway.) Half the cost
    of testing every entry."""
    sums = [tf.cast(tf.reduce_sum(loss), tf.float32)]
    for gradient in gradients:
        if gradient is not None:
            values = gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient
            sums.append(tf.cast(tf.reduce_sum(values), tf.float32))
    return tf.math.is_finite(tf.add_n(sums))


def _is_first_replica():
    """True on replica 0 (so a per-step count summed over replicas counts once)."""
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return tf.constant(True)
    return tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)


def _apply_if(optimizer, gradients, variables, condition) -> None:
    """``optimizer.apply(gradients, variables)`` only where ``condition`` holds.

    ``condition`` must be the same on every replica. Under a strategy the optimizer
    synchronises replicas (merge_call), which may not happen inside a ``tf.cond`` in a
    replica context; so, as Keras' LossScaleOptimizer does, the cond runs in the
    cross-replica context and re-enters the replicas to apply.
    """
    if not tf.distribute.has_strategy():

        def apply():
            optimizer.apply(gradients, variables)
            return tf.constant(True)

        tf.cond(condition, apply, lambda: tf.constant(False))
        return

    def cross_replica(distribution, gradients, condition):
        flag = distribution.experimental_local_results(condition)[0]

        def apply():
            distribution.extended.call_for_each_replica(optimizer.apply, args=(gradients, variables))
            return tf.constant(True)

        tf.cond(flag, apply, lambda: tf.constant(False))

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(gradients, condition))
