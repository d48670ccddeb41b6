"""Tests for xmodal_tf.encoders and the custom layers in xmodal_tf.layers.

Tiny models only; nothing is downloaded (backbones use weights=None or a local file).
"""

import keras
import numpy as np
import pytest

from xmodal_tf import encoders, layers
from xmodal_tf.encoders import attention_encoder, backbone_encoder, cnn_encoder, mlp_encoder, rnn_encoder

BATCH = 3

# Keras 3.15's own model.save converts variables with np.array(variable), which NumPy 2 flags.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture
def rng():
    keras.utils.set_random_seed(0)
    return np.random.default_rng(0)


def assert_round_trip(model, inputs, tmp_path):
    """Saving to .keras and loading back gives the same outputs and name."""
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.name == model.name
    # Eager calls in inference mode: predict() would trace a tf.function per model, which is slow.
    np.testing.assert_allclose(
        restored(inputs, training=False).numpy(), model(inputs, training=False).numpy(), atol=1e-6
    )


def tokens(rng, length, vocab_size=20):
    return rng.integers(1, vocab_size, size=(BATCH, length)).astype("int32")


def frames(rng, length, input_dim=5):
    return rng.normal(size=(BATCH, length, input_dim)).astype("float32")


def pad_time(sequences, extra):
    """Append `extra` padding steps (id 0 / all-zero frames) at the end of the time axis."""
    padding = np.zeros((sequences.shape[0], extra) + sequences.shape[2:], sequences.dtype)
    return np.concatenate([sequences, padding], axis=1)


# ----------------------------------------------------------------------------- cnn_encoder


@pytest.mark.parametrize(
    "input_shape, kwargs",
    [
        ((8, 4, 1), {}),
        ((28, 14, 1), {"pooling": "avg", "global_pooling": "max"}),
        ((8, 4, 1), {"filters": (4, 4, 4, 4), "global_pooling": "flatten", "batch_norm": False}),
        ((1, 1, 2), {"pooling": "max"}),
        ((16, 16, 3), {"pooling": None, "dropout": 0.2, "kernel_size": (3, 1)}),
    ],
)
def test_cnn_encoder_output_shape_and_name(rng, input_shape, kwargs):
    model = cnn_encoder(input_shape, embedding_dim=7, name="view1", **{"filters": (4, 8), **kwargs})
    images = rng.random((BATCH,) + input_shape).astype("float32")
    assert model.name == "view1"
    assert model(images).shape == (BATCH, 7)


def test_cnn_encoder_never_pools_a_side_below_one():
    model = cnn_encoder((8, 4, 1), filters=(2, 2, 2, 2, 2))
    pooled_shapes = [
        layer.output.shape[1:3] for layer in model.layers if "_pool" in layer.name and "global" not in layer.name
    ]
    assert pooled_shapes == [(4, 2), (2, 1), (1, 1)]  # blocks 3 and 4 have nothing left to pool


def test_cnn_encoder_layer_names_are_stable():
    names = [layer.name for layer in cnn_encoder((8, 4, 1), 5, filters=(4, 8), batch_norm=True, name="left").layers]
    assert names == [
        "left_images",
        "left_conv0",
        "left_bn0",
        "left_act0",
        "left_pool0",
        "left_conv1",
        "left_bn1",
        "left_act1",
        "left_pool1",
        "left_global_pool",
        "left_dropout",
        "left_embedding",
    ]
    names = [layer.name for layer in cnn_encoder((8, 4, 1), 5, filters=(4, 8), dropout=0.0, name="left").layers]
    assert names == [
        "left_images",
        "left_conv0",
        "left_act0",
        "left_pool0",
        "left_conv1",
        "left_act1",
        "left_pool1",
        "left_global_pool",
        "left_embedding",
    ]


def test_cnn_encoder_default_dropout_acts_in_training_only():
    model = cnn_encoder((8, 4, 1), 5, filters=(4,))
    assert model.get_layer("cnn_encoder_dropout").rate == 0.25
    images = np.random.default_rng(0).random((16, 8, 4, 1)).astype("float32")
    np.testing.assert_array_equal(model(images, training=False), model(images, training=False))
    assert not np.allclose(model(images, training=True), model(images, training=False))


