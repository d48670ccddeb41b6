"""The `fusion` experiment: a tiny run end to end, its report, its helpers and config checks."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from figure_checks import assert_figure

from xmodal_tf import train
from xmodal_tf.experiments import fusion as fusion_experiment
from xmodal_tf.experiments.base import RunContext, check_global_batch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))


def _row_keys(images: np.ndarray) -> set:
    return {row.tobytes() for row in images.reshape(len(images), -1)}


def test_strategies_match_the_library():
    from xmodal_tf.models.fusion import FUSION_STRATEGIES

    assert fusion_experiment.STRATEGIES == FUSION_STRATEGIES


def test_degradations():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(50, 8, 4, 1)).astype("float32")
    noisy = fusion_experiment.degrade(images, "noise", 0.5, rng)
    assert noisy.dtype == np.float32 and noisy.min() >= images.min() and noisy.max() <= images.max()
    assert 0.2 < np.abs(noisy - images).mean() < 0.5
    occluded = fusion_experiment.degrade(images, "occlusion", 0.5, rng)
    changed = occluded != images
    assert (occluded[changed] == 0).all()
    # One 2x2 square (half of the shorter side, 4) per image.
    np.testing.assert_array_equal(changed.reshape(50, -1).sum(axis=1), 4)
    assert fusion_experiment.degrade(images, "none", 0.5, rng) is images


def test_missing_conditions_are_nested_per_modality():
    conditions = fusion_experiment.test_conditions(("image", "audio"), [0.25, 1.0], 40, np.random.default_rng(0))
    assert list(conditions) == [
        "complete",
        "image_missing_25%",
        "image_missing_100%",
        "audio_missing_25%",
        "audio_missing_100%",
    ]
    assert conditions["complete"].all()
    quarter = conditions["image_missing_25%"]
    assert (~quarter[:, 0]).sum() == 10 and quarter[:, 1].all()
    assert not conditions["audio_missing_100%"][:, 1].any() and conditions["audio_missing_100%"][:, 0].all()
    assert (conditions["image_missing_100%"] <= quarter).all()


def test_joint_training_is_exact_with_unimodal_losses():
    """Each classifier of the joint model ends with the weights that training that
    classifier alone (the same Trainer loop) gives on the same batches (auxiliary unimodal
    losses and their distillation from the classifier's own prediction included)."""
    import keras

    from xmodal_tf.models.fusion import build_fusion_classifier
    from xmodal_tf.optimizers import FusedAdam
    from xmodal_tf.training import Trainer

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 96)
    inputs = {
        "left": (rng.normal(size=(96, 4)) + np.eye(3, 4)[labels]).astype("float32"),
        "right": (rng.normal(size=(96, 5)) + np.eye(3, 5)[labels]).astype("float32"),
    }
    settings = {
        "learning_rate": 1e-2,
        "batch_size": 32,
        "epochs": 2,
        "embedding_dim": 4,
        "encoder": "mlp",
        "encoder_hidden_units": [6],
    }

    def classifiers():
        keras.utils.set_random_seed(0)
        return {
            name: build_fusion_classifier(
                {
                    modality: fusion_experiment.build_encoder(
                        inputs[modality].shape[1:], settings, f"{modality}_encoder"
                    )
                    for modality in inputs
                },
                fusion,
                3,
                hidden_units=(5,),
                unimodal_loss_weight=weight,
                unimodal_distillation=share,
                name=name,
            )
            for name, fusion, weight, share in (
                ("concat", "concat", 0.0, 0.0),
                ("concat_aux", "concat", 0.7, 0.0),
                ("late_aux", "late", 0.4, 0.5),
            )
        }

    joint = fusion_experiment.JointTraining(classifiers(), inputs, settings)
    history = joint.fit(inputs, labels, seed=5)
    assert {"concat_aux_unimodal_loss", "late_aux_unimodal_loss"} <= set(history)
    assert "concat_unimodal_loss" not in history and len(history["concat_loss"]) == 2
    from xmodal_tf.data import make_dataset

    for name, alone in classifiers().items():
        alone.compile(optimizer=FusedAdam(settings["learning_rate"]), loss="sparse_categorical_crossentropy")
        Trainer(alone, None, progress=False).fit(make_dataset(inputs, labels, batch_size=32, seed=5), 2)
        trained = joint.classifiers[name]
        assert len(alone.weights) == len(trained.weights)
        for expected, actual in zip(alone.weights, trained.weights):
            np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_digits_validation_never_overlaps_test_or_training():
    settings = fusion_experiment.settings_for(dict(fusion_experiment.DEFAULTS))
    dataset = fusion_experiment.load_data(settings, None)
    assert [len(dataset.train), len(dataset.validation), len(dataset.test)] == [1078, 359, 360]
    # (the 1797 images of scikit-learn's digits are all different)
    rows = {
        split: _row_keys(
            np.concatenate([getattr(dataset, split).inputs["left"], getattr(dataset, split).inputs["right"]], axis=2)
        )
        for split in ("train", "validation", "test")
    }
    assert len(rows["validation"]) == 359
    assert not rows["validation"] & rows["test"] and not rows["validation"] & rows["train"]
    assert not rows["train"] & rows["test"]


