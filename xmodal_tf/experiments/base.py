"""What an experiment is, and the run context it reports through.

An ``Experiment`` is a recipe: data -> model -> train -> evaluate. It receives the
resolved configuration and a ``RunContext`` and returns a dict of metrics. The context
owns the run directory and the ``tf.distribute`` strategy: experiments build their
models in ``context.scope()`` and train them with ``context.trainer(...)``.
``check_global_batch`` checks a batch size against the strategy, and
``TRAINING_SETTINGS`` are the settings every training experiment has.

Design notes: docs/DESIGN.md (section xmodal_tf/experiments/base.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import re
import shutil
import tempfile
import time
from collections.abc import Callable

from xmodal_tf._files import write_json_atomically
from xmodal_tf._validation import check_positive_int
from xmodal_tf.experiments.config import Options, check_settings, lookup_setting, make_constraint

__all__ = [
    "TRAINING_CHOICES",
    "TRAINING_CONSTRAINTS",
    "TRAINING_SETTINGS",
    "Experiment",
    "RunContext",
    "check_global_batch",
    "register",
    "write_json_atomically",
]

# The settings and choices of xmodal_tf.precision (MIXED_PRECISION, JIT), written out
# here so that listing the experiments does not import Keras; a test keeps them equal.
TRAINING_SETTINGS = {"mixed_precision": "off", "jit": "auto"}
HEARTBEAT_SECONDS = 10.0  # the longest a run stays silent between epochs
# TensorBoard groups a tag's cards by its first part and sorts the groups by name:
# the headline figures, then each split's details (per component, classifier, condition).
TAG_GROUPS = ("train", "validation", "test", "train_details", "validation_details", "test_details")
TRAINING_CHOICES = {"mixed_precision": ("off", "float16", "bfloat16"), "jit": ("auto", "on", "off")}
TRAINING_CONSTRAINTS = {key: [Options(*values)] for key, values in TRAINING_CHOICES.items()}
FIGURE_GROUP = "test_details"  # the TensorBoard group of the experiments' figures


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    Attributes:
        name: the CLI name (``python -m xmodal_tf.train NAME``).
        description: one line for ``--help``.
        defaults: the configuration with every setting and its default value.
        run: ``run(config, context) -> metrics dict``.
        choices: allowed values of some settings, by dotted key, checked while the
            configuration is resolved. Settings whose constraints are one ``Options``
            are added to it.
        summarize: ``summarize(metrics) -> lines`` for the human-readable summary.
        constraints: {dotted key: [kind, ...]}: the values each setting allows (the kinds
            of ``xmodal_tf.experiments.config``: ``Interval``, ``Options``, ``ListOf``,
            None, bool, str); a value must meet one kind of its list.
        notes: {dotted key: text}: what a setting means or what its null stands for,
            added to its error message.
        rules: ``rules(config)`` raises ConfigError where settings do not fit together
            or the data set (what a table cannot say); it runs after the table's checks.
        load_data: ``load_data(config, data_dir, seed) -> data``: reads and checks every
            data file the run needs, before the run directory is created; ``run`` then
            gets ``context.data``. None: ``run`` loads its own data.
    """

    name: str
    description: str
    defaults: dict
    run: Callable[[dict, RunContext], dict]
    choices: dict = dataclasses.field(default_factory=dict)
    summarize: Callable[[dict], list] | None = None
    constraints: dict = dataclasses.field(default_factory=dict)
    notes: dict = dataclasses.field(default_factory=dict)
    rules: Callable[[dict], None] | None = None
    load_data: Callable[[dict, object, int], object] | None = None

    def __post_init__(self):
        for key, kinds in self.constraints.items():
            try:
                lookup_setting(self.defaults, key)
            except (KeyError, TypeError):
                raise ValueError(
                    f"experiment {self.name!r}: constraints name {key!r}, which is not a setting of its "
                    "defaults; fix the key or add the setting."
                ) from None
            if not kinds:
                raise ValueError(
                    f"experiment {self.name!r}: the constraints of {key!r} are empty; list the kinds "
                    "of value it allows."
                )
            for kind in kinds:
                make_constraint(kind)  # TypeError for what is no constraint, at import
        options = {
            key: kinds[0].values
            for key, kinds in self.constraints.items()
            if len(kinds) == 1 and isinstance(kinds[0], Options)
        }
        object.__setattr__(self, "choices", {**options, **self.choices})

    def validate(self, config: dict) -> None:
        """Check a resolved configuration against the constraints, then the rules.

        Args:
            config: the resolved configuration.

        Raises:
            ConfigError: for the first setting that its constraints refuse, then for
                what the experiment's ``rules`` refuse.
        """
        check_settings(config, self.constraints, notes=self.notes, defaults=self.defaults)
        if self.rules is not None:
            self.rules(config)


