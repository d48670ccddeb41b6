"""The plain Keras dual encoder of issue 17, on the `retrieval` experiment's own OpenMoji split.

    python benchmarks/bench_retrieval_baseline.py --data-dir ../shared/data               # 64x64, 150 epochs, seed 0
    python benchmarks/bench_retrieval_baseline.py --data-dir ../shared/data --image-size 32 --epochs 20

The baseline is written without the package's models, as a user would write it: four
Conv2D(3x3, ReLU) + 2x max-pooling blocks of 32, 64, 128 and 256 filters, global average
pooling and a Dense(128) on images; word tokens (Keras ``TextVectorization``) embedded
in 128 dimensions, mean-pooled over the real tokens, and a Dense(128) on names; both L2
normalised; the symmetric InfoNCE loss at a learned temperature (start 0.07); Adam(1e-3),
batches of 128, a fixed number of epochs (no early stopping: the last epoch is scored).

The data are exactly the experiment's (``xmodal_tf.experiments.retrieval.load`` with the
same seed): training pairs, validation pairs of other held-out base emoji, and the test
split. Validation mean recall@1/5/10 (both ways) is printed every 10 epochs; the test
split is scored once, at the end, with ``xmodal_tf.metrics.retrieval_metrics``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from xmodal_tf.experiments import retrieval  # noqa: E402
from xmodal_tf.metrics import retrieval_metrics  # noqa: E402

KS = (1, 5, 10)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder holding openmoji64.npz (or $XMODAL_DATA_DIR)")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64, the file's)")
    parser.add_argument("--epochs", type=int, default=150, help="epochs (default 150)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="the split's and the initialisation's seed")
    return parser.parse_args(argv)


def image_encoder(input_shape) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (32, 64, 128, 256):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(128)(x))


def text_encoder(train_texts) -> keras.Model:
    vectorizer = keras.layers.TextVectorization(split="whitespace", output_sequence_length=32)
    vectorizer.adapt(train_texts)
    inputs = keras.Input((), dtype="string")
    x = keras.layers.Embedding(vectorizer.vocabulary_size(), 128, mask_zero=True)(vectorizer(inputs))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(128)(x))


def recalls(images, texts, relevant, encoders) -> tuple[dict, dict]:
    """(image -> text, text -> image) retrieval metrics over held-out pairs."""
    a = tf.math.l2_normalize(encoders[0](images, training=False), -1).numpy()
    b = tf.math.l2_normalize(encoders[1](tf.constant(texts.astype(str)), training=False), -1).numpy()
    scores = a @ b.T
    return retrieval_metrics(scores, relevant, ks=list(KS)), retrieval_metrics(scores.T, relevant.T, ks=list(KS))


def mean_recall(image_to_text: dict, text_to_image: dict) -> float:
    return float(np.mean([result[f"recall@{k}"] for result in (image_to_text, text_to_image) for k in KS]))


def main(argv=None) -> None:
    args = parse_args(argv)
    config = retrieval.resolved({**retrieval.DEFAULTS, "data": "openmoji", "image_size": args.image_size})
    data = retrieval.load(config, args.data_dir, args.seed)
    print(data.description, flush=True)
    keras.utils.set_random_seed(args.seed)
    encoders = (image_encoder(data.train_images.shape[1:]), text_encoder(data.train_texts))
    logit_scale = tf.Variable(np.log(1 / 0.07), dtype=tf.float32)
    optimizer = keras.optimizers.Adam(args.learning_rate)
    weights = encoders[0].trainable_variables + encoders[1].trainable_variables + [logit_scale]

    @tf.function
    def step(images, texts):
        with tf.GradientTape() as tape:
            a = tf.math.l2_normalize(encoders[0](images, training=True), -1)
            b = tf.math.l2_normalize(encoders[1](texts, training=True), -1)
            logits = tf.matmul(a, b, transpose_b=True) * tf.exp(logit_scale)
            labels = tf.range(tf.shape(a)[0])
            loss = 0.5 * (
                tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, True))
                + tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, tf.transpose(logits), True))
            )
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))

    validation_relevant = data.validation_texts[:, None] == data.validation_texts[None, :]
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng.permutation(len(data.train_texts))
        for start in range(0, len(order), args.batch_size):
            rows = order[start : start + args.batch_size]
            step(data.train_images[rows], tf.constant(data.train_texts[rows]))
        if (epoch + 1) % 10 == 0 or epoch + 1 == args.epochs:
            held_out = recalls(data.validation_images, data.validation_texts, validation_relevant, encoders)
            print(
                f"epoch {epoch + 1} ({time.perf_counter() - started:.0f} s): validation mean recall "
                f"{mean_recall(*held_out):.3f}, temperature {float(tf.exp(-logit_scale)):.4f}",
                flush=True,
            )
    image_to_text, text_to_image = recalls(data.test_images, data.test_texts, data.relevant, encoders)
    for name, result in (("image -> text", image_to_text), ("text -> image", text_to_image)):
        print(
            f"test {name}: "
            + ", ".join(f"R@{k} {result[f'recall@{k}']:.3f}" for k in KS)
            + f", median rank {result['median_rank']:g}"
        )


if __name__ == "__main__":
    main()
