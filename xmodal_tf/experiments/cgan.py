"""Experiment ``cgan``: a conditional GAN draws digits on request; an independent classifier checks them.

A ``ConditionalGAN`` (the default recipe of ``xmodal_tf.models.cgan``) learns the training
images given their condition; settings that default to None take the data set's value
(``DATA_DEFAULTS``). An independent CNN classifier, trained on the real training images
only, then labels generated images: ``condition=label`` scores the share labelled as the
requested class and the Frechet distance to the real test images; ``condition=audio``
conditions the GAN on a spoken digit's code and scores images generated from held-out
recordings against the digit that was spoken. The key figure, ``generated_samples.png``:
the final generator's samples, a row per condition.

Design notes (protocol, data, strategies): docs/DESIGN.md (section xmodal_tf/experiments/cgan.py).
"""

from __future__ import annotations

import contextlib

import numpy as np

from xmodal_tf.experiments.base import TRAINING_CONSTRAINTS, TRAINING_SETTINGS, RunContext, check_global_batch, register
from xmodal_tf.experiments.config import ConfigError, Interval, Options

DESCRIPTION = (
    "conditional GAN drawing digits from a label or a spoken digit, scored by an independent "
    "classifier (8x8 digits offline; mnist / audio with --data-dir)"
)

DATA_SETS = ("digits", "mnist")
CONDITIONS = ("label", "audio")
AUDIO_ENCODERS = ("rnn", "attention")
AUDIO_CODES = ("probabilities", "embedding")
GAN_LOSS_CHOICES = ("hinge", "non_saturating", "least_squares")
LEARNING_RATE_SCHEDULES = ("constant", "linear", "cosine")
NUM_CLASSES = 10

