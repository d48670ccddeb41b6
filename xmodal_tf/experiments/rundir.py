"""What a run directory holds, and what a second command on it does.

A run directory (``--logdir``) holds ``config.json`` (what was asked: the experiment,
its settings and the seed, written when the run starts), ``run_state.json`` (one entry
per segment: each start of the command on it, with its wall time and how it ended),
the trainers' ``checkpoints/``, the TensorBoard events and, once the run has finished,
``metrics.json``. The rules, checked before anything is written:

* a new or empty folder starts a run;
* a finished run (it has ``metrics.json``) is never retrained or overwritten: the
  command prints its summary and exits 0;
* an unfinished run (killed, interrupted, failed) resumes from its checkpoints;
* a run whose ``config.json`` differs from the command's experiment, settings or seed
  stops with the differing keys; ``--overwrite`` starts over instead;
* a non-empty folder without ``config.json`` is not a run directory, and is refused
  (also with ``--overwrite``: it may hold anything).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import time

from xmodal_tf.experiments.base import write_json_atomically
from xmodal_tf.experiments.config import ConfigError

__all__ = ["COMPARED", "RunDirectory", "differences"]

COMPARED = ("experiment", "config", "seed")  # what must match to resume; data_dir may move
CONFIG_FILE, METRICS_FILE, STATE_FILE = "config.json", "metrics.json", "run_state.json"


def differences(saved, wanted, prefix: str = "") -> list[str]:
    """``["key: saved -> wanted", ...]`` for every (dotted) key whose values differ."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        lines = []
        for key in sorted(set(saved) | set(wanted), key=str):
            missing = "(absent)"
            lines += differences(saved.get(key, missing), wanted.get(key, missing), f"{prefix}{key}.")
        return lines
    if saved != wanted:
        return [f"{prefix[:-1]}: {json.dumps(saved)} -> {json.dumps(wanted)}"]
    return []


class RunDirectory:
    """The run directory at ``path``, and the rules of the module header."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self._segment = None

    # ------------------------------------------------------------------ reading
    def status(self, record: dict, overwrite: bool = False) -> str:
        """What a command does with this folder: "new", "resume" or "finished".

        Args:
            record: what the command asks for (its ``COMPARED`` keys matter).
            overwrite: the command's ``--overwrite``.

        Returns:
            "new", "resume" or "finished".

        Raises:
            ConfigError: the folder cannot be used.
        """
        if not self.path.exists():
            self._check_creatable()
            return "new"
        if not self.path.is_dir():
            raise ConfigError(f"--logdir {self.path} is a file, not a folder; pick a folder for the run.")
        config_file = self.path / CONFIG_FILE
        if not config_file.exists():
            if any(self.path.iterdir()):
                raise ConfigError(
                    f"--logdir {self.path} holds files but no {CONFIG_FILE}, so it is not an xmodal_tf "
                    "run directory; pick a new or empty folder."
                )
            return "new"
        if overwrite:
            return "new"
        saved = self.saved_config()
        changed = differences({key: saved.get(key) for key in COMPARED}, {key: record[key] for key in COMPARED})
        if changed:
            raise ConfigError(
                f"the run in {self.path} was started with other settings ({'; '.join(changed)}); nothing was written. "
                "Rerun with its settings to resume it, pick another --logdir, or add --overwrite to start over."
            )
        return "finished" if (self.path / METRICS_FILE).exists() else "resume"

    def _check_creatable(self) -> None:
        """ConfigError unless the folder can be created: its nearest existing parent must
        be a writable folder (checked, not tried: nothing is written yet)."""
        parent = self.path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            problem = f"{parent} is a file, not a folder"
        elif not os.access(parent, os.W_OK | os.X_OK):
            problem = f"{parent} is not writable"
        else:
            return
        raise ConfigError(
            f"cannot write the run directory {self.path}: {problem}; pick a writable folder with --logdir."
        )

    def saved_config(self) -> dict:
        return self._read(CONFIG_FILE)

    def metrics(self) -> dict:
        return self._read(METRICS_FILE)

    def _read(self, name: str) -> dict:
        path = self.path / name
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"{path} cannot be read ({error}); move the run directory away, or rerun with "
                "--overwrite to start over."
            ) from None
        if not isinstance(values, dict):
            raise ConfigError(
                f"{path} does not hold a JSON object; move the run directory away, or rerun with "
                "--overwrite to start over."
            )
        return values

    # ------------------------------------------------------------------ writing
    def clear(self) -> None:
        """Delete the run (``--overwrite``): only a folder ``status`` accepted."""
        if (self.path / CONFIG_FILE).exists():
            shutil.rmtree(self.path)

    def begin(self, record: dict) -> None:
        """Start this command's segment of the run.

        Creates the folder, writes ``config.json`` for a new run, and opens a segment in
        ``run_state.json`` (closing a killed segment's at its last written file).

        Args:
            record: what the command asks for (written as ``config.json``).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / CONFIG_FILE).exists():
            write_json_atomically(self.path / CONFIG_FILE, record)
        segments = self._segments()
        if segments and segments[-1].get("ended") == "running":
            segments[-1].update(ended="killed", seconds=max(0.0, self._last_write() - segments[-1]["started_at"]))
        self._segment = {"started": _now(), "started_at": time.time(), "ended": "running", "seconds": None}
        segments.append(self._segment)
        self._write_segments(segments)

    def end(self, outcome: str) -> dict:
        """Close this command's segment.

        Args:
            outcome: "finished", "interrupted" or "failed".

        Returns:
            The run's totals: {"segments", "wall_seconds", "resumed"}.
        """
        segments = self._segments()
        if self._segment is not None and segments:
            segments[-1].update(ended=outcome, seconds=time.time() - segments[-1]["started_at"])
            self._write_segments(segments)
        return {
            "segments": len(segments),
            "wall_seconds": sum(s.get("seconds") or 0.0 for s in segments),
            "resumed": len(segments) > 1,
        }

    def finish(self, metrics: dict) -> None:
        """Mark the run finished.

        Writes ``metrics.json`` (which marks the run finished) and prunes every
        trainer's checkpoints to its last one (``best/`` keeps its own).

        Args:
            metrics: the run's metrics.
        """
        write_json_atomically(self.path / METRICS_FILE, metrics)
        from xmodal_tf.training.checkpoints import prune, remove_temporary

        checkpoints = self.path / "checkpoints"
        if checkpoints.is_dir():
            remove_temporary(checkpoints)
            for state in checkpoints.rglob("checkpoint"):
                prune(state.parent, keep=1)

    def _segments(self) -> list:
        path = self.path / STATE_FILE
        try:
            return list(json.loads(path.read_text(encoding="utf-8"))["segments"])
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _write_segments(self, segments: list) -> None:
        write_json_atomically(self.path / STATE_FILE, {"segments": segments})

    def _last_write(self) -> float:
        """The newest modification time of a file in the run (a killed segment's end)."""
        times = [path.stat().st_mtime for path in self.path.rglob("*") if path.is_file()]
        return max(times, default=time.time())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
