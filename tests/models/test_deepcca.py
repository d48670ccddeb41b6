"""DeepCCA (keras.Model): training with fit, the loss, save/load, DCCAE, distribution, bad input."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip, assert_keras_round_trip, assert_same_optimizer_state
from two_replica_setup import PREAMBLE

from xmodal_tf.encoders import mlp_encoder
from xmodal_tf.losses import deep_cca_loss
from xmodal_tf.models import DeepCCA

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def two_view_data(n=600, seed=0):
    """Two 20-dim views that share a planted 2-dim latent, mixed nonlinearly."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, 2))
    views = []
    for _ in range(2):
        private = rng.normal(size=(n, 18))
        mixing = rng.normal(size=(20, 20)) / np.sqrt(20)
        views.append(np.tanh(np.concatenate([shared, private], axis=1) @ mixing).astype("float32"))
    return views


@pytest.fixture(scope="module")
def data():
    x, y = two_view_data()
    return {"x_train": x[:400], "y_train": y[:400], "x_test": x[400:], "y_test": y[400:]}


def build_model(n_components=2, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return DeepCCA(
        mlp_encoder(20, 4, hidden_units=(16,), name="encoder_x"),
        mlp_encoder(20, 4, hidden_units=(16,), name="encoder_y"),
        n_components=n_components,
        **kwargs,
    )


def pairs(x, y, batch_size=100):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


# ----------------------------------------------------------------------------- training
def test_fit_increases_held_out_correlation_and_score(data):
    model = build_model()
    before_held_out = model.held_out_correlations(data["x_test"], data["y_test"]).sum()
    before_score = model.fit_linear_cca(data["x_train"], data["y_train"]).score(data["x_test"], data["y_test"])
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    assert model.jit_compile is False
    history = model.fit(
        pairs(data["x_train"], data["y_train"]).shuffle(4, seed=0),
        epochs=25,
        verbose=0,
        validation_data=pairs(data["x_test"], data["y_test"]),
    )
    assert model.optimizer.iterations.numpy() == 100
    val = history.history["val_total_correlation"]
    assert val[-1] > val[0] + 0.2
    assert set(history.history) >= {"loss", "total_correlation", "skipped_batches", "val_loss"}
    assert np.allclose(history.history["loss"], -np.asarray(history.history["total_correlation"]))
    after_held_out = model.held_out_correlations(data["x_test"], data["y_test"]).sum()
    assert after_held_out > before_held_out + 0.3
    after_score = model.fit_linear_cca(data["x_train"], data["y_train"]).score(data["x_test"], data["y_test"])
    assert after_score > before_score + 0.3
    assert 0 < after_score <= 2
    x_variates, y_variates = model.transform(data["x_test"], data["y_test"])
    assert x_variates.shape == y_variates.shape == (200, 2) and x_variates.dtype == np.float64
    np.testing.assert_allclose(model.canonical_correlations_, model.linear_cca_.canonical_correlations_)


@pytest.mark.parametrize("objective,n_components", [("trace", 2), ("trace", None), ("squared", 3)])
def test_batch_loss_equals_deep_cca_loss(data, objective, n_components):
    model = build_model(n_components=n_components, objective=objective, reg=1e-3)
    x, y = data["x_train"][:100], data["y_train"][:100]
    h_x, h_y = model((x, y))
    expected = deep_cca_loss(h_x, h_y, n_components=n_components, reg=1e-3, objective=objective)
    results = model.batch_loss(x, y)
    np.testing.assert_allclose(results["loss"].numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["total_correlation"].numpy(), results["correlations"].numpy().sum(), rtol=1e-6)
    # evaluate on one batch reports the same value through the metric trackers.
    model.compile(optimizer="sgd")
    logs = model.evaluate(pairs(x, y), verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected.numpy(), rtol=1e-5, atol=1e-6)


def test_input_formats_dict_and_labels(data):
    x, y = data["x_train"][:200], data["y_train"][:200]
    labels = np.zeros(200, dtype="int32")
    model = build_model()
    model.compile(optimizer="sgd")
    model.fit(tf.data.Dataset.from_tensor_slices(((x, y), labels)).batch(100), verbose=0)
    model.fit(x, y, batch_size=100, verbose=0)  # NumPy pair, as Keras passes (x, y)
    assert model.optimizer.iterations.numpy() == 4
    from_dict = model({"x": x[:5], "y": y[:5]})
    np.testing.assert_array_equal(from_dict[1].numpy(), model((x[:5], y[:5]))[1].numpy())
    h_x, h_y = model.predict(pairs(x, y), verbose=0)
    assert h_x.shape == h_y.shape == (200, 4)
    encoded = model.encode(tf.data.Dataset.from_tensor_slices(((x, y), labels)).batch(64))
    np.testing.assert_allclose(encoded[0], h_x, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- saving
def test_keras_round_trip_keeps_outputs_linear_cca_and_training(data, tmp_path):
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    dataset = pairs(data["x_train"], data["y_train"])
    model.fit(dataset, epochs=2, verbose=0)
    model.fit_linear_cca(data["x_train"], data["y_train"])
    x, y = data["x_test"], data["y_test"]
    loaded = assert_keras_round_trip(
        model, tmp_path, outputs=lambda m: (m.predict(dataset, verbose=0), m.transform(x, y), m.score(x, y))
    )
    assert (loaded.encoder_x.name, loaded.encoder_y.name) == ("encoder_x", "encoder_y")
    # The optimizer state came back too: training continues where it stopped.
    assert_same_optimizer_state(loaded.optimizer, model.optimizer)
    assert loaded.optimizer.iterations.numpy() == 8
    assert loaded.jit_compile is False
    history = loaded.fit(dataset, epochs=1, verbose=0)
    assert loaded.optimizer.iterations.numpy() == 12
    assert np.isfinite(history.history["loss"][0])


def test_from_config_round_trip_without_fitting():
    model = build_model(n_components=3, reg=(1e-3, 1e-2), objective="squared")
    clone = assert_config_round_trip(model)
    assert clone.k == 3 and clone.reg == (1e-3, 1e-2)
    assert not clone.linear_cca_fitted


# ----------------------------------------------------------------------------- single view
@pytest.fixture(scope="module")
def fitted(data):
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(pairs(data["x_train"], data["y_train"]), epochs=3, verbose=0)
    return model.fit_linear_cca(data["x_train"], data["y_train"])


def test_single_view_transform_and_encode_match_the_paired_ones(fitted, data, tmp_path):
    """As xm.CCA.transform(X): one view in, that view's canonical variates out."""
    x, y = data["x_test"], data["y_test"]
    x_c, y_c = fitted.transform(x, y)
    np.testing.assert_allclose(fitted.transform(x), x_c, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fitted.transform(y=y), y_c, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fitted.transform(tf.constant(x[:7]), batch_size=3), x_c[:7], rtol=1e-6, atol=1e-9)
    assert fitted.transform(x).shape == (200, 2) and fitted.transform(x).dtype == np.float64
    h_x, h_y = fitted.encode(x, y)
    np.testing.assert_allclose(fitted.encode(x), h_x, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fitted.encode(y=y), h_y, rtol=1e-6, atol=1e-7)
    # A new image alone, after a .keras round trip.
    loaded = assert_keras_round_trip(fitted, tmp_path, outputs=lambda m: m.transform(x[:1]))
    np.testing.assert_allclose(loaded.transform(x[:1]), x_c[:1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", ["transform", "encode"])
def test_single_view_errors_name_the_method_called(fitted, data, method):
    call = getattr(fitted, method)
    with pytest.raises(ValueError, match=rf"DeepCCA\.{method} needs data"):
        call()
    with pytest.raises(ValueError, match=rf"DeepCCA\.{method}\(y=\.\.\.\)"):
        call(y=(data["x_test"], data["y_test"]))
    bad = data["x_test"][:10].copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=rf"DeepCCA\.{method}: x has non-finite values .*\[3\]"):
        call(bad)
    with pytest.raises(ValueError, match=rf"DeepCCA\.{method}: y has non-finite values"):
        call(y=bad)
    with pytest.raises(ValueError, match=rf"DeepCCA\.{method}: view x has no rows"):
        call(data["x_test"][:0])
    with pytest.raises(ValueError, match=rf"DeepCCA\.{method} expects paired views"):
        call((data["x_test"],))


def test_single_view_transform_needs_the_linear_cca(data):
    with pytest.raises(ValueError, match=r"DeepCCA\.transform needs the linear CCA"):
        build_model().transform(data["x_test"])


# ----------------------------------------------------------------------------- DCCAE
def test_dccae_reconstruction_metrics_appear_and_decrease(data, tmp_path):
    keras.utils.set_random_seed(0)
    model = DeepCCA(
        mlp_encoder(20, 4, hidden_units=(16,), name="encoder_x"),
        mlp_encoder(20, 4, hidden_units=(16,), name="encoder_y"),
        n_components=2,
        decoder_x=mlp_encoder(4, 20, hidden_units=(16,), name="decoder_x"),
        decoder_y=mlp_encoder(4, 20, hidden_units=(16,), name="decoder_y"),
        reconstruction_weight=1.0,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(pairs(data["x_train"], data["y_train"]), epochs=10, verbose=0).history
    for key in ("reconstruction_x", "reconstruction_y"):
        assert history[key][-1] < 0.9 * history[key][0]
    np.testing.assert_allclose(
        history["loss"],
        -np.asarray(history["total_correlation"])
        + np.asarray(history["reconstruction_x"])
        + np.asarray(history["reconstruction_y"]),
        rtol=1e-4,
    )
    x, y = data["x_test"][:50], data["y_test"][:50]
    terms = ("loss", "reconstruction_x", "reconstruction_y")
    assert_keras_round_trip(
        model, tmp_path, inputs=(x, y), outputs=lambda m: {key: m.batch_loss(x, y)[key] for key in terms}
    )


def dccae(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return DeepCCA(
        mlp_encoder(20, 4, hidden_units=(16,), name="encoder_x"),
        mlp_encoder(20, 4, hidden_units=(16,), name="encoder_y"),
        n_components=2,
        decoder_x=mlp_encoder(4, 20, hidden_units=(16,), name="decoder_x"),
        decoder_y=mlp_encoder(4, 20, hidden_units=(16,), name="decoder_y"),
        **kwargs,
    )


def test_reconstruction_term_is_the_papers_per_example_sum(data):
    """Wang et al.'s lambda multiplies the squared error summed over an example's features
    and averaged over the batch (not a mean over every entry, 1/20 of it here)."""
    model = dccae(reconstruction_weight=0.3)
    x, y = data["x_train"][:64], data["y_train"][:64]
    results = model.batch_loss(x, y)
    h_x, h_y = model((x, y))
    for view, h, decoder, key in (
        (x, h_x, model.decoder_x, "reconstruction_x"),
        (y, h_y, model.decoder_y, "reconstruction_y"),
    ):
        expected = np.mean(np.sum((view - decoder(h).numpy()) ** 2, axis=1))
        np.testing.assert_allclose(results[key].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(
        results["loss"].numpy(),
        -results["total_correlation"].numpy()
        + 0.3 * (results["reconstruction_x"] + results["reconstruction_y"]).numpy(),
        rtol=1e-5,
    )


def test_decoders_without_a_weight_get_the_default_and_train(data, tmp_path):
    from xmodal_tf.models.deepcca import DEFAULT_RECONSTRUCTION_WEIGHT

    assert DEFAULT_RECONSTRUCTION_WEIGHT > 0
    model = dccae()
    assert model.reconstruction_weight == DEFAULT_RECONSTRUCTION_WEIGHT
    assert build_model().reconstruction_weight == 0.0  # no decoders: plain Deep CCA
    before = [w.numpy().copy() for w in model.decoder_x.trainable_weights + model.decoder_y.trainable_weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(pairs(data["x_train"], data["y_train"]), epochs=5, verbose=0).history
    assert not [w for w in caught if "do not exist" in str(w.message)]  # Keras' "Gradients do not exist"
    after = model.decoder_x.trainable_weights + model.decoder_y.trainable_weights
    assert all(not np.array_equal(b, a.numpy()) for b, a in zip(before, after))
    assert history["reconstruction_x"][-1] < 0.9 * history["reconstruction_x"][0]
    assert assert_keras_round_trip(model, tmp_path).reconstruction_weight == DEFAULT_RECONSTRUCTION_WEIGHT


def test_decoders_with_weight_zero_are_refused():
    with pytest.raises(ValueError, match="never train"):
        dccae(reconstruction_weight=0.0)
    for bad in (-1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="reconstruction_weight"):
            dccae(reconstruction_weight=bad)


def test_reconstruction_weight_needs_a_decoder():
    with pytest.raises(ValueError, match="decoder"):
        build_model(reconstruction_weight=0.5)


def test_decoder_with_wrong_output_shape(data):
    keras.utils.set_random_seed(0)
    model = DeepCCA(
        mlp_encoder(20, 4, hidden_units=(), name="ex"),
        mlp_encoder(20, 4, hidden_units=(), name="ey"),
        decoder_x=mlp_encoder(4, 7, hidden_units=(), name="dx"),
        reconstruction_weight=1.0,
    )
    with pytest.raises(ValueError, match="reconstruct"):
        model.batch_loss(data["x_train"][:50], data["y_train"][:50])


# ----------------------------------------------------------------------------- distribution
STRATEGY_SCRIPT = PREAMBLE + textwrap.dedent("""

    results, model, strategy = compare_with_one_device(build, learning_rate=0.1)

    # A NaN in one replica's share skips the whole global step on both replicas.
    bad_x = x.copy()
    bad_x[40] = np.nan
    before = [w.numpy() for w in model.trainable_weights]
    iterations = int(model.optimizer.iterations.numpy())
    bad = tf.data.Dataset.from_tensor_slices((bad_x[32:64], y[32:64])).batch(32, drop_remainder=True)
    results["skipped"] = model.fit(bad, epochs=1, verbose=0).history["skipped_batches"][0]
    results["unchanged"] = all(np.array_equal(a, b.numpy()) for a, b in zip(before, model.trainable_weights))
    results["iterations"] = int(model.optimizer.iterations.numpy()) - iterations

    # global_batch=False with replica shares of at most n_components rows is refused.
    with strategy.scope():
        small = DeepCCA.from_config({**build().get_config(), "global_batch": False})
        small.compile(optimizer="sgd")
    try:
        small.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True), verbose=0)
        results["share_error"] = ""
    except ValueError as error:
        results["share_error"] = str(error)

    print(json.dumps(results))
""")


def run_script(script):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_mirrored_strategy_fit_equals_one_device_on_the_global_batch():
    result = run_script(STRATEGY_SCRIPT)
    assert result["replicas"] == 2
    for global_batch in ("True", "False"):
        assert result[f"moved_{global_batch}"] > 1e-2  # the comparison is not vacuous
        assert result[f"difference_{global_batch}"] < 1e-5, global_batch
        np.testing.assert_allclose(result[f"loss_{global_batch}"], result[f"expected_loss_{global_batch}"], rtol=1e-5)
    # The objectives really differ: the global batch's loss is not the halves' mean.
    assert abs(result["loss_True"] - result["loss_False"]) > 1e-3
    assert result["skipped"] == 1.0 and result["unchanged"] and result["iterations"] == 0
    assert "global_batch=False" in result["share_error"] and "n_components=4" in result["share_error"]


# ----------------------------------------------------------------------------- bad input
def test_views_with_different_batch_sizes(data):
    model = build_model()
    x, y = data["x_train"], data["y_train"]
    with pytest.raises(ValueError, match="8 rows for x and 6 for y"):
        model.batch_loss(x[:8], y[:6])
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="8 rows for x and 6 for y"):
        model.fit(tf.data.Dataset.from_tensors((x[:8], y[:6])), verbose=0)
    # Dynamic batch sizes are checked when the step runs.
    mismatched = tf.data.Dataset.zip(
        (tf.data.Dataset.from_tensor_slices(x[:16]).batch(8), tf.data.Dataset.from_tensor_slices(y[:12]).batch(6))
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        model.fit(mismatched, verbose=0)
    with pytest.raises(ValueError, match="x has 10 rows and y has 9"):
        model.fit_linear_cca(x[:10], y[:9])
    model.fit_linear_cca(x, y)
    with pytest.raises(ValueError, match="x has 10 rows and y has 9"):
        model.transform(x[:10], y[:9])


def test_encoder_output_must_be_2d():
    inputs = keras.Input((20,))
    outputs = keras.layers.Reshape((4, 5))(keras.layers.Dense(20)(inputs))
    with pytest.raises(ValueError, match="2-D"):
        DeepCCA(keras.Model(inputs, outputs), mlp_encoder(20, 4, hidden_units=()))


def test_n_components_larger_than_an_output():
    with pytest.raises(ValueError, match="n_components=5 is larger than encoder_x's output dimension"):
        build_model(n_components=5)
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        build_model(n_components=0)


def test_nan_batch_is_skipped_and_counted_without_touching_the_optimizer(data):
    x, y = data["x_train"][:300].copy(), data["y_train"][:300]
    x[150, 3] = np.nan  # in batch 1 of 3
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.optimizer.build(model.trainable_variables)
    weights = [w.numpy() for w in model.weights]
    optimizer_state = [v.numpy() for v in model.optimizer.variables]
    # An epoch of only the NaN batch changes nothing: no update, no Adam moment, no step.
    history = model.fit(pairs(x[100:200], y[100:200]), verbose=0).history
    assert history["skipped_batches"] == [1.0]
    for a, b in zip(weights + optimizer_state, model.weights + model.optimizer.variables):
        np.testing.assert_array_equal(a, b.numpy())
    # Among good batches it is counted, and the epoch's averages stay finite.
    history = model.fit(pairs(x, y), verbose=0).history
    assert history["skipped_batches"] == [1.0]
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["total_correlation"][0])
    assert model.optimizer.iterations.numpy() == 2
    assert all(np.isfinite(w.numpy()).all() for w in model.weights)
    assert model.evaluate(pairs(x, y), verbose=0, return_dict=True)["skipped_batches"] == 1.0


def test_linear_cca_errors(data):
    model = build_model()
    for method in (model.transform, model.score):
        with pytest.raises(ValueError, match="fit_linear_cca"):
            method(data["x_test"], data["y_test"])
    bad = data["x_train"].copy()
    bad[7, 0] = np.nan
    with pytest.raises(
        ValueError,
        match=r"^DeepCCA.fit_linear_cca: x has non-finite values \(NaN or inf\) in 1 "
        r"row\(s\) \[7\]; remove or impute those rows first\.$",
    ):
        model.fit_linear_cca(bad, data["y_train"])
    model.fit_linear_cca(data["x_train"], data["y_train"])
    with pytest.raises(ValueError, match=r"DeepCCA.transform: x has non-finite .* \[7\]"):
        model.transform(bad, data["y_train"])


def test_non_finite_inputs_name_the_view_and_rows_of_the_whole_input(data):
    model = build_model()
    x, y = data["x_test"].copy(), data["y_test"].copy()
    x[[5, 150], 3] = np.inf
    with pytest.raises(
        ValueError,
        match=r"^DeepCCA.encode: x has non-finite values \(NaN or inf\) in 2 row\(s\) "
        r"\[5, 150\]; remove or impute those rows first\.$",
    ):
        model.encode(x, y, batch_size=64)
    y[130, 0] = np.nan
    # From a dataset the rows are counted over the batches (the first bad batch is reported).
    with pytest.raises(ValueError, match=r"^DeepCCA.encode: y has non-finite .* \[130\]"):
        model.encode(pairs(data["x_test"], y, batch_size=64))
    with pytest.raises(ValueError, match=r"^DeepCCA.encode: x has non-finite .* \[5, 150\]"):
        model.encode({"x": x, "y": data["y_test"]})


def test_compile_rejects_a_loss_and_warns_about_xla():
    model = build_model()
    with pytest.raises(ValueError, match="own loss"):
        model.compile(optimizer="sgd", loss="mse")
    with pytest.warns(UserWarning, match="XLA"):
        model.compile(optimizer="sgd", jit_compile=True)
    assert model.jit_compile is True  # an explicit choice is respected


@keras.saving.register_keras_serializable(package="xmodal_tf_tests")
class SubclassedEncoder(keras.Model):
    """An encoder whose output size is unknown until it is called."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(8, activation="tanh")
        self.embedding = keras.layers.Dense(units)

    def call(self, inputs):
        return self.embedding(self.hidden(inputs))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_subclassed_encoders_build_on_first_batch_and_reload(data, tmp_path):
    keras.utils.set_random_seed(0)
    model = DeepCCA(SubclassedEncoder(name="sub_x"), SubclassedEncoder(name="sub_y"), n_components=2)
    assert not model.built
    model.compile(optimizer="adam")
    model.fit(data["x_train"], data["y_train"], batch_size=100, verbose=0)
    assert model.built and model.k == 2 and model.optimizer.iterations.numpy() == 4
    model.fit_linear_cca(data["x_train"], data["y_train"])
    assert_keras_round_trip(model, tmp_path, outputs=lambda m: m.transform(data["x_test"], data["y_test"]))
    too_many = DeepCCA(SubclassedEncoder(), SubclassedEncoder(), n_components=5)
    with pytest.raises(ValueError, match="n_components=5"):
        too_many((data["x_test"], data["y_test"]))


# ----------------------------------------------------------------------------- other objectives
@pytest.mark.parametrize("objective, batch_size", [("ey", 4), ("ey_unbiased", 8)])
def test_ey_objectives_train_with_batches_below_the_output_width(data, objective, batch_size):
    from xmodal_tf.training import DeepCCATrainer

    def wide_model():  # 12 output units, more than a batch has rows
        keras.utils.set_random_seed(0)
        encoders = [mlp_encoder(20, 12, hidden_units=(16,), name=f"encoder_{view}") for view in "xy"]
        return DeepCCA(*encoders, n_components=4, objective=objective)

    x, y = data["x_train"], data["y_train"]
    before = wide_model().fit_linear_cca(x, y).score(data["x_test"], data["y_test"])
    model = wide_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(pairs(x, y, batch_size=batch_size), epochs=3, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and history["skipped_batches"][-1] == 0
    assert history["loss"][-1] < history["loss"][0]
    after = model.fit_linear_cca(x, y).score(data["x_test"], data["y_test"])
    assert after > before + 0.2
    # The explicit trainer takes such batches too; the whitened objective's are refused.
    fixed_batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)
    logs = DeepCCATrainer(wide_model(), keras.optimizers.Adam(3e-3), progress=False).fit(fixed_batches, epochs=2)
    assert np.isfinite(logs["loss"][-1])
    with pytest.raises(ValueError, match="objective='ey'"):
        DeepCCATrainer(build_model(n_components=4), "adam", progress=False).fit(fixed_batches.rebatch(4), epochs=1)


def test_ey_loss_of_a_batch_is_the_objectives_value(data):
    from xmodal_tf.eckart_young import ey_loss

    model = build_model(objective="ey")
    x, y = data["x_train"][:64], data["y_train"][:64]
    results = model.batch_loss(x, y)
    h_x, h_y = model((x, y))
    np.testing.assert_allclose(results["loss"].numpy(), ey_loss(h_x, h_y).numpy(), rtol=1e-6)
    # total_correlation stays the whitened top-k correlation, whatever the objective.
    expected = deep_cca_loss(h_x, h_y, n_components=2, reg=1e-4).numpy()
    np.testing.assert_allclose(results["total_correlation"].numpy(), -expected, rtol=1e-5)


def test_objectives_save_and_reload_with_the_model(data, tmp_path):
    from xmodal_tf.eckart_young import EYLoss

    x, y = data["x_test"], data["y_test"]
    for index, objective in enumerate(["ey_unbiased", EYLoss(unbiased=True, name="my_ey")]):
        model = build_model(objective=objective)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        model.fit(pairs(data["x_train"], data["y_train"]), epochs=1, verbose=0)
        model.fit_linear_cca(data["x_train"], data["y_train"])
        loaded = assert_keras_round_trip(
            model, tmp_path, outputs=lambda m: m.transform(x, y), filename=f"model{index}.keras"
        )
        assert loaded.view_loss.get_config() == model.view_loss.get_config()
        assert loaded.view_loss.unbiased is True
    assert loaded.view_loss.name == "my_ey"


def test_bad_objectives_are_refused_clearly():
    with pytest.raises(ValueError, match="objective"):
        build_model(objective="cosine")
    with pytest.raises(TypeError, match="ViewLoss"):
        build_model(objective=3)
    from xmodal_tf.eckart_young import EYLoss

    keras.utils.set_random_seed(0)
    with pytest.raises(ValueError, match="same output width"):
        DeepCCA(
            mlp_encoder(20, 4, hidden_units=(), name="a"), mlp_encoder(20, 3, hidden_units=(), name="b"), objective="ey"
        )
    with pytest.raises(ValueError, match="exactly 3 views"):

        class ThreeViews(EYLoss):
            min_views = max_views = 3

        build_model(objective=ThreeViews())


# Its own interpreter: a second strategy in one process reuses the first one's collective keys.
EY_STRATEGY_SCRIPT = PREAMBLE + textwrap.dedent("""
    def build_ey():
        keras.utils.set_random_seed(1)
        return DeepCCA(mlp_encoder(20, 4, hidden_units=(16,), name="ex"),
                       mlp_encoder(12, 4, hidden_units=(16,), name="ey"), objective="ey")

    results, _, _ = compare_with_one_device(build_ey, learning_rate=0.1)
    print(json.dumps(results))
""")


def test_mirrored_strategy_fit_with_the_ey_objective_equals_one_device():
    result = run_script(EY_STRATEGY_SCRIPT)
    assert result["replicas"] == 2
    for global_batch in ("True", "False"):
        assert result[f"moved_{global_batch}"] > 1e-2
        assert result[f"difference_{global_batch}"] < 1e-5, global_batch