def test_av_mnist_validation_audio_comes_from_recordings_never_trained_on(tmp_path):
    from test_multimodal_data import write_fsdd, write_mnist

    from xmodal_tf.data import load_av_mnist

    write_fsdd(tmp_path, per_digit=10)
    write_mnist(tmp_path, n_train=50100, n_test=200)
    settings = fusion_experiment.settings_for({**fusion_experiment.DEFAULTS, "data": "av_mnist", "train_size": 300})
    dataset = fusion_experiment.load_data(settings, tmp_path)
    assert [len(dataset.train), len(dataset.validation), len(dataset.test)] == [300, 100, 200]
    splits = (dataset.train, dataset.validation, dataset.test)
    assert all(split.inputs["audio"].shape[2:] == (13, 1) for split in splits)

    # write_fsdd's first coefficient is the recording's index (standardised: one value per recording).
    def recordings(split):
        return set(np.round(split.inputs["audio"][:, 0, 0, 0], 4).tolist())

    heard, held_out, tested = recordings(dataset.train), recordings(dataset.validation), recordings(dataset.test)
    assert held_out and not held_out & heard and not tested & (heard | held_out)
    # 10 recordings per digit: 2 for test, then 2 of the other 8 for validation, 6 for training.
    assert len(heard) <= 60 and len(held_out) <= 20
    for split in (dataset.train, dataset.validation):  # each image with a recording of its own digit
        digit_code = split.inputs["audio"][:, 0, 1, 0]
        for digit in np.unique(split.labels):
            assert len(np.unique(np.round(digit_code[split.labels == digit], 4))) == 1

    # The test split is load_av_mnist's, unchanged; validation images are MNIST's last training ones.
    reference = load_av_mnist(tmp_path, train_size=300)
    np.testing.assert_array_equal(dataset.test.inputs["audio"][..., 0], reference.test.inputs["audio"])
    np.testing.assert_array_equal(dataset.test.inputs["image"], reference.test.inputs["image"])
    np.testing.assert_array_equal(dataset.test.labels, reference.test.labels)
    np.testing.assert_array_equal(dataset.validation.inputs["image"], reference.validation.inputs["image"])
    np.testing.assert_array_equal(dataset.train.inputs["image"], reference.train.inputs["image"])
    images = {split: _row_keys(getattr(dataset, split).inputs["image"]) for split in ("train", "validation", "test")}
    assert not images["validation"] & images["test"] and not images["validation"] & images["train"]
    with pytest.raises(ValueError, match="audio_validation_fraction must be a number strictly between 0 and 1"):
        fusion_experiment.load_av_mnist_held_out(tmp_path, 300, audio_validation_fraction=1.0)


def _tiny_problem(size=120):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size)
    inputs = {
        "left": (rng.normal(size=(size, 4)) + np.eye(3, 4)[labels]).astype("float32"),
        "right": (rng.normal(size=(size, 5)) + np.eye(3, 5)[labels]).astype("float32"),
    }
    settings = {
        "learning_rate": 3e-2,
        "batch_size": 32,
        "epochs": 5,
        "embedding_dim": 4,
        "encoder": "mlp",
        "encoder_hidden_units": [6],
    }
    return inputs, labels, settings


def _tiny_classifiers(inputs, settings, seed=0):
    import keras

    from xmodal_tf.models.fusion import build_fusion_classifier

    keras.utils.set_random_seed(seed)
    return {
        name: build_fusion_classifier(
            {
                modality: fusion_experiment.build_encoder(inputs[modality].shape[1:], settings, f"{modality}_encoder")
                for modality in inputs
            },
            fusion,
            3,
            hidden_units=(5,),
            modality_dropout=rate,
            name=name,
        )
        for name, fusion, rate in (("concat", "concat", 0.0), ("late_dropout", "late", 0.3))
    }


