"""Tests for xmodal_tf.pretrained (keras-hub backbones as encoders) and backbone_encoder's presets.

Every preset is a tiny random-initialised model written to a temporary directory by
``pretrained_presets``; nothing is downloaded, and the hub's reachability probe is
replaced wherever a handle is given.
"""

import shutil
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_keras_round_trip, assert_same_weights
from pretrained_presets import IMAGE_SIZE, VIT_OFFSET, VIT_SCALE, save_tiny_bert, save_tiny_resnet, save_tiny_vit

from xmodal_tf import pretrained
from xmodal_tf.encoders import backbone_encoder, cnn_encoder
from xmodal_tf.models import DualEncoder, build_fusion_classifier
from xmodal_tf.pretrained import HubUnreachableError, backbone_of, pretrained_encoder

pytest.importorskip("keras_hub")

# Keras 3.15's own model.save converts variables with np.array(variable), which NumPy 2 flags.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

TEXTS = np.array(["a dog", "the red cat runs on the tree", "zebra crossing", "a big happy bird"])


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """{"bert", "vit", "resnet", "vit_plain"}: preset directories (vit_plain has no image converter)."""
    root = tmp_path_factory.mktemp("presets")
    return {
        "bert": save_tiny_bert(root / "bert"),
        "vit": save_tiny_vit(root / "vit"),
        "resnet": save_tiny_resnet(root / "resnet"),
        "vit_plain": save_tiny_vit(root / "vit_plain", with_converter=False),
    }


@pytest.fixture
def images():
    keras.utils.set_random_seed(0)
    return np.random.default_rng(0).uniform(0, 255, size=(4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")


# ----------------------------------------------------------------------------- text


def test_text_encoder_takes_raw_strings(presets):
    encoder = pretrained_encoder(presets["bert"], embedding_dim=8, name="captions")
    assert [layer.name for layer in encoder.layers] == [
        "captions_text",
        "captions_preprocessor",
        "captions_backbone",
        "captions_pooling",
        "captions_embedding",
    ]
    assert encoder.input.dtype == "string"
    embeddings = keras.ops.convert_to_numpy(encoder(TEXTS))
    assert embeddings.shape == (4, 8)
    assert np.isfinite(embeddings).all()
    assert pretrained_encoder(presets["bert"]).output_shape == (None, 16)  # the hidden size
    assert pretrained_encoder(presets["bert"]).name == "bert_encoder"


def test_text_encoder_round_trip_keeps_the_vocabulary(tmp_path):
    preset = save_tiny_bert(tmp_path / "bert")
    encoder = pretrained_encoder(preset, embedding_dim=8, pooling="mean", sequence_length=10)
    shutil.rmtree(preset)  # the .keras file holds the vocabulary itself
    loaded = assert_keras_round_trip(encoder, tmp_path, inputs=TEXTS)
    preprocessor = loaded.get_layer("bert_encoder_preprocessor").preprocessor
    assert (
        preprocessor.tokenizer.vocabulary
        == encoder.get_layer("bert_encoder_preprocessor").preprocessor.tokenizer.vocabulary
    )
    assert preprocessor.sequence_length == 10


def test_mean_pooling_ignores_padding_and_differs_from_cls(presets):
    short = pretrained_encoder(presets["bert"], pooling="mean", sequence_length=8)
    long = pretrained_encoder(presets["bert"], pooling="mean", sequence_length=12)
    cls = pretrained_encoder(presets["bert"], pooling="cls", sequence_length=8)
    text = np.array(["a dog"])  # 4 tokens with [CLS] and [SEP]: only the padding differs
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(long(text)), keras.ops.convert_to_numpy(short(text)), atol=1e-6
    )
    assert not np.allclose(keras.ops.convert_to_numpy(cls(text)), keras.ops.convert_to_numpy(short(text)), atol=1e-3)


def test_trainable_flag_freezes_only_the_backbone(presets):
    frozen = pretrained_encoder(presets["bert"], embedding_dim=8, name="frozen")
    assert [w.path for w in frozen.trainable_weights] == ["frozen_embedding/kernel", "frozen_embedding/bias"]
    assert backbone_of(frozen) is frozen.get_layer("frozen_backbone")
    assert not backbone_of(frozen).trainable

    tuned = pretrained_encoder(presets["bert"], embedding_dim=8, trainable=True, name="tuned")
    backbone_weights = len(backbone_of(tuned).trainable_weights)
    assert backbone_weights > 0
    assert len(tuned.trainable_weights) == backbone_weights + 2
    assert backbone_of(cnn_encoder((8, 8, 1))) is None


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("preset", ["bert", "vit"])
def test_partly_unfrozen_backbone_reloads_with_the_same_trainable_weights(presets, preset, tmp_path):
    from xmodal_tf.transfer import unfreeze

    modality = "text" if preset == "bert" else "image"
    encoder = pretrained_encoder(presets[preset], modality=modality, embedding_dim=4, name="enc")
    frozen = [w.path for w in encoder.trainable_weights]
    unfreeze(encoder, top=1, unit="block")
    opened = [w.path for w in encoder.trainable_weights]
    assert set(frozen) < set(opened)  # the last block joined the projection, the rest stayed frozen
    assert len(opened) < len(encoder.weights)
    encoder.save(tmp_path / "enc.keras")
    reloaded = keras.models.load_model(tmp_path / "enc.keras")
    assert [w.path for w in reloaded.trainable_weights] == opened


def test_vit_encoder_scales_with_its_converter_and_round_trips(presets, images, tmp_path):
    encoder = pretrained_encoder(presets["vit"], modality="image", embedding_dim=6)
    assert encoder.input_shape == (None, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert encoder.get_layer("vit_encoder_pooling").mode == "cls"  # ViT has a class token
    converter = encoder.get_layer("vit_encoder_preprocessor")
    assert converter.image_size is None  # the images already have the ViT's size
    scaled = keras.ops.convert_to_numpy(converter(images))
    np.testing.assert_allclose(scaled, images * VIT_SCALE + VIT_OFFSET, atol=1e-5)
    outputs = keras.ops.convert_to_numpy(encoder(images))
    assert outputs.shape == (4, 6) and np.isfinite(outputs).all()
    loaded = assert_keras_round_trip(encoder, tmp_path, inputs=images)
    assert len(loaded.trainable_weights) == 2  # the backbone is still frozen

    mean = pretrained_encoder(presets["vit"], modality="image", pooling="mean")
    cls = pretrained_encoder(presets["vit"], modality="image")
    assert not np.allclose(keras.ops.convert_to_numpy(mean(images)), keras.ops.convert_to_numpy(cls(images)))


def test_vit_resizes_other_image_sizes_to_its_own(presets):
    encoder = pretrained_encoder(presets["vit"], modality="image", image_size=16)
    assert encoder.input_shape == (None, 16, 16, 3)
    assert encoder.get_layer("vit_encoder_preprocessor").image_size == (IMAGE_SIZE, IMAGE_SIZE)
    assert encoder(np.zeros((2, 16, 16, 3), "float32")).shape == (2, 16)


def test_preset_without_converter_is_scaled_to_unit_range(presets, images):
    encoder = pretrained_encoder(presets["vit_plain"], modality="image", name="plain")
    rescaling = encoder.get_layer("plain_preprocessor")
    assert isinstance(rescaling, keras.layers.Rescaling)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rescaling(images)), images / 255.0, rtol=1e-6)
    with pytest.raises(ValueError, match="no image converter to resize"):
        pretrained_encoder(presets["vit_plain"], modality="image", image_size=16)


