"""DeepMCCA (keras.Model): deep multiview CCA of three views, with model.fit and the Trainer, save/load, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip, assert_keras_round_trip, assert_same_optimizer_state

from xmodal_tf.cca import CCA, MCCA
from xmodal_tf.eckart_young import EYLoss
from xmodal_tf.encoders import mlp_encoder
from xmodal_tf.losses import DeepCCALoss
from xmodal_tf.models import DeepMCCA
from xmodal_tf.training import Trainer

DIMS = (12, 10, 8)


def three_view_data(n=600, seed=0):
    """Three views of a shared 2-dim latent z, each seeing another function of it.

    View 0 sees z, view 1 sees z^2 and view 2 sees |z| (each padded with noise features
    and mixed through a tanh). z and z^2 are uncorrelated, so a linear MCCA finds little
    beyond the pair (z^2, |z|), while encoders can map every view to z^2.
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    views = []
    for signal, dim in zip((z, z**2 - 1, np.abs(z)), DIMS):
        features = np.concatenate([signal, 0.5 * rng.normal(size=(n, dim - 2))], axis=1)
        mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
        views.append(np.tanh(features @ mixing).astype("float32"))
    return views


@pytest.fixture(scope="module")
def data():
    views = three_view_data()
    return {"train": [v[:400] for v in views], "test": [v[400:] for v in views]}


def build_model(seed=0, widths=(4, 4, 4), **kwargs):
    keras.utils.set_random_seed(seed)
    kwargs.setdefault("n_components", 2)
    encoders = [
        mlp_encoder(dim, width, hidden_units=(16,), activation="tanh", name=f"encoder_{index}")
        for index, (dim, width) in enumerate(zip(DIMS, widths))
    ]
    return DeepMCCA(encoders, **kwargs)


def batches(views, batch_size=100, labels=None):
    element = tuple(views) if labels is None else (tuple(views), labels)
    return tf.data.Dataset.from_tensor_slices(element).batch(batch_size)


# ----------------------------------------------------------------------------- training
def test_fit_learns_the_nonlinear_shared_latent(data):
    model = build_model()
    assert model.built and model.k == 2 and model.output_dim == 4 and model.n_views == 3
    untrained = model.fit_linear_mcca(data["train"]).score(data["test"])
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    assert model.jit_compile is False
    history = model.fit(
        batches(data["train"]).shuffle(4, seed=0), epochs=20, verbose=0, validation_data=batches(data["test"])
    )
    assert model.optimizer.iterations.numpy() == 80
    assert set(history.history) >= {"loss", "total_correlation", "skipped_batches", "val_loss", "val_total_correlation"}
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.5
    assert history.history["val_total_correlation"][-1] > history.history["val_total_correlation"][0] + 0.2
    score = model.fit_linear_mcca(data["train"]).score(data["test"])
    linear = 2 * MCCA(n_components=2, reg=1e-3).fit(data["train"]).score(data["test"])  # MCCA.score is a mean
    assert score > untrained + 0.3
    assert score > linear + 0.3
    assert 0 < score <= 2
    variates = model.transform(data["test"])
    assert [v.shape for v in variates] == [(200, 2)] * 3 and variates[0].dtype == np.float64
    np.testing.assert_allclose(model.canonical_correlations_, model.linear_mcca_.canonical_correlations_)
    np.testing.assert_allclose(model.correlations(data["test"]).sum(), score)


def test_batch_metric_is_the_mcca_of_the_outputs_and_the_loss_the_objective(data):
    model = build_model(reg=1e-3)
    views = [v[:100] for v in data["train"]]
    outputs = model(views)
    results = model.batch_loss(*views)
    np.testing.assert_allclose(results["loss"].numpy(), EYLoss()(*outputs).numpy(), rtol=1e-6)
    expected = MCCA(n_components=2, reg=1e-3).fit([h.numpy() for h in outputs]).canonical_correlations_
    np.testing.assert_allclose(results["correlations"].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["total_correlation"].numpy(), expected.sum(), rtol=1e-5)
    model.compile(optimizer="sgd")
    logs = model.evaluate(batches(views), verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["total_correlation"], expected.sum(), rtol=1e-5)
    # A batch with a non-finite output gets NaN correlations instead of an error.
    nan_outputs = [outputs[0], outputs[1], tf.tensor_scatter_nd_update(outputs[2], [[0, 0]], [np.nan])]
    assert np.isnan(model.batch_correlations(nan_outputs).numpy()).all()