DEFAULTS = {
    "data": "digits",
    "condition": "label",
    "steps": None,  # GAN training steps; None: 2000 digits / 5000 mnist
    "steps_per_epoch": None,  # steps between logs and image grids; None: steps // 10
    "batch_size": 64,
    "latent_dim": None,  # None: 32 (digits) / 64 (mnist)
    "generator_filters": 16,  # build_generator base_filters (x4 at the coarsest grid)
    "discriminator_filters": 32,  # build_discriminator base_filters
    "loss": "non_saturating",
    "r1_weight": 1.0,
    "spectral_normalization": False,
    "classifier_weight": None,  # auxiliary classifier (AC-GAN) terms: D's head on real images, G's fakes;
    # None: 1 (0 for condition=audio)
    "classifier_fake_weight": 0.0,  # D's head on the fakes (AC-GAN's own term)
    "classifier_margin": None,  # G's term max(0, cross-entropy - margin): typical-enough fakes are left
    # alone; None: 0.7 digits / 2.0 mnist (0 for condition=audio)
    "learning_rate": 1e-3,  # Adam(beta_1=0.5) for both networks
    "learning_rate_schedule": "constant",  # or "linear" / "cosine": decay to 0 over the steps
    "ema_decay": 0.999,  # samples come from this moving average of the generator's weights
    "ema_warmup": 10.0,  # w of the average's warm-up decay (1 + t) / (w + t); 1 = none
    "truncation": None,  # scale of z when sampling (the truncation trick), in (0, 1]; None: 1
    "balanced_batches": False,  # batches drawn class-balanced (by the images' digits)
    "classifier_epochs": None,  # independent image classifier; None: 30 (digits) / 3 (mnist)
    "samples_per_condition": 100,  # label: images per class; audio: images per held-out recording
    "train_size": None,  # keep the first n training images (None: all)
    "audio_encoder": "rnn",
    "audio_code": "probabilities",  # or "embedding" (the audio encoder's output)
    "audio_embedding_dim": 32,
    "audio_epochs": 15,
    **TRAINING_SETTINGS,  # mixed_precision, jit (xmodal_tf.precision)
}
AUDIO_SAMPLES_CAP = 4  # images per held-out recording are capped: hundreds of recordings
FIGURE_SAMPLES = 8  # generated_samples.png: images per condition
POSITIVE = Interval(int, 1, None)
WEIGHT = Interval(float, 0, None)
CONSTRAINTS = {
    "data": [Options(*DATA_SETS)],
    "condition": [Options(*CONDITIONS)],
    "steps": [POSITIVE, None],
    "steps_per_epoch": [POSITIVE, None],
    "batch_size": [Interval(int, 2, None)],
    "latent_dim": [POSITIVE, None],
    "generator_filters": [POSITIVE],
    "discriminator_filters": [POSITIVE],
    "loss": [Options(*GAN_LOSS_CHOICES)],
    "r1_weight": [WEIGHT],
    "spectral_normalization": [bool],
    "classifier_weight": [WEIGHT, None],
    "classifier_fake_weight": [WEIGHT],
    "classifier_margin": [WEIGHT, None],
    "learning_rate": [Interval(float, 0, None, closed="neither")],
    "learning_rate_schedule": [Options(*LEARNING_RATE_SCHEDULES)],
    "ema_decay": [Interval(float, 0, 1, closed="neither"), None],
    "ema_warmup": [Interval(float, 1, None)],
    "truncation": [Interval(float, 0, 1, closed="right"), None],
    "balanced_batches": [bool],
    "classifier_epochs": [POSITIVE, None],
    "samples_per_condition": [POSITIVE],
    "train_size": [POSITIVE, None],
    "audio_encoder": [Options(*AUDIO_ENCODERS)],
    "audio_code": [Options(*AUDIO_CODES)],
    "audio_embedding_dim": [POSITIVE],
    "audio_epochs": [POSITIVE],
    **TRAINING_CONSTRAINTS,
}
NOTES = {
    "steps": "null: the data set's",
    "latent_dim": "null: the data set's",
    "classifier_epochs": "null: the data set's",
    "steps_per_epoch": "null: steps // 10",
    "classifier_weight": "null: the data set's, 0 for condition=audio",
    "classifier_margin": "null: the data set's, 0 for condition=audio",
    "ema_decay": "null: no moving average",
    "ema_warmup": "1: no warm-up",
    "truncation": "null: 1, no truncation",
    "train_size": "the first n training images; null: all",
}
# The recipe of each data set: these keys default to None in DEFAULTS, which means
# "this data set's value" (chosen on held-out training images, see docs/DESIGN.md).
DATA_DEFAULTS = {
    "digits": {
        "steps": 2000,
        "latent_dim": 32,
        "classifier_epochs": 30,
        "classifier_weight": 1.0,
        "classifier_margin": 0.7,
    },
    "mnist": {
        "steps": 5000,
        "latent_dim": 64,
        "classifier_epochs": 3,
        "classifier_weight": 1.0,
        "classifier_margin": 2.0,
    },
}


def resolve_data_defaults(config: dict) -> dict:
    """The configuration with the data set's defaults filled in.

    Args:
        config: the resolved configuration.

    Returns:
        A copy of ``config`` with every None setting of ``DATA_DEFAULTS[config["data"]]``
        replaced by that data set's value (explicit values are kept).
    """
    defaults = DATA_DEFAULTS[config["data"]]
    if config.get("condition", "label") != "label":  # the classifier terms need class labels
        defaults = {**defaults, "classifier_weight": 0.0, "classifier_margin": 0.0}
    return {**config, **{key: value for key, value in defaults.items() if config.get(key) is None}}


# ----------------------------------------------------------------------------- data
def load_images(config: dict, data_dir):
    """The images of the run's data set.

    Args:
        config: the resolved configuration (``data``, ``train_size``).
        data_dir: the data folder.

    Returns:
        (train_images, train_labels, test_images, test_labels, description), images
        float32 (n, H, W, 1) in [0, 1].
    """
    if config["data"] == "digits":
        from xmodal_tf.data import load_multimodal_digits

        digits = load_multimodal_digits(("image",))
        train, test = digits.train, digits.test
        arrays = (train.inputs["image"], train.labels, test.inputs["image"], test.labels)
        description = digits.description
    else:
        arrays = load_mnist(data_dir)
        description = "MNIST 28x28 (mnist.npz)"
    train_images, train_labels, test_images, test_labels = arrays
    if config["train_size"] is not None:
        train_images, train_labels = train_images[: config["train_size"]], train_labels[: config["train_size"]]
    return train_images, train_labels.astype(np.int64), test_images, test_labels.astype(np.int64), description


