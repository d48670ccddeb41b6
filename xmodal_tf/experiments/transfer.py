"""Experiment ``transfer``: carry a classifier trained on one view to another view.

A CNN classifier is pretrained on every labelled example of the source view; a second
classifier of the same shape is then trained on the target view with only a fraction
of its labels, three ways (``VARIANTS``): ``scratch`` (random initial weights),
``transfer`` (every weight copied from the source model, then fine-tuned, as ``recipe``
says) and ``paired_transfer`` (as ``transfer``, after distilling the source encoder's
embedding of the paired source-view examples into the target encoder). Data:
``two_view_digits`` (offline), ``split_mnist`` or ``av_mnist``. The key figure,
``accuracy_vs_label_fraction.png``: each variant's test accuracy against the share of
the target's labels.

Design notes (variants, data, budgets, strategies): docs/DESIGN.md (section xmodal_tf/experiments/transfer.py).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from xmodal_tf.experiments.base import TRAINING_CONSTRAINTS, TRAINING_SETTINGS, RunContext, check_global_batch, register
from xmodal_tf.experiments.config import ConfigError, Interval, ListOf, Options

DESCRIPTION = (
    "pretrain a CNN on one view, transfer it to the other view with few labels "
    "(two_view_digits offline; split_mnist and av_mnist with --data-dir)"
)

DATA_SETS = ("two_view_digits", "split_mnist", "av_mnist")
VIEWS = {"two_view_digits": ("left", "right"), "split_mnist": ("left", "right"), "av_mnist": ("image", "audio")}
# full: every layer fine-tuned; freeze_head: the embedding projection and classifier stay
# frozen; two_stage: the head first (body frozen), then everything at a tenth of the rate.
RECIPES = ("full", "freeze_head", "two_stage")
VARIANTS = ("scratch", "transfer", "paired_transfer")

DEFAULTS = {
    "data": "two_view_digits",
    "source_view": None,  # pretrain on this view, the other is the target; None: left / image
    "label_fractions": [0.01, 0.05, 0.1, 1.0],  # share of the target's training labels
    "seeds": 3,  # repetitions per fraction (seed, seed + 1, ...)
    "embedding_dim": 64,
    "filters": [32, 64],
    "dropout": 0.1,
    "batch_size": None,  # None: 32 for two_view_digits, 128 for the MNIST-sized sets
    "pretrain_epochs": 100,  # epoch budgets, each cut short by early stopping
    "target_epochs": 200,
    "distill_epochs": 300,  # paired_transfer: epochs matching the source embeddings
    "patience": 10,  # epochs without a better validation score before stopping
    "min_epoch_steps": 20,  # an epoch is a pass over the data or this many batches
    "learning_rate": 1e-3,
    "batch_norm": False,  # BatchNorm statistics from ten examples make scratch models fail
    "recipe": "full",  # how the transferred model is fine-tuned (see RECIPES)
    **TRAINING_SETTINGS,  # mixed_precision, jit (xmodal_tf.precision)
}
DEFAULT_BATCH_SIZE = {"two_view_digits": 32, "split_mnist": 128, "av_mnist": 128}
POSITIVE = Interval(int, 1, None)
CONSTRAINTS = {
    "data": [Options(*DATA_SETS)],
    "source_view": [str, None],
    "label_fractions": [ListOf(Interval(float, 0, 1, closed="right"), min_length=1, distinct=True)],
    "seeds": [POSITIVE],
    "embedding_dim": [POSITIVE],
    "filters": [ListOf(POSITIVE, min_length=1)],
    "dropout": [Interval(float, 0, 1, closed="left")],
    "batch_size": [POSITIVE, None],
    "pretrain_epochs": [POSITIVE],
    "target_epochs": [POSITIVE],
    "distill_epochs": [POSITIVE],
    "patience": [POSITIVE],
    "min_epoch_steps": [POSITIVE],
    "learning_rate": [Interval(float, 0, None, closed="neither")],
    "batch_norm": [bool],
    "recipe": [Options(*RECIPES)],
    **TRAINING_CONSTRAINTS,
}
NOTES = {
    "label_fractions": "shares of the target's training labels",
    "batch_size": "null: 32 for two_view_digits, 128 for the MNIST-sized sets",
    "source_view": "null: the data set's first view",
}
PAIRS_PER_RECORDING = 10  # av_mnist: images paired with each recording
AUDIO_VALIDATION_FRACTION = 0.2  # av_mnist: training recordings held out to validate
HEAD_LAYERS = ("embedding", "classifier")
ENCODER_NAME = "image_encoder"  # name suffixes of the transferred head
EVALUATION_BATCH = 1024
# The least gain that counts for early stopping: 0.1 accuracy points for the
# classifiers; for the distillation, 1% of the teacher embeddings' variance (the
# squared error of predicting their mean), so that slow creeping stops.
ACCURACY_MIN_DELTA = 0.001
DISTILL_MIN_GAIN = 0.01


class Labelled(NamedTuple):
    """One view's inputs (n, H, W, C) float32 and labels (n,) int of one split."""

    inputs: np.ndarray
    labels: np.ndarray


