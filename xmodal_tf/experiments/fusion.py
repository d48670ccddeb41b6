"""Experiment ``fusion``: single modalities vs every fusion strategy, complete and with a modality missing.

Two modalities of the same examples (offline: the halves of scikit-learn's 8x8 digits;
``--set data=av_mnist --data-dir DIR``: MNIST images paired with spoken digits), one of
them degraded. Per seed it trains ``<modality>_only`` classifiers, one per fusion
strategy, and ``<strategy>_dropout`` ones (modality dropout and auxiliary unimodal
losses), all as outputs of one joint model (``JointTraining``), each keeping its best
validation epoch. Each is scored on the complete test split and with 25 / 50 / 100 % of
the test examples missing one modality, and the report checks the issue's two
``targets``. The key figures, ``accuracy_vs_missing_<modality>.png``: each classifier's
test accuracy against the share of test examples missing that modality.

Design notes (classifiers, validation, scoring, speed, distribution): docs/DESIGN.md
(section xmodal_tf/experiments/fusion.py).
"""

from __future__ import annotations

import numpy as np

from xmodal_tf.experiments.base import TRAINING_CONSTRAINTS, TRAINING_SETTINGS, RunContext, check_global_batch, register
from xmodal_tf.experiments.config import ConfigError, Interval, ListOf, Options
from xmodal_tf.experiments.encoder_settings import (
    PRETRAINED_CONSTRAINT,
    PRETRAINED_NOTE,
    pretrained_image_encoder,
    pretrained_source,
)

DESCRIPTION = (
    "single modalities vs fusion strategies, complete and with a modality missing "
    "(digits halves offline; av_mnist with --data-dir)"
)

DATA_SETS = ("digits", "av_mnist")
MODALITIES = {"digits": ("left", "right"), "av_mnist": ("image", "audio")}
IMAGE_MODALITIES = {"digits": ("left", "right"), "av_mnist": ("image",)}  # image_encoder applies to these
DEGRADATIONS = ("noise", "occlusion", "none")
ENCODERS = ("mlp", "cnn")
EPOCH_SELECTIONS = ("complete", "missing_mean")
UNIMODAL_HEADS = ("auxiliary", "fusion")  # as xmodal_tf.models.fusion.UNIMODAL_HEADS
# The same names as xmodal_tf.models.fusion.FUSION_STRATEGIES (kept here so that listing
# experiments does not import TensorFlow).
STRATEGIES = ("average", "weighted", "concat", "gated", "attention", "tensor", "late")

DEFAULTS = {
    "data": "digits",
    "strategies": list(STRATEGIES),
    "seeds": 3,  # repetitions (seed, seed + 1, ...): initialisation, batches, degradation, missing rows
    "modality_dropout": 0.3,  # rate per modality of the *_dropout classifiers, in (0, 0.5]
    "unimodal_loss_weight": 1.0,  # *_dropout classifiers: weight of the per-modality auxiliary losses (>= 0)
    # *_dropout classifiers: share of the fused prediction in their target, [0, 1]; None: per data set
    "unimodal_distillation": None,
    "unimodal_head": "auxiliary",  # *_dropout classifiers: "auxiliary" head per modality, or "fusion" (own path)
    # *_dropout classifiers: share of the <modality>_only classifier's prediction (trained
    # beside them) in each modality's unimodal target, [0, 1 - unimodal_distillation];
    # None: per data set.
    "unimodal_teacher_distillation": None,
    # How each classifier's best validation epoch is chosen: "complete" (accuracy on complete
    # data) or "missing_mean" (the *_dropout ones: mean of complete and each modality absent).
    "epoch_selection": None,  # None: per data set
    "missing_fractions": [0.25, 0.5, 1.0],  # share of test examples missing one modality
    "degradation": "noise",  # of degrade_modality, train and test: noise, occlusion or none
    "degrade_modality": None,  # None: left (digits) / image (av_mnist)
    "degradation_strength": None,  # noise std, or occluded share of the side; None: per data set and kind
    "other_modality_noise": None,  # noise std added to the other modality too; None: per data set
    "encoder": None,  # "mlp" (flattened input) or "cnn", per modality; None: per data set
    "embedding_dim": None,  # None: per data set
    "filters": [16, 32],  # cnn encoder: filters per conv block
    "encoder_hidden_units": [64],  # mlp encoder: hidden layers
    # "pretrained:<keras-hub preset or directory>" for the image modalities (digit halves,
    # av_mnist's images) in place of "encoder"; null: ours. text_encoder: no data set here
    # has text, so it is refused (it exists for a uniform --set across experiments).
    "image_encoder": None,
    "text_encoder": None,
    "pretrained_trainable": False,  # whether a pretrained backbone trains (its projection always does)
    "hidden_units": [64],  # head between the fused vector and the softmax
    "epochs": None,  # the budget (each classifier keeps its best validation epoch); None: per data set
    "batch_size": None,  # None: per data set
    "learning_rate": 3e-3,
    "train_size": None,  # av_mnist: training pairs used (of 50000); None: per data set
    **TRAINING_SETTINGS,  # mixed_precision, jit (xmodal_tf.precision)
}
DATA_DEFAULTS = {
    "digits": {
        "degrade_modality": "left",
        "degradation_strength": {"noise": 0.3, "occlusion": 0.5, "none": 0.0},
        "other_modality_noise": 0.0,
        "encoder": "mlp",
        "embedding_dim": 32,
        "epochs": 60,
        "batch_size": 128,
        "train_size": None,
        # Chosen on validation (benchmarks/bench_fusion_selection.py --score best, see the README).
        "epoch_selection": "missing_mean",
        "unimodal_distillation": 0.0,
        "unimodal_teacher_distillation": 0.5,
    },
    # Spoken digits alone score ~0.97 on held-out recordings: noise keeps them from near perfect.
    "av_mnist": {
        "degrade_modality": "image",
        "degradation_strength": {"noise": 0.7, "occlusion": 0.5, "none": 0.0},
        "other_modality_noise": 1.0,
        "encoder": "mlp",
        "embedding_dim": 64,
        "epochs": 20,
        "batch_size": 128,
        "train_size": 20000,
        "epoch_selection": "missing_mean",
        "unimodal_distillation": 0.0,
        "unimodal_teacher_distillation": 0.5,
    },
}
PREDICT_BATCH = 2048
MISSING_GOAL = 0.005  # issue 17: each missing-modality row >= the remaining modality's classifier + 0.5 points
AUDIO_TEST_FRACTION = 0.2  # av_mnist: recordings held out for test, per digit (load_av_mnist's split)
AUDIO_VALIDATION_FRACTION = 0.2  # av_mnist: of the other recordings, held out for validation, per digit
PAIRING_SEED = 0  # av_mnist: which recording of its digit each training / validation image gets
VALIDATION_STREAM = 1  # the validation split's degradation and missing rows: rng (seed, this)
POSITIVE = Interval(int, 1, None)
SHARE = Interval(float, 0, 1)
CONSTRAINTS = {
    "data": [Options(*DATA_SETS)],
    "strategies": [ListOf(Options(*STRATEGIES), min_length=1, distinct=True)],
    "seeds": [POSITIVE],
    "modality_dropout": [Interval(float, 0, 0.5, closed="right")],
    "unimodal_loss_weight": [Interval(float, 0, None)],
    "unimodal_distillation": [SHARE, None],
    "unimodal_head": [Options(*UNIMODAL_HEADS)],
    "unimodal_teacher_distillation": [SHARE, None],
    "epoch_selection": [Options(*EPOCH_SELECTIONS), None],
    "missing_fractions": [ListOf(Interval(float, 0, 1, closed="right"), distinct=True)],
    "degradation": [Options(*DEGRADATIONS)],
    "degrade_modality": [str, None],
    "degradation_strength": [Interval(float, 0, None), None],
    "other_modality_noise": [Interval(float, 0, None), None],
    "encoder": [Options(*ENCODERS), None],
    "embedding_dim": [POSITIVE, None],
    "filters": [ListOf(POSITIVE, min_length=1)],
    "encoder_hidden_units": [ListOf(POSITIVE)],
    "image_encoder": [PRETRAINED_CONSTRAINT, None],
    "text_encoder": [PRETRAINED_CONSTRAINT, None],
    "pretrained_trainable": [bool],
    "hidden_units": [ListOf(POSITIVE)],
    "epochs": [POSITIVE, None],
    "batch_size": [POSITIVE, None],
    "learning_rate": [Interval(float, 0, None, closed="neither")],
    "train_size": [Interval(int, 1, 50000), None],
    **TRAINING_CONSTRAINTS,
}
NOTES = {
    **{key: "null: the data set's default" for key in DATA_DEFAULTS["digits"]},
    "modality_dropout": "two modalities, never both dropped",
    "unimodal_loss_weight": "0: no auxiliary losses",
    "unimodal_head": '"auxiliary" trains a softmax head of its own per modality, "fusion" the classifier '
    "itself with only that modality present",
    "epoch_selection": '"complete" chooses every classifier\'s epoch on complete validation data, '
    '"missing_mean" the *_dropout ones\' on the mean of complete data and each modality '
    "absent; null: the data set's default",
    "missing_fractions": "shares of the test examples missing one modality",
    "train_size": "av_mnist's training pairs; null: the data set's default",
    "image_encoder": PRETRAINED_NOTE,
}


