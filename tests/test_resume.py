"""A run killed by SIGKILL resumes: the same command on the same --logdir completes with
the metrics of an uninterrupted run (deterministic mode), leaving no temporary folder.

Each experiment that trains runs three times in fresh processes: uninterrupted, then
killed at a random moment after its first checkpoint, then the same command again.
"""

import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

SHORT = {
    "deepcca": [
        "--set",
        "hidden_units=[32]",
        "--set",
        "epochs=8",
        "--set",
        "batch_size=64",
        "--set",
        "n_components=4",
        "--set",
        'models=["deepcca"]',
        "--set",
        "shift=1",
        "--set",
        "unshifted_final_epochs=3",
    ],
    "mae": [
        "--set",
        "epochs=6",
        "--set",
        "train_size=300",
        "--set",
        "code_dim=8",
        "--set",
        "embedding_dim=8",
        "--set",
        "filters=[8]",
        "--set",
        "decoder_hidden_units=[16]",
        "--set",
        "batch_size=100",
    ],
    "fusion": [
        "--set",
        "seeds=2",
        "--set",
        'strategies=["concat"]',
        "--set",
        "epochs=6",
        "--set",
        "batch_size=64",
        "--set",
        "encoder_hidden_units=[8]",
        "--set",
        "embedding_dim=4",
        "--set",
        "hidden_units=[8]",
        "--set",
        "missing_fractions=[1.0]",
    ],
    "cgan": [
        "--set",
        "steps=60",
        "--set",
        "steps_per_epoch=10",
        "--set",
        "batch_size=32",
        "--set",
        "classifier_epochs=4",
        "--set",
        "samples_per_condition=4",
        "--set",
        "generator_filters=4",
        "--set",
        "discriminator_filters=4",
    ],
    "retrieval": [
        "--set",
        "epochs=8",
        "--set",
        "filters=[16]",
        "--set",
        "embedding_dim=32",
        "--set",
        "projection_dim=16",
    ],
}
TIMING = ("seconds",)  # keys holding wall times differ between runs


def _command(experiment: str, logdir: pathlib.Path) -> list:
    return [
        sys.executable,
        "-m",
        "xmodal_tf.train",
        experiment,
        "--logdir",
        str(logdir),
        "--deterministic",
        "--checkpoint-seconds",
        "0",
        *SHORT[experiment],
    ]


def _epochs_checkpointed(logdir: pathlib.Path) -> int:
    """Epochs saved so far by all the run's trainers (their history.json files)."""
    total = 0
    for folder, _, files in os.walk(logdir / "checkpoints"):  # (ignores folders removed meanwhile)
        if "history.json" in files:
            try:
                total += len(json.loads(pathlib.Path(folder, "history.json").read_text())["epochs"])
            except (OSError, ValueError):
                pass
    return total


def _run(command: list, kill_at=None, timeout: float = 400):
    """Run ``command``; returns (exit code, epochs checkpointed at the end, output).
    ``kill_at=(epochs, seconds)``: SIGKILL ``seconds`` after that many epochs are saved."""
    logdir = pathlib.Path(command[command.index("--logdir") + 1])
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )
    started, reached = time.monotonic(), None
    while kill_at is not None and process.poll() is None and time.monotonic() - started < timeout:
        if reached is None and _epochs_checkpointed(logdir) >= kill_at[0]:
            reached = time.monotonic()
        if reached is not None and time.monotonic() - reached >= kill_at[1]:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    output = process.communicate(timeout=timeout)[0]
    return process.returncode, _epochs_checkpointed(logdir), output


def _without_timings(value):
    if isinstance(value, dict):
        return {
            key: _without_timings(item)
            for key, item in value.items()
            if key != "run" and not any(word in key for word in TIMING)
        }
    if isinstance(value, list):
        return [_without_timings(item) for item in value]
    return value