class TransferData(NamedTuple):
    """What the experiment trains on: each view's splits and the unlabelled pairs.

    Attributes:
        source: split name ("train", "validation", "test") -> ``Labelled``.
        target: split name ("train", "validation", "test") -> ``Labelled``.
        pairs: split name ("train", "validation") -> (source inputs, target inputs),
            row i of one paired with row i of the other.
    """

    name: str
    description: str
    num_classes: int
    source_view: str
    target_view: str
    source: dict
    target: dict
    pairs: dict

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{split} {len(self.source[split].labels)} / {len(self.target[split].labels)}"
            for split in ("train", "validation", "test")
        )
        return (
            f"{self.description}: {self.source_view} -> {self.target_view}; examples (source / target): "
            f"{sizes}; {len(self.pairs['train'][0])} training pairs"
        )


def source_view_of(config: dict) -> str:
    return config["source_view"] or VIEWS[config["data"]][0]


def target_view_of(config: dict) -> str:
    views = VIEWS[config["data"]]
    return views[1 - views.index(source_view_of(config))]


def batch_size_of(config: dict) -> int:
    return config["batch_size"] or DEFAULT_BATCH_SIZE[config["data"]]


def load(config: dict, data_dir, seed: int) -> TransferData:
    """The ``load_data`` hook: the data set, read and checked before the run starts.

    The splits are the data set's own; they do not change with the run's seed.
    """
    if config["data"] == "av_mnist":
        views = _audio_visual_views(data_dir)
    else:
        views = _image_half_views(config["data"], data_dir)
    source, target = source_view_of(config), target_view_of(config)
    return TransferData(
        name=config["data"],
        description=views["description"],
        num_classes=10,
        source_view=source,
        target_view=target,
        source=views[source],
        target=views[target],
        pairs={
            split: views["pairs"][split] if source == VIEWS[config["data"]][0] else views["pairs"][split][::-1]
            for split in ("train", "validation")
        },
    )


def _image_half_views(name: str, data_dir) -> dict:
    """Left and right image halves, paired row by row."""
    from xmodal_tf import data

    dataset = (
        data.load_split_mnist(data_dir, flatten=False)
        if name == "split_mnist"
        else data.load_two_view_digits(flatten=False)
    )
    splits = {split: getattr(dataset, split) for split in ("train", "validation", "test")}
    return {
        "description": f"{name} ({dataset.source})",
        "left": {split: Labelled(part.view1, part.labels) for split, part in splits.items()},
        "right": {split: Labelled(part.view2, part.labels) for split, part in splits.items()},
        "pairs": {split: (splits[split].view1, splits[split].view2) for split in ("train", "validation")},
    }


def _audio_visual_views(data_dir) -> dict:
    """MNIST images and spoken-digit recordings, paired by digit.

    Images: MNIST's 50000 / 10000 / 10000 split (split MNIST's halves put back
    together). Audio: the spoken-digit recordings' stratified test split (20%); the rest
    split again, ``AUDIO_VALIDATION_FRACTION`` held out for validation. Each training
    (validation) recording is paired with ``PAIRS_PER_RECORDING`` training (validation)
    images of its digit, each image used at most once.
    """
    from xmodal_tf import data
    from xmodal_tf.data.multimodal import _stratified_split

    mnist = data.load_split_mnist(data_dir, flatten=False)
    spoken = data.load_spoken_digits(data_dir, test_fraction=0.2, seed=0)
    image = {
        split: Labelled(np.concatenate([part.view1, part.view2], axis=2), part.labels)
        for split, part in (("train", mnist.train), ("validation", mnist.validation), ("test", mnist.test))
    }
    recordings = spoken.train.inputs["audio"][..., None]
    train_rows, validation_rows = _stratified_split(spoken.train.labels, AUDIO_VALIDATION_FRACTION, seed=0)
    audio = {
        "train": Labelled(recordings[train_rows], spoken.train.labels[train_rows]),
        "validation": Labelled(recordings[validation_rows], spoken.train.labels[validation_rows]),
        "test": Labelled(spoken.test.inputs["audio"][..., None], spoken.test.labels),
    }
    rng = np.random.default_rng(0)
    pairs = {split: _pairs_by_digit(image[split], audio[split], rng) for split in ("train", "validation")}
    return {
        "description": "AV-MNIST (MNIST images, spoken-digit MFCCs; paired by digit)",
        "image": image,
        "audio": audio,
        "pairs": pairs,
    }


