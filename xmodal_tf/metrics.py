"""Evaluation toolkit: classification reports, confusion-matrix images, retrieval, probes, k-fold.

    >>> from xmodal_tf import metrics
    >>> metrics.classification_report(y_test, model.predict(x_test))   # labels or scores
    >>> metrics.retrieval_metrics(image_embeddings @ audio_embeddings.T, np.arange(n))
    >>> metrics.linear_probe(train_codes, y_train, test_codes, y_test)      # frozen features
    >>> metrics.cross_validate(build_model, {"image": x, "audio": a}, y, n_splits=5)

Counts, precision / recall / F1 and the folds come from scikit-learn; this module adds the checks, the
score-matrix input and JSON-ready results. Labels are class indices 0 .. num_classes - 1; predictions are
labels or an (n, num_classes) score matrix, reduced by argmax. ``zero_division=0``: a class never predicted
has precision 0; macro averages run over the classes in ``y_true`` or the predictions. Retrieval ranks are
1-based, ties pessimistic. ``ConfusionMatrixCallback`` lives in ``xmodal_tf.training.callbacks``.

Design notes (the conventions in full): docs/DESIGN.md (section xmodal_tf/metrics.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import sklearn.metrics as sklearn_metrics
from sklearn.model_selection import StratifiedKFold

from xmodal_tf import plots
from xmodal_tf._validation import check_finite_rows, check_int, check_number, check_positive_int, describe
from xmodal_tf.data.balance import CLASS_WEIGHT_METHODS, as_class_labels, class_weights

__all__ = [
    "ConfusionMatrixCallback",  # noqa: F822 - resolved by __getattr__ (it lives in training.callbacks)
    "accuracy",
    "classification_report",
    "confusion_matrix",
    "confusion_matrix_image",
    "cross_validate",
    "linear_probe",
    "macro_f1",
    "macro_precision",
    "macro_recall",
    "retrieval_metrics",
    "retrieval_ranks",
    "stratified_folds",
]


# ------------------------------------------------------------------ classification
def _as_array(values) -> np.ndarray:
    """``np.asarray(values)``, with float16 and bfloat16 (outputs of mixed-precision
    models) as float32."""
    array = np.asarray(values)
    if array.dtype == np.float16 or array.dtype.name == "bfloat16":
        return array.astype(np.float32)
    return array


def _predicted_labels(y_pred) -> tuple[np.ndarray, int | None]:
    """(labels, number of score columns or None) from labels or a score matrix."""
    array = _as_array(y_pred)
    if array.ndim == 1:
        return as_class_labels(array, name="y_pred"), None
    if array.ndim != 2:
        raise ValueError(
            f"y_pred must be (n,) labels or an (n, num_classes) matrix of probabilities/logits; got shape {array.shape}"
        )
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"y_pred scores must be numeric; got dtype {array.dtype}")
    if array.shape[1] == 1:
        raise ValueError(
            "y_pred has a single column (a sigmoid output?): argmax over one column "
            "is always class 0; threshold it, e.g. (y_pred[:, 0] > 0.5).astype(int), "
            "or output one column per class"
        )
    if len(array) == 0:
        raise ValueError("y_pred is empty: give at least one example")
    # Only NaN is refused: -inf logits (masked classes) still have a well-defined argmax.
    nan_rows = np.flatnonzero(np.isnan(array).any(axis=1))
    if nan_rows.size:
        raise ValueError(
            f"y_pred has NaN scores in {nan_rows.size} rows (first: row {nan_rows[0]}); did the model diverge?"
        )
    return np.argmax(array, axis=1).astype(np.int64), array.shape[1]


def _labels_and_predictions(y_true, y_pred, num_classes):
    """Checked (true labels, predicted labels, num_classes)."""
    y_true = as_class_labels(y_true, name="y_true")
    predicted, columns = _predicted_labels(y_pred)
    if len(predicted) != len(y_true):
        raise ValueError(f"y_true has {len(y_true)} examples but y_pred has {len(predicted)}")
    if num_classes is not None:
        num_classes = check_positive_int(num_classes, "num_classes")
        if columns is not None and columns != num_classes:
            raise ValueError(f"y_pred has {columns} score columns but num_classes={num_classes}")
    else:
        num_classes = columns or int(max(y_true.max(), predicted.max())) + 1
    for name, labels in (("y_true", y_true), ("y_pred", predicted)):
        if labels.max() >= num_classes:
            raise ValueError(
                f"{name} has label {labels.max()}, out of range for num_classes="
                f"{num_classes} (labels must be 0..{num_classes - 1})"
            )
    return y_true, predicted, num_classes


def _counts(y_true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    return sklearn_metrics.confusion_matrix(y_true, predicted, labels=np.arange(num_classes)).astype(np.int64)


def confusion_matrix(y_true, y_pred, *, num_classes: int | None = None) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        y_true: (n,) true class indices.
        y_pred: (n,) predicted class indices, or (n, num_classes) probabilities / logits.
        num_classes: the number of classes; by default the score columns, else the
            largest label + 1.

    Returns:
        (num_classes, num_classes) int64 counts: row = true class, column = predicted class.
    """
    return _counts(*_labels_and_predictions(y_true, y_pred, num_classes))


