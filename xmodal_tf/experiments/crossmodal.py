"""Experiment ``crossmodal``: "hearing to see", shared codes of two modalities compared.

Methods that learn shared codes of two modalities from unlabelled pairs (``linear_cca``,
``deepcca`` / ``dccae``, ``mae_dropout_0.5`` / ``mae_dropout_1.0``), trained on the same
pairs and judged by the same probe: a linear classifier trained on the codes of one
modality ALONE and tested on codes of the OTHER modality alone. Data: the halves of
scikit-learn's 8x8 digits (offline), or with ``--set data=av_mnist --data-dir DIR``
MNIST images paired with spoken digits. The key figure, ``probe_accuracy.png``: each
method's test accuracy per probe direction.

Design notes (methods, probe protocol, model selection): docs/DESIGN.md (section
xmodal_tf/experiments/crossmodal.py).
"""

from __future__ import annotations

import numpy as np

from xmodal_tf.experiments.base import TRAINING_CONSTRAINTS, TRAINING_SETTINGS, RunContext, check_global_batch, register
from xmodal_tf.experiments.config import ConfigError, Interval, ListOf, Options
from xmodal_tf.experiments.fusion import AUDIO_VALIDATION_FRACTION, load_av_mnist_held_out
from xmodal_tf.experiments.mae import global_batches

DESCRIPTION = (
    "hearing to see: linear CCA, DeepCCA, DCCAE and multimodal autoencoders compared by a probe "
    "trained on one modality's codes and tested on the other's (digits halves offline; av_mnist "
    "with --data-dir)"
)

DATA_SETS = ("digits", "av_mnist")
MODALITIES = {"digits": ("left", "right"), "av_mnist": ("image", "audio")}
METHODS = ("linear_cca", "deepcca", "dccae", "mae_dropout_0.5", "mae_dropout_1.0")
MODALITY_DROPOUT = {"mae_dropout_0.5": 0.5, "mae_dropout_1.0": 1.0}
AUDIO_ENCODERS = ("cnn", "rnn")
CHANCE = 0.1  # ten balanced digit classes
# Flattened size of the smaller modality: linear CCA keeps at most this many directions.
SMALLEST_MODALITY = {"digits": 32, "av_mnist": 784}
MAX_TRAIN_SIZE = {"digits": 1078, "av_mnist": 50000}

DEFAULTS = {
    "data": "digits",
    "methods": list(METHODS),
    "seeds": 1,  # repetitions (seed, seed + 1, ...) of every trained method: mean ± std over them
    "n_components": 10,  # canonical directions of the CCA methods (their code size)
    "linear_cca_reg": [1e-3, 1e-2, 1e-1, 1.0],  # linear_cca's ridges; the best on validation is kept
    "final_reg": [1e-6, 1e-4, 1e-2],  # deepcca / dccae: ridges of the linear CCA after training, chosen alike
    "reconstruction_weight": None,  # dccae's lambda; None: DeepCCA's default
    "code_dim": None,  # the autoencoders' shared code size (and their encoders' output); None: per data set
    "filters": None,  # CNN encoder filters per block (1 or 2 blocks; image decoders mirror them); None: per data set
    "audio_encoder": "cnn",  # av_mnist: "cnn" on the (92, 13, 1) MFCCs or "rnn" (a GRU over the frames)
    "decoder_hidden_units": None,  # the audio decoders' hidden layers; None: per data set
    "epochs": None,  # the budget of each trained model (early stopping on validation); None: per data set
    "early_stopping_patience": None,  # evaluations without improvement before stopping; None: per data set
    "batch_size": None,  # the global batch; None: per data set
    "learning_rate": 1e-3,
    "train_size": None,  # training pairs used (the first n); None: per data set (all for digits)
    "audio_validation_fraction": AUDIO_VALIDATION_FRACTION,  # av_mnist: recordings held out for validation
    "probe_c": [0.001, 0.01, 0.1, 1.0],  # the probe's C (inverse L2 strength) to try; per direction, best on validation
    "probe_size": None,  # training codes the probes fit on (the first n); None: all
    **TRAINING_SETTINGS,  # mixed_precision, jit (xmodal_tf.precision)
}
DATA_DEFAULTS = {
    "digits": {
        "code_dim": 32,
        "filters": [16],
        "decoder_hidden_units": [64],
        "epochs": 40,
        "early_stopping_patience": 5,
        "batch_size": 128,
        "train_size": None,
    },
    "av_mnist": {
        "code_dim": 64,
        "filters": [16, 32],
        "decoder_hidden_units": [256],
        "epochs": 15,
        "early_stopping_patience": 3,
        "batch_size": 256,
        "train_size": 20000,
    },
}
INFERENCE_BATCH = 512