def load_mnist(data_dir):
    """MNIST from mnist.npz (Keras layout) in the data folder.

    Args:
        data_dir: the data folder (or the .npz file); None: $XMODAL_DATA_DIR.

    Returns:
        (x_train, y_train, x_test, y_test), images float32 (n, 28, 28, 1) in [0, 1].

    Raises:
        FileNotFoundError: no mnist.npz.
        ValueError: the archive lacks an array.
    """
    from xmodal_tf.data import DATA_DIR_ENV_VAR, resolve_data_dir

    folder = resolve_data_dir(data_dir)
    path = None if folder is None else (folder if folder.suffix == ".npz" else folder / "mnist.npz")
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"data=mnist needs mnist.npz (Keras layout) in the data folder; "
            f"{'none given' if folder is None else f'not found at {path}'}. Pass --data-dir FOLDER "
            f"or set ${DATA_DIR_ENV_VAR}."
        )
    with np.load(path) as archive:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(archive.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)} (Keras mnist.npz layout).")
        x_train, y_train, x_test, y_test = (archive[key] for key in ("x_train", "y_train", "x_test", "y_test"))

    def scale(images):
        return (images.astype(np.float32) / 255.0)[..., None]

    return scale(x_train), y_train, scale(x_test), y_test


def pair_recordings(labels: np.ndarray, recording_labels: np.ndarray, seed: int) -> np.ndarray:
    """For each label, the row of a random recording of the same digit (seeded)."""
    rng = np.random.default_rng(seed)
    chosen = np.empty(len(labels), dtype=np.int64)
    for digit in np.unique(labels):
        where = np.flatnonzero(labels == digit)
        pool = np.flatnonzero(recording_labels == digit)
        if len(pool) == 0:
            raise ValueError(f"no training recording of the digit {digit} to pair with its images.")
        chosen[where] = rng.choice(pool, size=len(where))
    return chosen


# ----------------------------------------------------------------------------- classifiers
def build_image_classifier(image_shape, num_classes: int = NUM_CLASSES, *, seed: int = 0):
    """The independent image classifier: a small compiled CNN.

    ``cnn_encoder`` (three conv + max-pool blocks, no batch norm) + softmax head. No
    batch norm: with the few steps of the 8x8 digits its moving statistics would not
    settle, and inference would run on wrong statistics.

    Args:
        image_shape: (H, W, C).
        num_classes: the number of classes.
        seed: the weights' seed.

    Returns:
        (classifier, feature_model): the feature model outputs the penultimate 128-d
        features.
    """
    import keras

    from xmodal_tf.encoders import cnn_encoder

    keras.utils.set_random_seed(seed)
    encoder = cnn_encoder(
        tuple(image_shape),
        128,
        filters=(32, 64, 128),
        batch_norm=False,
        dropout=0.3,
        global_pooling="flatten",
        name="image_classifier_encoder",
    )
    images = keras.Input(tuple(image_shape), name="images")
    features = keras.layers.ReLU(name="features")(encoder(images))
    probabilities = keras.layers.Dense(num_classes, activation="softmax", name="classes")(features)
    classifier = keras.Model(images, probabilities, name="image_classifier")
    classifier.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return classifier, keras.Model(images, features, name="image_features")


def train_image_classifier(
    images, labels, epochs: int, *, seed: int = 0, batch_size: int = 128, context: RunContext | None = None
):
    """Train the independent classifier on real images, through the Trainer.

    Args:
        images: the training images.
        labels: their labels.
        epochs: the training epochs.
        seed: the seed of the weights and the shuffle.
        batch_size: the global batch (rounded down to a multiple of the replicas).
        context: the run context whose strategy trains it; None: TensorFlow's current one.

    Returns:
        (classifier, feature_model).
    """
    from xmodal_tf.data import make_dataset

    replicas = _replicas(context)
    with _scope(context):
        classifier, features = build_image_classifier(images.shape[1:], seed=seed)
    batches = make_dataset(
        images,
        labels,
        batch_size=_fixed_batch(batch_size, replicas, len(images)),
        seed=seed,
        drop_remainder=replicas > 1,
    )
    fit_compiled(classifier, batches, epochs, context)
    return classifier, features


