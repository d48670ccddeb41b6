"""Experiment ``fusion``: single modalities vs every fusion strategy, complete and with a modality missing.

Two modalities of the same examples (offline: the left and right halves of
scikit-learn's 8x8 digits; ``--set data=av_mnist --data-dir DIR``: MNIST images paired
with spoken digits), one of them degraded (Gaussian noise or a random occluding
square, in training and test alike) so that neither modality alone is near perfect.
Spoken digits alone score about 0.97 on held-out recordings, so for av_mnist the audio
also gets noise (``other_modality_noise``).
Per seed, these classifiers are trained (``xmodal_tf.models.build_fusion_classifier``,
an MLP or CNN encoder per modality):

* ``<modality>_only``: one encoder and the head, for each modality;
* ``<strategy>``: each fusion strategy (average, weighted, concat, gated, attention,
  tensor, late), trained on complete data;
* ``<strategy>_dropout``: the same with ``ModalityDropout`` at ``modality_dropout`` and
  auxiliary unimodal losses (``unimodal_loss_weight``; their target mixes the labels
  with the classifier's own fused prediction, ``unimodal_distillation``): each
  modality's pathway is also trained to classify alone, as it must when the other
  modality is absent.

Each is scored (accuracy and macro F1, ``xmodal_tf.metrics``) on the complete test
split and with 25 / 50 / 100 % of the test examples missing one modality (each
modality in turn; the same rows for every classifier). A single-modality classifier
whose modality is missing sees nothing and returns its fixed "no input" prediction.
The report is the mean and spread (std over seeds) per classifier and condition, plus
the issue's two targets:

* ``best_fusion_beats_best_single``: the best fusion classifier on complete data beats
  the best single-modality classifier;
* ``dropout_keeps_better_single``: with the weaker modality absent from every test
  example, the best modality-dropout classifier is at least as accurate as the
  single-modality classifier of the better modality.

Speed: all classifiers of a seed train together, as the outputs of ONE Keras model
with one loss per output. No weights are shared and Adam's update of a weight depends
only on that weight's gradient, so each classifier gets exactly the updates it would
get alone on the same batches (its auxiliary unimodal loss, which depends on its own
weights only, is added by the joint model's ``compute_loss``). Tracing the training step of 16 models costs more
than training them on small data, so it is traced once: each later seed loads its
freshly initialised weights into the same model and clears the optimizer state.

Distribution: the joint model trains through ``xmodal_tf.training.Trainer`` on the run's
strategy (``--strategy``; ``model.fit`` fails under ``MultiWorkerMirroredStrategy``).
``batch_size`` is the global batch; with several replicas it must divide by their
number and the last partial batch of an epoch is dropped. Scoring runs on every worker.
"""
from __future__ import annotations


import numpy as np

from xmodal_tf.experiments.base import TRAINING_CHOICES, TRAINING_SETTINGS, Experiment, RunContext, check_global_batch

DATA_SETS = ("digits", "av_mnist")
MODALITIES = {"digits": ("left", "right"), "av_mnist": ("image", "audio")}
DEGRADATIONS = ("noise", "occlusion", "none")
ENCODERS = ("mlp", "cnn")
# The same names as xmodal_tf.models.fusion.FUSION_STRATEGIES (kept here so that listing
# experiments does not import TensorFlow).
STRATEGIES = ("average", "weighted", "concat", "gated", "attention", "tensor", "late")