def test_resnet_feature_map_is_averaged(presets, images, tmp_path):
    encoder = pretrained_encoder(presets["resnet"], modality="image", embedding_dim=5)
    assert encoder.input_shape == (None, IMAGE_SIZE, IMAGE_SIZE, 3)  # the converter's size
    assert encoder.get_layer("resnet_encoder_pooling").mode == "mean"
    assert encoder.get_layer("resnet_encoder_preprocessor").image_size is None  # any size: no resizing
    outputs = keras.ops.convert_to_numpy(encoder(images))
    assert outputs.shape == (4, 5) and np.isfinite(outputs).all()
    assert_keras_round_trip(encoder, tmp_path, inputs=images)

    small = pretrained_encoder(presets["resnet"], modality="image", image_size=(16, 24))
    assert small(np.zeros((1, 16, 24, 3), "float32")).shape == (1, 64)
    with pytest.raises(ValueError, match="pooling 'cls' needs token outputs.*feature map"):
        pretrained_encoder(presets["resnet"], modality="image", pooling="cls")


def test_backbone_encoder_dispatches_presets(presets, images):
    encoder = backbone_encoder(f"pretrained:{presets['vit']}", input_shape=(32, 32, 3), embedding_dim=4)
    assert encoder.name == "vit_encoder" and encoder(images).shape == (4, 4)
    assert [w.path for w in encoder.trainable_weights] == ["vit_encoder_embedding/kernel", "vit_encoder_embedding/bias"]
    by_path = backbone_encoder(str(presets["resnet"]), embedding_dim=4, pooling="mean", name="photos")
    assert by_path.input_shape == (None, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert by_path.get_layer("photos_backbone") is backbone_of(by_path)
    with pytest.raises(ValueError, match="holds its own weights"):
        backbone_encoder(f"pretrained:{presets['vit']}", weights="imagenet")
    with pytest.raises(ValueError, match="'avg' \\(its default\\), 'cls' or 'mean'"):
        backbone_encoder(f"pretrained:{presets['vit']}", pooling="max")


# ----------------------------------------------------------------------------- inside the models


# BERT's pooled_output head is not used by the encoder, so it gets no gradient when fine-tuned.
@pytest.mark.filterwarnings("ignore:Gradients do not exist for variables:UserWarning")
def test_trains_inside_a_dual_encoder(presets, images):
    text = pretrained_encoder(presets["bert"], embedding_dim=8, trainable=True, name="text")
    model = DualEncoder(text, cnn_encoder((IMAGE_SIZE, IMAGE_SIZE, 3), 8, filters=(4,), name="image"), projection_dim=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [w.numpy().copy() for w in backbone_of(text).trainable_weights]
    history = model.fit(TEXTS, images, batch_size=4, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[1] != losses[0]
    after = [w.numpy() for w in backbone_of(text).trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(after, before))  # trainable=True fine-tunes


def test_trains_inside_a_fusion_classifier_with_a_frozen_backbone(presets, images):
    photos = pretrained_encoder(presets["vit"], modality="image", embedding_dim=8, name="photo_encoder")
    captions = pretrained_encoder(presets["bert"], embedding_dim=8, name="caption_encoder")
    frozen = [keras.ops.convert_to_numpy(w) for w in backbone_of(photos).weights]
    model = build_fusion_classifier({"photos": photos, "captions": captions}, num_classes=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    labels = np.array([0, 1, 0, 1])
    history = model.fit({"photos": images, "captions": tf.constant(TEXTS)}, labels, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert_same_weights(backbone_of(photos).weights, [keras.Variable(w) for w in frozen])


# ----------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    "handle, host",
    [
        ("bert_tiny_en_uncased", "www.kaggle.com"),
        ("kaggle://keras/bert/keras/bert_tiny_en_uncased/3", "www.kaggle.com"),
        ("hf://google/vit-base-patch16-224", "huggingface.co"),
    ],
)
def test_unreachable_hub_fails_fast_with_a_fix(monkeypatch, handle, host):
    probed = []

    def unreachable(probed_host, *args, **kwargs):
        probed.append(probed_host)
        return False

    monkeypatch.setattr(pretrained, "_network_reachable", unreachable)
    start = time.monotonic()
    with pytest.raises(HubUnreachableError, match=r"(?s)unreachable.*save_to_preset") as error:
        pretrained_encoder(handle, modality="text" if "bert" in handle else "image")
    assert time.monotonic() - start < 10
    assert probed == [host]
    assert isinstance(error.value, ConnectionError)
    assert "keras_hub.models.Backbone.from_preset" in str(error.value)


def test_missing_or_wrong_directories_fail_clearly(presets, tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_preset.*does not exist"):
        pretrained_encoder(str(tmp_path / "no_such_preset"))
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        pretrained_encoder(tmp_path)
    with pytest.raises(ValueError, match="neither a local preset directory nor a keras-hub preset name"):
        pretrained_encoder("surely_not_a_preset_name")
    with pytest.raises(ValueError, match="Unknown hub scheme 's3://'"):
        pretrained_encoder("s3://bucket/preset")
    with pytest.raises(ValueError, match="BertBackbone, a backbone for text.*modality='text'"):
        pretrained_encoder(presets["bert"], modality="image")
    with pytest.raises(ValueError, match="ViTBackbone, a backbone for image"):
        pretrained_encoder(presets["vit"], modality="text")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"preset_or_path": 3}, TypeError, "preset_or_path must be"),
        ({"modality": "audio"}, ValueError, "modality must be one of 'text', 'image'"),
        ({"pooling": "max"}, ValueError, "pooling must be one of 'cls', 'mean'"),
        ({"embedding_dim": 0}, ValueError, "embedding_dim must be"),
        ({"embedding_dim": "8"}, TypeError, "embedding_dim must be"),
        ({"trainable": "yes"}, TypeError, "trainable must be True or False"),
        ({"sequence_length": 1}, ValueError, "sequence_length must be an int >= 2"),
        ({"sequence_length": 64}, ValueError, "exceeds the backbone's max_sequence_length=32"),
        ({"image_size": 32}, ValueError, "image_size applies to modality='image' only"),
        ({"modality": "image", "sequence_length": 8}, ValueError, "sequence_length applies to modality='text'"),
        ({"modality": "image", "image_size": (32,)}, ValueError, "image_size must have 2 entries"),
        ({"name": 5}, TypeError, "name must be a str"),
        ({"name": "a/b"}, ValueError, "without '/'"),
    ],
)
def test_bad_arguments(presets, kwargs, error, message):
    kwargs = {"preset_or_path": presets["bert"], **kwargs}
    with pytest.raises(error, match=message):
        pretrained_encoder(**kwargs)


def test_missing_keras_hub_says_how_to_install(presets, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # makes `import keras_hub` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "xmodal_tf\[hub\]"'):
        pretrained_encoder(presets["bert"])


def test_transfer_weights_from_a_preset_loaded_backbone_into_our_encoder(presets, tmp_path):
    import keras_hub

    from xmodal_tf.transfer import transfer_weights

    other_seed = save_tiny_bert(tmp_path / "bert_seed_1", seed=1)
    ours = pretrained_encoder(other_seed, pooling="mean", name="ours")  # no projection: the backbone decides
    reference = pretrained_encoder(presets["bert"], pooling="mean", name="reference")
    texts = np.array(["a red car", "the dog runs"])
    assert not np.allclose(ours(texts), reference(texts))
    hub_backbone = keras_hub.models.Backbone.from_preset(str(presets["bert"]))
    report = transfer_weights(hub_backbone, backbone_of(ours), match="name", strict=True)
    assert report.copied and not report.missing and not report.mismatched
    np.testing.assert_allclose(ours(texts), reference(texts), rtol=1e-6, atol=1e-6)
