"""The `crossmodal` experiment ("hearing to see"): a tiny run end to end, the probe protocol, codes of
one modality alone, splits that never overlap, and config checks."""

import json
import re

import numpy as np
import pytest
from figure_checks import assert_figure

from xmodal_tf import train
from xmodal_tf.experiments import crossmodal
from xmodal_tf.experiments.base import RunContext
from xmodal_tf.experiments.config import ConfigError

TINY = [
    "--set",
    "epochs=2",
    "--set",
    "train_size=300",
    "--set",
    "filters=[4]",
    "--set",
    "code_dim=8",
    "--set",
    "batch_size=64",
    "--set",
    "n_components=4",
    "--set",
    "probe_c=[1.0]",
]
DIRECTIONS = ["left_to_right", "right_to_left", "left_to_left", "right_to_right"]
TINY_SETTINGS = {
    "epochs": 1,
    "train_size": 128,
    "filters": [4],
    "code_dim": 8,
    "batch_size": 64,
    "n_components": 4,
    "decoder_hidden_units": [8],
}


def _row_keys(arrays) -> set:
    flat = np.concatenate([np.asarray(a).reshape(len(a), -1) for a in arrays], axis=1)
    return {row.tobytes() for row in flat}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "crossmodal"
    code = train.main(["crossmodal", "--logdir", str(logdir), "--seed", "0", *TINY])
    return code, logdir


def test_the_run_reports_every_method_on_every_direction(digits_run):
    code, logdir = digits_run
    assert code == 0
    assert json.loads((logdir / "config.json").read_text())["experiment"] == "crossmodal"
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["modalities"] == ["left", "right"] and metrics["directions"] == DIRECTIONS
    assert metrics["examples"] == {"train": 300, "validation": 359, "test": 360}
    assert sorted(metrics["results"]) == sorted(crossmodal.METHODS)
    for method, result in metrics["results"].items():
        for split in ("validation", "test"):
            assert sorted(result[split]) == sorted(DIRECTIONS), (method, split)
            for values in result[split].values():
                assert 0.0 <= values["mean"] <= 1.0 and values["std"] == 0.0 and len(values["per_seed"]) == 1
        # Within one modality even two epochs give codes far better than chance (0.1).
        assert result["test"]["left_to_left"]["mean"] > 0.2, method
        (seed,) = result["per_seed"]
        assert seed["probe_c"] == dict.fromkeys(DIRECTIONS, 1.0) and seed["seed"] == 0
        assert result["train_seconds"]["mean"] > 0
        if method == "linear_cca":
            assert result["epochs_trained"] is None and seed["reg"] in crossmodal.DEFAULTS["linear_cca_reg"]
        else:
            assert 1 <= result["epochs_trained"]["mean"] <= 2 and 1 <= seed["best_epoch"] <= 2, method
    # Linear CCA's shared space transfers across the halves well above chance.
    assert metrics["results"]["linear_cca"]["test"]["left_to_right"]["mean"] > 0.3
    lines = crossmodal.summarize(metrics)
    assert any("left->right" in line and "right->left" in line for line in lines)
    for method in crossmodal.METHODS:
        assert sum(line.strip().startswith(method + " ") for line in lines) == 2, method  # test and validation rows
    assert metrics["best_method"] == crossmodal.best_method(metrics["results"], ("left", "right"))
    assert any(
        line.startswith(f"chosen on validation (mean across-modality accuracy): {metrics['best_method']}")
        for line in lines
    )


def test_the_run_writes_tensorboard_scalars(digits_run):
    from test_train_cli import read_scalars

    _, logdir = digits_run
    metrics = json.loads((logdir / "metrics.json").read_text())
    for method in crossmodal.METHODS:
        for split in ("validation", "test"):
            scalars = read_scalars(logdir, f"{split}/right_to_left_accuracy/{method}")
            assert scalars == pytest.approx({1: metrics["results"][method][split]["right_to_left"]["mean"]})
    # Each trained model's curves in its own run, early stopping on the held-out measure.
    assert sorted(read_scalars(logdir / "deepcca" / "seed0", "validation/total_correlation")) == [1, 2]
    assert sorted(read_scalars(logdir / "mae_dropout_1.0" / "seed0", "validation/loss")) == [1, 2]
    assert assert_figure(logdir, "probe_accuracy") == (640, 400)  # the key figure: accuracy per direction


