"""Experiment ``transfer``: carry a classifier trained on one view to another view.

The seeds' cross-modal transfer story, measured. A CNN classifier (``cnn_encoder``
body + softmax head) is pretrained on every labelled example of the source view.
A second classifier of the same shape is then trained on the target view with only
a fraction of its labels, three ways:

* ``scratch``: random initial weights, every layer trained on the labelled subset;
* ``transfer``: every weight copied from the source model with ``transfer_weights``
  (the label space, so the head, is shared between the views), then fine-tuned on
  the labelled subset; ``recipe`` picks how: ``full`` trains every layer,
  ``freeze_head`` keeps the embedding projection and classifier frozen, and
  ``two_stage`` is ``transfer.fine_tune`` (head first, then everything);
* ``paired_transfer``: as ``transfer``, but before fine-tuning, the target encoder
  learns to reproduce the source encoder's embedding of the *paired* source-view
  example (cross-modal distillation on the training pairs, which need no labels),
  so the transferred head reads the new view correctly. This is the usual
  situation across modalities: pairs are plentiful, labels are not.

Every variant takes the same number of supervised gradient steps and is scored on
the target view's test split. Each fraction is repeated for several seeds (the
subset and the initialisation change with the seed); the mean and spread of the
test accuracy are reported.

Every model trains through ``xmodal_tf.training.Trainer`` on the run's strategy
(``--strategy``; ``model.fit`` fails for functional models under
``MultiWorkerMirroredStrategy``), ``two_stage`` through ``transfer.fine_tune(...,
strategy=)``. ``batch_size`` is the global batch; with several replicas it must divide
by their number, a batch capped at a small labelled subset is rounded down to a multiple
of it, and an epoch's last partial batch is dropped. Scoring runs on every worker.
"""
from __future__ import annotations

import time

import numpy as np

from xmodal_tf.experiments.base import TRAINING_CHOICES, TRAINING_SETTINGS, Experiment, RunContext, check_global_batch

DATA_SETS = ("two_view_digits", "split_mnist")
VIEWS = ("left", "right")
# full: every layer fine-tuned; freeze_head: the embedding projection and classifier stay
# frozen; two_stage: ``transfer.fine_tune`` (head first, then everything at a lower rate).
RECIPES = ("full", "freeze_head", "two_stage")
VARIANTS = ("scratch", "transfer", "paired_transfer")

DEFAULTS = {
    "data": "two_view_digits",
    "source_view": "left",  # pretrain on this view; the other view is the target
    "label_fractions": [0.01, 0.05, 0.1, 1.0],  # share of the target's training labels
    "seeds": 3,  # repetitions per fraction (seed, seed + 1, ...)
    "embedding_dim": 64,
    "filters": [32, 64],
    "dropout": 0.1,
    "batch_size": 32,
    "pretrain_epochs": None,  # None: 40 for two_view_digits, 3 for split_mnist
    "target_steps": 300,  # supervised gradient steps for each target model
    "distill_steps": 300,  # paired_transfer: steps matching the source embeddings
    "learning_rate": 1e-3,
    "batch_norm": False,  # BatchNorm statistics from ten examples make scratch models fail
    "recipe": "full",  # how the transferred model is fine-tuned (see RECIPES)
    **TRAINING_SETTINGS,  # mixed_precision, jit (xmodal_tf.precision)
}
DEFAULT_PRETRAIN_EPOCHS = {"two_view_digits": 40, "split_mnist": 3}
HEAD_LAYERS = ("embedding", "classifier")
ENCODER_NAME = "image_encoder"  # name suffixes of the transferred head


def load_data(name: str, data_dir):
    from xmodal_tf import data

    if name == "split_mnist":
        return data.load_split_mnist(data_dir, flatten=False)
    return data.load_two_view_digits(flatten=False)


def build_classifier(input_shape, num_classes: int, config: dict, name: str):
    """cnn_encoder body + softmax head, as one functional model.

    Layer names are the same for every call (only the model name differs), so weights
    move between models by name.
    """
    import keras

    from xmodal_tf import encoders

    encoder = encoders.cnn_encoder(
        tuple(input_shape), config["embedding_dim"], filters=tuple(config["filters"]),
        dropout=config["dropout"], batch_norm=config["batch_norm"], global_pooling="avg",  # the measured recipe
        name=ENCODER_NAME)
    inputs = keras.Input(tuple(input_shape), name="image")
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(
        encoder(inputs))
    return keras.Model(inputs, outputs, name=name)


