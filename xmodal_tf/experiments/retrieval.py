"""Experiment ``retrieval``: a contrastive image-text dual encoder, scored on held-out pairs.

A ``DualEncoder`` (``xmodal_tf.models``) joins a small CNN on images and a
character-n-gram text encoder on their names, trained with the symmetric InfoNCE loss
at a learned temperature, the epoch chosen on a validation split. On held-out data it
is scored on image -> text and text -> image retrieval (recall@1/5/10, median rank)
and on zero-shot classification, each beside chance. Data: ``digits_text`` (offline:
8x8 digits with phrases naming them) or ``openmoji`` (emoji and their Unicode names).
The key figure, ``recall_at_k.png``: test recall@k both ways, beside chance.

Design notes (model selection, data sets, strategies): docs/DESIGN.md (section
xmodal_tf/experiments/retrieval.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from xmodal_tf.experiments.base import TRAINING_CONSTRAINTS, TRAINING_SETTINGS, RunContext, check_global_batch, register
from xmodal_tf.experiments.config import ConfigError, Interval, ListOf, Options, fill_data_defaults
from xmodal_tf.experiments.encoder_settings import (
    PRETRAINED_CONSTRAINT,
    PRETRAINED_NOTE,
    pretrained_image_encoder,
    pretrained_source,
    pretrained_text_encoder,
)

DESCRIPTION = (
    "contrastive image-text dual encoder: retrieval both ways and zero-shot "
    "classification (digits_text offline; openmoji with --data-dir)"
)

DATA_SETS = ("digits_text", "openmoji")
TOKENS = ("char_ngrams", "words", "words_and_char_ngrams")

DEFAULTS = {
    "data": "digits_text",
    # Every None below is the data set's default (PER_DATA_DEFAULTS).
    "image_size": None,  # 8 for digits_text (native), 32 for openmoji (64x64 downsampled)
    "filters": None,  # CNN blocks; [32, 64] for digits_text, [32, 64, 128, 256] for openmoji
    # BatchNorm's moving variance starts at 1 and decays by 0.99 a step: a few hundred
    # steps leave it far above the real variance, and inference-mode image embeddings
    # then collapse onto one direction (image->text R@1 0.03 on OpenMoji). Off for both.
    "batch_norm": None,
    "global_pooling": None,  # image encoder: "avg", "max" or "flatten"; avg for both
    "dropout": 0.0,  # image encoder: dropout before its embedding layer
    # Each epoch every training image moves by up to this share of its side (white fills
    # in): an emoji moved is the same emoji. No flips ("left arrow") or colour changes
    # ("dark skin tone"), which would change the name. 0 turns it off.
    "augment_shift": None,  # 0 for digits_text, 0.125 for openmoji
    "embedding_dim": 128,  # each encoder's output: the shared space when projection_dim is null
    # A bias-free Dense per modality after the encoders' linear outputs; null: none. Two
    # linear maps in a row learn far slower: on OpenMoji validation after 10 epochs, mean
    # recall 0.238 with a 64-d projection against 0.355 without.
    "projection_dim": None,
    # "char_ngrams", "words" (an unseen word is one unknown token) or "words_and_char_ngrams";
    # char_ngrams for digits_text, words for openmoji.
    "tokens": None,
    # n-gram lengths of the text encoder's tokens; null: the tokens' own default, [3] for
    # characters, [1] for words (a fixed [3] once made tokens=words mean word trigrams).
    "ngram_sizes": None,
    "text_hidden_units": [],  # hidden Dense layers of the text encoder after pooling
    # "pretrained:<keras-hub preset or directory>" in place of our own encoders; null: ours.
    "text_encoder": None,
    "image_encoder": None,
    "pretrained_trainable": False,  # whether a pretrained backbone trains (its projection always does)
    "temperature": 0.07,  # initial temperature (learned unless learn_temperature is false)
    "learn_temperature": True,
    "epochs": None,  # the budget; None: 30 for digits_text, 150 for openmoji
    "patience": 20,  # epochs without a better validation recall before stopping
    "batch_size": 128,
    "learning_rate": None,  # Adam's; 2e-3 for digits_text, 1e-3 for openmoji
    "weight_decay": 0.0,  # AdamW's decoupled weight decay; 0 is plain Adam
    "ks": [1, 5, 10],  # recall@k cut-offs
    "test_fraction": 0.2,  # openmoji: share of base emoji held out for test
    "validation_fraction": 0.2,  # openmoji: share of the other base emoji held out for validation
    "aliases": False,  # openmoji: draw each training text from the name and its aliases
    # openmoji: batches keep the skin-tone variants of one base emoji together, so each
    # pair meets its hardest negatives (the same emoji in another tone) in its batch.
    "group_variants": False,
    **TRAINING_SETTINGS,  # mixed_precision, jit (xmodal_tf.precision)
}
PER_DATA_DEFAULTS = {
    "digits_text": {
        "image_size": 8,
        "filters": [32, 64],
        "epochs": 30,
        "batch_norm": False,
        "global_pooling": "avg",
        "augment_shift": 0.0,
        "tokens": "char_ngrams",
        "learning_rate": 2e-3,
    },
    # Chosen on the validation split (seed 0, best mean recall@1/5/10 both ways; the trials:
    # the README's retrieval section, and docs/DESIGN.md, Benchmarks: xmodal_tf/experiments/retrieval.py).
    "openmoji": {
        "image_size": 32,
        "filters": [32, 64, 128, 256],
        "epochs": 150,
        "batch_norm": False,
        "global_pooling": "avg",
        "augment_shift": 0.125,
        "tokens": "words",
        "learning_rate": 1e-3,
    },
}

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = ("{}", "the digit {}", "a handwritten {}", "number {}")
DIGIT_ZERO_SHOT_TEMPLATE = "a picture of a {}"  # never used in training


class RetrievalData(NamedTuple):
    """Paired images and texts for training, and the held-out evaluation sets.

    Attributes:
        train_images: (n, H, W, C) float32 in [0, 1], the pairs' images.
        train_texts: (n,) str, the pairs' texts.
        train_aliases: (n,) str, other texts of each pair, "|"-separated ("" for none).
        train_groups: (n,) int: pairs of one group are variants of one thing (the skin
            tones of one base emoji), each pair its own group where there are none.
        validation_images: (v, H, W, C), the held-out pairs' images.
        validation_texts: (v,) str, the held-out pairs' texts.
        test_images: (m, H, W, C).
        test_texts: (g,) str, the text gallery.
        relevant: (m, g) bool, which texts describe which image.
        class_prompts: (c,) str, the zero-shot classes.
        test_classes: (m,) int, each test image's class.
        description: the data set's description.
    """

    train_images: np.ndarray
    train_texts: np.ndarray
    train_aliases: np.ndarray
    train_groups: np.ndarray
    validation_images: np.ndarray
    validation_texts: np.ndarray
    test_images: np.ndarray
    test_texts: np.ndarray
    relevant: np.ndarray
    class_prompts: np.ndarray
    test_classes: np.ndarray
    description: str


# ----------------------------------------------------------------------------- data
def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (0..255) or float ([0, 1]) images -> float32 in [0, 1], size x size (area averaging)."""
    images = np.asarray(images)
    images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    if images.shape[1:3] == (size, size):
        return images
    import tensorflow as tf

    return tf.image.resize(images, (size, size), method="area").numpy().astype(np.float32)


