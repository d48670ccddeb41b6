"""Tests for xmodal_tf.transfer: tiny hand-built Keras models, CPU only."""

import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from xmodal_tf import transfer  # noqa: E402
from xmodal_tf.transfer import (  # noqa: E402
    FineTuneResult,
    ShapeMismatch,
    TransferReport,
    fine_tune,
    freeze,
    replace_head,
    transfer_weights,
    unfreeze,
)

layers = keras.layers


# ------------------------------------------------------------------ helpers


def randomize(model, seed):
    """Every weight (BatchNorm moving statistics too) set to distinct random values."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        values = rng.normal(size=tuple(weight.shape)).astype("float32")
        if "variance" in weight.path:
            values = np.abs(values) + 0.5
        weight.assign(values)
    return model


def value(tensor):
    return keras.ops.convert_to_numpy(tensor)


def snapshot(layer_or_model):
    return [np.array(w) for w in layer_or_model.get_weights()]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def mlp(seed=0, hidden=8, classes=3, names=("dense_a", "bn", "out"), name="mlp"):
    inputs = keras.Input((6,))
    h = layers.Dense(hidden, activation="relu", name=names[0])(inputs)
    h = layers.BatchNormalization(name=names[1])(h)
    outputs = layers.Dense(classes, activation="softmax", name=names[2])(h)
    return randomize(keras.Model(inputs, outputs, name=name), seed)


def encoder(name="encoder", proj_units=8):
    """A small conv encoder (Conv2D + BN + pooling + Dense) as a functional sub-model."""
    inputs = keras.Input((6, 6, 1))
    h = layers.Conv2D(4, 3, name="conv")(inputs)
    h = layers.BatchNormalization(name="conv_bn")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = layers.Dense(proj_units, name="proj")(h)
    return keras.Model(inputs, outputs, name=name)


def classifier(seed=0, classes=3, enc=None):
    enc = enc or encoder()
    inputs = keras.Input((6, 6, 1))
    outputs = layers.Dense(classes, activation="softmax", name="out")(enc(inputs))
    return randomize(keras.Model(inputs, outputs, name="classifier"), seed)


def mlp_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, size=n)


def image_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 1)).astype("float32"), rng.integers(0, 3, size=n)


def compile_sgd(model):
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return model


def num_trainable(model):
    return len(model.trainable_weights)


# ------------------------------------------------------------------ transfer_weights


def test_transfer_by_name_copies_every_weight_including_batchnorm_statistics():
    source, target = mlp(seed=1), mlp(seed=2)
    bn_stats = [value(source.get_layer("bn").moving_mean), value(source.get_layer("bn").moving_variance)]
    assert not same(snapshot(source), snapshot(target))

    report = transfer_weights(source, target)

    assert isinstance(report, TransferReport) and report.ok
    assert report.copied == [("dense_a", "dense_a"), ("bn", "bn"), ("out", "out")]
    assert report.missing == report.mismatched == report.unused == []
    assert same(snapshot(source), snapshot(target))
    np.testing.assert_array_equal(target.get_layer("bn").moving_mean, bn_stats[0])
    np.testing.assert_array_equal(target.get_layer("bn").moving_variance, bn_stats[1])
    assert "3 copied" in str(report) and "(ok)" in report.summary()


def test_transfer_by_name_reports_missing_and_unused_layers():
    source = mlp(seed=1, names=("dense_a", "bn", "src_only"))
    target = mlp(seed=2, names=("dense_a", "bn", "tgt_only"))
    before = snapshot(target.get_layer("tgt_only"))

    report = transfer_weights(source, target)

    assert report.copied == [("dense_a", "dense_a"), ("bn", "bn")]
    assert report.missing == ["tgt_only"] and report.unused == ["src_only"]
    assert not report.ok
    assert same(snapshot(target.get_layer("tgt_only")), before)
    assert same(snapshot(target.get_layer("dense_a")), snapshot(source.get_layer("dense_a")))


def test_transfer_by_order_ignores_names():
    source = mlp(seed=1, names=("a", "b", "c"))
    target = mlp(seed=2, names=("x", "y", "z"))
    report = transfer_weights(source, target, match="order")
    assert report.copied == [("x", "a"), ("y", "b"), ("z", "c")] and report.ok
    assert same(snapshot(source), snapshot(target))


def test_transfer_by_order_reports_extra_target_layers_missing():
    source = randomize(keras.Sequential([keras.Input((6,)), layers.Dense(8, name="a")]), 1)
    target = mlp(seed=2)
    report = transfer_weights(source, target, match="order")
    assert report.copied == [("dense_a", "a")] and report.missing == ["bn", "out"]


def test_transfer_by_mapping_copies_only_the_mapped_layers():
    source = mlp(seed=1, names=("enc_dense", "enc_bn", "enc_out"))
    target = mlp(seed=2)
    out_before = snapshot(target.get_layer("out"))

    report = transfer_weights(source, target, match={"dense_a": "enc_dense", "bn": "enc_bn"})

    assert report.copied == [("dense_a", "enc_dense"), ("bn", "enc_bn")]
    assert report.skipped == ["out"] and report.unused == ["enc_out"]
    assert report.ok  # skipped layers were left out on purpose
    assert same(snapshot(target.get_layer("dense_a")), snapshot(source.get_layer("enc_dense")))
    assert same(snapshot(target.get_layer("bn")), snapshot(source.get_layer("enc_bn")))
    assert same(snapshot(target.get_layer("out")), out_before)


def test_transfer_standalone_encoder_into_nested_submodel_by_leaf_name():
    pretrained = randomize(encoder(name="pretrained"), seed=5)
    target = classifier(seed=6)
    head_before = snapshot(target.get_layer("out"))

    report = transfer_weights(pretrained, target)

    assert report.copied == [("encoder/conv", "conv"), ("encoder/conv_bn", "conv_bn"), ("encoder/proj", "proj")]
    assert report.missing == ["out"]
    assert same(snapshot(target.get_layer("encoder")), snapshot(pretrained))
    assert same(snapshot(target.get_layer("out")), head_before)
    bn = target.get_layer("encoder").get_layer("conv_bn")
    np.testing.assert_array_equal(bn.moving_variance, pretrained.get_layer("conv_bn").moving_variance)


def test_transfer_between_nested_models_by_path_and_by_submodel_mapping():
    source, target = classifier(seed=1), classifier(seed=2)
    report = transfer_weights(source, target)
    assert report.ok and ("encoder/conv", "encoder/conv") in report.copied
    assert same(snapshot(source), snapshot(target))

    other = classifier(seed=3, enc=encoder(name="backbone"))
    report = transfer_weights(source, other, match={"backbone": "encoder"})
    assert report.copied == [
        ("backbone/conv", "encoder/conv"),
        ("backbone/conv_bn", "encoder/conv_bn"),
        ("backbone/proj", "encoder/proj"),
    ]
    assert report.skipped == ["out"]
    assert same(snapshot(other.get_layer("backbone")), snapshot(source.get_layer("encoder")))


def test_ambiguous_leaf_names_raise_instead_of_guessing():
    inputs = keras.Input((6, 6, 1))
    image_tower, other_tower = encoder(name="tower_a"), encoder(name="tower_b")
    merged = layers.Concatenate()([image_tower(inputs), other_tower(inputs)])
    target = keras.Model(inputs, layers.Dense(2, name="out")(merged))
    with pytest.raises(ValueError, match="several target layers"):
        transfer_weights(encoder(name="pretrained"), target)
    # An explicit path in a mapping settles it.
    report = transfer_weights(encoder(name="pretrained"), target, match={"tower_a/proj": "proj"})
    assert report.copied == [("tower_a/proj", "proj")]
    with pytest.raises(ValueError, match="ambiguous"):
        transfer_weights(encoder(name="pretrained"), target, match={"proj": "proj"})


def test_transfer_from_saved_keras_file(tmp_path):
    source, target = mlp(seed=1), mlp(seed=2)
    path = tmp_path / "source.keras"
    source.save(path)
    report = transfer_weights(str(path), target)
    assert report.ok and len(report.copied) == 3
    assert same(snapshot(source), snapshot(target))
    with pytest.raises(FileNotFoundError, match="nowhere.keras"):
        transfer_weights(tmp_path / "nowhere.keras", target)


def test_mismatched_shapes_are_reported_and_not_copied():
    source, target = mlp(seed=1, classes=3), mlp(seed=2, classes=5)
    out_before = snapshot(target.get_layer("out"))

    report = transfer_weights(source, target)

    assert report.mismatched == [ShapeMismatch("out", "out", [(8, 5), (5,)], [(8, 3), (3,)])]
    assert not report.ok
    assert report.copied == [("dense_a", "dense_a"), ("bn", "bn")]
    assert same(snapshot(target.get_layer("out")), out_before)
    assert same(snapshot(target.get_layer("dense_a")), snapshot(source.get_layer("dense_a")))
    assert "mismatched  out [(8, 5), (5,)]" in str(report)


def test_strict_mode_raises_and_leaves_target_untouched():
    source = mlp(seed=1, classes=3, names=("dense_a", "bn", "out"))
    target = mlp(seed=2, classes=5, names=("dense_a", "bn2", "out"))
    before = snapshot(target)
    with pytest.raises(ValueError) as error:
        transfer_weights(source, target, strict=True)
    message = str(error.value)
    assert "missing: bn2" in message and "mismatched: out" in message
    assert same(snapshot(target), before)  # dense_a matched fine but was not copied either
    # strict passes (and copies) when everything fits
    source, target = mlp(seed=3), mlp(seed=4)
    assert transfer_weights(source, target, strict=True).ok
    assert same(snapshot(target), snapshot(source))


def test_mapping_to_unknown_layer_names_suggests_close_names():
    source, target = mlp(seed=1), mlp(seed=2)
    with pytest.raises(ValueError, match=r"target model .*no layer named 'dens_a'.*dense_a"):
        transfer_weights(source, target, match={"dens_a": "dense_a"})
    with pytest.raises(ValueError, match=r"source model .*no layer named 'outt'.*'out'"):
        transfer_weights(source, target, match={"out": "outt"})


def test_transfer_argument_errors():
    model = mlp()
    with pytest.raises(TypeError, match="source must be a keras.Model.*ndarray"):
        transfer_weights(np.zeros(3), model)
    with pytest.raises(TypeError, match="target must be a keras.Model.*dict"):
        transfer_weights(model, {"weights": 1})
    with pytest.raises(TypeError, match="match must be"):
        transfer_weights(model, mlp(), match="position")
    unbuilt = keras.Sequential([layers.Dense(3)])
    with pytest.raises(ValueError, match="not built"):
        transfer_weights(model, unbuilt)


# ------------------------------------------------------------------ freeze / unfreeze


def test_freeze_and_unfreeze_whole_model_weight_counts():
    model = mlp()
    assert num_trainable(model) == 6  # kernel+bias, gamma+beta, kernel+bias

    assert freeze(model) == ["dense_a", "bn", "out"]
    assert num_trainable(model) == 0 and len(model.non_trainable_weights) == 8
    assert freeze(model) == []  # nothing left to change

    assert unfreeze(model) == ["dense_a", "out"]  # BatchNorm stays frozen by default
    assert num_trainable(model) == 4 and not model.get_layer("bn").trainable
    assert unfreeze(model, keep_batchnorm_frozen=False) == ["bn"]
    assert num_trainable(model) == 6


def test_freeze_selectors():
    model = mlp()
    assert freeze(model, ["dense_a"]) == ["dense_a"]
    assert num_trainable(model) == 4
    unfreeze(model, keep_batchnorm_frozen=False)

    assert freeze(model, up_to="bn") == ["dense_a", "bn"]
    assert [layer.trainable for layer in model.layers[1:]] == [False, False, True]
    unfreeze(model, keep_batchnorm_frozen=False)

    assert freeze(model, pattern=r"^(bn|out)$") == ["bn", "out"]
    assert freeze(model, model.get_layer("dense_a")) == ["dense_a"]  # a layer object
    assert num_trainable(model) == 0


def test_unfreeze_top_counts_weight_layers_and_skips_batchnorm():
    model = mlp()
    freeze(model)
    assert unfreeze(model, top=1) == ["out"]
    freeze(model)
    assert unfreeze(model, top=2) == ["dense_a", "out"]  # bn is not counted and stays frozen
    freeze(model)
    assert unfreeze(model, top=2, keep_batchnorm_frozen=False) == ["bn", "out"]
    freeze(model)
    assert unfreeze(model, top=0) == []


def test_unknown_names_and_bad_arguments():
    model = mlp()
    with pytest.raises(ValueError, match=r"no layer named 'dense_b'.*dense_a"):
        freeze(model, up_to="dense_b")
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        unfreeze(model, ["nope"])
    with pytest.raises(ValueError, match="at most one"):
        freeze(model, ["out"], pattern="out")
    with pytest.raises(ValueError, match="top must be"):
        unfreeze(model, top=-1)
    with pytest.raises(TypeError, match="model must be a keras.Model"):
        freeze("mlp")
    with pytest.raises(ValueError, match="not built"):
        freeze(keras.Sequential([layers.Dense(2)]))
    with pytest.raises(ValueError, match="not part of"):
        freeze(model, [layers.Dense(2)])


def test_frozen_layers_and_batchnorm_statistics_do_not_change_during_fit():
    x, y = mlp_data()
    model = compile_sgd(mlp(seed=3))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # train functions exist already
    assert freeze(model, ["dense_a", "bn"], recompile=True) == ["dense_a", "bn"]
    frozen_before = snapshot(model.get_layer("dense_a")) + snapshot(model.get_layer("bn"))
    out_before = snapshot(model.get_layer("out"))

    model.fit(x, y, epochs=2, batch_size=16, verbose=0)

    assert same(
        snapshot(model.get_layer("dense_a")) + snapshot(model.get_layer("bn")), frozen_before
    )  # moving mean/variance included
    assert not np.allclose(model.get_layer("out").get_weights()[0], out_before[0])

    # Control: once unfrozen, the same fit moves the kernel and the BN statistics.
    unfreeze(model, keep_batchnorm_frozen=False, recompile=True)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    bn = model.get_layer("bn")
    assert not np.allclose(value(bn.moving_mean), frozen_before[4])
    assert not np.allclose(value(bn.moving_variance), frozen_before[5])
    assert not np.allclose(model.get_layer("dense_a").get_weights()[0], frozen_before[0])


def test_compiled_model_warns_and_user_recompile_takes_effect():
    x, y = mlp_data()
    model = compile_sgd(mlp(seed=4))
    with pytest.warns(UserWarning, match=r"model.compile\(...\)"):
        freeze(model, up_to="bn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert freeze(model, up_to="bn") == []  # nothing changed: no warning
        freeze(mlp(), up_to="bn")  # not compiled: no warning
    compile_sgd(model)
    before = snapshot(model.get_layer("dense_a"))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert same(snapshot(model.get_layer("dense_a")), before)


def test_recompile_keeps_the_compile_configuration():
    model = mlp()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    freeze(model, ["out"], recompile=True)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    history = model.fit(*mlp_data(), epochs=1, verbose=0)
    assert "accuracy" in history.history


def test_nested_freeze_of_an_inner_layer():
    x, y = image_data()
    model = compile_sgd(classifier(seed=7))
    enc = model.get_layer("encoder")
    assert freeze(model, ["encoder/conv"], recompile=True) == ["encoder/conv"]
    assert enc.trainable and not enc.get_layer("conv").trainable
    conv_before, proj_before = snapshot(enc.get_layer("conv")), snapshot(enc.get_layer("proj"))

    model.fit(x, y, epochs=1, batch_size=8, verbose=0)

    assert same(snapshot(enc.get_layer("conv")), conv_before)
    assert not np.allclose(enc.get_layer("proj").get_weights()[0], proj_before[0])
    # a sub-model selects all its layers
    with pytest.warns(UserWarning, match="compile"):
        assert freeze(model, ["encoder"]) == ["encoder/conv_bn", "encoder/proj"]
    assert freeze(model, up_to="encoder") == []
    assert num_trainable(model) == 2  # only the head


def test_unfreeze_inside_a_frozen_submodel_keeps_its_other_layers_frozen():
    x, y = image_data()
    model = classifier(seed=8)
    enc = model.get_layer("encoder")
    enc.trainable = False  # the usual Keras idiom for a frozen backbone
    assert num_trainable(model) == 2

    assert unfreeze(model, ["proj"]) == ["encoder/proj"]

    assert enc.trainable and enc.get_layer("proj").trainable
    assert not enc.get_layer("conv").trainable and not enc.get_layer("conv_bn").trainable
    assert num_trainable(model) == 4
    compile_sgd(model)
    frozen_before = snapshot(enc.get_layer("conv")) + snapshot(enc.get_layer("conv_bn"))
    proj_before = snapshot(enc.get_layer("proj"))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert same(snapshot(enc.get_layer("conv")) + snapshot(enc.get_layer("conv_bn")), frozen_before)
    assert not np.allclose(enc.get_layer("proj").get_weights()[0], proj_before[0])


def test_unfreeze_whole_frozen_model_keeps_batchnorm_in_inference_mode():
    model = classifier()
    model.trainable = False
    changed = unfreeze(model)
    assert changed == ["encoder/conv", "encoder/proj", "out"]
    assert model.trainable and model.get_layer("encoder").trainable
    bn = model.get_layer("encoder").get_layer("conv_bn")
    assert not bn.trainable
    x, _ = image_data(n=8)
    features = model.get_layer("encoder")
    # BN in inference mode: training=True gives the same output as training=False
    np.testing.assert_allclose(
        value(features(x, training=True)), value(features(x, training=False)), rtol=1e-5, atol=1e-6
    )


# ------------------------------------------------------------------ replace_head


def test_replace_head_functional_keeps_body_and_changes_output():
    model = mlp(seed=9)
    x, _ = mlp_data(n=8)
    body_before = keras.Model(model.input, model.get_layer("bn").output)(x)

    new = replace_head(model, 5)

    assert new.output_shape == (None, 5)
    assert new.get_layer("dense_a") is model.get_layer("dense_a")  # shared, not copied
    assert new.get_layer("head").activation is keras.activations.softmax
    body_after = keras.Model(new.input, new.get_layer("bn").output)(x)
    np.testing.assert_array_equal(value(body_before), value(body_after))
    np.testing.assert_allclose(value(new(x)).sum(axis=1), 1.0, rtol=1e-5)
    assert "out" not in [layer.name for layer in new.layers] and new.name == model.name


def test_replace_head_sequential_and_nested_and_custom_head():
    seq = randomize(
        keras.Sequential(
            [
                keras.Input((6,)),
                layers.Dense(8, name="d1"),
                layers.BatchNormalization(name="b1"),
                layers.Dense(3, name="old"),
            ],
            name="seq",
        ),
        1,
    )
    new = replace_head(seq, 2, activation=None, name="seq2")
    assert isinstance(new, keras.Sequential) and new.name == "seq2"
    assert new.output_shape == (None, 2) and [layer.name for layer in new.layers] == ["d1", "b1", "head"]
    x, _ = mlp_data(n=4)
    np.testing.assert_array_equal(value(seq.layers[1](seq.layers[0](x))), value(new.layers[1](new.layers[0](x))))

    model = classifier(seed=2)
    custom = keras.Sequential([layers.Dense(4, activation="relu"), layers.Dense(1)], name="regressor")
    new = replace_head(model, head=custom)
    xi, _ = image_data(n=4)
    assert new(xi).shape == (4, 1)
    np.testing.assert_array_equal(value(model.get_layer("encoder")(xi)), value(new.get_layer("encoder")(xi)))


def test_replace_head_errors():
    model = mlp()
    with pytest.raises(ValueError, match="exactly one"):
        replace_head(model)
    with pytest.raises(ValueError, match="exactly one"):
        replace_head(model, 3, head=layers.Dense(3))
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        replace_head(model, 0)
    with pytest.raises(TypeError, match="head must be a keras layer"):
        replace_head(model, head="dense")
    with pytest.raises(ValueError, match="already used"):
        replace_head(model, head=layers.Dense(2, name="dense_a"))
    inputs = keras.Input((6,))
    h = layers.Dense(4)(inputs)
    two_outputs = keras.Model(inputs, [layers.Dense(2)(h), layers.Dense(3)(h)])
    with pytest.raises(ValueError, match="2 outputs"):
        replace_head(two_outputs, 4)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(TypeError, match="subclassed"):
        replace_head(Subclassed(), 2)


# ------------------------------------------------------------------ fine_tune


def easy_task(n=192, seed=0):
    """Three Gaussian blobs in 6-D: linearly separable, so even a frozen body suffices."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    centers = rng.normal(scale=3.0, size=(3, 6))
    return (centers[labels] + rng.normal(size=(n, 6))).astype("float32"), labels


