"""The experiment registry: one module per experiment, each defining ``EXPERIMENT``.

Experiment modules import only light dependencies at module level, so listing them
(``python -m xmodal_tf.train --help``) stays fast; TensorFlow is imported when a run
needs it. The library layer never imports this package.
"""

from __future__ import annotations

import difflib
import importlib

from xmodal_tf.experiments.base import Experiment, RunContext
from xmodal_tf.experiments.config import ConfigError

__all__ = ["DEFAULT_EXPERIMENT", "EXPERIMENT_MODULES", "Experiment", "RunContext", "get_experiment", "list_experiments"]

# name -> module under xmodal_tf.experiments
EXPERIMENT_MODULES = {
    "deepcca": "deepcca",
    "cca": "cca",
    "transfer": "transfer",
    "retrieval": "retrieval",
    "mae": "mae",
    "fusion": "fusion",
    "cgan": "cgan",
    "crossmodal": "crossmodal",
}
DEFAULT_EXPERIMENT = "deepcca"


def get_experiment(name: str) -> Experiment:
    """The registered experiment called ``name``, or a ConfigError listing the names."""
    if name not in EXPERIMENT_MODULES:
        close = difflib.get_close_matches(name, EXPERIMENT_MODULES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown experiment {name!r}.{hint} Available: {', '.join(EXPERIMENT_MODULES)}.")
    module = importlib.import_module(f"xmodal_tf.experiments.{EXPERIMENT_MODULES[name]}")
    return module.EXPERIMENT


def list_experiments() -> list[Experiment]:
    return [get_experiment(name) for name in EXPERIMENT_MODULES]