def load_digits_text(config: dict, seed: int) -> RetrievalData:
    from xmodal_tf.data import load_multimodal_digits

    dataset = load_multimodal_digits(("image",))
    rng = np.random.default_rng(seed)
    train_labels = dataset.train.labels
    templates = rng.integers(0, len(DIGIT_TEMPLATES), len(train_labels))
    train_texts = np.array([DIGIT_TEMPLATES[t].format(DIGIT_WORDS[label]) for t, label in zip(templates, train_labels)])
    gallery = [(template.format(word), digit) for digit, word in enumerate(DIGIT_WORDS) for template in DIGIT_TEMPLATES]
    gallery_texts = np.array([text for text, _ in gallery])
    gallery_digits = np.array([digit for _, digit in gallery])
    test_labels = dataset.test.labels
    return RetrievalData(
        resize_images(dataset.train.inputs["image"], config["image_size"]),
        train_texts,
        np.full(len(train_texts), ""),
        np.arange(len(train_texts)),
        resize_images(dataset.validation.inputs["image"], config["image_size"]),
        np.array([DIGIT_WORDS[label] for label in dataset.validation.labels]),
        resize_images(dataset.test.inputs["image"], config["image_size"]),
        gallery_texts,
        test_labels[:, None] == gallery_digits[None, :],
        np.array([DIGIT_ZERO_SHOT_TEMPLATE.format(word) for word in DIGIT_WORDS]),
        test_labels.astype(np.int64),
        "scikit-learn 8x8 digits paired with number phrases (4 templates), 360 test images",
    )