# ----------------------------------------------------------------------------- configuration
def settings_for(config: dict) -> dict:
    """The configuration with every None per-data-set setting filled in."""
    defaults = DATA_DEFAULTS[config["data"]]
    return {key: (defaults[key] if key in defaults and value is None else value) for key, value in config.items()}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


POSITIVE = Interval(int, 1, None)
RIDGES = ListOf(Interval(float, 0, None), min_length=1, noun="ridges")
CONSTRAINTS = {
    "data": [Options(*DATA_SETS)],
    "methods": [ListOf(Options(*METHODS), min_length=1, distinct=True)],
    "seeds": [POSITIVE],
    "n_components": [POSITIVE],
    "linear_cca_reg": [RIDGES],
    "final_reg": [RIDGES],
    "reconstruction_weight": [Interval(float, 0, None, closed="neither"), None],
    "code_dim": [POSITIVE, None],
    "filters": [ListOf(POSITIVE, min_length=1, max_length=2), None],
    "audio_encoder": [Options(*AUDIO_ENCODERS)],
    "decoder_hidden_units": [ListOf(POSITIVE), None],
    "epochs": [POSITIVE, None],
    "early_stopping_patience": [POSITIVE, None],
    "batch_size": [POSITIVE, None],
    "learning_rate": [Interval(float, 0, None, closed="neither")],
    "train_size": [POSITIVE, None],
    "audio_validation_fraction": [Interval(float, 0, 1, closed="neither")],
    "probe_c": [ListOf(Interval(float, 0, None, closed="neither"), min_length=1)],
    "probe_size": [POSITIVE, None],
    **TRAINING_CONSTRAINTS,
}
NOTES = {
    **{key: "null: the data set's default" for key in DATA_DEFAULTS["digits"]},
    "train_size": "the first n training pairs; null: the data set's default (all for digits)",
    "linear_cca_reg": "to try; the best on validation is kept",
    "final_reg": "of the linear CCA after training; the best on validation is kept",
    "probe_c": "the probe's inverse L2 strengths to try, per direction",
    "reconstruction_weight": "dccae's lambda; deepcca is the method without decoders; null: DeepCCA's default",
    "filters": "the image decoders mirror the encoder's halvings: 28 and 8x4 images allow two; "
    "null: the data set's default",
    "probe_size": "the first n training codes; null: all",
}


def check_rules(config: dict) -> None:
    """Check the sizes against the data set and the components (the table checks each setting alone).

    Raises:
        ConfigError: a size the data set or the components cannot take.
    """
    settings = settings_for(config)
    data, k = settings["data"], settings["n_components"]
    if settings["train_size"] is not None and settings["train_size"] > MAX_TRAIN_SIZE[data]:
        raise ConfigError(
            f"train_size must be at most {MAX_TRAIN_SIZE[data]} for data={data} (its training "
            f"pairs); got {settings['train_size']}. "
            f"Fix: --set train_size={MAX_TRAIN_SIZE[data]} or less."
        )
    if k > SMALLEST_MODALITY[data]:
        raise ConfigError(
            f"n_components={k} is more than the {SMALLEST_MODALITY[data]} features of the smaller "
            f"modality of {data}; use at most {SMALLEST_MODALITY[data]} "
            f"(--set n_components={SMALLEST_MODALITY[data]})."
        )
    if any(m in ("deepcca", "dccae") for m in settings["methods"]) and settings["batch_size"] <= k:
        raise ConfigError(
            f"batch_size={settings['batch_size']} is at or below n_components={k}: each batch's "
            f"canonical correlations would be degenerate and deepcca/dccae would learn nothing; use "
            f"batches well above {k} rows (e.g. --set batch_size={max(4 * k, 100)})."
        )


