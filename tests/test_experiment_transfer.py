"""The `transfer` experiment: a tiny run end to end, its report, and its config checks."""
import json

import numpy as np
import pytest

from xmodal_tf import train
from xmodal_tf.experiments import transfer as transfer_experiment


def test_label_subset_is_stratified_and_reproducible():
    labels = np.repeat(np.arange(10), 30)
    rows = transfer_experiment.label_subset(labels, 0.1, 10, seed=4)
    assert len(rows) == 30 and np.all(np.bincount(labels[rows], minlength=10) == 3)
    np.testing.assert_array_equal(rows, transfer_experiment.label_subset(labels, 0.1, 10, seed=4))
    assert not np.array_equal(rows, transfer_experiment.label_subset(labels, 0.1, 10, seed=5))
    # A tiny fraction still gets one example of every class.
    tiny = transfer_experiment.label_subset(labels, 0.001, 10, seed=0)
    assert sorted(labels[tiny]) == list(range(10))
    assert len(transfer_experiment.label_subset(labels, 1.0, 10, seed=0)) == len(labels)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "transfer"
    code = train.main(["transfer", "--logdir", str(logdir), "--seed", "1",
                       "--set", "label_fractions=[0.05, 1.0]", "--set", "seeds=2",
                       "--set", "pretrain_epochs=15", "--set", "target_steps=40",
                       "--set", "distill_steps=40",
                       "--set", "filters=[8, 16]", "--set", "embedding_dim=16"])
    return code, logdir


def test_tiny_run_reports_scratch_and_transfer_per_fraction(tiny_run):
    code, logdir = tiny_run
    assert code == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert set(metrics["results"]) == {"5%", "100%"}
    assert metrics["results"]["100%"]["labels"] == 1078
    assert metrics["results"]["5%"]["labels"] == 51  # about 5% of every class
    for summary in metrics["results"].values():
        for variant in ("scratch", "transfer", "paired_transfer"):
            per_seed = summary[variant]["per_seed"]
            assert len(per_seed) == 2 and all(0.0 <= value <= 1.0 for value in per_seed)
            assert summary[variant]["mean"] == pytest.approx(np.mean(per_seed))
            assert summary[variant]["std"] == pytest.approx(np.std(per_seed))
        assert summary["paired_transfer_minus_scratch"] == pytest.approx(
            summary["paired_transfer"]["mean"] - summary["scratch"]["mean"])
    # The pretrained source model learned its own view (chance is 0.1).
    assert metrics["source_test_accuracy"] > 0.5
    # Distillation over the unlabelled pairs carries the source model's knowledge over:
    # even this tiny run is well above chance (0.1) and above training from scratch.
    few = metrics["results"]["5%"]
    assert few["paired_transfer"]["mean"] > max(0.25, few["scratch"]["mean"])


def test_tiny_run_logs_tensorboard_scalars(tiny_run):
    from test_train_cli import read_scalars

    _, logdir = tiny_run
    metrics = json.loads((logdir / "metrics.json").read_text())
    logged = read_scalars(logdir, "test/accuracy_5%_labels/transfer")
    np.testing.assert_allclose([logged[1], logged[2]],
                               metrics["results"]["5%"]["transfer"]["per_seed"], rtol=1e-6)
    assert len(read_scalars(logdir, "train/pretrain_accuracy")) == 15


@pytest.mark.parametrize("override, message", [
    ("label_fractions=[0.0]", "label_fractions"),
    ("label_fractions=[1.5]", "label_fractions"),
    ("seeds=0", "seeds"),
    ("recipe=\"everything\"", "recipe"),
])
def test_bad_settings_are_config_errors(tmp_path, capsys, override, message):
    code = train.main(["transfer", "--logdir", str(tmp_path / "run"), "--set", override])
    assert code == 2
    assert message in capsys.readouterr().err


def test_runs_on_a_mirrored_strategy_through_the_trainer(tmp_path):
    """--strategy mirrored (one CPU replica here): pretraining, distillation and the target
    models all train in the Trainer (fine_tune's strategy path: tests/test_transfer.py)."""
    logdir = tmp_path / "mirrored"
    code = train.main(["transfer", "--logdir", str(logdir), "--strategy", "mirrored",
                       "--set", "label_fractions=[0.05]", "--set", "seeds=1", "--set", "pretrain_epochs=2",
                       "--set", "target_steps=4", "--set", "distill_steps=2",
                       "--set", "filters=[4, 8]", "--set", "embedding_dim=8"])
    assert code == 0
    config = json.loads((logdir / "config.json").read_text())
    assert config["distribution"] == {"strategy": "mirrored", "replicas": 1, "workers": 1, "task": None}
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["recipe"] == "full" and set(metrics["results"]) == {"5%"}
    for variant in ("scratch", "transfer", "paired_transfer"):
        assert 0.0 <= metrics["results"]["5%"][variant]["mean"] <= 1.0
    from test_train_cli import read_scalars

    assert len(read_scalars(logdir, "train/pretrain_accuracy")) == 2


def test_batch_sizes_split_over_the_replicas():
    assert transfer_experiment.subset_batch_size(32, 1078, 4) == 32
    assert transfer_experiment.subset_batch_size(32, 10, 4) == 8    # capped at the rows, then a multiple of 4
    assert transfer_experiment.subset_batch_size(32, 10, 1) == 10
    assert transfer_experiment.subset_batch_size(32, 3, 4) == 4     # one example per replica at least
    with pytest.raises(ValueError, match=r"batch_size=30 does not split evenly over 4 replicas"):
        transfer_experiment.subset_batch_size(30, 1078, 4)
    # The two-stage recipe's epochs give the requested steps, with or without a dropped remainder.
    assert transfer_experiment._epochs_for(150, 51, 32) == 75
    assert transfer_experiment._epochs_for(150, 51, 32, drop_remainder=True) == 150
