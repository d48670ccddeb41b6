"""Housekeeping of ``tf.train.CheckpointManager`` directories, and the history beside them.

A checkpoint is written as ``<prefix>_temp/part-*`` files merged into
``<prefix>.index`` / ``<prefix>.data-*``; only then does the ``checkpoint`` state file
(rewritten atomically) name it. A kill during the write therefore leaves the previous
checkpoint loadable, plus a ``_temp`` folder that nothing reads: ``remove_temporary``
deletes such folders. ``prune`` keeps the last checkpoints of a finished run.

The history (``history.json``) is the per-epoch logs of every epoch trained so far and
the ``fit`` calls that trained them, so that a resumed ``Trainer.fit`` returns what an
uninterrupted one would. It is written (atomically) before the checkpoint of the same
epoch; a reader keeps only the epochs the restored checkpoint has completed.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

from xmodal_tf._files import write_json_atomically

__all__ = ["HISTORY_FILE", "prune", "read_history", "remove_temporary", "write_history"]

HISTORY_FILE = "history.json"


def remove_temporary(directory) -> list[str]:
    """Delete the ``*_temp`` folders an interrupted checkpoint write left.

    Args:
        directory: the checkpoint directory; its sub-folders (such as ``best/``) are
            searched too.

    Returns:
        The paths of the deleted folders.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for folder in sorted(directory.rglob("*_temp")):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


def prune(directory, keep: int = 1) -> list[str]:
    """Delete all but the latest checkpoints that a directory's ``checkpoint`` state file lists.

    ``best/`` and other sub-folders are left alone.

    Args:
        directory: the checkpoint directory.
        keep: how many of the latest checkpoints to keep.

    Returns:
        The deleted checkpoint prefixes.
    """
    import tensorflow as tf

    directory = os.fspath(directory)
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    kept, dropped = paths[-keep:], paths[:-keep]
    tf.compat.v1.train.update_checkpoint_state(directory, state.model_checkpoint_path, all_model_checkpoint_paths=kept)
    for prefix in dropped:
        prefix = prefix if os.path.isabs(prefix) else os.path.join(directory, prefix)
        for path in tf.io.gfile.glob(prefix + ".*"):
            tf.io.gfile.remove(path)
    return dropped


def write_history(directory, calls: list, epochs: list) -> None:
    """Write ``{"calls": calls, "epochs": epochs}`` to ``directory/history.json`` atomically.

    A temporary file is written, then renamed into place.

    Args:
        directory: the checkpoint directory.
        calls: the ``fit`` calls that trained the epochs.
        epochs: the per-epoch logs.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomically(directory / HISTORY_FILE, {"calls": calls, "epochs": epochs})


def read_history(directory, completed_epochs: int) -> tuple[list, list]:
    """Read the history from ``directory/history.json``.

    Args:
        directory: the checkpoint directory.
        completed_epochs: the number of epochs the restored checkpoint holds; the
            history is cut to them.

    Returns:
        (calls, epochs); ([], []) if there is no readable history.
    """
    path = pathlib.Path(directory) / HISTORY_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        calls, epochs = list(saved["calls"]), list(saved["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return [], []
    epochs = [logs for logs in epochs if logs.get("epoch", completed_epochs) < completed_epochs]
    calls = [call for call in calls if call.get("first", completed_epochs) < completed_epochs]
    return calls, epochs