def body_and_head(seed=0):
    inputs = keras.Input((6,))
    h = layers.Dense(16, activation="relu", name="body_1")(inputs)
    h = layers.BatchNormalization(name="body_bn")(h)
    h = layers.Dense(16, activation="relu", name="body_2")(h)
    outputs = layers.Dense(3, activation="softmax", name="head")(h)
    model = keras.Model(inputs, outputs)
    keras.utils.set_random_seed(seed)
    return model


def test_fine_tune_two_stages_on_easy_task():
    keras.utils.set_random_seed(0)
    x, y = easy_task()
    model = body_and_head()
    frozen_before = snapshot(model.get_layer("body_1")) + snapshot(model.get_layer("body_bn"))
    body_2_before = snapshot(model.get_layer("body_2"))

    result = fine_tune(
        model,
        (x, y),
        (x[:64], y[:64]),
        unfreeze_top=1,
        head_epochs=3,
        fine_tune_epochs=2,
        head_learning_rate=3e-2,
        fine_tune_learning_rate=1e-2,
        batch_size=32,
    )

    assert isinstance(result, FineTuneResult)
    head_history, fine_tune_history = result
    assert head_history is result.head_history and fine_tune_history is result.fine_tune_history
    assert head_history.epoch == [0, 1, 2] and fine_tune_history.epoch == [3, 4]
    assert len(head_history.history["loss"]) == 3 and "val_accuracy" in head_history.history
    assert len(fine_tune_history.history["val_loss"]) == 2
    # body_1 and the BatchNorm layer (statistics included) never moved; body_2 did
    assert same(snapshot(model.get_layer("body_1")) + snapshot(model.get_layer("body_bn")), frozen_before)
    assert not np.allclose(model.get_layer("body_2").get_weights()[0], body_2_before[0])
    assert model.get_layer("body_2").trainable and not model.get_layer("body_1").trainable
    accuracy = np.mean(value(model(x, training=False)).argmax(axis=1) == y)
    assert accuracy > 0.7  # chance is 1/3
    assert fine_tune_history.history["accuracy"][-1] > 0.7