# ----------------------------------------------------------------------------- data
def settings_for(config: dict) -> dict:
    """The configuration with every None per-data-set setting filled in."""
    defaults = DATA_DEFAULTS[config["data"]]
    settings = {key: (defaults[key] if key in defaults and value is None else value) for key, value in config.items()}
    if isinstance(settings["degradation_strength"], dict):  # the data set's default for this kind
        settings["degradation_strength"] = settings["degradation_strength"][settings["degradation"]]
    return settings


def load_data(settings: dict, data_dir, *, audio_validation_fraction: float = AUDIO_VALIDATION_FRACTION):
    """The data set with train / validation / test splits, the test split never seen before scoring.

    digits: ``load_multimodal_digits`` (1078 / 359 / 360). av_mnist:
    ``load_av_mnist_held_out``, audio as (n, 92, 13, 1).

    Args:
        settings: the resolved settings.
        data_dir: the data folder.
        audio_validation_fraction: as in ``load_av_mnist_held_out``.

    Returns:
        A ``MultimodalDataset``.
    """
    from xmodal_tf import data

    if settings["data"] == "av_mnist":
        dataset = load_av_mnist_held_out(data_dir, settings["train_size"], audio_validation_fraction)
        # The audio CNN reads the (frames, 13) MFCCs as a one-channel image.
        for split in (dataset.train, dataset.validation, dataset.test):
            split.inputs["audio"] = split.inputs["audio"][..., None]
        return dataset
    return data.load_multimodal_digits(MODALITIES["digits"])


def load_av_mnist_held_out(data_dir, train_size, audio_validation_fraction: float = AUDIO_VALIDATION_FRACTION):
    """AV-MNIST whose validation audio comes from recordings never trained on.

    ``load_av_mnist``'s validation pairs reuse the training recordings; here the
    recordings it trains on are split again, by recording and stratified by digit:
    ``audio_validation_fraction`` of each digit's pair with the validation images
    (MNIST's last 10000 training images), the rest with the training images (the first
    ``train_size``), each image with a random recording of its digit (``PAIRING_SEED``).
    The test split is ``load_av_mnist``'s, unchanged: MNIST's test images with the held-out
    ``AUDIO_TEST_FRACTION`` of the recordings, MFCCs standardised as there (per
    coefficient, over every non-test recording: validation ones included, so that the
    test inputs stay the same).

    Args:
        data_dir: the data folder.
        train_size: the number of training images (the first ones).
        audio_validation_fraction: the share of each digit's training recordings paired
            with the validation images.

    Returns:
        A ``MultimodalDataset``: "image" (n, 28, 28, 1) in [0, 1], "audio" (n, 92, 13).
    """
    from xmodal_tf import data
    from xmodal_tf.data.multimodal import MultimodalDataset, _stratified_split

    if (
        isinstance(audio_validation_fraction, bool)
        or not isinstance(audio_validation_fraction, (int, float))
        or not 0 < audio_validation_fraction < 1
    ):
        raise ValueError(
            f"audio_validation_fraction must be a number strictly between 0 and 1; got {audio_validation_fraction!r}."
        )
    dataset = data.load_av_mnist(data_dir, audio_test_fraction=AUDIO_TEST_FRACTION, seed=0, train_size=train_size)
    # The same recordings as load_av_mnist's (same file, fraction and seed): its training ones.
    heard = data.load_spoken_digits(data_dir, test_fraction=AUDIO_TEST_FRACTION, seed=0).train
    train_rows, validation_rows = _stratified_split(heard.labels, float(audio_validation_fraction), seed=0)
    rng = np.random.default_rng(PAIRING_SEED)
    splits = {}
    for name, rows in (("train", train_rows), ("validation", validation_rows)):
        images = getattr(dataset, name)
        splits[name] = _paired_by_digit(images.inputs["image"], images.labels, heard.subset(rows), rng, name)
    return MultimodalDataset(
        splits["train"],
        splits["validation"],
        dataset.test,
        dataset.modalities,
        f"{dataset.description}; validation audio from {len(validation_rows)} recordings held out of training",
    )