def load_openmoji_pairs(config: dict, data_dir, seed: int) -> RetrievalData:
    from xmodal_tf.data import load_openmoji

    dataset = load_openmoji(data_dir, test_fraction=config["test_fraction"], seed=seed)
    test = dataset.test
    train, validation = split_base_emoji(dataset.train, config["validation_fraction"], seed)
    class_prompts, test_classes = np.unique(test.base_names, return_inverse=True)
    return RetrievalData(
        resize_images(train.images, config["image_size"]),
        train.names,
        train.aliases,
        np.unique(train.base_names, return_inverse=True)[1].astype(np.int64),
        resize_images(validation.images, config["image_size"]),
        validation.names,
        resize_images(test.images, config["image_size"]),
        test.names,
        test.names[:, None] == test.names[None, :],
        class_prompts,
        test_classes.astype(np.int64),
        f"{dataset.description}; {len(test)} test images of {len(class_prompts)} held-out "
        f"base emoji, {len(validation)} validation images of {len(np.unique(validation.base_names))} "
        f"others, {len(train)} training pairs",
    )


def split_base_emoji(split, fraction: float, seed: int) -> tuple:
    """Hold out a seeded share of a split's base emoji whole.

    Args:
        split: an ``EmojiSplit``.
        fraction: the share of base emoji held out (at least one, and at least one kept).
        seed: the draw's seed.

    Returns:
        (rest, held out), two ``EmojiSplit``.
    """
    from xmodal_tf.data.multimodal import held_out_base_emoji

    unique = np.unique(split.base_names)
    if len(unique) < 2:
        raise ValueError(
            f"retrieval: {len(unique)} training base emoji cannot give a validation split; "
            "lower test_fraction or use a larger emoji file."
        )
    held = held_out_base_emoji(split.base_names, fraction, np.random.default_rng([seed, 1]))
    return split.subset(~held), split.subset(held)


def vocabulary_texts(data: RetrievalData, aliases: bool) -> np.ndarray:
    """The training texts the text encoder's vocabulary is learned from.

    Args:
        data: the ``RetrievalData``.
        aliases: add every alias to the names (else alias n-grams would all be out of
            vocabulary).
    """
    if not aliases:
        return data.train_texts
    extra = [alias.strip() for joined in data.train_aliases for alias in str(joined).split("|") if alias.strip()]
    return np.concatenate([data.train_texts, np.array(extra, dtype=str)])