def compile_classifier(model, learning_rate: float) -> None:
    """Compile with a new Adam (call it inside ``context.scope()``)."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def subset_batch_size(batch_size: int, rows: int, replicas: int) -> int:
    """The global batch for ``rows`` labelled examples: ``batch_size`` capped at ``rows``,
    rounded down to a multiple of the replicas (at least one example per replica)."""
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


def train_steps(model, images, labels, steps: int, batch_size: int, seed: int, context: RunContext) -> dict:
    """Train the compiled ``model`` for exactly ``steps`` gradient steps on (images, labels),
    with ``context.trainer``; returns its history.

    One long "epoch" over a repeated pipeline: with ten labelled examples an
    epoch is one step, and the per-epoch overhead would dominate.
    """
    from xmodal_tf.data import make_dataset

    replicas = context.replicas
    dataset = make_dataset(images, labels, batch_size=subset_batch_size(batch_size, len(labels), replicas),
                           seed=seed, repeat=True, drop_remainder=replicas > 1)
    return context.trainer(model, None, progress=False).fit(dataset, 1, steps_per_epoch=steps)


def views_of(split, source_view: str):
    """(source images, target images, labels) of one split."""
    left, right, labels = split
    return (left, right, labels) if source_view == "left" else (right, left, labels)


def pretrain(dataset, config: dict, context: RunContext):
    """The source-view classifier, trained on all of the source view's training labels."""
    source, _, labels = views_of(dataset.train, config["source_view"])
    with context.scope():
        model = build_classifier(source.shape[1:], dataset.num_classes, config, "source_classifier")
        compile_classifier(model, config["learning_rate"])
    epochs = config["pretrain_epochs"] or DEFAULT_PRETRAIN_EPOCHS[dataset.name]
    context.progress(f"pretraining on the {config['source_view']} view: {len(labels)} labels, "
                     f"{epochs} epochs ...")
    from xmodal_tf.data import make_dataset

    train = make_dataset(source, labels, batch_size=config["batch_size"], seed=context.seed,
                         drop_remainder=context.replicas > 1)
    history = context.trainer(model, None, progress=False).fit(train, epochs)
    for epoch, value in enumerate(history["accuracy"]):
        context.log_scalar("train/pretrain_accuracy", value, step=epoch + 1)
    test_source, test_target, test_labels = views_of(dataset.test, config["source_view"])
    accuracy = {
        "source_test_accuracy": evaluate(model, test_source, test_labels),
        "source_model_on_target_test_accuracy": evaluate(model, test_target, test_labels),
    }
    context.progress("source model test accuracy: {source_test_accuracy:.3f} on its own view, "
                     "{source_model_on_target_test_accuracy:.3f} on the other view "
                     "(no training)".format(**accuracy))
    return model, accuracy


def evaluate(model, images, labels) -> float:
    predicted = np.argmax(model.predict(images, batch_size=1024, verbose=0), axis=1)
    return float(np.mean(predicted == labels))


def target_model(dataset, config: dict, source_model, variant: str, seed: int, context: RunContext):
    """A compiled target-view classifier for one of ``VARIANTS`` (see the module doc)."""
    import keras

    from xmodal_tf import transfer

    keras.utils.set_random_seed(seed)
    _, target, _ = views_of(dataset.train, config["source_view"])
    with context.scope():
        model = build_classifier(target.shape[1:], dataset.num_classes, config, f"{variant}_classifier")
    if variant != "scratch":
        transfer.transfer_weights(source_model, model, match="name", strict=True)
    if variant == "paired_transfer":
        distill_encoder(dataset, config, source_model, model, seed, context)
    if variant != "scratch" and config["recipe"] == "freeze_head":
        transfer.freeze(model, pattern="|".join(HEAD_LAYERS))
    with context.scope():
        compile_classifier(model, config["learning_rate"])
    return model


def distill_encoder(dataset, config: dict, source_model, model, seed: int, context: RunContext) -> None:
    """Train ``model``'s encoder on the target view of every training pair to output the
    source encoder's embedding of the paired source view (mean squared error); no labels."""
    import keras

    source, target, _ = views_of(dataset.train, config["source_view"])
    teacher = source_model.get_layer(ENCODER_NAME)
    student = model.get_layer(ENCODER_NAME)
    embeddings = teacher.predict(source, batch_size=1024, verbose=0)
    with context.scope():
        student.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]), loss="mse")
    train_steps(student, target, embeddings, config["distill_steps"], config["batch_size"], seed, context)


