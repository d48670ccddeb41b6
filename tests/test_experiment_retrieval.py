"""The `retrieval` experiment: a tiny offline run end to end, the emoji split, config checks."""

import json
import types

import numpy as np
import pytest
from figure_checks import assert_figure

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
    assert assert_figure(logdir, "recall_at_k") == (640, 400)  # the key figure


def fake_openmoji(folder, n_emoji=12):
    """A tiny file in the layout of openmoji64.npz: colour blocks named by colour, with skin
    tones; each has the aliases "block <index>|tile <index><tone>"."""
    rng = np.random.default_rng(0)
    names, images, aliases = [], [], []
    for index in range(n_emoji):
        colour = rng.integers(0, 256, 3)
        for tone in ("", " light skin tone", " dark skin tone"):
            names.append(f"shape number {index}{tone}")
            aliases.append(f"block {index}|tile {index}{tone}")
            images.append(np.broadcast_to(colour, (64, 64, 3)).astype(np.uint8))
    np.savez(folder / "openmoji64.npz", images=np.stack(images), names=np.array(names), aliases=np.array(aliases))


def test_held_out_emoji_and_their_aliases_never_reach_training(tmp_path):
    fake_openmoji(tmp_path)
    config = retrieval.resolved({**retrieval.DEFAULTS, "data": "openmoji", "image_size": 8, "test_fraction": 0.25})
    data = retrieval.load(config, tmp_path, seed=3)
    number = lambda text: text.split()[2] if text.startswith("shape") else text.split()[1]  # noqa: E731
    train = {number(text) for text in data.train_texts}
    validation, test = {number(t) for t in data.validation_texts}, {number(t) for t in data.test_texts}
    # 12 emoji: 3 held out for test, 2 of the other 9 for validation, each with all its variants.
    assert (len(train), len(validation), len(test)) == (7, 2, 3)
    assert not train & validation and not train & test and not validation & test
    assert (len(data.train_texts), len(data.validation_texts), len(data.test_texts)) == (21, 6, 9)
    # Every alias a training pair can be given belongs to that pair's own emoji.
    for text, aliases in zip(data.train_texts, data.train_aliases):
        assert {number(alias) for alias in aliases.split("|")} == {number(text)}
    # Each epoch draws every pair's text from its name and aliases, seeded.
    rng = np.random.default_rng(0)
    drawn = np.array([retrieval.epoch_texts(data.train_texts, data.train_aliases, rng) for _ in range(30)])
    for column, (text, aliases) in enumerate(zip(data.train_texts, data.train_aliases)):
        assert set(drawn[:, column]) == {text, *aliases.split("|")}
    np.testing.assert_array_equal(
        retrieval.epoch_texts(data.train_texts, data.train_aliases, np.random.default_rng(5)),
        retrieval.epoch_texts(data.train_texts, data.train_aliases, np.random.default_rng(5)),
    )


def test_openmoji_path_runs_on_a_local_file_with_unseen_classes(tmp_path):
    fake_openmoji(tmp_path)
    logdir = tmp_path / "run"
    code = train.main(
        [
            "retrieval",
            "--logdir",
            str(logdir),
            "--data-dir",
            str(tmp_path),
            "--set",
            'data="openmoji"',
            "--set",
            "epochs=1",
            "--set",
            "image_size=8",
            "--set",
            "test_fraction=0.25",
            "--set",
            "ks=[1, 5]",
            "--set",
            "aliases=true",
            *TINY,
        ]
    )
    assert code == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    # 3 of 12 emoji held out whole: 9 test images (3 skin-tone variants each), 3 unseen
    # classes; 2 of the other 9 for validation.
    assert metrics["num_test_images"] == 9 and metrics["num_train_pairs"] == 21
    assert metrics["num_validation_pairs"] == 6 and metrics["epochs_trained"] == 1
    recipe = metrics["recipe"]
    assert recipe["aliases"] is True and recipe["global_pooling"] == "avg" and recipe["tokens"] == "words"
    assert recipe["augment_shift"] == 0.125 and recipe["learning_rate"] == 1e-3  # the openmoji defaults
    assert metrics["zero_shot"]["num_classes"] == 3 and metrics["zero_shot"]["chance"] == pytest.approx(1 / 3)
    assert metrics["image_to_text"]["chance_recall@1"] == pytest.approx(1 / 9)
    assert set(metrics["image_to_text"]) >= {"recall@1", "recall@5", "median_rank"}