def test_probe_trains_on_source_codes_and_tests_on_target_codes():
    rng = np.random.default_rng(0)

    def clusters(labels, shift):  # digit c around the corner (c + shift) % 10 of a 10-d simplex
        return 5 * np.eye(10)[(labels + shift) % 10] + rng.normal(scale=0.3, size=(len(labels), 10))

    labels = {split: rng.integers(0, 10, size) for split, size in (("train", 300), ("validation", 200), ("test", 200))}
    # Audio codes of digit c sit where the image codes of c + 1 do: each modality alone is perfectly
    # decodable, but a probe trained on one is off by one digit on the other, always.
    codes = {split: {"image": clusters(y, 0), "audio": clusters(y, 1)} for split, y in labels.items()}
    result = crossmodal.probe_scores(codes, labels, ("image", "audio"), [1.0])
    assert list(result["test"]) == ["image_to_audio", "audio_to_image", "image_to_image", "audio_to_audio"]
    for split in ("validation", "test"):
        assert result[split]["image_to_image"] == 1.0 and result[split]["audio_to_audio"] == 1.0
        assert result[split]["image_to_audio"] == 0.0 and result[split]["audio_to_image"] == 0.0
    # Test audio codes aligned with the images: only the test scores see it, the validation ones do not.
    codes["test"]["audio"] = clusters(labels["test"], 0)
    result = crossmodal.probe_scores(codes, labels, ("image", "audio"), [1.0])
    assert result["validation"]["image_to_audio"] == 0.0 and result["test"]["image_to_audio"] == 1.0
    assert result["test"]["audio_to_audio"] == 0.0  # (trained on shifted audio, tested on aligned)


def test_probe_c_is_chosen_on_validation_and_scored_once_on_test(monkeypatch):
    from xmodal_tf import metrics

    codes = {
        split: {"image": np.full((4, 2), i, float), "audio": np.full((4, 2), 10 + i, float)}
        for i, split in enumerate(("train", "validation", "test"))
    }
    labels = {split: np.arange(4) + 10 * i for i, split in enumerate(("train", "validation", "test"))}
    calls = []
    validation_accuracy = {0.1: 0.5, 1.0: 0.7, 10.0: 0.7}  # C=1 wins (the first of equals)

    def fake_probe(train_features, train_labels, test_features, test_labels, *, C):
        calls.append((train_features, train_labels, test_features, test_labels, C))
        return {"accuracy": validation_accuracy[C] if test_labels[0] == 10 else C / 100}

    monkeypatch.setattr(metrics, "linear_probe", fake_probe)
    result = crossmodal.probe_scores(codes, labels, ("image", "audio"), [0.1, 1.0, 10.0])
    assert result["probe_c"] == dict.fromkeys(result["test"], 1.0)
    assert result["validation"] == dict.fromkeys(result["test"], 0.7)
    assert result["test"] == dict.fromkeys(result["test"], 0.01)
    image_to_audio = calls[:4]
    for train_features, train_labels, _, _, _ in image_to_audio:  # trained on the source's training codes
        assert train_features is codes["train"]["image"] and train_labels is labels["train"]
    assert [
        (test_features is codes["validation"]["audio"], test_labels is labels["validation"], c)
        for _, _, test_features, test_labels, c in image_to_audio[:3]
    ] == [(True, True, 0.1), (True, True, 1.0), (True, True, 10.0)]
    assert image_to_audio[3][2] is codes["test"]["audio"] and image_to_audio[3][3] is labels["test"]
    assert image_to_audio[3][4] == 1.0 and len(calls) == 4 * 4


def test_summarise_gives_mean_and_std_over_seeds():
    per_seed = [
        {"validation": {"a_to_b": v}, "test": {"a_to_b": t}, "epochs_trained": e, "train_seconds": s}
        for v, t, e, s in ((0.5, 0.4, 3, 1.0), (0.7, 0.6, 5, 3.0))
    ]
    summary = crossmodal.summarise(per_seed)
    assert summary["test"]["a_to_b"] == {"mean": pytest.approx(0.5), "std": pytest.approx(0.1), "per_seed": [0.4, 0.6]}
    assert summary["validation"]["a_to_b"]["mean"] == pytest.approx(0.6)
    assert summary["epochs_trained"]["mean"] == 4 and summary["train_seconds"]["std"] == 1.0
    assert summary["per_seed"] is per_seed
    assert crossmodal.summarise([{**per_seed[0], "epochs_trained": None}])["epochs_trained"] is None


def test_the_best_method_is_chosen_on_validation_across_modalities_only():
    def scores(across, within):
        return {name: {"mean": value} for name, value in zip(DIRECTIONS, (across, across, within, within))}

    results = {
        "a": {"validation": scores(0.6, 0.99), "test": scores(0.99, 0.99)},
        "b": {"validation": scores(0.7, 0.5), "test": scores(0.1, 0.1)},
    }
    # Highest validation accuracy across the modalities wins; test and within-modality scores do not count.
    assert crossmodal.best_method(results, ("left", "right")) == "b"


