"""The `transfer` experiment: a tiny run end to end, its report, and its config checks."""

import json

import numpy as np
import pytest
from figure_checks import assert_figure

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
    code = train.main(
        [
            "transfer",
            "--logdir",
            str(logdir),
            "--seed",
            "1",
            "--set",
            "label_fractions=[0.05, 1.0]",
            "--set",
            "seeds=2",
            "--set",
            "pretrain_epochs=15",
            "--set",
            "target_epochs=8",
            "--set",
            "distill_epochs=8",
            "--set",
            "patience=3",
            "--set",
            "min_epoch_steps=5",
            "--set",
            "filters=[8, 16]",
            "--set",
            "embedding_dim=16",
        ]
    )
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
            summary["paired_transfer"]["mean"] - summary["scratch"]["mean"]
        )
    # Every model stopped early or at its budget, and says how many epochs it trained.
    for summary in metrics["results"].values():
        for variant in ("scratch", "transfer", "paired_transfer"):
            assert all(1 <= epochs <= 8 for epochs in summary[variant]["epochs"])
    assert 1 <= metrics["source_best_epoch"] <= metrics["source_epochs"] <= 15
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
    np.testing.assert_allclose([logged[1], logged[2]], metrics["results"]["5%"]["transfer"]["per_seed"], rtol=1e-6)
    assert len(read_scalars(logdir, "train/pretrain_accuracy")) == 15
    assert assert_figure(logdir, "accuracy_vs_label_fraction") == (640, 400)  # the key figure