def test_cnn_encoder_parameter_counts():
    model = cnn_encoder((8, 4, 1), 5, filters=(4, 8), global_pooling="avg", batch_norm=True)
    # conv kernels (no bias with BatchNorm) + BN gamma/beta + Dense.
    trainable = 3 * 3 * 1 * 4 + 2 * 4 + 3 * 3 * 4 * 8 + 2 * 8 + 8 * 5 + 5
    assert model.count_params() == trainable + 2 * 4 + 2 * 8  # + BN moving mean/variance
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    model.trainable = False
    assert model.trainable_weights == []


def test_cnn_encoder_default_flattens_fixed_size_images():
    # Issue 16: global average pooling lost digits' positions (28% against 82% on noisy MNIST),
    # so the default ("auto") flattens whenever the size is fixed; BatchNorm is off by default.
    model = cnn_encoder((8, 4, 1), 5, filters=(4, 8))
    assert isinstance(model.get_layer("cnn_encoder_global_pool"), keras.layers.Flatten)
    assert batch_norm_layers(model) == []
    assert model.get_layer("cnn_encoder_conv0").use_bias
    # 8x4 -> 4x2 -> 2x1 after two pooled blocks: 2 * 1 * 8 features into the embedding.
    assert model.get_layer("cnn_encoder_embedding").kernel.shape == (16, 5)
    assert cnn_encoder((8, 4, 1), 5, filters=(4, 8), global_pooling="auto").count_params() == model.count_params()


@pytest.mark.parametrize(
    "global_pooling, layer",
    [
        ("avg", keras.layers.GlobalAveragePooling2D),
        ("max", keras.layers.GlobalMaxPooling2D),
        ("flatten", keras.layers.Flatten),
    ],
)
def test_cnn_encoder_global_pooling_still_chosen_by_name(global_pooling, layer):
    model = cnn_encoder((8, 4, 1), 5, filters=(4,), global_pooling=global_pooling)
    assert isinstance(model.get_layer("cnn_encoder_global_pool"), layer)


def test_cnn_encoder_default_averages_variable_size_images():
    model = cnn_encoder((None, None, 1), 6, filters=(4,))
    assert isinstance(model.get_layer("cnn_encoder_global_pool"), keras.layers.GlobalAveragePooling2D)


@pytest.mark.parametrize("side, layer", [(128, keras.layers.Flatten), (130, keras.layers.GlobalAveragePooling2D)])
def test_cnn_encoder_default_averages_above_the_flatten_size_guard(side, layer):
    # Default filters (32, 64), two pooled blocks: 128x128 -> 32 * 32 * 64 = 65536 features, the limit.
    model = cnn_encoder((side, side, 1), 4)
    assert isinstance(model.get_layer("cnn_encoder_global_pool"), layer)
    assert encoders.AUTO_FLATTEN_MAX_FEATURES == 65536


def test_cnn_encoder_variable_image_size(rng):
    model = cnn_encoder((None, None, 1), 6, filters=(4,))
    for height, width in ((8, 4), (28, 14)):
        assert model(rng.random((2, height, width, 1)).astype("float32")).shape == (2, 6)


def test_cnn_encoder_round_trip(rng, tmp_path):
    model = cnn_encoder((28, 14, 1), 6, filters=(4, 8), dropout=0.1)
    assert_round_trip(model, rng.random((BATCH, 28, 14, 1)).astype("float32"), tmp_path)


# ----------------------------------------------------------------------------- decoder and generator defaults


def test_image_decoder_default_output_is_linear(rng):
    # Issue 16: a sigmoid default could not reconstruct standardised or noisy images.
    from xmodal_tf.decoders import image_decoder

    decoder = image_decoder(6, (8, 4, 1), filters=(4,))
    assert decoder.get_layer("image_decoder_output").activation is keras.activations.linear
    dense = decoder.get_layer("image_decoder_dense")
    dense.kernel.assign(10.0 * rng.normal(size=dense.kernel.shape).astype("float32"))
    outputs = keras.ops.convert_to_numpy(decoder(rng.normal(size=(BATCH, 6)).astype("float32")))
    assert outputs.min() < 0.0 or outputs.max() > 1.0  # not squashed into [0, 1]
    sigmoid = image_decoder(6, (8, 4, 1), filters=(4,), output_activation="sigmoid")
    assert sigmoid.get_layer("image_decoder_output").activation is keras.activations.sigmoid