# ----------------------------------------------------------------------------- data
def load(config: dict, data_dir, seed: int):
    """The ``load_data`` hook: train / validation / test splits, read and checked before the run starts.

    av_mnist audio is (n, frames, 13, 1) for the CNN, (n, frames, 13) for the GRU.
    """
    from xmodal_tf import data

    settings = settings_for(config)
    if settings["data"] == "av_mnist":
        dataset = load_av_mnist_held_out(data_dir, settings["train_size"], settings["audio_validation_fraction"])
        if settings["audio_encoder"] == "cnn":  # the MFCCs read as a one-channel image
            for split in (dataset.train, dataset.validation, dataset.test):
                split.inputs["audio"] = split.inputs["audio"][..., None]
        return dataset
    dataset = data.load_multimodal_digits(MODALITIES["digits"])
    if settings["train_size"] is not None:
        dataset = dataset._replace(train=dataset.train.subset(slice(0, settings["train_size"])))
    return dataset


def _flat(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64).reshape(len(array), -1)


# ----------------------------------------------------------------------------- networks
def build_encoder(shape: tuple, output_dim: int, settings: dict, name: str):
    """An encoder: a CNN for an image-like (H, W, C) input, a GRU for (frames, coefficients) sequences.

    The CNN flattens and has no BatchNorm or dropout: the autoencoder's measured recipe.

    Args:
        shape: the example shape.
        output_dim: the output units.
        settings: the resolved settings.
        name: the model's name.
    """
    from xmodal_tf.encoders import cnn_encoder, rnn_encoder

    if len(shape) == 2:
        return rnn_encoder(
            input_dim=shape[1], max_length=shape[0], embedding_dim=output_dim, units=(64,), cell="gru", name=name
        )
    return cnn_encoder(
        shape,
        output_dim,
        filters=tuple(settings["filters"]),
        global_pooling="flatten",
        batch_norm=False,
        dropout=0.0,
        name=name,
    )


def build_decoder(modality: str, shape: tuple, input_dim: int, settings: dict, name: str):
    """A decoder for one modality.

    Images in [0, 1]: the mirror of the CNN with a sigmoid output; audio (standardised
    MFCCs): dense layers with a linear output.

    Args:
        modality: the modality's name.
        shape: its example shape.
        input_dim: the code's units.
        settings: the resolved settings.
        name: the model's name.
    """
    from xmodal_tf.models.mae import dense_decoder, image_decoder

    if modality != "audio":
        return image_decoder(
            input_dim, shape, filters=tuple(reversed(settings["filters"])), output_activation="sigmoid", name=name
        )
    return dense_decoder(input_dim, shape, hidden_units=tuple(settings["decoder_hidden_units"]), name=name)


