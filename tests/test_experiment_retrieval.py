"""The `retrieval` experiment: a tiny offline run end to end, the emoji split, config checks."""
import json
import types

import numpy as np
import pytest

from xmodal_tf import train
from xmodal_tf.experiments import retrieval
from xmodal_tf.experiments.base import check_global_batch

TINY = ["--set", "filters=[16]", "--set", "embedding_dim=32", "--set", "projection_dim=16"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "retrieval"
    code = train.main(["retrieval", "--logdir", str(logdir), "--seed", "1", "--set", "epochs=12", *TINY])
    return code, logdir


def test_tiny_digits_run_reports_retrieval_and_zero_shot_above_chance(tiny_run, capsys):
    code, logdir = tiny_run
    assert code == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    image_to_text, text_to_image = metrics["image_to_text"], metrics["text_to_image"]
    # 40 phrases (4 templates x 10 digits) against 360 test images.
    assert (image_to_text["num_queries"], image_to_text["num_gallery"]) == (360, 40)
    assert (text_to_image["num_queries"], text_to_image["num_gallery"]) == (40, 360)
    # Four of the 40 phrases name an image's digit: chance recall@1 is 4 / 40.
    assert image_to_text["chance_recall@1"] == pytest.approx(0.1)
    assert metrics["zero_shot"]["chance"] == pytest.approx(0.1) and metrics["zero_shot"]["num_classes"] == 10
    for result in (image_to_text, text_to_image):
        recalls = [result[f"recall@{k}"] for k in (1, 5, 10)]
        assert recalls == sorted(recalls) and 0 <= recalls[0] <= recalls[-1] <= 1
        assert result["median_rank"] >= 1
    # Even twelve epochs of a one-block CNN learn well above chance.
    assert image_to_text["recall@1"] > 0.4 and text_to_image["recall@1"] > 0.4
    assert metrics["zero_shot"]["accuracy"] > 0.3
    assert 0.01 <= metrics["temperature"] <= 1.0
    assert metrics["recipe"]["batch_norm"] is False  # the digits default (see DEFAULTS)


def test_tiny_run_logs_per_epoch_scalars(tiny_run):
    from test_train_cli import read_scalars

    _, logdir = tiny_run
    assert sorted(read_scalars(logdir, "train/loss")) == list(range(1, 13))
    with pytest.raises(KeyError):  # the trainer's bookkeeping (steps, seconds) is not logged
        read_scalars(logdir, "train/steps")
    metrics = json.loads((logdir / "metrics.json").read_text())
    logged = read_scalars(logdir, "test/image_to_text_recall@5")
    assert logged[1] == pytest.approx(metrics["image_to_text"]["recall@5"], rel=1e-6)
    assert read_scalars(logdir, "test/zero_shot_accuracy")[1] == pytest.approx(metrics["zero_shot"]["accuracy"])


def fake_openmoji(folder, n_emoji=12):
    """A tiny file in the layout of openmoji64.npz: colour blocks named by colour, with skin tones."""
    rng = np.random.default_rng(0)
    names, images = [], []
    for index in range(n_emoji):
        colour = rng.integers(0, 256, 3)
        for tone in ("", " light skin tone", " dark skin tone"):
            names.append(f"shape number {index}{tone}")
            images.append(np.broadcast_to(colour, (64, 64, 3)).astype(np.uint8))
    np.savez(folder / "openmoji64.npz", images=np.stack(images), names=np.array(names))


def test_openmoji_path_runs_on_a_local_file_with_unseen_classes(tmp_path):
    fake_openmoji(tmp_path)
    logdir = tmp_path / "run"
    code = train.main(["retrieval", "--logdir", str(logdir), "--data-dir", str(tmp_path),
                       "--set", "data=\"openmoji\"", "--set", "epochs=1", "--set", "image_size=8",
                       "--set", "test_fraction=0.25", "--set", "ks=[1, 5]", *TINY])
    assert code == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    # 3 of 12 emoji held out whole: 9 test images (3 skin-tone variants each), 3 unseen classes.
    assert metrics["num_test_images"] == 9 and metrics["num_train_pairs"] == 27
    assert metrics["zero_shot"]["num_classes"] == 3 and metrics["zero_shot"]["chance"] == pytest.approx(1 / 3)
    assert metrics["image_to_text"]["chance_recall@1"] == pytest.approx(1 / 9)
    assert set(metrics["image_to_text"]) >= {"recall@1", "recall@5", "median_rank"}


def test_openmoji_without_the_file_fails_with_a_clear_message(tmp_path, capsys):
    code = train.main(["retrieval", "--logdir", str(tmp_path / "run"), "--data-dir", str(tmp_path),
                       "--set", "data=\"openmoji\""])
    assert code == 1
    assert "openmoji64.npz" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("ks=[0, 5]", "ks"),
    ("temperature=5.0", "temperature"),
    ("test_fraction=1.0", "test_fraction"),
    ("epochs=0", "epochs"),
    ("data=\"emoji\"", "data"),
    ("tokens=\"bytes\"", "tokens"),
])
def test_bad_settings_are_config_errors(tmp_path, capsys, override, message):
    code = train.main(["retrieval", "--logdir", str(tmp_path / "run"), "--set", override])
    assert code == 2
    assert message in capsys.readouterr().err


def test_mirrored_strategy_run_completes_and_records_the_distribution(tmp_path, capsys):
    logdir = tmp_path / "mirrored"
    code = train.main(["retrieval", "--logdir", str(logdir), "--strategy", "mirrored", "--set", "epochs=2",
                       "--set", "batch_size=256", *TINY])
    assert code == 0
    distribution = json.loads((logdir / "config.json").read_text())["distribution"]
    assert distribution["strategy"] == "mirrored" and distribution["replicas"] == 1
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["num_train_pairs"] == 1078 and np.isfinite(metrics["final_train_loss"])
    assert 0 <= metrics["image_to_text"]["recall@1"] <= 1
    out = capsys.readouterr().out
    assert "epoch 2/2: loss" in out and "Epoch 2/2" not in out  # one progress line per epoch, ours


def test_batch_size_must_split_over_the_replicas():
    context = types.SimpleNamespace(replicas=3, seed=0, data_dir=None, progress=lambda message: None)
    with pytest.raises(ValueError, match=r"batch_size=128 .*3 replicas.*batch_size=126"):
        retrieval.run(dict(retrieval.DEFAULTS), context)
    check_global_batch(126, 3, "retrieval")
    with pytest.raises(ValueError, match="larger than the 27 training pairs"):
        check_global_batch(126, 3, "retrieval", rows=27)