def classification_report(y_true, y_pred, *, num_classes: int | None = None) -> dict:
    """Accuracy, macro precision / recall / F1, per-class values and the confusion matrix.

    Args:
        y_true: as for ``confusion_matrix``.
        y_pred: as for ``confusion_matrix``.
        num_classes: as for ``confusion_matrix``.

    Returns:
        ``accuracy``, ``macro_precision``, ``macro_recall``, ``macro_f1`` (floats);
        ``precision_per_class``, ``recall_per_class``, ``f1_per_class`` (lists of
        num_classes floats), ``support_per_class`` (true examples per class, ints),
        ``num_classes``, ``num_examples`` and ``confusion_matrix`` (nested lists, rows
        = true class). See the module docstring for the zero-division and averaging rules.

    Raises:
        TypeError: labels that are not integers, or scores that are not numbers.
        ValueError: mismatched lengths, NaN scores, labels out of range for num_classes.
    """
    y_true, predicted, num_classes = _labels_and_predictions(y_true, y_pred, num_classes)
    matrix = _counts(y_true, predicted, num_classes)
    precision, recall, f1, support = sklearn_metrics.precision_recall_fscore_support(
        y_true, predicted, labels=np.arange(num_classes), average=None, zero_division=0
    )
    occurring = (support > 0) | (matrix.sum(axis=0) > 0)
    return {
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "macro_precision": float(precision[occurring].mean()),
        "macro_recall": float(recall[occurring].mean()),
        "macro_f1": float(f1[occurring].mean()),
        "precision_per_class": precision.tolist(),
        "recall_per_class": recall.tolist(),
        "f1_per_class": f1.tolist(),
        "support_per_class": support.tolist(),
        "num_classes": int(num_classes),
        "num_examples": int(matrix.sum()),
        "confusion_matrix": matrix.tolist(),
    }


def accuracy(y_true, y_pred, *, num_classes: int | None = None) -> float:
    """Share of examples whose predicted class is the true class.

    Args:
        y_true: (n,) true class indices.
        y_pred: (n,) predicted class indices, or (n, num_classes) probabilities / logits.
        num_classes: as in ``classification_report``.

    Returns:
        The accuracy, a float in [0, 1].
    """
    y_true, predicted, _ = _labels_and_predictions(y_true, y_pred, num_classes)
    return float(sklearn_metrics.accuracy_score(y_true, predicted))


def _macro(score, y_true, y_pred, num_classes) -> float:
    """scikit-learn's macro average of ``score``, over the classes in y_true or y_pred."""
    y_true, predicted, _ = _labels_and_predictions(y_true, y_pred, num_classes)
    return float(score(y_true, predicted, average="macro", zero_division=0))


def macro_precision(y_true, y_pred, *, num_classes: int | None = None) -> float:
    """Unweighted mean over occurring classes of TP / predicted (0 for a never-predicted class)."""
    return _macro(sklearn_metrics.precision_score, y_true, y_pred, num_classes)