def _pairs_by_digit(images: Labelled, recordings: Labelled, rng) -> tuple:
    """(images, recordings): every recording ``PAIRS_PER_RECORDING`` times, each time
    with a different image of its digit."""
    image_rows, recording_rows = [], []
    for digit in np.unique(recordings.labels):
        heard = np.flatnonzero(recordings.labels == digit)
        seen = np.flatnonzero(images.labels == digit)
        wanted = len(heard) * PAIRS_PER_RECORDING
        if len(seen) < wanted:
            raise ValueError(
                f"av_mnist: {len(seen)} images of the digit {digit} cannot give each of its "
                f"{len(heard)} recordings {PAIRS_PER_RECORDING} different images."
            )
        image_rows.append(rng.choice(seen, size=wanted, replace=False))
        recording_rows.append(np.repeat(heard, PAIRS_PER_RECORDING))
    image_rows, recording_rows = np.concatenate(image_rows), np.concatenate(recording_rows)
    return images.inputs[image_rows], recordings.inputs[recording_rows]


def build_classifier(input_shape, num_classes: int, config: dict, name: str):
    """cnn_encoder body + softmax head, as one functional model.

    Layer names are the same for every call (only the model name differs), so weights
    move between models by name, whatever the input shape (the encoder ends in global
    average pooling).

    Args:
        input_shape: the view's (H, W, C).
        num_classes: the number of classes.
        config: the resolved configuration.
        name: the model's name.
    """
    import keras

    from xmodal_tf import encoders

    encoder = encoders.cnn_encoder(
        tuple(input_shape),
        config["embedding_dim"],
        filters=tuple(config["filters"]),
        dropout=config["dropout"],
        batch_norm=config["batch_norm"],
        global_pooling="avg",
        name=ENCODER_NAME,
    )
    inputs = keras.Input(tuple(input_shape), name="image")
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(encoder(inputs))
    return keras.Model(inputs, outputs, name=name)