DEFAULTS = {
    "data": "digits",
    "strategies": list(STRATEGIES),
    "seeds": 3,  # repetitions (seed, seed + 1, ...): initialisation, batches, degradation, missing rows
    "modality_dropout": 0.3,  # rate per modality of the *_dropout classifiers, in (0, 0.5]
    "unimodal_loss_weight": 1.0,  # *_dropout classifiers: weight of the per-modality auxiliary losses (>= 0)
    "unimodal_distillation": 0.5,  # *_dropout classifiers: share of the fused prediction in their target, [0, 1]
    "missing_fractions": [0.25, 0.5, 1.0],  # share of test examples missing one modality
    "degradation": "noise",  # of degrade_modality, train and test: noise, occlusion or none
    "degrade_modality": None,  # None: left (digits) / image (av_mnist)
    "degradation_strength": None,  # noise std, or occluded share of the side; None: per data set and kind
    "other_modality_noise": None,  # noise std added to the other modality too; None: per data set
    "encoder": None,  # "mlp" (flattened input) or "cnn", per modality; None: per data set
    "embedding_dim": None,  # None: per data set
    "filters": [16, 32],  # cnn encoder: filters per conv block
    "encoder_hidden_units": [64],  # mlp encoder: hidden layers
    "hidden_units": [64],  # head between the fused vector and the softmax
    "epochs": None,  # None: per data set
    "batch_size": None,  # None: per data set
    "learning_rate": 3e-3,
    "train_size": None,  # av_mnist: training pairs used (of 50000); None: per data set
    **TRAINING_SETTINGS,  # mixed_precision, jit (xmodal_tf.precision)
}
DATA_DEFAULTS = {
    "digits": {"degrade_modality": "left", "degradation_strength": {"noise": 0.3, "occlusion": 0.5, "none": 0.0},
               "other_modality_noise": 0.0,
               "encoder": "mlp", "embedding_dim": 32, "epochs": 30, "batch_size": 128, "train_size": None},
    # Spoken digits alone score ~0.97 on held-out recordings: noise keeps them from near perfect.
    "av_mnist": {"degrade_modality": "image", "degradation_strength": {"noise": 0.7, "occlusion": 0.5, "none": 0.0},
                 "other_modality_noise": 1.0,
                 "encoder": "mlp", "embedding_dim": 64, "epochs": 4, "batch_size": 128, "train_size": 20000},
}
PREDICT_BATCH = 2048


# ----------------------------------------------------------------------------- data
def settings_for(config: dict) -> dict:
    """The configuration with every None per-data-set setting filled in."""
    defaults = DATA_DEFAULTS[config["data"]]
    settings = {key: (defaults[key] if key in defaults and value is None else value) for key, value in config.items()}
    if isinstance(settings["degradation_strength"], dict):  # the data set's default for this kind
        settings["degradation_strength"] = settings["degradation_strength"][settings["degradation"]]
    return settings


def load_data(settings: dict, data_dir):
    from xmodal_tf import data

    if settings["data"] == "av_mnist":
        dataset = data.load_av_mnist(data_dir, train_size=settings["train_size"])
        # The audio CNN reads the (frames, 13) MFCCs as a one-channel image.
        for split in (dataset.train, dataset.test):
            split.inputs["audio"] = split.inputs["audio"][..., None]
        return dataset
    return data.load_multimodal_digits(MODALITIES["digits"])