def train_target(dataset, config, source_model, variant, rows, seed, context: RunContext):
    """Train one target model on the chosen rows; return its test accuracy."""
    from xmodal_tf import transfer

    _, target, labels = views_of(dataset.train, config["source_view"])
    images, subset_labels = target[rows], labels[rows]
    model = target_model(dataset, config, source_model, variant, seed, context)
    steps = config["target_steps"]
    if variant != "scratch" and config["recipe"] == "two_stage":
        # Stage 1 adapts the head with the body frozen, stage 2 trains all at a lower rate.
        batch_size = subset_batch_size(config["batch_size"], len(rows), context.replicas)
        drop_remainder = context.replicas > 1  # fine_tune's batching of arrays on a strategy
        transfer.fine_tune(
            # unfreeze_top counts weight-carrying layers; more weights than layers means all.
            model, (images, subset_labels), head_layers=2, unfreeze_top=len(model.weights),
            head_epochs=_epochs_for(steps // 2, len(rows), batch_size, drop_remainder),
            fine_tune_epochs=_epochs_for(steps - steps // 2, len(rows), batch_size, drop_remainder),
            head_learning_rate=config["learning_rate"],
            fine_tune_learning_rate=config["learning_rate"] / 10,
            batch_size=batch_size, strategy=context.strategy)
    else:
        train_steps(model, images, subset_labels, steps, config["batch_size"], seed, context)
    _, test_target, test_labels = views_of(dataset.test, config["source_view"])
    return evaluate(model, test_target, test_labels)


def _epochs_for(steps: int, rows: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Epochs of ``rows`` examples in batches of ``batch_size`` that give about ``steps`` steps."""
    batch_size = min(batch_size, rows)
    per_epoch = rows // batch_size if drop_remainder else int(np.ceil(rows / batch_size))
    return max(1, int(np.ceil(steps / per_epoch)))


def load(config: dict, data_dir, seed: int):
    """The ``load_data`` hook: the data set, read and checked before the run starts."""
    return load_data(config["data"], data_dir)


def run(config: dict, context: RunContext) -> dict:
    dataset = context.data if context.data is not None else load(config, context.data_dir, context.seed)
    context.progress(f"{dataset!r}")
    check_global_batch(config["batch_size"], context.replicas, "transfer")  # before any training
    started = time.perf_counter()
    source_model, source_metrics = pretrain(dataset, config, context)
    _, _, train_labels = views_of(dataset.train, config["source_view"])

    results = {}
    for fraction in config["label_fractions"]:
        accuracies = {variant: [] for variant in VARIANTS}
        for repeat in range(config["seeds"]):
            seed = context.seed + repeat
            rows = label_subset(train_labels, fraction, dataset.num_classes, seed)
            for variant in accuracies:
                accuracies[variant].append(
                    train_target(dataset, config, source_model, variant, rows, seed, context))
        results[_fraction_key(fraction)] = _summarise_fraction(fraction, len(rows), accuracies)
        _log_fraction(context, fraction, results[_fraction_key(fraction)])
    metrics = {"data": dataset.name, "source_view": config["source_view"],
               "target_view": _other_view(config["source_view"]), "recipe": config["recipe"],
               "seeds": config["seeds"], "results": results,
               "train_seconds": time.perf_counter() - started, **source_metrics}
    return metrics


def validate(config: dict) -> None:
    from xmodal_tf.experiments.config import ConfigError

    fractions = config["label_fractions"]
    if not fractions or any(not 0 < float(f) <= 1 for f in fractions):
        raise ConfigError(f"label_fractions must be numbers in (0, 1]; got {fractions!r}.")
    for key in ("seeds", "target_steps", "batch_size", "embedding_dim"):
        if config[key] < 1:
            raise ConfigError(f"{key} must be at least 1; got {config[key]!r}.")
    if config["pretrain_epochs"] is not None and config["pretrain_epochs"] < 1:
        raise ConfigError(f"pretrain_epochs must be at least 1 (or null); got {config['pretrain_epochs']!r}.")


def _fraction_key(fraction: float) -> str:
    return f"{100 * float(fraction):g}%"


def _other_view(view: str) -> str:
    return VIEWS[1 - VIEWS.index(view)]


def _summarise_fraction(fraction, n_labels, accuracies) -> dict:
    summary = {"fraction": float(fraction), "labels": int(n_labels)}
    for variant, values in accuracies.items():
        summary[variant] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                            "per_seed": [float(v) for v in values]}
    for variant in VARIANTS[1:]:
        summary[f"{variant}_minus_scratch"] = summary[variant]["mean"] - summary["scratch"]["mean"]
    return summary


def _log_fraction(context: RunContext, fraction: float, summary: dict) -> None:
    key = _fraction_key(fraction)
    for variant in VARIANTS:
        for index, value in enumerate(summary[variant]["per_seed"]):
            context.log_scalar(f"test/accuracy_{key}_labels/{variant}", value, step=index + 1)
    scores = ", ".join(f"{variant} {summary[variant]['mean']:.3f} ± {summary[variant]['std']:.3f}"
                       for variant in VARIANTS)
    context.progress(f"{key} of labels ({summary['labels']} examples): {scores}")


def summarize(metrics: dict) -> list[str]:
    lines = [
        f"transfer on {metrics['data']}: pretrained on the {metrics['source_view']} view "
        f"(test accuracy {metrics['source_test_accuracy']:.3f}), target = {metrics['target_view']} "
        f"view, recipe {metrics['recipe']}; test accuracy, mean ± std over {metrics['seeds']} seed(s)",
        f"{'labels':>14}" + "".join(f"  {variant:>15}" for variant in VARIANTS),
    ]
    for key, summary in metrics["results"].items():
        lines.append(f"{key:>6} ({summary['labels']:>5})" + "".join(
            f"  {summary[v]['mean']:.3f} ± {summary[v]['std']:.3f}" for v in VARIANTS))
    return lines


EXPERIMENT = Experiment(
    name="transfer",
    description="pretrain a CNN on one view, transfer it to the other view with few labels "
                "(two_view_digits offline; split_mnist with --data-dir)",
    defaults=DEFAULTS,
    run=run,
    choices={**TRAINING_CHOICES, "data": DATA_SETS, "source_view": VIEWS, "recipe": RECIPES},
    summarize=summarize,
    validate=validate,
    load_data=load,
)