def register(namespace: dict, *, name: str, description: str) -> Experiment:
    """The ``Experiment`` that an experiment module defines under the conventional names.

    Args:
        namespace: the module's ``globals()``: its ``DEFAULTS``, ``run``, ``summarize``,
            ``CONSTRAINTS`` and ``NOTES``, and where it has them its ``check_rules``
            (the rules) and ``load`` (the data loader).
        name: the CLI name.
        description: one line for ``--help``.

    Returns:
        The experiment (the module keeps it as ``EXPERIMENT``).
    """
    return Experiment(
        name=name,
        description=description,
        defaults=namespace["DEFAULTS"],
        run=namespace["run"],
        summarize=namespace["summarize"],
        constraints=namespace["CONSTRAINTS"],
        notes=namespace["NOTES"],
        rules=namespace.get("check_rules"),
        load_data=namespace.get("load"),
    )


def check_global_batch(batch_size: int, replicas: int, experiment: str, rows: int | None = None) -> int:
    """Check a global batch size against the strategy's replicas.

    Args:
        batch_size: the global batch.
        replicas: the strategy's number of replicas.
        experiment: the experiment's name, for messages.
        rows: the number of training pairs, if known.

    Returns:
        ``batch_size``.

    Raises:
        ValueError: naming the fix, when ``batch_size`` does not split evenly over the
            replicas, or when with several replicas (partial batches are then dropped)
            the ``rows`` training pairs do not fill one batch.
    """
    if batch_size % replicas:
        lower = max(replicas, batch_size - batch_size % replicas)
        raise ValueError(
            f"{experiment}: batch_size={batch_size} does not split evenly over {replicas} replicas of "
            f"the strategy; set batch_size to a multiple of {replicas}, e.g. {lower} "
            f"(--set batch_size={lower})."
        )
    if replicas > 1 and rows is not None and rows < batch_size:
        raise ValueError(
            f"{experiment}: batch_size={batch_size} is larger than the {rows} training pairs; with "
            f"{replicas} replicas partial batches are dropped, so no batch would remain. "
            "Lower batch_size."
        )
    return batch_size


