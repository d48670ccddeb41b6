"""Experiment ``mae``: a multimodal autoencoder with and without modality dropout.

Two ``MultimodalAutoencoder``s (Ngiam et al., 2011) with the same architecture, data
and seed train side by side: one with modality dropout (a share of every batch keeps
only one modality but must reconstruct both), one without. Data: the halves of
scikit-learn's 8x8 digits (offline), or with ``--set data=av_mnist --data-dir DIR``
MNIST images paired with spoken digits. Both are judged on their frozen shared codes:
cross-modal and within-modality linear probes, robustness to a modality replaced by
noise, reconstruction and translation errors. The key figures,
``reconstructions_<modality>.png``: test examples, their reconstructions and their
translations from the other modality, by each model.

Design notes (evaluation, TensorBoard, strategies): docs/DESIGN.md (section xmodal_tf/experiments/mae.py).
"""

from __future__ import annotations

import numpy as np

from xmodal_tf.experiments.base import TRAINING_CONSTRAINTS, TRAINING_SETTINGS, RunContext, check_global_batch, register
from xmodal_tf.experiments.config import Interval, ListOf, Options

DESCRIPTION = (
    "multimodal autoencoder with vs without modality dropout: cross-modal probes "
    "(digits halves offline; av_mnist with --data-dir)"
)

DATA_SETS = ("digits", "av_mnist")
MODALITIES = {"digits": ("left", "right"), "av_mnist": ("image", "audio")}
MODELS = ("dropout", "no_dropout")
AUDIO_ENCODERS = ("rnn", "attention")
CHANCE = 0.1  # ten balanced digit classes

DEFAULTS = {
    "data": "digits",
    "modality_dropout": 0.5,  # share of each training batch that keeps one modality only (the dropout model)
    "code_dim": None,  # shared code size; None: per data set
    "embedding_dim": None,  # each encoder's output size; None: per data set
    "filters": None,  # CNN encoder filters per block (the decoders mirror them); None: per data set
    "batch_norm": True,  # BatchNormalization in the CNN encoders
    "audio_encoder": "rnn",  # av_mnist: "rnn" (GRU) or "attention" (Transformer)
    "decoder_hidden_units": None,  # dense decoders' hidden layers; None: per data set
    "epochs": None,  # None: per data set
    "batch_size": None,  # None: per data set
    "learning_rate": 1e-3,
    "train_size": None,  # training pairs used (first n); None: per data set (all for digits)
    "validation_size": 2000,  # validation pairs for the Keras loss curves (at most)
    "probe_size": None,  # training codes the linear probes fit on; None: per data set
    "images_every": None,  # epochs between image grids; None: epochs // 5
    **TRAINING_SETTINGS,  # mixed_precision, jit (xmodal_tf.precision)
}
DATA_DEFAULTS = {
    "digits": {
        "code_dim": 32,
        "embedding_dim": 32,
        "filters": [32],
        "decoder_hidden_units": [64],
        "epochs": 40,
        "batch_size": 64,
        "train_size": None,
        "probe_size": None,
    },
    "av_mnist": {
        "code_dim": 64,
        "embedding_dim": 64,
        "filters": [16, 32],
        "decoder_hidden_units": [256],
        "epochs": 6,
        "batch_size": 128,
        "train_size": 10000,
        "probe_size": 10000,
    },
}
INFERENCE_BATCH = 512


# ----------------------------------------------------------------------------- configuration
POSITIVE = Interval(int, 1, None)
CONSTRAINTS = {
    "data": [Options(*DATA_SETS)],
    "modality_dropout": [Interval(float, 0, 1, closed="right")],
    "code_dim": [POSITIVE, None],
    "embedding_dim": [POSITIVE, None],
    "filters": [ListOf(POSITIVE, min_length=1), None],
    "batch_norm": [bool],
    "audio_encoder": [Options(*AUDIO_ENCODERS)],
    "decoder_hidden_units": [ListOf(POSITIVE, min_length=1), None],
    "epochs": [POSITIVE, None],
    "batch_size": [POSITIVE, None],
    "learning_rate": [Interval(float, 0, None, closed="neither")],
    "train_size": [POSITIVE, None],
    "validation_size": [POSITIVE],
    "probe_size": [POSITIVE, None],
    "images_every": [POSITIVE, None],
    **TRAINING_CONSTRAINTS,
}
NOTES = {
    **{key: "null: the data set's default" for key in DATA_DEFAULTS["digits"]},
    "modality_dropout": "the share of each batch that keeps one modality only; the other model has none",
    "images_every": "epochs between image grids; null: epochs // 5",
}
FIGURE_EXAMPLES = 8  # test examples in reconstructions_<modality>.png