def test_dense_decoder_default_output_is_linear():
    from xmodal_tf.decoders import dense_decoder

    decoder = dense_decoder(6, (5, 2))
    assert decoder.get_layer("dense_decoder_output").activation is keras.activations.linear


@pytest.mark.parametrize("builder", ["build_generator", "build_dense_generator"])
def test_generators_default_to_unit_range_and_take_an_output_activation(rng, builder):
    from xmodal_tf.models import cgan

    build = getattr(cgan, builder)
    last = "generator_image" if builder == "build_generator" else "dense_generator_pixels"
    default = build((8, 8, 1), 4, num_classes=3, **({"hidden_units": (8,)} if "dense" in builder else {}))
    assert default.get_layer(last).activation is keras.activations.sigmoid
    linear = build(
        (8, 8, 1), 4, num_classes=3, output_activation=None, **({"hidden_units": (8,)} if "dense" in builder else {})
    )
    assert linear.get_layer(last).activation is keras.activations.linear
    images = default([rng.normal(size=(BATCH, 4)).astype("float32"), np.array([0, 1, 2])])
    assert images.shape == (BATCH, 8, 8, 1)
    assert float(keras.ops.min(images)) >= 0.0 and float(keras.ops.max(images)) <= 1.0


# ----------------------------------------------------------------------------- rnn_encoder


def small_rnn(source, **kwargs):
    inputs = {"vocab_size": 20} if source == "tokens" else {"input_dim": 5}
    return rnn_encoder(**inputs, embedding_dim=4, token_embedding_dim=8, units=(8, 6), **kwargs)


def sequences(rng, source, length):
    return tokens(rng, length) if source == "tokens" else frames(rng, length)