def macro_recall(y_true, y_pred, *, num_classes: int | None = None) -> float:
    """Unweighted mean over occurring classes of TP / support.

    That is the balanced accuracy when every class occurs in y_true.
    """
    return _macro(sklearn_metrics.recall_score, y_true, y_pred, num_classes)


def macro_f1(y_true, y_pred, *, num_classes: int | None = None) -> float:
    """Unweighted mean over occurring classes of the per-class F1."""
    return _macro(sklearn_metrics.f1_score, y_true, y_pred, num_classes)


# ------------------------------------------------------------ confusion-matrix image
def confusion_matrix_image(matrix, class_names=None) -> np.ndarray:
    """A confusion matrix drawn with matplotlib as an RGB image for ``tf.summary.image``.

    Rows are true classes, columns predicted classes; each cell is shaded by its share of
    the row and, for up to 20 classes, labelled with its count (``plots.confusion_matrix_figure``).

    Args:
        matrix: (C, C) non-negative counts, e.g. from ``confusion_matrix``.
        class_names: optional C names.

    Returns:
        (1, H, W, 3) uint8 image, a few hundred pixels a side (more for many classes).

    Raises:
        TypeError: a matrix that does not hold numbers.
        ValueError: a non-square, negative or non-finite matrix, or not C class names.
    """
    figure = plots.confusion_matrix_figure(matrix, class_names=class_names)
    return np.ascontiguousarray(plots.figure_to_image(figure)[..., :3])


def __getattr__(name):
    # The callback moved to training/callbacks.py; resolving the old name on first use keeps
    # `import xmodal_tf.metrics` free of TensorFlow.
    if name == "ConfusionMatrixCallback":
        from xmodal_tf.training.callbacks import ConfusionMatrixCallback

        return ConfusionMatrixCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _define_confusion_matrix_callback():
    """The ``ConfusionMatrixCallback`` class (kept for code that called this factory)."""
    from xmodal_tf.training.callbacks import ConfusionMatrixCallback

    return ConfusionMatrixCallback


# ------------------------------------------------------------------------ retrieval
_QUERY_CHUNK = 1024  # queries ranked at a time, bounding the (chunk, n_gallery) temporaries


def _check_similarity(similarity) -> np.ndarray:
    array = _as_array(similarity)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"similarity must be a non-empty (n_queries, n_gallery) matrix; got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"similarity must be numeric; got dtype {array.dtype}")
    if np.isnan(array).any():
        row, column = np.argwhere(np.isnan(array))[0]
        raise ValueError(
            f"similarity has NaN (first at query {row}, gallery item {column}); check the embeddings for NaN"
        )
    return array


def _check_relevant(relevant, shape: tuple) -> np.ndarray:
    """(n_queries,) int64 indices, or an (n_queries, n_gallery) bool matrix."""
    num_queries, num_gallery = shape
    array = np.asarray(relevant)
    if array.ndim == 1:
        indices = as_class_labels(array, name="relevant")
        if len(indices) != num_queries:
            raise ValueError(f"relevant has {len(indices)} entries but similarity has {num_queries} queries (rows)")
        if indices.max() >= num_gallery:
            raise ValueError(
                f"relevant index {indices.max()} is out of range for a gallery of "
                f"{num_gallery} items (similarity columns)"
            )
        return indices
    if array.shape != shape:
        raise ValueError(
            f"relevant must be (n_queries,) indices or a boolean matrix of the "
            f"similarity's shape {shape}; got shape {array.shape}"
        )
    if array.dtype != bool:
        if not np.issubdtype(array.dtype, np.number) or not np.isin(array, (0, 1)).all():
            raise TypeError("a relevance matrix must be boolean (or hold only 0 and 1)")
        array = array.astype(bool)
    empty = np.flatnonzero(~array.any(axis=1))
    if empty.size:
        raise ValueError(
            f"{empty.size} queries have no relevant gallery item (first: query "
            f"{empty[0]}); their rank is undefined: drop them or fix the relevance"
        )
    return array


def _check_ks(ks, num_gallery: int) -> list[int]:
    ks = [ks] if np.ndim(ks) == 0 else list(ks)
    ks = [check_positive_int(k, "each k in ks") for k in ks]
    too_large = [k for k in ks if k > num_gallery]
    if too_large:
        raise ValueError(
            f"k={too_large[0]} is larger than the gallery ({num_gallery} items): "
            "recall@k would be 1 by construction; choose k <= n_gallery"
        )
    return ks