def _paired_by_digit(images: np.ndarray, labels: np.ndarray, recordings, rng: np.random.Generator, split: str):
    """A ``MultimodalSplit``: each image (n, ...) with a random recording of its digit
    from ``recordings`` (a ``MultimodalSplit`` with "audio")."""
    from xmodal_tf.data.multimodal import MultimodalSplit

    chosen = np.empty(len(labels), dtype=np.int64)
    for digit in np.unique(labels):
        pool = np.flatnonzero(recordings.labels == digit)
        if not len(pool):
            raise ValueError(
                f"av_mnist: no {split} recording of the digit {digit} (each digit needs at least 3 "
                f"recordings: test, validation and training); check fsdd_mfcc.npz."
            )
        where = np.flatnonzero(labels == digit)
        chosen[where] = rng.choice(pool, size=len(where))
    return MultimodalSplit({"image": images, "audio": recordings.inputs["audio"][chosen]}, labels)


def degrade(images: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Degrade a modality with noise or occlusion.

    Args:
        images: the examples (n, ...).
        kind: "noise": add N(0, strength^2), clipped to the data's range; "occlusion":
            zero one random square per example, of side strength x the shorter of axes
            1 and 2.
        strength: the noise's standard deviation or the square's relative side.
        rng: the random draws.

    Returns:
        The degraded examples.
    """
    if kind == "none":
        return images
    if kind == "noise":
        noisy = images + rng.normal(0.0, strength, size=images.shape).astype(images.dtype)
        return np.clip(noisy, images.min(), images.max())
    height, width = images.shape[1:3]
    side = max(1, int(round(strength * min(height, width))))
    occluded = images.copy()
    tops = rng.integers(0, height - side + 1, size=len(images))
    lefts = rng.integers(0, width - side + 1, size=len(images))
    for row, (top, left) in enumerate(zip(tops, lefts)):
        occluded[row, top : top + side, left : left + side] = 0.0
    return occluded


def degraded_inputs(split, settings: dict, rng: np.random.Generator) -> dict:
    inputs = dict(split.inputs)
    for name in inputs:
        if name == settings["degrade_modality"]:
            inputs[name] = degrade(inputs[name], settings["degradation"], settings["degradation_strength"], rng)
        elif settings["other_modality_noise"]:
            inputs[name] = degrade(inputs[name], "noise", settings["other_modality_noise"], rng)
    return inputs


# ----------------------------------------------------------------------------- models
def build_classifiers(inputs: dict, num_classes: int, settings: dict) -> dict:
    """{name: FusionClassifier} for every classifier of one seed (see docs/DESIGN.md)."""
    from xmodal_tf.models.fusion import build_fusion_classifier

    modalities = tuple(inputs)

    def encoders(names):
        return {
            name: build_encoder(
                inputs[name].shape[1:], settings, f"{name}_encoder", image=name in IMAGE_MODALITIES[settings["data"]]
            )
            for name in names
        }

    common = {"num_classes": num_classes, "hidden_units": tuple(settings["hidden_units"])}
    classifiers = {
        f"{modality}_only": build_fusion_classifier(encoders([modality]), "average", name=f"{modality}_only", **common)
        for modality in modalities
    }
    for strategy in settings["strategies"]:
        # Tensor fusion multiplies the embedding sizes: project them to 16 first.
        projection = 16 if strategy == "tensor" else None
        for name, rate, weight, share in (
            (strategy, 0.0, 0.0, 0.0),
            (
                f"{strategy}_dropout",
                settings["modality_dropout"],
                settings["unimodal_loss_weight"],
                settings["unimodal_distillation"],
            ),
        ):
            classifiers[name] = build_fusion_classifier(
                encoders(modalities),
                strategy,
                modality_dropout=rate,
                projection_dim=projection,
                unimodal_loss_weight=weight,
                unimodal_distillation=share,
                name=name,
                unimodal_head=settings["unimodal_head"],
                **common,
            )
    return classifiers


def build_encoder(input_shape, settings: dict, name: str, *, image: bool = False):
    """A CNN over (H, W, C) inputs, an MLP over the flattened input, or for an image
    modality with ``image_encoder`` set, the pretrained keras-hub encoder."""
    import keras

    from xmodal_tf.encoders import cnn_encoder, mlp_encoder

    if image and settings["image_encoder"] is not None:
        return pretrained_image_encoder(
            pretrained_source(settings["image_encoder"]),
            tuple(input_shape),
            settings["embedding_dim"],
            trainable=settings["pretrained_trainable"],
            name=name,
        )
    if settings["encoder"] == "cnn":
        # The measured recipe (BatchNorm on, no dropout: the builder's defaults before issue 16).
        return cnn_encoder(
            tuple(input_shape),
            settings["embedding_dim"],
            filters=tuple(settings["filters"]),
            global_pooling="flatten",
            batch_norm=True,
            dropout=0.0,
            name=name,
        )
    inputs = keras.Input(tuple(input_shape), name=f"{name}_inputs")
    flat = keras.layers.Flatten(name=f"{name}_flatten")(inputs)
    body = mlp_encoder(
        flat.shape[-1],
        settings["embedding_dim"],
        hidden_units=tuple(settings["encoder_hidden_units"]),
        activation="relu",
        name=f"{name}_mlp",
    )
    return keras.Model(inputs, body(flat), name=name)


class JointTraining:
    """Every classifier as one output of a single compiled Keras model.

    Each classifier gets exactly the updates it would get alone (docs/DESIGN.md,
    section xmodal_tf/experiments/fusion.py). The first seed's classifiers become the
    model; ``restart`` loads another seed's freshly initialised weights into it and
    clears the optimizer state, so every seed reuses the one traced training step.

    Training runs through ``xmodal_tf.training.Trainer`` (``context.trainer`` when a run
    context is given, else on the current strategy). Create the object, like the
    classifiers, inside ``with context.scope():``.
    """

    def __init__(self, classifiers: dict, inputs: dict, settings: dict, context: RunContext | None = None):
        import keras

        from xmodal_tf.optimizers import FusedAdam

        self.classifiers = classifiers
        self.settings = settings
        self.context = context
        self.train_seconds = 0.0  # over every seed's epochs, those before a restart included
        # After a fit with validation: {classifier: (best epoch from 1, its validation accuracy)}.
        self.chosen_epochs = {}
        model_inputs = {name: keras.Input(array.shape[1:], name=name) for name, array in inputs.items()}
        outputs = {
            name: classifier({modality: model_inputs[modality] for modality in classifier.modalities})
            for name, classifier in classifiers.items()
        }
        self.model = _all_classifiers_model(
            model_inputs, outputs, classifiers, selection_criteria(classifiers, settings), settings
        )
        # FusedAdam: one update op per weight instead of about ten, which shortens the
        # trace of 16 models; built now so that the trainer does not trace its step twice.
        self.model.compile(
            optimizer=FusedAdam(settings["learning_rate"]),
            loss={name: "sparse_categorical_crossentropy" for name in classifiers},
        )
        self.model.optimizer.build(self.model.trainable_variables)
        self._initial_optimizer_state = [variable.numpy() for variable in self.model.optimizer.variables]
        if context is None:
            from xmodal_tf.training import Trainer

            self.trainer = Trainer(self.model, None, progress=False)
        else:
            # One trainer for every seed (its traced step is kept); each seed checkpoints
            # in its own folder (``fit``).
            self.trainer = context.trainer(self.model, None, progress=False, checkpoint_name=False)
        self.replicas = int(self.trainer.strategy.num_replicas_in_sync)

    def restart(self, fresh_classifiers: dict) -> None:
        for name, classifier in self.classifiers.items():
            classifier.set_weights(fresh_classifiers[name].get_weights())
        for variable, value in zip(self.model.optimizer.variables, self._initial_optimizer_state):
            variable.assign(value)

    def fit(self, inputs: dict, labels: np.ndarray, seed: int, validation: tuple | None = None) -> dict:
        """Train ``epochs`` epochs from epoch 0, or resume this seed's checkpoint.

        Args:
            inputs: the training inputs {modality: (n, ...)}.
            labels: the training labels (n,).
            seed: the seed (its checkpoint folder and shuffle).
            validation: (inputs {modality: (n, ...)}, labels (n,)) complete validation
                data, or None. Given, every classifier ends with the weights of its best
                validation epoch (``chosen_epochs``); else with those of the last epoch.

        Returns:
            The trainer's history dict (one list per metric: ``<name>_loss``,
            ``<name>_unimodal_loss``, with ``validation`` also ``val_<name>_accuracy``, ...).
        """
        from xmodal_tf.data import make_dataset

        batch_size = check_global_batch(self.settings["batch_size"], self.replicas, "fusion")
        targets = {name: labels for name in self.classifiers}
        dataset = make_dataset(inputs, targets, batch_size=batch_size, seed=seed, drop_remainder=self.replicas > 1)
        context = self.context
        self.model.reset_selection()  # (before the restart: a checkpoint restores its own)
        self.trainer.restart(None if context is None else context.checkpoint_directory(f"seed{seed}"))
        callbacks = []
        if context is not None:
            if self.trainer.restored_from:
                context.progress(f"seed {seed}: resuming after epoch {self.trainer.epoch}")
            callbacks.append(_progress_callback(context, seed, self.settings["epochs"], list(self.classifiers)))
        history = self.trainer.fit(dataset, self.settings["epochs"], validation_data=validation, callbacks=callbacks)
        self.train_seconds += self.trainer.train_seconds
        self.chosen_epochs = self.model.restore_best() if validation is not None else {}
        return history


def _progress_callback(context: RunContext, seed: int, epochs: int, names: list):
    """A Keras callback printing the classifiers' mean training loss about every tenth of
    the epochs (a run on AV-MNIST is otherwise silent for minutes)."""
    import keras

    every = max(1, epochs // 10)

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % every and epoch + 1 != epochs:
                return
            losses = [logs[f"{name}_loss"] for name in names if f"{name}_loss" in (logs or {})]
            mean = f", mean training loss {np.mean(losses):.3f}" if losses else ""
            context.progress(f"seed {seed}: epoch {epoch + 1}/{epochs}{mean} ({logs.get('seconds', 0):.1f}s)")

    return Progress()


def selection_criteria(classifiers: dict, settings: dict) -> dict:
    """How each classifier's best validation epoch is chosen.

    "complete" is the accuracy on the complete validation split, "mean" the mean of that
    and of the accuracies with each of its modalities absent from every validation
    example. ``epoch_selection`` "complete" gives every classifier "complete";
    "missing_mean" gives "mean" to the ``*_dropout`` classifiers, which are built to work
    with a modality absent (the single-modality classifiers see one modality only, so
    their accuracy on complete data IS their accuracy with the other modality absent).

    Args:
        classifiers: {name: classifier}.
        settings: the resolved settings.

    Returns:
        {classifier: "complete" or "mean"}.
    """
    robust = settings.get("epoch_selection", "complete") == "missing_mean"
    return {
        name: "mean" if robust and name.endswith("_dropout") and len(classifier.modalities) > 1 else "complete"
        for name, classifier in classifiers.items()
    }


def _all_classifiers_model(
    inputs: dict, outputs: dict, classifiers: dict, criteria: dict | None = None, settings: dict | None = None
):
    """The joint model: one compiled loss per output, plus each classifier's own auxiliary
    unimodal loss (``FusionClassifier.unimodal_loss``, weighted as in its ``compute_loss``),
    which depends on that classifier's weights only; logged as ``<name>_unimodal_loss``.

    It also selects each classifier's best epoch: the Trainer calls its ``held_out_logs``
    with the validation split after every epoch (see there). The selection's state (a
    copy of each classifier's weights at its best epoch, that accuracy and epoch, the
    epochs evaluated) is non-trainable weights of this model, so the Trainer's
    checkpoints hold it and a resumed run goes on with it.

    criteria: {classifier: "complete" or "mean"} (``selection_criteria``); None: all "complete"."""
    import keras

    from xmodal_tf import metrics
    from xmodal_tf._replicas import in_replica_context, num_replicas

    names = list(classifiers)
    criteria = {name: (criteria or {}).get(name, "complete") for name in names}
    # Distillation from unimodal teachers: each multimodal classifier with unimodal losses
    # takes <modality>_only's prediction (stop-gradient: the teacher trains as alone) into
    # that modality's target.
    teacher_share = float((settings or {}).get("unimodal_teacher_distillation") or 0.0)
    unimodal_teachers = {}
    if teacher_share:
        for name, classifier in classifiers.items():
            if classifier.unimodal_loss_weight and len(classifier.modalities) > 1:
                unimodal_teachers[name] = {
                    modality: f"{modality}_only"
                    for modality in classifier.modalities
                    if f"{modality}_only" in classifiers
                }
    with_absent = [name for name in names if criteria[name] == "mean"]

    class AllClassifiers(keras.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.with_unimodal = [name for name, classifier in classifiers.items() if classifier.unimodal_loss_weight]
            self.unimodal_trackers = [keras.metrics.Mean(name=f"{name}_unimodal_loss") for name in self.with_unimodal]
            # One flat list (Keras tracks it): classifier after classifier, in their weights' order.
            self.best_weight_copies = [
                keras.Variable(
                    np.zeros(variable.shape, variable.dtype),
                    dtype=variable.dtype,
                    trainable=False,
                    name=f"{name}_best_{index}",
                )
                for name in names
                for index, variable in enumerate(classifiers[name].weights)
            ]
            self.best_accuracy = keras.Variable(
                np.full(len(names), -1.0, np.float64), dtype="float64", trainable=False, name="best_validation_accuracy"
            )
            self.best_epoch = keras.Variable(
                np.zeros(len(names), np.int64), dtype="int64", trainable=False, name="best_epoch"
            )
            self.evaluations = keras.Variable(np.int64(0), dtype="int64", trainable=False, name="epochs_evaluated")
            self.criteria = criteria
            self._forward = None
            self._forward_absent = None

        def _copies(self, name: str) -> list:
            start = sum(len(classifiers[other].weights) for other in names[: names.index(name)])
            return self.best_weight_copies[start : start + len(classifiers[name].weights)]

        def reset_selection(self) -> None:
            """Forget the best epochs (a new seed starts from epoch 0)."""
            self.best_accuracy.assign(np.full(len(names), -1.0, np.float64))
            self.best_epoch.assign(np.zeros(len(names), np.int64))
            self.evaluations.assign(np.int64(0))

        def held_out_logs(self, data) -> dict:
            """The Trainer's validation hook, called after every epoch.

            Scores every classifier (accuracy, complete data; for a classifier selected
            on "mean", also with each of its modalities absent from every example, and the
            criterion, the mean of those); one whose criterion beats its best so far
            (strictly: the earliest epoch wins ties) gets its weights copied and the epoch
            noted.

            Args:
                data: (inputs {modality: (n, ...) array}, labels (n,) int), the complete
                    validation split, or None (an epoch without evaluation).

            Returns:
                {"val_<name>_accuracy": accuracy} (plus, for "mean",
                "val_<name>_<modality>_absent_accuracy" and "val_<name>_criterion"); NaN
                for every one when ``data`` is None.
            """
            if data is None:
                return {key: float("nan") for key in self._held_out_keys()}
            inputs, labels = data
            probabilities = self.predict_every_classifier(inputs)
            absent = self.predict_with_one_absent(inputs) if with_absent else {}
            self.evaluations.assign_add(1)
            epoch = int(self.evaluations.numpy())
            best, best_epoch = self.best_accuracy.numpy(), self.best_epoch.numpy()
            logs = {}
            for index, name in enumerate(names):
                accuracy = metrics.accuracy(labels, probabilities[name])
                logs[f"val_{name}_accuracy"] = accuracy
                criterion = accuracy
                if criteria[name] == "mean":
                    scores = [accuracy]
                    for modality in classifiers[name].modalities:
                        scores.append(metrics.accuracy(labels, absent[modality][name]))
                        logs[f"val_{name}_{modality}_absent_accuracy"] = scores[-1]
                    criterion = float(np.mean(scores))
                    logs[f"val_{name}_criterion"] = criterion
                if criterion > best[index]:
                    best[index], best_epoch[index] = criterion, epoch
                    for copy, variable in zip(self._copies(name), classifiers[name].weights):
                        copy.assign(variable)
            self.best_accuracy.assign(best)
            self.best_epoch.assign(best_epoch)
            return logs

        def _held_out_keys(self) -> list:
            keys = [f"val_{name}_accuracy" for name in names]
            for name in with_absent:
                keys += [f"val_{name}_{modality}_absent_accuracy" for modality in classifiers[name].modalities]
                keys.append(f"val_{name}_criterion")
            return keys

        def predict_with_one_absent(self, inputs: dict) -> dict:
            """Probabilities with each modality absent, for the classifiers selected on "mean".

            Returns:
                {modality: {classifier: (n, classes) probabilities with that modality
                absent from every example}}.
            """
            import tensorflow as tf

            from xmodal_tf.models.fusion import MASK_INPUT

            modalities = list(inputs)
            if self._forward_absent is None:

                def forward(batch, absent_column):
                    rows = tf.shape(next(iter(batch.values())))[0]
                    present = tf.tile(1.0 - tf.one_hot(absent_column, len(modalities))[None], [rows, 1])
                    outputs = {}
                    for name in with_absent:
                        classifier = classifiers[name]
                        columns = [modalities.index(modality) for modality in classifier.modalities]
                        given = {modality: batch[modality] for modality in classifier.modalities}
                        given[MASK_INPUT] = tf.gather(present, columns, axis=1)
                        outputs[name] = classifier(given, training=False)
                    return outputs

                self._forward_absent = tf.function(forward, reduce_retracing=True)
            return {
                modality: predict_in_batches(
                    lambda batch, index=index: self._forward_absent(batch, index), inputs, with_absent
                )
                for index, modality in enumerate(modalities)
            }

        def predict_every_classifier(self, inputs: dict) -> dict:
            """{classifier: (n, classes) float32 probabilities} on complete inputs."""
            import tensorflow as tf

            if self._forward is None:  # traced once: 20x faster than eager calls of the 16 classifiers
                self._forward = tf.function(lambda batch: self(batch, training=False), reduce_retracing=True)
            return predict_in_batches(self._forward, inputs, names)

        def restore_best(self) -> dict:
            """Give each evaluated classifier the weights of its best epoch.

            Returns:
                {classifier: (chosen epoch from 1, its validation accuracy)}, (None, None)
                for a classifier never evaluated (which keeps its weights).
            """
            chosen = {}
            for index, name in enumerate(names):
                epoch = int(self.best_epoch.numpy()[index])
                if epoch < 1:
                    chosen[name] = (None, None)
                    continue
                for variable, copy in zip(classifiers[name].weights, self._copies(name)):
                    variable.assign(copy)
                chosen[name] = (epoch, float(self.best_accuracy.numpy()[index]))
            return chosen

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
            for name, tracker in zip(self.with_unimodal, self.unimodal_trackers):
                classifier = classifiers[name]
                teachers = {modality: y_pred[teacher] for modality, teacher in unimodal_teachers.get(name, {}).items()}
                unimodal = classifier.unimodal_loss(
                    {modality: x[modality] for modality in classifier.modalities},
                    y[name],
                    training=training,
                    predictions=y_pred[name],
                    teachers=teachers,
                    teacher_share=teacher_share,
                )
                # Like the compiled losses, ``unimodal`` is divided by the number of
                # replicas (Keras' loss call); the metric records it undivided, as
                # FusionClassifier.compute_loss does.
                tracker.update_state(unimodal * (num_replicas() if in_replica_context() else 1))
                loss = loss + classifier.unimodal_loss_weight * unimodal
            return loss

    return AllClassifiers(inputs, outputs, name="all_classifiers")


def predict_in_batches(forward, inputs: dict, keys) -> dict:
    """Run ``forward`` over slices of PREDICT_BATCH rows and concatenate the outputs.

    Args:
        forward: {modality: batch tensor} -> {key: tensor}.
        inputs: {modality: (n, ...) array}.
        keys: the output keys to keep.

    Returns:
        {key: (n, ...) float32 array}.
    """
    import keras
    import tensorflow as tf

    num_examples = len(next(iter(inputs.values())))
    parts = {key: [] for key in keys}
    for start in range(0, num_examples, PREDICT_BATCH):
        outputs = forward(
            {modality: tf.convert_to_tensor(array[start : start + PREDICT_BATCH]) for modality, array in inputs.items()}
        )
        for key in keys:
            parts[key].append(np.asarray(keras.ops.cast(outputs[key], "float32")))
    return {key: np.concatenate(parts[key]) for key in keys}


def predict(classifier, inputs: dict, present: np.ndarray, modalities) -> np.ndarray:
    """Class probabilities of ``classifier`` with the (n, n_modalities) presence mask."""
    from xmodal_tf.models.fusion import MASK_INPUT

    columns = [modalities.index(modality) for modality in classifier.modalities]
    parts = []
    for start in range(0, len(present), PREDICT_BATCH):
        rows = slice(start, start + PREDICT_BATCH)
        batch = {modality: inputs[modality][rows] for modality in classifier.modalities}
        batch[MASK_INPUT] = present[rows][:, columns].astype(np.float32)
        parts.append(np.asarray(classifier(batch, training=False)))
    return np.concatenate(parts)


def predictions_per_condition(classifier, inputs: dict, conditions: dict, modalities) -> dict:
    """{condition: class probabilities} of ``classifier`` under every test condition.

    A condition removes at most one modality from a row, and a row's output depends only
    on its own inputs and mask; so the classifier runs once on the complete test split
    and once without each of its modalities, and each condition picks its rows from those.

    Args:
        classifier: a trained classifier.
        inputs: {modality: (n, ...) array}.
        conditions: {condition: (n, n_modalities) presence mask}.
        modalities: the modalities, in mask order.
    """
    num_examples = len(next(iter(inputs.values())))
    complete = predict(classifier, inputs, np.ones((num_examples, len(modalities)), dtype=bool), modalities)
    without = []
    for index, modality in enumerate(modalities):
        present = np.ones((num_examples, len(modalities)), dtype=bool)
        present[:, index] = False
        without.append(
            predict(classifier, inputs, present, modalities) if modality in classifier.modalities else complete
        )
    predictions = {}
    for condition, present in conditions.items():
        if (present.sum(axis=1) < len(modalities) - 1).any():
            raise ValueError(f"condition {condition!r} removes more than one modality from some rows.")
        probabilities = complete.copy()
        for index in range(len(modalities)):
            probabilities[~present[:, index]] = without[index][~present[:, index]]
        predictions[condition] = probabilities
    return predictions


def test_conditions(modalities, fractions, num_examples: int, rng: np.random.Generator) -> dict:
    """{condition: (n, n_modalities) presence mask}; nested rows across the fractions."""
    conditions = {"complete": np.ones((num_examples, len(modalities)), dtype=bool)}
    for index, modality in enumerate(modalities):
        order = rng.permutation(num_examples)
        for fraction in fractions:
            present = np.ones((num_examples, len(modalities)), dtype=bool)
            present[order[: int(round(fraction * num_examples))], index] = False
            conditions[condition_name(modality, fraction)] = present
    return conditions


def condition_name(modality: str, fraction: float) -> str:
    return f"{modality}_missing_{100 * float(fraction):g}%"


# ----------------------------------------------------------------------------- run
def run_seed(dataset, settings: dict, seed: int, joint: JointTraining | None, context: RunContext):
    """Train every classifier for one seed and score it on the validation and the test split.

    Each classifier keeps its best validation epoch.

    Args:
        dataset: the ``MultimodalDataset``.
        settings: the resolved settings.
        seed: the seed.
        joint: the ``JointTraining`` of an earlier seed to reuse, or None.
        context: the run context.

    Returns:
        ({"validation": scores, "test": scores, "chosen_epoch": {classifier: epoch
        from 1}}, the joint trainer to reuse for the next seed); scores: {classifier:
        {condition: {"accuracy": a, "macro_f1": f}}}.
    """
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    modalities = tuple(dataset.modalities)
    train_inputs = degraded_inputs(dataset.train, settings, rng)
    test_inputs = degraded_inputs(dataset.test, settings, rng)
    # A stream of its own: the training and test inputs and missing rows stay as drawn without it.
    validation_rng = np.random.default_rng([seed, VALIDATION_STREAM])
    validation_inputs = degraded_inputs(dataset.validation, settings, validation_rng)
    with context.scope():
        classifiers = build_classifiers(train_inputs, dataset.num_classes, settings)
        if joint is None:
            joint = JointTraining(classifiers, train_inputs, settings, context)
    if joint.classifiers is not classifiers:
        joint.restart(classifiers)
    context.progress(
        f"seed {seed}: training {len(classifiers)} classifiers together, up to {settings['epochs']} "
        f"epochs on {len(dataset.train)} examples (each keeps its best epoch on "
        f"{len(dataset.validation)} validation examples) ..."
    )
    history = joint.fit(
        train_inputs, dataset.train.labels, seed, validation=(validation_inputs, dataset.validation.labels)
    )
    _log_epochs(context, history, list(classifiers), seed)
    chosen = {name: epoch for name, (epoch, _) in joint.chosen_epochs.items()}
    final_losses = [history[f"{name}_loss"][-1] for name in classifiers if f"{name}_loss" in history]
    context.progress(
        f"seed {seed}: trained (mean final training loss {np.mean(final_losses):.3f}); best "
        f"validation epochs: " + ", ".join(f"{name} {epoch}" for name, epoch in chosen.items())
    )
    results = {"chosen_epoch": chosen}
    for split, inputs, split_rng in (("validation", validation_inputs, validation_rng), ("test", test_inputs, rng)):
        labels = getattr(dataset, split).labels
        conditions = test_conditions(modalities, settings["missing_fractions"], len(labels), split_rng)
        results[split] = score(joint.classifiers, inputs, labels, conditions, modalities)
        complete = ", ".join(f"{name} {results[split][name]['complete']['accuracy']:.3f}" for name in classifiers)
        context.progress(f"seed {seed}: complete-data {split} accuracy: {complete}")
    return results, joint


def score(classifiers: dict, inputs: dict, labels: np.ndarray, conditions: dict, modalities) -> dict:
    """{classifier: {condition: {"accuracy": a, "macro_f1": f}}} on one split."""
    from xmodal_tf import metrics

    scores = {}
    for name, classifier in classifiers.items():
        predictions = predictions_per_condition(classifier, inputs, conditions, modalities)
        scores[name] = {
            condition: {
                "accuracy": metrics.accuracy(labels, probabilities),
                "macro_f1": metrics.macro_f1(labels, probabilities),
            }
            for condition, probabilities in predictions.items()
        }
    return scores


def _log_epochs(context: RunContext, history: dict, names: list, seed: int) -> None:
    """Per classifier and epoch: training loss, auxiliary unimodal loss and validation accuracy."""
    for name in names:
        for key, tag in (
            (f"{name}_loss", f"train_details/loss_seed{seed}/{name}"),
            (f"{name}_unimodal_loss", f"train_details/unimodal_loss_seed{seed}/{name}"),
            (f"val_{name}_accuracy", f"validation_details/accuracy_seed{seed}/{name}"),
        ):
            for epoch, value in enumerate(history.get(key, [])):
                context.log_scalar(tag, value, step=epoch + 1)


def load(config: dict, data_dir, seed: int):
    """The ``load_data`` hook: the data set, read and checked before the run starts."""
    return load_data(settings_for(config), data_dir)


def run(config: dict, context: RunContext) -> dict:
    settings = settings_for(config)
    dataset = context.data if context.data is not None else load(config, context.data_dir, context.seed)
    modalities = tuple(dataset.modalities)
    check_global_batch(settings["batch_size"], context.replicas, "fusion")  # before any training
    context.progress(
        f"{dataset.description}: {len(dataset.train)} training / {len(dataset.validation)} validation / "
        f"{len(dataset.test)} test examples; "
        f"{settings['degrade_modality']} degraded ({settings['degradation']}, "
        f"strength {settings['degradation_strength']}), other modality noise "
        f"{settings['other_modality_noise']}"
    )
    per_seed, joint = [], None
    for repeat in range(settings["seeds"]):
        seed_results, joint = run_seed(dataset, settings, context.seed + repeat, joint, context)
        per_seed.append(seed_results)
    results = summarise([seed_results["test"] for seed_results in per_seed])
    validation_results = summarise([seed_results["validation"] for seed_results in per_seed])
    for split, split_results in (("test", results), ("validation", validation_results)):
        for name, by_condition in split_results.items():
            for condition, summary in by_condition.items():
                for index, value in enumerate(summary["accuracy"]["per_seed"]):
                    group = split if condition == "complete" else f"{split}_details"
                    context.log_scalar(f"{group}/accuracy_{condition}/{name}", value, step=index + 1)
    log_missing_curves(context, results, modalities, settings)
    return {
        "data": settings["data"],
        "modalities": list(modalities),
        "seeds": settings["seeds"],
        "degraded": {
            key: settings[key]
            for key in ("degrade_modality", "degradation", "degradation_strength", "other_modality_noise")
        },
        "modality_dropout": settings["modality_dropout"],
        "unimodal_loss_weight": settings["unimodal_loss_weight"],
        "unimodal_distillation": settings["unimodal_distillation"],
        "unimodal_teacher_distillation": settings["unimodal_teacher_distillation"],
        "unimodal_head": settings["unimodal_head"],
        "epoch_selection": settings["epoch_selection"],
        "strategies": list(settings["strategies"]),
        "conditions": list(next(iter(results.values()))),
        "results": results,
        "validation_results": validation_results,
        "examples": {split: len(getattr(dataset, split)) for split in ("train", "validation", "test")},
        "epoch_budget": settings["epochs"],
        "chosen_epoch": {name: [seed_results["chosen_epoch"][name] for seed_results in per_seed] for name in results},
        "targets": targets(results, validation_results, modalities, settings["strategies"]),
        "train_seconds": joint.train_seconds,
    }


def log_missing_curves(context: RunContext, results: dict, modalities, settings: dict) -> None:
    """Log the key figures, ``accuracy_vs_missing_<modality>.png`` and their TensorBoard images.

    Per modality, every classifier's test accuracy (mean, std over seeds as error bars)
    against the share of test examples missing it (0: complete).

    Args:
        context: the run context.
        results: the summarised test results.
        modalities: the modalities.
        settings: the resolved settings.
    """
    from xmodal_tf import plots

    shares = [0.0, *sorted(float(fraction) for fraction in settings["missing_fractions"])]
    for modality in modalities:
        conditions = ["complete", *(condition_name(modality, share) for share in shares[1:])]
        curves = {name: [scores[c]["accuracy"]["mean"] for c in conditions] for name, scores in results.items()}
        errors = {name: [scores[c]["accuracy"]["std"] for c in conditions] for name, scores in results.items()}
        figure = plots.missing_modality_curves(
            shares,
            curves,
            errors=errors,
            xlabel=f"share of test examples missing {modality}",
            title=f"fusion on {settings['data']}: test accuracy, {modality} missing",
        )
        context.log_figure(f"accuracy_vs_missing_{modality}", figure)


def summarise(per_seed: list) -> dict:
    """Mean, std (over seeds) and per-seed values of every score."""
    results = {}
    for name, by_condition in per_seed[0].items():
        results[name] = {}
        for condition, scores in by_condition.items():
            results[name][condition] = {}
            for metric in scores:
                values = [float(seed_scores[name][condition][metric]) for seed_scores in per_seed]
                results[name][condition][metric] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values)),
                    "per_seed": values,
                }
    return results


def targets(results: dict, validation: dict, modalities, strategies) -> dict:
    """The issue's two targets, with the numbers behind them.

    The targets are ``best_fusion_beats_best_single`` and ``dropout_keeps_better_single``
    (docs/DESIGN.md, section xmodal_tf/experiments/fusion.py). Every choice (the better
    single modality, the best fusion, the best dropout model with a modality absent) is
    made on the validation split; the figures are the chosen classifiers' test
    accuracies.

    Args:
        results: the summarised test results.
        validation: the summarised validation results.
        modalities: the modalities.
        strategies: the fusion strategies trained.

    Returns:
        The targets and their numbers. ``missing``: for each modality, absent from every
        test example, the dropout model chosen on validation, its test accuracy, the
        remaining modality's own classifier's and the margin between them (issue 17
        asks for >= 0.005 both ways: ``meets_goal``), and the same on validation
        (``validation_accuracy``, ``validation_alone``, ``validation_margin``).
    """

    def test(name, condition):
        return results[name][condition]["accuracy"]["mean"]

    def chosen(names, condition):
        return max(names, key=lambda name: validation[name][condition]["accuracy"]["mean"])

    better = chosen([f"{modality}_only" for modality in modalities], "complete").removesuffix("_only")
    weaker = next(modality for modality in modalities if modality != better)
    best_fusion = chosen([name for strategy in strategies for name in (strategy, f"{strategy}_dropout")], "complete")
    report = {
        "best_single": f"{better}_only",
        "best_single_accuracy": test(f"{better}_only", "complete"),
        "best_fusion": best_fusion,
        "best_fusion_accuracy": test(best_fusion, "complete"),
        "best_fusion_beats_best_single": test(best_fusion, "complete") > test(f"{better}_only", "complete"),
        "chosen_on": "validation",
        "missing": {},
    }
    dropout_names = [f"{strategy}_dropout" for strategy in strategies]
    for absent in modalities:
        condition = condition_name(absent, 1.0)
        if condition not in results[best_fusion]:
            continue
        remaining = next(modality for modality in modalities if modality != absent)
        best = chosen(dropout_names, condition)
        alone = test(f"{remaining}_only", "complete")
        validation_alone = validation[f"{remaining}_only"]["complete"]["accuracy"]["mean"]
        validation_accuracy = validation[best][condition]["accuracy"]["mean"]
        report["missing"][absent] = {
            "chosen": best,
            "accuracy": test(best, condition),
            f"{remaining}_only": alone,
            "margin": test(best, condition) - alone,
            "validation_accuracy": validation_accuracy,
            "validation_alone": validation_alone,
            "validation_margin": validation_accuracy - validation_alone,
            "meets_goal": test(best, condition) - alone >= MISSING_GOAL,
        }
    if weaker in report["missing"]:
        entry = report["missing"][weaker]
        report.update(
            {
                "weaker_modality": weaker,
                "best_dropout_with_weaker_absent": entry["chosen"],
                "best_dropout_with_weaker_absent_accuracy": entry["accuracy"],
                "dropout_keeps_better_single": entry["margin"] >= 0,
            }
        )
    return report


def check_rules(config: dict) -> None:
    """Check that the settings fit the data set and each other (the table checks each setting alone).

    Raises:
        ConfigError: settings that do not fit.
    """
    settings = settings_for(config)
    share, teacher = settings["unimodal_distillation"], settings["unimodal_teacher_distillation"]
    if teacher > 1 - share + 1e-9:
        raise ConfigError(
            f"unimodal_teacher_distillation must be a number in [0, 1 - unimodal_distillation] = "
            f"[0, {1 - share:g}] (the labels take the rest of the target); got {teacher!r}. "
            f"Fix: --set unimodal_teacher_distillation={1 - share:g} or lower."
        )
    modalities = MODALITIES[settings["data"]]
    if settings["degrade_modality"] not in modalities:
        raise ConfigError(
            f"degrade_modality must be one of {modalities} for data={settings['data']}; got "
            f"{settings['degrade_modality']!r}. Fix: --set degrade_modality={modalities[0]}."
        )
    if settings["degradation"] == "occlusion" and settings["degradation_strength"] > 1:
        raise ConfigError(
            f"degradation_strength must be a number in [0, 1] for occlusion (the occluded share of "
            f"the side); got {settings['degradation_strength']!r}. Fix: --set degradation_strength=0.5."
        )
    if settings["text_encoder"] is not None:
        raise ConfigError(
            f"text_encoder applies to experiments with a text modality (retrieval); data={settings['data']} has "
            f"the modalities {modalities}. Fix: --set text_encoder=null (image_encoder=pretrained:... applies to "
            f"{IMAGE_MODALITIES[settings['data']]})."
        )
    if settings["train_size"] is not None and settings["data"] != "av_mnist":
        raise ConfigError(
            f"train_size applies to data=av_mnist only; got train_size={settings['train_size']} with "
            f"data={settings['data']}. Fix: --set train_size=null."
        )


def summarize(metrics: dict) -> list[str]:
    conditions = metrics["conditions"]
    degraded = metrics["degraded"]
    lines = [
        f"fusion on {metrics['data']} ({' + '.join(metrics['modalities'])}; {degraded['degrade_modality']} "
        f"degraded: {degraded['degradation']} {degraded['degradation_strength']}, other modality: noise "
        f"{degraded['other_modality_noise']}); test accuracy, "
        f"mean ± std over {metrics['seeds']} seed(s); *_dropout: modality dropout "
        f"{metrics['modality_dropout']}" + _unimodal_note(metrics),
        f"{'classifier':<18}" + "".join(f"  {_short(condition):>13}" for condition in conditions),
    ]
    lines += _accuracy_rows(metrics["results"], conditions)
    if "validation_results" in metrics:
        lines.append(
            f"validation accuracy (choose settings on these, not on test); each classifier's chosen "
            f"epoch (of {metrics['epoch_budget']}) per seed in brackets"
        )
        chosen = metrics["chosen_epoch"]
        lines += [
            f"{row}  [{', '.join(map(str, chosen[name]))}]"
            for name, row in zip(
                metrics["validation_results"], _accuracy_rows(metrics["validation_results"], conditions)
            )
        ]
    report = metrics["targets"]
    lines.append(
        f"best fusion {report['best_fusion']} {report['best_fusion_accuracy']:.3f} vs best single "
        f"{report['best_single']} {report['best_single_accuracy']:.3f}: "
        f"{'beats it' if report['best_fusion_beats_best_single'] else 'does NOT beat it'}"
    )
    for absent, entry in report.get("missing", {}).items():
        remaining = next(key for key in entry if key.endswith("_only"))
        line = (
            f"{absent} absent everywhere: {entry['chosen']} {entry['accuracy']:.3f} vs {remaining} "
            f"{entry[remaining]:.3f} ({100 * entry['margin']:+.1f} points)"
        )
        if "validation_margin" in entry:
            line += (
                f"; validation {entry['validation_accuracy']:.3f} vs {entry['validation_alone']:.3f} "
                f"({100 * entry['validation_margin']:+.1f}); goal +{100 * MISSING_GOAL:g}: "
                f"{'met' if entry['meets_goal'] else 'missed'}"
            )
        lines.append(line)
    if report.get("chosen_on") == "validation":
        lines.append("(each classifier above chosen on validation, scored on test)")
    return lines


def _accuracy_rows(results: dict, conditions: list) -> list[str]:
    """One line per classifier: mean ± std accuracy per condition."""
    return [
        f"{name:<18}"
        + "".join(
            f"  {by_condition[c]['accuracy']['mean']:.3f} ± {by_condition[c]['accuracy']['std']:.3f}"
            for c in conditions
        )
        for name, by_condition in results.items()
    ]


def _unimodal_note(metrics: dict) -> str:
    weight, share = metrics.get("unimodal_loss_weight"), metrics.get("unimodal_distillation")
    teacher = metrics.get("unimodal_teacher_distillation") or 0.0
    if not weight:
        return ""
    parts = [f"{1 - share - teacher:g} label"] if 1 - share - teacher > 1e-9 else []
    parts += [f"{share:g} fused prediction"] if share else []
    parts += [f"{teacher:g} single-modality classifier's prediction"] if teacher else []
    target = " + ".join(parts) if (share or teacher) else "the label"
    head = " on the classifier's own path" if metrics.get("unimodal_head") == "fusion" else ""
    selection = (
        "; *_dropout epochs chosen on the mean of complete and each modality absent"
        if metrics.get("epoch_selection") == "missing_mean"
        else ""
    )
    return f" and unimodal losses{head} of weight {weight:g} (target: {target}){selection}"


def _short(condition: str) -> str:
    """'left_missing_25%' -> 'left -25%' for the table header."""
    return condition.replace("_missing_", " -")


EXPERIMENT = register(globals(), name="fusion", description=DESCRIPTION)