@pytest.mark.parametrize("source", ["tokens", "frames"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_encoder_padding_does_not_change_embedding(rng, source, cell, bidirectional):
    model = small_rnn(source, cell=cell, bidirectional=bidirectional)
    batch = sequences(rng, source, length=5)
    embedding = model(batch).numpy()
    assert embedding.shape == (BATCH, 4)
    np.testing.assert_allclose(model(pad_time(batch, 4)).numpy(), embedding, atol=1e-5)
    changed = batch.copy()
    changed[:, 0] = changed[:, 1]  # a real step changes the embedding: not everything is masked
    assert not np.allclose(model(changed).numpy(), embedding, atol=1e-5)


def test_rnn_encoder_fixed_length_and_names():
    model = rnn_encoder(vocab_size=20, max_length=7, units=6, cell="gru", name="text")
    assert model.name == "text"
    assert model.input_shape == (None, 7)
    assert model.output_shape == (None, 64)
    assert [layer.name for layer in model.layers] == [
        "text_tokens",
        "text_token_embedding",
        "text_gru0",
        "text_embedding",
    ]


def test_rnn_encoder_parameter_count():
    model = rnn_encoder(vocab_size=20, token_embedding_dim=8, units=(6,), embedding_dim=4)
    lstm = 4 * (6 * (8 + 6) + 6)
    assert model.count_params() == 20 * 8 + lstm + 6 * 4 + 4
    model.trainable = False
    assert model.trainable_weights == []


@pytest.mark.parametrize("source, bidirectional", [("tokens", True), ("frames", False)])
def test_rnn_encoder_round_trip(rng, tmp_path, source, bidirectional):
    model = small_rnn(source, bidirectional=bidirectional, dropout=0.1)
    assert_round_trip(model, pad_time(sequences(rng, source, length=5), 2), tmp_path)


# ----------------------------------------------------------------------------- attention_encoder


def small_attention(source, **kwargs):
    inputs = {"vocab_size": 20} if source == "tokens" else {"input_dim": 5}
    return attention_encoder(**inputs, max_length=12, embedding_dim=4, model_dim=8, num_heads=2, ff_dim=16, **kwargs)


@pytest.mark.parametrize("source", ["tokens", "frames"])
def test_attention_encoder_padding_does_not_change_embedding(rng, source):
    model = small_attention(source)
    batch = sequences(rng, source, length=5)
    embedding = model(batch).numpy()
    assert embedding.shape == (BATCH, 4)
    np.testing.assert_allclose(model(pad_time(batch, 7)).numpy(), embedding, atol=1e-5)
    changed = batch.copy()
    changed[:, 2] = changed[:, 3]
    assert not np.allclose(model(changed).numpy(), embedding, atol=1e-5)


def test_attention_encoder_names_and_trainable_weights():
    model = small_attention("frames", num_layers=3, name="audio")
    assert model.name == "audio"
    assert model.output_shape == (None, 4)
    names = [layer.name for layer in model.layers]
    assert names == [
        "audio_frames",
        "audio_masking",
        "audio_frame_projection",
        "audio_position_embedding",
        "audio_block0",
        "audio_block1",
        "audio_block2",
        "audio_pooling",
        "audio_embedding",
    ]
    position = model.get_layer("audio_position_embedding")
    assert position.position_embeddings.shape == (12, 8)
    model.trainable = False
    assert model.trainable_weights == []


@pytest.mark.parametrize("source", ["tokens", "frames"])
def test_attention_encoder_round_trip(rng, tmp_path, source):
    model = small_attention(source, dropout=0.1)
    assert_round_trip(model, pad_time(sequences(rng, source, length=6), 3), tmp_path)


def test_attention_encoder_rejects_sequences_longer_than_max_length(rng):
    model = small_attention("tokens", num_layers=1)
    with pytest.raises(ValueError, match="exceeds max_length=12"):
        model(tokens(rng, length=13))


# ----------------------------------------------------------------------------- mlp_encoder


def test_mlp_encoder_deepcca_parameter_count(rng):
    model = mlp_encoder(392, 50)
    assert model.name == "mlp_encoder"
    assert model.count_params() == 392 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 50 + 50
    assert model(rng.random((BATCH, 392)).astype("float32")).shape == (BATCH, 50)
    model.trainable = False
    assert model.trainable_weights == []


def test_mlp_encoder_accepts_one_tuple_and_options(rng, tmp_path):
    model = mlp_encoder(
        (10,), 3, hidden_units=(8, 8), batch_norm=True, dropout=0.1, output_activation="tanh", name="vector_net"
    )
    assert model.input_shape == (None, 10)
    assert [layer.name for layer in model.layers][1:4] == ["vector_net_dense0", "vector_net_bn0", "vector_net_act0"]
    outputs = model(rng.random((BATCH, 10)).astype("float32")).numpy()
    assert outputs.shape == (BATCH, 3) and np.all(np.abs(outputs) < 1)
    assert_round_trip(model, rng.random((BATCH, 10)).astype("float32"), tmp_path)


def test_mlp_encoder_without_hidden_layers_is_linear():
    model = mlp_encoder(10, 3, hidden_units=())
    assert model.count_params() == 10 * 3 + 3


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: cnn_encoder((8, 4, 1), 0), ValueError, "embedding_dim must be an int >= 1; got 0"),
        (lambda: mlp_encoder(10, -5), ValueError, "embedding_dim"),
        (
            lambda: rnn_encoder(vocab_size=20, embedding_dim=2.5),
            TypeError,
            r"embedding_dim must be an int >= 1; got 2.5 \(float\)",
        ),
        (lambda: cnn_encoder((28, 14), 8), ValueError, r"rank 3.*\(28, 14, 1\)"),
        (lambda: cnn_encoder((28, 14, 1, 1), 8), ValueError, "rank 3"),
        (lambda: cnn_encoder((8, 4, 1), filters=()), ValueError, "filters must not be empty"),
        (lambda: cnn_encoder((8, 4, 1), filters=(32, 0)), ValueError, "filters"),
        (lambda: cnn_encoder((8, 4, 1), filters="32"), TypeError, "filters must be a sequence"),
        (lambda: cnn_encoder((8, 4, 1), pooling="min"), ValueError, "Unknown pooling 'min'.*'max', 'avg'"),
        (lambda: cnn_encoder((8, 4, 1), global_pooling="sum"), ValueError, "Unknown global_pooling"),
        (lambda: cnn_encoder((None, None, 1), global_pooling="flatten"), ValueError, "fixed height and width"),
        (lambda: cnn_encoder((8, 4, 1), dropout=1.5), ValueError, r"dropout must be a rate in \[0, 1\)"),
        (lambda: mlp_encoder((28, 14)), ValueError, "positive int or a 1-tuple"),
        (lambda: mlp_encoder(0), ValueError, "input_dim"),
        (lambda: mlp_encoder("392"), TypeError, "input_dim must be an int >= 1"),
        (lambda: rnn_encoder(), ValueError, "exactly one of vocab_size .* or input_dim"),
        (lambda: rnn_encoder(vocab_size=20, input_dim=5), ValueError, "exactly one of vocab_size"),
        (
            lambda: rnn_encoder(vocab_size=20, cell="transformer"),
            ValueError,
            "Unknown cell 'transformer'.*'lstm', 'gru'",
        ),
        (lambda: rnn_encoder(input_dim=5, units=()), ValueError, "units must not be empty"),
        (lambda: attention_encoder(vocab_size=20), ValueError, "needs max_length"),
        (lambda: attention_encoder(max_length=8), ValueError, "exactly one of vocab_size"),
        (
            lambda: attention_encoder(vocab_size=20, max_length=8, model_dim=10, num_heads=4),
            ValueError,
            "divisible by num_heads",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()


# ----------------------------------------------------------------------------- custom layers


def test_masked_mean_pooling_ignores_padding_and_survives_all_padding():
    values = np.arange(12, dtype="float32").reshape(2, 3, 2)
    mask = np.array([[True, True, False], [False, False, False]])
    pooled = layers.MaskedMeanPooling()(values, mask=mask).numpy()
    np.testing.assert_allclose(pooled, [[1.0, 2.0], [0.0, 0.0]])


@pytest.mark.parametrize(
    "mode, reference",
    [
        ("caffe", keras.applications.resnet50.preprocess_input),
        ("tf", keras.applications.mobilenet_v2.preprocess_input),
        ("torch", keras.applications.densenet.preprocess_input),
    ],
)
def test_imagenet_preprocessing_matches_keras_applications(rng, mode, reference):
    images = rng.uniform(0, 255, size=(2, 4, 4, 3)).astype("float32")
    expected = reference(images.copy())
    np.testing.assert_allclose(layers.ImageNetPreprocessing(mode)(images).numpy(), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "layer",
    [
        layers.PositionalEmbedding(12, name="position"),
        layers.TransformerEncoderBlock(8, 2, 16, dropout=0.1, activation="gelu", name="block"),
        layers.MaskedMeanPooling(name="pool"),
        layers.ImageNetPreprocessing("torch", name="scale"),
    ],
)
def test_custom_layers_config_round_trip(layer):
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()


# ----------------------------------------------------------------------------- backbone_encoder


def test_backbone_encoder_builds_offline_with_projection(rng):
    model = backbone_encoder("mobilenet_v3_small", input_shape=(32, 32, 3), embedding_dim=8)
    images = rng.uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    assert model.name == "mobilenet_v3_small_encoder"
    assert model(images).shape == (2, 8)
    # trainable=False: only the projection (kernel, bias) trains.
    assert [w.path for w in model.trainable_weights] == [
        "mobilenet_v3_small_encoder_embedding/kernel",
        "mobilenet_v3_small_encoder_embedding/bias",
    ]
    layer_names = [layer.name for layer in model.layers]
    assert "mobilenet_v3_small_encoder_backbone" in layer_names
    assert "mobilenet_v3_small_encoder_preprocessing" not in layer_names  # v3 rescales inside the application


def test_backbone_encoder_local_weights_file_and_round_trip(rng, tmp_path):
    # mobilenet_v2 also exercises our ImageNetPreprocessing layer inside a saved backbone model.
    source = backbone_encoder("mobilenet_v2", input_shape=(32, 32, 3), trainable=True, name="photos")
    assert len(source.trainable_weights) > 0
    assert source.get_layer("photos_preprocessing").mode == "tf"
    weights_path = tmp_path / "backbone.weights.h5"
    source.get_layer("photos_backbone").save_weights(weights_path)

    loaded = backbone_encoder("mobilenet_v2", input_shape=(32, 32, 3), weights=str(weights_path), name="photos")
    images = rng.uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    features = source(images, training=False).numpy()
    assert features.shape == (2, 1280)
    np.testing.assert_allclose(loaded(images, training=False).numpy(), features, atol=1e-5)
    assert_round_trip(loaded, images, tmp_path)


def test_backbone_encoder_unknown_architecture_lists_choices():
    with pytest.raises(
        ValueError,
        match="Unknown backbone architecture 'vgg99'.*resnet50.*mobilenet_v2.*mobilenet_v3_small.*efficientnet_b0",
    ):
        backbone_encoder("vgg99")


def test_backbone_encoder_imagenet_offline_fails_fast(monkeypatch):
    probed_hosts = []

    def unreachable(host, *args, **kwargs):
        probed_hosts.append(host)
        return False

    monkeypatch.setattr(encoders, "network_reachable", unreachable)
    with pytest.raises(RuntimeError, match="needs internet.*local path"):
        backbone_encoder(weights="imagenet", input_shape=(32, 32, 3))
    assert probed_hosts == ["storage.googleapis.com"]


def test_backbone_encoder_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        backbone_encoder(weights=str(tmp_path / "missing.weights.h5"), input_shape=(32, 32, 3))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (32, 32)}, "rank 3"),
        ({"pooling": None}, "Unknown pooling None"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"weights": "weights.keras"}, r"\.h5 / \.weights\.h5"),
    ],
)
def test_backbone_encoder_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        backbone_encoder(**kwargs)


