"""What an experiment is, and the run context it reports through.

An ``Experiment`` is a recipe: data -> model -> train -> evaluate. It receives the
resolved configuration and a ``RunContext`` and returns a dict of metrics. The context
owns the run directory: ``config.json``, ``metrics.json`` and the TensorBoard events.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import tempfile
import time
from typing import Callable

__all__ = ["Experiment", "RunContext", "write_json_atomically"]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    name:        the CLI name (``python -m xmodal_tf.train NAME``).
    description: one line for ``--help``.
    defaults:    the configuration with every setting and its default value.
    run:         ``run(config, context) -> metrics dict``.
    choices:     allowed values of some settings, by dotted key.
    summarize:   ``summarize(metrics) -> lines`` for the human-readable summary.
    validate:    ``validate(config)`` raises ConfigError on values the types and choices
                 cannot catch (ranges, consistency); runs before anything is written.
    """

    name: str
    description: str
    defaults: dict
    run: Callable[[dict, "RunContext"], dict]
    choices: dict = dataclasses.field(default_factory=dict)
    summarize: Callable[[dict], list] | None = None
    validate: Callable[[dict], None] | None = None


def write_json_atomically(path: pathlib.Path, payload) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place, so a
    killed run never leaves a half-written file."""
    path = pathlib.Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, indent=2, sort_keys=True, default=_json_default)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def _json_default(value):
    """JSON for NumPy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class RunContext:
    """The run directory and reporting channels of one experiment run.

    logdir:   the run directory (created); TensorBoard reads it.
    data_dir: the ``--data-dir`` folder or None (loaders also read $XMODAL_DATA_DIR).
    seed:     the run's random seed.
    """

    def __init__(self, logdir, data_dir=None, seed: int = 0,
                 echo: Callable[[str], None] = functools.partial(print, flush=True)):
        self.logdir = pathlib.Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.seed = seed
        self._echo = echo
        self._writer = None
        self._started = time.perf_counter()

    def progress(self, message: str) -> None:
        """Print a progress line prefixed with the elapsed time."""
        self._echo(f"[{time.perf_counter() - self._started:7.1f}s] {message}")

    def log_scalar(self, tag: str, value: float, step: int = 0) -> None:
        """Write one TensorBoard scalar to the run directory."""
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.logdir))
        with self._writer.as_default():
            tf.summary.scalar(tag, float(value), step=int(step))

    def log_scalars(self, values: dict, step: int = 0, prefix: str = "") -> None:
        for tag, value in values.items():
            self.log_scalar(f"{prefix}{tag}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
