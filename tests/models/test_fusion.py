"""build_fusion_classifier: training with fit, absent modalities, save/load, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip, assert_keras_round_trip

from xmodal_tf.encoders import mlp_encoder
from xmodal_tf.layers import GatedFusion, ModalityDropout
from xmodal_tf.models.fusion import FUSION_STRATEGIES, MASK_INPUT, FusionClassifier, build_fusion_classifier

NUM_CLASSES = 3


def two_modality_problem(n=480, seed=0):
    """Two noisy views of 3 classes: each view alone is informative but imperfect."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n)
    a = rng.normal(size=(n, 5)) + 1.5 * np.eye(NUM_CLASSES, 5)[labels]
    b = rng.normal(size=(n, 6)) + 1.5 * np.eye(NUM_CLASSES, 6)[labels]
    return {"a": a.astype("float32"), "b": b.astype("float32")}, labels


def encoders(dim_a=8, dim_b=8):
    return {
        "a": mlp_encoder(5, dim_a, hidden_units=(), name="encoder_a"),
        "b": mlp_encoder(6, dim_b, hidden_units=(), name="encoder_b"),
    }


def build(fusion="concat", seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    kwargs.setdefault("hidden_units", (8,))
    return build_fusion_classifier(encoders(), fusion, NUM_CLASSES, **kwargs)


@pytest.fixture(scope="module")
def data():
    return two_modality_problem()


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_fit_beats_chance_with_both_and_with_one_modality(data, fusion):
    inputs, labels = data
    model = build(fusion, modality_dropout=0.3, seed=1)
    model.compile(keras.optimizers.Adam(2e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = {key: value[:360] for key, value in inputs.items()}
    dataset = tf.data.Dataset.from_tensor_slices((train, labels[:360])).shuffle(360, seed=0).batch(60)
    history = model.fit(dataset, epochs=4, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    test = {key: value[360:] for key, value in inputs.items()}
    accuracy = {}
    for name, given in (("both", test), ("a", {"a": test["a"]}), ("b", {"b": test["b"]})):
        # predict (a traced function) for one case; direct calls are cheaper for the rest.
        probabilities = model.predict(given, verbose=0) if name == "a" else model(given).numpy()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        accuracy[name] = np.mean(probabilities.argmax(axis=1) == labels[360:])
    assert accuracy["both"] > 0.7, accuracy  # chance is 1/3
    assert min(accuracy["a"], accuracy["b"]) > 0.5, accuracy
    assert accuracy["both"] >= max(accuracy["a"], accuracy["b"]) - 0.05, accuracy
    logs = model.evaluate(
        {**test, MASK_INPUT: np.tile([1.0, 0.0], (120, 1))}, labels[360:], verbose=0, return_dict=True
    )
    np.testing.assert_allclose(logs["accuracy"], accuracy["a"], atol=1e-6)


# ----------------------------------------------------------------------------- absent modalities
@pytest.mark.parametrize("unimodal_loss_weight", [0.0, 0.5], ids=["plain", "unimodal_losses"])
@pytest.mark.parametrize("fusion", FUSION_STRATEGIES)
def test_absent_modalities_and_keras_round_trip(data, fusion, unimodal_loss_weight, tmp_path):
    inputs, _ = data
    model = build(
        fusion,
        modality_dropout=0.2,
        projection_dim=6 if fusion == "tensor" else None,
        unimodal_loss_weight=unimodal_loss_weight,
        unimodal_distillation=unimodal_loss_weight,
    )
    batch = {key: value[:12] for key, value in inputs.items()}
    mask = np.array([[1, 1], [1, 0], [0, 1], [0, 0]] * 3, dtype=bool)
    output = model({**batch, MASK_INPUT: mask}).numpy()
    assert output.shape == (12, NUM_CLASSES) and np.isfinite(output).all()
    # Garbage (NaN included) in absent modalities changes nothing.
    garbage = {"a": np.where(mask[:, :1], batch["a"], np.nan), "b": np.where(mask[:, 1:], batch["b"], 1e6)}
    np.testing.assert_array_equal(model({**garbage, MASK_INPUT: mask}).numpy(), output)
    # A missing key is "absent for every example"; a missing mask is "all given ones present".
    only_a = model({"a": batch["a"]}).numpy()
    np.testing.assert_allclose(only_a, model({**batch, MASK_INPUT: np.tile([1, 0], (12, 1))}).numpy(), atol=1e-6)
    np.testing.assert_allclose(model(batch).numpy(), model({**batch, MASK_INPUT: np.ones((12, 2))}).numpy(), atol=1e-6)
    np.testing.assert_allclose(output[1::4], only_a[1::4], atol=1e-6)
    # No modality at all: a fixed output (uniform for late fusion).
    nothing = output[3::4]
    np.testing.assert_allclose(nothing, np.broadcast_to(nothing[0], nothing.shape), atol=1e-6)
    if fusion == "late":
        np.testing.assert_allclose(nothing, 1.0 / NUM_CLASSES, rtol=1e-6)
    # The model reloads with the same outputs, strategy and dropout.
    loaded = assert_keras_round_trip(
        model, tmp_path, inputs={**batch, MASK_INPUT: mask}, outputs=lambda m: m({"a": batch["a"]})
    )
    assert isinstance(loaded, FusionClassifier) and loaded.modalities == ("a", "b")
    np.testing.assert_array_equal(loaded({**batch, MASK_INPUT: mask}).numpy(), output)
    if unimodal_loss_weight:
        assert loaded.unimodal_loss_weight == unimodal_loss_weight == loaded.unimodal_distillation
        for modality, probabilities in model.unimodal_network(batch).items():
            np.testing.assert_array_equal(loaded.unimodal_network(batch)[modality].numpy(), probabilities.numpy())
    else:
        assert loaded.unimodal_network is None


def test_modality_dropout_only_in_training(data):
    inputs, _ = data
    model = build("average", modality_dropout={"a": 0.5})
    assert isinstance(model.get_layer("modality_dropout"), ModalityDropout)
    batch = {key: value[:200] for key, value in inputs.items()}
    inference = model(batch).numpy()
    np.testing.assert_array_equal(model(batch, training=False).numpy(), inference)
    training = model(batch, training=True).numpy()
    # With "a" dropped the output is the b-only output; rate 0.5 drops it in about half the rows.
    only_b = model({"b": batch["b"]}).numpy()
    dropped = np.all(np.isclose(training, only_b, atol=1e-6), axis=1)
    unchanged = np.all(np.isclose(training, inference, atol=1e-6), axis=1)
    assert (dropped | unchanged).all()
    assert 0.35 < dropped.mean() < 0.65


def test_custom_fusion_layer_and_shared_encoder_round_trip(data, tmp_path):
    inputs, _ = data
    keras.utils.set_random_seed(0)
    shared = mlp_encoder(5, 4, hidden_units=(), name="shared_encoder")
    model = build_fusion_classifier(
        {"left": shared, "right": shared}, GatedFusion(units=3, name="my_gates"), NUM_CLASSES
    )
    assert model.fusion_layer.name == "my_gates" and model.encoders["left"] is model.encoders["right"]
    batch = {"left": inputs["a"][:10], "right": inputs["a"][10:20]}
    loaded = assert_keras_round_trip(model, tmp_path, inputs=batch)
    assert loaded.encoders["left"] is loaded.encoders["right"]
    assert isinstance(loaded.fusion_layer, GatedFusion) and loaded.fusion_layer.units == 3


@pytest.mark.parametrize("fusion", FUSION_STRATEGIES)
def test_from_config_without_training(fusion):
    model = build(fusion, unimodal_loss_weight=0.5, modality_dropout=0.3)
    clone = assert_config_round_trip(model)
    assert clone.modalities == ("a", "b") and clone.unimodal_loss_weight == 0.5


# ----------------------------------------------------------------------------- auxiliary unimodal losses
@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_unimodal_losses_train_every_head_and_are_reported(data, fusion):
    inputs, labels = data
    model = build(fusion, modality_dropout=0.3, unimodal_loss_weight=0.5, seed=1)
    heads = {"concat": ["a_unimodal_classifier", "b_unimodal_classifier"], "late": ["a_classifier", "b_classifier"]}
    assert [layer.name for layer in model.unimodal_network.layers[-2:]] == heads[fusion]
    head_kernels = [model.unimodal_network.get_layer(name).kernel for name in heads[fusion]]
    # Trained, and saved, with the model.
    assert all(any(kernel is variable for variable in model.trainable_variables) for kernel in head_kernels)
    model.compile(keras.optimizers.Adam(2e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    batch = {key: value[:60] for key, value in inputs.items()}
    # The training loss is the compiled loss plus the weighted unimodal loss ...
    probabilities = model(batch)
    compiled = keras.losses.sparse_categorical_crossentropy(labels[:60], probabilities).numpy().mean()
    unimodal = float(model.unimodal_loss(batch, labels[:60]))
    total = float(model.compute_loss(batch, labels[:60], probabilities, training=False))
    assert total == pytest.approx(compiled + 0.5 * unimodal, rel=1e-5)
    expected = sum(
        keras.losses.sparse_categorical_crossentropy(labels[:60], p).numpy().mean()
        for p in model.unimodal_network(batch).values()
    )
    assert unimodal == pytest.approx(expected, rel=1e-5)
    # ... whose gradient reaches each modality's head and encoder.
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, labels[:60], model(batch, training=True), training=True)
    encoder_kernels = [model.encoders[name].trainable_variables[0] for name in model.modalities]
    gradients = tape.gradient(loss, head_kernels + encoder_kernels)
    assert all(gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0 for gradient in gradients)
    # fit reports the unimodal loss, and it falls.
    before = [kernel.numpy().copy() for kernel in head_kernels]
    history = model.fit(inputs, labels, epochs=3, batch_size=60, verbose=0)
    assert history.history["unimodal_loss"][-1] < history.history["unimodal_loss"][0]
    assert all(not np.allclose(kernel.numpy(), old) for kernel, old in zip(head_kernels, before))
    logs = model.evaluate(inputs, labels, verbose=0, return_dict=True)
    assert logs["unimodal_loss"] == pytest.approx(float(model.unimodal_loss(inputs, labels)), rel=1e-4)
    # Each trained head alone beats chance (1/3) clearly.
    for modality, p in model.unimodal_network(inputs).items():
        assert np.mean(p.numpy().argmax(axis=1) == labels) > 0.6, modality


@pytest.mark.parametrize("fusion", ["attention", "late"])
def test_unimodal_distillation_targets_the_fused_prediction_without_moving_it(data, fusion):
    inputs, labels = data
    model = build(fusion, unimodal_loss_weight=1.5, unimodal_distillation=0.25, seed=2)
    batch, y = {key: value[:50] for key, value in inputs.items()}, labels[:50]
    fused = model(batch).numpy()
    target = 0.75 * np.eye(NUM_CLASSES)[y] + 0.25 * fused
    expected = sum(
        keras.losses.categorical_crossentropy(target, p).numpy().mean() for p in model.unimodal_network(batch).values()
    )
    assert float(model.unimodal_loss(batch, y)) == pytest.approx(expected, rel=1e-5)
    assert float(model.unimodal_loss(batch, y, predictions=fused)) == pytest.approx(expected, rel=1e-5)
    model.compile("adam", "sparse_categorical_crossentropy")
    compiled = keras.losses.sparse_categorical_crossentropy(y, fused).numpy().mean()
    total = float(model.compute_loss(batch, y, model(batch), training=False))
    assert total == pytest.approx(compiled + 1.5 * expected, rel=1e-5)
    # The fused prediction is a fixed target: the auxiliary loss moves the unimodal
    # pathways only, never the fusion layer or the head after it.
    with tf.GradientTape() as tape:
        loss = model.unimodal_loss(batch, y, predictions=model(batch, training=True), training=True)
    fused_only = model.fusion_layer.trainable_variables + (
        [] if fusion == "late" else model.get_layer("classifier").trainable_variables
    )
    for variable, gradient in zip(fused_only, tape.gradient(loss, fused_only)):
        assert gradient is None or not np.any(gradient.numpy()), variable.path
    # Pure distillation (share 1) ignores the labels.
    pure = build(fusion, unimodal_loss_weight=1.0, unimodal_distillation=1.0, seed=2)
    assert float(pure.unimodal_loss(batch, y)) == pytest.approx(float(pure.unimodal_loss(batch, (y + 1) % 3)))


def test_unimodal_heads_leave_inference_unchanged(data):
    inputs, _ = data
    batch = {key: value[:20] for key, value in inputs.items()}
    plain, with_heads = build("gated", seed=3), build("gated", seed=3, unimodal_loss_weight=1.0)
    assert plain.unimodal_network is None
    # Same seed, same main weights (the heads are built last): the same predictions.
    np.testing.assert_allclose(with_heads(batch).numpy(), plain(batch).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="no unimodal heads.*unimodal_loss_weight > 0"):
        plain.unimodal_loss(batch, np.zeros(20))


def test_unimodal_loss_skips_absent_modalities(data):
    inputs, labels = data
    model = build("average", unimodal_loss_weight=1.0)
    batch, y = {key: value[:40] for key, value in inputs.items()}, labels[:40]
    per_modality = {
        modality: keras.losses.sparse_categorical_crossentropy(y, p).numpy()
        for modality, p in model.unimodal_network(batch).items()
    }
    mask = np.ones((40, 2), dtype="float32")
    mask[:10, 0] = 0.0  # a absent from 10 rows
    mask[30:, 1] = 0.0  # b absent from 10 others
    expected = (per_modality["a"] * mask[:, 0]).sum() / 40 + (per_modality["b"] * mask[:, 1]).sum() / 40
    garbage = {"a": np.where(mask[:, :1] > 0, batch["a"], np.nan), "b": np.where(mask[:, 1:] > 0, batch["b"], 1e6)}
    assert float(model.unimodal_loss({**garbage, MASK_INPUT: mask}, y)) == pytest.approx(expected, rel=1e-5)
    # A missing key is "absent everywhere": only the other modality counts.
    assert float(model.unimodal_loss({"b": batch["b"]}, y)) == pytest.approx(per_modality["b"].mean(), rel=1e-5)
    # Sample weights scale each example's terms.
    weights = np.linspace(0.0, 2.0, 40).astype("float32")
    expected = ((per_modality["a"] + per_modality["b"]) * weights).sum() / 40
    assert float(model.unimodal_loss(batch, y, sample_weight=weights)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "weight, error, message",
    [
        (-0.1, ValueError, "must be a finite number >= 0"),
        (float("inf"), ValueError, "must be a finite number >= 0"),
        (float("nan"), ValueError, "must be a finite number >= 0"),
        ("0.5", TypeError, "must be a number >= 0"),
        (True, TypeError, "must be a number >= 0"),
    ],
)
def test_bad_unimodal_loss_weight_is_rejected(weight, error, message):
    with pytest.raises(error, match=f"unimodal_loss_weight {message}"):
        build("concat", unimodal_loss_weight=weight)


@pytest.mark.parametrize(
    "share, error",
    [(-0.5, ValueError), (1.5, ValueError), (float("nan"), ValueError), (None, TypeError), (False, TypeError)],
)
def test_bad_unimodal_distillation_is_rejected(share, error):
    with pytest.raises(error, match=r"unimodal_distillation must be (a number )?in \[0, 1\]"):
        build("concat", unimodal_loss_weight=1.0, unimodal_distillation=share)


# ----------------------------------------------------------------------------- bad input
def test_bad_arguments_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match=r"Unknown fusion strategy 'mean'.*'average', 'weighted', 'concat'"):
        build("mean")
    with pytest.raises(ValueError, match=r"average_fusion \(AverageFusion\).*'a': 8, 'b': 4.*projection_dim"):
        build_fusion_classifier(encoders(8, 4), "average", NUM_CLASSES)
    assert build_fusion_classifier(encoders(8, 4), "average", NUM_CLASSES, projection_dim=5).output.shape[-1] == 3
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        build_fusion_classifier(encoders(), "concat", 1)
    with pytest.raises(TypeError, match="non-empty dict"):
        build_fusion_classifier([mlp_encoder(5, 4)], "concat", NUM_CLASSES)
    with pytest.raises(ValueError, match="different models with the same name 'mlp_encoder'"):
        build_fusion_classifier({"a": mlp_encoder(5, 4), "b": mlp_encoder(6, 4)}, "concat", NUM_CLASSES)
    with pytest.raises(ValueError, match=r"modality_dropout names unknown modalities \['c'\]"):
        build("concat", modality_dropout={"c": 0.1})
    with pytest.raises(ValueError, match="may sum to at most 1"):
        build("concat", modality_dropout=0.7)
    with pytest.raises(TypeError, match="must accept the presence mask"):
        build(keras.layers.Concatenate())


def test_bad_call_inputs_are_rejected_with_clear_messages(data):
    inputs, _ = data
    model = build("concat")
    batch = {key: value[:4] for key, value in inputs.items()}
    with pytest.raises(ValueError, match=r"unknown input\(s\) \['image'\].*\['a', 'b'\]"):
        model({**batch, "image": batch["a"]})
    with pytest.raises(ValueError, match="at least one modality"):
        model({MASK_INPUT: np.ones((4, 2))})
    with pytest.raises(ValueError, match=r"modality_mask must have shape \(batch, 2\).*\(4, 3\)"):
        model({**batch, MASK_INPUT: np.ones((4, 3))})


def test_bad_predict_inputs_get_one_clear_error_not_a_keras_trace_or_uniform_probabilities(data):
    inputs, _ = data
    model = build("concat")
    batch = {key: value[:6].copy() for key, value in inputs.items()}
    assert model.predict(batch, verbose=0).shape == (6, NUM_CLASSES)
    with pytest.raises(ValueError, match=r"predict: the input dict is empty"):
        model.predict({}, verbose=0)
    with pytest.raises(ValueError, match=r"different numbers of rows \('a': \(6, 5\), 'b': \(5, 6\)\)"):
        model.predict({"a": batch["a"], "b": batch["b"][:5]}, verbose=0)
    with pytest.raises(ValueError, match=r"rows \('a': \(6, 5\), 'b': \(6, 6\), 'modality_mask': \(4, 2\)\)"):
        model.predict({**batch, MASK_INPUT: np.ones((4, 2))}, verbose=0)
    with pytest.raises(ValueError, match=r"modality 'b' takes rows of shape \(6,\); got an array of shape \(6, 7\)"):
        model.predict({"a": batch["a"], "b": np.zeros((6, 7), "float32")}, verbose=0)
    with pytest.raises(TypeError, match=r"'a' must be a numeric array"):
        model.predict({"a": np.array(["x"] * 6), "b": batch["b"]}, verbose=0)
    nan = batch["a"].copy()
    nan[2, 0] = np.nan
    with pytest.raises(
        ValueError,
        match=r"^fusion_classifier.predict: modality 'a' has non-finite values \(NaN or "
        r"inf\) in 1 row\(s\) \[2\]; replace them .*modality_mask",
    ):
        model.predict({"a": nan, "b": batch["b"]}, verbose=0)
    # The mask's shape is the user's (6 rows), not that of a predict batch (batch_size=4).
    with pytest.raises(ValueError, match=r"'modality_mask' must have shape \(n, 2\).*got shape \(6, 3\)\.$"):
        model.predict({**batch, MASK_INPUT: np.ones((6, 3))}, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=r"'modality_mask' must have shape \(n, 2\).*got shape \(6,\)\.$"):
        model.predict({**batch, MASK_INPUT: np.ones(6)}, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=r"'modality_mask' has non-finite values .* \[1\]; use 1 \(present\) or 0"):
        model.predict({**batch, MASK_INPUT: np.where(np.arange(12).reshape(6, 2) == 3, np.nan, 1.0)}, verbose=0)
    # A wrong feature count names the user's array, not a batch slice of it.
    with pytest.raises(ValueError, match=r"modality 'a' takes rows of shape \(5,\); got an array of shape \(6, 4\)"):
        model.predict({"a": batch["a"][:, :4], "b": batch["b"]}, batch_size=4, verbose=0)
    # The remedy the message gives works: zeros in place, the modality marked absent.
    fixed = nan.copy()
    fixed[2] = 0.0
    mask = np.ones((6, 2), "float32")
    mask[2, 0] = 0.0
    probabilities = model.predict({"a": fixed, "b": batch["b"], MASK_INPUT: mask}, verbose=0)
    assert np.isfinite(probabilities).all()