def degrade(images: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Noise: add N(0, strength^2), clipped to the data's range. Occlusion: zero one random
    square per example, of side strength x the shorter of axes 1 and 2."""
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
        occluded[row, top:top + side, left:left + side] = 0.0
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
    """{name: FusionClassifier} for every classifier of one seed (see the module doc)."""
    from xmodal_tf.models.fusion import build_fusion_classifier

    modalities = tuple(inputs)

    def encoders(names):
        return {name: build_encoder(inputs[name].shape[1:], settings, f"{name}_encoder") for name in names}

    common = {"num_classes": num_classes, "hidden_units": tuple(settings["hidden_units"])}
    classifiers = {f"{modality}_only": build_fusion_classifier(
        encoders([modality]), "average", name=f"{modality}_only", **common) for modality in modalities}
    for strategy in settings["strategies"]:
        # Tensor fusion multiplies the embedding sizes: project them to 16 first.
        projection = 16 if strategy == "tensor" else None
        for name, rate, weight, share in ((strategy, 0.0, 0.0, 0.0),
                                          (f"{strategy}_dropout", settings["modality_dropout"],
                                           settings["unimodal_loss_weight"], settings["unimodal_distillation"])):
            classifiers[name] = build_fusion_classifier(
                encoders(modalities), strategy, modality_dropout=rate, projection_dim=projection,
                unimodal_loss_weight=weight, unimodal_distillation=share, name=name, **common)
    return classifiers


def build_encoder(input_shape, settings: dict, name: str):
    """A CNN over (H, W, C) inputs, or an MLP over the flattened input."""
    import keras

    from xmodal_tf.encoders import cnn_encoder, mlp_encoder

    if settings["encoder"] == "cnn":
        # The measured recipe (BatchNorm on, no dropout: the builder's defaults before issue 16).
        return cnn_encoder(tuple(input_shape), settings["embedding_dim"], filters=tuple(settings["filters"]),
                           global_pooling="flatten", batch_norm=True, dropout=0.0, name=name)
    inputs = keras.Input(tuple(input_shape), name=f"{name}_inputs")
    flat = keras.layers.Flatten(name=f"{name}_flatten")(inputs)
    body = mlp_encoder(flat.shape[-1], settings["embedding_dim"], hidden_units=tuple(settings["encoder_hidden_units"]),
                       activation="relu", name=f"{name}_mlp")
    return keras.Model(inputs, body(flat), name=name)


class JointTraining:
    """Every classifier as one output of a single compiled Keras model (see the module doc).

    The first seed's classifiers become the model; ``restart`` loads another seed's
    freshly initialised weights into it and clears the optimizer state, so every seed
    reuses the one traced training step.

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
        model_inputs = {name: keras.Input(array.shape[1:], name=name) for name, array in inputs.items()}
        outputs = {name: classifier({modality: model_inputs[modality] for modality in classifier.modalities})
                   for name, classifier in classifiers.items()}
        self.model = _all_classifiers_model(model_inputs, outputs, classifiers)
        # FusedAdam: one update op per weight instead of about ten, which shortens the
        # trace of 16 models; built now so that the trainer does not trace its step twice.
        self.model.compile(optimizer=FusedAdam(settings["learning_rate"]),
                           loss={name: "sparse_categorical_crossentropy" for name in classifiers})
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

    def fit(self, inputs: dict, labels: np.ndarray, seed: int) -> dict:
        """Train ``epochs`` epochs from epoch 0, or resume this seed's checkpoint; returns
        the trainer's history dict (one list per metric: ``<name>_loss``,
        ``<name>_unimodal_loss``, ...)."""
        from xmodal_tf.data import make_dataset

        batch_size = check_global_batch(self.settings["batch_size"], self.replicas, "fusion")
        targets = {name: labels for name in self.classifiers}
        dataset = make_dataset(inputs, targets, batch_size=batch_size, seed=seed,
                               drop_remainder=self.replicas > 1)
        context = self.context
        self.trainer.restart(None if context is None else context.checkpoint_directory(f"seed{seed}"))
        callbacks = []
        if context is not None:
            if self.trainer.restored_from:
                context.progress(f"seed {seed}: resuming after epoch {self.trainer.epoch}")
            callbacks.append(_progress_callback(context, seed, self.settings["epochs"], list(self.classifiers)))
        history = self.trainer.fit(dataset, self.settings["epochs"], callbacks=callbacks)
        self.train_seconds += self.trainer.train_seconds
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


def _all_classifiers_model(inputs: dict, outputs: dict, classifiers: dict):
    """The joint model: one compiled loss per output, plus each classifier's own auxiliary
    unimodal loss (``FusionClassifier.unimodal_loss``, weighted as in its ``compute_loss``),
    which depends on that classifier's weights only; logged as ``<name>_unimodal_loss``."""
    import keras

    from xmodal_tf._replicas import in_replica_context, num_replicas

    class AllClassifiers(keras.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.with_unimodal = [name for name, classifier in classifiers.items() if classifier.unimodal_loss_weight]
            self.unimodal_trackers = [keras.metrics.Mean(name=f"{name}_unimodal_loss") for name in self.with_unimodal]

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
            for name, tracker in zip(self.with_unimodal, self.unimodal_trackers):
                classifier = classifiers[name]
                unimodal = classifier.unimodal_loss({modality: x[modality] for modality in classifier.modalities},
                                                    y[name], training=training, predictions=y_pred[name])
                # Like the compiled losses, ``unimodal`` is divided by the number of
                # replicas (Keras' loss call); the metric records it undivided, as
                # FusionClassifier.compute_loss does.
                tracker.update_state(unimodal * (num_replicas() if in_replica_context() else 1))
                loss = loss + classifier.unimodal_loss_weight * unimodal
            return loss

    return AllClassifiers(inputs, outputs, name="all_classifiers")


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
    """
    num_examples = len(next(iter(inputs.values())))
    complete = predict(classifier, inputs, np.ones((num_examples, len(modalities)), dtype=bool), modalities)
    without = []
    for index, modality in enumerate(modalities):
        present = np.ones((num_examples, len(modalities)), dtype=bool)
        present[:, index] = False
        without.append(predict(classifier, inputs, present, modalities)
                       if modality in classifier.modalities else complete)
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
            present[order[:int(round(fraction * num_examples))], index] = False
            conditions[condition_name(modality, fraction)] = present
    return conditions


def condition_name(modality: str, fraction: float) -> str:
    return f"{modality}_missing_{100 * float(fraction):g}%"


# ----------------------------------------------------------------------------- run
def run_seed(dataset, settings: dict, seed: int, joint: JointTraining | None, context: RunContext):
    """Train and score every classifier for one seed.

    Returns ({classifier: {condition: {"accuracy": a, "macro_f1": f}}}, the joint trainer
    to reuse for the next seed).
    """
    import keras

    from xmodal_tf import metrics

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    modalities = tuple(dataset.modalities)
    train_inputs = degraded_inputs(dataset.train, settings, rng)
    test_inputs = degraded_inputs(dataset.test, settings, rng)
    with context.scope():
        classifiers = build_classifiers(train_inputs, dataset.num_classes, settings)
        if joint is None:
            joint = JointTraining(classifiers, train_inputs, settings, context)
    if joint.classifiers is not classifiers:
        joint.restart(classifiers)
    context.progress(f"seed {seed}: training {len(classifiers)} classifiers together, "
                     f"{settings['epochs']} epochs on {len(dataset.train)} examples ...")
    history = joint.fit(train_inputs, dataset.train.labels, seed)
    for name in classifiers:
        for epoch, value in enumerate(history.get(f"{name}_loss", [])):
            context.log_scalar(f"train_details/loss_seed{seed}/{name}", value, step=epoch + 1)
        for epoch, value in enumerate(history.get(f"{name}_unimodal_loss", [])):
            context.log_scalar(f"train_details/unimodal_loss_seed{seed}/{name}", value, step=epoch + 1)
    final_losses = [history[f"{name}_loss"][-1] for name in classifiers if f"{name}_loss" in history]
    context.progress(f"seed {seed}: trained (mean final training loss {np.mean(final_losses):.3f}); "
                     f"scoring on {len(dataset.test)} test examples ...")
    conditions = test_conditions(modalities, settings["missing_fractions"], len(dataset.test), rng)
    scores = {}
    for name, classifier in joint.classifiers.items():
        predictions = predictions_per_condition(classifier, test_inputs, conditions, modalities)
        scores[name] = {condition: {"accuracy": metrics.accuracy(dataset.test.labels, probabilities),
                                    "macro_f1": metrics.macro_f1(dataset.test.labels, probabilities)}
                        for condition, probabilities in predictions.items()}
    complete = ", ".join(f"{name} {scores[name]['complete']['accuracy']:.3f}" for name in classifiers)
    context.progress(f"seed {seed}: complete-data test accuracy: {complete}")
    return scores, joint


def load(config: dict, data_dir, seed: int):
    """The ``load_data`` hook: the data set, read and checked before the run starts."""
    return load_data(settings_for(config), data_dir)


def run(config: dict, context: RunContext) -> dict:
    settings = settings_for(config)
    dataset = context.data if context.data is not None else load(config, context.data_dir, context.seed)
    modalities = tuple(dataset.modalities)
    check_global_batch(settings["batch_size"], context.replicas, "fusion")  # before any training
    context.progress(f"{dataset.description}: {len(dataset.train)} training / {len(dataset.test)} test examples; "
                     f"{settings['degrade_modality']} degraded ({settings['degradation']}, "
                     f"strength {settings['degradation_strength']}), other modality noise "
                     f"{settings['other_modality_noise']}")
    per_seed, joint = [], None
    for repeat in range(settings["seeds"]):
        scores, joint = run_seed(dataset, settings, context.seed + repeat, joint, context)
        per_seed.append(scores)
    results = summarise(per_seed)
    for name, by_condition in results.items():
        for condition, summary in by_condition.items():
            for index, value in enumerate(summary["accuracy"]["per_seed"]):
                group = "test" if condition == "complete" else "test_details"
                context.log_scalar(f"{group}/accuracy_{condition}/{name}", value, step=index + 1)
    single = {modality: results[f"{modality}_only"]["complete"]["accuracy"]["mean"] for modality in modalities}
    return {"data": settings["data"], "modalities": list(modalities), "seeds": settings["seeds"],
            "degraded": {key: settings[key] for key in ("degrade_modality", "degradation", "degradation_strength",
                                                        "other_modality_noise")},
            "modality_dropout": settings["modality_dropout"],
            "unimodal_loss_weight": settings["unimodal_loss_weight"],
            "unimodal_distillation": settings["unimodal_distillation"], "strategies": list(settings["strategies"]),
            "conditions": list(next(iter(results.values()))), "results": results,
            "targets": targets(results, single, settings["strategies"]),
            "train_seconds": joint.train_seconds}


def summarise(per_seed: list) -> dict:
    """Mean, std (over seeds) and per-seed values of every score."""
    results = {}
    for name, by_condition in per_seed[0].items():
        results[name] = {}
        for condition, scores in by_condition.items():
            results[name][condition] = {}
            for metric in scores:
                values = [float(seed_scores[name][condition][metric]) for seed_scores in per_seed]
                results[name][condition][metric] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                                    "per_seed": values}
    return results


def targets(results: dict, single: dict, strategies) -> dict:
    """The issue's two targets (see the module doc), with the numbers behind them."""
    def mean(name, condition):
        return results[name][condition]["accuracy"]["mean"]

    better, weaker = sorted(single, key=single.get, reverse=True)
    fusion_names = [name for strategy in strategies for name in (strategy, f"{strategy}_dropout")]
    best_fusion = max(fusion_names, key=lambda name: mean(name, "complete"))
    weaker_absent = condition_name(weaker, 1.0)
    report = {"best_single": f"{better}_only", "best_single_accuracy": single[better],
              "best_fusion": best_fusion, "best_fusion_accuracy": mean(best_fusion, "complete"),
              "best_fusion_beats_best_single": mean(best_fusion, "complete") > single[better]}
    if weaker_absent in results[best_fusion]:
        dropout_names = [f"{strategy}_dropout" for strategy in strategies]
        best_dropout = max(dropout_names, key=lambda name: mean(name, weaker_absent))
        report.update({
            "weaker_modality": weaker, "best_dropout_with_weaker_absent": best_dropout,
            "best_dropout_with_weaker_absent_accuracy": mean(best_dropout, weaker_absent),
            "dropout_keeps_better_single": mean(best_dropout, weaker_absent) >= single[better]})
    return report


def validate(config: dict) -> None:
    from xmodal_tf.experiments.config import ConfigError

    settings = settings_for(config)
    unknown = [s for s in settings["strategies"] if s not in STRATEGIES]
    if not settings["strategies"] or unknown or len(set(settings["strategies"])) != len(settings["strategies"]):
        raise ConfigError(f"strategies must be distinct names from {list(STRATEGIES)}; got {settings['strategies']!r}.")
    if not 0 < settings["modality_dropout"] <= 0.5:
        raise ConfigError(f"modality_dropout must be in (0, 0.5] (two modalities, never both dropped); "
                          f"got {settings['modality_dropout']!r}.")
    weight = settings["unimodal_loss_weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
        raise ConfigError(f"unimodal_loss_weight must be a number >= 0 (0: no auxiliary losses); got {weight!r}.")
    share = settings["unimodal_distillation"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ConfigError(f"unimodal_distillation must be a number in [0, 1]; got {share!r}.")
    if settings["encoder"] not in ENCODERS:
        raise ConfigError(f"encoder must be one of {ENCODERS} (or null for the data set's default); "
                          f"got {settings['encoder']!r}.")
    fractions = settings["missing_fractions"]
    if any(not 0 < float(f) <= 1 for f in fractions):
        raise ConfigError(f"missing_fractions must be numbers in (0, 1]; got {fractions!r}.")
    if settings["degrade_modality"] not in MODALITIES[settings["data"]]:
        raise ConfigError(f"degrade_modality must be one of {MODALITIES[settings['data']]} for data="
                          f"{settings['data']}; got {settings['degrade_modality']!r}.")
    strength = settings["degradation_strength"]
    upper = 1.0 if settings["degradation"] == "occlusion" else float("inf")
    if not isinstance(strength, (int, float)) or not 0 <= strength <= upper:
        raise ConfigError(f"degradation_strength must be a number in [0, {upper:g}] for "
                          f"{settings['degradation']}; got {strength!r}.")
    other_noise = settings["other_modality_noise"]
    if not isinstance(other_noise, (int, float)) or other_noise < 0:
        raise ConfigError(f"other_modality_noise must be a number >= 0; got {other_noise!r}.")
    for key in ("seeds", "epochs", "batch_size", "embedding_dim"):
        if not isinstance(settings[key], int) or settings[key] < 1:
            raise ConfigError(f"{key} must be a positive integer; got {settings[key]!r}.")
    if not settings["filters"] or any(not isinstance(f, int) or f < 1 for f in settings["filters"]):
        raise ConfigError(f"filters must be a non-empty list of positive integers; got {settings['filters']!r}.")
    for key in ("hidden_units", "encoder_hidden_units"):
        if any(not isinstance(u, int) or u < 1 for u in settings[key]):
            raise ConfigError(f"{key} must be a list of positive integers; got {settings[key]!r}.")
    train_size = settings["train_size"]
    if train_size is not None and settings["data"] != "av_mnist":
        raise ConfigError("train_size applies to data=av_mnist only.")
    if train_size is not None and (not isinstance(train_size, int) or not 1 <= train_size <= 50000):
        raise ConfigError(f"train_size must be null or an integer in [1, 50000]; got {train_size!r}.")


def summarize(metrics: dict) -> list[str]:
    conditions = metrics["conditions"]
    degraded = metrics["degraded"]
    lines = [f"fusion on {metrics['data']} ({' + '.join(metrics['modalities'])}; {degraded['degrade_modality']} "
             f"degraded: {degraded['degradation']} {degraded['degradation_strength']}, other modality: noise "
             f"{degraded['other_modality_noise']}); test accuracy, "
             f"mean ± std over {metrics['seeds']} seed(s); *_dropout: modality dropout "
             f"{metrics['modality_dropout']}" + _unimodal_note(metrics),
             f"{'classifier':<18}" + "".join(f"  {_short(condition):>13}" for condition in conditions)]
    for name, by_condition in metrics["results"].items():
        lines.append(f"{name:<18}" + "".join(
            f"  {by_condition[c]['accuracy']['mean']:.3f} ± {by_condition[c]['accuracy']['std']:.3f}"
            for c in conditions))
    report = metrics["targets"]
    lines.append(f"best fusion {report['best_fusion']} {report['best_fusion_accuracy']:.3f} vs best single "
                 f"{report['best_single']} {report['best_single_accuracy']:.3f}: "
                 f"{'beats it' if report['best_fusion_beats_best_single'] else 'does NOT beat it'}")
    if "dropout_keeps_better_single" in report:
        lines.append(f"{report['weaker_modality']} absent everywhere: {report['best_dropout_with_weaker_absent']} "
                     f"{report['best_dropout_with_weaker_absent_accuracy']:.3f} vs {report['best_single']} "
                     f"{report['best_single_accuracy']:.3f}: "
                     f"{'at least as high' if report['dropout_keeps_better_single'] else 'LOWER'}")
    return lines


def _unimodal_note(metrics: dict) -> str:
    weight, share = metrics.get("unimodal_loss_weight"), metrics.get("unimodal_distillation")
    if not weight:
        return ""
    target = f"{1 - share:g} label + {share:g} fused prediction" if share else "the label"
    return f" and unimodal losses of weight {weight:g} (target: {target})"


def _short(condition: str) -> str:
    """'left_missing_25%' -> 'left -25%' for the table header."""
    return condition.replace("_missing_", " -")


EXPERIMENT = Experiment(
    name="fusion",
    description="single modalities vs fusion strategies, complete and with a modality missing "
                "(digits halves offline; av_mnist with --data-dir)",
    defaults=DEFAULTS,
    run=run,
    choices={**TRAINING_CHOICES, "data": DATA_SETS, "degradation": DEGRADATIONS},
    summarize=summarize,
    validate=validate,
    load_data=load,
)