@pytest.mark.parametrize("experiment", sorted(SHORT))
def test_a_killed_run_resumes_to_the_uninterrupted_metrics(experiment, tmp_path):
    code, epochs, output = _run(_command(experiment, tmp_path / "uninterrupted"))
    assert code == 0, output
    assert epochs >= 2, f"the run saved {epochs} epochs: too few to kill it in between"
    reference = json.loads((tmp_path / "uninterrupted" / "metrics.json").read_text())

    # A random moment after the first checkpoint: after a random number of saved epochs
    # (not the last), plus a random part of a second. A run that finished first (its
    # last steps can take less than that part) is drawn again, earlier.
    seed = random.randrange(10**6)
    draw = random.Random(seed)
    kill_at = (draw.randint(1, epochs - 1), draw.uniform(0.0, 0.3))
    resumed = tmp_path / "resumed"
    for _ in range(3):
        code, _, output = _run(_command(experiment, resumed), kill_at=kill_at)
        assert code == -signal.SIGKILL, f"not killed (seed {seed}, kill at {kill_at}):\n{output}"
        if not (resumed / "metrics.json").exists():
            break
        shutil.rmtree(resumed)
        kill_at = (max(1, kill_at[0] - 1), 0.0)
    assert not (resumed / "metrics.json").exists(), f"finished before every kill (seed {seed})"

    code, _, output = _run(_command(experiment, resumed))
    assert code == 0, output
    assert "(resuming)" in output
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert _without_timings(metrics) == _without_timings(reference), f"seed {seed}, killed at {kill_at}"
    assert metrics["run"]["segments"] == 2 and metrics["run"]["resumed"]
    state = json.loads((resumed / "run_state.json").read_text())["segments"]
    assert [segment["ended"] for segment in state] == ["killed", "finished"]
    assert not list(resumed.rglob("*_temp")), "temporary checkpoint folders were left behind"


def test_a_kill_during_a_checkpoint_write_leaves_a_loadable_run(tmp_path):
    """What a kill in the middle of a write leaves (a half-merged next checkpoint and its
    _temp folder, the state file still naming the previous one) resumes from the
    previous checkpoint, and the temporary folder is gone afterwards."""
    logdir = tmp_path / "run"
    command = _command("retrieval", logdir)
    code, _, output = _run(command, kill_at=(2, 0.0))  # the first checkpoint is complete by then
    assert code == -signal.SIGKILL, output
    import tensorflow as tf

    folder = next(path.parent for path in (logdir / "checkpoints").rglob("checkpoint"))
    latest = int(tf.train.latest_checkpoint(str(folder)).rsplit("-", 1)[1])
    partial = folder / f"epoch-{latest + 1}_temp"  # (the kill may have left it already)
    partial.mkdir(exist_ok=True)
    (partial / "part-00000-of-00001.data-00000-of-00001").write_bytes(os.urandom(4096))
    (folder / f"epoch-{latest + 1}.index").write_bytes(b"half written")
    code, _, output = _run(command)
    assert code == 0, output
    assert f"resuming after epoch {latest}" in output or "(resuming)" in output
    assert not list(logdir.rglob("*_temp"))
    assert json.loads((logdir / "metrics.json").read_text())["run"]["segments"] == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["cca", "--set", "n_components=3"],
        [
            "transfer",
            "--set",
            "label_fractions=[0.05]",
            "--set",
            "seeds=1",
            "--set",
            "pretrain_epochs=2",
            "--set",
            "target_epochs=3",
            "--set",
            "distill_epochs=3",
            "--set",
            "min_epoch_steps=3",
            "--set",
            "filters=[8]",
            "--set",
            "embedding_dim=8",
        ],
    ],
)
def test_same_seed_reruns_give_identical_metrics(tmp_path, argv):
    """(The five experiments above show it too: their uninterrupted and resumed runs are
    separate processes with the same seed.)"""
    metrics = []
    for name in ("first", "second"):  # (fresh processes: --deterministic holds for the whole process)
        command = [
            sys.executable,
            "-m",
            "xmodal_tf.train",
            *argv,
            "--seed",
            "4",
            "--deterministic",
            "--logdir",
            str(tmp_path / name),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=400, stdin=subprocess.DEVNULL)
        assert completed.returncode == 0, completed.stderr[-3000:]
        metrics.append(_without_timings(json.loads((tmp_path / name / "metrics.json").read_text())))
    assert metrics[0] == metrics[1]


def test_a_saved_model_with_a_lambda_layer_is_refused(tmp_path):
    """No load path deserialises code: Keras' safe mode stays on."""
    import keras

    from xmodal_tf.transfer import transfer_weights

    ran = []
    inputs = keras.Input((3,))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda x: ran.append(1) or x * 2)(inputs))
    unsafe.save(tmp_path / "unsafe.keras")
    ran.clear()
    target = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Lambda"):
        transfer_weights(tmp_path / "unsafe.keras", target)
    assert not ran