def build_deepcca(shapes: dict, settings: dict, with_decoders: bool):
    """DeepCCA (or DCCAE) between two modalities; the encoders output ``n_components`` units.

    Args:
        shapes: {modality: example shape}; x is the first.
        settings: the resolved settings.
        with_decoders: build DCCAE.
    """
    from xmodal_tf.models import DeepCCA

    (a, shape_a), (b, shape_b) = shapes.items()
    k = settings["n_components"]
    decoders = {}
    if with_decoders:
        decoders = {
            "decoder_x": build_decoder(a, shape_a, k, settings, f"{a}_decoder"),
            "decoder_y": build_decoder(b, shape_b, k, settings, f"{b}_decoder"),
            "reconstruction_weight": settings["reconstruction_weight"],
        }
    return DeepCCA(
        build_encoder(shape_a, k, settings, f"{a}_encoder"),
        build_encoder(shape_b, k, settings, f"{b}_encoder"),
        n_components=k,
        name="dccae" if with_decoders else "deepcca",
        **decoders,
    )


def build_autoencoder(shapes: dict, settings: dict, modality_dropout: float, seed: int):
    """A MultimodalAutoencoder with the same encoders (output ``code_dim``) and mirrored decoders."""
    from xmodal_tf.models.mae import MultimodalAutoencoder

    code_dim = settings["code_dim"]
    encoders = {m: build_encoder(shape, code_dim, settings, f"{m}_encoder") for m, shape in shapes.items()}
    decoders = {m: build_decoder(m, shape, code_dim, settings, f"{m}_decoder") for m, shape in shapes.items()}
    return MultimodalAutoencoder(encoders, decoders, code_dim=code_dim, modality_dropout=modality_dropout, seed=seed)


# ----------------------------------------------------------------------------- training
_QUIET_LOGS = ("steps", "seconds")