def compile_classifier(model, learning_rate: float) -> None:
    """Compile with a new Adam (call it inside ``context.scope()``)."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )


def subset_batch_size(batch_size: int, rows: int, replicas: int) -> int:
    """The global batch for a labelled subset.

    Args:
        batch_size: the configured global batch.
        rows: the number of labelled examples.
        replicas: the strategy's number of replicas.

    Returns:
        ``batch_size`` capped at ``rows``, rounded down to a multiple of the replicas
        (at least one example per replica).
    """
    check_global_batch(batch_size, replicas, "transfer")
    capped = min(batch_size, rows)
    return max(replicas, capped - capped % replicas)


def label_subset(labels: np.ndarray, fraction: float, num_classes: int, seed: int) -> np.ndarray:
    """Row indices of a stratified ``fraction`` of ``labels``, at least one per class."""
    if fraction >= 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
        rows = np.flatnonzero(labels == label)
        count = max(1, int(round(fraction * len(rows))))
        chosen.append(rng.choice(rows, size=min(count, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen))


def epoch_steps(rows: int, batch_size: int, min_steps: int, drop_remainder: bool = False) -> int:
    """Batches in one epoch: a pass over ``rows`` examples, or ``min_steps`` if more."""
    per_pass = rows // batch_size if drop_remainder else -(-rows // batch_size)
    return max(per_pass, min_steps)


def train_early_stopped(
    model,
    train: tuple,
    validation: tuple,
    epochs: int,
    config: dict,
    seed: int,
    context: RunContext,
    monitor=("val_accuracy", "max"),
    min_delta: float = ACCURACY_MIN_DELTA,
) -> dict:
    """Train a compiled model with early stopping, keeping the best weights.

    Training stops after ``patience`` epochs without a ``monitor`` on ``validation``
    better by ``min_delta``.

    Args:
        model: the compiled model.
        train: (inputs, targets).
        validation: (inputs, targets).
        epochs: the most epochs.
        config: the resolved configuration.
        seed: the shuffle's seed.
        context: the run context.
        monitor: (log name, "min" | "max").
        min_delta: the smallest improvement.

    Returns:
        The Trainer's history.
    """
    from xmodal_tf.data import make_dataset

    replicas = context.replicas
    batch_size = subset_batch_size(batch_size_of(config), len(train[0]), replicas)
    drop_remainder = replicas > 1
    dataset = make_dataset(*train, batch_size=batch_size, seed=seed, repeat=True, drop_remainder=drop_remainder)
    held_out = make_dataset(*validation, batch_size=EVALUATION_BATCH, shuffle=False, drop_remainder=drop_remainder)
    trainer = context.trainer(
        model,
        None,
        progress=False,
        early_stopping_patience=config["patience"],
        early_stopping_min_delta=min_delta,
        monitor=monitor,
    )
    steps = epoch_steps(len(train[0]), batch_size, config["min_epoch_steps"], drop_remainder)
    return trainer.fit(dataset, epochs, validation_data=held_out, steps_per_epoch=steps)


def best_epoch(history: dict, monitor=("val_accuracy", "max"), min_delta: float = ACCURACY_MIN_DELTA) -> int:
    """The epoch (from 1) whose weights early stopping kept.

    Args:
        history: the Trainer's history.
        monitor: (log name, "min" | "max").
        min_delta: the smallest improvement.

    Returns:
        The last epoch that beat the best before it by more than ``min_delta``.
    """
    sign = 1.0 if monitor[1] == "max" else -1.0
    best, kept = -np.inf, 1
    for epoch, value in enumerate(history[monitor[0]], start=1):
        if sign * value > best + min_delta:
            best, kept = sign * value, epoch
    return kept


def evaluate(model, split: Labelled) -> float:
    predicted = np.argmax(model.predict(split.inputs, batch_size=EVALUATION_BATCH, verbose=0), axis=1)
    return float(np.mean(predicted == split.labels))


def pretrain(data: TransferData, config: dict, context: RunContext):
    """The source-view classifier, trained on all of the source view's training labels."""
    train = data.source["train"]
    with context.scope():
        model = build_classifier(train.inputs.shape[1:], data.num_classes, config, "source_classifier")
        compile_classifier(model, config["learning_rate"])
    context.progress(
        f"pretraining on the {data.source_view} view: {len(train.labels)} labels, "
        f"at most {config['pretrain_epochs']} epochs ..."
    )
    history = train_early_stopped(
        model, train, data.source["validation"], config["pretrain_epochs"], config, context.seed, context
    )
    for epoch, value in enumerate(history["accuracy"]):
        context.log_scalar("train/pretrain_accuracy", value, step=epoch + 1)
    metrics = {
        "source_test_accuracy": evaluate(model, data.source["test"]),
        "source_epochs": len(history["accuracy"]),
        "source_best_epoch": best_epoch(history),
    }
    message = (
        f"source model: test accuracy {metrics['source_test_accuracy']:.3f} on its own view "
        f"(best epoch {metrics['source_best_epoch']} of {metrics['source_epochs']})"
        + _budget_warning(metrics["source_best_epoch"], config["pretrain_epochs"], "pretrain_epochs")
    )
    if data.source["test"].inputs.shape[1:] == data.target["test"].inputs.shape[1:]:
        metrics["source_model_on_target_test_accuracy"] = evaluate(model, data.target["test"])
        message += f", {metrics['source_model_on_target_test_accuracy']:.3f} on the other view (no training)"
    context.progress(message)
    return model, metrics