def test_every_classifier_keeps_its_best_validation_epoch():
    inputs, labels, settings = _tiny_problem()
    train_rows, validation_rows = slice(0, 80), slice(80, None)
    validation = ({name: array[validation_rows] for name, array in inputs.items()}, labels[validation_rows])
    joint = fusion_experiment.JointTraining(_tiny_classifiers(inputs, settings), inputs, settings)
    history = joint.fit(
        {name: array[train_rows] for name, array in inputs.items()}, labels[train_rows], seed=3, validation=validation
    )
    modalities = tuple(inputs)
    for name, classifier in joint.classifiers.items():
        curve = history[f"val_{name}_accuracy"]
        epoch, best = joint.chosen_epochs[name]
        assert len(curve) == 5 and 1 <= epoch <= 5
        assert best == max(curve) and epoch == int(np.argmax(curve)) + 1  # the earliest best epoch
        present = np.ones((len(validation[1]), 2), dtype=bool)
        probabilities = fusion_experiment.predict(classifier, validation[0], present, modalities)
        assert np.mean(probabilities.argmax(axis=1) == validation[1]) == pytest.approx(best)
    # The selection's state is weights of the joint model: the Trainer's checkpoints hold it.
    model = joint.model
    state = {id(v) for v in [*model.best_weight_copies, model.best_accuracy, model.best_epoch, model.evaluations]}
    assert state <= {id(v) for v in model.weights}
    assert len(model.best_weight_copies) == sum(len(c.weights) for c in joint.classifiers.values())


def test_the_best_epochs_survive_a_resume(tmp_path):
    """A run killed after epoch 2 (its checkpoint written) resumes to the best epochs,
    accuracies and weights of an uninterrupted run, those chosen before the kill too."""
    import keras

    inputs, labels, settings = _tiny_problem()
    # Validation labels shifted by one class: the better a classifier learns, the worse it
    # scores, so its best epoch comes early, before the kill.
    validation = ({name: array[80:] for name, array in inputs.items()}, (labels[80:] + 1) % 3)
    train_inputs = {name: array[:80] for name, array in inputs.items()}

    class Killed(Exception):
        pass

    class KillAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Killed

    def train(folder, kill=False, seed=0):
        context = RunContext(tmp_path / folder, checkpoint_every=1, checkpoint_seconds=0.0, echo=lambda line: None)
        with context.scope():
            joint = fusion_experiment.JointTraining(
                _tiny_classifiers(inputs, settings, seed), inputs, settings, context
            )
        joint.trainer.callbacks = [KillAfterSecondEpoch()] if kill else []
        keras.utils.set_random_seed(0)  # the data's shuffle order depends on TensorFlow's global seed
        joint.fit(train_inputs, labels[:80], seed=3, validation=validation)
        return joint

    uninterrupted = train("uninterrupted")
    with pytest.raises(Killed):
        train("resumed", kill=True)
    resumed = train("resumed", seed=7)  # other initial weights: all comes from the checkpoint
    assert resumed.trainer.restored_from and resumed.chosen_epochs == uninterrupted.chosen_epochs
    assert min(epoch for epoch, _ in uninterrupted.chosen_epochs.values()) <= 2
    for name, classifier in uninterrupted.classifiers.items():
        for expected, actual in zip(classifier.weights, resumed.classifiers[name].weights):
            np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "fusion"
    code = train.main(
        [
            "fusion",
            "--logdir",
            str(logdir),
            "--seed",
            "1",
            "--set",
            "seeds=2",
            "--set",
            'strategies=["concat", "late"]',
            "--set",
            "epochs=10",
            "--set",
            "batch_size=64",
            "--set",
            "encoder_hidden_units=[16]",
            "--set",
            "embedding_dim=8",
            "--set",
            "hidden_units=[16]",
            "--set",
            "missing_fractions=[0.5, 1.0]",
            "--set",
            "unimodal_loss_weight=0.5",
            "--set",
            "unimodal_distillation=0.5",
            # every classifier's epoch on complete validation data (the checks below)
            "--set",
            'epoch_selection="complete"',
        ]
    )
    return code, logdir