def _progress_callback(name: str, epochs: int, context: RunContext):
    """A Keras callback printing the numeric logs about every tenth of the epochs."""
    import math

    import keras

    every = max(1, epochs // 10)

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % every and epoch + 1 != epochs:
                return
            values = ", ".join(
                f"{key} {value:.4f}"
                for key, value in (logs or {}).items()
                if key not in _QUIET_LOGS and _is_number(value) and math.isfinite(value)
            )
            context.progress(f"{name}: epoch {epoch + 1}/{epochs}: {values}")

    return Progress()


def _epochs(history: dict, monitor: str, mode: str) -> dict:
    """{"epochs_trained", "best_epoch"} (from 1) of a trainer's history: the early-stopped
    model keeps its best epoch's weights (the earliest on ties, as the Trainer)."""
    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    values = np.asarray([np.nan if v is None else float(v) for v in history.get(monitor, [])], dtype=np.float64)
    best = None
    if len(values) and np.isfinite(values).any():
        signed = np.where(np.isfinite(values), values if mode == "max" else -values, -np.inf)
        best = epochs[int(np.argmax(signed))]
    return {"epochs_trained": len(epochs), "best_epoch": best}


def train_linear_cca(dataset, settings: dict, context: RunContext):
    """``xmodal_tf.CCA`` on the flattened inputs, the ridge chosen on validation.

    Each ridge is solved from one set of covariance statistics; the best on validation
    total correlation is kept.

    Returns:
        (encode(modality, array) -> codes, details).
    """
    import time

    from xmodal_tf import CCA

    a, b = dataset.modalities
    started = time.perf_counter()
    x, y = _flat(dataset.train.inputs[a]), _flat(dataset.train.inputs[b])
    validation = _flat(dataset.validation.inputs[a]), _flat(dataset.validation.inputs[b])
    scores, models, statistics = {}, {}, None
    for ridge in settings["linear_cca_reg"]:
        model = CCA(settings["n_components"], reg=float(ridge), dtype="float64")
        if statistics is None:
            model.fit(x, y)
            statistics = model.covariance_statistics_
        else:
            model.fit_statistics(statistics)
        scores[float(ridge)] = float(model.correlations(*validation).sum())
        models[float(ridge)] = model
    best = max(scores, key=scores.get)  # (the first of equals: dict order)
    model = models[best]
    seconds = time.perf_counter() - started
    context.progress(f"linear_cca: reg {best:g} (validation total correlation {scores[best]:.3f}), {seconds:.1f}s")

    def encode(modality: str, array: np.ndarray) -> np.ndarray:
        if modality == a:
            return model.transform(_flat(array))
        return (_flat(array) - model.y_mean_) @ model.y_weights_

    return encode, {
        "train_seconds": seconds,
        "epochs_trained": None,
        "best_epoch": None,
        "reg": best,
        "validation_total_correlation": scores[best],
    }


def _fit(model, optimizer, batches, validation, method: str, seed: int, settings: dict, context: RunContext, **kwargs):
    """Train one method's model for one seed through ``context.trainer``.

    Args:
        model: the model.
        optimizer: its optimizer.
        batches: the training batches.
        validation: the validation data (early stopping watches it).
        method: the method's name (checkpoint and log folder, progress lines).
        seed: the seed.
        settings: the resolved settings (``epochs``, ``early_stopping_patience``).
        context: the run context.
        **kwargs: other arguments of ``context.trainer`` (e.g. ``trainer_class``).

    Returns:
        (the trainer, the history that its ``fit`` returned).
    """
    trainer = context.trainer(
        model,
        optimizer,
        checkpoint_name=f"{method}-seed{seed}",
        logdir=context.logdir / method / f"seed{seed}",
        early_stopping_patience=settings["early_stopping_patience"],
        progress=False,
        **kwargs,
    )
    history = trainer.fit(
        batches,
        settings["epochs"],
        validation_data=validation,
        callbacks=[_progress_callback(f"{method} seed {seed}", settings["epochs"], context)],
    )
    return trainer, history


def train_deepcca(method: str, dataset, settings: dict, seed: int, context: RunContext):
    """Train DeepCCA / DCCAE, then the final linear CCA.

    Trained through ``context.trainer`` with early stopping on the validation split's
    total correlation; the final linear CCA's ridge is chosen on validation.

    Returns:
        (encode(modality, array) -> canonical variates, details).
    """
    import keras

    from xmodal_tf.data import make_dataset
    from xmodal_tf.training import DeepCCATrainer

    a, b = dataset.modalities
    x, y = dataset.train.inputs[a], dataset.train.inputs[b]
    validation = (dataset.validation.inputs[a], dataset.validation.inputs[b])
    batch_size = check_global_batch(min(settings["batch_size"], len(x)), context.replicas, "crossmodal")
    batches = make_dataset((x, y), batch_size=batch_size, seed=seed, drop_remainder=True)
    shapes = {m: dataset.train.inputs[m].shape[1:] for m in (a, b)}
    keras.utils.set_random_seed(seed)
    with context.scope():
        model = build_deepcca(shapes, settings, with_decoders=method == "dccae")
        optimizer = keras.optimizers.Adam(settings["learning_rate"])
    trainer, history = _fit(
        model, optimizer, batches, validation, method, seed, settings, context, trainer_class=DeepCCATrainer
    )
    best = None
    for ridge in settings["final_reg"]:
        model.fit_linear_cca(x, y, reg=float(ridge))
        value = model.score(*validation)
        if best is None or value > best[1]:
            best = (float(ridge), value)
    model.fit_linear_cca(x, y, reg=best[0])

    def encode(modality: str, array: np.ndarray) -> np.ndarray:
        return model.transform(array) if modality == a else model.transform(y=array)

    return encode, {
        "train_seconds": trainer.train_seconds,
        **_epochs(history, trainer.monitor, trainer.monitor_mode),
        "final_reg": best[0],
        "validation_total_correlation": float(best[1]),
    }


def train_autoencoder(method: str, dataset, settings: dict, seed: int, context: RunContext):
    """Train a MultimodalAutoencoder with modality dropout.

    Trained through ``context.trainer``, early stopping on the validation loss.

    Returns:
        (encode(modality, array) -> shared codes from that modality alone, details).
    """
    import keras

    inputs = dataset.train.inputs
    replicas = context.replicas
    batch_size = check_global_batch(min(settings["batch_size"], len(dataset.train)), replicas, "crossmodal")
    batches = global_batches(inputs, batch_size, replicas, seed=seed, shuffle=True)
    rows = len(dataset.validation)
    validation_batch = min(INFERENCE_BATCH, rows)
    validation_batch -= validation_batch % replicas  # whole global batches, split evenly
    validation = global_batches(dataset.validation.inputs, max(validation_batch, replicas), replicas)
    shapes = {m: inputs[m].shape[1:] for m in dataset.modalities}
    keras.utils.set_random_seed(seed)
    with context.scope():
        model = build_autoencoder(shapes, settings, MODALITY_DROPOUT[method], seed)
        optimizer = keras.optimizers.Adam(settings["learning_rate"])
    trainer, history = _fit(model, optimizer, batches, validation, method, seed, settings, context)

    def encode(modality: str, array: np.ndarray) -> np.ndarray:
        return model.encode({modality: array}, present=[modality], batch_size=INFERENCE_BATCH)

    return encode, {
        "train_seconds": trainer.train_seconds,
        **_epochs(history, trainer.monitor, trainer.monitor_mode),
        "modality_dropout": MODALITY_DROPOUT[method],
    }


def train_method(method: str, dataset, settings: dict, seed: int, context: RunContext):
    """(encode(modality, array) -> codes of that modality alone, details) of one method."""
    if method == "linear_cca":
        return train_linear_cca(dataset, settings, context)
    if method in ("deepcca", "dccae"):
        return train_deepcca(method, dataset, settings, seed, context)
    return train_autoencoder(method, dataset, settings, seed, context)


# ----------------------------------------------------------------------------- scoring
def directions(modalities) -> list:
    """[(name, source, target)]: across the modalities first, then within each."""
    a, b = modalities
    return [(f"{s}_to_{t}", s, t) for s, t in ((a, b), (b, a), (a, a), (b, b))]


def probe_scores(codes: dict, labels: dict, modalities, cs) -> dict:
    """The probe protocol.

    For each direction source -> target and each C in ``cs``, a linear probe is trained
    on the source's TRAINING codes and scored on the target's VALIDATION codes; the C
    with the best validation accuracy (the first on ties) is kept, and that probe is
    scored once on the target's TEST codes.

    Args:
        codes: {split: {modality: (n, d) codes of that modality alone}} for "train",
            "validation" and "test".
        labels: {split: (n,)}.
        modalities: the two modalities.
        cs: the probe's C values to try.

    Returns:
        {"validation": {direction: accuracy}, "test": {direction: accuracy},
        "probe_c": {direction: C}}.
    """
    from xmodal_tf.metrics import linear_probe

    result = {"validation": {}, "test": {}, "probe_c": {}}
    for name, source, target in directions(modalities):
        best = None
        for c in cs:
            accuracy = linear_probe(
                codes["train"][source], labels["train"], codes["validation"][target], labels["validation"], C=float(c)
            )["accuracy"]
            if best is None or accuracy > best[1]:
                best = (float(c), accuracy)
        result["probe_c"][name], result["validation"][name] = best
        result["test"][name] = linear_probe(
            codes["train"][source], labels["train"], codes["test"][target], labels["test"], C=best[0]
        )["accuracy"]
    return result


def score(encode, dataset, settings: dict) -> dict:
    """``probe_scores`` of the codes ``encode(modality, array)`` gives on every split."""
    rows = slice(0, settings["probe_size"])
    splits = {"train": dataset.train.subset(rows), "validation": dataset.validation, "test": dataset.test}
    codes = {split: {m: encode(m, data.inputs[m]) for m in dataset.modalities} for split, data in splits.items()}
    labels = {split: data.labels for split, data in splits.items()}
    return probe_scores(codes, labels, dataset.modalities, settings["probe_c"])


def summarise(per_seed: list) -> dict:
    """Mean, std (over seeds) and per-seed values of one method's scores, epochs and seconds."""

    def spread(values):
        if any(v is None for v in values):
            return None
        values = [float(v) for v in values]
        return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}

    summary = {
        split: {name: spread([seed[split][name] for seed in per_seed]) for name in per_seed[0][split]}
        for split in ("validation", "test")
    }
    for key in ("epochs_trained", "train_seconds"):
        summary[key] = spread([seed[key] for seed in per_seed])
    summary["per_seed"] = per_seed
    return summary