# ----------------------------------------------------------------------------- tf.distribute readiness
# The 2-replica behaviour itself (masks, synchronised statistics) is in test_replica_randomness.py.


def batch_norm_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize(
    "build",
    [
        lambda **kw: cnn_encoder((8, 4, 1), 4, filters=(4, 4), batch_norm=True, name="net", **kw),
        lambda **kw: mlp_encoder(6, 3, hidden_units=(8, 8), batch_norm=True, name="net", **kw),
    ],
)
def test_sync_batch_norm_creates_synchronized_layers_with_unchanged_names(build):
    default, synced = build(), build(sync_batch_norm=True)
    assert [layer.name for layer in batch_norm_layers(synced)] == ["net_bn0", "net_bn1"]
    assert [layer.name for layer in synced.layers] == [layer.name for layer in default.layers]
    assert all(layer.synchronized for layer in batch_norm_layers(synced))
    assert not any(layer.synchronized for layer in batch_norm_layers(default))


@pytest.mark.parametrize(
    "build, names",
    [
        (lambda: cnn_encoder((8, 4, 1), 4, filters=(4,), dropout=0.2, name="net"), ["net_dropout"]),
        (lambda: mlp_encoder(6, 3, hidden_units=(8, 8), dropout=0.2, name="net"), ["net_dropout0", "net_dropout1"]),
        (
            lambda: attention_encoder(
                vocab_size=20, max_length=8, model_dim=8, num_heads=2, num_layers=1, ff_dim=8, dropout=0.2, name="net"
            ),
            ["net_dropout"],
        ),
        (
            lambda: encoders.text_encoder(
                vocabulary=["a", "b"], tokens="words", hidden_units=(4,), dropout=0.2, name="net"
            ),
            ["net_dropout0"],
        ),
    ],
)
def test_builders_use_replica_dropout(build, names):
    model = build()
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [layer.name for layer in dropouts] == names
    assert all(type(layer) is layers.ReplicaDropout and layer.rate == 0.2 for layer in dropouts)