def distilled_weights(data: TransferData, config: dict, source_model, seed: int, context: RunContext) -> list:
    """A target classifier's weights after ``paired_transfer``'s distillation.

    The source model's weights, then the encoder trained on the target view of every
    training pair to output the source encoder's embedding of the paired source view
    (mean squared error, early stopped on the validation pairs); no labels.
    """
    import keras

    from xmodal_tf import transfer

    keras.utils.set_random_seed(seed)
    with context.scope():
        model = build_classifier(
            data.target["train"].inputs.shape[1:], data.num_classes, config, "distilled_classifier"
        )
    transfer.transfer_weights(source_model, model, match="name", strict=True)
    teacher, student = source_model.get_layer(ENCODER_NAME), model.get_layer(ENCODER_NAME)
    embedded = {
        split: (target, teacher.predict(source, batch_size=EVALUATION_BATCH, verbose=0))
        for split, (source, target) in data.pairs.items()
    }
    variance = float(np.mean(np.var(embedded["validation"][1], axis=0)))
    with context.scope():
        student.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]), loss="mse")
    history = train_early_stopped(
        student,
        embedded["train"],
        embedded["validation"],
        config["distill_epochs"],
        config,
        seed,
        context,
        monitor=("val_loss", "min"),
        min_delta=DISTILL_MIN_GAIN * variance,
    )
    best = best_epoch(history, ("val_loss", "min"), DISTILL_MIN_GAIN * variance)
    context.progress(
        f"seed {seed}: encoder distilled on {len(embedded['train'][0])} pairs, validation "
        f"MSE {history['val_loss'][best - 1]:.4f} against the embeddings' variance {variance:.4f} "
        f"(best epoch {best} of {len(history['val_loss'])})"
        + _budget_warning(best, config["distill_epochs"], "distill_epochs")
    )
    return model.get_weights()


def target_model(
    data: TransferData, config: dict, source_model, variant: str, seed: int, distilled: list | None, context: RunContext
):
    """An uncompiled target-view classifier for one of ``VARIANTS`` (see the module header)."""
    import keras

    from xmodal_tf import transfer

    keras.utils.set_random_seed(seed)
    with context.scope():
        model = build_classifier(
            data.target["train"].inputs.shape[1:], data.num_classes, config, f"{variant}_classifier"
        )
    if variant == "transfer":
        transfer.transfer_weights(source_model, model, match="name", strict=True)
    elif variant == "paired_transfer":
        model.set_weights(distilled)
    return model


def train_target(data: TransferData, config: dict, model, variant: str, rows, seed: int, context: RunContext) -> dict:
    """Train one target model on the chosen rows; return its test accuracy and epochs."""
    from xmodal_tf import transfer

    train = Labelled(data.target["train"].inputs[rows], data.target["train"].labels[rows])
    validation, epochs = data.target["validation"], config["target_epochs"]
    stages = [(None, config["learning_rate"])]
    if variant != "scratch" and config["recipe"] == "two_stage":
        stages = [("head", config["learning_rate"]), ("all", config["learning_rate"] / 10)]
    elif variant != "scratch" and config["recipe"] == "freeze_head":
        transfer.freeze(model, pattern="|".join(HEAD_LAYERS))
    trained = []
    for stage, learning_rate in stages:
        if stage == "head":  # the body frozen
            transfer.freeze(model)
            transfer.unfreeze(model, pattern="|".join(HEAD_LAYERS))
        elif stage == "all":
            transfer.unfreeze(model)
        with context.scope():
            compile_classifier(model, learning_rate)
        history = train_early_stopped(model, train, validation, epochs, config, seed, context)
        trained.append((len(history["accuracy"]), best_epoch(history)))
    return {
        "accuracy": evaluate(model, data.target["test"]),
        "epochs": sum(n for n, _ in trained),
        "budget_used_up": any(n == epochs and best == n for n, best in trained),
    }


def run(config: dict, context: RunContext) -> dict:
    data = context.data if context.data is not None else load(config, context.data_dir, context.seed)
    context.progress(f"{data!r}")
    check_global_batch(batch_size_of(config), context.replicas, "transfer")  # before any training
    started = time.perf_counter()
    source_model, source_metrics = pretrain(data, config, context)
    seeds = [context.seed + repeat for repeat in range(config["seeds"])]
    distilled = {seed: distilled_weights(data, config, source_model, seed, context) for seed in seeds}

    results = {}
    for fraction in config["label_fractions"]:
        outcomes = {variant: [] for variant in VARIANTS}
        for seed in seeds:
            rows = label_subset(data.target["train"].labels, fraction, data.num_classes, seed)
            for variant in VARIANTS:
                model = target_model(data, config, source_model, variant, seed, distilled[seed], context)
                outcomes[variant].append(train_target(data, config, model, variant, rows, seed, context))
        results[_fraction_key(fraction)] = _summarise_fraction(fraction, len(rows), outcomes)
        _log_fraction(context, fraction, results[_fraction_key(fraction)])
    log_curves(context, results, data)
    return {
        "data": data.name,
        "source_view": data.source_view,
        "target_view": data.target_view,
        "recipe": config["recipe"],
        "seeds": config["seeds"],
        "batch_size": batch_size_of(config),
        "results": results,
        "train_seconds": time.perf_counter() - started,
        **source_metrics,
    }


