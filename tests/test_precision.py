"""Mixed precision and XLA (``xmodal_tf.precision`` and the Trainer's ``mixed_precision``
and ``jit``): every model trains under both mixed policies, loss scaling lowers its scale,
checkpoints load across precisions, and XLA on the CPU stands in for the GPU."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from xmodal_tf import precision
from xmodal_tf.encoders import mlp_encoder
from xmodal_tf.models import (
    ConditionalGAN,
    DeepCCA,
    DualEncoder,
    MultimodalAutoencoder,
    build_dense_discriminator,
    build_dense_generator,
    build_fusion_classifier,
)
from xmodal_tf.training import Trainer

RNG = np.random.default_rng(0)
X = RNG.normal(size=(256, 8)).astype("float32")
Y = (X[:, :4] @ RNG.normal(size=(4, 6)) + 0.3 * RNG.normal(size=(256, 6))).astype("float32")
LABELS = (X[:, 0] + X[:, 1] > 0).astype("int32")
IMAGES = np.clip(RNG.normal(0.5, 0.2, size=(256, 4, 4, 1)), 0, 1).astype("float32")
DIGITS = RNG.integers(0, 3, size=256).astype("int32")


def mlp(inputs, outputs, name):
    return mlp_encoder(inputs, outputs, hidden_units=(16,), activation="tanh", name=name)


def deepcca():
    return DeepCCA(mlp(8, 3, "ex"), mlp(6, 3, "ey")), tf.data.Dataset.from_tensor_slices((X, Y)).batch(64), "loss"


def autoencoder():
    model = MultimodalAutoencoder(
        {"x": mlp(8, 4, "ex"), "y": mlp(6, 4, "ey")},
        {"x": mlp(3, 8, "dx"), "y": mlp(3, 6, "dy")},
        code_dim=3,
        modality_dropout=0.3,
        seed=1,
    )
    return model, tf.data.Dataset.from_tensor_slices({"x": X, "y": Y}).batch(64), "loss"


def dual_encoder():
    model = DualEncoder(mlp(8, 4, "ea"), mlp(6, 4, "eb"))
    return model, tf.data.Dataset.from_tensor_slices((X, Y)).batch(64), "loss"


def fusion():
    model = build_fusion_classifier({"x": mlp(8, 4, "ex"), "y": mlp(6, 4, "ey")}, num_classes=2)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return model, tf.data.Dataset.from_tensor_slices(({"x": X, "y": Y}, LABELS)).batch(64), "loss"


def gan():
    model = ConditionalGAN(
        build_dense_generator((4, 4, 1), 4, num_classes=3, hidden_units=(16,)),
        build_dense_discriminator((4, 4, 1), num_classes=3, hidden_units=(16,)),
        num_classes=3,
        seed=0,
    )
    return model, tf.data.Dataset.from_tensor_slices((IMAGES, DIGITS)).batch(64), "d_loss"


MODELS = {"deepcca": deepcca, "autoencoder": autoencoder, "dual_encoder": dual_encoder, "fusion": fusion, "gan": gan}


def optimizer_for(name):
    if name == "gan":
        return keras.optimizers.Adam(2e-3, beta_1=0.5), keras.optimizers.Adam(2e-3, beta_1=0.5)
    if name == "fusion":
        return None  # the optimizer it was compiled with
    return keras.optimizers.Adam(1e-2)


def built(name):
    keras.utils.set_random_seed(0)
    model, data, key = MODELS[name]()
    batch = next(iter(data))
    if name == "fusion":
        model(batch[0])
    elif name == "gan":
        model.build_from_batch(*batch)
    else:
        model(batch)
    return model, data, key


def float_weights(model):
    return [w.numpy() for w in model.weights if w.dtype.startswith("float")]


@pytest.mark.parametrize("mixed_precision", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_under_both_mixed_policies(name, mixed_precision):
    model, data, key = built(name)
    trainer = Trainer(model, optimizer_for(name), mixed_precision=mixed_precision, progress=False)
    assert trainer.mixed_precision == precision.model_precision(model) == mixed_precision
    loss_scaled = [isinstance(o, keras.optimizers.LossScaleOptimizer) for o in trainer.optimizers.values()]
    assert loss_scaled == [mixed_precision == "float16"] * len(loss_scaled)
    history = trainer.fit(data, epochs=6)
    assert history[key][-1] < history[key][0], history[key]
    assert {w.dtype for w in model.trainable_weights} == {"float32"}  # variables stay float32
    assert all(np.isfinite(w).all() for w in float_weights(model))


def test_deepcca_loss_scale_comes_down_from_2_to_the_24_and_the_weights_move():
    # Under float16 a scale of 2^24 overflows the first steps' gradients. DeepCCA skips
    # such steps; the LossScaleOptimizer must still see them and lower its scale.
    model, data, _ = built("deepcca")
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2), initial_scale=2.0**24)
    trainer = Trainer(model, optimizer, mixed_precision="float16", progress=False)
    before = [w.numpy() for w in model.trainable_weights]
    history = trainer.fit(data, epochs=4)
    scale = float(optimizer.dynamic_scale.numpy())
    assert scale < 2.0**24 and sum(history["skipped_batches"]) >= 1
    assert trainer.iterations > 0
    assert all(not np.array_equal(a, b.numpy()) for a, b in zip(before, model.trainable_weights))
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("first, second", [("off", "bfloat16"), ("off", "float16"), ("float16", "off")])
def test_checkpoints_load_across_precisions(tmp_path, first, second):
    model, data, _ = built("autoencoder")
    trainer = Trainer(
        model, keras.optimizers.Adam(1e-2), mixed_precision=first, checkpoint_dir=tmp_path, progress=False
    )
    trainer.fit(data, epochs=2)
    saved = [w.numpy() for w in model.weights]
    resumed_model, _, _ = built("autoencoder")
    resumed = Trainer(
        resumed_model, keras.optimizers.Adam(1e-2), mixed_precision=second, checkpoint_dir=tmp_path, progress=False
    )
    assert resumed.epoch == 2 and resumed.iterations == trainer.iterations
    assert precision.model_precision(resumed_model) == second
    for a, b in zip(saved, resumed_model.weights):
        np.testing.assert_array_equal(a, b.numpy())
    history = resumed.fit(data, epochs=3)
    assert history["epoch"] == [2] and np.isfinite(history["loss"][0])


def test_a_float16_checkpoint_keeps_its_loss_scale(tmp_path):
    model, data, _ = built("autoencoder")
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2), initial_scale=2.0**30)
    trainer = Trainer(model, optimizer, mixed_precision="float16", checkpoint_dir=tmp_path, progress=False)
    trainer.fit(data, epochs=1)
    scale = float(optimizer.dynamic_scale.numpy())
    assert scale < 2.0**30
    resumed = Trainer(
        built("autoencoder")[0],
        keras.optimizers.Adam(1e-2),
        mixed_precision="float16",
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert float(resumed.optimizer.dynamic_scale.numpy()) == scale


def test_jit_on_compiles_the_step_with_xla_and_trains_like_jit_off():
    results = {}
    for jit in ("off", "on"):
        model, data, _ = built("dual_encoder")  # no random draws: XLA and TF agree closely
        trainer = Trainer(model, keras.optimizers.SGD(0.05), jit=jit, progress=False)
        assert trainer.jit_compile is (jit == "on") and model.jit_compile is (jit == "on")
        results[jit] = trainer.fit(data, epochs=2)["loss"]
        if jit == "on":
            # The step really is an XLA cluster: its concrete function carries the attribute.
            concrete = trainer._train_step.get_concrete_function(next(iter(data)))
            assert concrete.function_def.attr["_XlaMustCompile"].b
    np.testing.assert_allclose(results["on"], results["off"], rtol=1e-4)


def test_jit_choices_and_what_cannot_compile():
    model, _, _ = built("deepcca")
    with pytest.raises(ValueError, match="cannot be compiled with XLA: the Deep CCA objective"):
        Trainer(model, "adam", jit="on")
    assert Trainer(model, "adam", jit="auto", progress=False).jit_compile is False  # and on a GPU too
    autoencoder_model, _, _ = built("autoencoder")
    # No GPU here: "auto" keeps XLA off, as Keras does on CPUs.
    assert Trainer(autoencoder_model, "adam", jit="auto", progress=False).jit_compile is (
        bool(tf.config.list_logical_devices("GPU"))
    )
    text = keras.Sequential([keras.Input((), dtype="string"), keras.layers.TextVectorization(max_tokens=10)])
    assert "TextVectorization" in precision.xla_unsupported_reason(text)
    with pytest.raises(ValueError, match="jit must be one of 'auto', 'on', 'off'; got 'yes'"):
        Trainer(autoencoder_model, "adam", jit="yes")
    with pytest.raises(ValueError, match="mixed_precision must be one of 'off', 'float16', 'bfloat16'; got 'fp16'"):
        Trainer(autoencoder_model, "adam", mixed_precision="fp16")


def test_precision_scope_builds_in_the_policy_and_restores_the_previous_one():
    assert keras.config.dtype_policy().name == "float32"
    with precision.precision_scope("bfloat16"):
        encoder = mlp(8, 4, "e")
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    assert precision.model_precision(encoder) == "bfloat16"
    assert encoder(np.ones((2, 8), "float32")).dtype == "bfloat16"
    precision.apply_precision(encoder, "off")
    assert precision.model_precision(encoder) == "off" and encoder(np.ones((2, 8), "float32")).dtype == "float32"
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        precision.policy_name("half")
    adam = keras.optimizers.Adam()
    scaled = precision.loss_scaled(adam, "float16")
    assert (
        isinstance(scaled, keras.optimizers.LossScaleOptimizer) and precision.loss_scaled(scaled, "float16") is scaled
    )
    assert precision.loss_scaled(adam, "bfloat16") is adam and precision.inner_optimizer(scaled) is adam


def test_xla_is_refused_with_several_replicas():
    model, _, _ = built("dual_encoder")
    assert precision.resolve_jit("auto", model, replicas=2) is False
    with pytest.raises(ValueError, match="trains on 2 replicas, whose variables live on different devices"):
        precision.resolve_jit("on", model, replicas=2)
    assert precision.resolve_jit("on", model, replicas=1) is True


@pytest.mark.parametrize("name", ["autoencoder", "dual_encoder", "fusion", "gan"])
def test_every_model_but_deepcca_trains_under_xla_in_bfloat16(name):
    model, data, key = built(name)
    trainer = Trainer(model, optimizer_for(name), mixed_precision="bfloat16", jit="on", progress=False)
    assert trainer.jit_compile and precision.xla_unsupported_reason(model) is None
    history = trainer.fit(data, epochs=4)
    assert history[key][-1] < history[key][0], history[key]
    assert all(np.isfinite(w).all() for w in float_weights(model))


def test_a_compiled_model_keeps_its_unregistered_loss_and_gets_loss_scaling():
    # optimizer=None keeps what the model was compiled with, even a loss Keras could not
    # serialise (a lambda); float16 still wraps its optimizer.
    model, data, key = built("fusion")
    model.compile(keras.optimizers.Adam(1e-2), loss=lambda y, p: keras.losses.sparse_categorical_crossentropy(y, p))
    trainer = Trainer(model, None, mixed_precision="float16", progress=False)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) and trainer.optimizer is model.optimizer
    history = trainer.fit(data, epochs=4)
    assert history[key][-1] < history[key][0]