def test_fine_tune_with_datasets_and_nested_body():
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    x, y = image_data(n=16)
    model = replace_head(classifier(seed=1), 3)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    enc = model.get_layer("encoder")
    conv_before = snapshot(enc.get_layer("conv")) + snapshot(enc.get_layer("conv_bn"))

    result = fine_tune(model, train, head_epochs=1, fine_tune_epochs=1, unfreeze_top=1)

    assert [len(h.history["loss"]) for h in result] == [1, 1]
    assert same(snapshot(enc.get_layer("conv")) + snapshot(enc.get_layer("conv_bn")), conv_before)
    assert enc.get_layer("proj").trainable and not enc.get_layer("conv").trainable


def test_fine_tune_on_a_strategy_trains_like_fit_through_the_trainer():
    """With strategy=, both stages run in xmodal_tf.training.Trainer: on the same batches
    it gives the weights model.fit gives, and Keras-style histories."""
    import tensorflow as tf

    x, y = easy_task(n=96)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)  # unshuffled: the same batches
    kwargs = dict(
        unfreeze_top=1, head_epochs=2, fine_tune_epochs=2, head_learning_rate=3e-2, fine_tune_learning_rate=1e-2
    )
    expected = body_and_head()
    initial = expected.get_weights()
    fine_tune(expected, train, train, **kwargs)

    class Epochs(keras.callbacks.Callback):
        seen = []

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append((epoch, sorted(logs)))

    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        model = body_and_head()
    model.set_weights(initial)
    head_history, fine_tune_history = fine_tune(model, train, train, strategy=strategy, callbacks=[Epochs()], **kwargs)
    assert isinstance(head_history, keras.callbacks.History)
    assert head_history.epoch == [0, 1] and fine_tune_history.epoch == [2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(fine_tune_history.history)
    assert len(head_history.history["loss"]) == 2 and "steps" not in head_history.history
    assert [epoch for epoch, _ in Epochs.seen] == [0, 1, 2, 3] and "val_accuracy" in Epochs.seen[-1][1]
    for want, got in zip(expected.weights, model.weights):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5, err_msg=got.path)
    assert model.get_layer("body_2").trainable and not model.get_layer("body_1").trainable


