"""A pretrained text encoder and a CNN as a dual encoder, then fine-tuned with the text backbone's top block unfrozen.

    python examples/pretrained_transfer.py [--quick] [--preset bert_tiny_en_uncased | --preset DIR]

Digit images (scikit-learn's 8x8 digits, offline) are paired with phrases that name them
("the digit seven"). The text side is a keras-hub backbone with its own tokenizer inside
the model (``xm.pretrained.pretrained_encoder``); the image side is a small CNN from
scratch. Stage 1 trains with the text backbone frozen (only its projection and the CNN
learn); stage 2 unfreezes the backbone's last transformer block (``xm.transfer.unfreeze(
..., unit="block")``) and goes on at a tenth of the learning rate.

``--preset`` takes a keras-hub handle (needs the internet) or a directory written by
``save_to_preset``. Without it the script writes a tiny random-initialised BERT preset
to a temporary folder and uses that, so it runs offline; its figures then show the
mechanics, not the benefit of pretraining.
"""

import argparse
import pathlib
import tempfile
import warnings

import keras
import numpy as np

import xmodal_tf as xm

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = ["{}", "the digit {}", "a handwritten {}", "number {}"]

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a smoke test: 1 + 1 epochs")
parser.add_argument("--preset", default=None, help="a keras-hub text preset: hub handle or local directory")
args = parser.parse_args()
epochs = 1 if args.quick else 20


def tiny_bert_preset(directory: pathlib.Path) -> str:
    """Write a two-block BERT with random weights and a vocabulary of the digit phrases."""
    import keras_hub

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "the", "digit", "a", "handwritten"]
    vocabulary += ["number", "picture", "of"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64
    )
    backbone.save_to_preset(directory)
    keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8).save_to_preset(directory)
    return str(directory)


work = pathlib.Path(tempfile.mkdtemp())
keras.utils.set_random_seed(0)
preset = args.preset or tiny_bert_preset(work / "tiny_bert")
print(f"text preset: {preset if args.preset else 'a tiny random BERT (offline), ' + preset}")

data = xm.data.load_multimodal_digits(("image",))  # images (n, 8, 8, 1) in [0, 1]
images, labels = data.train.inputs["image"], data.train.labels
test_images, test_labels = data.test.inputs["image"], data.test.labels
rng = np.random.default_rng(0)
texts = np.array([rng.choice(TEMPLATES).format(WORDS[label]) for label in labels])  # (n,) str
prompts = np.array([f"a picture of a {word}" for word in WORDS])  # zero-shot template, unseen in training

text_encoder = xm.pretrained.pretrained_encoder(
    preset, modality="text", embedding_dim=64, sequence_length=8, trainable=False, name="text_encoder"
)
model = xm.models.DualEncoder(
    xm.encoders.cnn_encoder((8, 8, 1), 64, filters=(32, 64), batch_norm=False, name="image_encoder"),
    text_encoder,
)


def trainable_count(model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def zero_shot_accuracy() -> float:
    return float(np.mean(np.argmax(model.similarity(test_images, prompts), axis=1) == test_labels))


backbone = xm.pretrained.backbone_of(text_encoder)
print(f"stage 1: text backbone frozen, {trainable_count(model)} trainable parameters")
model.compile(optimizer=keras.optimizers.Adam(2e-3))
model.fit(images, texts, batch_size=64, epochs=epochs, verbose=0)
print(f"stage 1 zero-shot accuracy on {len(test_labels)} held-out images: {zero_shot_accuracy():.3f} (chance 0.1)")

blocks = xm.transfer.backbone_blocks(model)
with warnings.catch_warnings():  # it warns that the flags need a compile: done just below
    warnings.simplefilter("ignore", UserWarning)
    changed = xm.transfer.unfreeze(model, top=1, unit="block")
print(f"stage 2: unfroze {blocks[-1]} ({len(changed)} layers), {trainable_count(model)} trainable parameters")
model.compile(optimizer=keras.optimizers.Adam(2e-4))  # the new flags take effect on compiling
model.fit(images, texts, batch_size=64, epochs=epochs, verbose=0)
print(f"stage 2 zero-shot accuracy on {len(test_labels)} held-out images: {zero_shot_accuracy():.3f} (chance 0.1)")

path = work / "pretrained_dual_encoder.keras"
model.save(path)
reloaded = keras.models.load_model(path)  # raw strings still go straight in; no preset needed
same = np.allclose(reloaded.similarity(test_images, prompts), model.similarity(test_images, prompts), atol=1e-5)
print(f"reloaded from {path}: same similarities: {same}, trainable parameters {trainable_count(reloaded)}")