def epoch_texts(texts: np.ndarray, aliases: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pair's text for one epoch: its text or one of its aliases, uniformly.

    Args:
        texts: (n,) the pairs' texts.
        aliases: (n,) "|"-separated aliases ("" for none).
        rng: the draws.
    """
    chosen = []
    for text, alternatives in zip(texts, aliases):
        options = [text] + [alias.strip() for alias in str(alternatives).split("|") if alias.strip()]
        chosen.append(options[rng.integers(len(options))])
    return np.array(chosen)


def load(config: dict, data_dir, seed: int) -> RetrievalData:
    """The ``load_data`` hook: the pairs, read and checked before the run starts."""
    config = resolved(config)
    if config["data"] == "openmoji":
        return load_openmoji_pairs(config, data_dir, seed)
    return load_digits_text(config, seed)


# ----------------------------------------------------------------------------- model
def build_model(data: RetrievalData, config: dict, *, sync_batch_norm: bool = False):
    """DualEncoder(cnn_encoder on images, text_encoder on raw strings), or pretrained
    keras-hub encoders in their place (the ``image_encoder`` / ``text_encoder`` settings).

    Args:
        data: the ``RetrievalData``.
        config: the resolved configuration.
        sync_batch_norm: the image encoder's BatchNorm uses the global batch's
            statistics (several replicas).
    """
    from xmodal_tf.encoders import cnn_encoder, text_encoder
    from xmodal_tf.models.dual_encoder import DualEncoder

    trainable = config["pretrained_trainable"]
    if config["image_encoder"] is not None:
        image_encoder = pretrained_image_encoder(
            pretrained_source(config["image_encoder"]),
            data.train_images.shape[1:],
            config["embedding_dim"],
            trainable=trainable,
            name="image_encoder",
        )
    else:
        image_encoder = cnn_encoder(
            data.train_images.shape[1:],
            config["embedding_dim"],
            filters=tuple(config["filters"]),
            batch_norm=config["batch_norm"],
            sync_batch_norm=sync_batch_norm,
            dropout=config["dropout"],
            global_pooling=config["global_pooling"],
            name="image_encoder",
        )
    if config["text_encoder"] is not None:
        names_encoder = pretrained_text_encoder(
            pretrained_source(config["text_encoder"]), config["embedding_dim"], trainable=trainable, name="text_encoder"
        )
    else:
        names_encoder = text_encoder(
            vocabulary_texts(data, config["aliases"]),
            tokens=config["tokens"],
            ngram_sizes=None if config["ngram_sizes"] is None else tuple(config["ngram_sizes"]),
            hidden_units=tuple(config["text_hidden_units"]),
            embedding_dim=config["embedding_dim"],
            name="text_encoder",
        )
    return DualEncoder(
        image_encoder,
        names_encoder,
        projection_dim=config["projection_dim"],
        temperature=config["temperature"],
        learn_temperature=config["learn_temperature"],
    )


def progress_callback(context: RunContext, epochs: int):
    """A Keras callback: a progress line and TensorBoard scalars per epoch."""
    import keras

    class EpochReport(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = {key: value for key, value in (logs or {}).items() if key not in ("steps", "seconds")}
            held_out = {key[4:]: float(value) for key, value in logs.items() if key.startswith("val_")}
            context.log_scalars(
                {key: float(value) for key, value in logs.items() if not key.startswith("val_")},
                step=epoch + 1,
                prefix="train/",
            )
            context.log_scalars(
                {key: value for key, value in held_out.items() if key == "mean_recall"},
                step=epoch + 1,
                prefix="validation/",
            )
            context.log_scalars(
                {key: value for key, value in held_out.items() if key != "mean_recall"},
                step=epoch + 1,
                prefix="validation_details/",
            )
            context.progress(
                f"epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.3f}, "
                f"in-batch accuracy {logs.get('in_batch_accuracy', float('nan')):.3f}, "
                f"temperature {logs.get('temperature', float('nan')):.4f}, validation mean recall "
                f"{held_out.get('mean_recall', float('nan')):.3f}"
            )

    return EpochReport()


def make_optimizer(config: dict):
    """Adam, or AdamW when ``weight_decay`` > 0 (create it in ``context.scope()``)."""
    import keras

    if config["weight_decay"] > 0:
        optimizer = keras.optimizers.AdamW(config["learning_rate"], weight_decay=config["weight_decay"])
        # As in CLIP: no decay of the temperature, biases and normalisation gains.
        optimizer.exclude_from_weight_decay(var_names=["logit_scale", "bias", "gamma", "beta"])
        return optimizer
    return keras.optimizers.Adam(config["learning_rate"])


def epoch_order(groups: np.ndarray, rng: np.random.Generator, together: bool) -> np.ndarray:
    """A permutation of the pairs for one epoch.

    Args:
        groups: (n,) each pair's group.
        rng: the draws.
        together: the groups come in a random order, each group's pairs in a row (in
            random order), so that consecutive batches hold whole groups (a group is
            split only at a batch boundary).
    """
    if not together:
        return rng.permutation(len(groups))
    order = rng.permutation(len(groups))  # shuffles within groups; the stable sort keeps it
    rank = rng.permutation(int(groups.max()) + 1)
    return order[np.argsort(rank[groups[order]], kind="stable")]


def training_batches(
    data: RetrievalData,
    batch_size: int,
    replicas: int,
    seed: int,
    aliases: bool,
    augment_shift: float = 0.0,
    group_variants: bool = False,
):
    """The training data: a function ``epoch -> dataset`` of global batches of (images, texts).

    The pairs come in a new order every epoch, all draws seeded by (seed, epoch) so that
    a resumed run sees the same epochs. With several replicas the last partial batch is
    dropped.

    Args:
        data: the ``RetrievalData``.
        batch_size: the global batch.
        replicas: the strategy's number of replicas.
        seed: the run's seed.
        aliases: draw each text from its name and aliases (``epoch_texts``).
        augment_shift: if > 0, move each image at random by up to that share of its
            side (``random_translations``, white fill).
        group_variants: each group's pairs share a batch (``epoch_order``).
    """
    import tensorflow as tf

    from xmodal_tf.data.augment import random_translations

    max_shift = int(round(augment_shift * data.train_images.shape[1]))

    def for_epoch(epoch: int):
        rng = np.random.default_rng([seed, epoch])
        order = epoch_order(data.train_groups, rng, group_variants)
        texts = epoch_texts(data.train_texts, data.train_aliases, rng) if aliases else data.train_texts
        images = random_translations(data.train_images[order], max_shift, rng, fill=1.0)
        pairs = tf.data.Dataset.from_tensor_slices((images, texts[order].astype(str)))
        return pairs.batch(batch_size, drop_remainder=replicas > 1).prefetch(tf.data.AUTOTUNE)

    return for_epoch


def train(model, optimizer, data: RetrievalData, config: dict, context: RunContext) -> dict:
    """Train through ``context.trainer``.

    Returns:
        The trainer: its ``history`` has one entry per epoch, its ``train_seconds`` the
        time over every segment of a resumed run.
    """
    check_global_batch(config["batch_size"], context.replicas, "retrieval", rows=len(data.train_texts))
    batches = training_batches(
        data,
        config["batch_size"],
        context.replicas,
        context.seed,
        config["aliases"],
        config["augment_shift"],
        config["group_variants"],
    )
    context.progress(
        f"training: {len(data.train_texts)} pairs{' (names and aliases)' if config['aliases'] else ''}, "
        f"at most {config['epochs']} epochs, batch {config['batch_size']}; early stopping on "
        f"{len(data.validation_texts)} validation pairs ..."
    )
    # progress_callback prints the epoch lines and logs train/... scalars to the run directory.
    trainer = context.trainer(model, optimizer, progress=False, early_stopping_patience=config["patience"])
    trainer.fit(
        batches,
        config["epochs"],
        validation_data=(data.validation_images, data.validation_texts),
        callbacks=[progress_callback(context, config["epochs"])],
    )
    return trainer


# ----------------------------------------------------------------------------- evaluation
def evaluate(model, data: RetrievalData, ks) -> dict:
    """Retrieval both ways and zero-shot classification on the held-out data."""
    from xmodal_tf.metrics import retrieval_metrics

    image_embeddings = model.encode_a(data.test_images)
    similarity = image_embeddings @ model.encode_b(data.test_texts).T
    results = {}
    for direction, scores, relevant in (
        ("image_to_text", similarity, data.relevant),
        ("text_to_image", similarity.T, data.relevant.T),
    ):
        usable = [k for k in ks if k <= scores.shape[1]]
        results[direction] = retrieval_metrics(scores, relevant, ks=usable)
    class_scores = image_embeddings @ model.encode_b(data.class_prompts).T
    predicted = np.argmax(class_scores, axis=1)
    results["zero_shot"] = {
        "accuracy": float(np.mean(predicted == data.test_classes)),
        "chance": 1.0 / len(data.class_prompts),
        "num_classes": int(len(data.class_prompts)),
        "num_images": int(len(data.test_classes)),
    }
    return results


def log_recalls(context: RunContext, results: dict, data: str) -> None:
    """Log the key figure, ``recall_at_k.png`` and its TensorBoard image.

    Test recall@k of both directions beside the chance level of a random ranking.

    Args:
        context: the run context.
        results: the test results.
        data: the data set's name, for the title.
    """
    from xmodal_tf import plots

    # (a k larger than a direction's gallery is left out of that direction's scores)
    ks = sorted(
        set.intersection(
            *(
                {int(key.split("@")[1]) for key in results[direction] if key.startswith("recall@")}
                for direction in ("image_to_text", "text_to_image")
            )
        )
    )
    if not ks:
        return
    recalls = {}
    for direction in ("image_to_text", "text_to_image"):
        label = direction.replace("_to_", " -> ")
        recalls[label] = [results[direction][f"recall@{k}"] for k in ks]
        recalls[f"{label}, chance"] = [results[direction][f"chance_recall@{k}"] for k in ks]
    context.log_figure("recall_at_k", plots.recall_at_k(ks, recalls, title=f"retrieval on {data}: test recall@k"))


def run(config: dict, context: RunContext) -> dict:
    config = resolved(config)
    check_global_batch(config["batch_size"], context.replicas, "retrieval")  # before loading anything
    data = context.data if context.data is not None else load(config, context.data_dir, context.seed)
    context.progress(data.description)
    with context.scope():
        # Several replicas: BatchNorm on the global batch's statistics, as on one device.
        model = build_model(data, config, sync_batch_norm=context.replicas > 1)
        optimizer = make_optimizer(config)
    trainer = train(model, optimizer, data, config, context)
    history, train_seconds = trainer.history, trainer.train_seconds
    results = evaluate(model, data, config["ks"])
    for direction in ("image_to_text", "text_to_image"):
        context.log_scalars(
            {key: value for key, value in results[direction].items() if key.startswith(("recall@", "median_rank"))},
            prefix=f"test/{direction}_",
        )
    context.log_scalar("test/zero_shot_accuracy", results["zero_shot"]["accuracy"])
    log_recalls(context, results, config["data"])
    context.progress(
        f"median rank image -> text {results['image_to_text']['median_rank']:g}, "
        f"text -> image {results['text_to_image']['median_rank']:g}; zero-shot accuracy "
        f"{results['zero_shot']['accuracy']:.3f} (chance {results['zero_shot']['chance']:.3f})"
    )
    return {
        "data": config["data"],
        "description": data.description,
        "num_train_pairs": int(len(data.train_texts)),
        "num_test_images": int(len(data.test_images)),
        "num_test_texts": int(len(data.test_texts)),
        **results,
        "num_validation_pairs": int(len(data.validation_texts)),
        "epochs_trained": len(history["loss"]),
        "best_epoch": int(np.argmax(history["val_mean_recall"])) + 1,
        "best_validation_mean_recall": float(np.max(history["val_mean_recall"])),
        "temperature": model.temperature,
        "final_train_loss": float(history["loss"][-1]),
        "final_in_batch_accuracy": float(history["in_batch_accuracy"][-1]),
        "train_seconds": train_seconds,
        "recipe": {
            key: config[key]
            for key in (
                "image_size",
                "filters",
                "batch_norm",
                "global_pooling",
                "embedding_dim",
                "projection_dim",
                "tokens",
                "ngram_sizes",
                "text_hidden_units",
                "dropout",
                "augment_shift",
                "temperature",
                "learn_temperature",
                "epochs",
                "patience",
                "aliases",
                "group_variants",
                "batch_size",
                "learning_rate",
                "weight_decay",
            )
        },
    }


# ----------------------------------------------------------------------------- config
def resolved(config: dict) -> dict:
    """``config`` with every None replaced by the data set's default."""
    return fill_data_defaults(config, PER_DATA_DEFAULTS)