def test_tiny_run_reports_every_classifier_and_condition(tiny_run, capsys):
    code, logdir = tiny_run
    assert code == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    # (metrics.json is written with sorted keys)
    assert set(metrics["results"]) == {"left_only", "right_only", "concat", "concat_dropout", "late", "late_dropout"}
    assert metrics["conditions"] == [
        "complete",
        "left_missing_50%",
        "left_missing_100%",
        "right_missing_50%",
        "right_missing_100%",
    ]
    for by_condition in metrics["results"].values():
        for scores in by_condition.values():
            for metric in ("accuracy", "macro_f1"):
                per_seed = scores[metric]["per_seed"]
                assert len(per_seed) == 2 and all(0.0 <= value <= 1.0 for value in per_seed)
                assert scores[metric]["mean"] == pytest.approx(np.mean(per_seed))
                assert scores[metric]["std"] == pytest.approx(np.std(per_seed))
    results = metrics["results"]
    # Every classifier learned something (chance is 0.1).
    for name in results:
        assert results[name]["complete"]["accuracy"]["mean"] > 0.35, name
    # A single-modality classifier ignores the other modality, and without its own
    # modality it returns one fixed prediction (at most the largest class share).
    assert results["left_only"]["right_missing_100%"] == results["left_only"]["complete"]
    assert results["left_only"]["left_missing_100%"]["accuracy"]["mean"] <= 0.12
    # Fusion with one modality entirely absent still predicts from the other.
    assert results["concat_dropout"]["left_missing_100%"]["accuracy"]["mean"] > 0.3
    report = metrics["targets"]
    assert report["best_fusion_beats_best_single"] == (report["best_fusion_accuracy"] > report["best_single_accuracy"])
    assert report["best_dropout_with_weaker_absent"] in ("concat_dropout", "late_dropout")
    # Each choice is the best on validation; the figure reported is its test score.
    validation = metrics["validation_results"]
    for absent, entry in report["missing"].items():
        condition = f"{absent}_missing_100%"
        dropout_names = [name for name in results if name.endswith("_dropout")]
        best = max(validation[name][condition]["accuracy"]["mean"] for name in dropout_names)
        assert validation[entry["chosen"]][condition]["accuracy"]["mean"] == best
        assert entry["accuracy"] == results[entry["chosen"]][condition]["accuracy"]["mean"]
    assert metrics["degraded"] == {
        "degrade_modality": "left",
        "degradation": "noise",
        "degradation_strength": 0.3,
        "other_modality_noise": 0.0,
    }


def test_tiny_run_reports_validation_scores_and_chosen_epochs(tiny_run):
    from test_train_cli import read_scalars

    _, logdir = tiny_run
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["examples"] == {"train": 1078, "validation": 359, "test": 360} and metrics["epoch_budget"] == 10
    validation = metrics["validation_results"]
    assert set(validation) == set(metrics["results"]) == set(metrics["chosen_epoch"])
    for name, by_condition in validation.items():
        assert set(by_condition) == set(metrics["conditions"])  # (metrics.json: sorted keys)
        epochs = metrics["chosen_epoch"][name]
        assert len(epochs) == 2 and all(1 <= epoch <= 10 for epoch in epochs), name
        for index, seed in enumerate((1, 2)):
            # The restored weights score what their epoch scored on validation, the best of the run.
            curve = read_scalars(logdir, f"validation_details/accuracy_seed{seed}/{name}")
            assert sorted(curve) == list(range(1, 11))
            best = by_condition["complete"]["accuracy"]["per_seed"][index]
            assert max(curve.values()) == pytest.approx(best, abs=1e-6), name
            assert min(step for step, value in curve.items() if value == max(curve.values())) == epochs[index]
    complete = read_scalars(logdir, "validation/accuracy_complete/concat")
    np.testing.assert_allclose(
        [complete[1], complete[2]], validation["concat"]["complete"]["accuracy"]["per_seed"], rtol=1e-6
    )
    assert "validation accuracy" in "\n".join(fusion_experiment.summarize(metrics))