@pytest.mark.parametrize(
    "build",
    [
        lambda: cnn_encoder((8, 4, 1), 4, sync_batch_norm="yes"),
        lambda: mlp_encoder(6, 3, batch_norm=True, sync_batch_norm=1),
        lambda: mlp_encoder(6, 3, sync_batch_norm=None),
    ],
)
def test_sync_batch_norm_must_be_a_bool(build):
    with pytest.raises(TypeError, match="sync_batch_norm must be True or False"):
        build()


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: mlp_encoder(6, 3, hidden_units=(8,), batch_norm=True, sync_batch_norm=True, dropout=0.3), (BATCH, 6)),
        (
            lambda: cnn_encoder((8, 4, 1), 4, filters=(4,), batch_norm=True, sync_batch_norm=True, dropout=0.3),
            (BATCH, 8, 4, 1),
        ),
    ],
)
def test_replica_dropout_and_sync_batch_norm_round_trip(rng, tmp_path, build, shape):
    model = build()
    inputs = rng.random(shape).astype("float32")
    model(inputs, training=True)  # moves the BatchNorm statistics away from their initial values
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert any(isinstance(layer, layers.ReplicaDropout) for layer in restored.layers)
    assert all(layer.synchronized for layer in batch_norm_layers(restored))
    np.testing.assert_array_equal(restored(inputs, training=False).numpy(), model(inputs, training=False).numpy())
