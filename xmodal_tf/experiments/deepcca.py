"""Experiment ``deepcca``: linear CCA vs DeepCCA vs DCCAE on two views, side by side.

The protocol of Andrew et al. (2013): train the two encoders on the training split,
fit a linear CCA on their training outputs (its ridge picked on the validation
split), and report the total correlation of the top k canonical directions on each
split. Linear CCA on the raw views is the baseline; DCCAE (Wang et al. 2015) adds
decoders that reconstruct each view from its encoding. The key figure,
``canonical_correlations.png``: each model's canonical correlations on the test split.

Design notes (trainers, strategies, resuming): docs/DESIGN.md (section xmodal_tf/experiments/deepcca.py).
"""

from __future__ import annotations

import time

import numpy as np

from xmodal_tf.experiments.base import TRAINING_CONSTRAINTS, TRAINING_SETTINGS, RunContext, check_global_batch, register
from xmodal_tf.experiments.cca import log_spectrum
from xmodal_tf.experiments.config import ConfigError, Interval, ListOf, Options, fill_data_defaults

DESCRIPTION = "linear CCA vs DeepCCA vs DCCAE (two_view_digits offline; split_mnist with --data-dir)"

DATA_SETS = ("two_view_digits", "split_mnist")
MODELS = ("linear_cca", "deepcca", "dccae")

DEFAULTS = {
    "data": "two_view_digits",
    "models": None,  # None: all three on two_view_digits; linear_cca and deepcca on split_mnist
    "n_components": None,  # None: 10 for two_view_digits, 50 for split_mnist (the paper's k)
    "hidden_units": None,  # None: [256, 256] for two_view_digits, [1024, 1024] for split_mnist
    "activation": "relu",
    "batch_norm": True,
    "sync_batch_norm": True,  # BatchNorm statistics of the global batch under a multi-replica strategy
    "dropout": None,  # None: 0.0 for two_view_digits, 0.05 for split_mnist
    "input_dropout": 0.0,  # dropout on the input features of each view
    "shift": None,  # None: 0 for two_view_digits, 1 for split_mnist; random whole-image shifts (pixels)
    "unshifted_final_epochs": None,  # None: 0 / 10; the last epochs train on unshifted data
    "epochs": None,  # None: 100 for two_view_digits, 50 for split_mnist
    "batch_size": None,  # None: 256 for two_view_digits, 800 for split_mnist
    "learning_rate": None,  # None: 3e-2 for two_view_digits, 2e-3 for split_mnist (Adam's peak rate)
    "schedule": "cosine",  # or "constant"
    "weight_decay": 0.0,  # AdamW's decoupled weight decay; 0 is plain Adam
    "reg": 1e-4,  # ridge on the output covariances inside the objective
    "objective": "trace",  # or "squared", "ey", "ey_unbiased", "barlow_twins", "vicreg"
    # DCCAE's lambda (Wang et al. 2015): weight of each decoder's squared error summed over
    # features, averaged over examples. None: DeepCCA's default (DEFAULT_RECONSTRUCTION_WEIGHT);
    # 0: no decoders, i.e. plain DeepCCA.
    "reconstruction_weight": None,
    "final_reg": [1e-6, 1e-4, 1e-2],  # linear CCA ridges after training, picked on validation
    "trainer": "custom",  # "custom" (DeepCCATrainer, resumable) or "fit" (model.fit)
    **TRAINING_SETTINGS,  # mixed_precision, jit (xmodal_tf.precision)
}
PER_DATA_DEFAULTS = {
    "two_view_digits": {
        "models": ["linear_cca", "deepcca", "dccae"],
        "n_components": 10,
        "hidden_units": [256, 256],
        "epochs": 100,
        "batch_size": 256,
        "dropout": 0.0,
        "shift": 0,
        "unshifted_final_epochs": 0,
        # Picked on validation (seed 0) from 3e-4 ... 0.1: 7.60, 7.92, 8.32, 8.60, 8.71 (3e-2), 8.60;
        # over seeds 0-2 DeepCCA's validation went from 7.85 (1e-3) to 8.67, DCCAE's to 8.66.
        "learning_rate": 3e-2,
    },
    "split_mnist": {
        "models": ["linear_cca", "deepcca"],
        "n_components": 50,
        "hidden_units": [1024, 1024],
        "epochs": 50,
        "batch_size": 800,
        "dropout": 0.05,
        "shift": 1,
        "unshifted_final_epochs": 10,
        "learning_rate": 2e-3,
    },
}