POSITIVE = Interval(int, 1, None)
SHARE = Interval(float, 0, 1, closed="neither")
CONSTRAINTS = {
    "data": [Options(*DATA_SETS)],
    "image_size": [POSITIVE, None],
    "filters": [ListOf(POSITIVE, min_length=1), None],
    "batch_norm": [bool, None],
    "global_pooling": [Options("avg", "max", "flatten"), None],
    "dropout": [Interval(float, 0, 1, closed="left")],
    "augment_shift": [Interval(float, 0, 0.5, closed="left"), None],
    "embedding_dim": [POSITIVE],
    "projection_dim": [POSITIVE, None],
    "tokens": [Options(*TOKENS), None],
    "ngram_sizes": [ListOf(POSITIVE, min_length=1), None],
    "text_hidden_units": [ListOf(POSITIVE)],
    "text_encoder": [PRETRAINED_CONSTRAINT, None],
    "image_encoder": [PRETRAINED_CONSTRAINT, None],
    "pretrained_trainable": [bool],
    "temperature": [Interval(float, 0.01, 1)],
    "learn_temperature": [bool],
    "epochs": [POSITIVE, None],
    "patience": [POSITIVE],
    "batch_size": [POSITIVE],
    "learning_rate": [Interval(float, 0, None, closed="neither"), None],
    "weight_decay": [Interval(float, 0, None)],
    "ks": [ListOf(POSITIVE, min_length=1, distinct=True)],
    "test_fraction": [SHARE],
    "validation_fraction": [SHARE],
    "aliases": [bool],
    "group_variants": [bool],
    **TRAINING_CONSTRAINTS,
}
NOTES = {
    **{key: "null: the data set's default" for key in PER_DATA_DEFAULTS["digits_text"]},
    "augment_shift": "a share of the image side; 0 is off; null: the data set's default",
    "projection_dim": "null: no projection",
    "ngram_sizes": "null: the tokens' own default",
    "temperature": "CLIP starts at 0.07",
    "ks": "the recall@k cut-offs",
    "text_encoder": PRETRAINED_NOTE,
    "image_encoder": PRETRAINED_NOTE,
}


