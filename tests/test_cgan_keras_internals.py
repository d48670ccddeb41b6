"""The cGAN's storage stays on public Keras API (issue 18, item 4).

``ConditionalGAN`` saves the state of its noise stream with its weights (Keras saves no
``SeedGenerator`` state). It once read Keras' private ``_trainable_variables`` and wrote
Keras' numbered storage keys itself; now the shared base (``CrossModalModel``) does it
through the two hooks Keras documents for this ("Customizing Saving and Serialization":
override ``save_own_variables`` / ``load_own_variables``, whose ``store`` is a dict),
adding one key of its own and handing every other key to Keras' own code. These tests
pin that: no private Keras name in that code, and the contract it relies on.
"""

import inspect
import re

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf.models import cgan as cgan_module
from xmodal_tf.models.base import CrossModalModel

# Keras-private attributes the storage code once used or could be tempted to use.
PRIVATE_KERAS_NAMES = (
    "_trainable_variables",
    "_non_trainable_variables",
    "_trainable_weights",
    "_non_trainable_weights",
    "_flatten_layers",
    "_seed_generators",
    "_tracker",
    "_check_load_own_variables",
)


def private_names_in(source: str) -> list:
    return [name for name in PRIVATE_KERAS_NAMES if re.search(rf"\.{name}\b", source)]


def test_the_cgan_module_reads_no_private_keras_attribute():
    assert private_names_in(inspect.getsource(cgan_module)) == []


def test_the_seed_state_storage_uses_only_the_documented_hooks():
    for method in (CrossModalModel.save_own_variables, CrossModalModel.load_own_variables):
        assert private_names_in(inspect.getsource(method)) == [], method.__qualname__
    assert cgan_module.ConditionalGAN.seed_state_key == "noise_seed_state"  # the key in saved files


@keras.saving.register_keras_serializable(package="xmodal_tf_tests")
class NoisyModel(CrossModalModel):
    """The smallest model with an own weight and a saved noise stream."""

    seed_state_key = "noise_state"

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="noise")
        self.scale = self.add_weight(shape=(3,), initializer="ones", name="scale")

    def call(self, inputs):
        return inputs * self.scale + keras.random.normal(tf.shape(inputs), seed=self.seed_generator)

    def get_config(self):
        return {"seed": self.seed, "name": self.name}


def test_an_extra_store_key_survives_a_keras_file_next_to_the_own_weights(tmp_path):
    model = NoisyModel(seed=5)
    model(np.zeros((2, 3), "float32"))  # advances the noise stream
    model.scale.assign([1.0, 2.0, 3.0])
    model.save(tmp_path / "noisy.keras")
    loaded = keras.models.load_model(tmp_path / "noisy.keras")
    np.testing.assert_array_equal(loaded.seed_generator.state.numpy(), model.seed_generator.state.numpy())
    np.testing.assert_array_equal(loaded.scale.numpy(), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(
        loaded(np.zeros((2, 3), "float32")).numpy(), model(np.zeros((2, 3), "float32")).numpy()
    )  # the same next draw


def test_a_store_without_the_seed_key_still_loads_the_weights():
    model = NoisyModel(seed=1)
    state = model.seed_generator.state.numpy().copy()
    model.load_own_variables({"0": np.array([4.0, 5.0, 6.0], "float32")})  # as Keras numbers own weights
    np.testing.assert_array_equal(model.scale.numpy(), [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(model.seed_generator.state.numpy(), state)


def test_keras_numbers_own_weights_in_the_store_and_loads_from_a_plain_dict():
    """What the base relies on when it hands Keras the store without its own key."""
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    store = {}
    layer.save_own_variables(store)
    assert sorted(store) == ["0", "1"]  # the documented default: one key per own weight, numbered
    copy = keras.layers.Dense(2)
    copy.build((None, 3))
    copy.load_own_variables({key: np.asarray(value) for key, value in store.items()})
    np.testing.assert_array_equal(copy.kernel.numpy(), layer.kernel.numpy())
