"""The fusion recipe's pieces for a modality that is absent: unimodal losses on the
classifier's own path (``unimodal_head="fusion"``), epoch selection on the mean of
complete data and each modality absent (``epoch_selection="missing_mean"``), and
their config checks."""

import json

import keras
import numpy as np
import pytest

from xmodal_tf.experiments import fusion as fusion_experiment
from xmodal_tf.experiments.config import ConfigError
from xmodal_tf.models.fusion import MASK_INPUT, build_fusion_classifier

NUM_CLASSES = 3


def _problem(size=120, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size)
    inputs = {
        "left": (rng.normal(size=(size, 4)) + np.eye(3, 4)[labels]).astype("float32"),
        "right": (rng.normal(size=(size, 5)) + 2 * np.eye(3, 5)[labels]).astype("float32"),
    }
    settings = {
        "learning_rate": 3e-2,
        "batch_size": 32,
        "epochs": 3,
        "embedding_dim": 4,
        "encoder": "mlp",
        "encoder_hidden_units": [6],
    }
    return inputs, labels, settings


def _classifier(inputs, settings, fusion="concat", head="fusion", weight=0.7, share=0.4, name="model", seed=0):
    keras.utils.set_random_seed(seed)
    encoders = {
        modality: fusion_experiment.build_encoder(inputs[modality].shape[1:], settings, f"{modality}_encoder")
        for modality in inputs
    }
    return build_fusion_classifier(
        encoders,
        fusion,
        NUM_CLASSES,
        hidden_units=(5,),
        modality_dropout=0.3,
        unimodal_loss_weight=weight,
        unimodal_distillation=share,
        unimodal_head=head,
        name=name,
    )


