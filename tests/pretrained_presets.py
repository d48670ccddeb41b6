"""Tiny random-initialised keras-hub presets for the tests of ``xmodal_tf.pretrained``.

Each function builds a small model (under a second on two cores) and writes it with
keras-hub's ``save_to_preset`` into a directory, like a copy of a real hub preset made
for offline use. Test files import them as ``from pretrained_presets import ...`` and
call them from their own fixtures.
"""

from __future__ import annotations

import pathlib

import keras

__all__ = [
    "BERT_WORDS",
    "IMAGE_SIZE",
    "VIT_OFFSET",
    "VIT_SCALE",
    "save_tiny_bert",
    "save_tiny_resnet",
    "save_tiny_vit",
]

#: The tiny BERT's words, after its special tokens; any other word is [UNK].
BERT_WORDS = (
    "a dog cat the red blue green big small runs jumps sits on under over house tree car bird fish "
    "sun moon star happy sad fast slow old new photo"
).split()
#: Height and width of the tiny image presets.
IMAGE_SIZE = 32
#: ViT's convention: 0..255 to [-1, 1].
VIT_SCALE, VIT_OFFSET = 1.0 / 127.5, -1.0


def save_tiny_bert(directory, *, sequence_length: int = 12, seed: int = 0) -> pathlib.Path:
    """A two-layer BERT (hidden 16, 2 heads) with its tokenizer and classifier preprocessor.

    Args:
        directory: where to write the preset (created).
        sequence_length: the preprocessor's packed length.
        seed: the seed of the random weights.

    Returns:
        The directory.
    """
    import keras_hub

    keras.utils.set_random_seed(seed)
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
    )
    return _save(directory, backbone, preprocessor)


def save_tiny_vit(directory, *, with_converter: bool = True, seed: int = 0) -> pathlib.Path:
    """A two-layer ViT on 32x32 images (patches of 8, so 16 patches and a class token; hidden 16).

    Args:
        directory: where to write the preset (created).
        with_converter: also save a ``ViTImageClassifierPreprocessor`` whose image converter
            scales 0..255 to [-1, 1]; without it the preset has no image converter.
        seed: the seed of the random weights.

    Returns:
        The directory.
    """
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
    )
    preprocessor = None
    if with_converter:
        converter = keras_hub.layers.ViTImageConverter(
            image_size=(IMAGE_SIZE, IMAGE_SIZE), scale=VIT_SCALE, offset=VIT_OFFSET
        )
        preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)
    return _save(directory, backbone, preprocessor)


def save_tiny_resnet(directory, *, seed: int = 0) -> pathlib.Path:
    """A ResNet of one basic block (keras-hub wants 64 filters there) on any image size.

    Its converter standardises with the ImageNet mean and standard deviation and names
    32x32 as the preset's size; the backbone itself takes any size and gives a (h/4, w/4,
    64) feature map.

    Args:
        directory: where to write the preset (created).
        seed: the seed of the random weights.

    Returns:
        The directory.
    """
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
        image_shape=(None, None, 3),
    )
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(IMAGE_SIZE, IMAGE_SIZE),
        scale=[1.0 / (255.0 * s) for s in std],
        offset=[-m / s for m, s in zip(mean, std)],
    )
    preprocessor = keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter)
    return _save(directory, backbone, preprocessor)


def _save(directory, backbone, preprocessor) -> pathlib.Path:
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    backbone.save_to_preset(str(directory))
    if preprocessor is not None:
        preprocessor.save_to_preset(str(directory))
    return directory
