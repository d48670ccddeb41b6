"""What a second command on a run directory does, and the CLI's one-line failures: each
names the file or setting and the fix, and leaves nothing behind."""

import errno
import json

import numpy as np
import pytest

from xmodal_tf import train
from xmodal_tf.experiments.rundir import differences

CCA = ["cca", "--set", "probe=false", "--set", "n_components=3"]
DEEPCCA = [
    "deepcca",
    "--set",
    "hidden_units=[16]",
    "--set",
    "epochs=3",
    "--set",
    "batch_size=64",
    "--set",
    "n_components=4",
    "--set",
    'models=["deepcca"]',
    "--checkpoint-seconds",
    "0",
]


def snapshot(folder):
    """{relative path: (bytes, mtime)} of every file under ``folder``."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("python -m xmodal_tf.train: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "cca"
    assert train.main([*CCA, "--logdir", str(logdir)]) == 0
    return logdir


def test_a_finished_run_is_summarised_and_no_file_changes(finished, capsys):
    before = snapshot(finished)
    capsys.readouterr()
    assert train.main([*CCA, "--logdir", str(finished)]) == 0
    out = capsys.readouterr().out
    assert "has finished; nothing was changed" in out and "total correlation" in out
    assert snapshot(finished) == before


def test_changed_settings_stop_before_anything_is_written(finished, capsys):
    before = snapshot(finished)
    assert train.main([*CCA, "--set", "reg=[0.1]", "--seed", "3", "--logdir", str(finished)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "config.reg: [0.0001, 0.001, 0.01, 0.1] -> [0.1]" in line or "config.reg:" in line
    assert "seed: 0 -> 3" in line and "--overwrite" in line
    assert snapshot(finished) == before


def test_overwrite_starts_over(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert train.main([*CCA, "--logdir", str(logdir)]) == 0
    (logdir / "stale.txt").write_text("from the old run")
    assert train.main([*CCA, "--set", "n_components=2", "--overwrite", "--logdir", str(logdir)]) == 0
    assert not (logdir / "stale.txt").exists()
    assert json.loads((logdir / "config.json").read_text())["config"]["n_components"] == 2
    assert json.loads((logdir / "metrics.json").read_text())["run"]["segments"] == 1


def test_a_folder_that_is_not_a_run_directory_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert train.main([*CCA, *extra, "--logdir", str(tmp_path)]) == 2
        assert "not an xmodal_tf run directory" in one_line(capsys.readouterr().err)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_a_damaged_config_json_is_named(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{half")
    assert train.main([*CCA, "--logdir", str(tmp_path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{tmp_path / 'config.json'} cannot be read" in line and "--overwrite" in line


def test_differences_name_nested_keys():
    assert differences(
        {"config": {"a": 1, "b": [1]}, "seed": 0}, {"config": {"a": 2, "b": [1], "c": 1}, "seed": 0}
    ) == ["config.a: 1 -> 2", 'config.c: "(absent)" -> 1']


# ----------------------------------------------------------------------------- data files
@pytest.mark.parametrize(
    "argv, filename, damage, message",
    [
        (["cca", "--set", "data=split_mnist"], "mnist.npz", "random", "mnist.npz is not an .npz archive"),
        (["retrieval", "--set", "data=openmoji"], "openmoji64.npz", "wrong", "openmoji64.npz lacks the arrays"),
        (["cgan", "--set", "condition=audio"], "fsdd_mfcc.npz", "truncated", "fsdd_mfcc.npz is damaged or truncated"),
    ],
)
def test_a_bad_data_file_is_one_line_and_leaves_no_run_directory(tmp_path, capsys, argv, filename, damage, message):
    data = tmp_path / "data"
    data.mkdir()
    path = data / filename
    np.savez(path, something=np.zeros(3))
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "truncated":
        np.savez(path, X=np.zeros((50, 20, 13), np.float32), lengths=np.full(50, 20), y=np.zeros(50, int))
        path.write_bytes(path.read_bytes()[:2000])
    logdir = tmp_path / "run"
    assert train.main([*argv, "--data-dir", str(data), "--logdir", str(logdir)]) == 1
    line = one_line(capsys.readouterr().err)
    assert message in line and str(data) in line
    assert not logdir.exists()


def test_a_batch_at_or_below_n_components_is_refused_before_anything_is_written(tmp_path, capsys):
    assert (
        train.main(["deepcca", "--set", "batch_size=8", "--set", "n_components=10", "--logdir", str(tmp_path / "run")])
        == 2
    )
    assert "batch_size=8 is at or below n_components=10" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- faults while running
@pytest.mark.parametrize(
    "fault, expected",
    [
        ("disk full (TensorFlow)", "the disk under"),
        ("disk full (OSError)", "the disk is full"),
        ("read-only", "pick a writable folder with --logdir"),
    ],
)
def test_a_write_failure_during_training_is_one_line_and_the_run_resumes(
    tmp_path, capsys, monkeypatch, fault, expected
):
    import tensorflow as tf

    real_save = tf.train.CheckpointManager.save
    saves = []

    def failing_save(self, *args, **kwargs):
        saves.append(1)
        if len(saves) < 2:
            return real_save(self, *args, **kwargs)
        if fault == "disk full (TensorFlow)":
            raise tf.errors.ResourceExhaustedError(None, None, "epoch-2_temp/part-00000; No space left on device")
        raise OSError(errno.ENOSPC if "disk" in fault else errno.EROFS, "simulated", str(self.directory))

    monkeypatch.setattr(tf.train.CheckpointManager, "save", failing_save)
    logdir = tmp_path / "run"
    assert train.main([*DEEPCCA, "--logdir", str(logdir)]) == 1
    line = one_line(capsys.readouterr().err)
    assert expected in line
    if "disk" in fault:
        assert f"the same command (with --logdir {logdir}) resumes from the last checkpoint" in line
    assert not (logdir / "metrics.json").exists()
    assert json.loads((logdir / "run_state.json").read_text())["segments"][-1]["ended"] == "failed"

    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    assert train.main([*DEEPCCA, "--logdir", str(logdir)]) == 0
    out = capsys.readouterr().out
    assert "resuming after epoch 1" in out and "(resuming)" in out
    assert json.loads((logdir / "metrics.json").read_text())["run"]["segments"] == 2


def test_traceback_shows_the_trace(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "mnist.npz").write_bytes(b"not an archive")
    assert (
        train.main(
            [
                "cca",
                "--set",
                "data=split_mnist",
                "--data-dir",
                str(data),
                "--traceback",
                "--logdir",
                str(tmp_path / "run"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "mnist.npz is not an .npz archive" in err


def test_a_long_silent_training_prints_heartbeat_lines(tmp_path):
    import keras
    import tensorflow as tf

    from xmodal_tf.experiments.base import RunContext

    lines = []
    context = RunContext(tmp_path / "run", echo=lines.append)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)], name="tiny")
    model.compile(keras.optimizers.SGD(0.1), "mse")
    assert context.trainer(model, None).callbacks == []  # it prints a line per epoch itself
    trainer = context.trainer(model, None, progress=False)
    assert type(trainer.callbacks[0]).__name__ == "Heartbeat"  # every silent trainer of a run gets one
    assert (tmp_path / "run" / "checkpoints").exists() is False  # nothing before the first save
    trainer.callbacks = [context.heartbeat("tiny", every=0.0)]  # as if every epoch took long
    data = tf.data.Dataset.from_tensor_slices((np.ones((8, 3), "float32"), np.ones((8, 1), "float32"))).batch(4)
    trainer.fit(data, 2)
    assert [line.split("] ", 1)[1].split(", loss")[0] for line in lines] == ["tiny: epoch 1/2", "tiny: epoch 2/2"]
    assert (tmp_path / "run" / "checkpoints" / "02-tiny" / "history.json").exists()
    context.close()


def test_a_read_only_parent_folder_is_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    import os

    parent = tmp_path / "read_only"
    parent.mkdir()
    real_access = os.access
    # (chmod 0o555 does not stop root, who runs some CI machines: the check is simulated.)
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(parent) else real_access(path, mode))
    assert train.main([*CCA, "--logdir", str(parent / "run")]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"cannot write the run directory {parent / 'run'}: {parent} is not writable" in line
    assert list(parent.iterdir()) == []


def test_deterministic_refuses_xla_and_turns_auto_off(tmp_path, capsys):
    assert train.main(["mae", "--deterministic", "--jit", "on", "--logdir", str(tmp_path / "run")]) == 2
    assert "--deterministic needs --jit off" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()
    from xmodal_tf.train import _training_settings

    assert _training_settings({"mixed_precision": "off", "jit": "auto"}, True) == {
        "mixed_precision": "off",
        "jit": "off",
    }
    assert _training_settings({"mixed_precision": "off", "jit": "auto"}, False)["jit"] == "auto"