def settings_for(config: dict) -> dict:
    """The configuration with every None per-data-set setting filled in."""
    defaults = DATA_DEFAULTS[config["data"]]
    settings = {key: (defaults[key] if key in defaults and value is None else value) for key, value in config.items()}
    if settings["images_every"] is None:
        settings["images_every"] = max(1, settings["epochs"] // 5)
    return settings


def load_data(settings: dict, data_dir):
    from xmodal_tf import data

    if settings["data"] == "av_mnist":
        return data.load_av_mnist(data_dir, train_size=settings["train_size"])
    dataset = data.load_multimodal_digits(MODALITIES["digits"])
    if settings["train_size"] is not None:
        dataset = dataset._replace(train=dataset.train.subset(slice(0, settings["train_size"])))
    return dataset


# ----------------------------------------------------------------------------- model
def build_model(shapes: dict, settings: dict, modality_dropout: float, seed: int, *, sync_batch_norm: bool = False):
    """A MultimodalAutoencoder: CNN encoders for images, a GRU/Transformer for (frames, 13) sequences.

    The decoders mirror the encoders.

    Args:
        shapes: {modality: example shape}.
        settings: the resolved settings.
        modality_dropout: the autoencoder's modality dropout.
        seed: the seed of the weights and the dropout draws.
        sync_batch_norm: BatchNorm statistics of the global batch (several replicas).
    """
    import keras

    from xmodal_tf.encoders import attention_encoder, cnn_encoder, rnn_encoder
    from xmodal_tf.models.mae import MultimodalAutoencoder, dense_decoder, image_decoder

    keras.utils.set_random_seed(seed)  # the same initial weights for both models
    code_dim, embedding_dim, filters = settings["code_dim"], settings["embedding_dim"], tuple(settings["filters"])
    encoders, decoders = {}, {}
    for name, shape in shapes.items():
        if len(shape) == 3:
            # Flatten, not global pooling: a reconstruction needs to know where things are.
            encoders[name] = cnn_encoder(
                shape,
                embedding_dim,
                filters=filters,
                global_pooling="flatten",
                batch_norm=settings["batch_norm"],
                sync_batch_norm=sync_batch_norm,
                dropout=0.0,
                name=f"{name}_encoder",
            )  # the measured recipe
            # Images in [0, 1]: the measured recipe's sigmoid output.
            decoders[name] = image_decoder(
                code_dim, shape, filters=tuple(reversed(filters)), output_activation="sigmoid", name=f"{name}_decoder"
            )
        else:
            frames, features = shape
            if settings["audio_encoder"] == "attention":
                encoders[name] = attention_encoder(
                    input_dim=features,
                    max_length=frames,
                    embedding_dim=embedding_dim,
                    model_dim=64,
                    num_heads=4,
                    num_layers=1,
                    ff_dim=128,
                    name=f"{name}_encoder",
                )
            else:
                encoders[name] = rnn_encoder(
                    input_dim=features,
                    max_length=frames,
                    embedding_dim=embedding_dim,
                    units=(64,),
                    cell="gru",
                    name=f"{name}_encoder",
                )
            # Standardised MFCCs: a linear output.
            decoders[name] = dense_decoder(
                code_dim, shape, hidden_units=tuple(settings["decoder_hidden_units"]), name=f"{name}_decoder"
            )
    return MultimodalAutoencoder(encoders, decoders, code_dim=code_dim, modality_dropout=modality_dropout, seed=seed)


def global_batches(inputs: dict, batch_size: int, replicas: int, *, seed=None, shuffle: bool = False):
    """A dataset of global batches of ``inputs``.

    With several replicas the last partial batch is dropped (every replica gets an
    equal share of every batch).

    Args:
        inputs: {modality: (n, ...) array}.
        batch_size: the global batch.
        replicas: the strategy's number of replicas.
        seed: the shuffle's seed.
        shuffle: reshuffle on every pass.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(inputs)
    if shuffle:
        rows = len(next(iter(inputs.values())))
        dataset = dataset.shuffle(rows, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=replicas > 1).prefetch(tf.data.AUTOTUNE)


def validation_batches(dataset, settings: dict, replicas: int):
    """The first ``validation_size`` validation pairs in global batches (None: none)."""
    if dataset.validation is None:
        return None
    rows = min(settings["validation_size"], len(dataset.validation))
    batch_size = min(INFERENCE_BATCH, rows) if replicas > 1 else INFERENCE_BATCH
    batch_size -= batch_size % replicas  # whole batches only, split evenly
    if batch_size < 1:
        return None
    return global_batches({key: value[:rows] for key, value in dataset.validation.inputs.items()}, batch_size, replicas)


def train(name: str, model, optimizer, dataset, settings: dict, context: RunContext) -> float:
    """Train through ``context.trainer`` with the TensorBoard callbacks.

    Returns:
        The training time in seconds (over every segment of a resumed run).
    """
    from xmodal_tf.training.callbacks import EmbeddingProjectorCallback, ReconstructionImagesCallback

    replicas = context.replicas
    batches = global_batches(dataset.train.inputs, settings["batch_size"], replicas, seed=context.seed, shuffle=True)
    validation = validation_batches(dataset, settings, replicas)
    folder = context.logdir / name
    test = dataset.test
    modalities = dataset.modalities
    callbacks = [
        ReconstructionImagesCallback(
            folder, {key: value[:8] for key, value in test.inputs.items()}, every=settings["images_every"]
        ),
        EmbeddingProjectorCallback(
            folder,
            _head(test.inputs, 2000),
            test.labels[:2000],
            present=[[m] for m in modalities] + [list(modalities)],
            every=settings["epochs"],
        ),
        progress_callback(name, settings["epochs"], context),
    ]
    # The trainer writes the loss curves (<model>/train, <model>/validation); progress
    # lines come from progress_callback, every ~10 % of the epochs.
    trainer = context.trainer(model, optimizer, logdir=folder, progress=False)
    trainer.fit(batches, settings["epochs"], validation_data=validation, callbacks=callbacks)
    return trainer.train_seconds


_TRAINER_LOGS = ("steps", "seconds")  # the trainer's own entries in an epoch's logs


def _head(inputs: dict, count: int) -> dict:
    return {key: value[:count] for key, value in inputs.items()}


def progress_callback(name: str, epochs: int, context: RunContext):
    """A Keras callback printing one progress line every ~10 % of the epochs."""
    import keras

    every = max(1, epochs // 10)

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % every == 0 or epoch + 1 == epochs:
                values = ", ".join(
                    f"{key} {value:.4f}" for key, value in (logs or {}).items() if key not in _TRAINER_LOGS
                )
                context.progress(f"{name}: epoch {epoch + 1}/{epochs}: {values}")

    return Progress()


# ----------------------------------------------------------------------------- evaluation
def noisy(array: np.ndarray, reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise shaped like ``array`` with ``reference``'s mean and std, clipped to its range.

    Args:
        array: gives the shape and dtype.
        reference: gives the mean, std and range.
        rng: the random draws.
    """
    noise = rng.normal(reference.mean(), reference.std(), size=array.shape)
    return np.clip(noise, reference.min(), reference.max()).astype(array.dtype)


def evaluate(name: str, model, dataset, settings: dict, context: RunContext) -> dict:
    """Probe accuracies, reconstruction and translation errors of one trained model."""
    from xmodal_tf.metrics import linear_probe

    a, b = dataset.modalities
    probe_rows = slice(0, settings["probe_size"])
    train_inputs = _head(dataset.train.inputs, settings["probe_size"] or len(dataset.train))
    train_labels = dataset.train.labels[probe_rows]
    test_inputs, test_labels = dataset.test.inputs, dataset.test.labels

    def codes(inputs, present):
        return model.encode(inputs, present=present, batch_size=INFERENCE_BATCH)

    train_codes = {key: codes(train_inputs, present) for key, present in ((a, [a]), (b, [b]), ("both", [a, b]))}
    test_codes = {key: codes(test_inputs, present) for key, present in ((a, [a]), (b, [b]), ("both", [a, b]))}
    rng = np.random.default_rng(context.seed)
    for modality in (a, b):
        replaced = dict(test_inputs)
        replaced[modality] = noisy(test_inputs[modality], dataset.train.inputs[modality], rng)
        test_codes[f"both_{modality}_noise"] = codes(replaced, [a, b])

    probes = {}
    for key, train_key, test_key in (
        (f"{a}_to_{b}", a, b),
        (f"{b}_to_{a}", b, a),
        (f"{a}_to_{a}", a, a),
        (f"{b}_to_{b}", b, b),
        ("both_to_both", "both", "both"),
        (f"both_{a}_noise", "both", f"both_{a}_noise"),
        (f"both_{b}_noise", "both", f"both_{b}_noise"),
    ):
        probes[key] = linear_probe(train_codes[train_key], train_labels, test_codes[test_key], test_labels)["accuracy"]

    logs = model.evaluate(_dataset_of(test_inputs), verbose=0, return_dict=True)
    reconstruction = {modality: float(logs[f"reconstruction_{modality}"]) for modality in (a, b)}
    translation = {}
    for source, target in ((a, b), (b, a)):
        translated = model.translate(test_inputs, source=source, target=target, batch_size=INFERENCE_BATCH)
        translation[f"{source}_to_{target}"] = float(np.mean((translated - test_inputs[target]) ** 2))
    for group, values in (
        ("probe_accuracy", probes),
        ("test_reconstruction_mse", reconstruction),
        ("test_translation_mse", translation),
    ):
        context.log_scalars(values, prefix=f"test/{name}/{group}/")
    context.progress(
        f"{name}: cross-modal probe {a}->{b} {probes[f'{a}_to_{b}']:.3f}, "
        f"{b}->{a} {probes[f'{b}_to_{a}']:.3f} (chance {CHANCE:.2f})"
    )
    return {"probe_accuracy": probes, "test_reconstruction_mse": reconstruction, "test_translation_mse": translation}


def log_reconstructions(context: RunContext, models: dict, inputs: dict) -> None:
    """Log the key figures, ``reconstructions_<modality>.png`` and their TensorBoard images.

    Per modality, the examples in the first row, then for each model their
    reconstructions from both modalities and their translations from the other
    modality alone.

    Args:
        context: the run context.
        models: {name: trained model}.
        inputs: a few test examples {modality: array}.
    """
    from xmodal_tf import plots

    modalities = list(inputs)
    for modality in modalities:
        other = next(name for name in modalities if name != modality)
        rows = {"original": inputs[modality]}
        for name, model in models.items():
            rows[f"{name}: from both"] = model.reconstruct(inputs, modalities, batch_size=INFERENCE_BATCH)[modality]
            rows[f"{name}: from {other}"] = model.translate(
                inputs, source=other, target=modality, batch_size=INFERENCE_BATCH
            )
        count = len(inputs[modality])
        titles = [label if column == 0 else "" for label in rows for column in range(count)]
        figure = plots.image_grid(
            np.concatenate([np.asarray(row, np.float32) for row in rows.values()]),
            titles=titles,
            columns=count,
            title=f"{modality}: test examples, reconstructed from both modalities and translated from the other alone",
        )
        context.log_figure(f"reconstructions_{modality}", figure)


def _dataset_of(inputs: dict):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(inputs).batch(INFERENCE_BATCH)


# ----------------------------------------------------------------------------- run and report
def load(config: dict, data_dir, seed: int):
    """The ``load_data`` hook: the data set, read and checked before the run starts."""
    return load_data(settings_for(config), data_dir)


def run(config: dict, context: RunContext) -> dict:
    import keras

    settings = settings_for(config)
    check_global_batch(settings["batch_size"], context.replicas, "mae")  # before loading anything
    dataset = context.data if context.data is not None else load(config, context.data_dir, context.seed)
    shapes = {name: dataset.train.inputs[name].shape[1:] for name in dataset.modalities}
    context.progress(
        f"{dataset.description}: modalities {shapes}, {len(dataset.train)} training / {len(dataset.test)} test pairs"
    )
    check_global_batch(settings["batch_size"], context.replicas, "mae", rows=len(dataset.train))
    results, models = {}, {}
    for name, dropout in (("dropout", settings["modality_dropout"]), ("no_dropout", 0.0)):
        with context.scope():
            # Several replicas: BatchNorm on the global batch's statistics, as on one device.
            model = build_model(shapes, settings, dropout, context.seed, sync_batch_norm=context.replicas > 1)
            optimizer = keras.optimizers.Adam(settings["learning_rate"])
        context.progress(
            f"{name}: modality_dropout={dropout:g}, {settings['epochs']} epochs of batch {settings['batch_size']} ..."
        )
        seconds = train(name, model, optimizer, dataset, settings, context)
        results[name] = {
            **evaluate(name, model, dataset, settings, context),
            "modality_dropout": dropout,
            "train_seconds": seconds,
        }
        models[name] = model
    log_reconstructions(context, models, _head(dataset.test.inputs, FIGURE_EXAMPLES))
    return {
        "data": settings["data"],
        "modalities": list(dataset.modalities),
        "chance_accuracy": CHANCE,
        "num_train": len(dataset.train),
        "num_test": len(dataset.test),
        "results": results,
        "recipe": {
            key: settings[key]
            for key in (
                "modality_dropout",
                "code_dim",
                "embedding_dim",
                "filters",
                "batch_norm",
                "audio_encoder",
                "decoder_hidden_units",
                "epochs",
                "batch_size",
                "learning_rate",
                "train_size",
                "probe_size",
            )
        },
    }


def summarize(metrics: dict) -> list[str]:
    a, b = metrics["modalities"]
    results = metrics["results"]
    chance = f"{metrics['chance_accuracy']:8.3f}"
    lines = [
        f"multimodal autoencoder on {metrics['data']} ({a} + {b}), {metrics['num_train']} training "
        f"pairs; linear probes on frozen shared codes, test accuracy",
        f"{'':44} {'dropout':>10} {'no_dropout':>10} {'chance':>8}",
    ]

    def row(label, group, key, chance_text="", fmt="10.3f"):
        values = " ".join(format(results[name][group][key], fmt) for name in MODELS)
        lines.append(f"  {label:<42} {values} {chance_text}")

    row(f"train on {a} codes, test on {b} codes", "probe_accuracy", f"{a}_to_{b}", chance)
    row(f"train on {b} codes, test on {a} codes", "probe_accuracy", f"{b}_to_{a}", chance)
    row(f"{a} codes -> {a} codes", "probe_accuracy", f"{a}_to_{a}", chance)
    row(f"{b} codes -> {b} codes", "probe_accuracy", f"{b}_to_{b}", chance)
    row("both -> both", "probe_accuracy", "both_to_both", chance)
    row(f"both -> both with {a} replaced by noise", "probe_accuracy", f"both_{a}_noise", chance)
    row(f"both -> both with {b} replaced by noise", "probe_accuracy", f"both_{b}_noise", chance)
    lines.append("test reconstruction MSE (from both) and translation MSE")
    for modality in (a, b):
        row(f"reconstruct {modality}", "test_reconstruction_mse", modality, fmt="10.4f")
    for source, target in ((a, b), (b, a)):
        row(f"translate {source} -> {target}", "test_translation_mse", f"{source}_to_{target}", fmt="10.4f")
    lines.append(f"  {'training seconds':<42} " + " ".join(f"{results[n]['train_seconds']:10.1f}" for n in MODELS))
    return lines


EXPERIMENT = register(globals(), name="mae", description=DESCRIPTION)
