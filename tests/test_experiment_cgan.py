"""The `cgan` experiment: tiny runs end to end (labels offline, audio on a fake FSDD file),
the Frechet distance, and config checks."""

import json
import types

import numpy as np
import pytest
from figure_checks import assert_figure

from xmodal_tf import train
from xmodal_tf.experiments import cgan as cgan_experiment
from xmodal_tf.experiments.base import check_global_batch

TINY = [
    "--set",
    "steps=20",
    "--set",
    "steps_per_epoch=10",
    "--set",
    "batch_size=32",
    "--set",
    "classifier_epochs=10",
    "--set",
    "samples_per_condition=4",
    "--set",
    "generator_filters=4",
    "--set",
    "discriminator_filters=4",
]


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert cgan_experiment.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Shifting the mean by 2 in one direction adds 4; equal covariances add nothing.
    shifted = a + np.array([2.0, 0.0, 0.0])
    assert cgan_experiment.frechet_distance(a, shifted) == pytest.approx(4.0, rel=1e-6)
    # Gaussians N(0, I) vs N(0, 4I) in 3-D: 3 * (1 + 4 - 2 * 2) = 3.
    b = rng.normal(size=(4000, 3)) * 2.0
    assert cgan_experiment.frechet_distance(a, b) == pytest.approx(3.0, abs=0.3)


def test_pair_recordings_matches_digits():
    labels = np.array([3, 1, 3, 0])
    recording_labels = np.array([0, 1, 3, 3, 1])
    rows = cgan_experiment.pair_recordings(labels, recording_labels, seed=0)
    np.testing.assert_array_equal(recording_labels[rows], labels)
    with pytest.raises(ValueError, match="digit 7"):
        cgan_experiment.pair_recordings(np.array([7]), recording_labels, seed=0)


@pytest.fixture(scope="module")
def label_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "cgan"
    code = train.main(["cgan", "--logdir", str(logdir), "--seed", "1", *TINY])
    return code, logdir


def test_tiny_label_run_reports_scores_and_logs(label_run):
    from test_train_cli import read_scalars

    code, logdir = label_run
    assert code == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["data"] == "digits" and metrics["image_shape"] == [8, 8, 1]
    assert metrics["steps"] == 20 and metrics["generated_images"] == 40
    assert 0.0 <= metrics["generated_accuracy"] <= 1.0
    assert metrics["generated_accuracy"] == pytest.approx(np.mean(metrics["generated_accuracy_per_class"]))
    assert metrics["classifier_test_accuracy"] > 0.5  # an independent classifier that works
    assert np.isfinite(metrics["frechet_distance"]) and metrics["frechet_distance"] >= 0
    assert np.isfinite(metrics["final_d_loss"]) and np.isfinite(metrics["final_g_loss"])
    # The GAN's own logs only, not the trainer's bookkeeping (epoch, steps, seconds).
    assert {key for key in metrics if key.startswith("final_")} == {
        "final_d_loss",
        "final_g_loss",
        "final_real_score",
        "final_fake_score",
        "final_r1_penalty",
        "final_real_class_loss",
        "final_fake_class_loss",
    }  # the recipe's auxiliary classifier terms
    d_loss = read_scalars(logdir, "train/d_loss")
    assert sorted(d_loss) == [10, 20]
    assert d_loss[20] == pytest.approx(metrics["final_d_loss"], rel=1e-5)
    with pytest.raises(KeyError):  # the trainer's bookkeeping (steps, seconds) is not logged
        read_scalars(logdir, "train/steps")
    assert read_scalars(logdir, "test/generated_accuracy")[1] == pytest.approx(metrics["generated_accuracy"])
    # The key figure: 8 samples (columns) of each of the 10 digits (rows).
    width, height = assert_figure(logdir, "generated_samples")
    assert width == 8 * 120 and height > 10 * 120


def write_fake_fsdd(folder, recordings_per_digit=10, seed=0):
    """A tiny fsdd_mfcc.npz: each digit's frames sit around its own mean vector."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(10, 13))
    frames, lengths, labels = [], [], []
    for digit in range(10):
        for _ in range(recordings_per_digit):
            length = int(rng.integers(6, 15))
            frames.append(centres[digit] + rng.normal(scale=0.5, size=(length, 13)))
            lengths.append(length)
            labels.append(digit)
    np.savez(
        folder / "fsdd_mfcc.npz",
        X=np.concatenate(frames).astype(np.float32),
        lengths=np.array(lengths, np.int64),
        y=np.array(labels, np.int64),
    )


def test_tiny_audio_run_on_fake_recordings(tmp_path):
    write_fake_fsdd(tmp_path)
    logdir = tmp_path / "audio_run"
    code = train.main(
        [
            "cgan",
            "--logdir",
            str(logdir),
            "--data-dir",
            str(tmp_path),
            *TINY,
            "--set",
            "condition=audio",
            "--set",
            "audio_epochs=5",
            "--set",
            "classifier_epochs=2",
            "--set",
            "audio_embedding_dim=8",
        ]
    )
    assert code == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["condition"] == "audio"
    assert metrics["held_out_recordings"] == 20  # 20% of 10 recordings of each digit
    assert metrics["generated_images"] == 20 * 4
    assert metrics["audio_test_accuracy"] > 0.5  # the fake digits are easy to hear apart
    assert 0.0 <= metrics["generated_accuracy_vs_spoken_digit"] <= 1.0
    width, height = assert_figure(logdir, "generated_samples")  # a row per digit, from held-out recordings
    assert width == 8 * 120 and height > 10 * 120


def test_mnist_without_a_data_folder_is_a_clear_error(tmp_path, capsys):
    code = train.main(["cgan", "--logdir", str(tmp_path / "run"), "--set", "data=mnist", *TINY])
    assert code == 1
    assert "mnist.npz" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        ("steps=0", "steps"),
        ("batch_size=1", "batch_size"),
        ("r1_weight=-1.0", "r1_weight"),
        ('condition="video"', "condition"),
        ('audio_code="logits"', "audio_code"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path, capsys, override, message):
    code = train.main(["cgan", "--logdir", str(tmp_path / "run"), "--set", override])
    assert code == 2
    assert message in capsys.readouterr().err


def test_mirrored_strategy_run_completes_and_records_the_distribution(tmp_path, capsys):
    logdir = tmp_path / "mirrored"
    code = train.main(
        [
            "cgan",
            "--logdir",
            str(logdir),
            "--strategy",
            "mirrored",
            *TINY,
            "--set",
            "steps=4",
            "--set",
            "steps_per_epoch=2",
            "--set",
            "classifier_epochs=1",
            "--set",
            "train_size=256",
        ]
    )
    assert code == 0
    distribution = json.loads((logdir / "config.json").read_text())["distribution"]
    assert distribution["strategy"] == "mirrored" and distribution["replicas"] == 1
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["batch_size"] == 32 and np.isfinite(metrics["final_g_loss"])
    out = capsys.readouterr().out
    assert "GAN step 4: d_loss" in out and "Epoch 2/2" not in out


def test_batch_size_must_split_over_the_replicas():
    context = types.SimpleNamespace(replicas=3, seed=0, data_dir=None, progress=lambda message: None)
    with pytest.raises(ValueError, match=r"batch_size=64 .*3 replicas.*batch_size=63"):
        cgan_experiment.run(dict(cgan_experiment.DEFAULTS), context)
    check_global_batch(63, 3, "cgan")
    # The classifiers' built-in batches are rounded down to a multiple of the replicas.
    assert cgan_experiment._fixed_batch(128, 3, 1000) == 126
    assert cgan_experiment._fixed_batch(128, 1, 100) == 100