@pytest.mark.parametrize("method", ["linear_cca", "deepcca", "dccae", "mae_dropout_1.0"])
def test_codes_of_one_modality_alone(method, tmp_path):
    settings = crossmodal.settings_for({**crossmodal.DEFAULTS, **TINY_SETTINGS})
    dataset = crossmodal.load(settings, None, 0)
    context = RunContext(tmp_path / "run", checkpoint_every=0, echo=lambda line: None)
    encode, details = crossmodal.train_method(method, dataset, settings, 0, context)
    size = 8 if method.startswith("mae") else 4  # code_dim, or n_components canonical variates
    codes = {m: encode(m, dataset.test.inputs[m]) for m in ("left", "right")}
    assert codes["left"].shape == codes["right"].shape == (360, size)
    assert np.isfinite(codes["left"]).all() and np.isfinite(codes["right"]).all()
    np.testing.assert_allclose(encode("left", dataset.test.inputs["left"][:7]), codes["left"][:7], atol=1e-5)
    if method != "mae_dropout_1.0":  # canonical variates: those of paired rows correlate, the first most
        from xmodal_tf.cca import column_correlations

        train_left, train_right = (encode(m, dataset.train.inputs[m]) for m in ("left", "right"))
        correlations = column_correlations(train_left, train_right)
        unpaired = column_correlations(train_left, train_right[np.random.default_rng(0).permutation(128)])
        assert correlations[0] > max(0.3, 2 * abs(unpaired[0])) and correlations[0] >= correlations[-1] - 1e-6
    assert details["epochs_trained"] == (None if method == "linear_cca" else 1)


def test_digits_validation_and_test_never_overlap():
    dataset = crossmodal.load(crossmodal.DEFAULTS, None, 0)
    assert [len(dataset.train), len(dataset.validation), len(dataset.test)] == [1078, 359, 360]
    rows = {
        split: _row_keys([getattr(dataset, split).inputs[m] for m in ("left", "right")])
        for split in ("train", "validation", "test")
    }
    assert len(rows["validation"]) == 359 and len(rows["test"]) == 360
    assert not rows["validation"] & rows["test"] and not rows["train"] & (rows["validation"] | rows["test"])
    small = crossmodal.load({**crossmodal.DEFAULTS, "train_size": 100}, None, 0)
    np.testing.assert_array_equal(small.train.inputs["left"], dataset.train.inputs["left"][:100])
    assert len(small.validation) == 359 and len(small.test) == 360


@pytest.fixture(scope="module")
def av_mnist_dir(tmp_path_factory):
    from test_multimodal_data import write_fsdd, write_mnist

    folder = tmp_path_factory.mktemp("av_mnist")
    write_fsdd(folder, per_digit=10)
    write_mnist(folder, n_train=50100, n_test=200)
    return folder


@pytest.mark.parametrize("audio_encoder", ["cnn", "rnn"])
def test_av_mnist_splits_never_overlap_and_codes_have_their_shapes(av_mnist_dir, audio_encoder):
    settings = crossmodal.settings_for(
        {
            **crossmodal.DEFAULTS,
            "data": "av_mnist",
            "train_size": 300,
            "audio_encoder": audio_encoder,
            "filters": [4],
            "code_dim": 8,
        }
    )
    dataset = crossmodal.load(settings, av_mnist_dir, 0)
    assert dataset.modalities == ("image", "audio")
    assert [len(dataset.train), len(dataset.validation), len(dataset.test)] == [300, 100, 200]
    audio = dataset.test.inputs["audio"]
    assert audio.shape[2:] == ((13, 1) if audio_encoder == "cnn" else (13,))

    # write_fsdd's first coefficient is the recording's index: validation recordings are never
    # trained on, test recordings are neither; validation images are MNIST training images, test
    # images MNIST test images.
    def recordings(split):
        return set(np.round(split.inputs["audio"][:, 0, 0, ...].reshape(-1), 4).tolist())

    heard, held_out, tested = (recordings(getattr(dataset, s)) for s in ("train", "validation", "test"))
    assert held_out and not held_out & heard and not tested & (heard | held_out)
    images = {s: _row_keys([getattr(dataset, s).inputs["image"]]) for s in ("train", "validation", "test")}
    assert not images["validation"] & images["test"] and not images["train"] & (images["validation"] | images["test"])

    shapes = {m: dataset.train.inputs[m].shape[1:] for m in dataset.modalities}
    few = {m: dataset.test.inputs[m][:5] for m in dataset.modalities}
    dccae = crossmodal.build_deepcca(shapes, settings, with_decoders=True)
    assert dccae.encode(few["image"]).shape == dccae.encode(y=few["audio"]).shape == (5, 10)
    reconstructed = dccae.decoder_y(dccae.encode(y=few["audio"]))
    assert reconstructed.shape[1:] == audio.shape[1:]
    autoencoder = crossmodal.build_autoencoder(shapes, settings, 1.0, seed=0)
    assert autoencoder.dropout_shares == (0.5, 0.5)
    for modality in dataset.modalities:
        assert autoencoder.encode({modality: few[modality]}, present=[modality]).shape == (5, 8)


