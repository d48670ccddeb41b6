"""The `deepcca` experiment (the CLI's default): a tiny run end to end, resume, errors."""
import json

import pytest

from xmodal_tf import train

TINY = ["--set", "hidden_units=[32]", "--set", "epochs=3", "--set", "batch_size=64",
        "--set", "n_components=4", "--set", "learning_rate=0.01"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "deepcca"
    code = train.main(["--logdir", str(logdir), "--seed", "0", *TINY])  # the default experiment
    return code, logdir


def test_default_experiment_reports_all_three_models(tiny_run):
    code, logdir = tiny_run
    assert code == 0
    assert json.loads((logdir / "config.json").read_text())["experiment"] == "deepcca"
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert set(metrics["results"]) == {"linear_cca", "deepcca", "dccae"}
    for name, result in metrics["results"].items():
        # Correlations of 4 directions: each in [0, 1], the training fit the best.
        assert 0 < result["test_total_correlation"] <= 4, name
        assert result["train_total_correlation"] >= result["test_total_correlation"] - 0.2, name
    for name in ("deepcca", "dccae"):
        assert metrics["results"][name]["epochs"] == 3
        assert metrics["results"][name]["resumed_after_epoch"] == 0
        # Even three epochs of a 16-unit network find well-correlated directions.
        assert metrics["results"][name]["test_total_correlation"] > 1.5, name


def test_run_is_checkpointed_and_resumes(tiny_run, tmp_path):
    _, logdir = tiny_run
    assert any((logdir / "checkpoints" / "deepcca").glob("epoch-3*"))
    # Asking the same run directory for more epochs continues after epoch 3.
    code = train.main(["--logdir", str(logdir), "--seed", "0", *TINY, "--set", "epochs=4",
                       "--set", 'models=["deepcca"]'])
    assert code == 0
    result = json.loads((logdir / "metrics.json").read_text())["results"]["deepcca"]
    assert result["resumed_after_epoch"] == 3 and result["epochs"] == 4


def test_model_fit_trainer(tmp_path):
    code = train.main(["deepcca", "--logdir", str(tmp_path / "run"), *TINY,
                       "--set", 'models=["deepcca"]', "--set", 'trainer="fit"'])
    assert code == 0
    result = json.loads((tmp_path / "run" / "metrics.json").read_text())["results"]["deepcca"]
    assert result["test_total_correlation"] > 1.5


def test_shift_augmentation_trains_and_is_recorded(tmp_path):
    code = train.main(["deepcca", "--logdir", str(tmp_path / "run"), *TINY,
                       "--set", 'models=["deepcca"]', "--set", "shift=1", "--set", "checkpoints=false"])
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["recipe"]["shift"] == 1
    assert metrics["results"]["deepcca"]["test_total_correlation"] > 1.5


@pytest.mark.parametrize("override, message", [
    ('models=["kcca"]', "models"),
    ("epochs=0", "epochs"),
    ("dropout=1.0", "dropout"),
    ("hidden_units=[0]", "hidden_units"),
    ('trainer="keras"', "trainer"),
    ("shift=-1", "shift"),
    ("shift=9", "shift"),
])
def test_bad_settings_exit_2(tmp_path, capsys, override, message):
    assert train.main(["deepcca", "--logdir", str(tmp_path / "run"), "--set", override]) == 2
    assert message in capsys.readouterr().err