# ----------------------------------------------------------------------------- unimodal_head="fusion"
@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_fusion_head_is_the_classifier_with_one_modality_present(fusion):
    inputs, labels, settings = _problem(size=40)
    model = _classifier(inputs, settings, fusion)
    # No heads of its own: the unimodal path IS the inference path with the other modality absent.
    assert model.unimodal_network is None
    assert not [layer.name for layer in model.layers if layer.name.endswith("_unimodal_classifier")]
    completed = model.complete_inputs(inputs)
    heads = model.unimodal_probabilities(completed)
    np.testing.assert_allclose(heads["left"].numpy(), model({"left": inputs["left"]}).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(heads["right"].numpy(), model({"right": inputs["right"]}).numpy(), rtol=1e-6, atol=1e-7)
    # The loss: (1 - share) one-hot + share x fused prediction, cross-entropy per modality,
    # rows lacking a modality (mask 0) counting 0 in that modality's term.
    mask = np.ones((40, 2), np.float32)
    mask[:10, 0] = 0.0
    fused = model({**inputs, MASK_INPUT: mask}).numpy()
    target = 0.6 * np.eye(NUM_CLASSES)[labels] + 0.4 * fused
    expected = 0.0
    for index, modality in enumerate(("left", "right")):
        alone = model({modality: inputs[modality]}).numpy()
        per_row = -(target * np.log(np.clip(alone, 1e-7, 1.0))).sum(axis=1)
        expected += (per_row * mask[:, index]).sum() / 40
    loss = float(model.unimodal_loss({**inputs, MASK_INPUT: mask}, labels, predictions=fused))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_fusion_head_trains_the_missing_modality_path_and_saves(tmp_path):
    """Training with the unimodal losses on the fusion path changes the weights that the
    prediction with a modality absent uses (the auxiliary heads' loss does not reach the
    fusion head); the setting round-trips through get_config and .keras files."""
    inputs, labels, settings = _problem()
    import tensorflow as tf

    reach = {}
    for head in ("fusion", "auxiliary"):
        model = _classifier(inputs, settings, "concat", head=head, weight=1.0, share=0.0)
        kernel = model.get_layer("classifier").kernel  # the fused head's softmax layer
        with tf.GradientTape() as tape:
            loss = model.unimodal_loss(inputs, labels, training=True)
        gradient = tape.gradient(loss, kernel)
        reach[head] = 0.0 if gradient is None else float(np.abs(gradient.numpy()).max())
    assert reach["fusion"] > 0 and reach["auxiliary"] == 0
    model = _classifier(inputs, settings, "concat", head="fusion")
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(inputs, labels, epochs=3, batch_size=40, verbose=0)
    assert history.history["unimodal_loss"][-1] < history.history["unimodal_loss"][0]
    assert model.get_config()["unimodal_head"] == "fusion"
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.unimodal_head == "fusion"
    assert json.dumps(loaded.get_config(), sort_keys=True) == json.dumps(model.get_config(), sort_keys=True)
    np.testing.assert_array_equal(loaded({"right": inputs["right"]}).numpy(), model({"right": inputs["right"]}).numpy())


def test_unimodal_head_is_checked():
    inputs, _, settings = _problem(size=8)
    with pytest.raises(ValueError, match="unimodal_head must be one of"):
        _classifier(inputs, settings, head="shared")
    assert _classifier(inputs, settings, head="auxiliary").get_config()["unimodal_head"] == "auxiliary"


# ----------------------------------------------------------------------------- unimodal teachers
@pytest.mark.parametrize("head", ["auxiliary", "fusion"])
def test_teacher_share_enters_each_modality_target(head):
    inputs, labels, settings = _problem(size=30)
    model = _classifier(inputs, settings, "concat", head=head, weight=1.0, share=0.3)
    rng = np.random.default_rng(1)
    teacher = rng.dirichlet(np.ones(NUM_CLASSES), size=30).astype("float32")
    fused = model(inputs).numpy()
    heads = {modality: p.numpy() for modality, p in model.unimodal_probabilities(model.complete_inputs(inputs)).items()}
    one_hot = np.eye(NUM_CLASSES)[labels]
    expected = 0.0
    for modality in ("left", "right"):
        # Only "left" has a teacher: its target is 0.2 label + 0.3 fused + 0.5 teacher.
        target = 0.2 * one_hot + 0.3 * fused + 0.5 * teacher if modality == "left" else 0.7 * one_hot + 0.3 * fused
        expected += -(target * np.log(np.clip(heads[modality], 1e-7, 1.0))).sum(axis=1).mean()
    loss = model.unimodal_loss(inputs, labels, predictions=fused, teachers={"left": teacher}, teacher_share=0.5)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    without = float(model.unimodal_loss(inputs, labels, predictions=fused))
    assert without != pytest.approx(float(loss))
    with pytest.raises(ValueError, match="at most 1"):
        model.unimodal_loss(inputs, labels, predictions=fused, teachers={"left": teacher}, teacher_share=0.8)
    with pytest.raises(ValueError, match="unknown modalities"):
        model.unimodal_loss(inputs, labels, predictions=fused, teachers={"audio": teacher}, teacher_share=0.5)


def test_teachers_train_as_alone_and_students_read_them():
    """In the joint model, ``unimodal_teacher_distillation`` changes the *_dropout
    classifier's training, never the single-modality classifiers' (stop-gradient)."""
    inputs, labels, settings = _problem()
    encoder = fusion_experiment.build_encoder

    def trained(teacher_share):
        keras.utils.set_random_seed(0)
        classifiers = {
            modality + "_only": build_fusion_classifier(
                {modality: encoder(inputs[modality].shape[1:], settings, f"{modality}_encoder")},
                "average",
                NUM_CLASSES,
                hidden_units=(5,),
                name=f"{modality}_only",
            )
            for modality in inputs
        }
        classifiers["late_dropout"] = _classifier(
            inputs, settings, "late", head="auxiliary", weight=1.0, share=0.0, name="late_dropout", seed=3
        )
        joint = fusion_experiment.JointTraining(
            classifiers, inputs, {**settings, "unimodal_teacher_distillation": teacher_share}
        )
        keras.utils.set_random_seed(0)
        joint.fit(inputs, labels, seed=0)
        return {name: [weight.numpy() for weight in classifier.weights] for name, classifier in classifiers.items()}

    plain, taught = trained(0.0), trained(0.6)
    for name in ("left_only", "right_only"):
        for expected, actual in zip(plain[name], taught[name]):
            np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7, err_msg=name)
    assert max(np.abs(a - b).max() for a, b in zip(plain["late_dropout"], taught["late_dropout"])) > 1e-4