def retrieval_ranks(similarity, relevant) -> np.ndarray:
    """The 1-based rank of each query's best-ranked relevant gallery item.

    Ties are pessimistic: rank = 1 + the number of non-relevant items scoring at least
    as high as the best relevant item.

    Args:
        similarity: (n_queries, n_gallery) scores, higher = more similar (e.g. cosine).
        relevant: (n_queries,) index of each query's one correct gallery item, or an
            (n_queries, n_gallery) boolean matrix (several correct items per query).

    Returns:
        (n_queries,) int64 ranks.

    Raises:
        TypeError: non-numeric scores, or a relevance matrix that is not boolean.
        ValueError: a wrong shape, NaN scores, an index out of range, or a query
            without a relevant item.
    """
    similarity = _check_similarity(similarity)
    return _ranks(similarity, _check_relevant(relevant, similarity.shape))


def _ranks(similarity: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """retrieval_ranks on checked arguments, a chunk of queries at a time."""
    ranks = np.empty(len(similarity), dtype=np.int64)
    for start in range(0, len(similarity), _QUERY_CHUNK):
        rows = slice(start, start + _QUERY_CHUNK)
        scores = similarity[rows]
        if relevant.ndim == 1:
            best = scores[np.arange(len(scores)), relevant[rows]]
            # The relevant item itself is among the ">= best" items, hence no + 1.
            ranks[rows] = np.sum(scores >= best[:, None], axis=1)
        else:
            best = np.where(relevant[rows], scores, -np.inf).max(axis=1)
            ranks[rows] = 1 + np.sum((scores >= best[:, None]) & ~relevant[rows], axis=1)
    return ranks


def _chance_recall(num_relevant: np.ndarray, num_gallery: int, k: int) -> float:
    """Mean over queries of P(a random ordering puts a relevant item in the top k)
    = 1 - C(n - r, k) / C(n, k)."""
    steps = np.arange(k)
    none_in_top_k = np.clip((num_gallery - num_relevant[:, None] - steps) / (num_gallery - steps), 0.0, None).prod(
        axis=1
    )
    return float(np.mean(1.0 - none_in_top_k))


def retrieval_metrics(similarity, relevant, ks=(1, 5, 10)) -> dict:
    """Recall@k, median / mean rank and chance levels of a cross-modal retrieval.

    Args:
        similarity: (n_queries, n_gallery) scores, higher = more similar.
        relevant: (n_queries,) int index of each query's one correct gallery item, or an
            (n_queries, n_gallery) boolean matrix of correct items (at least one per query).
        ks: the cut-offs k (each 1 <= k <= n_gallery).

    Returns:
        ``recall@k`` (share of queries with a relevant item in the top k) for each k,
        ``median_rank`` and ``mean_rank`` (1-based rank of the first relevant item, ties
        pessimistic), ``mean_reciprocal_rank``, ``chance_recall@k`` (the expected
        recall@k of a random ordering, given each query's number of relevant items),
        ``num_queries`` and ``num_gallery``.
    """
    similarity = _check_similarity(similarity)
    relevant = _check_relevant(relevant, similarity.shape)
    ks = _check_ks(ks, similarity.shape[1])
    ranks = _ranks(similarity, relevant)
    num_relevant = np.ones(len(ranks)) if relevant.ndim == 1 else relevant.sum(axis=1)
    result = {f"recall@{k}": float(np.mean(ranks <= k)) for k in ks}
    result.update(
        {
            "median_rank": float(np.median(ranks)),
            "mean_rank": float(np.mean(ranks)),
            "mean_reciprocal_rank": float(np.mean(1.0 / ranks)),
        }
    )
    result.update({f"chance_recall@{k}": _chance_recall(num_relevant, similarity.shape[1], k) for k in ks})
    result.update({"num_queries": int(similarity.shape[0]), "num_gallery": int(similarity.shape[1])})
    return result


# --------------------------------------------------------------------------- probes
def _check_features(features, name: str) -> np.ndarray:
    array = _as_array(features)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be an (n, num_features) matrix; got shape {array.shape} (flatten with .reshape(len(x), -1))"
        )
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be numeric; got dtype {array.dtype}")
    check_finite_rows(array, name, where="linear_probe")
    return array


