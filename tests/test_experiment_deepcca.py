"""The `deepcca` experiment (the CLI's default): a tiny run end to end, resume, errors."""

import json

import numpy as np
import pytest
from figure_checks import assert_figure

from xmodal_tf import train

TINY = [
    "--set",
    "hidden_units=[32]",
    "--set",
    "epochs=3",
    "--set",
    "batch_size=64",
    "--set",
    "n_components=4",
    "--set",
    "learning_rate=0.01",
]


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
        # ... each direction's, drawn in the key figure: the spectrum of every model.
        assert len(result["test_correlations"]) == 4, name
        assert sum(result["test_correlations"]) == pytest.approx(result["test_total_correlation"], abs=1e-5), name
    assert assert_figure(logdir, "canonical_correlations") == (640, 400)
    for name in ("deepcca", "dccae"):
        assert metrics["results"][name]["epochs"] == 3
        # Even three epochs of a 16-unit network find well-correlated directions.
        assert metrics["results"][name]["test_total_correlation"] > 1.5, name


def test_finished_run_keeps_only_its_last_checkpoint_and_its_history(tiny_run):
    _, logdir = tiny_run
    folder = logdir / "checkpoints" / "deepcca"
    assert sorted(path.name for path in folder.glob("epoch-*.index")) == ["epoch-3.index"]  # pruned from 3
    history = json.loads((folder / "history.json").read_text())
    assert [logs["epoch"] for logs in history["epochs"]] == [0, 1, 2]
    assert history["calls"] == [{"first": 0, "until": 3}]
    run = json.loads((logdir / "metrics.json").read_text())["run"]
    assert run["segments"] == 1 and not run["resumed"] and run["wall_seconds"] > 0


def test_model_fit_trainer(tmp_path):
    code = train.main(
        ["deepcca", "--logdir", str(tmp_path / "run"), *TINY, "--set", 'models=["deepcca"]', "--set", 'trainer="fit"']
    )
    assert code == 0
    result = json.loads((tmp_path / "run" / "metrics.json").read_text())["results"]["deepcca"]
    assert result["test_total_correlation"] > 1.5


@pytest.mark.parametrize("trainer", ["custom", "fit"])
def test_shift_augmentation_then_unshifted_final_epochs(tmp_path, capsys, trainer):
    code = train.main(
        [
            "deepcca",
            "--logdir",
            str(tmp_path / "run"),
            *TINY,
            "--set",
            'models=["deepcca"]',
            "--set",
            "shift=1",
            "--set",
            "unshifted_final_epochs=1",
            "--set",
            f'trainer="{trainer}"',
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["recipe"]["shift"] == 1 and metrics["recipe"]["unshifted_final_epochs"] == 1
    assert metrics["results"]["deepcca"]["test_total_correlation"] > 1.5
    output = capsys.readouterr().out
    if trainer == "custom":  # two shifted epochs, then the last one on the plain pairs
        assert "Epoch 2/2" in output and "Epoch 3/3" in output


def test_training_phases():
    from xmodal_tf.data import load_two_view_digits
    from xmodal_tf.experiments.deepcca import DEFAULTS, resolved, training_phases

    digits = load_two_view_digits()
    config = resolved(dict(DEFAULTS, epochs=5, shift=1, unshifted_final_epochs=2))
    phases = training_phases(digits, digits.train[:2], 64, config, seed=0)
    assert [until for _, until in phases] == [3, 5]
    shifted, plain = (next(iter(data)) for data, _ in phases)
    assert not np.array_equal(shifted[0].numpy(), plain[0].numpy())  # same seed: same order, shifted
    assert [until for _, until in training_phases(digits, digits.train[:2], 64, dict(config, shift=0), 0)] == [5]
    everything_plain = dict(config, unshifted_final_epochs=9)
    assert [until for _, until in training_phases(digits, digits.train[:2], 64, everything_plain, 0)] == [5]


@pytest.mark.parametrize(
    "override, message",
    [
        ('models=["kcca"]', "models"),
        ("epochs=0", "epochs"),
        ("dropout=1.0", "dropout"),
        ("hidden_units=[0]", "hidden_units"),
        ('trainer="keras"', "trainer"),
        ("shift=-1", "shift"),
        ("shift=9", "shift"),
        ("unshifted_final_epochs=-1", "unshifted_final_epochs"),
        ("reconstruction_weight=-1", "reconstruction_weight"),
        ('reconstruction_weight="big"', "reconstruction_weight"),
    ],
)
def test_bad_settings_exit_2(tmp_path, capsys, override, message):
    assert train.main(["deepcca", "--logdir", str(tmp_path / "run"), "--set", override]) == 2
    assert message in capsys.readouterr().err


def test_reconstruction_weight_default_is_the_class_default(tiny_run):
    """The CLI's DCCAE weight is DeepCCA's default (issue 16): one number, one place."""
    from xmodal_tf.experiments.deepcca import DEFAULTS
    from xmodal_tf.models.deepcca import DEFAULT_RECONSTRUCTION_WEIGHT

    assert DEFAULTS["reconstruction_weight"] is None
    _, logdir = tiny_run
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["reconstruction_weight"] == DEFAULT_RECONSTRUCTION_WEIGHT


@pytest.mark.parametrize("weight, decoders", [(None, True), (0.5, True), (0, False), (0.0, False)])
def test_dccae_weight_zero_is_deepcca_without_decoders(weight, decoders):
    from xmodal_tf.data import load_two_view_digits
    from xmodal_tf.experiments.deepcca import DEFAULTS, build_model, resolved
    from xmodal_tf.models.deepcca import DEFAULT_RECONSTRUCTION_WEIGHT

    config = resolved(dict(DEFAULTS, hidden_units=[8], n_components=2, reconstruction_weight=weight))
    model = build_model(load_two_view_digits(), config, with_decoders=True)
    assert (model.decoder_x is not None) is decoders and (model.decoder_y is not None) is decoders
    expected = {None: DEFAULT_RECONSTRUCTION_WEIGHT, 0.5: 0.5}.get(weight, 0.0)
    assert model.reconstruction_weight == expected


@pytest.mark.parametrize("objective", ["barlow_twins", "ey_unbiased"])
def test_other_objectives_run_and_small_batches_are_allowed_for_them(tmp_path, objective):
    batch = ["--set", "batch_size=4"]  # at or below n_components=4: refused for the whitened objectives
    args = ["deepcca", "--logdir", str(tmp_path / objective), *TINY, *batch, "--set", 'models=["deepcca"]']
    assert train.main([*args, "--set", f"objective={objective}", "--set", "epochs=1"]) == 0
    metrics = json.loads((tmp_path / objective / "metrics.json").read_text())
    assert json.loads((tmp_path / objective / "config.json").read_text())["config"]["objective"] == objective
    assert 1.0 < metrics["results"]["deepcca"]["test_total_correlation"] <= 4
    assert train.main([*args, "--logdir", str(tmp_path / "trace"), "--set", "objective=trace"]) == 2
