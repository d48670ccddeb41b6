"""MultimodalAutoencoder: fit/evaluate/predict, modality dropout, encode/translate, save/load,
distribution, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip, assert_keras_round_trip, assert_same_optimizer_state, assert_same_weights

from xmodal_tf.encoders import mlp_encoder
from xmodal_tf.models.mae import MultimodalAutoencoder

SIZES = {"a": 12, "b": 10}


def two_view_data(n=600, seed=0):
    """Two views driven by one shared 3-dim latent (plus a little private noise)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    views = {}
    for name, size in SIZES.items():
        mixing = rng.normal(size=(3, size))
        views[name] = (np.tanh(latent @ mixing) + 0.05 * rng.normal(size=(n, size))).astype("float32")
    return views


@pytest.fixture(scope="module")
def data():
    views = two_view_data()
    return {"train": {k: v[:400] for k, v in views.items()}, "test": {k: v[400:] for k, v in views.items()}}


def decoder(code_dim, size, name, hidden=16):
    inputs = keras.Input((code_dim,))
    hidden_layer = keras.layers.Dense(hidden, activation="relu", name=f"{name}_hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(size, name=f"{name}_output")(hidden_layer), name=name)


def build_model(code_dim=4, seed=0, sizes=SIZES, **kwargs):
    keras.utils.set_random_seed(seed)
    encoders = {
        name: mlp_encoder(size, 8, hidden_units=(16,), activation="relu", name=f"encoder_{name}")
        for name, size in sizes.items()
    }
    decoders = {name: decoder(code_dim, size, f"decoder_{name}") for name, size in sizes.items()}
    kwargs.setdefault("seed", seed)
    return MultimodalAutoencoder(encoders, decoders, code_dim=code_dim, **kwargs)


def dict_batches(views, batch_size=100, labels=None):
    elements = views if labels is None else (views, labels)
    return tf.data.Dataset.from_tensor_slices(elements).batch(batch_size)


# ----------------------------------------------------------------------------- training
def test_fit_evaluate_predict_with_every_input_format(data):
    model = build_model(reconstruction_losses={"b": "mae"}, loss_weights={"a": 2.0})
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(
        data["train"], batch_size=100, epochs=6, verbose=0, validation_data=dict_batches(data["test"])
    ).history
    assert set(history) == {
        "loss",
        "reconstruction_a",
        "reconstruction_b",
        "val_loss",
        "val_reconstruction_a",
        "val_reconstruction_b",
    }
    assert all(np.isfinite(values).all() for values in history.values())
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    np.testing.assert_allclose(
        history["loss"], 2 * np.asarray(history["reconstruction_a"]) + history["reconstruction_b"], rtol=1e-5
    )
    model.fit(dict_batches(data["train"], labels=np.arange(400)), verbose=0)  # labels are ignored
    assert model.optimizer.iterations.numpy() == 28

    # evaluate = the weighted losses of all-modality reconstructions, computed by hand.
    logs = model.evaluate(dict_batches(data["test"]), verbose=0, return_dict=True)
    predicted = model.predict(dict_batches(data["test"], labels=np.arange(200)), verbose=0)
    assert {k: v.shape for k, v in predicted.items()} == {"a": (200, 12), "b": (200, 10)}
    mse_a = np.mean((predicted["a"] - data["test"]["a"]) ** 2)
    mae_b = np.mean(np.abs(predicted["b"] - data["test"]["b"]))
    np.testing.assert_allclose(
        [logs["reconstruction_a"], logs["reconstruction_b"], logs["loss"]], [mse_a, mae_b, 2 * mse_a + mae_b], rtol=1e-4
    )
    np.testing.assert_allclose(model.reconstruct(data["test"])["b"], predicted["b"], rtol=1e-5, atol=1e-6)


def test_modality_dropout_shares_as_configured():
    cases = [
        ({"a": 1, "b": 1}, 0.5, {"a": 0.25, "b": 0.25}),
        ({"a": 1, "b": 1}, {"a": 0.3, "b": 0.1}, {"a": 0.3, "b": 0.1}),
        ({"a": 1, "b": 1}, {"b": 1.0}, {"a": 0.0, "b": 1.0}),
        ({"a": 1, "b": 1, "c": 1}, 0.6, {"a": 0.2, "b": 0.2, "c": 0.2}),
        ({"a": 1, "b": 1}, 0.0, {"a": 0.0, "b": 0.0}),
    ]
    n = 40000
    for sizes, dropout, expected_alone in cases:
        model = build_model(sizes=sizes, modality_dropout=dropout, seed=3)
        mask = model.draw_modality_mask(n).numpy()
        assert mask.shape == (n, len(sizes)) and set(np.unique(mask)) <= {0.0, 1.0}
        kept = mask.sum(axis=1)
        assert ((kept == 1) | (kept == len(sizes))).all()  # one modality alone, or all of them
        for index, name in enumerate(sizes):
            alone = np.mean((kept == 1) & (mask[:, index] == 1))
            assert abs(alone - expected_alone[name]) < 0.01, (dropout, name, alone)
        assert abs(np.mean(kept == len(sizes)) - (1 - sum(expected_alone.values()))) < 0.01
    # Seeded: the same seed draws the same masks; draws advance.
    first, second = (build_model(modality_dropout=0.5, seed=5) for _ in range(2))
    draws = [first.draw_modality_mask(64).numpy() for _ in range(2)]
    np.testing.assert_array_equal(draws[0], second.draw_modality_mask(64).numpy())
    assert not np.array_equal(draws[0], draws[1])


def test_training_step_zeroes_and_masks_dropped_modalities(data):
    # Every example keeps only "a": "b"'s encoder and projection get no gradient at all,
    # but "b"'s decoder still learns (the loss reconstructs every modality).
    model = build_model(modality_dropout={"a": 1.0})
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    frozen = model.encoders["b"].weights + model.projections["b"].weights
    learning = model.decoders["b"].weights + model.encoders["a"].weights
    before = [w.numpy() for w in frozen + learning]
    model.fit(data["train"], batch_size=100, epochs=2, verbose=0)
    after = [w.numpy() for w in frozen + learning]
    for old, new in zip(before[: len(frozen)], after[: len(frozen)]):
        np.testing.assert_array_equal(old, new)
    assert all(not np.array_equal(old, new) for old, new in zip(before[len(frozen) :], after[len(frozen) :]))


def test_encode_every_subset_matches_the_training_mask(data):
    model = build_model(code_dim=5)
    inputs = data["test"]
    codes = {
        ("a",): model.encode({"a": inputs["a"]}),
        ("b",): model.encode(inputs, present="b"),
        ("a", "b"): model.encode(inputs),
    }
    for subset, code in codes.items():
        assert code.shape == (200, 5) and np.isfinite(code).all(), subset
    assert not np.allclose(codes[("a",)], codes[("a", "b")])
    # A code from "a" alone does not depend on "b" at all.
    np.testing.assert_array_equal(model.encode({"a": inputs["a"], "b": 0 * inputs["b"]}, present=["a"]), codes[("a",)])
    # The training path (zeroed + masked rows) gives each row the code of its subset.
    mask = np.tile(np.array([[1, 0], [0, 1], [1, 1]], "float32"), (67, 1))[:200]
    masked = model._shared_code(
        {k: tf.constant(v) for k, v in inputs.items()}, training=False, mask=tf.constant(mask)
    ).numpy()
    for row_mask, subset in (((1, 0), ("a",)), ((0, 1), ("b",)), ((1, 1), ("a", "b"))):
        rows = (mask == row_mask).all(axis=1)
        np.testing.assert_allclose(masked[rows], codes[subset][rows], rtol=1e-5, atol=1e-6)
    translated = model.translate(inputs["a"], source="a", target="b")
    np.testing.assert_array_equal(translated, model.reconstruct(inputs, present="a")["b"])
    both = model.translate(inputs, source=["a", "b"], target=["b"])
    np.testing.assert_allclose(both["b"], model.predict(inputs, verbose=0)["b"], rtol=1e-5, atol=1e-6)


def test_modality_dropout_makes_translation_work(data):
    """Trained WITH modality dropout, one modality alone predicts the other far better."""
    errors = {}
    for dropout in (2 / 3, 0.0):
        model = build_model(modality_dropout=dropout, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(2e-2))
        # 120 steps in one epoch: Keras' per-epoch overhead would dominate 30 short epochs.
        batches = tf.data.Dataset.from_tensor_slices(data["train"]).shuffle(400, seed=0).repeat().batch(100)
        model.fit(batches, steps_per_epoch=120, verbose=0, shuffle=False)
        errors[dropout] = [
            np.mean((model.translate(data["test"][s], s, t) - data["test"][t]) ** 2)
            for s, t in (("a", "b"), ("b", "a"))
        ]
    baseline = [np.mean((data["test"][t] - data["train"][t].mean(0)) ** 2) for t in ("b", "a")]
    for with_dropout, without, mean_guess in zip(errors[2 / 3], errors[0.0], baseline):
        assert with_dropout < 0.5 * without, errors
        assert with_dropout < 0.5 * mean_guess, (errors, baseline)


# ----------------------------------------------------------------------------- saving
def test_keras_round_trip_restores_outputs_seed_and_optimizer(data, tmp_path):
    model = build_model(modality_dropout={"a": 0.3, "b": 0.2}, reconstruction_losses="mae")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(data["train"], batch_size=100, epochs=2, verbose=0)
    test = data["test"]
    loaded = assert_keras_round_trip(
        model, tmp_path, outputs=lambda m: (m.encode(test), m.translate(test["b"], "b", "a"))
    )
    assert [m.name for m in loaded.encoders.values()] == ["encoder_a", "encoder_b"]
    assert loaded.modalities == ("a", "b") and loaded.dropout_shares == (0.3, 0.2)
    # Training continues exactly like the un-saved twin: Adam moments, step and seed state.
    assert_same_optimizer_state(loaded.optimizer, model.optimizer)
    assert loaded.optimizer.iterations.numpy() == 8
    saved_kernel = model.encoders["a"].weights[0].numpy()
    one_batch = {k: v[:100] for k, v in data["train"].items()}
    for twin in (model, loaded):
        twin.fit(one_batch, batch_size=100, epochs=1, verbose=0, shuffle=False)
    assert loaded.optimizer.iterations.numpy() == 9
    assert_same_weights(loaded.weights, model.weights)
    assert not np.array_equal(model.encoders["a"].weights[0].numpy(), saved_kernel)  # the step moved it


def test_from_config_without_training():
    model = build_model(
        modality_dropout={"a": 0.3, "b": 0.2}, reconstruction_losses={"b": "mae"}, loss_weights={"a": 2.0}
    )
    clone = assert_config_round_trip(model)
    assert clone.modalities == ("a", "b") and clone.dropout_shares == (0.3, 0.2)


@keras.saving.register_keras_serializable(package="xmodal_tf_tests")
class SubclassedModalityEncoder(keras.Model):
    """An encoder whose input shape is unknown until it is called."""

    def __init__(self, units=6, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, activation="tanh")

    def call(self, inputs):
        return self.dense(inputs)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_subclassed_encoders_build_on_the_first_batch_and_reload(data, tmp_path):
    keras.utils.set_random_seed(0)
    model = MultimodalAutoencoder(
        {"a": SubclassedModalityEncoder(name="sa"), "b": SubclassedModalityEncoder(name="sb")},
        {"a": decoder(3, 12, "da"), "b": decoder(3, 10, "db")},
        code_dim=3,
        seed=0,
    )
    assert not model.built
    with pytest.raises(ValueError, match="every modality"):
        model.encode({"a": data["test"]["a"]})
    model.compile(optimizer="adam")
    model.fit(data["train"], batch_size=100, verbose=0)
    assert model.built and model.optimizer.iterations.numpy() == 4
    loaded = assert_keras_round_trip(model, tmp_path, outputs=lambda m: m.encode(data["test"], present="b"))
    with pytest.raises(ValueError, match=r"modality 'a' expects batches of shape \(batch, 12\)"):
        loaded.encode({"a": data["test"]["a"][:, :5]})


# ----------------------------------------------------------------------------- distribution
# ----------------------------------------------------------------------------- bad input
def test_constructor_errors():
    encoders = {name: mlp_encoder(size, 4, hidden_units=(), name=f"e{name}") for name, size in SIZES.items()}
    decoders = {name: mlp_encoder(3, size, hidden_units=(), name=f"d{name}") for name, size in SIZES.items()}
    with pytest.raises(ValueError, match="decoders has no entry for modality 'b'"):
        MultimodalAutoencoder(encoders, {"a": decoders["a"]}, code_dim=3)
    with pytest.raises(ValueError, match="'c', which is not a modality of encoders"):
        MultimodalAutoencoder(encoders, {**decoders, "c": decoders["a"]}, code_dim=3)
    with pytest.raises(ValueError, match="at least two modalities"):
        MultimodalAutoencoder({"a": encoders["a"]}, {"a": decoders["a"]}, code_dim=3)
    with pytest.raises(ValueError, match="identifiers"):
        MultimodalAutoencoder({"a b": encoders["a"], "b": encoders["b"]}, {"a b": decoders["a"], "b": decoders["b"]})
    with pytest.raises(TypeError, match="dict"):
        MultimodalAutoencoder([encoders["a"], encoders["b"]], decoders)
    with pytest.raises(
        ValueError,
        match=r"maps the code \(batch, 3\) to \(batch, 12\), but modality 'b' has "
        r"shape \(batch, 10\)",
    ):
        MultimodalAutoencoder(encoders, {"a": decoders["a"], "b": mlp_encoder(3, 12, hidden_units=())}, code_dim=3)
    with pytest.raises(ValueError, match=r"decoders\['a'\] must take the shared code \(batch, 4\)"):
        MultimodalAutoencoder(encoders, decoders, code_dim=4)  # the decoders expect a 3-dim code
    flat = keras.Model(encoders["a"].inputs, keras.layers.Reshape((2, 2))(encoders["a"].outputs[0]))
    with pytest.raises(ValueError, match="one \\(batch, features\\) tensor"):
        MultimodalAutoencoder({"a": flat, "b": encoders["b"]}, decoders, code_dim=3)
    for dropout, message in [
        (-0.1, "share in \\[0, 1\\]"),
        (1.5, "share in \\[0, 1\\]"),
        ({"a": 0.7, "b": 0.5}, "sum to at most 1"),
        ({"c": 0.1}, "unknown modality 'c'"),
        (True, "share in"),
    ]:
        with pytest.raises(ValueError, match=message):
            MultimodalAutoencoder(encoders, decoders, code_dim=3, modality_dropout=dropout)
    with pytest.raises(ValueError, match="unknown loss 'l2'"):
        MultimodalAutoencoder(encoders, decoders, code_dim=3, reconstruction_losses={"a": "l2"})
    with pytest.raises(ValueError, match="all 0"):
        MultimodalAutoencoder(encoders, decoders, code_dim=3, loss_weights={"a": 0, "b": 0.0})


def test_input_errors_name_the_problem(data):
    model = build_model()
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"unknown modality 'c'; the modalities are \['a', 'b'\]"):
        model.fit({**data["train"], "c": data["train"]["a"]}, verbose=0)
    with pytest.raises(ValueError, match=r"needs every modality.*lack \['b'\]"):
        model.fit({"a": data["train"]["a"]}, verbose=0)
    with pytest.raises(ValueError, match=r"modality 'a' expects batches of shape \(batch, 12\); got shape"):
        model.fit({"a": data["train"]["a"][:, :, None], "b": data["train"]["b"]}, verbose=0)
    with pytest.raises(ValueError, match=r"modality 'b' expects batches of shape \(batch, 10\)"):
        model.encode({"a": data["test"]["a"], "b": data["test"]["b"][:, :9]})
    with pytest.raises(ValueError, match="present is empty"):
        model.encode(data["test"], present=[])
    with pytest.raises(ValueError, match=r"unknown modality 'image'.*\['a', 'b'\]"):
        model.encode(data["test"], present="image")
    with pytest.raises(ValueError, match=r"present includes \['b'\] but the inputs have no such entry"):
        model.encode({"a": data["test"]["a"]}, present=["a", "b"])
    with pytest.raises(ValueError, match="different numbers of rows"):
        model.encode({"a": data["test"]["a"], "b": data["test"]["b"][:50]})
    with pytest.raises(ValueError, match="unknown modality 'c'"):
        model.translate(data["test"]["a"], source="a", target="c")
    with pytest.raises(TypeError, match="dict"):
        model.predict(data["test"]["a"], verbose=0)
    with pytest.raises(ValueError, match="own loss"):
        model.compile(optimizer="sgd", loss="mse")


def test_non_finite_inputs_name_the_rows_in_encode_reconstruct_and_translate(data):
    model = build_model()
    model.encode(data["test"])  # builds
    bad = data["test"]["b"].copy()
    bad[[3, 17], 0] = [np.nan, np.inf]
    inputs = {"a": data["test"]["a"], "b": bad}
    message = (
        r"^MultimodalAutoencoder.{}: inputs\['b'\] has non-finite values \(NaN or inf\) in 2 row\(s\) "
        r"\[3, 17\]; remove or impute those rows first, or leave that modality out \(present=\.\.\.\)"
    )
    with pytest.raises(ValueError, match=message.format("encode")):
        model.encode(inputs, batch_size=8)  # rows of the whole input, not of a batch
    with pytest.raises(ValueError, match=message.format("reconstruct")):
        model.reconstruct(inputs)
    with pytest.raises(ValueError, match=message.format("translate")):
        model.translate(bad, source="b", target="a")
    # The fix the message offers works: encode from the finite modality alone.
    assert np.isfinite(model.encode(inputs, present="a")).all()