POSITIVE = Interval(int, 1, None)
CONSTRAINTS = {
    "data": [Options(*DATA_SETS)],
    "models": [ListOf(Options(*MODELS), min_length=1, distinct=True), None],
    "n_components": [POSITIVE, None],
    "hidden_units": [ListOf(POSITIVE), None],
    "activation": [Options("relu", "sigmoid", "gelu", "tanh", "elu")],
    "batch_norm": [bool],
    "sync_batch_norm": [bool],
    "dropout": [Interval(float, 0, 1, closed="left"), None],
    "input_dropout": [Interval(float, 0, 1, closed="left")],
    "shift": [Interval(int, 0, 4), None],
    "unshifted_final_epochs": [Interval(int, 0, None), None],
    "epochs": [POSITIVE, None],
    "batch_size": [POSITIVE, None],
    "learning_rate": [Interval(float, 0, None, closed="neither"), None],
    "schedule": [Options("cosine", "constant")],
    "weight_decay": [Interval(float, 0, None)],
    "reg": [Interval(float, 0, None)],
    "objective": [Options("trace", "squared", "ey", "ey_unbiased", "barlow_twins", "vicreg")],
    "reconstruction_weight": [Interval(float, 0, None), None],
    "final_reg": [ListOf(Interval(float, 0, None), min_length=1, noun="ridges")],
    "trainer": [Options("custom", "fit")],
    **TRAINING_CONSTRAINTS,
}
NOTES = {
    **{key: "null: the data set's default" for key in PER_DATA_DEFAULTS["two_view_digits"]},
    "shift": "pixels; null: the data set's default",
    "reconstruction_weight": "DCCAE's lambda; 0: no decoders; null: DeepCCA's default",
    "final_reg": "of the linear CCA after training, the best on validation is kept",
}


def check_rules(config: dict) -> None:
    """ConfigError for a batch too small for the components (the table checks the rest)."""
    filled = resolved(config)
    if filled["objective"] in ("trace", "squared") and filled["batch_size"] <= filled["n_components"]:
        k = filled["n_components"]
        raise ConfigError(
            f"batch_size={filled['batch_size']} is at or below n_components={k}: each batch's canonical "
            "correlations would be degenerate (near 1 whatever the data) and the networks would learn "
            f"nothing useful; use batches well above {k} rows (e.g. --set batch_size={max(4 * k, 100)}) "
            "or fewer components, or an objective made for small batches (--set objective=ey)."
        )


def resolved(config: dict) -> dict:
    """``config`` with every None replaced by the data set's default."""
    return fill_data_defaults(config, PER_DATA_DEFAULTS)


def load_data(name: str, data_dir):
    from xmodal_tf import data

    if name == "split_mnist":
        return data.load_split_mnist(data_dir)
    return data.load_two_view_digits()


def build_model(dataset, config: dict, with_decoders: bool):
    """A DeepCCA (or DCCAE) model of two ``mlp_encoder`` networks."""
    import keras

    from xmodal_tf.encoders import mlp_encoder
    from xmodal_tf.models import DeepCCA

    dims = [int(shape[0]) if len(shape) == 1 else int(shape[0] * shape[1] * shape[2]) for shape in dataset.view_shapes]
    k = config["n_components"]

    def encoder(dim, name):
        network = mlp_encoder(
            dim,
            k,
            hidden_units=tuple(config["hidden_units"]),
            activation=config["activation"],
            batch_norm=config["batch_norm"],
            sync_batch_norm=config["sync_batch_norm"],
            dropout=config["dropout"],
            name=f"{name}_mlp" if config["input_dropout"] else name,
        )
        if not config["input_dropout"]:
            return network
        # Dropping input features (pixels) during training: noise the two views do not share.
        from xmodal_tf.layers import ReplicaDropout

        inputs = keras.Input((dim,), name=f"{name}_input")
        dropped = ReplicaDropout(config["input_dropout"], name=f"{name}_input_dropout")(inputs)
        return keras.Model(inputs, network(dropped), name=name)

    def decoder(dim, name):
        # The mirror image of the encoder, from the k-dim code back to the view.
        return mlp_encoder(
            k,
            dim,
            hidden_units=tuple(reversed(config["hidden_units"])),
            activation=config["activation"],
            batch_norm=config["batch_norm"],
            sync_batch_norm=config["sync_batch_norm"],
            dropout=config["dropout"],
            output_activation="sigmoid",
            name=name,
        )

    weight = config.get("reconstruction_weight")
    # Weight 0 is DCCAE's lambda = 0, plain Deep CCA: no decoders (they would not train).
    decoders = (
        {
            "decoder_x": decoder(dims[0], "decoder_x"),
            "decoder_y": decoder(dims[1], "decoder_y"),
            "reconstruction_weight": weight,
        }
        if with_decoders and weight != 0
        else {}
    )
    return DeepCCA(
        encoder(dims[0], "encoder_x"),
        encoder(dims[1], "encoder_y"),
        n_components=k,
        reg=config["reg"],
        objective=objective_for(config["objective"]),
        **decoders,
    )