def test_tiny_run_logs_tensorboard_scalars(tiny_run):
    from test_train_cli import read_scalars

    _, logdir = tiny_run
    metrics = json.loads((logdir / "metrics.json").read_text())
    logged = read_scalars(logdir, "test_details/accuracy_left_missing_50%/late_dropout")
    per_seed = metrics["results"]["late_dropout"]["left_missing_50%"]["accuracy"]["per_seed"]
    np.testing.assert_allclose([logged[1], logged[2]], per_seed, rtol=1e-6)
    complete = read_scalars(logdir, "test/accuracy_complete/late_dropout")
    np.testing.assert_allclose(
        [complete[1], complete[2]], metrics["results"]["late_dropout"]["complete"]["accuracy"]["per_seed"], rtol=1e-6
    )
    assert len(read_scalars(logdir, "train_details/loss_seed1/concat")) == 10
    unimodal = read_scalars(logdir, "train_details/unimodal_loss_seed1/concat_dropout")
    assert len(unimodal) == 10 and unimodal[10] < unimodal[1]
    with pytest.raises(KeyError):  # no auxiliary losses without modality dropout
        read_scalars(logdir, "train_details/unimodal_loss_seed1/concat")
    assert metrics["unimodal_loss_weight"] == 0.5 == metrics["unimodal_distillation"]
    # The key figures: accuracy against the share of examples missing each modality.
    for modality in ("left", "right"):
        assert assert_figure(logdir, f"accuracy_vs_missing_{modality}") == (640, 400)


def test_summary_table():
    metrics = {
        "data": "digits",
        "modalities": ["left", "right"],
        "seeds": 2,
        "modality_dropout": 0.3,
        "degraded": {
            "degrade_modality": "left",
            "degradation": "noise",
            "degradation_strength": 0.5,
            "other_modality_noise": 0.0,
        },
        "conditions": ["complete", "left_missing_100%"],
        "results": {
            name: {
                condition: {"accuracy": {"mean": 0.5, "std": 0.01}} for condition in ("complete", "left_missing_100%")
            }
            for name in ("left_only", "right_only", "late", "late_dropout")
        },
        "targets": {
            "best_fusion": "late",
            "best_fusion_accuracy": 0.9,
            "best_single": "right_only",
            "best_single_accuracy": 0.8,
            "best_fusion_beats_best_single": True,
            "weaker_modality": "left",
            "best_dropout_with_weaker_absent": "late_dropout",
            "best_dropout_with_weaker_absent_accuracy": 0.7,
            "dropout_keeps_better_single": False,
            "chosen_on": "validation",
            "missing": {"left": {"chosen": "late_dropout", "accuracy": 0.7, "right_only": 0.8, "margin": -0.1}},
        },
    }
    lines = fusion_experiment.summarize(metrics)
    assert "left -100%" in lines[1]
    assert lines[2].startswith("left_only") and "0.500 ± 0.010" in lines[2]
    assert "beats it" in lines[-3]
    assert lines[-2] == "left absent everywhere: late_dropout 0.700 vs right_only 0.800 (-10.0 points)"
    assert "chosen on validation" in lines[-1]
    assert lines[0].endswith("*_dropout: modality dropout 0.3")
    metrics.update(unimodal_loss_weight=1.0, unimodal_distillation=0.5)
    assert fusion_experiment.summarize(metrics)[0].endswith(
        "modality dropout 0.3 and unimodal losses of weight 1 (target: 0.5 label + 0.5 fused prediction)"
    )


def test_selection_benchmark_chooses_on_validation_only():
    from benchmarks import bench_fusion_selection as bench

    args = bench.parse_args(["--quick", "--set", "epochs=3"])
    assert (args.weights, args.distillations, args.dropouts, args.seeds) == ([0.0, 1.0], [0.0], [0.3], 1)
    assert args.set[-1] == "epochs=3" and not any(setting.startswith("train_size") for setting in args.set)
    command = bench.command_for((1.0, 0.5, 0.3), args, "/tmp/run")
    assert "unimodal_loss_weight=1.0" in command and 'data="digits"' in command
    defaults = bench.parse_args(["--data", "av_mnist", "--data-dir", "/data"])
    assert (defaults.weights, defaults.distillations, defaults.dropouts) == ([0, 0.5, 1, 2], [0, 0.5], [0.3, 0.5])
    assert "--data-dir" in bench.command_for((0.0, 0.0, 0.3), defaults, "/tmp/run")
    # Weight 0 has no unimodal losses: one run per dropout, whatever the distillation.
    assert bench.settings_grid([0.0, 1.0], [0.0, 0.5], [0.3]) == [(0.0, 0.0, 0.3), (1.0, 0.0, 0.3), (1.0, 0.5, 0.3)]
    with pytest.raises(SystemExit):
        bench.parse_args(["--dropouts", "0.7"])

    def metrics(complete, left, right):
        def scores(value):
            return {"accuracy": {"mean": value}}

        return {
            "conditions": ["complete", "left_missing_100%", "right_missing_100%"],
            "validation_results": {
                name: {
                    "complete": scores(complete),
                    "left_missing_100%": scores(left),
                    "right_missing_100%": scores(right),
                }
                for name in ("concat_dropout", "late_dropout")
            },
        }

    # No "results" (test) in these metrics: choosing must not need them.
    rows = [
        {"name": "a", "validation": bench.dropout_scores(metrics(0.90, 0.50, 0.70))},  # missing mean 0.600
        {"name": "b", "validation": bench.dropout_scores(metrics(0.80, 0.60, 0.601))},  # 0.6005, best
        {"name": "c", "validation": bench.dropout_scores(metrics(0.85, 0.60, 0.60))},
    ]  # 0.600
    assert rows[1]["validation"]["missing_mean"] == pytest.approx(0.6005)
    assert bench.choose(rows, tie=0.0)["name"] == "b"
    assert bench.choose(rows, tie=0.001)["name"] == "a"  # all tie: the best on complete data