def test_openmoji_without_the_file_fails_with_a_clear_message(tmp_path, capsys):
    code = train.main(
        ["retrieval", "--logdir", str(tmp_path / "run"), "--data-dir", str(tmp_path), "--set", 'data="openmoji"']
    )
    assert code == 1
    assert "openmoji64.npz" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        ("ks=[0, 5]", "ks"),
        ("temperature=5.0", "temperature"),
        ("test_fraction=1.0", "test_fraction"),
        ("epochs=0", "epochs"),
        ('data="emoji"', "data"),
        ('tokens="bytes"', "tokens"),
        ("validation_fraction=0.0", "validation_fraction"),
        ("patience=0", "patience"),
        ("aliases=true", "aliases=true needs data=openmoji"),
        ("augment_shift=0.5", "augment_shift"),
        ("projection_dim=0", "projection_dim"),
        ("group_variants=true", "group_variants=true needs data=openmoji"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path, capsys, override, message):
    code = train.main(["retrieval", "--logdir", str(tmp_path / "run"), "--set", override])
    assert code == 2
    assert message in capsys.readouterr().err


def test_mirrored_strategy_run_completes_and_records_the_distribution(tmp_path, capsys):
    logdir = tmp_path / "mirrored"
    code = train.main(
        [
            "retrieval",
            "--logdir",
            str(logdir),
            "--strategy",
            "mirrored",
            "--set",
            "epochs=2",
            "--set",
            "batch_size=256",
            *TINY,
        ]
    )
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


def test_the_vocabulary_holds_the_aliases_when_they_are_trained_on(tmp_path):
    fake_openmoji(tmp_path)
    config = retrieval.resolved({**retrieval.DEFAULTS, "data": "openmoji", "image_size": 8, "test_fraction": 0.25})
    data = retrieval.load(config, tmp_path, seed=3)
    with_aliases = retrieval.vocabulary_texts(data, aliases=True)
    assert set(data.train_texts) < set(with_aliases)
    assert {"block 0", "tile 0 light skin tone"} & set(with_aliases) or not any(
        text.startswith("shape number 0") for text in data.train_texts
    )
    assert all(
        text.split()[1] in {t.split()[2] for t in data.train_texts}
        for text in with_aliases
        if not text.startswith("shape")
    )  # only training emoji's aliases
    np.testing.assert_array_equal(retrieval.vocabulary_texts(data, aliases=False), data.train_texts)


def test_training_batches_shift_images_per_epoch_and_keep_the_texts(tmp_path):
    fake_openmoji(tmp_path)
    config = retrieval.resolved({**retrieval.DEFAULTS, "data": "openmoji", "image_size": 8, "test_fraction": 0.25})
    data = retrieval.load(config, tmp_path, seed=3)
    plain = retrieval.training_batches(data, 64, 1, seed=0, aliases=False)
    shifted = retrieval.training_batches(data, 64, 1, seed=0, aliases=False, augment_shift=0.25)

    def epoch(batches, number):
        images, texts = next(iter(batches(number)))
        return images.numpy(), texts.numpy()

    images, texts = epoch(plain, 0)
    moved, moved_texts = epoch(shifted, 0)
    np.testing.assert_array_equal(moved_texts, texts)  # the same order and texts
    assert not np.array_equal(moved, images)
    # Up to 2 of 8 pixels per side: white (1.0) comes in, the colour block stays.
    assert np.isclose(moved, 1.0).any() and np.allclose(moved[:, 2:6, 2:6], images[:, 2:6, 2:6])
    np.testing.assert_array_equal(epoch(shifted, 0)[0], moved)  # an epoch's draws are seeded
    assert not np.array_equal(epoch(shifted, 1)[0], epoch(plain, 1)[0])


