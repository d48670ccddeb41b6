"""The command line `python -m xmodal_tf.train`: runs, run directories, errors."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from xmodal_tf import train


def read_scalars(logdir: pathlib.Path, tag: str) -> dict:
    """{step: value} of one TensorBoard scalar written with tf.summary (stored as tensors)."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {event.step: float(tf.make_ndarray(event.tensor_proto)) for event in accumulator.Tensors(tag)}


@pytest.fixture(scope="module")
def cca_run(tmp_path_factory):
    """One run of the cca experiment with its defaults."""
    logdir = tmp_path_factory.mktemp("runs") / "cca"
    code = train.main(["cca", "--logdir", str(logdir), "--seed", "3"])
    return code, logdir


def test_cca_run_writes_config_metrics_and_tensorboard(cca_run):
    code, logdir = cca_run
    assert code == 0
    config = json.loads((logdir / "config.json").read_text())
    assert config["experiment"] == "cca" and config["seed"] == 3
    assert config["config"]["data"] == "two_view_digits"
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["n_components"] == 10 and len(metrics["test_correlations"]) == 10
    assert metrics["reg"] in config["config"]["reg"]
    # Selected on validation: no other ridge scored higher there.
    assert metrics["validation_total_correlation_by_reg"][str(metrics["reg"])] == pytest.approx(
        max(metrics["validation_total_correlation_by_reg"].values())
    )
    assert 4.0 < metrics["test_total_correlation"] < metrics["train_total_correlation"] <= 10
    # Cross-view transfer through the shared space, far above chance (0.1).
    assert metrics["probe_accuracy_x_to_y"] > 0.5 and metrics["probe_accuracy_y_to_x"] > 0.5
    curve = read_scalars(logdir, "test_details/canonical_correlation")
    np.testing.assert_allclose([curve[step] for step in range(1, 11)], metrics["test_correlations"], rtol=1e-6)
    assert read_scalars(logdir, "test/total_correlation")[1] == pytest.approx(
        metrics["test_total_correlation"], rel=1e-6
    )


def test_summary_is_printed(tmp_path, capsys):
    assert train.main(["cca", "--logdir", str(tmp_path / "run"), "--set", "probe=false"]) == 0
    out = capsys.readouterr().out
    assert "linear CCA on two_view_digits" in out and "test" in out
    assert str(tmp_path / "run") in out
    assert "probe_accuracy_x_to_y" not in json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_config_file_and_overrides(tmp_path):
    config_file = tmp_path / "run.toml"
    config_file.write_text('experiment = "cca"\nn_components = 4\nreg = [0.01]\nprobe = false\n')
    logdir = tmp_path / "run"
    assert train.main(["--config", str(config_file), "--set", "n_components=3", "--logdir", str(logdir)]) == 0
    resolved = json.loads((logdir / "config.json").read_text())["config"]
    assert resolved["n_components"] == 3  # --set beats the file
    assert resolved["reg"] == [0.01]
    assert json.loads((logdir / "metrics.json").read_text())["reg"] == 0.01


