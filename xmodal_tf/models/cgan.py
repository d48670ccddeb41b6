"""Conditional GAN (Mirza & Osindero, 2014) as a subclassed ``keras.Model`` trained with ``fit``.

``ConditionalGAN``: a generator G(z, c) maps noise z and a condition c to an image; a
discriminator D(x, c) scores how real an image looks *for that condition*. The condition
is a class label (``num_classes=``) or a vector (``condition_dim=``, e.g. an audio embedding)::

    >>> from xmodal_tf.models.cgan import ConditionalGAN, build_generator, build_discriminator
    >>> gan = ConditionalGAN(build_generator((28, 28, 1), 64, num_classes=10),
    ...                      build_discriminator((28, 28, 1), num_classes=10), num_classes=10,
    ...                      seed=0, ema_decay=0.999)
    >>> gan.compile(g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
    ...             d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))  # non-saturating + R1
    >>> gan.fit(images, labels, batch_size=64, epochs=3)    # images in [0, 1], labels (n,) int
    >>> samples = gan.generate([0, 1, 2], n=8)              # (24, 28, 28, 1) in [0, 1]

The builders and GAN losses are re-exported from ``xmodal_tf.decoders`` and ``xmodal_tf.losses``.
Design notes (the default recipe, conventions): docs/DESIGN.md (section xmodal_tf/models/cgan.py).
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._replicas import draw_rows
from xmodal_tf._validation import check_int, check_number, check_positive_int, describe

# The builders and losses live in xmodal_tf.decoders and xmodal_tf.losses; imported here
# too, so ``from xmodal_tf.models.cgan import build_generator, generator_loss`` still works.
from xmodal_tf.decoders import (
    build_dense_discriminator,
    build_dense_generator,
    build_discriminator,
    build_generator,
    check_condition_kind,
)
from xmodal_tf.losses import GAN_LOSSES, check_gan_loss, discriminator_loss, generator_loss
from xmodal_tf.models.base import (
    CrossModalModel,
    check_finite_rows,
    check_layer,
    declared_inputs,
    deserialize_entries,
    to_numpy,
)
from xmodal_tf.precision import inner_optimizer, loss_scaled, model_precision

__all__ = [
    "ConditionalGAN",
    "GAN_LOSSES",
    "build_dense_discriminator",
    "build_dense_generator",
    "build_discriminator",
    "build_generator",
    "discriminator_loss",
    "generator_loss",
]

_NOISE_STATE_KEY = "noise_seed_state"


# ----------------------------------------------------------------------------- checks
def _check_weight(value, name: str) -> float:
    """A loss weight or margin: a finite float >= 0."""
    return check_number(value, name, minimum=0, expected="a float >= 0")


def _split_batch(data, where: str):
    """(images, conditions) from a batch: a pair, a dict, or either wrapped in a 1-tuple."""
    if isinstance(data, dict):
        if "images" in data and "conditions" in data:
            return data["images"], data["conditions"]
    elif isinstance(data, (tuple, list)):
        if len(data) == 1 and isinstance(data[0], (tuple, list, dict)):
            return _split_batch(data[0], where)
        if len(data) == 2 and not isinstance(data[0], (tuple, list, dict)):
            return data[0], data[1]
        if len(data) == 3 and data[2] is None:  # (x, y, sample_weight=None)
            return data[0], data[1]
    raise ValueError(
        f"ConditionalGAN.{where} expects (images, conditions) pairs, e.g. fit(images, labels) or a "
        f"dataset of (images, conditions), or dicts {{'images': ..., 'conditions': ...}}; got "
        f"{describe(data)}."
    )


# ----------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="xmodal_tf")
class ConditionalGAN(CrossModalModel):
    """A conditional GAN: ``generator([z, c])`` trained against ``discriminator([x, c])``.

    Args:
        generator: Keras model [z (batch, latent_dim), conditions] -> images (batch, H, W, C),
            e.g. ``build_generator``.
        discriminator: Keras model [images, conditions] -> logits (batch, 1) or (batch,),
            e.g. ``build_discriminator``.
        num_classes: the number of classes when conditions are integer labels.
        condition_dim: the length of condition vectors when conditions are float vectors.
            Exactly one of ``num_classes`` and ``condition_dim`` is given.
        latent_dim: the length of z; inferred from a functional generator's first input
            (required for subclassed generators).
        seed: integer seed of the model's noise stream (None: random).
        ema_decay: if given (e.g. 0.999), keep an exponential moving average of the
            generator's weights (``generator_ema``; decay min(ema_decay, (1 + t) / (10 + t))
            at generator step t, so early weights fade fast) and sample from it in
            ``generate``, ``predict`` and ``call``. None: sample from the generator itself.
        ema_warmup: w of the warm-up of the average's decay, (1 + t) / (w + t) (default 10);
            1 disables the warm-up (the decay is ``ema_decay`` from the first step). The
            warm-up reaches ``ema_decay`` d at t = (d w - 1) / (1 - d): with d = 0.999 and
            w = 10 after about 9000 steps; until then the average covers roughly the last
            10% of the steps taken.
        truncation: if given (a float in (0, 1], e.g. 0.8), ``generate`` and ``predict``
            draw z ~ N(0, truncation^2 I) instead of N(0, I) (the truncation trick: fewer,
            more typical samples; training always uses N(0, I)). ``call`` uses the z given.
        **kwargs: ``name``, ``trainable`` ... for ``keras.Model``.

    Attributes:
        image_shape: (H, W, C) of the generated images.
        latent_dim: the length of z.
        seed_generator: the model's noise stream.
        sampling_generator: ``generator_ema`` or ``generator``.
        g_optimizer: after ``compile``, the generator's optimizer.
        d_optimizer: after ``compile``, the discriminator's optimizer.
        gan_loss: after ``compile``, the GAN loss name.
        r1_weight: after ``compile``, the weight of the R1 penalty.
        label_smoothing: after ``compile``, the one-sided label smoothing.
    """

    seed_state_key = _NOISE_STATE_KEY
    default_monitor = ("val_g_loss", "min")

    def __init__(
        self,
        generator,
        discriminator,
        *,
        num_classes=None,
        condition_dim=None,
        latent_dim=None,
        seed=None,
        ema_decay=None,
        ema_warmup=10.0,
        truncation=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "conditional_gan")
        super().__init__(**kwargs)
        self.generator = check_layer(generator, "generator", " taking [z, conditions]")
        self.discriminator = check_layer(discriminator, "discriminator", " taking [images, conditions]")
        check_condition_kind(num_classes, condition_dim)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.condition_dim = None if condition_dim is None else int(condition_dim)
        self.seed = check_int(seed, "seed", allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="noise_seed")
        self.latent_dim = self._infer_latent_dim(latent_dim)
        self._generator_label_shape = self._label_shape(self.generator, "generator")
        self._discriminator_label_shape = self._label_shape(self.discriminator, "discriminator")
        self.image_shape = self._build_sub_models()
        self.ema_decay = _check_ema_decay(ema_decay)
        self.ema_warmup = _check_ema_warmup(ema_warmup)
        self.truncation = _check_truncation(truncation)
        self.generator_ema = None if self.ema_decay is None else _averaged_copy(self.generator)

        self.create_trackers(
            ("d_loss", "g_loss", "real_score", "fake_score", "r1_penalty", "real_class_loss", "fake_class_loss")
        )
        self.g_optimizer = None
        self.d_optimizer = None
        self.gan_loss = None
        self.r1_weight = 0.0
        self.label_smoothing = 0.0
        self.classifier_weight = 0.0
        self.classifier_fake_weight = 0.0
        self.classifier_margin = 0.0
        self._gan_compile_arguments = None
        self._generate_functions = {}
        self.built = True

    # ------------------------------------------------------------------ construction
    def _infer_latent_dim(self, latent_dim) -> int:
        inputs = declared_inputs(self.generator)
        declared = None
        if inputs is not None:
            if len(inputs) != 2:
                raise ValueError(f"The generator must take two inputs [z, conditions]; it declares {len(inputs)}.")
            z_shape = tuple(inputs[0].shape)
            if len(z_shape) != 2 or z_shape[1] is None:
                raise ValueError(
                    f"The generator's first input must be the noise z, shape (batch, latent_dim); it is {z_shape}."
                )
            declared = int(z_shape[1])
        if latent_dim is None:
            if declared is None:
                raise ValueError(
                    "latent_dim is required when the generator does not declare its inputs "
                    "(a subclassed model): pass latent_dim=<length of z>."
                )
            return declared
        latent_dim = check_positive_int(latent_dim, "latent_dim")
        if declared is not None and declared != latent_dim:
            raise ValueError(
                f"latent_dim={latent_dim} but the generator's z input has {declared} units; "
                "leave latent_dim=None to use the generator's."
            )
        return latent_dim

    def _label_shape(self, model, name: str) -> tuple:
        """The per-example shape of ``model``'s condition input: () or (1,) for labels,
        (condition_dim,) for vectors; checked against the model's declared input."""
        inputs = declared_inputs(model)
        if inputs is not None and len(inputs) != 2:
            what = "z" if name == "generator" else "images"
            raise ValueError(f"The {name} must take two inputs [{what}, conditions]; it declares {len(inputs)}.")
        declared = None if inputs is None else tuple(inputs[1].shape[1:])
        if self.condition_dim is not None:
            if declared is not None and declared != (self.condition_dim,):
                raise ValueError(
                    f"condition_dim={self.condition_dim} but the {name}'s condition input has shape "
                    f"(batch, {', '.join(map(str, declared))}); they must agree."
                )
            return (self.condition_dim,)
        if declared is None or declared == ():
            return ()
        if declared == (1,):
            dtype = keras.backend.standardize_dtype(inputs[1].dtype)
            if "int" in dtype:
                return (1,)
        raise ValueError(
            f"num_classes is set, so conditions are integer labels, but the {name}'s condition input has "
            f"shape (batch, {', '.join(map(str, declared))}) and dtype {inputs[1].dtype}; give it an integer "
            f"input of shape () or (1,), or build the GAN with condition_dim={declared[-1]} for vectors."
        )

    def _condition_spec(self, label_shape) -> keras.KerasTensor:
        dtype = "int32" if self.num_classes is not None else keras.backend.floatx()
        return keras.KerasTensor((None, *label_shape), dtype=dtype)

    def _build_sub_models(self) -> tuple:
        """Call both sub-models symbolically (no computation): builds subclassed ones and
        checks that the generator's images fit the discriminator. Returns (H, W, C)."""
        z = keras.KerasTensor((None, self.latent_dim))
        fakes = self.generator([z, self._condition_spec(self._generator_label_shape)])
        if isinstance(fakes, (tuple, list, dict)) or len(fakes.shape) < 2 or None in fakes.shape[1:]:
            raise ValueError(
                f"The generator must output one image tensor (batch, H, W, C) of known size; got {describe(fakes)}."
            )
        image_shape = tuple(int(size) for size in fakes.shape[1:])
        inputs = declared_inputs(self.discriminator)
        if inputs is not None and tuple(inputs[0].shape[1:]) != image_shape:
            raise ValueError(
                f"The generator outputs images of shape {image_shape} but the discriminator "
                f"expects {tuple(inputs[0].shape[1:])}; build both for the same image shape."
            )
        images = keras.KerasTensor((None, *image_shape), dtype=fakes.dtype)
        outputs = self.discriminator([images, self._condition_spec(self._discriminator_label_shape)])
        logits, class_logits = outputs, None
        if isinstance(outputs, (tuple, list)) and len(outputs) == 2 and self.num_classes is not None:
            logits, class_logits = outputs
            if isinstance(class_logits, (tuple, list, dict)) or tuple(class_logits.shape[1:]) != (self.num_classes,):
                raise ValueError(
                    f"A discriminator with a class head must output [logits (batch, 1), class logits "
                    f"(batch, num_classes={self.num_classes})]; its second output is "
                    f"{describe(class_logits)}."
                )
        if isinstance(logits, (tuple, list, dict)) or tuple(logits.shape[1:]) not in ((), (1,)):
            raise ValueError(
                f"The discriminator must output one raw logit per image, shape (batch, 1) or "
                f"(batch,) (with num_classes, optionally also class logits (batch, num_classes)); "
                f"got {describe(outputs)}."
            )
        self.discriminator_classifies = class_logits is not None
        return image_shape

    # ------------------------------------------------------------------ compile
    def compile(
        self,
        g_optimizer=None,
        d_optimizer=None,
        *,
        loss="non_saturating",
        r1_weight=1.0,
        label_smoothing=0.0,
        classifier_weight=0.0,
        classifier_fake_weight=0.0,
        classifier_margin=0.0,
        jit_compile="auto",
        **kwargs,
    ):
        """Configure training: one optimizer per network and the GAN loss.

        Args:
            g_optimizer: optimizer (an instance or a name such as "adam") for the
                generator; required, and distinct from ``d_optimizer``. Under
                ``mixed_float16`` it is wrapped in a ``LossScaleOptimizer`` (unless it is one).
            d_optimizer: optimizer for the discriminator, likewise.
            loss: one of ``GAN_LOSSES``: "non_saturating" (default), "hinge", "least_squares".
            r1_weight: gamma of the R1 penalty gamma/2 * ||grad_x D(x, c)||^2 on real images
                (Mescheder et al., 2018); default 1.0; 0 disables it (it costs a second
                backward pass through D on the real images).
            label_smoothing: one-sided smoothing of the real target, for "non_saturating" only.
            classifier_weight: weight of the auxiliary classifier terms (AC-GAN, Odena et
                al., 2017), for a discriminator with a class head
                (``build_discriminator(..., classifier_head=True)``): the cross-entropy of
                the head on REAL images against their labels joins the discriminator's
                loss, and the cross-entropy of the head on the generator's fakes against
                the requested labels joins the generator's loss. Default 0 (off).
            classifier_fake_weight: weight of the head's cross-entropy on the fakes in the
                discriminator's loss (AC-GAN's own term; it also rewards the
                discriminator for reading the class off easy fakes). Default 0.
            classifier_margin: the generator's classifier term per image is
                max(0, cross-entropy - classifier_margin): a fake the head already gives
                the requested class with probability >= exp(-classifier_margin) is not
                pushed further towards the class (plain AC-GAN, margin 0, keeps pushing
                every fake towards the most typical images of its class).
            jit_compile: as in ``keras.Model.compile``.
            **kwargs: other ``keras.Model.compile`` settings (``run_eagerly``,
                ``steps_per_execution`` ...).

        Raises:
            ValueError: ``optimizer=``, ``metrics=``, ``weighted_metrics=`` or
                ``loss_weights=`` given, an optimizer missing, the same optimizer for both
                networks, a bad setting, ``label_smoothing`` with another loss, or
                classifier weights for a discriminator without a class head.
        """
        for key in ("optimizer", "metrics", "weighted_metrics", "loss_weights"):
            if kwargs.get(key) is not None:
                hint = " pass g_optimizer= and d_optimizer= instead" if key == "optimizer" else ""
                raise ValueError(
                    f"ConditionalGAN computes its own losses and metrics; do not pass {key}= "
                    f"to compile;{hint or ' they are built in'}."
                )
            kwargs.pop(key, None)
        if g_optimizer is None or d_optimizer is None:
            missing = " and ".join(
                name for name, value in (("g_optimizer", g_optimizer), ("d_optimizer", d_optimizer)) if value is None
            )
            raise ValueError(
                f"ConditionalGAN.compile needs {missing}: one optimizer per network, e.g. "
                "compile(g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5), "
                "d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))."
            )
        g_optimizer, d_optimizer = keras.optimizers.get(g_optimizer), keras.optimizers.get(d_optimizer)
        if inner_optimizer(g_optimizer) is inner_optimizer(d_optimizer):
            raise ValueError(
                "g_optimizer and d_optimizer must be two different optimizer instances: an "
                "optimizer is bound to the variables of the network it was built for."
            )
        check_gan_loss(loss)
        r1_weight = _check_weight(r1_weight, "r1_weight")
        label_smoothing = check_number(
            label_smoothing,
            "label_smoothing",
            minimum=0,
            maximum=1,
            exclusive_maximum=True,
            expected="a float in [0, 1)",
        )
        if label_smoothing and loss != "non_saturating":
            raise ValueError(f"label_smoothing applies to loss='non_saturating' only; got loss={loss!r}.")
        classifier_weight = _check_weight(classifier_weight, "classifier_weight")
        classifier_fake_weight = _check_weight(classifier_fake_weight, "classifier_fake_weight")
        classifier_margin = _check_weight(classifier_margin, "classifier_margin")
        if (classifier_weight or classifier_fake_weight) and not self.discriminator_classifies:
            raise ValueError(
                "classifier_weight / classifier_fake_weight need a discriminator with a class head "
                "(outputs [logits, class logits (batch, num_classes)], e.g. build_discriminator(..., "
                "num_classes=..., classifier_head=True)); this discriminator outputs logits only."
            )
        super().compile(optimizer=None, jit_compile=jit_compile, **kwargs)
        if self._computes_in_float16():
            # As keras.Model.compile does for its one optimizer: float16 gradients need a
            # dynamic loss scale, and each network its own (a non-finite step lowers it).
            g_optimizer, d_optimizer = loss_scaled(g_optimizer, "float16"), loss_scaled(d_optimizer, "float16")
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.gan_loss, self.r1_weight, self.label_smoothing = loss, r1_weight, label_smoothing
        self.classifier_weight, self.classifier_fake_weight = classifier_weight, classifier_fake_weight
        self.classifier_margin = classifier_margin
        # Saved with the model (get_compile_config), so load_model compiles the same way.
        self._gan_compile_arguments = {
            "loss": loss,
            "r1_weight": r1_weight,
            "label_smoothing": label_smoothing,
            "classifier_weight": classifier_weight,
            "classifier_fake_weight": classifier_fake_weight,
            "classifier_margin": classifier_margin,
            "jit_compile": jit_compile,
            **kwargs,
        }
        # Build now, so that load_model can restore the optimizers' saved state and fit
        # does not create variables while tracing the step.
        self._build_optimizer(self.g_optimizer, self.generator)
        self._build_optimizer(self.d_optimizer, self.discriminator)

    def _computes_in_float16(self) -> bool:
        """True under a ``mixed_float16`` policy (the model's, or any layer's of the networks)."""
        if self.dtype_policy.compute_dtype == "float16":
            return True
        # "mixed": float16 and bfloat16 layers, so some compute in float16.
        return any(model_precision(network) in ("float16", "mixed") for network in (self.generator, self.discriminator))

    @staticmethod
    def _build_optimizer(optimizer, network) -> None:
        if not optimizer.built:
            optimizer.build(network.trainable_variables)

    def get_compile_config(self):
        if self._gan_compile_arguments is None:
            return None
        return {
            "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
            "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
            **self._gan_compile_arguments,
        }

    def compile_from_config(self, config):
        """Recompile on ``load_model`` (Keras does not call a custom ``compile`` itself).

        The optimizers are built here, so their saved state is loaded into them.
        """
        config = dict(config)
        for key in ("g_optimizer", "d_optimizer"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        self.compile(**config)

    def _check_compiled(self, where: str) -> None:
        if self.g_optimizer is None:
            raise RuntimeError(f"ConditionalGAN.{where}: call compile(g_optimizer=..., d_optimizer=...) first.")

    @property
    def uses_classifier(self) -> bool:
        """Whether the auxiliary classifier terms are on (compiled with a positive weight)."""
        return self.classifier_weight > 0 or self.classifier_fake_weight > 0

    @property
    def metrics(self):
        hidden = set()
        if not self.r1_weight > 0:
            hidden.add("r1_penalty")
        if not self.uses_classifier:
            hidden.update(("real_class_loss", "fake_class_loss"))
        return [tracker for name, tracker in self._trackers.items() if name not in hidden]

    @property
    def training_optimizers(self) -> dict:
        return {"g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer}

    @property
    def gan_compile_arguments(self):
        """The loss settings given to ``compile`` (without the optimizers), or None."""
        return None if self._gan_compile_arguments is None else dict(self._gan_compile_arguments)

    # ------------------------------------------------------------------ inputs
    def _prepare_images(self, images, where: str):
        images = tf.convert_to_tensor(images)
        if not images.dtype.is_floating:
            raise TypeError(
                f"ConditionalGAN.{where}: images must be floats in the generator's output range "
                f"([0, 1] for the builders); got dtype {images.dtype.name}. Scale them first, "
                "e.g. images.astype('float32') / 255."
            )
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"ConditionalGAN.{where}: images must have shape (batch, "
                f"{', '.join(map(str, self.image_shape))}) like the generator's output; got "
                f"{tuple(images.shape)}."
            )
        return tf.cast(images, keras.backend.floatx())

    def _prepare_conditions(self, conditions, where: str):
        """Conditions as a tensor: labels (batch,) int32, or vectors (batch, condition_dim)."""
        conditions = tf.convert_to_tensor(conditions)
        shape = tuple(conditions.shape)
        if self.num_classes is not None:
            if not conditions.dtype.is_integer:
                raise TypeError(
                    f"ConditionalGAN.{where}: conditions must be integer class labels (num_classes="
                    f"{self.num_classes}); got dtype {conditions.dtype.name}. Convert with "
                    "labels.astype('int32') (one-hot rows: labels.argmax(-1))."
                )
            if len(shape) == 2 and shape[1] == 1:
                conditions = tf.reshape(conditions, [-1])
            elif len(shape) != 1:
                raise ValueError(
                    f"ConditionalGAN.{where}: class labels must have shape (batch,) or (batch, 1); got {shape}."
                )
            conditions = tf.cast(conditions, tf.int32)
            check = tf.debugging.assert_less(
                conditions,
                self.num_classes,
                message=f"ConditionalGAN: a class label is >= num_classes={self.num_classes}",
            )
            check_negative = tf.debugging.assert_non_negative(
                conditions, message="ConditionalGAN: a class label is negative"
            )
            with tf.control_dependencies([check, check_negative]):
                return tf.identity(conditions)
        if not conditions.dtype.is_floating:
            raise TypeError(
                f"ConditionalGAN.{where}: condition vectors must be floats (condition_dim="
                f"{self.condition_dim}); got dtype {conditions.dtype.name}."
            )
        if len(shape) != 2 or shape[1] != self.condition_dim:
            raise ValueError(
                f"ConditionalGAN.{where}: condition vectors must have shape (batch, {self.condition_dim}); got {shape}."
            )
        return tf.cast(conditions, keras.backend.floatx())

    def _prepare_batch(self, data, where: str):
        images, conditions = _split_batch(data, where)
        images = self._prepare_images(images, where)
        conditions = self._prepare_conditions(conditions, where)
        if images.shape[0] is not None and conditions.shape[0] is not None:
            if images.shape[0] != conditions.shape[0]:
                raise ValueError(
                    f"ConditionalGAN.{where}: {images.shape[0]} images but {conditions.shape[0]} "
                    "conditions; give one condition per image."
                )
        else:
            check = tf.debugging.assert_equal(
                tf.shape(images)[0],
                tf.shape(conditions)[0],
                message="ConditionalGAN: the numbers of images and conditions differ; give one condition per image",
            )
            with tf.control_dependencies([check]):
                images = tf.identity(images)
        return images, conditions

    def _for_network(self, conditions, label_shape):
        if label_shape == (1,):
            return tf.expand_dims(conditions, -1)
        return conditions

    def check_conditions(self, conditions, where: str = "generate") -> np.ndarray:
        """Conditions as a NumPy array, after eager checks.

        Args:
            conditions: class labels (m,), (m, 1) or one int, or condition vectors
                (m, condition_dim).
            where: the calling method, for messages.

        Returns:
            Labels (m,) int32 within [0, num_classes), or vectors (m, condition_dim) float32.

        Raises:
            ValueError: a wrong shape, a label out of range, or non-finite vectors.
            TypeError: a wrong dtype.
        """
        array = np.asarray(conditions)
        if self.num_classes is not None:
            if array.ndim == 0:
                array = array.reshape(1)
            if array.ndim == 2 and array.shape[1] == 1:
                array = array[:, 0]
            if array.ndim != 1:
                raise ValueError(
                    f"ConditionalGAN.{where}: class labels must have shape (m,) or (m, 1); got {array.shape}."
                )
            if array.size and not np.issubdtype(array.dtype, np.integer):
                raise TypeError(
                    f"ConditionalGAN.{where}: conditions must be integer class labels; got dtype "
                    f"{array.dtype}. Convert with labels.astype('int32')."
                )
            if array.size and (array.min() < 0 or array.max() >= self.num_classes):
                bad = array[(array < 0) | (array >= self.num_classes)][0]
                raise ValueError(
                    f"ConditionalGAN.{where}: class label {bad} is out of range; labels must be "
                    f"in [0, {self.num_classes}) (num_classes={self.num_classes})."
                )
            return array.astype(np.int32)
        if array.ndim == 1 and array.shape[0] == self.condition_dim:
            raise ValueError(
                f"ConditionalGAN.{where}: condition vectors must have shape (m, "
                f"{self.condition_dim}); for one vector use vector[None, :]."
            )
        if array.ndim != 2 or array.shape[1] != self.condition_dim:
            raise ValueError(
                f"ConditionalGAN.{where}: condition vectors must have shape (m, {self.condition_dim}); "
                f"got {array.shape}."
            )
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"ConditionalGAN.{where}: condition vectors must be numbers (float32); got dtype {array.dtype}."
            )
        check_finite_rows(
            array,
            "conditions",
            where=f"ConditionalGAN.{where}",
            fix="give finite condition vectors (remove or impute those rows)",
        )
        with np.errstate(over="ignore"):
            vectors = array.astype(np.float32)
        check_finite_rows(
            vectors,
            "conditions",
            where=f"ConditionalGAN.{where}",
            fix="values beyond float32's range (3.4e38) overflow; rescale the condition vectors",
        )
        return vectors

    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit`` on ``(images, conditions)``.

        NumPy conditions are checked up front (a label out of range raises ValueError
        before training starts).
        """
        self._check_compiled("fit")
        if isinstance(y, (np.ndarray, list)):
            self.check_conditions(y, "fit")
        return super().fit(x, y, *args, **kwargs)

    # ------------------------------------------------------------------ forward
    def sample_latent(self, batch_size, seed=None):
        """Draw z ~ N(0, I) of shape (batch_size, latent_dim).

        Inside a replica of a distribution strategy, this replica's rows of the global
        batch's draw.

        Args:
            batch_size: the number of rows.
            seed: None draws from the model's noise stream; an integer gives a fixed draw.

        Returns:
            The float32 tensor z.
        """
        if seed is None:
            seed = self.seed_generator.next()
        else:
            seed = tf.constant([int(seed), 0], tf.int64)
        seed = tf.cast(tf.math.floormod(tf.cast(seed, tf.int64), tf.int32.max - 1), tf.int32)
        return draw_rows(
            lambda rows: tf.random.stateless_normal(tf.stack([rows, self.latent_dim]), seed=seed),
            tf.cast(batch_size, tf.int32),
        )

    @property
    def sampling_generator(self):
        """The network that draws samples: the weight average when ``ema_decay`` is set."""
        return self.generator if self.generator_ema is None else self.generator_ema

    def call(self, inputs, training=None):
        """Images from ``(z, conditions)``, by ``sampling_generator``.

        Args:
            inputs: a pair ``(z, conditions)`` or a dict with keys "z" and "conditions".
            training: whether the generator runs in training mode.

        Returns:
            The images (batch, H, W, C).

        Raises:
            ValueError: ``inputs`` is neither.
        """
        if isinstance(inputs, dict) and {"z", "conditions"} <= set(inputs):
            z, conditions = inputs["z"], inputs["conditions"]
        elif isinstance(inputs, (tuple, list)) and len(inputs) == 2:
            z, conditions = inputs
        else:
            raise ValueError(
                f"ConditionalGAN.call expects (z, conditions); got {describe(inputs)}. "
                "To sample z, use generate(conditions) or predict(conditions)."
            )
        conditions = self._prepare_conditions(conditions, "call")
        return self.sampling_generator(
            [z, self._for_network(conditions, self._generator_label_shape)], training=training
        )

    def _scores(self, images, conditions, training):
        """(logits (batch,), class logits (batch, num_classes) or None) of the discriminator."""
        outputs = self.discriminator(
            [images, self._for_network(conditions, self._discriminator_label_shape)], training=training
        )
        class_logits = None
        if self.discriminator_classifies:
            outputs, class_logits = outputs
            class_logits = tf.cast(class_logits, tf.float32)
        return tf.reshape(tf.cast(outputs, tf.float32), [-1]), class_logits

    def _logits(self, images, conditions, training):
        return self._scores(images, conditions, training)[0]

    def _sampling_latent(self, batch_size, seed=None):
        """``sample_latent`` times ``truncation`` when it is set: the z that ``predict``
        and ``generate`` sample images from (training always uses N(0, I))."""
        z = self.sample_latent(batch_size, seed=seed)
        return z if self.truncation is None else z * self.truncation

    def _fakes(self, conditions, training, generator=None, z=None):
        z = self.sample_latent(tf.shape(conditions)[0]) if z is None else z
        generator = generator or self.generator
        return generator([z, self._for_network(conditions, self._generator_label_shape)], training=training)

    @staticmethod
    def _class_loss(class_logits, labels):
        """Per-example cross-entropy (batch,) of class logits against integer labels."""
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=class_logits)

    # ------------------------------------------------------------------ training
    def _discriminator_losses(self, images, conditions, fakes, training: bool):
        """Per-example D losses (batch,), the logits, the per-example R1 penalty or None,
        and the head's per-example cross-entropy on the real images or None."""
        r1_penalty = None
        if training and self.r1_weight > 0:
            with tf.GradientTape() as penalty_tape:
                penalty_tape.watch(images)
                real_logits, real_classes = self._scores(images, conditions, training)
                total = tf.reduce_sum(real_logits)
            gradients = tf.cast(penalty_tape.gradient(total, images), tf.float32)
            r1_penalty = tf.reduce_sum(tf.square(gradients), axis=list(range(1, len(images.shape))))
        else:
            real_logits, real_classes = self._scores(images, conditions, training)
        fake_logits, fake_classes = self._scores(fakes, conditions, training)
        losses = discriminator_loss(real_logits, fake_logits, self.gan_loss, self.label_smoothing)
        if r1_penalty is not None:
            losses = losses + 0.5 * self.r1_weight * r1_penalty
        real_class_loss = None
        if self.uses_classifier:
            real_class_loss = self._class_loss(real_classes, conditions)
            if self.classifier_weight > 0:
                losses = losses + self.classifier_weight * real_class_loss
            if self.classifier_fake_weight > 0:
                losses = losses + self.classifier_fake_weight * self._class_loss(fake_classes, conditions)
        return losses, real_logits, fake_logits, r1_penalty, real_class_loss

    def _generator_losses(self, fake_logits, fake_classes, conditions):
        """Per-example G losses (batch,) and the head's cross-entropy on the fakes or None."""
        losses = generator_loss(fake_logits, self.gan_loss)
        fake_class_loss = None
        if self.uses_classifier:
            fake_class_loss = self._class_loss(fake_classes, conditions)
            if self.classifier_weight > 0:
                losses = losses + self.classifier_weight * tf.nn.relu(fake_class_loss - self.classifier_margin)
        return losses, fake_class_loss

    def train_step(self, data):
        self._check_compiled("train_step")
        images, conditions = self._prepare_batch(data, "train_step")
        fakes = self._fakes(conditions, training=True)
        with tf.GradientTape() as d_tape:
            d_losses, real_logits, fake_logits, r1_penalty, real_class_loss = self._discriminator_losses(
                images, conditions, fakes, training=True
            )
            d_loss = self.d_optimizer.scale_loss(tf.nn.compute_average_loss(d_losses))
        d_variables = self.discriminator.trainable_variables
        self.d_optimizer.apply(_zero_missing(d_tape.gradient(d_loss, d_variables), d_variables), d_variables)

        with tf.GradientTape() as g_tape:
            g_logits, g_classes = self._scores(self._fakes(conditions, training=True), conditions, training=True)
            g_losses, fake_class_loss = self._generator_losses(g_logits, g_classes, conditions)
            g_loss = self.g_optimizer.scale_loss(tf.nn.compute_average_loss(g_losses))
        g_variables = self.generator.trainable_variables
        self.g_optimizer.apply(g_tape.gradient(g_loss, g_variables), g_variables)
        if self.generator_ema is not None:
            self._update_generator_average()
        return self.keras_reducible_logs(
            self._update_trackers(
                d_losses, g_losses, real_logits, fake_logits, r1_penalty, real_class_loss, fake_class_loss
            )
        )

    def ema_decay_at(self, step):
        """The decay of the weight average at a generator step.

        Args:
            step: the generator step (1 for the first update).

        Returns:
            min(ema_decay, (1 + step) / (ema_warmup + step)), a float32 tensor.
        """
        step = tf.cast(step, tf.float32)
        return tf.minimum(self.ema_decay, (1.0 + step) / (self.ema_warmup + step))

    def _update_generator_average(self) -> None:
        """generator_ema <- decay * generator_ema + (1 - decay) * generator, for every
        weight (batch-norm moving statistics too, so they follow the averaged weights)."""
        decay = self.ema_decay_at(self.g_optimizer.iterations)
        for average, weight in zip(self.generator_ema.weights, self.generator.weights):
            value = tf.cast(weight, average.dtype)
            average.assign(value + tf.cast(decay, average.dtype) * (average - value))

    def _update_trackers(
        self, d_losses, g_losses, real_logits, fake_logits, r1_penalty, real_class_loss=None, fake_class_loss=None
    ):
        values = {
            "d_loss": d_losses,
            "g_loss": g_losses,
            "real_score": real_logits,
            "fake_score": fake_logits,
            "r1_penalty": r1_penalty,
            "real_class_loss": real_class_loss,
            "fake_class_loss": fake_class_loss,
        }
        for name, value in values.items():
            if value is not None:
                self._trackers[name].update_state(tf.reduce_mean(value))
        return self.metric_results()

    def test_step(self, data):
        """The losses and scores of a batch, without updates.

        The R1 penalty (a training regulariser) is left out of ``d_loss`` and not reported.
        """
        self._check_compiled("test_step")
        images, conditions = self._prepare_batch(data, "test_step")
        fakes = self._fakes(conditions, training=False)
        d_losses, real_logits, fake_logits, _, real_class_loss = self._discriminator_losses(
            images, conditions, fakes, training=False
        )
        fake_classes = self._scores(fakes, conditions, training=False)[1] if self.uses_classifier else None
        g_losses, fake_class_loss = self._generator_losses(fake_logits, fake_classes, conditions)
        logs = self._update_trackers(
            d_losses, g_losses, real_logits, fake_logits, None, real_class_loss, fake_class_loss
        )
        logs.pop("r1_penalty", None)
        return self.keras_reducible_logs(logs)

    def predict_step(self, data):
        """Images for a batch of ``predict``.

        ``predict(conditions)`` samples z from the noise stream (times ``truncation``);
        ``predict((z, conditions))`` uses the given z.
        """
        inputs, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(inputs, (tuple, list, dict)):
            return self(inputs, training=False)
        conditions = self._prepare_conditions(inputs, "predict")
        return self._fakes(
            conditions,
            training=False,
            generator=self.sampling_generator,
            z=self._sampling_latent(tf.shape(conditions)[0]),
        )

    # ------------------------------------------------------------------ generation
    def generate(self, conditions, n=1, seed=None, *, batch_size=512):
        """Sample ``n`` images per condition, as a NumPy array (len(conditions) * n, H, W, C).

        Rows ``i*n .. (i+1)*n - 1`` belong to ``conditions[i]``. The values are in the
        generator's output range: [0, 1] for ``build_generator`` / ``build_dense_generator``.
        The generator runs in inference mode (batch-norm moving statistics).

        Args:
            conditions: class labels (m,) (or one int), or condition vectors (m, condition_dim).
            n: images per condition.
            seed: None draws z from the model's noise stream (advancing it); an int gives
                the same z, hence the same images, on every call. With ``truncation`` set,
                z is multiplied by it.
            batch_size: images per generator call (memory bound only).

        Returns:
            A NumPy array (len(conditions) * n, H, W, C).
        """
        n = check_positive_int(n, "n", expected="a positive integer (images per condition)")
        batch_size = check_positive_int(batch_size, "batch_size")
        check_int(seed, "seed", allow_none=True)
        conditions = np.repeat(self.check_conditions(conditions, "generate"), n, axis=0)
        if len(conditions) == 0:
            return np.zeros((0, *self.image_shape), dtype=keras.backend.floatx())
        z = self._sampling_latent(len(conditions), seed=seed)
        function = self._generate_function(conditions.dtype)
        parts = [
            to_numpy(function(z[start : start + batch_size], tf.constant(conditions[start : start + batch_size])))
            for start in range(0, len(conditions), batch_size)
        ]
        return np.concatenate(parts)

    def _generate_function(self, dtype):
        if dtype not in self._generate_functions:
            signature = [
                tf.TensorSpec((None, self.latent_dim), tf.float32),
                tf.TensorSpec((None, *self._condition_tail()), dtype),
            ]
            self._generate_functions[dtype] = tf.function(
                lambda z, conditions: self((z, conditions), training=False), input_signature=signature
            )
        return self._generate_functions[dtype]

    def _condition_tail(self) -> tuple:
        return () if self.num_classes is not None else (self.condition_dim,)

    # ------------------------------------------------------------------ config
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "num_classes": self.num_classes,
            "condition_dim": self.condition_dim,
            "latent_dim": self.latent_dim,
            "seed": self.seed,
            "ema_decay": self.ema_decay,
            "ema_warmup": self.ema_warmup,
            "truncation": self.truncation,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**deserialize_entries(config, ("generator", "discriminator"), custom_objects))