def check_rules(config: dict) -> None:
    """Check that openmoji's settings are not set for another data set.

    The table checks each setting alone.

    Raises:
        ConfigError: an openmoji setting on another data set.
    """
    for key, missing in (("group_variants", "variants"), ("aliases", "aliases")):
        if config[key] and config["data"] != "openmoji":
            raise ConfigError(
                f"{key}=true needs data=openmoji (the digit phrases have no {missing}). "
                f"Fix: --set {key}=false, or --set data=openmoji."
            )


def summarize(metrics: dict) -> list[str]:
    lines = [
        f"retrieval on {metrics['data']}: {metrics['num_train_pairs']} training pairs; held out "
        f"{metrics['num_test_images']} images and {metrics['num_test_texts']} texts; "
        f"learned temperature {metrics['temperature']:.4f}"
    ]
    ks = sorted(int(key.split("@")[1]) for key in metrics["image_to_text"] if key.startswith("recall@"))
    lines.append(
        f"{'direction':<15}" + "".join(f"{f'R@{k}':>8}{'chance':>8}" for k in ks) + f"{'median rank':>13}{'gallery':>9}"
    )
    for direction, label in (("image_to_text", "image -> text"), ("text_to_image", "text -> image")):
        result = metrics[direction]
        lines.append(
            f"{label:<15}"
            + "".join(
                f"{result.get(f'recall@{k}', float('nan')):8.3f}{result.get(f'chance_recall@{k}', float('nan')):8.3f}"
                for k in ks
            )
            + f"{result['median_rank']:13.1f}{result['num_gallery']:9d}"
        )
    zero_shot = metrics["zero_shot"]
    lines.append(
        f"zero-shot classification of {zero_shot['num_images']} held-out images among "
        f"{zero_shot['num_classes']} class names: accuracy {zero_shot['accuracy']:.3f} "
        f"(chance {zero_shot['chance']:.3f})"
    )
    return lines


EXPERIMENT = register(globals(), name="retrieval", description=DESCRIPTION)