# ----------------------------------------------------------------------------- epoch_selection
def test_missing_mean_selection_scores_the_dropout_classifiers_with_each_modality_absent():
    inputs, labels, settings = _problem()
    settings = {**settings, "epoch_selection": "missing_mean"}
    classifiers = {"left_only": None, "concat": None, "concat_dropout": None}
    keras.utils.set_random_seed(0)
    encoder = fusion_experiment.build_encoder
    classifiers["left_only"] = build_fusion_classifier(
        {"left": encoder((4,), settings, "left_encoder")}, "average", NUM_CLASSES, hidden_units=(5,), name="left_only"
    )
    classifiers["concat"] = _classifier(inputs, settings, weight=0.0, share=0.0, name="concat", seed=1)
    classifiers["concat_dropout"] = _classifier(inputs, settings, name="concat_dropout", seed=2)
    assert fusion_experiment.selection_criteria(classifiers, settings) == {
        "left_only": "complete",
        "concat": "complete",
        "concat_dropout": "mean",
    }
    assert set(fusion_experiment.selection_criteria(classifiers, {"epoch_selection": "complete"}).values()) == {
        "complete"
    }
    joint = fusion_experiment.JointTraining(classifiers, inputs, settings)
    validation = ({name: array[80:] for name, array in inputs.items()}, labels[80:])
    joint.fit({name: array[:80] for name, array in inputs.items()}, labels[:80], seed=0)
    logs = joint.model.held_out_logs(validation)
    modalities = ("left", "right")
    absent = {}
    for index, modality in enumerate(modalities):
        present = np.ones((40, 2), bool)
        present[:, index] = False
        probabilities = fusion_experiment.predict(classifiers["concat_dropout"], validation[0], present, modalities)
        absent[modality] = float(np.mean(probabilities.argmax(axis=1) == labels[80:]))
        assert logs[f"val_concat_dropout_{modality}_absent_accuracy"] == pytest.approx(absent[modality])
    complete = logs["val_concat_dropout_accuracy"]
    criterion = np.mean([complete, absent["left"], absent["right"]])
    assert logs["val_concat_dropout_criterion"] == pytest.approx(criterion)
    assert "val_concat_criterion" not in logs and "val_left_only_criterion" not in logs
    # The stored best is the criterion (the mean) for the dropout classifier, the complete
    # accuracy for the others; they differ here, so choosing on complete data would show.
    assert criterion != pytest.approx(complete)
    best = dict(zip(classifiers, joint.model.best_accuracy.numpy()))
    assert best["concat_dropout"] == pytest.approx(criterion)
    assert best["concat"] == pytest.approx(logs["val_concat_accuracy"])
    # An epoch without evaluation logs NaN for every key, the absent ones included.
    empty = joint.model.held_out_logs(None)
    assert set(empty) == set(logs) and all(np.isnan(value) for value in empty.values())


def test_missing_mean_compares_the_mean_not_the_complete_accuracy():
    """With a best so far between the complete accuracy and the mean, the epoch is taken
    exactly when the mean beats it."""
    inputs, labels, settings = _problem()
    settings = {**settings, "epoch_selection": "missing_mean"}
    classifiers = {"concat_dropout": _classifier(inputs, settings, name="concat_dropout")}
    joint = fusion_experiment.JointTraining(classifiers, inputs, settings)
    validation = ({name: array[80:] for name, array in inputs.items()}, labels[80:])
    joint.fit({name: array[:80] for name, array in inputs.items()}, labels[:80], seed=0)
    model = joint.model
    model.reset_selection()
    logs = model.held_out_logs(validation)
    assert int(model.best_epoch.numpy()[0]) == 1
    complete, mean = logs["val_concat_dropout_accuracy"], logs["val_concat_dropout_criterion"]
    assert complete != pytest.approx(mean)
    model.best_accuracy.assign(np.array([(complete + mean) / 2]))
    model.held_out_logs(validation)  # epoch 2, the same weights and scores
    assert int(model.best_epoch.numpy()[0]) == (2 if mean > complete else 1)
    model.held_out_logs(validation)  # epoch 3: a tie with the best, the earlier epoch stays
    assert int(model.best_epoch.numpy()[0]) == (2 if mean > complete else 1)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("epoch_selection", "best", "epoch_selection must be one of"),
        ("unimodal_head", "shared", "unimodal_head must be one of"),
        ("unimodal_teacher_distillation", 0.6, r"unimodal_teacher_distillation must be a number in \[0, 1 - "),
        ("unimodal_teacher_distillation", -0.1, "unimodal_teacher_distillation must be"),
        ("unimodal_teacher_distillation", True, "unimodal_teacher_distillation must be"),
    ],
)
def test_config_checks(key, value, message):
    with pytest.raises(ConfigError, match=message):
        # (unimodal_distillation 0.5: a teacher share above 0.5 leaves the labels less than nothing)
        fusion_experiment.EXPERIMENT.validate({**fusion_experiment.DEFAULTS, "unimodal_distillation": 0.5, key: value})


def test_defaults_per_data_set_are_valid():
    for data in fusion_experiment.DATA_SETS:
        settings = fusion_experiment.settings_for({**fusion_experiment.DEFAULTS, "data": data})
        assert settings["epoch_selection"] in fusion_experiment.EPOCH_SELECTIONS
        assert settings["unimodal_head"] in fusion_experiment.UNIMODAL_HEADS
        fusion_experiment.EXPERIMENT.validate({**fusion_experiment.DEFAULTS, "data": data})