def best_method(results: dict, modalities) -> str:
    """The experiment's recommended recipe, chosen without reading test scores.

    Args:
        results: the summarised results per method.
        modalities: the two modalities.

    Returns:
        The method whose mean VALIDATION accuracy across the modalities (both
        directions, averaged over seeds) is highest.
    """
    across = [name for name, source, target in directions(modalities) if source != target]
    return max(results, key=lambda method: np.mean([results[method]["validation"][name]["mean"] for name in across]))


# ----------------------------------------------------------------------------- run and report
def run(config: dict, context: RunContext) -> dict:
    settings = settings_for(config)
    dataset = context.data if context.data is not None else load(config, context.data_dir, context.seed)
    modalities = tuple(dataset.modalities)
    check_global_batch(settings["batch_size"], context.replicas, "crossmodal")  # before any training
    shapes = {m: dataset.train.inputs[m].shape[1:] for m in modalities}
    context.progress(
        f"{dataset.description}: modalities {shapes}, {len(dataset.train)} training / "
        f"{len(dataset.validation)} validation / {len(dataset.test)} test pairs; methods "
        f"{', '.join(settings['methods'])}; {settings['seeds']} seed(s)"
    )
    a, b = modalities
    per_seed = {method: [] for method in settings["methods"]}
    for repeat in range(settings["seeds"]):
        seed = context.seed + repeat
        for method in settings["methods"]:
            if method == "linear_cca" and per_seed[method]:  # deterministic: the first fit serves every seed
                per_seed[method].append(per_seed[method][0])
                continue
            context.progress(f"seed {seed}: {method} ...")
            encode, details = train_method(method, dataset, settings, seed, context)
            context.progress(f"seed {seed}: {method}: linear probes on the codes of each modality alone ...")
            result = {"seed": seed, **details, **score(encode, dataset, settings)}
            per_seed[method].append(result)
            context.progress(
                f"seed {seed}: {method}: test {a}->{b} {result['test'][f'{a}_to_{b}']:.3f}, "
                f"{b}->{a} {result['test'][f'{b}_to_{a}']:.3f} (validation "
                f"{result['validation'][f'{a}_to_{b}']:.3f}, {result['validation'][f'{b}_to_{a}']:.3f}; "
                f"chance {CHANCE:.2f})"
            )
    results = {method: summarise(values) for method, values in per_seed.items()}
    for method, summary in results.items():
        for split in ("validation", "test"):
            for name, values in summary[split].items():
                for index, value in enumerate(values["per_seed"]):
                    context.log_scalar(f"{split}/{name}_accuracy/{method}", value, step=index + 1)
        for key in ("epochs_trained", "train_seconds"):
            if summary[key] is not None:
                for index, value in enumerate(summary[key]["per_seed"]):
                    context.log_scalar(f"train_details/{key}/{method}", value, step=index + 1)
    log_accuracies(context, results, modalities, settings["data"])
    chosen = best_method(results, modalities)
    chosen_test = results[chosen]["test"]
    context.progress(
        f"chosen on validation: {chosen}: test {a}->{b} {chosen_test[f'{a}_to_{b}']['mean']:.3f}, "
        f"{b}->{a} {chosen_test[f'{b}_to_{a}']['mean']:.3f}"
    )
    return {
        "data": settings["data"],
        "modalities": list(modalities),
        "chance_accuracy": CHANCE,
        "best_method": chosen,
        "seeds": settings["seeds"],
        "directions": [name for name, _, _ in directions(modalities)],
        "examples": {split: len(getattr(dataset, split)) for split in ("train", "validation", "test")},
        "results": results,
        "recipe": {
            key: settings[key]
            for key in (
                "methods",
                "n_components",
                "linear_cca_reg",
                "final_reg",
                "reconstruction_weight",
                "code_dim",
                "filters",
                "audio_encoder",
                "decoder_hidden_units",
                "epochs",
                "early_stopping_patience",
                "batch_size",
                "learning_rate",
                "train_size",
                "audio_validation_fraction",
                "probe_c",
                "probe_size",
            )
        },
    }


