"""Tests for the block-level tools of xmodal_tf.transfer on tiny random keras-hub backbones (CPU only)."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
keras_hub = pytest.importorskip("keras_hub")

from xmodal_tf import transfer  # noqa: E402
from xmodal_tf.transfer import backbone_blocks, fine_tune, freeze, unfreeze  # noqa: E402

layers = keras.layers


# ------------------------------------------------------------------ helpers


def params(weights):
    return sum(int(np.prod(weight.shape)) for weight in weights)


def trainable(model):
    return params(model.trainable_weights)


def bert(name="text_backbone", num_layers=3):
    return keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
        dropout=0.0,
        name=name,
    )


def text_inputs(prefix=""):
    return {
        key: keras.Input((None,), dtype="int32", name=prefix + key)
        for key in ("token_ids", "segment_ids", "padding_mask")
    }


def text_classifier(backbone=None, classes=3):
    """token ids -> BertBackbone -> pooled output -> Dense head."""
    backbone = backbone or bert()
    inputs = text_inputs()
    pooled = backbone(inputs)["pooled_output"]
    outputs = layers.Dense(classes, activation="softmax", name="head")(pooled)
    return keras.Model(inputs, outputs, name="text_classifier")


def text_data(n=16, length=8, seed=0):
    rng = np.random.default_rng(seed)
    x = {
        "token_ids": rng.integers(1, 30, size=(n, length)).astype("int32"),
        "segment_ids": np.zeros((n, length), "int32"),
        "padding_mask": np.ones((n, length), "int32"),
    }
    return x, rng.integers(0, 3, size=n)


def vit_classifier(num_layers=3, classes=3):
    """images -> ViTBackbone -> token pooling -> Dense head."""
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=16,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        name="image_backbone",
    )
    inputs = keras.Input((32, 32, 3))
    pooled = layers.GlobalAveragePooling1D(name="pool")(backbone(inputs))
    outputs = layers.Dense(classes, activation="softmax", name="head")(pooled)
    return keras.Model(inputs, outputs, name="vit_classifier")


def resnet():
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )


def dense_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, layers.Dense(2, name="out")(layers.Dense(3, name="dense")(inputs)))


def snapshot(layer):
    return [np.array(weight) for weight in layer.get_weights()]


def max_change(before, layer):
    return max(float(np.max(np.abs(b - a))) for b, a in zip(before, layer.get_weights()))


# ------------------------------------------------------------------ backbone_blocks


def test_backbone_blocks_per_family_in_order():
    model = text_classifier()
    assert backbone_blocks(model) == [f"text_backbone/transformer_layer_{i}" for i in range(3)]
    assert backbone_blocks(model.get_layer("text_backbone")) == [f"transformer_layer_{i}" for i in range(3)]
    # ViT's blocks are sub-layers of its vit_encoder layer
    assert backbone_blocks(vit_classifier()) == [f"image_backbone/vit_encoder/transformer_block_{i}" for i in (1, 2, 3)]
    assert backbone_blocks(resnet()) == ["stack0", "stack1"]  # stages: the layers named stack<i>_...
    distil = keras_hub.models.DistilBertBackbone(
        vocabulary_size=30, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=16
    )
    assert backbone_blocks(distil) == ["transformer_layer_0", "transformer_layer_1"]
    clip = keras_hub.models.CLIPVisionEncoder(
        patch_size=16, hidden_dim=16, num_layers=2, num_heads=2, intermediate_dim=32, image_shape=(32, 32, 3)
    )
    assert backbone_blocks(clip) == ["encoder_block_0", "encoder_block_1"]
    assert backbone_blocks(dense_model()) == []
    with pytest.raises(TypeError, match="model must be a keras.Model"):
        backbone_blocks("bert")


# ------------------------------------------------------------------ freeze / unfreeze by block


def test_unfreeze_top_blocks_of_a_frozen_bert_backbone():
    model = text_classifier()
    backbone = model.get_layer("text_backbone")
    block = [backbone.get_layer(f"transformer_layer_{i}") for i in range(3)]
    head = params(model.get_layer("head").weights)

    changed = freeze(model, unit="block")  # the whole backbone, nothing after it
    assert changed[0] == "text_backbone/token_embedding" and changed[-1] == "text_backbone/pooled_dense"
    assert trainable(model) == head

    assert unfreeze(model, top=1, unit="block") == ["text_backbone/transformer_layer_2"]
    assert len(model.trainable_weights) == len(block[2].weights) + 2
    assert trainable(model) == params(block[2].weights) + head
    assert unfreeze(model, top=2, unit="block") == ["text_backbone/transformer_layer_1"]
    assert trainable(model) == params(block[1].weights + block[2].weights) + head
    # the layers around the blocks kept their flags
    assert not backbone.get_layer("pooled_dense").trainable and not backbone.get_layer("token_embedding").trainable
    assert unfreeze(model, top=0, unit="block") == []

    assert unfreeze(model, unit="block")[0] == "text_backbone/token_embedding"  # no selector: every layer
    assert trainable(model) == params(model.weights)


def test_vit_blocks_nested_in_the_encoder_layer():
    model = vit_classifier()
    encoder = model.get_layer("image_backbone").get_layer("vit_encoder")
    blocks = encoder.encoder_layers
    head = params(model.get_layer("head").weights)

    freeze(model)  # every layer, by the default unit
    assert unfreeze(model, top=2, unit="block") == [
        "image_backbone/vit_encoder/transformer_block_2",
        "image_backbone/vit_encoder/transformer_block_3",
    ]
    assert trainable(model) == params(blocks[1].weights + blocks[2].weights)
    assert not encoder.layer_norm.trainable and not blocks[0].trainable  # the encoder's other parts stay frozen
    # a later layer-level change keeps the blocks' own flags
    assert unfreeze(model, ["head"]) == ["head"]
    assert trainable(model) == params(blocks[1].weights + blocks[2].weights) + head

    assert freeze(model, up_to="transformer_block_2", unit="block") == [
        "image_backbone/vit_encoder/transformer_block_2"
    ]
    assert trainable(model) == params(blocks[2].weights) + head


def test_blocks_by_name_path_pattern_and_in_two_backbones():
    text_a, text_b = bert("text_a", num_layers=2), bert("text_b", num_layers=3)
    inputs_a, inputs_b = text_inputs("a_"), text_inputs("b_")
    joined = layers.Concatenate()([text_a(inputs_a)["pooled_output"], text_b(inputs_b)["pooled_output"]])
    model = keras.Model([inputs_a, inputs_b], layers.Dense(2, name="head")(joined))
    assert backbone_blocks(model) == [
        "text_a/transformer_layer_0",
        "text_a/transformer_layer_1",
        "text_b/transformer_layer_0",
        "text_b/transformer_layer_1",
        "text_b/transformer_layer_2",
    ]

    assert freeze(model, ["text_a/transformer_layer_1", "text_b/transformer_layer_0"], unit="block") == [
        "text_a/transformer_layer_1",
        "text_b/transformer_layer_0",
    ]
    assert not text_a.get_layer("transformer_layer_1").trainable and text_a.get_layer("transformer_layer_0").trainable
    assert freeze(model, pattern=r"text_b/.*_[12]$", unit="block") == [
        "text_b/transformer_layer_1",
        "text_b/transformer_layer_2",
    ]
    assert freeze(model, unit="block", up_to="text_a/transformer_layer_0")[0] == "text_a/token_embedding"
    with pytest.raises(ValueError, match=r"ambiguous.*text_a/transformer_layer_0.*full path"):
        freeze(model, ["transformer_layer_0"], unit="block")

    freeze(model, unit="block")
    # top counts the blocks of each backbone
    assert unfreeze(model, top=1, unit="block") == ["text_a/transformer_layer_1", "text_b/transformer_layer_2"]
    with pytest.raises(ValueError, match=r"top=3 but backbone 'text_a' has only 2 blocks"):
        unfreeze(model, top=3, unit="block")
    assert unfreeze(model, "text_b/transformer_layer_0", unit="block") == ["text_b/transformer_layer_0"]


def test_resnet_stages_keep_batchnorm_frozen():
    backbone = resnet()
    stage = [layer for layer in backbone.layers if layer.name.startswith("stack1_")]
    convs = [w for layer in stage if not isinstance(layer, layers.BatchNormalization) for w in layer.weights]
    batchnorm_scales = [w for layer in stage if isinstance(layer, layers.BatchNormalization) for w in layer.weights]
    batchnorm_scales = [w for w in batchnorm_scales if w.name in ("gamma", "beta")]

    freeze(backbone, unit="block")
    assert trainable(backbone) == 0
    assert unfreeze(backbone, top=1, unit="block") == ["stack1"]
    assert trainable(backbone) == params(convs)  # its BatchNorm layers stay in inference mode
    assert unfreeze(backbone, "stack1", unit="block", keep_batchnorm_frozen=False) == ["stack1"]
    assert trainable(backbone) == params(convs + batchnorm_scales)


def test_block_unit_errors():
    with pytest.raises(ValueError, match=r"no keras-hub Backbone.*transformer_layer_<i>.*unit='layer'"):
        freeze(dense_model(), unit="block")
    model = text_classifier()
    with pytest.raises(ValueError, match="top=4 but backbone 'text_backbone' has only 3 blocks"):
        unfreeze(model, top=4, unit="block")
    with pytest.raises(ValueError, match=r"'transformer_layer_9' is not a backbone block.*close names"):
        freeze(model, ["transformer_layer_9"], unit="block")
    with pytest.raises(ValueError, match=r"'pooled_dense' is not a backbone block.*unit='layer'"):
        unfreeze(model, "pooled_dense", unit="block")
    with pytest.raises(TypeError, match="name blocks by path or name"):
        freeze(model, model.get_layer("head"), unit="block")
    with pytest.raises(ValueError, match="unit must be one of 'layer', 'block'"):
        freeze(model, unit="blocks")
    with pytest.raises(ValueError, match="at most one"):
        freeze(model, ["transformer_layer_0"], pattern="0", unit="block")
    with pytest.raises(ValueError, match="at most one"):
        unfreeze(model, top=1, pattern="0", unit="block")


# ------------------------------------------------------------------ fine_tune by block, backbone learning rate


class TrainableAtStart(keras.callbacks.Callback):
    """Records the trainable parameter count at the start of each fit (each stage)."""

    def __init__(self):
        super().__init__()
        self.counts = []

    def on_train_begin(self, logs=None):
        self.counts.append(trainable(self.model))


def test_fine_tune_unfreezes_the_top_blocks_in_stage_two():
    keras.utils.set_random_seed(0)
    model = text_classifier()
    backbone = model.get_layer("text_backbone")
    x, y = text_data()
    frozen = [backbone.get_layer(name) for name in ("token_embedding", "transformer_layer_0", "transformer_layer_1")]
    frozen_before = [snapshot(layer) for layer in frozen]
    top_before = snapshot(backbone.get_layer("transformer_layer_2"))
    counts = TrainableAtStart()

    head_history, fine_tune_history = fine_tune(
        model,
        (x, y),
        unfreeze_top=1,
        unfreeze_unit="block",
        head_epochs=1,
        fine_tune_epochs=1,
        batch_size=8,
        callbacks=[counts],
    )

    head = params(model.get_layer("head").weights)
    top = params(backbone.get_layer("transformer_layer_2").weights + backbone.get_layer("pooled_dense").weights)
    assert counts.counts == [head, head + top]  # stage 2: the last block and the pooler above it
    assert head_history.epoch == [0] and fine_tune_history.epoch == [1]
    assert all(
        np.array_equal(b, a) for layer, before in zip(frozen, frozen_before) for b, a in zip(before, snapshot(layer))
    )
    assert max_change(top_before, backbone.get_layer("transformer_layer_2")) > 0


def test_backbone_learning_rate_scales_the_backbone_step():
    keras.utils.set_random_seed(1)
    model = vit_classifier(num_layers=2)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 32, 32, 3)).astype("float32"), rng.integers(0, 3, size=8)
    block = model.get_layer("image_backbone").get_layer("vit_encoder").encoder_layers[-1]
    head = model.get_layer("head")
    block_before, head_before = snapshot(block), snapshot(head)

    fine_tune(
        model,
        (x, y),
        unfreeze_top=1,
        unfreeze_unit="block",
        head_epochs=0,  # so that stage 2 makes the only step
        fine_tune_epochs=1,
        fine_tune_learning_rate=1e-2,
        backbone_learning_rate=1e-5,
        batch_size=8,
    )

    # Adam's first step moves each weight by about its learning rate (|gradient| >> epsilon),
    # up to float32 rounding of weights near 1
    assert 0.9e-2 < max_change(head_before, head) <= 1.01e-2
    assert 0.5e-5 < max_change(block_before, block) <= 1.05e-5
    config = model.optimizer.get_config()
    assert config["rate_scale"] == pytest.approx(1e-3)
    final_norm = model.get_layer("image_backbone").get_layer("vit_encoder").layer_norm  # above the block: trains
    assert len(config["scaled_indices"]) == len(block.weights) + len(final_norm.weights)


def test_scaled_rate_adam_steps_the_scaled_variables_at_their_rate_and_round_trips():
    scaled, other = keras.Variable(np.zeros(3, "float32")), keras.Variable(np.zeros(3, "float32"))
    optimizer = transfer._ScaledRateAdam(0.1, rate_scale=0.25, scaled_variables=[scaled])
    gradient = np.array([0.5, -2.0, 1e-3], "float32")
    optimizer.apply([gradient, gradient], [scaled, other])
    np.testing.assert_allclose(scaled.numpy(), 0.25 * other.numpy(), rtol=1e-6)
    assert np.all(other.numpy() != 0)
    assert optimizer.get_config()["scaled_indices"] == [0]

    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, transfer._ScaledRateAdam)
    assert restored.rate_scale == 0.25 and restored.scaled_indices == [0] and restored.built_on == 2
    with pytest.warns(UserWarning, match="saved for 2 trainable variables and is built on 3"):
        restored.build([keras.Variable(np.zeros(3, "float32")) for _ in range(3)])
    assert restored.scaled_indices == []


def test_fine_tune_block_and_rate_errors():
    data = (np.zeros((4, 4), "float32"), np.zeros(4, "int64"))
    with pytest.raises(ValueError, match="no keras-hub Backbone"):
        fine_tune(dense_model(), data, unfreeze_unit="block")
    with pytest.raises(ValueError, match="backbone_learning_rate needs a keras-hub backbone"):
        fine_tune(dense_model(), data, backbone_learning_rate=1e-5)
    with pytest.raises(ValueError, match="unfreeze_unit must be one of"):
        fine_tune(dense_model(), data, unfreeze_unit="blocks")
    model = text_classifier()
    x, y = text_data(n=4)
    with pytest.raises(ValueError, match="unfreeze_top=4 but backbone 'text_backbone' has only 3 blocks"):
        fine_tune(model, (x, y), unfreeze_top=4, unfreeze_unit="block")
    with pytest.raises(ValueError, match="backbone_learning_rate must be"):
        fine_tune(model, (x, y), backbone_learning_rate=0.0)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9)
    with pytest.raises(TypeError, match="fine_tune_learning_rate, which must then be a number"):
        fine_tune(model, (x, y), fine_tune_learning_rate=schedule, backbone_learning_rate=1e-5)


def test_module_exports_backbone_blocks():
    assert "backbone_blocks" in transfer.__all__