@pytest.mark.filterwarnings("ignore:CCA.fit. 300 samples")  # (fewer pairs than pixels: expected here)
def test_a_tiny_av_mnist_run(av_mnist_dir, tmp_path):
    logdir = tmp_path / "run"
    code = train.main(
        [
            "crossmodal",
            "--logdir",
            str(logdir),
            "--data-dir",
            str(av_mnist_dir),
            "--set",
            "data=av_mnist",
            "--set",
            "train_size=300",
            "--set",
            'methods=["linear_cca", "dccae"]',
            "--set",
            "epochs=1",
            "--set",
            "filters=[4]",
            "--set",
            "batch_size=100",
            "--set",
            "probe_c=[1.0]",
        ]
    )
    assert code == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["directions"] == ["image_to_audio", "audio_to_image", "image_to_image", "audio_to_audio"]
    assert sorted(metrics["results"]) == ["dccae", "linear_cca"]
    for result in metrics["results"].values():
        assert all(0 <= values["mean"] <= 1 for values in result["test"].values())


@pytest.mark.parametrize(
    "override, message",
    [
        ({"methods": ["linear_cca", "clip"]}, "got ['linear_cca', 'clip'] (item [1] is 'clip')"),
        ({"methods": []}, "methods must be a non-empty list"),
        (
            {"methods": ["deepcca", "deepcca"]},
            "distinct names from ['linear_cca', 'deepcca', 'dccae', 'mae_dropout_0.5', "
            "'mae_dropout_1.0']; got ['deepcca', 'deepcca'] ('deepcca' repeats)",
        ),
        ({"seeds": 0}, "seeds must be a positive integer"),
        ({"epochs": -1}, "epochs must be a positive integer"),
        ({"n_components": 40}, "more than the 32 features"),
        ({"batch_size": 8}, "batch_size=8 is at or below n_components=10"),
        ({"linear_cca_reg": []}, "linear_cca_reg must be a non-empty list"),
        ({"probe_c": [0.0]}, "probe_c must be a non-empty list of numbers > 0"),
        ({"reconstruction_weight": 0}, "reconstruction_weight must be > 0 or null (dccae's lambda"),
        ({"filters": [4, 4, 4]}, "filters must be a list of 1 or 2"),
        ({"learning_rate": 0}, "learning_rate must be > 0; got 0. Fix: --set learning_rate=... (default: 0.001)."),
        ({"learning_rate": "fast"}, "learning_rate must be a number > 0; got 'fast'"),
        ({"audio_validation_fraction": 1.0}, "audio_validation_fraction must be a number in (0, 1); got 1.0"),
        (
            {"train_size": 2000},
            "train_size must be at most 1078 for data=digits (its training pairs); got 2000. "
            "Fix: --set train_size=1078 or less.",
        ),
        ({"data": "av_mnist", "train_size": 60000}, "train_size must be at most 50000"),
        ({"probe_size": 0}, "probe_size must be a positive integer"),
    ],
)
def test_bad_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        crossmodal.EXPERIMENT.validate({**crossmodal.DEFAULTS, **override})


def test_bad_settings_fail_before_the_run_starts(tmp_path, capsys):
    assert train.main(["crossmodal", "--logdir", str(tmp_path / "a"), "--set", 'methods=["clip"]']) == 2
    assert "methods must be a non-empty list of distinct names from" in capsys.readouterr().err
    assert train.main(["crossmodal", "--logdir", str(tmp_path / "b"), "--set", "audio_encoder=lstm"]) == 2
    assert "audio_encoder='lstm' is not one of: cnn, rnn" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    crossmodal.EXPERIMENT.validate(crossmodal.DEFAULTS)  # the defaults pass
    crossmodal.EXPERIMENT.validate({**crossmodal.DEFAULTS, "data": "av_mnist"})