def _flat_settings(config: dict, prefix: str = "") -> dict:
    """{dotted key: bool / int / float / str} of a nested configuration (lists and None
    as their JSON text), as the HParams plugin takes them."""
    import json

    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat_settings(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[f"{prefix}{key}"] = value
        else:
            flat[f"{prefix}{key}"] = json.dumps(value)
    return flat


def _print_flushed(line: str) -> None:
    print(line, flush=True)


class RunContext:
    """The run directory, strategy and reporting channels of one experiment run.

    Args:
        logdir: the run directory (created); TensorBoard reads it. On a worker that is
            not the chief: a temporary directory, removed by ``close()``.
        data_dir: the ``--data-dir`` folder or None (loaders also read $XMODAL_DATA_DIR).
        seed: the run's random seed.
        echo: the function that prints progress lines (None: print and flush).
        strategy: the ``tf.distribute.Strategy`` (None: TensorFlow's default strategy).
        mixed_precision: as in ``xmodal_tf.precision`` (the run's setting of that name).
        jit: as in ``xmodal_tf.precision`` (the run's setting of that name).
        checkpoint_every: ``trainer`` checkpoints every this many epochs, each trainer
            in its own folder of ``<run directory>/checkpoints``, and resumes from it;
            0 turns checkpoints off.
        checkpoint_seconds: and at least this many seconds apart (each trainer also
            saves at the end of every ``fit``).
        data: what the experiment's ``load_data`` returned (None if it has none).

    Raises:
        ValueError: an unknown ``mixed_precision`` or ``jit``, or a ``checkpoint_every``
            that is not an int >= 0.
    """

    def __init__(
        self,
        logdir,
        data_dir=None,
        seed: int = 0,
        echo: Callable[[str], None] | None = None,
        strategy=None,
        mixed_precision: str = "off",
        jit: str = "auto",
        checkpoint_every: int = 1,
        checkpoint_seconds: float = 0.0,
        data=None,
    ):
        if mixed_precision not in TRAINING_CHOICES["mixed_precision"] or jit not in TRAINING_CHOICES["jit"]:
            raise ValueError(
                f"mixed_precision must be one of {TRAINING_CHOICES['mixed_precision']} and jit one of "
                f"{TRAINING_CHOICES['jit']}; got {mixed_precision!r} and {jit!r}."
            )
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise ValueError(
                f"checkpoint_every must be an int >= 0 (epochs; 0: no checkpoints); got {checkpoint_every!r}."
            )
        self.mixed_precision, self.jit = mixed_precision, jit
        self.checkpoint_every, self.checkpoint_seconds = checkpoint_every, checkpoint_seconds
        self.data = data
        self.trained_models = []
        self._trainers = 0
        self._strategy = strategy
        self.is_chief = True
        if strategy is not None:  # (xmodal_tf.training loads TensorFlow: only when needed)
            from xmodal_tf.training.strategies import is_chief

            self.is_chief = is_chief(strategy)
        self.run_directory = pathlib.Path(logdir)
        self._scratch = None
        if self.is_chief:
            self.logdir = self.run_directory
            self.logdir.mkdir(parents=True, exist_ok=True)
        else:
            self._scratch = pathlib.Path(tempfile.mkdtemp(prefix="xmodal_tf_worker_run_"))
            self.logdir = self._scratch
        self.data_dir = data_dir
        self.seed = seed
        self._echo = echo or _print_flushed
        self._writer = None
        self._started = self._last_line = time.perf_counter()

    # ------------------------------------------------------------------ strategy
    @property
    def strategy(self):
        """The run's ``tf.distribute.Strategy`` (TensorFlow's default one if none was given)."""
        if self._strategy is None:
            import tensorflow as tf

            self._strategy = tf.distribute.get_strategy()
        return self._strategy

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @contextlib.contextmanager
    def scope(self):
        """A context in which models and optimizers are created under the run's strategy and precision.

        Use it as ``with context.scope():``.
        """
        from xmodal_tf.precision import precision_scope

        strategy = contextlib.nullcontext() if self._strategy is None else self._strategy.scope()
        with strategy, precision_scope(self.mixed_precision):
            yield

    def trainer(self, model, optimizer=None, trainer_class=None, *, checkpoint_name=None, **kwargs):
        """A ``xmodal_tf.training.Trainer`` on the run's strategy, precision and XLA choice.

        What the model runs in is recorded in ``trained_models``. The trainer
        checkpoints into ``checkpoint_directory(checkpoint_name)`` and so resumes a
        killed run.

        Args:
            model: the model to train.
            optimizer: as for ``Trainer``.
            trainer_class: the ``Trainer`` class to use (default ``Trainer``).
            checkpoint_name: the checkpoint folder's name (by default
                ``NN-<model name>``, NN counting the run's trainers in order);
                False (or ``checkpoint_every=0``) turns checkpoints off.
            **kwargs: other arguments of the ``Trainer``.

        Returns:
            The trainer.
        """
        from xmodal_tf.training import Trainer

        kwargs.setdefault("mixed_precision", self.mixed_precision)
        kwargs.setdefault("jit", self.jit)
        self._trainers += 1
        if "checkpoint_dir" not in kwargs and checkpoint_name is not False and self.checkpoint_every:
            name = checkpoint_name or f"{self._trainers:02d}-{model.name}"
            kwargs["checkpoint_dir"] = self.checkpoint_directory(name)
        kwargs.setdefault("checkpoint_every", max(1, self.checkpoint_every))
        kwargs.setdefault("checkpoint_seconds", self.checkpoint_seconds)
        if kwargs.get("progress") is False:  # (a trainer with progress prints every epoch itself)
            kwargs.setdefault("callbacks", [self.heartbeat(model.name)])
        trainer = (trainer_class or Trainer)(model, optimizer, strategy=self.strategy, **kwargs)
        self.record_trained(trainer.model)
        if trainer.restored_from:
            self.progress(f"{trainer.model.name}: resuming after epoch {trainer.epoch} ({trainer.restored_from})")
        return trainer

    def checkpoint_directory(self, name: str):
        """The checkpoint folder ``<run directory>/checkpoints/<name>``.

        It is the chief's: every worker resumes from it.

        Args:
            name: the folder's name.

        Returns:
            The folder, or None when checkpoints are off.
        """
        return self.run_directory / "checkpoints" / name if self.checkpoint_every else None

    def record_trained(self, model) -> None:
        """Note in ``trained_models`` the precision, XLA use and variable devices of a trained model.

        ``trainer`` does it; call it for a model trained by ``fit``.

        Args:
            model: a model this run trains.
        """
        from xmodal_tf.precision import model_precision

        devices = {v.value.device.rsplit("device:", 1)[-1] for v in model.weights}
        self.trained_models.append(
            {
                "model": model.name,
                "mixed_precision": model_precision(model),
                "jit_compile": bool(model.jit_compile),
                "variable_devices": sorted(devices),
            }
        )

    def describe_strategy(self) -> dict:
        """{"strategy", "replicas", "workers", "task"} for config.json."""
        from xmodal_tf.training.strategies import describe_strategy

        return describe_strategy(self.strategy)

    # ------------------------------------------------------------------ reporting
    def progress(self, message: str) -> None:
        """Print a progress line prefixed with the elapsed time (the chief only)."""
        if self.is_chief:
            self._last_line = time.perf_counter()
            self._echo(f"[{self._last_line - self._started:7.1f}s] {message}")

    def heartbeat(self, name: str, every: float = HEARTBEAT_SECONDS):
        """A Keras callback that keeps a run from staying silent.

        Args:
            name: the model's name in the line.
            every: seconds without a progress line after which an epoch's end prints one.

        Returns:
            A callback printing ``name: epoch e/E, <loss>``.
        """
        import keras

        context = self

        class Heartbeat(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if time.perf_counter() - context._last_line < every:
                    return
                loss = (logs or {}).get("loss")
                loss = f", loss {loss:.4f}" if isinstance(loss, float) else ""
                context.progress(f"{name}: epoch {epoch + 1}/{self.params.get('epochs', '?')}{loss}")

        return Heartbeat()

    def log_scalar(self, tag: str, value: float, step: int = 1) -> None:
        """Write one TensorBoard scalar to the run directory.

        Args:
            tag: follows one scheme (``TAG_GROUPS``): ``train/...``, ``validation/...``,
                ``test/...`` for the headline figures, ``<split>_details/...`` for per
                component / classifier / condition ones.
            value: the scalar.
            step: counts from 1 (epochs, or 1 for a final figure).

        Raises:
            ValueError: a tag outside the scheme.
        """
        import tensorflow as tf

        if tag.split("/", 1)[0] not in TAG_GROUPS or "/" not in tag:
            raise ValueError(
                f"TensorBoard tag {tag!r} is outside the scheme: start it with one of "
                f"{', '.join(g + '/' for g in TAG_GROUPS)}."
            )
        with self._summary_writer().as_default():
            tf.summary.scalar(tag, float(value), step=int(step))

    def log_scalars(self, values: dict, step: int = 1, prefix: str = "") -> None:
        for tag, value in values.items():
            self.log_scalar(f"{prefix}{tag}", value, step)

    def log_figure(self, name: str, figure, step: int = 1) -> pathlib.Path | None:
        """Write a matplotlib figure as a PNG and as a TensorBoard image, and close it.

        The files are ``<run directory>/<name>.png`` and the TensorBoard image
        ``test_details/<name>``; other workers than the chief write nothing.

        Args:
            name: the file's stem and the tag's last part: letters, digits, ``_``, ``-``, ``.``.
            figure: a ``matplotlib.figure.Figure`` (``xmodal_tf.plots`` draws them).
            step: the image's TensorBoard step (from 1).

        Returns:
            The PNG's path, or None on a worker that is not the chief.

        Raises:
            TypeError: a name that is not a str, a step that is not an int.
            ValueError: a name that is no file name, a step < 1.
        """
        import tensorflow as tf

        from xmodal_tf import plots

        if not isinstance(name, str):
            raise TypeError(f"figure name must be a str; got {name!r} ({type(name).__name__}).")
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name):
            raise ValueError(f"figure name must be letters, digits, '_', '-' or '.' (it names a file); got {name!r}.")
        check_positive_int(step, "step")
        if not self.is_chief:  # (xmodal_tf.plots draws without pyplot: nothing else holds the figure)
            return None
        image = plots.figure_to_image(figure)
        path = plots.save_figure(figure, self.logdir / f"{name}.png")
        with self._summary_writer().as_default():
            tf.summary.image(f"{FIGURE_GROUP}/{name}", image, step=int(step))
        return path

    def log_hparams(self, config: dict) -> None:
        """Write the run's settings for TensorBoard's HParams tab.

        Its table then lists them beside the run's ``test/`` figures, run by run.

        Args:
            config: the run's configuration.
        """
        from tensorboard.plugins.hparams import api as hparams

        with self._summary_writer().as_default():
            hparams.hparams(_flat_settings(config), trial_id=self.run_directory.name)

    def _summary_writer(self):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.logdir))
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
