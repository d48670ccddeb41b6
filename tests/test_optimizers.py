"""FusedAdam: the same trajectory as Keras' Adam, and a drop-in for save/load."""

import keras
import numpy as np
import pytest

from xmodal_tf.optimizers import FusedAdam


def trajectory(optimizer, steps=5):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.normal(size=(64, 2)).astype("float32")
    model.fit(x, y, batch_size=16, epochs=steps, shuffle=False, verbose=0)
    return model, [w.numpy() for w in model.weights]


@pytest.mark.parametrize("settings", [{}, {"learning_rate": 0.05, "beta_1": 0.8, "epsilon": 1e-3}])
def test_same_weights_as_keras_adam(settings):
    _, expected = trajectory(keras.optimizers.Adam(**settings))
    model, fused = trajectory(FusedAdam(**settings))
    for got, want in zip(fused, expected):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert int(model.optimizer.iterations.numpy()) == 20
    moments = [v.numpy() for v in model.optimizer.variables if "momentum" in v.path]
    assert moments and all(np.abs(m).max() > 0 for m in moments)  # the fused kernel wrote them


def test_amsgrad_falls_back_to_keras_update():
    _, expected = trajectory(keras.optimizers.Adam(amsgrad=True))
    _, fused = trajectory(FusedAdam(amsgrad=True))
    for got, want in zip(fused, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_keras_round_trip_keeps_the_optimizer(tmp_path):
    model, _ = trajectory(FusedAdam(learning_rate=0.01))
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(reloaded.optimizer, FusedAdam)
    assert reloaded.optimizer.learning_rate.numpy() == pytest.approx(0.01)
    assert int(reloaded.optimizer.iterations.numpy()) == 20


def test_a_keras_without_adams_internals_gets_a_clear_error(monkeypatch):
    """As a Keras outside the supported range would be: Adam keeps its slots elsewhere."""

    def build_without_slots(self, var_list):
        keras.optimizers.Optimizer.build(self, var_list)

    monkeypatch.setattr(keras.optimizers.Adam, "build", build_without_slots)
    optimizer = FusedAdam()
    message = (
        r"FusedAdam reads Keras' private Adam state \(_momentums, _velocities\), which Keras "
        r"3\.\S+ does not have; it is verified for keras>=3\.15,<3\.16\. Use keras\.optimizers\.Adam"
    )
    with pytest.raises(RuntimeError, match=message):
        optimizer.build([keras.Variable(np.zeros(3, "float32"))])


def test_build_keeps_adams_slots_one_per_variable():
    variables = [keras.Variable(np.zeros(shape, "float32")) for shape in ((3,), (2, 4))]
    optimizer = FusedAdam()
    optimizer.build(variables)
    for variable in variables:
        index = optimizer._get_variable_index(variable)
        assert optimizer._momentums[index].shape == optimizer._velocities[index].shape == variable.shape
