"""Image-text retrieval with a contrastive DualEncoder and ``model.fit``.

    python examples/retrieval_fit.py [--quick]

Digit images (scikit-learn's 8x8 digits, offline) are paired with short phrases that
name them ("the digit seven", "a handwritten seven" ...). A CNN and a text encoder that
takes raw strings are trained CLIP-style, so that each image lands next to its phrase.
Then, on held-out images: text -> image search, zero-shot classification with a phrase
template never seen in training, and recall@k. The saved model takes raw strings.
"""

import argparse
import pathlib
import tempfile

import keras
import numpy as np

import xmodal_tf as xm
from xmodal_tf.metrics import retrieval_metrics
from xmodal_tf.models.dual_encoder import DualEncoder

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = ["{}", "the digit {}", "a handwritten {}", "number {}"]

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a smoke test: 2 epochs")
epochs = 2 if parser.parse_args().quick else 30

data = xm.data.load_multimodal_digits(("image",))  # images (n, 8, 8, 1) in [0, 1]
images, labels = data.train.inputs["image"], data.train.labels
test_images, test_labels = data.test.inputs["image"], data.test.labels
rng = np.random.default_rng(0)
texts = np.array([rng.choice(TEMPLATES).format(WORDS[label]) for label in labels])  # (n,) str

keras.utils.set_random_seed(0)
model = DualEncoder(
    # No BatchNorm: ~250 steps are too few for its moving statistics to settle.
    xm.encoders.cnn_encoder((8, 8, 1), 128, filters=(32, 64), batch_norm=False, name="image_encoder"),
    xm.encoders.text_encoder(texts, embedding_dim=128, name="text_encoder"),  # char trigrams of raw text
    projection_dim=64,
    temperature=0.07,
)  # the temperature is learned
model.compile(optimizer=keras.optimizers.Adam(2e-3))
history = model.fit(images, texts, batch_size=128, epochs=epochs, verbose=0).history
print(
    f"training: loss {history['loss'][0]:.2f} -> {history['loss'][-1]:.2f}, in-batch accuracy "
    f"{history['in_batch_accuracy'][-1]:.2f}, learned temperature {model.temperature:.3f}"
)

# Text -> image: the five held-out images nearest to a phrase.
nearest, scores = model.retrieve(np.array(["the digit seven"]), test_images, k=5, direction="b_to_a")
print(
    f"'the digit seven' -> digits {test_labels[nearest[0]].tolist()} "
    f"(cosine {', '.join(f'{score:.2f}' for score in scores[0])})"
)

# Zero-shot classification: the nearest class phrase, in a template unseen in training.
prompts = np.array([f"a picture of a {word}" for word in WORDS])
similarity = model.similarity(test_images, prompts)  # (360, 10) cosine similarities
accuracy = np.mean(np.argmax(similarity, axis=1) == test_labels)
print(f"zero-shot accuracy on {len(test_labels)} held-out images: {accuracy:.3f} (chance 0.1)")
print(
    "image -> class phrase:",
    {
        key: round(value, 3)
        for key, value in retrieval_metrics(similarity, test_labels, ks=(1, 3)).items()
        if key.startswith(("recall", "median"))
    },
)

path = pathlib.Path(tempfile.mkdtemp()) / "dual_encoder.keras"
model.save(path)
reloaded = keras.models.load_model(path)  # raw strings still go straight in
same = np.allclose(reloaded.encode_b(prompts), model.encode_b(prompts))
print(f"reloaded from {path}: identical text embeddings: {same}")