def test_two_views_give_the_canonical_correlations_of_cca(data):
    keras.utils.set_random_seed(0)
    model = DeepMCCA([mlp_encoder(d, 3, hidden_units=(8,), name=f"e{d}") for d in DIMS[:2]], reg=1e-3)
    views = [v[:200] for v in data["train"][:2]]
    outputs = [h.numpy() for h in model(views)]
    expected = CCA(n_components=3, reg=1e-3).fit(*outputs).canonical_correlations_
    np.testing.assert_allclose(model.batch_loss(*views)["correlations"].numpy(), expected, rtol=1e-4, atol=1e-6)


def test_input_formats_labels_lists_and_dicts(data):
    views = [v[:200] for v in data["train"]]
    labels = np.zeros(200, dtype="int32")
    model = build_model()
    model.compile(optimizer="sgd")
    model.fit(batches(views, labels=labels), verbose=0)
    model.fit(views, batch_size=100, verbose=0)  # a list of NumPy views, as Keras passes (x,)
    model.fit(views, labels, batch_size=100, verbose=0)
    model.fit(tf.data.Dataset.from_tensor_slices({f"view_{i}": v for i, v in enumerate(views)}).batch(100), verbose=0)
    assert model.optimizer.iterations.numpy() == 8
    from_dict = model({"view_0": views[0][:5], "view_1": views[1][:5], "view_2": views[2][:5]})
    np.testing.assert_array_equal(from_dict[2].numpy(), model([v[:5] for v in views])[2].numpy())
    predicted = model.predict(batches(views), verbose=0)
    assert [p.shape for p in predicted] == [(200, 4)] * 3
    encoded = model.encode(batches(views, batch_size=64, labels=labels))
    for got, want in zip(encoded, predicted):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # One view alone (the others None), e.g. to embed new samples of that view.
    alone = model.encode([None, views[1][:7], None], batch_size=3)
    assert alone[0] is None and alone[2] is None
    np.testing.assert_allclose(alone[1], predicted[1][:7], rtol=1e-5, atol=1e-6)


