"""Optimizers: ``FusedAdam``, Keras' Adam with TensorFlow's one-pass update kernel.

``FusedAdam`` is a drop-in ``keras.optimizers.Adam`` (same arguments, state, checkpoints and
``.keras`` serialization) that updates with TensorFlow's fused ``ResourceApplyAdam`` kernel, one
pass over a variable, its gradient and its two moments, for dense gradients of non-distributed
variables on the TensorFlow backend, and with Keras' own update otherwise (``amsgrad``, sparse
gradients, inside a distribution strategy). It reads Adam's moment slots, which Keras keeps
private: ``SUPPORTED_KERAS`` names the Keras range where they were verified
(tests/test_keras_internals.py pins it).

Design notes (the update, the speed-up): docs/DESIGN.md (section xmodal_tf/optimizers.py).
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["SUPPORTED_KERAS", "FusedAdam"]

SUPPORTED_KERAS = ">=3.15,<3.16"
# Adam's private state FusedAdam reads: the moment slots and the slot index of a variable.
KERAS_INTERNALS = ("_momentums", "_velocities", "_get_variable_index")


@keras.saving.register_keras_serializable(package="xmodal_tf")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with a fused update kernel (see the module docstring).

    Takes ``keras.optimizers.Adam``'s arguments and gives its results.

    Raises:
        RuntimeError: on ``build``, when this Keras lacks the Adam internals listed in
            ``KERAS_INTERNALS`` (a Keras outside ``SUPPORTED_KERAS``).
    """

    def build(self, var_list):
        """Create the moment slots (as Adam does), then check the internals read here.

        Args:
            var_list: the model variables to optimise.
        """
        super().build(var_list)
        missing = [name for name in KERAS_INTERNALS if not hasattr(self, name)]
        if missing:
            raise RuntimeError(
                f"FusedAdam reads Keras' private Adam state ({', '.join(missing)}), which Keras "
                f"{keras.__version__} does not have; it is verified for keras{SUPPORTED_KERAS}. "
                "Use keras.optimizers.Adam instead (same arguments and results, a slower update "
                f"on CPU), or install keras{SUPPORTED_KERAS}."
            )

    def update_step(self, gradient, variable, learning_rate):
        """One Adam step on ``variable``, by the fused kernel where it applies.

        Args:
            gradient: the gradient, dense (variable's shape) or ``tf.IndexedSlices``.
            variable: the model variable to update.
            learning_rate: the step's learning rate (a scalar).
        """
        if not self._can_fuse(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )

    def _can_fuse(self, gradient, variable) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and not self.amsgrad
            and not isinstance(gradient, tf.IndexedSlices)
            and not tf.distribute.has_strategy()
            and hasattr(variable, "handle")
        )
