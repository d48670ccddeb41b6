"""The `mae` experiment through the CLI: tiny runs end to end, metrics.json, TensorBoard files, errors."""

import glob
import json
import types

import numpy as np
import pytest
from figure_checks import assert_figure

from xmodal_tf import train
from xmodal_tf.experiments import mae
from xmodal_tf.experiments.base import check_global_batch

SMALL_NETWORKS = [
    "--set",
    "code_dim=8",
    "--set",
    "embedding_dim=8",
    "--set",
    "filters=[8]",
    "--set",
    "decoder_hidden_units=[16]",
]
TINY = ["--set", "epochs=2", "--set", "train_size=300", *SMALL_NETWORKS, "--set", "batch_size=100"]
PROBES = {
    "left_to_right",
    "right_to_left",
    "left_to_left",
    "right_to_right",
    "both_to_both",
    "both_left_noise",
    "both_right_noise",
}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "mae"
    code = train.main(["mae", "--logdir", str(logdir), "--seed", "0", *TINY])
    return code, logdir


def test_digits_run_reports_both_models(digits_run):
    code, logdir = digits_run
    assert code == 0
    assert json.loads((logdir / "config.json").read_text())["experiment"] == "mae"
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["modalities"] == ["left", "right"] and metrics["chance_accuracy"] == 0.1
    assert metrics["num_train"] == 300 and metrics["num_test"] == 360
    assert set(metrics["results"]) == {"dropout", "no_dropout"}
    assert metrics["results"]["dropout"]["modality_dropout"] == 0.5
    assert metrics["results"]["no_dropout"]["modality_dropout"] == 0.0
    for name, result in metrics["results"].items():
        assert set(result["probe_accuracy"]) == PROBES, name
        assert all(0.0 <= value <= 1.0 for value in result["probe_accuracy"].values()), name
        # Two epochs already give codes far better than chance within a modality.
        assert result["probe_accuracy"]["both_to_both"] > 0.3, name
        for group in ("test_reconstruction_mse", "test_translation_mse"):
            assert all(0 < value < 1 for value in result[group].values()), (name, group)
        assert set(result["test_translation_mse"]) == {"left_to_right", "right_to_left"}


def test_digits_run_writes_tensorboard_images_and_projector(digits_run):
    from test_train_cli import read_scalars

    _, logdir = digits_run
    for name in ("dropout", "no_dropout"):
        assert glob.glob(str(logdir / name / "events.out.tfevents.*"))  # reconstruction grids
        # The trainer's loss curves: one point per epoch (steps 1, 2), held out too.
        assert sorted(read_scalars(logdir / name, "train/loss")) == [1, 2]
        assert sorted(read_scalars(logdir / name, "validation/reconstruction_left")) == [1, 2]
        projector = logdir / name  # the model's own run: no run without scalars
        assert "shared_code" in (projector / "projector_config.pbtxt").read_text()
        metadata = (projector / "metadata.tsv").read_text().splitlines()
        assert metadata[0] == "label\tpresent" and len(metadata) == 1 + 3 * 360
        assert {line.split("\t")[1] for line in metadata[1:]} == {"left", "right", "left+right"}
    assert glob.glob(str(logdir / "events.out.tfevents.*"))  # the final scalars
    # The key figures: 8 test examples (columns); the originals, then for each model its
    # reconstructions from both halves and its translations from the other half (5 rows).
    for modality in ("left", "right"):
        width, height = assert_figure(logdir, f"reconstructions_{modality}")
        assert width == 8 * 120 and height > 5 * 120


@pytest.mark.parametrize("audio_encoder, layer", [("rnn", "audio_encoder_gru0"), ("attention", "audio_encoder_block0")])
def test_av_mnist_recipe_builds_an_image_and_audio_model(audio_encoder, layer):
    settings = mae.settings_for(dict(mae.DEFAULTS, data="av_mnist", audio_encoder=audio_encoder))
    assert settings["train_size"] == 10000 and settings["images_every"] == 1
    model = mae.build_model({"image": (28, 28, 1), "audio": (12, 13)}, settings, 0.5, seed=0)  # 12 frames: faster
    assert model.encoders["audio"].get_layer(layer) is not None
    batch = {"image": np.zeros((2, 28, 28, 1), "float32"), "audio": np.ones((2, 12, 13), "float32")}
    reconstructions = model(batch)  # eager: no tracing
    assert reconstructions["image"].shape == (2, 28, 28, 1) and reconstructions["audio"].shape == (2, 12, 13)
    assert model.dropout_shares == (0.25, 0.25)


def test_av_mnist_without_data_files_fails_clearly(tmp_path, capsys):
    code = train.main(["mae", "--logdir", str(tmp_path / "run"), "--set", "data=av_mnist", "--data-dir", str(tmp_path)])
    assert code == 1
    assert "mnist.npz" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        ("modality_dropout=0", "modality_dropout"),
        ("modality_dropout=1.5", "modality_dropout"),
        ("epochs=0", "epochs"),
        ("filters=[]", "filters"),
        ('audio_encoder="cnn"', "audio_encoder"),
        ('data="mnist"', "data"),
    ],
)
def test_bad_settings_exit_2(tmp_path, capsys, override, message):
    assert train.main(["mae", "--logdir", str(tmp_path / "run"), "--set", override]) == 2
    assert message in capsys.readouterr().err


def test_mirrored_strategy_run_completes_and_records_the_distribution(tmp_path, capsys):
    logdir = tmp_path / "mirrored"
    code = train.main(
        [
            "mae",
            "--logdir",
            str(logdir),
            "--strategy",
            "mirrored",
            "--set",
            "epochs=1",
            "--set",
            "train_size=100",
            "--set",
            "probe_size=100",
            "--set",
            "validation_size=50",
            *SMALL_NETWORKS,
            "--set",
            "batch_size=50",
        ]
    )
    assert code == 0
    distribution = json.loads((logdir / "config.json").read_text())["distribution"]
    assert distribution["strategy"] == "mirrored" and distribution["replicas"] == 1
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert set(metrics["results"]) == {"dropout", "no_dropout"} and metrics["num_train"] == 100
    # The experiment's progress lines, not the trainer's own per-epoch line as well.
    out = capsys.readouterr().out
    assert "dropout: epoch 1/1: loss" in out and "Epoch 1/1" not in out


def test_batch_size_must_split_over_the_replicas():
    context = types.SimpleNamespace(replicas=3, seed=0, data_dir=None, progress=lambda message: None)
    with pytest.raises(ValueError, match=r"batch_size=64 .*3 replicas.*batch_size=63"):
        mae.run(dict(mae.DEFAULTS), context)
    check_global_batch(66, 3, "mae")  # a multiple is fine
    with pytest.raises(ValueError, match="larger than the 50 training pairs"):
        check_global_batch(66, 3, "mae", rows=50)