@pytest.mark.parametrize(
    "override, message",
    [
        ("label_fractions=[0.0]", "label_fractions"),
        ("label_fractions=[1.5]", "label_fractions"),
        ("seeds=0", "seeds"),
        ('recipe="everything"', "recipe"),
        ("target_epochs=0", "target_epochs"),
        ("patience=0", "patience"),
        ("batch_size=0", "batch_size"),
        ('source_view="audio"', "source_view must be one of ['left', 'right']"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path, capsys, override, message):
    code = train.main(["transfer", "--logdir", str(tmp_path / "run"), "--set", override])
    assert code == 2
    assert message in capsys.readouterr().err


def test_runs_on_a_mirrored_strategy_through_the_trainer(tmp_path):
    """--strategy mirrored (one CPU replica here): pretraining, distillation and the target
    models all train in the Trainer (fine_tune's strategy path: tests/test_transfer.py)."""
    logdir = tmp_path / "mirrored"
    code = train.main(
        [
            "transfer",
            "--logdir",
            str(logdir),
            "--strategy",
            "mirrored",
            "--set",
            "label_fractions=[0.05]",
            "--set",
            "seeds=1",
            "--set",
            "pretrain_epochs=2",
            "--set",
            "target_epochs=2",
            "--set",
            "distill_epochs=2",
            "--set",
            "min_epoch_steps=2",
            "--set",
            "filters=[4, 8]",
            "--set",
            "embedding_dim=8",
        ]
    )
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
    assert transfer_experiment.subset_batch_size(32, 10, 4) == 8  # capped at the rows, then a multiple of 4
    assert transfer_experiment.subset_batch_size(32, 10, 1) == 10
    assert transfer_experiment.subset_batch_size(32, 3, 4) == 4  # one example per replica at least
    with pytest.raises(ValueError, match=r"batch_size=30 does not split evenly over 4 replicas"):
        transfer_experiment.subset_batch_size(30, 1078, 4)


def test_an_epoch_is_a_pass_or_the_minimum_number_of_batches():
    assert transfer_experiment.epoch_steps(1078, 32, 20) == 34  # a pass, the last batch partial
    assert transfer_experiment.epoch_steps(1078, 32, 20, drop_remainder=True) == 33
    assert transfer_experiment.epoch_steps(10, 10, 20) == 20  # ten labels: 20 batches, not one


def test_best_epoch_follows_the_monitor():
    history = {"val_accuracy": [0.2, 0.5, 0.4], "val_loss": [3.0, 1.0, 2.0, 0.5]}
    assert transfer_experiment.best_epoch(history) == 2
    assert transfer_experiment.best_epoch(history, ("val_loss", "min")) == 4
    # Gains of min_delta or less do not count, as in the Trainer's early stopping.
    assert transfer_experiment.best_epoch({"val_loss": [1.0, 0.5, 0.49]}, ("val_loss", "min"), 0.05) == 2


@pytest.fixture(scope="module")
def audio_visual_folder(tmp_path_factory):
    from test_multimodal_data import write_fsdd, write_mnist

    folder = tmp_path_factory.mktemp("av_data")
    write_fsdd(folder, per_digit=10)
    write_mnist(folder, n_train=11000, n_test=100)
    return folder


def test_av_mnist_pairs_recordings_with_images_of_their_digit(audio_visual_folder):
    config = {**transfer_experiment.DEFAULTS, "data": "av_mnist"}
    data = transfer_experiment.load(config, audio_visual_folder, seed=0)
    assert (data.source_view, data.target_view) == ("image", "audio")
    assert data.source["train"].inputs.shape[1:] == (28, 28, 1)
    assert data.target["train"].inputs.shape[1:] == (19, 13, 1)  # frames x MFCCs x 1
    # The recordings are split by recording: 2 of 10 per digit for test, then 2 of 8 to validate.
    assert [len(data.target[split].labels) for split in ("train", "validation", "test")] == [60, 20, 20]

    def recordings(split):  # each fake recording's first MFCC is its index, after standardising
        return {float(frames[0, 0, 0]) for frames in data.target[split].inputs}

    assert not recordings("train") & recordings("validation")
    assert not (recordings("train") | recordings("validation")) & recordings("test")
    images, audio = data.pairs["train"]
    assert len(images) == len(audio) == 60 * transfer_experiment.PAIRS_PER_RECORDING
    # Paired by digit: each pair's image is one of the training images of its recording's digit.
    image_digits = {image.tobytes(): label for image, label in zip(*data.source["train"])}
    audio_digits = {recording.tobytes(): label for recording, label in zip(*data.target["train"])}
    assert all(image_digits[i.tobytes()] == audio_digits[a.tobytes()] for i, a in zip(images, audio))
    assert len({image.tobytes() for image in images}) == len(images)  # no image used twice
    validation_images, _ = data.pairs["validation"]
    assert {i.tobytes() for i in validation_images} <= {i.tobytes() for i in data.source["validation"].inputs}
    # The reverse direction swaps the views and the pairs.
    reverse = transfer_experiment.load({**config, "source_view": "audio"}, audio_visual_folder, seed=0)
    assert (reverse.source_view, reverse.target_view) == ("audio", "image")
    np.testing.assert_array_equal(reverse.pairs["train"][0], audio)


def test_transfers_from_images_to_audio(audio_visual_folder, tmp_path):
    logdir = tmp_path / "av"
    code = train.main(
        [
            "transfer",
            "--logdir",
            str(logdir),
            "--data-dir",
            str(audio_visual_folder),
            "--set",
            'data="av_mnist"',
            "--set",
            "label_fractions=[0.5]",
            "--set",
            "seeds=1",
            "--set",
            "pretrain_epochs=1",
            "--set",
            "target_epochs=2",
            "--set",
            "distill_epochs=2",
            "--set",
            "min_epoch_steps=2",
            "--set",
            "filters=[4]",
            "--set",
            "embedding_dim=4",
        ]
    )
    assert code == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert (metrics["source_view"], metrics["target_view"]) == ("image", "audio")
    # The image model cannot read audio without training: no such figure.
    assert "source_model_on_target_test_accuracy" not in metrics
    assert metrics["results"]["50%"]["labels"] == 30  # 3 of every digit's 6 training recordings
    for variant in ("scratch", "transfer", "paired_transfer"):
        assert 0.0 <= metrics["results"]["50%"][variant]["mean"] <= 1.0