#: Curvature per unit of feature variance that the probe's preconditioner assumes
#: (a softmax's p(1 - p) is at most 0.25).
_PROBE_CURVATURE = 0.25
#: The probe stops when every partial derivative of its mean objective, in standardised
#: coordinates, is below this: 10x tighter than scikit-learn's ``tol=1e-4``.
_PROBE_TOLERANCE = 1e-5


def _softmax_probe_fit(
    standardised: np.ndarray, class_index: np.ndarray, num_classes: int, C: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Multinomial logistic regression by L-BFGS in whitened coordinates.

    Minimises ``mean_i cross_entropy_i + ||W||^2 / (2 C n)`` (intercept not penalised): the
    objective of scikit-learn's ``LogisticRegression(C=C)``, whose minimiser is therefore the
    same. The features are rotated by the eigenvectors of their covariance and each direction
    scaled by ``1 / sqrt(0.25 * variance + 1 / (C n))``, an estimate of the objective's
    curvature along it, so that correlated or nearly collinear features (frozen codes often
    are) do not slow the solver down; the weights are mapped back to the standardised
    features at the end. Returns ``(weights (d, K), intercepts (K,), converged)``.
    """
    from scipy import optimize

    n, d = standardised.shape
    variances, rotation = np.linalg.eigh(standardised.T @ standardised / n)
    regularisation = 1.0 / (C * n)
    curvature = _PROBE_CURVATURE * np.clip(variances, 0.0, None) + regularisation
    to_standardised = rotation / np.sqrt(curvature)  # W_standardised = to_standardised @ W_whitened
    # Examples along the last axis: (num_classes, n) logits make the matrix products and the
    # per-example reductions over classes several times faster than (n, num_classes) ones.
    whitened = np.ascontiguousarray((standardised @ to_standardised).T)  # (d, n)
    penalty = (regularisation / curvature)[:, None]  # ||to_standardised @ W||^2 = sum_j |W_j|^2 / curvature_j
    examples = np.arange(n)
    targets = np.zeros((num_classes, n))
    targets[class_index, examples] = 1.0
    last = {}

    def objective(parameters):
        weights, intercepts = parameters[: d * num_classes].reshape(d, num_classes), parameters[d * num_classes :]
        logits = weights.T @ whitened + intercepts[:, None]
        shift = logits.max(axis=0)
        exponentials = np.exp(logits - shift)  # one exp per entry serves the loss and its gradient
        sums = exponentials.sum(axis=0)
        value = (float(np.sum(np.log(sums) + shift)) - float(logits[class_index, examples].sum())) / n + 0.5 * float(
            np.sum(penalty * weights * weights)
        )
        residual = (exponentials / sums - targets) / n
        weight_gradient = whitened @ residual.T + penalty * weights
        intercept_gradient = residual.sum(axis=1)
        last.update(
            parameters=parameters.copy(), weight_gradient=weight_gradient, intercept_gradient=intercept_gradient
        )
        return value, np.concatenate([weight_gradient.ravel(), intercept_gradient])

    def small_gradient(parameters) -> bool:
        if "parameters" not in last or not np.array_equal(parameters, last["parameters"]):
            objective(parameters)
        # The gradient with respect to the standardised features' weights: to_standardised^-T g.
        standardised_gradient = rotation @ (np.sqrt(curvature)[:, None] * last["weight_gradient"])
        return max(np.abs(standardised_gradient).max(), np.abs(last["intercept_gradient"]).max()) <= _PROBE_TOLERANCE

    converged = [False]

    def stop_when_converged(parameters):
        if small_gradient(parameters):
            converged[0] = True
            raise StopIteration

    start = np.zeros(d * num_classes + num_classes)
    result = optimize.minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        callback=stop_when_converged,
        options={"maxiter": max_iter, "maxcor": 30, "gtol": 0.0, "ftol": 1e-15},
    )
    converged = converged[0] or result.nit < max_iter or small_gradient(result.x)
    weights = to_standardised @ result.x[: d * num_classes].reshape(d, num_classes)
    return weights, result.x[d * num_classes :], converged


def linear_probe(
    train_features, train_labels, test_features, test_labels, *, C: float = 1.0, max_iter: int = 1000
) -> dict:
    """How linearly decodable the classes are from frozen features.

    Multinomial logistic regression with an L2 penalty on the weights, fitted on the
    training features standardised with the training mean and standard deviation, scored
    on the test features. The objective is scikit-learn's ``LogisticRegression(C=C)``
    (lbfgs, multinomial) inside ``make_pipeline(StandardScaler(), ...)``:
    ``C * sum_i cross_entropy_i + ||W||^2 / 2``, intercepts not penalised; a larger ``C``
    means less regularisation. It is minimised by L-BFGS in whitened coordinates (see
    ``_softmax_probe_fit``), which on correlated features such as learned codes needs
    fewer and cheaper iterations than scikit-learn's lbfgs (``benchmarks/bench_probe.py``;
    figures in docs/DESIGN.md, section Benchmarks: xmodal_tf/metrics.py). It stops when
    the largest partial derivative of the mean objective is below 1e-5 (scikit-learn's
    ``tol`` is 1e-4), or after ``max_iter`` iterations with a ``RuntimeWarning``.

    Predictions are among the classes present in ``train_labels``; ties go to the
    smallest class index. The result is deterministic for the same inputs.

    Args:
        train_features: (n_train, d) numeric features, e.g. frozen codes.
        train_labels: (n_train,) class indices, at least two classes.
        test_features: (n_test, d) features.
        test_labels: (n_test,) class indices.
        C: inverse regularisation strength, > 0 (scikit-learn's ``C``).
        max_iter: the most L-BFGS iterations.

    Returns:
        ``accuracy`` and ``macro_f1`` on the test set, ``train_accuracy``.

    Raises:
        TypeError: non-numeric features, non-integer labels, C or max_iter of a wrong type.
        ValueError: mismatched rows or feature counts, NaN or inf features, a single
            training class, C <= 0 or max_iter < 1.
    """
    train_features = _check_features(train_features, "train_features")
    test_features = _check_features(test_features, "test_features")
    train_labels = as_class_labels(train_labels, name="train_labels")
    test_labels = as_class_labels(test_labels, name="test_labels")
    for name, features, labels in (("train", train_features, train_labels), ("test", test_features, test_labels)):
        if len(features) != len(labels):
            raise ValueError(f"{name}_features has {len(features)} rows but {name}_labels has {len(labels)}")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train_features has {train_features.shape[1]} features but test_features has {test_features.shape[1]}"
        )
    if len(np.unique(train_labels)) < 2:
        raise ValueError("train_labels hold a single class: a classifier needs at least two")
    C = check_number(C, "C (inverse regularisation strength)", minimum=0, exclusive_minimum=True)
    max_iter = check_positive_int(max_iter, "max_iter")

    train = np.asarray(train_features, dtype=np.float64)
    mean = train.mean(axis=0)
    scale = train.std(axis=0)
    scale[scale <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)] = 1.0  # constant features
    classes, class_index = np.unique(train_labels, return_inverse=True)
    weights, intercepts, converged = _softmax_probe_fit((train - mean) / scale, class_index, len(classes), C, max_iter)
    if not converged:
        warnings.warn(
            f"linear_probe: the solver did not converge in max_iter={max_iter} iterations; raise max_iter or lower C",
            RuntimeWarning,
            stacklevel=2,
        )
    # Back to the raw features: ((x - mean) / scale) @ W + b = x @ (W / scale) + (b - mean @ (W / scale)).
    raw_weights = weights / scale[:, None]
    raw_intercepts = intercepts - mean @ raw_weights

    def predict(features):
        return classes[np.argmax(np.asarray(features, dtype=np.float64) @ raw_weights + raw_intercepts, axis=1)]

    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    report = classification_report(test_labels, predict(test_features), num_classes=num_classes)
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "train_accuracy": float(np.mean(predict(train_features) == train_labels)),
    }


# ------------------------------------------------------------------ cross-validation
_MAX_SEED = 2**32 - 1  # scikit-learn's random_state range


def stratified_folds(labels, n_splits: int = 5, seed: int | None = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold split (scikit-learn's ``StratifiedKFold(shuffle=True)``).

    Every fold holds each class's count to within one, fold sizes differ by at most one,
    and the test folds are disjoint and cover every example once.

    Args:
        labels: (n,) class indices.
        n_splits: the number of folds, 2 <= n_splits <= n, and at most the size of the
            largest class. A class with fewer than ``n_splits`` examples is missing from
            some test folds (a warning says which).
        seed: the shuffle's seed (0 .. 2**32 - 1), or None for a fresh shuffle.

    Returns:
        ``[(train_indices, test_indices)] * n_splits``, sorted int64 index arrays.

    Raises:
        TypeError: a non-integer n_splits or seed.
        ValueError: n_splits out of range, or labels that are not class indices.
    """
    labels = as_class_labels(labels)
    n_splits = check_int(n_splits, "n_splits")
    seed = check_int(seed, "seed", minimum=0, maximum=_MAX_SEED, allow_none=True)
    if n_splits < 2 or n_splits > len(labels):
        raise ValueError(f"n_splits must be between 2 and the number of examples ({len(labels)}); got {n_splits}")
    classes, counts = np.unique(labels, return_counts=True)
    if counts.max() < n_splits:
        raise ValueError(
            f"n_splits={n_splits} is more than the examples of any class (largest: "
            f"{counts.max()}); choose n_splits <= {counts.max()}"
        )
    if counts.min() < n_splits:
        warnings.warn(
            f"class {classes[np.argmin(counts)]} has only {counts.min()} examples, fewer "
            f"than n_splits={n_splits}: some test folds will not contain it",
            stacklevel=2,
        )
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # scikit-learn's own version of the warning above
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return [
            (train.astype(np.int64), test.astype(np.int64))
            for train, test in splitter.split(np.zeros((len(labels), 1)), labels)
        ]


def _check_rows(inputs, num_rows: int, name: str) -> None:
    """inputs is an array or a dict of arrays, each with num_rows rows."""
    named = {f"{name}[{key!r}]": value for key, value in inputs.items()} if isinstance(inputs, dict) else {name: inputs}
    for array_name, array in named.items():
        if not hasattr(array, "shape") or np.ndim(array) == 0:
            raise TypeError(f"{array_name} must be an array with one row per label; got {describe(array)}")
        if len(array) != num_rows:
            raise ValueError(f"{array_name} has {len(array)} rows but there are {num_rows} labels")


def _take(inputs, indices: np.ndarray):
    if isinstance(inputs, dict):
        return {name: np.asarray(array)[indices] for name, array in inputs.items()}
    return np.asarray(inputs)[indices]


_RESERVED_FIT_KEYS = {
    "x": "inputs",
    "y": "labels",
    "class_weight": "class_weight=",
    "sample_weight": "class_weight= (sample weights are not split by fold)",
}
_FOLD_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")


def _check_fit_kwargs(fit_kwargs) -> dict:
    if fit_kwargs is None:
        return {"verbose": 0}
    if not isinstance(fit_kwargs, dict):
        raise TypeError(f"fit_kwargs must be a dict of model.fit arguments; got {describe(fit_kwargs)}")
    for key, instead in _RESERVED_FIT_KEYS.items():
        if key in fit_kwargs:
            raise ValueError(f"fit_kwargs must not contain {key!r}: cross_validate sets it per fold (use {instead})")
    return {"verbose": 0, **fit_kwargs}


def _check_class_weight(class_weight):
    if class_weight is None or isinstance(class_weight, dict):
        return class_weight
    if class_weight not in CLASS_WEIGHT_METHODS:
        raise ValueError(
            f"class_weight must be None, a dict {{class: weight}} or one of "
            f"{CLASS_WEIGHT_METHODS} (computed on each fold's training labels); "
            f"got {class_weight!r}"
        )
    return class_weight


def _fit_and_score_fold(build_model, inputs, labels, train, test, fit_kwargs, class_weight) -> dict:
    import keras

    model = build_model()
    if not isinstance(model, keras.Model):
        raise TypeError(f"build_model must return a fresh, compiled keras.Model; got {type(model).__name__}")
    if not getattr(model, "compiled", False):
        raise ValueError("build_model returned an uncompiled model: call model.compile(...) inside build_model")
    if isinstance(class_weight, str):
        class_weight = class_weights(labels[train], method=class_weight)
    history = model.fit(_take(inputs, train), labels[train], class_weight=class_weight, **fit_kwargs)
    scores = model.predict(_take(inputs, test), verbose=0)
    if isinstance(scores, (dict, list, tuple)):
        raise TypeError(
            "cross_validate needs a model with one (batch, num_classes) output; this "
            f"model returns a {type(scores).__name__}"
        )
    num_classes = None if np.ndim(scores) == 2 else int(labels.max()) + 1
    report = classification_report(labels[test], scores, num_classes=num_classes)
    fold = {name: report[name] for name in _FOLD_METRICS}
    fold.update(
        {"train_size": int(len(train)), "test_size": int(len(test)), "epochs": len(history.history.get("loss", []))}
    )
    return fold


def cross_validate(
    build_model, inputs, labels, *, n_splits: int = 5, seed: int = 0, fit_kwargs: dict | None = None, class_weight=None
) -> dict:
    """Stratified k-fold cross-validation of a Keras classifier.

    scikit-learn's ``cross_validate`` wants an estimator; this one takes a builder of
    compiled Keras models, so each fold trains fresh weights.

    Args:
        build_model: a callable returning a fresh, compiled ``keras.Model`` whose output
            is (batch, num_classes) probabilities or logits (or (batch,) labels).
        inputs: an array (n, ...) or a dict name -> array (n, ...).
        labels: (n,) class indices.
        n_splits: number of folds (see ``stratified_folds``).
        seed: the fold assignment's seed; fold i's model is built after
            ``keras.utils.set_random_seed(seed + i)``, which resets Python's, NumPy's and
            TensorFlow's global seeds.
        fit_kwargs: extra ``model.fit`` arguments (epochs, batch_size, callbacks,
            validation_split, ...); ``verbose`` defaults to 0.
        class_weight: None, a dict {class: weight}, or ``"balanced"`` /
            ``"sqrt_balanced"`` to compute ``class_weights`` on each fold's training labels.

    Returns:
        ``folds``: per fold ``accuracy``, ``macro_precision``, ``macro_recall``,
        ``macro_f1``, ``train_size``, ``test_size``, ``epochs``; ``mean`` and ``std``
        (``np.std``, ddof=0) of the four metrics over folds; ``n_splits``; ``seed``.

    Raises:
        TypeError: a model instead of a builder, inputs that are not arrays, a non-int seed.
        ValueError: mismatched rows, reserved ``fit_kwargs`` keys, an unknown class_weight.
    """
    if not callable(build_model) or hasattr(build_model, "fit"):
        raise TypeError(
            "build_model must be a function that builds and compiles a fresh "
            f"keras.Model (not a model: each fold needs new weights); "
            f"got {type(build_model).__name__}"
        )
    labels = as_class_labels(labels)
    if not (isinstance(inputs, dict) or hasattr(inputs, "shape")):
        raise TypeError(f"inputs must be an array or a dict name -> array; got {describe(inputs)}")
    _check_rows(inputs, len(labels), "inputs")
    fit_kwargs = _check_fit_kwargs(fit_kwargs)
    class_weight = _check_class_weight(class_weight)
    seed = check_int(seed, "seed", minimum=0, maximum=_MAX_SEED)
    folds = stratified_folds(labels, n_splits, seed)

    import keras

    results = []
    for index, (train, test) in enumerate(folds):
        keras.utils.set_random_seed(seed + index)
        results.append(_fit_and_score_fold(build_model, inputs, labels, train, test, fit_kwargs, class_weight))
    return {
        "folds": results,
        "mean": {name: float(np.mean([fold[name] for fold in results])) for name in _FOLD_METRICS},
        "std": {name: float(np.std([fold[name] for fold in results])) for name in _FOLD_METRICS},
        "n_splits": len(folds),
        "seed": seed,
    }