def _check_ema_decay(ema_decay):
    return check_number(
        ema_decay,
        "ema_decay",
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
        exclusive_maximum=True,
        allow_none=True,
        expected="None or a float in (0, 1), e.g. 0.999",
    )


def _check_ema_warmup(ema_warmup):
    return check_number(
        ema_warmup,
        "ema_warmup",
        minimum=1,
        expected="a number >= 1 (the w of the warm-up decay (1 + t) / (w + t); 1 = no warm-up)",
    )


def _check_truncation(truncation):
    # Unlike check_number, a ValueError for True as well: the behaviour the recipe tests pin.
    if truncation is None:
        return None
    if isinstance(truncation, bool) or not isinstance(truncation, numbers.Real) or not 0 < truncation <= 1:
        raise ValueError(
            f"truncation must be None or a float in (0, 1] (the scale of z when sampling, e.g. "
            f"0.8); got {truncation!r}."
        )
    return float(truncation)


def _zero_missing(gradients, variables):
    """None gradients (variables the loss does not reach, e.g. an unused class head) as zeros."""
    return [
        tf.zeros_like(variable) if gradient is None else gradient for gradient, variable in zip(gradients, variables)
    ]


def _averaged_copy(generator) -> keras.Model:
    """A copy of the generator (same architecture and weights) to hold the weight average."""

    def renamed(layer):  # distinct variable paths, e.g. "generator_project_ema/kernel"
        return layer.__class__.from_config({**layer.get_config(), "name": f"{layer.name}_ema"})

    try:
        copy = keras.models.clone_model(generator, clone_function=renamed)
    except Exception as error:  # clone_model raises various errors for unclonable models
        raise ValueError(
            f"ema_decay needs a copy of the generator, but keras.models.clone_model failed "
            f"({error}); give the generator a get_config, or use ema_decay=None."
        ) from error
    copy.set_weights(generator.get_weights())
    return copy