def _scope(context: RunContext | None):
    return contextlib.nullcontext() if context is None else context.scope()


def _replicas(context: RunContext | None) -> int:
    if context is not None:
        return context.replicas
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def _fixed_batch(batch_size: int, replicas: int, rows: int) -> int:
    """A built-in (not configurable) global batch size, rounded down to a multiple of the
    replicas so that every replica gets an equal share, and at most ``rows``."""
    batch_size = min(batch_size, rows)
    if replicas > 1:
        batch_size -= batch_size % replicas
        if batch_size < 1:
            raise ValueError(f"cgan: {rows} training examples cannot fill one batch for each of {replicas} replicas.")
    return batch_size


def fit_compiled(model, batches, epochs: int, context: RunContext | None = None, **fit_arguments) -> dict:
    """Train a compiled model (its optimizer(s) and loss) with ``xmodal_tf.training.Trainer``.

    No progress lines: the callers print their own.

    Args:
        model: the compiled model.
        batches: the training dataset.
        epochs: the training epochs.
        context: the run context whose strategy trains it; None: TensorFlow's current one.
        **fit_arguments: passed to ``Trainer.fit``.

    Returns:
        The trainer's history.
    """
    if context is not None:
        trainer = context.trainer(model, None, progress=False)
    else:
        from xmodal_tf.training import Trainer

        trainer = Trainer(model, None, progress=False)
    return trainer.fit(batches, epochs, **fit_arguments)


def predict_classes(model, inputs, batch_size: int = 1000) -> np.ndarray:
    return np.argmax(model.predict(inputs, batch_size=batch_size, verbose=0), axis=1)


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets, as in FID.

    ||mu_a - mu_b||^2 + trace(S_a) + trace(S_b) - 2 trace((S_a^1/2 S_b S_a^1/2)^1/2).
    The square roots are taken through symmetric eigen-decompositions (negative round-off
    eigenvalues clipped), so singular covariances (dead ReLU features) are fine.

    Args:
        features_a: (n, d) features.
        features_b: (m, d) features.

    Returns:
        The distance, a float.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    cross = np.sum(np.sqrt(np.clip(middle, 0, None)))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)