@pytest.mark.parametrize(
    "override, message",
    [
        ("modality_dropout=0.7", "modality_dropout"),
        ('strategies=["mean"]', "strategies"),
        ('degrade_modality="image"', "degrade_modality"),
        ("train_size=100", "train_size"),
        ("other_modality_noise=-1", "other_modality_noise"),
        ("unimodal_loss_weight=-0.5", "unimodal_loss_weight"),
        ('unimodal_loss_weight="high"', "unimodal_loss_weight"),
        ("unimodal_distillation=2", "unimodal_distillation"),
        ('degradation="blur"', "degradation"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path, capsys, override, message):
    code = train.main(["fusion", "--logdir", str(tmp_path / "run"), "--set", override])
    assert code == 2
    assert message in capsys.readouterr().err


def test_runs_on_a_mirrored_strategy_through_the_trainer(tmp_path):
    """--strategy mirrored (one CPU replica here): the joint model trains in the Trainer."""
    logdir = tmp_path / "mirrored"
    code = train.main(
        [
            "fusion",
            "--logdir",
            str(logdir),
            "--strategy",
            "mirrored",
            "--set",
            "seeds=2",
            "--set",
            'strategies=["concat"]',
            "--set",
            "epochs=2",
            "--set",
            "batch_size=64",
            "--set",
            "encoder_hidden_units=[8]",
            "--set",
            "embedding_dim=4",
            "--set",
            "hidden_units=[8]",
            "--set",
            "missing_fractions=[1.0]",
        ]
    )
    assert code == 0
    config = json.loads((logdir / "config.json").read_text())
    assert config["distribution"] == {"strategy": "mirrored", "replicas": 1, "workers": 1, "task": None}
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert set(metrics["results"]) == {"left_only", "right_only", "concat", "concat_dropout"}
    assert metrics["results"]["concat"]["complete"]["accuracy"]["mean"] > 0.2  # chance is 0.1
    from test_train_cli import read_scalars

    assert len(read_scalars(logdir, "train_details/loss_seed1/concat_dropout")) == 2


def test_global_batch_must_split_over_the_replicas():
    assert check_global_batch(128, 4, "fusion") == 128
    with pytest.raises(ValueError, match=r"batch_size=130 does not split evenly over 4 replicas.*e.g. 128"):
        check_global_batch(130, 4, "fusion")


def test_pretrained_image_encoder_for_the_image_modalities(tmp_path):
    from pretrained_presets import save_tiny_vit

    vit = save_tiny_vit(tmp_path / "vit")
    settings = fusion_experiment.settings_for(
        {**fusion_experiment.DEFAULTS, "image_encoder": f"pretrained:{vit}", "embedding_dim": 8}
    )
    encoder = fusion_experiment.build_encoder((8, 4, 1), settings, "left_encoder", image=True)
    images = np.random.default_rng(0).uniform(0, 1, size=(3, 8, 4, 1)).astype("float32")
    assert tuple(encoder(images).shape) == (3, 8)
    assert encoder.get_layer("left_encoder_pretrained").input_shape == (None, 8, 4, 3)  # grey to RGB; resized inside
    own = fusion_experiment.build_encoder((8, 4, 1), settings, "audio_encoder", image=False)
    assert "pretrained" not in " ".join(layer.name for layer in own.layers)
    code = train.main(["fusion", "--logdir", str(tmp_path / "run"), "--set", f'text_encoder="pretrained:{vit}"'])
    assert code == 2