def test_unbiased_ey_objective_trains(data):
    model = build_model(objective=EYLoss(unbiased=True))
    untrained = model.fit_linear_mcca(data["train"]).score(data["test"])
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(batches(data["train"]), epochs=15, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and history.history["skipped_batches"][-1] == 0
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.fit_linear_mcca(data["train"]).score(data["test"]) > untrained + 0.2


def test_trainer_trains_and_validates_on_the_whole_held_out_set(data):
    model = build_model()
    trainer = Trainer(model, keras.optimizers.Adam(1e-2), progress=False)
    assert trainer.monitor == "val_total_correlation" and trainer.monitor_mode == "max"
    history = trainer.fit(batches(data["train"]), epochs=8, validation_data=data["test"])
    assert history["steps"] == [4] * 8 and trainer.iterations == 32
    assert history["val_total_correlation"][-1] > history["val_total_correlation"][0] + 0.1
    assert history["total_correlation"][-1] > history["total_correlation"][0]
    assert len(history["val_correlations"][-1]) == 2
    np.testing.assert_allclose(
        history["val_total_correlation"][-1], model.held_out_correlations(data["test"]).sum(), rtol=1e-6
    )
    # A dataset works as validation data too.
    assert np.isfinite(trainer.evaluate(batches(data["test"]))["val_total_correlation"])


# ----------------------------------------------------------------------------- saving
def test_keras_round_trip_keeps_outputs_the_linear_mcca_and_training(data, tmp_path):
    model = build_model(objective=EYLoss(unbiased=True), reg=(1e-4, 1e-3, 1e-4))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    dataset = batches(data["train"])
    model.fit(dataset, epochs=2, verbose=0)
    model.fit_linear_mcca(data["train"])
    test = data["test"]
    loaded = assert_keras_round_trip(
        model, tmp_path, outputs=lambda m: (m.predict(dataset, verbose=0), m.transform(test), m.score(test))
    )
    assert [encoder.name for encoder in loaded.encoders] == ["encoder_0", "encoder_1", "encoder_2"]
    assert isinstance(loaded.objective, EYLoss) and loaded.objective.unbiased
    assert loaded.reg == (1e-4, 1e-3, 1e-4) and loaded.linear_mcca_fitted
    np.testing.assert_array_equal(loaded.canonical_correlations_, model.canonical_correlations_)
    assert_same_optimizer_state(loaded.optimizer, model.optimizer)
    history = loaded.fit(dataset, epochs=1, verbose=0)
    assert loaded.optimizer.iterations.numpy() == 12 and np.isfinite(history.history["loss"][0])


def test_config_round_trip_without_fitting():
    model = build_model(n_components=3, objective=EYLoss(unbiased=True, compute_dtype="float32"), reg=1e-2)
    clone = assert_config_round_trip(model)
    assert clone.k == 3 and clone.reg == 1e-2 and clone.objective.compute_dtype == "float32"
    assert not clone.linear_mcca_fitted
    assert build_model(n_components=None).k == 4


# ----------------------------------------------------------------------------- errors
def test_constructor_errors():
    with pytest.raises(ValueError, match=r"same number of features k.*encoders\[1\]: 3"):
        build_model(widths=(4, 3, 4))
    with pytest.raises(ValueError, match=r"DeepMCCA has 3 encoders, but its objective cannot take 3 views.*EYLoss"):
        build_model(objective=DeepCCALoss())
    with pytest.raises(TypeError, match="ViewLoss"):
        build_model(objective="ey")
    with pytest.raises(ValueError, match="n_components=5 is larger than the encoders' output width"):
        build_model(n_components=5)
    with pytest.raises(ValueError, match="one per view"):
        build_model(reg=(1e-3, 1e-3))
    with pytest.raises(ValueError, match="at least two views"):
        DeepMCCA([mlp_encoder(4, 2)])
    with pytest.raises(TypeError, match=r"list\(encoders.values\(\)\)"):
        DeepMCCA({"a": mlp_encoder(4, 2), "b": mlp_encoder(4, 2)})


def test_input_errors(data):
    model = build_model()
    test = data["test"]
    with pytest.raises(ValueError, match=r"DeepMCCA.score needs the linear MCCA.*fit_linear_mcca"):
        model.score(test)
    with pytest.raises(ValueError, match=r"DeepMCCA.transform needs the linear MCCA"):
        model.transform(test)
    with pytest.raises(
        ValueError, match=r"DeepMCCA.fit_linear_mcca: this model has 3 encoders, so it takes 3 views; got 2"
    ):
        model.fit_linear_mcca(test[:2])
    bad = test[1].copy()
    bad[[3, 17], 0] = np.nan
    with pytest.raises(ValueError, match=r"DeepMCCA.encode: view 1 has non-finite values .* 2 row\(s\) \[3, 17\]"):
        model.encode([test[0], bad, test[2]])
    with pytest.raises(ValueError, match=r"different numbers of rows \(view 0: 200, view 1: 199, view 2: 200\)"):
        model.fit_linear_mcca([test[0], test[1][:-1], test[2]])
    with pytest.raises(ValueError, match=r"needs all 3 views; view\(s\) \[2\] are None"):
        model.fit_linear_mcca([test[0], test[1], None])
    with pytest.raises(ValueError, match=r"keys \['view_0', 'view_1', 'view_2'\]"):
        model.encode({"x": test[0], "y": test[1], "z": test[2]})
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="takes 3 views; got 2"):
        model.fit(batches(test[:2]), verbose=0)
    model.fit_linear_mcca(data["train"])
    with pytest.raises(ValueError, match=r"DeepMCCA.score: view 2 has non-finite values"):
        model.score([test[0], test[1], np.where(np.arange(200)[:, None] == 5, np.inf, test[2])])


class Projection(keras.Model):
    """A subclassed encoder: its output width is unknown until it is called."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units)

    def call(self, inputs):
        return self.dense(inputs)


def test_subclassed_encoders_are_built_from_the_first_batch_or_build(data):
    keras.utils.set_random_seed(0)
    model = DeepMCCA([Projection(3), Projection(3), Projection(3)])
    assert not model.built and model.k is None
    model.compile(optimizer="sgd")
    model.fit(batches(data["train"]), verbose=0)
    assert model.built and model.output_dim == 3 and model.k == 3
    assert model.fit_linear_mcca(data["train"]).score(data["test"]) > 0
    built = DeepMCCA([Projection(3), Projection(3), Projection(3)])
    built.build([(None, dim) for dim in DIMS])
    assert built.built and built.output_dim == 3
    with pytest.raises(ValueError, match=r"encoders\[1\]: 2"):
        DeepMCCA([Projection(3), Projection(2), Projection(3)]).build([(None, dim) for dim in DIMS])