def objective_for(name: str):
    """``DeepCCA``'s ``objective`` for a setting: the name itself, or a ``ViewLoss`` with defaults."""
    if name == "barlow_twins":
        from xmodal_tf.ssl_losses import BarlowTwinsLoss

        return BarlowTwinsLoss()
    if name == "vicreg":
        from xmodal_tf.ssl_losses import VICRegLoss

        return VICRegLoss()
    return name


def make_optimizer(config: dict, steps: int):
    import keras

    rate = config["learning_rate"]
    if config["schedule"] == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, steps), alpha=0.01)
    if config["weight_decay"] > 0:
        return keras.optimizers.AdamW(rate, weight_decay=config["weight_decay"])
    from xmodal_tf.optimizers import FusedAdam

    return FusedAdam(rate)


def train_deep_model(name: str, dataset, config: dict, context: RunContext) -> dict:
    """Train one DeepCCA / DCCAE model, then fit and score the final linear CCA."""
    x, y, _ = dataset.train
    # The global batch, split over the replicas (the objective stays the global batch's).
    batch_size = check_global_batch(min(config["batch_size"], len(x)), context.replicas, "deepcca")
    steps_per_epoch = len(x) // batch_size
    phases = training_phases(dataset, (x, y), batch_size, config, context.seed, per_epoch=config["trainer"] == "custom")
    validation = dataset.validation[:2]
    with context.scope():
        model = build_model(dataset, config, with_decoders=(name == "dccae"))
        optimizer = make_optimizer(config, steps_per_epoch * config["epochs"])
    context.progress(
        f"{name}: {config['epochs']} epochs of {steps_per_epoch} steps "
        f"(global batch {batch_size} over {context.replicas} replica(s)), "
        f"trainer={config['trainer']} ..."
    )
    started = time.perf_counter()
    if config["trainer"] == "custom":
        from xmodal_tf.training import DeepCCATrainer

        trainer = context.trainer(
            model,
            optimizer,
            trainer_class=DeepCCATrainer,
            checkpoint_name=name,
            logdir=context.logdir / name,
            eval_every=max(1, config["epochs"] // 10),
            progress=True,
        )
        for train, until in phases:
            trainer.fit(train, until, validation_data=validation)
        history, train_seconds = trainer.history, trainer.train_seconds
    else:
        with context.scope():
            model.compile(optimizer=optimizer)
        context.record_trained(model)
        history, start = {}, 0
        for train, until in phases:
            _extend_history(
                history,
                model.fit(
                    train, epochs=until, initial_epoch=start, shuffle=False, verbose=2 if context.is_chief else 0
                ).history,
            )
            start = until
        train_seconds = time.perf_counter() - started
    return {
        **score_model(model, dataset, config, context, name),
        "train_seconds": train_seconds,
        "epochs": config["epochs"],
        "final_train_loss": float(history["loss"][-1]) if history.get("loss") else None,
    }


def _extend_history(history: dict, part: dict) -> None:
    """Append one training phase's per-epoch history lists to ``history``."""
    for key, values in part.items():
        history.setdefault(key, []).extend(values)


def training_phases(dataset, views, batch_size: int, config: dict, seed: int, per_epoch: bool = False) -> list:
    """The training phases: randomly shifted images first, then plain training pairs.

    Batches of randomly shifted images (``shift`` pixels) come first, then
    ``unshifted_final_epochs`` epochs of the plain training pairs, so that the networks
    end on the distribution they are tested on.

    Args:
        dataset: the ``TwoViewDataset`` (its ``view_shapes``).
        views: the training views.
        batch_size: the global batch.
        config: the resolved configuration.
        seed: the run's seed.
        per_epoch: the shifted phase is a function ``epoch -> dataset`` (for the
            Trainer), each epoch's order and shifts seeded by (seed, epoch), so that a
            resumed run draws what the uninterrupted one did; else one dataset whose
            shift generator runs on across its passes (for ``model.fit``).

    Returns:
        [(tf.data.Dataset, last epoch of the phase), ...].
    """
    from xmodal_tf.data import make_dataset

    plain = make_dataset(views, batch_size=batch_size, seed=seed, drop_remainder=True)
    if not config["shift"]:
        return [(plain, config["epochs"])]
    from xmodal_tf.data.augment import map_random_shifts, random_shift_pairs

    # The draws stay sequential (the same shifts for the same batches in every run);
    # the pixels move in a parallel map.
    if per_epoch:

        def shifted(epoch):
            epoch_seed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
            batches = make_dataset(views, batch_size=batch_size, seed=epoch_seed, drop_remainder=True)
            return map_random_shifts(batches, random_shift_pairs(dataset.view_shapes, config["shift"], seed=epoch_seed))
    else:
        shifted = map_random_shifts(plain, random_shift_pairs(dataset.view_shapes, config["shift"], seed=seed))
    final = min(config["unshifted_final_epochs"], config["epochs"])
    phases = [(shifted, config["epochs"] - final), (plain, config["epochs"])]
    return [(data, until) for data, until in phases if until > 0]


def score_model(model, dataset, config: dict, context: RunContext, name: str) -> dict:
    """Fit and choose the final linear CCA, and report the top-k total correlation on every split.

    One linear CCA is fitted on training outputs for each ridge in ``final_reg``; the
    best on validation is kept.
    """
    best = None
    for ridge in config["final_reg"]:
        model.fit_linear_cca(*dataset.train[:2], reg=float(ridge))
        value = model.score(*dataset.validation[:2])
        if best is None or value > best[1]:
            best = (float(ridge), value)
    model.fit_linear_cca(*dataset.train[:2], reg=best[0])
    result = {"final_reg": best[0], "test_correlations": model.correlations(*dataset.test[:2]).tolist()}
    for split in ("train", "validation", "test"):
        result[f"{split}_total_correlation"] = float(model.score(*getattr(dataset, split)[:2]))
        context.log_scalar(f"{split}/{name}_total_correlation", result[f"{split}_total_correlation"])
    context.progress(
        f"{name}: test total correlation {result['test_total_correlation']:.3f} (final CCA reg {best[0]:g})"
    )
    return result


def linear_cca(dataset, config: dict, context: RunContext) -> dict:
    from xmodal_tf.experiments.cca import select_ridge

    started = time.perf_counter()
    model, _ = select_ridge(dataset, config["n_components"], [1e-5, 1e-4, 1e-3, 1e-2], "float64", context)
    result = {
        "final_reg": model.reg,
        "train_seconds": time.perf_counter() - started,
        "test_correlations": model.correlations(*dataset.test[:2]).tolist(),
    }
    for split in ("train", "validation", "test"):
        result[f"{split}_total_correlation"] = float(model.correlations(*getattr(dataset, split)[:2]).sum())
        context.log_scalar(f"{split}/linear_cca_total_correlation", result[f"{split}_total_correlation"])
    return result


def load(config: dict, data_dir, seed: int):
    """The ``load_data`` hook: the data set, read and checked before the run starts."""
    return load_data(resolved(config)["data"], data_dir)


def run(config: dict, context: RunContext) -> dict:
    config = resolved(config)
    dataset = context.data if context.data is not None else load(config, context.data_dir, context.seed)
    context.progress(f"{dataset!r}")
    results = {}
    for name in config["models"]:
        if name == "linear_cca":
            results[name] = linear_cca(dataset, config, context)
        else:
            results[name] = train_deep_model(name, dataset, config, context)
    log_spectrum(
        context,
        {name: result["test_correlations"] for name, result in results.items()},
        f"test canonical correlations on {dataset.name}",
    )
    return {
        "data": dataset.name,
        "n_components": config["n_components"],
        "results": results,
        "recipe": {
            key: config[key]
            for key in (
                "hidden_units",
                "activation",
                "batch_norm",
                "sync_batch_norm",
                "dropout",
                "shift",
                "unshifted_final_epochs",
                "epochs",
                "batch_size",
                "learning_rate",
                "schedule",
                "weight_decay",
                "reg",
                "objective",
                "trainer",
            )
        },
        "reconstruction_weight": reconstruction_weight(config),
    }


def reconstruction_weight(config: dict) -> float:
    """DCCAE's weight in this run: the setting, or DeepCCA's default for None."""
    if config["reconstruction_weight"] is not None:
        return float(config["reconstruction_weight"])
    from xmodal_tf.models.deepcca import DEFAULT_RECONSTRUCTION_WEIGHT

    return DEFAULT_RECONSTRUCTION_WEIGHT


def summarize(metrics: dict) -> list[str]:
    k = metrics["n_components"]
    lines = [
        f"total correlation of the top {k} canonical directions on {metrics['data']} "
        f"(final linear CCA fitted on training outputs)",
        f"{'model':<12} {'train':>8} {'valid':>8} {'test':>8} {'seconds':>8}",
    ]
    lines += [
        f"{name:<12} {result['train_total_correlation']:8.3f} "
        f"{result['validation_total_correlation']:8.3f} "
        f"{result['test_total_correlation']:8.3f} {result['train_seconds']:8.1f}"
        for name, result in metrics["results"].items()
    ]
    return lines


EXPERIMENT = register(globals(), name="deepcca", description=DESCRIPTION)
