"""Experiment ``cca``: linear CCA between two views, the baseline of every method here.

Fits ``xmodal_tf.CCA`` on the training split for each ridge in ``reg`` and keeps the
one with the highest total correlation on the validation split; reports the canonical
correlations on every split and a cross-view probe: a linear classifier trained on one
view's canonical variates and tested on the other view's, which works only if the two
views were mapped into one shared space. The key figure, ``canonical_correlations.png``:
the canonical correlations of each split. With ``kcca`` (on by default) a ``KernelCCA``
(RBF kernel, Nyström features) is fitted beside it, its ridge also picked on validation.

Design notes (multi-worker fitting): docs/DESIGN.md (section xmodal_tf/experiments/cca.py).
"""

from __future__ import annotations

import time

import numpy as np

from xmodal_tf.experiments.base import RunContext, register
from xmodal_tf.experiments.config import Interval, ListOf, Options

DESCRIPTION = "linear CCA between two views (two_view_digits offline; split_mnist with --data-dir)"

DATA_SETS = ("two_view_digits", "split_mnist")
# The protocol's number of directions: 50 for split MNIST (Andrew et al. 2013).
DEFAULT_COMPONENTS = {"two_view_digits": 10, "split_mnist": 50}
# Nyström landmarks per view: well below the training rows (1078 digits would make the
# features as many as the rows), and what a fit of split MNIST's 50k rows affords.
DEFAULT_LANDMARKS = {"two_view_digits": 300, "split_mnist": 2000}

DEFAULTS = {
    "data": "two_view_digits",
    "n_components": None,  # None: 10 for two_view_digits, 50 for split_mnist
    "reg": [1e-5, 1e-4, 1e-3, 1e-2],  # ridges to try; the best on validation is kept
    "dtype": "float64",
    "probe": True,  # cross-view logistic-regression probe on the canonical variates
    "kcca": True,  # also fit kernel CCA (xmodal_tf.KernelCCA) and report it beside linear CCA
    "kcca_kernel": "rbf",
    "kcca_gamma": None,  # None: scikit-learn's "scale", 1 / (features x variance), per view
    "kcca_reg": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2],  # ridges to try for kernel CCA; the best on validation is kept
    "kcca_landmarks": None,  # None: 300 for two_view_digits, 2000 for split_mnist
}
CONSTRAINTS = {
    "data": [Options(*DATA_SETS)],
    "n_components": [Interval(int, 1, None), None],
    "reg": [ListOf(Interval(float, 0, None), min_length=1, noun="ridges")],
    "dtype": [Options("float64", "float32")],
    "probe": [bool],
    "kcca": [bool],
    "kcca_kernel": [Options("rbf", "poly", "linear")],
    "kcca_gamma": [Interval(float, 0, None, closed="neither"), None],
    "kcca_reg": [ListOf(Interval(float, 0, None), min_length=1, noun="ridges")],
    "kcca_landmarks": [Interval(int, 1, None), None],
}
NOTES = {
    "n_components": "null: 10 for two_view_digits, 50 for split_mnist",
    "reg": "to try; the best on validation is kept",
    "kcca_gamma": "null: 1 / (features x variance) per view",
    "kcca_reg": "kernel CCA's ridges to try; the best on validation is kept",
    "kcca_landmarks": "null: 300 for two_view_digits, 2000 for split_mnist",
}


def load_data(name: str, data_dir):
    from xmodal_tf import data

    if name == "split_mnist":
        return data.load_split_mnist(data_dir)
    return data.load_two_view_digits()