def train_audio_classifier(frames, labels, config: dict, seed: int, context: RunContext | None = None):
    """Train an ``rnn_encoder`` / ``attention_encoder`` + softmax classifier of recordings.

    Trained through the Trainer on the strategy of ``context``.

    Args:
        frames: the recordings' MFCC frames.
        labels: their digits.
        config: the resolved configuration.
        seed: the seed of the weights and the shuffle.
        context: the run context; None: TensorFlow's current strategy.

    Returns:
        (classifier, encoder).
    """
    import keras

    from xmodal_tf.data import make_dataset
    from xmodal_tf.encoders import attention_encoder, rnn_encoder

    keras.utils.set_random_seed(seed)
    input_dim, max_length = frames.shape[2], frames.shape[1]
    with _scope(context):
        if config["audio_encoder"] == "rnn":
            encoder = rnn_encoder(
                input_dim=input_dim,
                embedding_dim=config["audio_embedding_dim"],
                units=(64,),
                cell="gru",
                name="audio_encoder",
            )
        else:
            encoder = attention_encoder(
                input_dim=input_dim,
                max_length=max_length,
                embedding_dim=config["audio_embedding_dim"],
                model_dim=64,
                num_heads=4,
                num_layers=2,
                ff_dim=128,
                name="audio_encoder",
            )
        inputs = keras.Input(frames.shape[1:], name="audio")
        classifier = keras.Model(
            inputs,
            keras.layers.Dense(NUM_CLASSES, activation="softmax", name="classes")(encoder(inputs)),
            name="audio_classifier",
        )
        classifier.compile(
            optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    replicas = _replicas(context)
    batches = make_dataset(
        frames, labels, batch_size=_fixed_batch(64, replicas, len(frames)), seed=seed, drop_remainder=replicas > 1
    )
    fit_compiled(classifier, batches, config["audio_epochs"], context)
    classifier.trainable = False
    return classifier, encoder


def audio_codes(classifier, encoder, frames, audio_code: str) -> np.ndarray:
    """The GAN's condition vectors for recordings.

    Args:
        classifier: the frozen audio classifier.
        encoder: its encoder.
        frames: the recordings.
        audio_code: "embedding" for the encoder's embedding, else the classifier's
            probabilities.

    Returns:
        float32 (n, d) condition vectors.
    """
    model = encoder if audio_code == "embedding" else classifier
    return model.predict(frames, batch_size=512, verbose=0).astype(np.float32)


# ----------------------------------------------------------------------------- GAN
def build_gan(image_shape, config: dict, *, num_classes=None, condition_dim=None, seed: int = 0):
    """The default recipe of ``xmodal_tf.models.cgan``, compiled.

    Call it in ``context.scope()``: it creates the networks and their optimizers.
    """
    import keras

    from xmodal_tf.models.cgan import ConditionalGAN, build_discriminator, build_generator

    keras.utils.set_random_seed(seed)
    kind = {"num_classes": num_classes, "condition_dim": condition_dim}
    config = resolve_data_defaults(config)
    latent_dim = config["latent_dim"]
    generator = build_generator(image_shape, latent_dim, base_filters=config["generator_filters"], **kind)
    classifies = num_classes is not None and (config["classifier_weight"] > 0 or config["classifier_fake_weight"] > 0)
    discriminator = build_discriminator(
        image_shape,
        base_filters=config["discriminator_filters"],
        spectral_normalization=config["spectral_normalization"],
        classifier_head=classifies,
        **kind,
    )
    gan = ConditionalGAN(
        generator,
        discriminator,
        seed=seed,
        ema_decay=config["ema_decay"],
        ema_warmup=config["ema_warmup"],
        truncation=config["truncation"],
        **kind,
    )

    def adam():
        return keras.optimizers.Adam(learning_rate_schedule(config), beta_1=0.5)

    classifier_weights = (
        {key: config[key] for key in ("classifier_weight", "classifier_fake_weight", "classifier_margin")}
        if classifies
        else {}
    )
    gan.compile(
        g_optimizer=adam(), d_optimizer=adam(), loss=config["loss"], r1_weight=config["r1_weight"], **classifier_weights
    )
    return gan


def learning_rate_schedule(config: dict):
    """The GAN's learning rate.

    Args:
        config: the resolved configuration.

    Returns:
        ``learning_rate`` (constant), or a ``keras.optimizers.schedules`` object
        decaying it to 0 over ``steps`` optimizer steps ("linear" or "cosine").
    """
    import keras

    rate, kind = config["learning_rate"], config["learning_rate_schedule"]
    if kind == "constant":
        return rate
    if kind == "linear":
        return keras.optimizers.schedules.PolynomialDecay(rate, config["steps"], end_learning_rate=0.0, power=1.0)
    return keras.optimizers.schedules.CosineDecay(rate, config["steps"], alpha=0.0)


def gan_batches(images, conditions, config: dict, batch_size: int, seed: int, labels=None):
    """The endless, shuffled ``tf.data.Dataset`` of (images, conditions) batches the GAN trains on.

    With ``balanced_batches`` (and ``labels``) each example is drawn from a class chosen
    uniformly at random, so every class is requested equally often.

    Args:
        images: the training images.
        conditions: their conditions.
        config: the resolved configuration.
        batch_size: the global batch.
        seed: the shuffle's seed.
        labels: the class of each image, for ``balanced_batches``.
    """
    import tensorflow as tf

    if not config["balanced_batches"] or labels is None:
        dataset = (
            tf.data.Dataset.from_tensor_slices((images, conditions))
            .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
            .repeat()
        )
    else:
        per_class = []
        for k, label in enumerate(np.unique(labels)):
            rows = np.flatnonzero(labels == label)
            per_class.append(
                tf.data.Dataset.from_tensor_slices((images[rows], conditions[rows]))
                .shuffle(len(rows), seed=seed + k, reshuffle_each_iteration=True)
                .repeat()
            )
        dataset = tf.data.Dataset.sample_from_datasets(per_class, seed=seed)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def train_gan(gan, images, conditions, config: dict, context: RunContext, grid_conditions, labels=None) -> dict:
    """Fit for ``steps`` steps, in "epochs" of ``steps_per_epoch`` steps (logs + image grid).

    Args:
        gan: the compiled ``ConditionalGAN``.
        images: the training images.
        conditions: their conditions.
        config: the resolved configuration.
        context: the run context.
        grid_conditions: the conditions of the image grid's rows.
        labels: the class of each image, for ``balanced_batches``.

    Returns:
        The steps, batch size, training time and final logs.
    """
    steps = config["steps"]
    per_epoch = min(steps, config["steps_per_epoch"] or max(1, steps // 10))
    epochs = -(-steps // per_epoch)
    check_global_batch(config["batch_size"], context.replicas, "cgan")
    batch_size = _fixed_batch(config["batch_size"], context.replicas, len(images))
    # One iterator runs on across the "epochs" of per_epoch steps (the Trainer's steps_per_epoch).
    dataset = gan_batches(images, conditions, config, batch_size, context.seed, labels=labels)
    callbacks = [_progress_callback(context, per_epoch)]
    callbacks += _image_callbacks(context, grid_conditions)
    # The GAN comes compiled (optimizers, loss, R1 weight): optimizer=None keeps that.
    trainer = context.trainer(gan, None, progress=False)
    history = trainer.fit(dataset, epochs, steps_per_epoch=per_epoch, callbacks=callbacks)
    return {
        "steps": per_epoch * epochs,
        "batch_size": batch_size,
        "train_seconds": trainer.train_seconds,
        **{f"final_{key}": float(values[-1]) for key, values in history.items() if key not in _TRAINER_LOGS},
    }


_TRAINER_LOGS = ("epoch", "steps", "seconds")  # the Trainer's own entries beside the model's logs


def _image_callbacks(context: RunContext, grid_conditions) -> list:
    try:
        from xmodal_tf.training.callbacks import GeneratedImagesCallback
    except ImportError:  # the callback module is optional for this experiment
        return []
    return [GeneratedImagesCallback(str(context.logdir), grid_conditions, n_per_condition=8, seed=0)]


def _progress_callback(context: RunContext, steps_per_epoch: int):
    """Progress lines and TensorBoard scalars (``gan/<log>``) after every epoch of steps."""
    import keras

    def report(epoch, logs):
        step = (epoch + 1) * steps_per_epoch
        values = {key: float(value) for key, value in (logs or {}).items() if key not in _TRAINER_LOGS}
        context.log_scalars(values, step=step, prefix="train/")
        context.progress(f"GAN step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(values.items())))

    return keras.callbacks.LambdaCallback(on_epoch_end=report)


# ----------------------------------------------------------------------------- evaluation
def score_label_gan(gan, classifier, features, test_images, samples: int) -> dict:
    """Score a label-conditioned GAN.

    Args:
        gan: the trained GAN.
        classifier: the independent image classifier.
        features: its feature model.
        test_images: the real test images.
        samples: images generated per class.

    Returns:
        The accuracy of generated images against the requested class, and the Frechet
        distance to the real test images in the classifier's feature space.
    """
    requested = np.repeat(np.arange(NUM_CLASSES), samples)
    generated = gan.generate(np.arange(NUM_CLASSES), n=samples, seed=1)
    predicted = predict_classes(classifier, generated)
    per_class = [float(np.mean(predicted[requested == k] == k)) for k in range(NUM_CLASSES)]
    distance = frechet_distance(
        features.predict(generated, batch_size=1000, verbose=0),
        features.predict(test_images, batch_size=1000, verbose=0),
    )
    return {
        "generated_accuracy": float(np.mean(predicted == requested)),
        "generated_accuracy_per_class": per_class,
        "frechet_distance": distance,
        "generated_images": int(len(generated)),
    }


def score_audio_gan(gan, classifier, codes, spoken_digits, samples: int) -> dict:
    """Accuracy of images generated from held-out recordings against the spoken digit."""
    generated = gan.generate(codes, n=samples, seed=1)
    predicted = predict_classes(classifier, generated)
    spoken = np.repeat(spoken_digits, samples)
    return {
        "generated_accuracy_vs_spoken_digit": float(np.mean(predicted == spoken)),
        "generated_images": int(len(generated)),
        "held_out_recordings": int(len(codes)),
    }


def log_samples(context: RunContext, gan, conditions, row_titles: list, title: str) -> None:
    """Log the key figure, ``generated_samples.png`` and its TensorBoard image.

    ``FIGURE_SAMPLES`` images per condition, a row each (seeded noise: the same run
    draws the same images).

    Args:
        context: the run context.
        gan: the trained GAN.
        conditions: one condition per row.
        row_titles: the rows' titles.
        title: the figure's title.
    """
    from xmodal_tf import plots

    images = gan.generate(conditions, n=FIGURE_SAMPLES, seed=0)
    titles = [
        row_titles[index // FIGURE_SAMPLES] if index % FIGURE_SAMPLES == 0 else "" for index in range(len(images))
    ]
    context.log_figure(
        "generated_samples", plots.image_grid(images, titles=titles, columns=FIGURE_SAMPLES, title=title)
    )


# ----------------------------------------------------------------------------- run
def load(config: dict, data_dir, seed: int) -> dict:
    """The ``load_data`` hook: every data file the run reads, checked before it starts.

    Returns:
        {"images": ``load_images``'s tuple, and for audio conditions "speech" (the spoken
        digits) and, on MNIST, "av_mnist" (images paired with recordings of their digit:
        the same recording split as "speech", from the same seed)}.
    """
    data = {"images": load_images(config, data_dir)}
    if config["condition"] != "label":
        from xmodal_tf.data import load_av_mnist, load_spoken_digits

        data["speech"] = load_spoken_digits(data_dir, seed=seed)
        if config["data"] == "mnist":
            data["av_mnist"] = load_av_mnist(data_dir, seed=seed, train_size=config["train_size"])
    return data


def run(config: dict, context: RunContext) -> dict:
    config = resolve_data_defaults(config)
    check_global_batch(config["batch_size"], context.replicas, "cgan")  # before loading anything
    data = context.data if context.data is not None else load(config, context.data_dir, context.seed)
    train_images, train_labels, test_images, test_labels, description = data["images"]
    context.progress(
        f"{description}: {len(train_images)} training / {len(test_images)} test images {train_images.shape[1:]}"
    )
    metrics = {"data": config["data"], "condition": config["condition"], "image_shape": list(train_images.shape[1:])}

    epochs = config["classifier_epochs"]
    context.progress(f"training the independent image classifier ({epochs} epochs) ...")
    classifier, features = train_image_classifier(
        train_images, train_labels, epochs, seed=context.seed, context=context
    )
    metrics["classifier_test_accuracy"] = float(np.mean(predict_classes(classifier, test_images) == test_labels))
    context.progress(f"image classifier test accuracy {metrics['classifier_test_accuracy']:.4f}")

    if config["condition"] == "label":
        with context.scope():
            gan = build_gan(train_images.shape[1:], config, num_classes=NUM_CLASSES, seed=context.seed)
        metrics.update(
            train_gan(gan, train_images, train_labels, config, context, np.arange(NUM_CLASSES), labels=train_labels)
        )
        metrics.update(score_label_gan(gan, classifier, features, test_images, config["samples_per_condition"]))
        log_samples(
            context,
            gan,
            np.arange(NUM_CLASSES),
            [f"digit {k}" for k in range(NUM_CLASSES)],
            f"generated images, a row per requested digit ({config['data']})",
        )
        headline = ("generated_accuracy", metrics["generated_accuracy"])
        context.progress(
            f"generated images labelled as requested: {metrics['generated_accuracy']:.4f}; "
            f"Frechet distance to the test images {metrics['frechet_distance']:.3f}"
        )
    else:
        metrics.update(_run_audio(config, context, data, train_images, train_labels, classifier))
        headline = ("generated_accuracy_vs_spoken_digit", metrics["generated_accuracy_vs_spoken_digit"])
    for key in ("classifier_test_accuracy", headline[0], "frechet_distance", "audio_test_accuracy"):
        if key in metrics:
            context.log_scalar(f"test/{key}", metrics[key])
    return metrics


def _run_audio(config, context, data: dict, train_images, train_labels, image_classifier) -> dict:
    speech = data["speech"]
    frames, labels = speech.train.inputs["audio"], speech.train.labels
    context.progress(
        f"training the {config['audio_encoder']} audio classifier on {len(labels)} recordings "
        f"({config['audio_epochs']} epochs) ..."
    )
    audio_classifier, encoder = train_audio_classifier(frames, labels, config, context.seed, context)
    test_frames, test_digits = speech.test.inputs["audio"], speech.test.labels
    results = {"audio_test_accuracy": float(np.mean(predict_classes(audio_classifier, test_frames) == test_digits))}
    context.progress(
        f"audio classifier accuracy on {len(test_digits)} held-out recordings {results['audio_test_accuracy']:.4f}"
    )

    if config["data"] == "mnist":
        # load_av_mnist pairs each training image with a training recording of its digit
        # (the same recording split as load_spoken_digits with the same seed).
        av = data["av_mnist"]
        paired_frames = av.train.inputs["audio"]
        train_images, train_labels = av.train.inputs["image"], av.train.labels
    else:
        paired_frames = frames[pair_recordings(train_labels, labels, context.seed)]
    conditions = audio_codes(audio_classifier, encoder, paired_frames, config["audio_code"])
    test_codes = audio_codes(audio_classifier, encoder, test_frames, config["audio_code"])
    first_per_digit = [int(np.flatnonzero(test_digits == digit)[0]) for digit in range(NUM_CLASSES)]
    with context.scope():
        gan = build_gan(train_images.shape[1:], config, condition_dim=conditions.shape[1], seed=context.seed)
    context.progress(f"conditioning the GAN on the audio {config['audio_code']} ({conditions.shape[1]} values)")
    results.update(
        train_gan(gan, train_images, conditions, config, context, test_codes[first_per_digit], labels=train_labels)
    )
    samples = min(config["samples_per_condition"], AUDIO_SAMPLES_CAP)
    results.update(score_audio_gan(gan, image_classifier, test_codes, test_digits, samples))
    log_samples(
        context,
        gan,
        test_codes[first_per_digit],
        [f"spoken {digit}" for digit in range(NUM_CLASSES)],
        f"generated images, a row per held-out recording of each digit ({config['data']})",
    )
    context.progress(
        f"images generated from held-out recordings labelled as the spoken digit: "
        f"{results['generated_accuracy_vs_spoken_digit']:.4f}"
    )
    return results


def check_rules(config: dict) -> None:
    """ConfigError for classifier terms without class labels (the table checks the rest)."""
    config = resolve_data_defaults(config)
    if (config["classifier_weight"] > 0 or config["classifier_fake_weight"] > 0) and config["condition"] != "label":
        raise ConfigError(
            "classifier_weight / classifier_fake_weight need class labels as the condition "
            f"(condition=label); got condition={config['condition']!r}. Fix: --set classifier_weight=0 "
            "--set classifier_fake_weight=0, or --set condition=label."
        )


def summarize(metrics: dict) -> list[str]:
    lines = [
        f"cgan on {metrics['data']} {tuple(metrics['image_shape'])}, condition = {metrics['condition']}: "
        f"{metrics['steps']} GAN steps of {metrics['batch_size']} in {metrics['train_seconds']:.0f} s",
        f"{'independent classifier, real test images':<58} {metrics['classifier_test_accuracy']:.4f}",
    ]
    if metrics["condition"] == "label":
        per_class = metrics["generated_accuracy_per_class"]
        lines += [
            f"{'generated images labelled as the requested class':<58} {metrics['generated_accuracy']:.4f}",
            f"{'  lowest class (digit ' + str(int(np.argmin(per_class))) + ')':<58} {min(per_class):.4f}",
            "  per class: " + " ".join(f"{k}:{value:.3f}" for k, value in enumerate(per_class)),
            f"{'Frechet distance to test images (classifier features)':<58} {metrics['frechet_distance']:.3f}",
        ]
    else:
        lines += [
            f"{'audio classifier, held-out recordings':<58} {metrics['audio_test_accuracy']:.4f}",
            f"{'images from held-out recordings labelled as spoken digit':<58} "
            f"{metrics['generated_accuracy_vs_spoken_digit']:.4f}",
        ]
    return lines


EXPERIMENT = register(globals(), name="cgan", description=DESCRIPTION)