def log_accuracies(context: RunContext, results: dict, modalities, data: str) -> None:
    """Log the key figure, ``probe_accuracy.png`` and its TensorBoard image.

    Each method's test accuracy (mean, std over seeds as error bars) per probe direction.

    Args:
        context: the run context.
        results: the summarised results per method.
        modalities: the two modalities.
        data: the data set's name, for the title.
    """
    from xmodal_tf import plots

    names = [name for name, _, _ in directions(modalities)]
    accuracies = {method: [summary["test"][name]["mean"] for name in names] for method, summary in results.items()}
    errors = {method: [summary["test"][name]["std"] for name in names] for method, summary in results.items()}
    figure = plots.grouped_bars(
        [name.replace("_to_", " -> ") for name in names],
        accuracies,
        errors=errors,
        ylabel="test accuracy of the linear probe",
        title=f"hearing to see on {data}: probe trained on one modality's codes (chance {CHANCE:g})",
    )
    context.log_figure("probe_accuracy", figure)


def _cell(values) -> str:
    return f"{values['mean']:.3f} ± {values['std']:.3f}"


def summarize(metrics: dict) -> list[str]:
    a, b = metrics["modalities"]
    names = metrics["directions"]
    headers = [name.replace("_to_", "->") for name in names]
    # (metrics.json keeps its keys sorted: the methods in the order they were asked for)
    results = {method: metrics["results"][method] for method in metrics["recipe"]["methods"]}
    lines = [
        f"hearing to see on {metrics['data']} ({a} + {b}): a linear probe trained on one modality's codes "
        f"(training split), tested on the other's; accuracy, mean ± std over {metrics['seeds']} seed(s), "
        f"chance {metrics['chance_accuracy']:.2f}"
    ]
    for split, title in (("test", "test"), ("validation", "validation (choose recipes on these, not on test)")):
        lines.append(title)
        lines.append(
            f"  {'method':<16}"
            + "".join(f" {header:>13}" for header in headers)
            + (f" {'epochs':>6} {'seconds':>8}" if split == "test" else "")
        )
        for method, summary in results.items():
            row = f"  {method:<16}" + "".join(f" {_cell(summary[split][name]):>13}" for name in names)
            if split == "test":
                epochs = summary["epochs_trained"]
                row += f" {'-' if epochs is None else format(epochs['mean'], '.1f'):>6}"
                row += f" {summary['train_seconds']['mean']:8.1f}"
            lines.append(row)
    if "best_method" in metrics:
        best = results[metrics["best_method"]]["test"]
        lines.append(
            f"chosen on validation (mean across-modality accuracy): {metrics['best_method']}; its test "
            f"{a}->{b} {_cell(best[f'{a}_to_{b}'])}, {b}->{a} {_cell(best[f'{b}_to_{a}'])}"
        )
    lines.append(
        f"({a}->{b}: probe trained on {a} codes, tested on {b} codes; the probe's C and each model's "
        f"epoch chosen on validation; epochs: trained of the budget {metrics['recipe']['epochs']}; "
        f"linear_cca is deterministic: one fit serves every seed)"
    )
    return lines


EXPERIMENT = register(globals(), name="crossmodal", description=DESCRIPTION)