def worker_shard(strategy) -> tuple[int, int]:
    """This worker's place in a multi-worker strategy's cluster.

    Args:
        strategy: the run's strategy.

    Returns:
        (this worker's index, number of workers), the chief (if the cluster has one)
        first; (0, 1) outside a cluster.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    jobs = [job for job in ("chief", "worker") if job in cluster]
    if not jobs or resolver.task_type not in jobs:
        return 0, 1
    sizes = {job: len(cluster[job]) for job in jobs}
    before = sum(sizes[job] for job in jobs[: jobs.index(resolver.task_type)])
    return before + int(resolver.task_id or 0), sum(sizes.values())


def select_ridge(dataset, n_components: int, ridges, dtype: str, context: RunContext):
    """Fit one CCA per ridge and keep the best on the validation split.

    With several workers (``worker_shard``), each fits on its own shard of the training
    rows with ``CCA.fit_batches(..., strategy=)``, once; the other ridges are solved from
    the all-reduced statistics (``fit_statistics``), so every worker holds the same fits.

    Args:
        dataset: the ``TwoViewDataset``.
        n_components: the number of canonical components.
        ridges: the ridges to try.
        dtype: the CCA's dtype.
        context: the run context (strategy, progress lines).

    Returns:
        (best model, {ridge: validation total correlation}).
    """
    from xmodal_tf import CCA

    x, y, _ = dataset.train
    worker, workers = worker_shard(context.strategy)
    statistics = None
    if workers > 1:
        rows = slice(worker, None, workers)
        context.progress(
            f"fitting on {workers} workers' shards of the {len(x)} training rows (this worker: {len(x[rows])})"
        )
    scores, models = {}, {}
    for ridge in ridges:
        model = CCA(n_components, reg=float(ridge), dtype=dtype)
        if workers == 1:
            model.fit(x, y)
        elif statistics is None:
            shard = [(x[rows], y[rows])] if len(x[rows]) else []
            model.fit_batches(shard, strategy=context.strategy)
            statistics = model.covariance_statistics_
        else:
            model.fit_statistics(statistics)
        scores[float(ridge)] = float(model.correlations(*dataset.validation[:2]).sum())
        models[float(ridge)] = model
        context.progress(f"reg={ridge:g}: validation total correlation {scores[float(ridge)]:.3f}")
    best = max(scores, key=scores.get)
    return models[best], scores


def cross_view_probe(model, dataset, seed: int) -> dict:
    """The cross-view probe: a logistic regression trained on one view's variates.

    Trained on the train split's variates of one view and tested on the test split's
    variates of the same or the other view.

    Args:
        model: the fitted CCA.
        dataset: the ``TwoViewDataset``.
        seed: the logistic regression's random state.

    Returns:
        {"x_to_x", "x_to_y", "y_to_x", "y_to_y": accuracy}.
    """
    from sklearn.linear_model import LogisticRegression

    train_x, train_y = model.transform(*dataset.train[:2])
    test_x, test_y = model.transform(*dataset.test[:2])
    variates = {"x": (train_x, test_x), "y": (train_y, test_y)}
    accuracies = {}
    for source in ("x", "y"):
        classifier = LogisticRegression(max_iter=2000, random_state=seed)
        classifier.fit(variates[source][0], dataset.train.labels)
        for target in ("x", "y"):
            predicted = classifier.predict(variates[target][1])
            accuracies[f"{source}_to_{target}"] = float(np.mean(predicted == dataset.test.labels))
    return accuracies


def load(config: dict, data_dir, seed: int):
    """The ``load_data`` hook: the data set, read and checked before the run starts."""
    return load_data(config["data"], data_dir)


def run(config: dict, context: RunContext) -> dict:
    dataset = context.data if context.data is not None else load(config, context.data_dir, context.seed)
    k = config["n_components"] or DEFAULT_COMPONENTS[config["data"]]
    context.progress(f"{dataset!r}")
    started = time.perf_counter()
    model, validation_by_reg = select_ridge(dataset, k, config["reg"], config["dtype"], context)
    fit_seconds = time.perf_counter() - started

    metrics = {
        "data": dataset.name,
        "n_components": k,
        "reg": model.reg,
        "validation_total_correlation_by_reg": validation_by_reg,
        "fit_seconds_all_ridges": fit_seconds,
    }
    spectra = {}
    for split_name, correlations in split_correlations(model, dataset).items():
        metrics[f"{split_name}_total_correlation"] = float(correlations.sum())
        metrics[f"{split_name}_mean_correlation"] = float(correlations.mean())
        metrics[f"{split_name}_correlations"] = correlations.tolist()
        for index, value in enumerate(correlations):
            context.log_scalar(f"{split_name}_details/canonical_correlation", value, step=index + 1)
        context.log_scalar(f"{split_name}/total_correlation", correlations.sum())
        spectra[split_name] = correlations
    if config["kcca"]:
        metrics["kcca"] = fit_kernel_cca(dataset, k, config, context)
        spectra["kernel CCA, test"] = np.asarray(metrics["kcca"]["test_correlations"])
    log_spectrum(context, spectra, f"CCA on {dataset.name} (linear: reg={model.reg:g})")
    if config["probe"]:
        context.progress("cross-view probe (logistic regression on canonical variates) ...")
        probe = cross_view_probe(model, dataset, context.seed)
        metrics.update({f"probe_accuracy_{name}": value for name, value in probe.items()})
        context.log_scalars(probe, prefix="test/probe_accuracy_")
    return metrics


def split_correlations(model, dataset) -> dict:
    """{"train", "validation", "test": (k,) canonical correlations of ``model`` on that split}."""
    return {name: model.correlations(*getattr(dataset, name)[:2]) for name in ("train", "validation", "test")}


def fit_kernel_cca(dataset, n_components: int, config: dict, context: RunContext) -> dict:
    """Fit one ``KernelCCA`` per ridge in ``kcca_reg``, keep the best on validation.

    Args:
        dataset: the ``TwoViewDataset``.
        n_components: the number of canonical components.
        config: the experiment's settings (the ``kcca_*`` ones).
        context: the run context (progress lines, TensorBoard scalars).

    Returns:
        {"reg", "kernel", "landmarks", "validation_total_correlation_by_reg",
        "fit_seconds_all_ridges", and per split "<split>_total_correlation" and
        "<split>_correlations"}.
    """
    from xmodal_tf import KernelCCA

    landmarks = config["kcca_landmarks"] or DEFAULT_LANDMARKS[dataset.name]
    x, y, _ = dataset.train
    started = time.perf_counter()
    scores, models = {}, {}
    for ridge in config["kcca_reg"]:
        model = KernelCCA(
            n_components,
            kernel=config["kcca_kernel"],
            gamma=config["kcca_gamma"],
            reg=float(ridge),
            n_landmarks=landmarks,
            random_state=context.seed,
        ).fit(x, y)
        scores[float(ridge)] = float(model.correlations(*dataset.validation[:2]).sum())
        models[float(ridge)] = model
        context.progress(
            f"kernel CCA ({config['kcca_kernel']}, {landmarks} landmarks), reg={ridge:g}: "
            f"validation total correlation {scores[float(ridge)]:.3f}"
        )
    best = max(scores, key=scores.get)
    result = {
        "reg": best,
        "kernel": config["kcca_kernel"],
        "landmarks": min(landmarks, len(x)),
        "validation_total_correlation_by_reg": scores,
        "fit_seconds_all_ridges": time.perf_counter() - started,
    }
    for split_name, correlations in split_correlations(models[best], dataset).items():
        result[f"{split_name}_total_correlation"] = float(correlations.sum())
        result[f"{split_name}_correlations"] = correlations.tolist()
        context.log_scalar(f"{split_name}/kcca_total_correlation", correlations.sum())
    return result


def log_spectrum(context: RunContext, correlations: dict, title: str) -> None:
    """Log the key figure, ``canonical_correlations.png`` and its TensorBoard image.

    Args:
        context: the run context.
        correlations: {label: (k,) canonical correlations}, drawn against the component.
        title: the figure's title.
    """
    from xmodal_tf import plots

    context.log_figure("canonical_correlations", plots.correlation_spectrum(correlations, title=title))


def summarize(metrics: dict) -> list[str]:
    lines = [
        f"linear CCA on {metrics['data']}: k={metrics['n_components']}, reg={metrics['reg']:g} "
        f"(best of {len(metrics['validation_total_correlation_by_reg'])} on validation)",
        "total correlation of the top {k}: train {train:.3f}  validation {validation:.3f}  test {test:.3f}".format(
            k=metrics["n_components"],
            train=metrics["train_total_correlation"],
            validation=metrics["validation_total_correlation"],
            test=metrics["test_total_correlation"],
        ),
    ]
    if "kcca" in metrics:
        kcca = metrics["kcca"]
        lines.append(
            f"kernel CCA ({kcca['kernel']}, {kcca['landmarks']} landmarks, reg={kcca['reg']:g}, best on validation): "
            f"train {kcca['train_total_correlation']:.3f}  validation {kcca['validation_total_correlation']:.3f}  "
            f"test {kcca['test_total_correlation']:.3f}"
        )
    if "probe_accuracy_x_to_y" in metrics:
        lines.append(
            "cross-view probe accuracy (classifier on view X variates, tested on view Y): "
            f"{metrics['probe_accuracy_x_to_y']:.3f}; Y->X {metrics['probe_accuracy_y_to_x']:.3f}; "
            f"same view X->X {metrics['probe_accuracy_x_to_x']:.3f}, "
            f"Y->Y {metrics['probe_accuracy_y_to_y']:.3f}"
        )
    return lines


EXPERIMENT = register(globals(), name="cca", description=DESCRIPTION)