@pytest.mark.parametrize(
    "tokens, layer, token",
    [
        ("words", "text_encoder_vectorizer", "number"),  # unigrams, not word trigrams
        ("char_ngrams", "text_encoder_vectorizer", "s h a"),
        ("words_and_char_ngrams", "text_encoder_word_vectorizer", "number"),
    ],
)
def test_default_ngram_sizes_follow_the_tokens(tmp_path, tokens, layer, token):
    fake_openmoji(tmp_path)
    config = retrieval.resolved(
        {
            **retrieval.DEFAULTS,
            "data": "openmoji",
            "image_size": 8,
            "test_fraction": 0.25,
            "tokens": tokens,
            "filters": [4],
            "embedding_dim": 4,
        }
    )
    model = retrieval.build_model(retrieval.load(config, tmp_path, seed=3), config)
    assert token in model.encoder_b.get_layer(layer).get_vocabulary()


def test_epoch_order_keeps_each_groups_pairs_in_a_row():
    groups = np.repeat(np.arange(7), [1, 5, 2, 3, 1, 4, 2])
    rng = np.random.default_rng(0)
    order = retrieval.epoch_order(groups, rng, together=True)
    assert sorted(order) == list(range(len(groups)))
    runs = [g for i, g in enumerate(groups[order]) if i == 0 or g != groups[order][i - 1]]
    assert sorted(runs) == list(range(7))  # every group appears as one run
    orders = {tuple(retrieval.epoch_order(groups, rng, together=True)) for _ in range(10)}
    assert len(orders) == 10  # group order and order within groups change every epoch
    loose = retrieval.epoch_order(groups, np.random.default_rng(0), together=False)
    np.testing.assert_array_equal(loose, np.random.default_rng(0).permutation(len(groups)))


def test_openmoji_groups_are_the_base_emoji(tmp_path):
    fake_openmoji(tmp_path)
    config = retrieval.resolved({**retrieval.DEFAULTS, "data": "openmoji", "image_size": 8, "test_fraction": 0.25})
    data = retrieval.load(config, tmp_path, seed=3)
    number = [text.split()[2] for text in data.train_texts]
    for group in np.unique(data.train_groups):
        assert len({number[i] for i in np.flatnonzero(data.train_groups == group)}) == 1
    assert len(np.unique(data.train_groups)) == len(set(number)) == 7


def test_pretrained_text_and_image_encoders_from_local_presets(tmp_path):
    from pretrained_presets import save_tiny_bert, save_tiny_vit

    bert, vit = save_tiny_bert(tmp_path / "bert"), save_tiny_vit(tmp_path / "vit")
    logdir = tmp_path / "run"
    args = ["retrieval", "--logdir", str(logdir), "--set", "epochs=1", *TINY]
    args += ["--set", f'text_encoder="pretrained:{bert}"', "--set", f'image_encoder="pretrained:{vit}"']
    assert train.main(args) == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert 0.0 <= metrics["image_to_text"]["recall@1"] <= 1.0
    config = json.loads((logdir / "config.json").read_text())["config"]
    assert config["text_encoder"] == f"pretrained:{bert}" and config["pretrained_trainable"] is False


@pytest.mark.parametrize(
    "override, message",
    [('text_encoder="bert_tiny_en"', "pretrained:"), ('image_encoder="pretrained:"', "image_encoder")],
)
def test_pretrained_settings_need_the_prefix_and_a_source(tmp_path, capsys, override, message):
    assert train.main(["retrieval", "--logdir", str(tmp_path / "run"), "--set", override]) == 2
    assert message in capsys.readouterr().err