def test_split_mnist_through_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10100, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=10100).astype(np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=images, y_train=labels, x_test=images[:50], y_test=labels[:50])
    logdir = tmp_path / "run"
    assert (
        train.main(
            [
                "cca",
                "--set",
                "data=split_mnist",
                "--set",
                "n_components=5",
                "--set",
                "reg=0.1",
                "--set",
                "probe=false",
                "--data-dir",
                str(tmp_path),
                "--logdir",
                str(logdir),
            ]
        )
        == 0
    )
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["data"] == "split_mnist" and len(metrics["test_correlations"]) == 5


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ccaa"], "unknown experiment 'ccaa'. Did you mean 'cca'?"),
        (["--set", "n_components"], "--set expects key=value"),
        (["--set", "regg=0.1"], "unknown setting 'regg'. Did you mean 'reg'?"),
        (["cca", "--set", "probe=perhaps"], "probe must be true or false"),
        (["--set", "batch_norm=perhaps"], "batch_norm must be true or false"),
        (["--set", "data=imagenet"], "data='imagenet' is not one of: two_view_digits, split_mnist"),
    ],
)
def test_bad_command_lines_exit_2_with_a_message(argv, message, tmp_path, capsys):
    assert train.main([*argv, "--logdir", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing is created for a rejected command


def test_malformed_config_file_exits_2(tmp_path, capsys):
    config_file = tmp_path / "broken.toml"
    config_file.write_text("n_components = = 3")
    assert train.main(["--config", str(config_file)]) == 2
    assert "broken.toml is not valid TOML" in capsys.readouterr().err


def test_missing_mnist_fails_fast_with_advice(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.keras or ~/tensorflow_datasets copy
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    monkeypatch.setattr("xmodal_tf.data.datasets._network_reachable", lambda *a, **k: False)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = train.main(["cca", "--set", "data=split_mnist", "--data-dir", str(empty), "--logdir", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert "mnist.npz" in err and str(empty) in err


def test_default_logdir_is_timestamped_and_unique(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = train.default_logdir("cca")
    assert first.parent == pathlib.Path("tensorboard_logs") and first.name.startswith("cca-")
    first.mkdir(parents=True)
    assert train.default_logdir("cca") != first


def test_help_lists_experiments_in_a_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "xmodal_tf.train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert "experiments (default: deepcca)" in result.stdout
    assert "cca " in result.stdout and "transfer " in result.stdout and "--set KEY=VALUE" in result.stdout


def test_seed_reaches_keras():
    """Experiments import TensorFlow lazily, so --seed must seed TensorFlow's global
    generator (tf.random, tf.data shuffles) before it is imported: two fresh processes
    seeded alike draw the same numbers."""
    code = (
        "from xmodal_tf import train; train.seed_everything(7); import tensorflow as tf; "
        "print(tf.random.uniform((4,)).numpy().tolist())"
    )
    draws = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        .stdout.strip()
        .splitlines()[-1]
        for _ in range(2)
    ]
    assert draws[0] == draws[1] and draws[0].startswith("[")


def test_mixed_precision_and_jit_reach_the_config_and_the_models(tmp_path):
    # The mae experiment trains two autoencoders through the Trainer; both must run in
    # bfloat16 with XLA (on the CPU, XLA stands in for the GPU).
    logdir = tmp_path / "run"
    code = train.main(
        [
            "mae",
            "--logdir",
            str(logdir),
            "--mixed-precision",
            "bfloat16",
            "--jit",
            "on",
            "--set",
            "epochs=1",
            "--set",
            "train_size=200",
            "--set",
            "batch_size=100",
            "--set",
            "code_dim=8",
            "--set",
            "embedding_dim=8",
            "--set",
            "filters=[8]",
            "--set",
            "decoder_hidden_units=[16]",
        ]
    )
    assert code == 0
    config = json.loads((logdir / "config.json").read_text())["config"]
    assert config["mixed_precision"] == "bfloat16" and config["jit"] == "on"
    trained = json.loads((logdir / "metrics.json").read_text())["trained_models"]
    assert len(trained) >= 2
    assert all(entry["mixed_precision"] == "bfloat16" and entry["jit_compile"] for entry in trained)


def test_precision_settings_are_checked_and_refused_where_nothing_trains(tmp_path, capsys):
    assert train.main(["cca", "--mixed-precision", "bfloat16", "--logdir", str(tmp_path / "a")]) == 2
    assert "experiment 'cca' trains no network" in capsys.readouterr().err
    assert train.main(["mae", "--set", "mixed_precision=half", "--logdir", str(tmp_path / "b")]) == 2
    assert "mixed_precision='half' is not one of: off, float16, bfloat16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["mae", "--jit", "maybe"])
    assert "invalid choice: 'maybe'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_training_settings_match_xmodal_tf_precision():
    from xmodal_tf import precision
    from xmodal_tf.experiments import list_experiments
    from xmodal_tf.experiments.base import TRAINING_CHOICES, TRAINING_SETTINGS

    assert TRAINING_CHOICES == {"mixed_precision": precision.MIXED_PRECISION, "jit": precision.JIT}
    assert TRAINING_SETTINGS == {"mixed_precision": "off", "jit": "auto"}
    for experiment in list_experiments():
        if experiment.name != "cca":
            assert {key: experiment.defaults[key] for key in TRAINING_SETTINGS} == TRAINING_SETTINGS, experiment.name


def test_a_config_file_that_is_not_utf8_is_a_one_line_error(tmp_path, capsys):
    config_file = tmp_path / "bad.toml"
    config_file.write_bytes(b"n_components = 3\n# caf\xe9\n")
    assert train.main(["cca", "--config", str(config_file), "--logdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"config file {config_file} is not UTF-8 text" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_an_unwritable_logdir_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert train.main(["cca", "--logdir", str(blocker / "run"), "--set", "probe=false"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the run directory {blocker / 'run'}" in err and "--logdir" in err
    assert "Traceback" not in err


def test_run_files_are_readable_by_others_as_plain_files_are(tmp_path):
    logdir = tmp_path / "run"
    assert train.main(["cca", "--logdir", str(logdir), "--set", "probe=false"]) == 0
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.json", "metrics.json"):
        assert (logdir / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import dataclasses

    from xmodal_tf.experiments import get_experiment

    def interrupted(config, context):
        raise KeyboardInterrupt

    cca = dataclasses.replace(get_experiment("cca"), run=interrupted)
    monkeypatch.setattr(train, "get_experiment", lambda name: cca)
    assert train.main(["cca", "--logdir", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert f"interrupted; the same command (with --logdir {tmp_path / 'run'}) resumes" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("n_components=-1", "n_components must be a positive int"),
        ("reg=[-1]", "reg must be a non-empty list of ridges >= 0"),
    ],
)
def test_cca_settings_are_validated_before_anything_is_written(tmp_path, capsys, override, message):
    assert train.main(["cca", "--set", override, "--logdir", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_tensorflow_start_up_lines_are_held_back_in_a_fresh_process(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    completed = subprocess.run(
        [sys.executable, "-m", "xmodal_tf.train", "cca", "--set", "probe=false", "--logdir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "absl::InitializeLog" not in completed.stderr and "oneDNN custom operations" not in completed.stderr
    assert "total correlation" in completed.stdout or "canonical" in completed.stdout


# --------------------------------------------------------------------- --seeds
def test_seeds_run_each_seed_in_its_folder_and_aggregate(tmp_path, capsys):
    logdir = tmp_path / "seeds"
    command = ["cca", "--seeds", "2", "--seed", "3", "--logdir", str(logdir), "--set", "probe=false"]
    assert train.main(command) == 0
    runs = [logdir / "seed-3", logdir / "seed-4"]
    assert [json.loads((run / "config.json").read_text())["seed"] for run in runs] == [3, 4]
    summary = json.loads((logdir / "seeds.json").read_text())
    assert summary["seeds"] == [3, 4] and summary["runs"] == [str(run) for run in runs]
    each = [json.loads((run / "metrics.json").read_text())["test_total_correlation"] for run in runs]
    assert summary["values"]["test_total_correlation"] == each
    assert summary["mean"]["test_total_correlation"] == pytest.approx(np.mean(each))
    assert summary["std"]["test_total_correlation"] == pytest.approx(np.std(each))
    assert "run" not in summary["mean"] and "mean ± std" in capsys.readouterr().out
    # The same command again trains nothing: each seed is summarised.
    written = [(run / "metrics.json").stat().st_mtime_ns for run in runs]
    assert train.main(command) == 0
    assert [(run / "metrics.json").stat().st_mtime_ns for run in runs] == written
    assert capsys.readouterr().out.count("has finished; nothing was changed") == 2


def test_seeds_stop_at_a_failed_seed(tmp_path, capsys):
    logdir = tmp_path / "seeds"
    code = train.main(
        [
            "cca",
            "--seeds",
            "2",
            "--logdir",
            str(logdir),
            "--set",
            "data=split_mnist",
            "--data-dir",
            str(tmp_path / "empty"),
        ]
    )
    assert code != 0
    assert "stopped at seed 0" in capsys.readouterr().err
    assert not (logdir / "seed-1").exists() and not (logdir / "seeds.json").exists()


def test_seeds_become_the_setting_of_experiments_that_repeat_inside_a_run():
    parser = train.build_parser()
    experiment, config = train.prepare(parser.parse_args(["fusion", "--seeds", "2"]))
    assert config["seeds"] == 2 and not train.repeats_runs(parser.parse_args(["fusion", "--seeds", "2"]), experiment)
    experiment, config = train.prepare(parser.parse_args(["mae", "--seeds", "2"]))
    assert "seeds" not in config and train.repeats_runs(parser.parse_args(["mae", "--seeds", "2"]), experiment)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["cca", "--seeds", "0"], "--seeds must be >= 1"),
        (["fusion", "--seeds", "2", "--set", "seeds=3"], "disagree"),
        (["cca", "--seeds", "2", "--strategy", "multiworker"], "one command per seed"),
    ],
)
def test_seeds_bad_options_are_refused(arguments, message, capsys, monkeypatch):
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}),
    )
    assert train.main(arguments) == 2
    assert message in capsys.readouterr().err


def test_seeds_refuse_a_folder_they_did_not_write(tmp_path, capsys):
    single = tmp_path / "single"
    assert train.main(["cca", "--logdir", str(single), "--set", "probe=false"]) == 0
    assert train.main(["cca", "--seeds", "2", "--logdir", str(single)]) == 2
    assert "run directory of one seed" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert train.main(["cca", "--seeds", "2", "--logdir", str(other)]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert sorted(path.name for path in other.iterdir()) == ["notes.txt"]