def test_fine_tune_on_a_mirrored_strategy_with_arrays():
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    x, y = easy_task()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = body_and_head()
    frozen_before = snapshot(model.get_layer("body_1")) + snapshot(model.get_layer("body_bn"))
    head_history, fine_tune_history = fine_tune(
        model,
        (x, y),
        (x[:64], y[:64]),
        unfreeze_top=1,
        head_epochs=3,
        fine_tune_epochs=2,
        head_learning_rate=3e-2,
        fine_tune_learning_rate=1e-2,
        batch_size=32,
        strategy=strategy,
    )
    assert head_history.epoch == [0, 1, 2] and len(fine_tune_history.history["val_loss"]) == 2
    assert same(snapshot(model.get_layer("body_1")) + snapshot(model.get_layer("body_bn")), frozen_before)
    assert np.mean(value(model(x, training=False)).argmax(axis=1) == y) > 0.7  # chance is 1/3
    with pytest.raises(TypeError, match="strategy must be a tf.distribute.Strategy"):
        fine_tune(model, (x, y), strategy="mirrored")
    with pytest.raises(TypeError, match="tf.data.Dataset or an"):
        fine_tune(model, x, strategy=strategy)


def test_fine_tune_argument_errors():
    model = body_and_head()
    data = easy_task(n=8)
    with pytest.raises(ValueError, match="head_layers"):
        fine_tune(model, data, head_layers=0)
    with pytest.raises(ValueError, match="only 4 layers"):
        fine_tune(model, data, head_layers=5)
    with pytest.raises(TypeError, match="train_data must be"):
        fine_tune(model, data[0])
    with pytest.raises(ValueError, match=r"must be \(x, y\)"):
        fine_tune(model, (data[0],))


def test_module_exports():
    assert set(transfer.__all__) >= {
        "transfer_weights",
        "freeze",
        "unfreeze",
        "replace_head",
        "fine_tune",
        "TransferReport",
        "FineTuneResult",
    }