def check_rules(config: dict) -> None:
    """Check that the data set has the source view (the table checks each setting alone).

    Raises:
        ConfigError: a source view the data set does not have.
    """
    views = VIEWS[config["data"]]
    if config["source_view"] is not None and config["source_view"] not in views:
        raise ConfigError(
            f"source_view must be one of {list(views)} for data={config['data']!r} "
            f"(or null for {views[0]!r}); got {config['source_view']!r}. "
            f"Fix: --set source_view={views[0]}."
        )


def _budget_warning(best: int, budget: int, key: str) -> str:
    """A note for a model whose last epoch was its best and its budget's last: it was
    still improving when it stopped."""
    return f"; warning: still improving at the end of its budget, raise {key}" if best == budget else ""


def _fraction_key(fraction: float) -> str:
    return f"{100 * float(fraction):g}%"


def _summarise_fraction(fraction, n_labels, outcomes) -> dict:
    summary = {"fraction": float(fraction), "labels": int(n_labels)}
    for variant, runs in outcomes.items():
        values = [run["accuracy"] for run in runs]
        summary[variant] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values)),
            "per_seed": [float(v) for v in values],
            "epochs": [run["epochs"] for run in runs],
            "budget_used_up": sum(run["budget_used_up"] for run in runs),
        }
    for variant in VARIANTS[1:]:
        summary[f"{variant}_minus_scratch"] = summary[variant]["mean"] - summary["scratch"]["mean"]
    return summary


def _log_fraction(context: RunContext, fraction: float, summary: dict) -> None:
    key = _fraction_key(fraction)
    for variant in VARIANTS:
        for index, value in enumerate(summary[variant]["per_seed"]):
            context.log_scalar(f"test/accuracy_{key}_labels/{variant}", value, step=index + 1)
    scores = ", ".join(
        f"{variant} {summary[variant]['mean']:.3f} ± {summary[variant]['std']:.3f} ({_epochs_text(summary[variant])})"
        for variant in VARIANTS
    )
    context.progress(f"{key} of labels ({summary['labels']} examples): {scores}")
    unconverged = sum(summary[variant]["budget_used_up"] for variant in VARIANTS)
    if unconverged:
        context.progress(
            f"warning: {unconverged} model(s) at {key} were still improving when their epoch budget "
            "ran out; raise target_epochs for converged figures"
        )


def log_curves(context: RunContext, results: dict, data: TransferData) -> None:
    """Log the key figure, ``accuracy_vs_label_fraction.png`` and its TensorBoard image.

    Each variant's test accuracy (mean, std over seeds as error bars) against the label
    fraction.

    Args:
        context: the run context.
        results: the summarised results.
        data: the ``TransferData``.
    """
    from xmodal_tf import plots

    summaries = sorted(results.values(), key=lambda summary: summary["fraction"])
    figure = plots.label_fraction_curves(
        [summary["fraction"] for summary in summaries],
        {variant: [summary[variant]["mean"] for summary in summaries] for variant in VARIANTS},
        errors={variant: [summary[variant]["std"] for summary in summaries] for variant in VARIANTS},
        title=f"transfer {data.source_view} -> {data.target_view} on {data.name}: test accuracy",
    )
    context.log_figure("accuracy_vs_label_fraction", figure)


def _epochs_text(variant_summary: dict) -> str:
    return "epochs " + "/".join(str(n) for n in variant_summary["epochs"])


def summarize(metrics: dict) -> list[str]:
    lines = [
        f"transfer on {metrics['data']}: pretrained on the {metrics['source_view']} view "
        f"(test accuracy {metrics['source_test_accuracy']:.3f}), target = {metrics['target_view']} "
        f"view, recipe {metrics['recipe']}; test accuracy, mean ± std over {metrics['seeds']} seed(s)",
        f"{'labels':>14}" + "".join(f"  {variant:>15}" for variant in VARIANTS),
    ]
    # By fraction: metrics.json read back has its keys in text order ("10%" before "5%").
    for key, summary in sorted(metrics["results"].items(), key=lambda item: item[1]["fraction"]):
        lines.append(
            f"{key:>6} ({summary['labels']:>5})"
            + "".join(f"  {summary[v]['mean']:.3f} ± {summary[v]['std']:.3f}" for v in VARIANTS)
        )
    return lines


EXPERIMENT = register(globals(), name="transfer", description=DESCRIPTION)
