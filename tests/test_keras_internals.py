"""Keras internals the package reads, pinned to the Keras range where they were verified.

``xmodal_tf.optimizers.FusedAdam`` reads Adam's private moment slots (``_momentums``,
``_velocities``) and ``_get_variable_index``. Keras may move them in any release, so the
package supports one minor series (setup.cfg's ``keras>=3.15,<3.16``). When a new Keras
is installed these tests fail first, with what to do, instead of a training run failing
later: re-verify the internals below on the new Keras, then widen the range in
setup.cfg and ``xmodal_tf.optimizers.SUPPORTED_KERAS`` together.
"""

import configparser
import pathlib

import keras
import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from xmodal_tf import optimizers
from xmodal_tf.optimizers import KERAS_INTERNALS, SUPPORTED_KERAS, FusedAdam

SETUP_CFG = pathlib.Path(__file__).resolve().parents[1] / "setup.cfg"


def declared_keras_range():
    """The keras requirement's specifier in setup.cfg's install_requires, e.g. '<3.16,>=3.15'."""
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    requirements = [Requirement(line) for line in parser["options"]["install_requires"].split("\n") if line.strip()]
    return next(requirement.specifier for requirement in requirements if requirement.name == "keras")


def test_the_installed_keras_is_the_verified_series():
    installed = Version(keras.__version__)
    assert installed in declared_keras_range(), (
        f"Keras {installed} is installed, but FusedAdam ({optimizers.__file__}) reads Adam internals "
        f"{', '.join(KERAS_INTERNALS)} verified only for keras{SUPPORTED_KERAS}. Install "
        f"keras{SUPPORTED_KERAS}, or re-verify those internals with this file's other tests on "
        f"Keras {installed} and then widen the range in setup.cfg and optimizers.SUPPORTED_KERAS."
    )


def test_setup_cfg_and_the_optimizer_name_the_same_range():
    assert str(declared_keras_range()) == str(Requirement(f"keras{SUPPORTED_KERAS}").specifier), (
        "setup.cfg's keras range and xmodal_tf.optimizers.SUPPORTED_KERAS disagree; change them together."
    )


def test_adam_keeps_one_moment_pair_per_variable_at_its_index():
    variables = [
        keras.Variable(np.zeros(shape, "float32"), name=f"v{i}") for i, shape in enumerate(((3,), (2, 4), (5, 1, 2)))
    ]
    adam = keras.optimizers.Adam()
    adam.build(variables)
    missing = [name for name in KERAS_INTERNALS if not hasattr(adam, name)]
    assert not missing, f"keras.optimizers.Adam {keras.__version__} has no {missing}: FusedAdam cannot work."
    for variable in variables:
        index = adam._get_variable_index(variable)
        for slots in (adam._momentums, adam._velocities):
            assert len(slots) == len(variables)
            assert slots[index].shape == variable.shape
            assert hasattr(slots[index], "handle")  # the resource ResourceApplyAdam updates in place


def test_adam_slots_are_the_state_keras_saves():
    """The fused kernel writes into the slots; they must be what Keras checkpoints."""
    variable = keras.Variable(np.ones(3, "float32"))
    adam = FusedAdam(learning_rate=0.1)
    adam.apply_gradients([(np.full(3, 0.5, "float32"), variable)])
    index = adam._get_variable_index(variable)
    saved = {id(v) for v in adam.variables}
    assert id(adam._momentums[index]) in saved and id(adam._velocities[index]) in saved
    np.testing.assert_allclose(adam._momentums[index].numpy(), 0.05, rtol=1e-6)  # (1 - beta_1) g
    np.testing.assert_allclose(adam._velocities[index].numpy(), 2.5e-4, rtol=1e-4)  # (1 - beta_2) g^2


@pytest.mark.parametrize("version", ["3.14.0", "3.16.0", "4.0.0"])
def test_keras_outside_the_range_is_refused(version):
    assert Version(version) not in declared_keras_range()
