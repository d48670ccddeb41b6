"""xmodal_tf.metrics: classification and folds against scikit-learn, confusion images, retrieval on
hand-worked cases, linear probe, cross-validation. (ConfusionMatrixCallback: tests/test_callbacks.py.)"""

import keras
import numpy as np
import pytest
import sklearn.metrics as skm
import tensorflow as tf

from xmodal_tf import metrics

# ------------------------------------------------------------------ classification


def _labels_case(name):
    """(y_true, y_pred labels, num_classes or None) for one named situation."""
    rng = np.random.default_rng(0)
    if name == "balanced":
        y_true = np.repeat(np.arange(5), 40)
        y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200))
        return y_true, y_pred, None
    if name == "imbalanced":
        y_true = rng.choice(4, size=300, p=[0.85, 0.1, 0.04, 0.01])
        y_pred = np.where(rng.random(300) < 0.5, y_true, 0)  # a majority-class bias
        return y_true, y_pred, None
    if name == "class_never_predicted":
        y_true = rng.integers(0, 4, 100)
        y_pred = np.where(y_true == 3, 2, y_true)
        y_pred[::7] = 1
        return y_true, y_pred, None
    if name == "class_only_predicted":  # class 4 has no true examples but is predicted
        y_true = rng.integers(0, 4, 100)
        y_pred = y_true.copy()
        y_pred[::5] = 4
        return y_true, y_pred, None
    if name == "class_absent_from_both":  # num_classes=6 but classes 2 and 5 never occur
        y_true = rng.choice([0, 1, 3, 4], size=120)
        y_pred = np.where(rng.random(120) < 0.7, y_true, rng.choice([0, 1, 3, 4], size=120))
        return y_true, y_pred, 6
    raise KeyError(name)


CASES = ["balanced", "imbalanced", "class_never_predicted", "class_only_predicted", "class_absent_from_both"]


@pytest.mark.parametrize("case", CASES)
def test_classification_report_matches_sklearn(case):
    y_true, y_pred, num_classes = _labels_case(case)
    report = metrics.classification_report(y_true, y_pred, num_classes=num_classes)
    all_classes = np.arange(report["num_classes"])
    assert report["num_classes"] == (num_classes or max(y_true.max(), y_pred.max()) + 1)

    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    # sklearn's default macro average runs over the classes in y_true or y_pred, as ours does.
    for ours, function in (
        ("macro_precision", skm.precision_score),
        ("macro_recall", skm.recall_score),
        ("macro_f1", skm.f1_score),
    ):
        expected = function(y_true, y_pred, average="macro", zero_division=0)
        assert report[ours] == pytest.approx(expected), ours
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=all_classes, average=None, zero_division=0
    )
    np.testing.assert_allclose(report["precision_per_class"], precision)
    np.testing.assert_allclose(report["recall_per_class"], recall)
    np.testing.assert_allclose(report["f1_per_class"], f1)
    np.testing.assert_array_equal(report["support_per_class"], support)
    np.testing.assert_array_equal(report["confusion_matrix"], skm.confusion_matrix(y_true, y_pred, labels=all_classes))
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, y_pred, num_classes=num_classes),
        skm.confusion_matrix(y_true, y_pred, labels=all_classes),
    )
    assert report["num_examples"] == len(y_true)

    # The single-number functions agree with the report.
    for name in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
        assert getattr(metrics, name)(y_true, y_pred, num_classes=num_classes) == report[name]


def test_score_matrices_are_reduced_by_argmax():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 3, 60)
    logits = rng.normal(size=(60, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    from_labels = metrics.classification_report(y_true, logits.argmax(axis=1), num_classes=3)
    assert metrics.classification_report(y_true, logits) == from_labels
    assert metrics.classification_report(y_true, tf.constant(probabilities, tf.float32)) == from_labels
    # The column count sets num_classes even when the last class never occurs.
    scores = np.zeros((4, 5))
    scores[np.arange(4), [0, 1, 1, 0]] = 1
    assert metrics.classification_report([0, 1, 0, 0], scores)["num_classes"] == 5
    # Labels given as floats with whole values (as Keras yields them) are fine.
    assert metrics.accuracy(np.array([0.0, 1.0, 2.0]), np.array([0, 1, 1])) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "y_true, y_pred, num_classes, error, match",
    [
        ([0, 1, 2], [0, 1], None, ValueError, "3 examples but y_pred has 2"),
        ([0, 1], np.array([[0.2, np.nan], [0.5, 0.5]]), None, ValueError, "NaN"),
        ([0, 1, 5], [0, 1, 2], 3, ValueError, "y_true has label 5, out of range for num_classes=3"),
        ([0, 1, 1], [0, 1, 3], 3, ValueError, "y_pred has label 3"),
        ([0, 1], np.eye(2), 3, ValueError, "2 score columns but num_classes=3"),
        ([0, 1], np.array([[0.3], [0.9]]), None, ValueError, "single column"),
        (np.eye(3), [0, 1, 2], None, ValueError, "argmax"),
        ([0, 1.5], [0, 1], None, ValueError, "whole numbers"),
        ([0, -1], [0, 1], None, ValueError, "non-negative"),
        (["cat", "dog"], [0, 1], None, TypeError, "integer class indices"),
        ([], [], None, ValueError, "empty"),
        ([0, 1], np.zeros((2, 2, 2)), None, ValueError, r"\(n, num_classes\)"),
        ([0, 1], [0, 1], 0, ValueError, "num_classes must be an int >= 1"),
        ([0, 1], [0, 1], 2.0, TypeError, "num_classes must be an int"),
    ],
)
def test_classification_bad_input(y_true, y_pred, num_classes, error, match):
    with pytest.raises(error, match=match):
        metrics.classification_report(y_true, y_pred, num_classes=num_classes)


# ------------------------------------------------------------ confusion-matrix image
def test_confusion_matrix_image_is_the_matplotlib_figure_as_rgb():
    from xmodal_tf import plots

    counts = np.array([[8, 2, 0], [0, 5, 5], [1, 1, 8]])
    image = metrics.confusion_matrix_image(counts, class_names=["cat", "dog", "bird"])
    assert image.dtype == np.uint8 and image.ndim == 4 and image.shape[0] == 1 and image.shape[3] == 3
    assert min(image.shape[1:3]) >= 300
    figure = plots.confusion_matrix_figure(counts, class_names=["cat", "dog", "bird"])
    np.testing.assert_array_equal(image, plots.figure_to_image(figure)[..., :3])
    # Deterministic, and the counts are drawn: other counts, another image.
    np.testing.assert_array_equal(image, metrics.confusion_matrix_image(counts, ["cat", "dog", "bird"]))
    assert not np.array_equal(image, metrics.confusion_matrix_image(counts * 2, ["cat", "dog", "bird"]))


def test_confusion_matrix_image_many_classes_and_bad_input():
    big = metrics.confusion_matrix_image(np.eye(600, dtype=int))
    assert big.shape[0] == 1 and big.shape[3] == 3 and min(big.shape[1:3]) >= 600
    with pytest.raises(ValueError, match="square"):
        metrics.confusion_matrix_image(np.ones((2, 3)))
    with pytest.raises(ValueError, match="3 names"):
        metrics.confusion_matrix_image(np.eye(3), class_names=["a", "b"])
    with pytest.raises(ValueError, match="non-negative"):
        metrics.confusion_matrix_image(-np.eye(2))
    with pytest.raises(TypeError, match="numbers"):
        metrics.confusion_matrix_image(np.array([["a", "b"], ["c", "d"]]))


def test_confusion_matrix_callback_keeps_its_old_import_paths():
    from xmodal_tf import training
    from xmodal_tf.training import callbacks

    assert metrics.ConfusionMatrixCallback is callbacks.ConfusionMatrixCallback
    assert training.ConfusionMatrixCallback is callbacks.ConfusionMatrixCallback
    assert metrics._define_confusion_matrix_callback() is callbacks.ConfusionMatrixCallback
    from xmodal_tf.metrics import ConfusionMatrixCallback

    assert ConfusionMatrixCallback is callbacks.ConfusionMatrixCallback
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        metrics.nothing  # noqa: B018


def _tiny_classifier(input_dim=4, num_classes=3):
    model = keras.Sequential([keras.Input((input_dim,)), keras.layers.Dense(num_classes, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="sparse_categorical_crossentropy")
    return model


def _blobs(n=90, num_classes=3, dim=4, seed=0, spread=0.5):
    """Gaussian blobs around well-separated centres: (features float32, labels)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    centres = 3 * np.eye(num_classes, dim)
    return (centres[labels] + spread * rng.normal(size=(n, dim))).astype("float32"), labels


# ------------------------------------------------------------------------ retrieval
def test_retrieval_metrics_on_a_hand_worked_case():
    similarity = np.array(
        [
            [0.9, 0.1, 0.3],  # item 0 is top: rank 1
            [0.2, 0.5, 0.8],  # item 1 is second: rank 2
            [0.4, 0.4, 0.1],
        ]
    )  # item 2 is last: rank 3
    result = metrics.retrieval_metrics(similarity, [0, 1, 2], ks=(1, 2, 3))
    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["recall@2"] == pytest.approx(2 / 3)
    assert result["recall@3"] == 1.0
    assert result["median_rank"] == 2.0 and result["mean_rank"] == 2.0
    assert result["mean_reciprocal_rank"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert result["chance_recall@1"] == pytest.approx(1 / 3)
    assert result["chance_recall@2"] == pytest.approx(2 / 3)
    assert (result["num_queries"], result["num_gallery"]) == (3, 3)


def test_retrieval_ties_are_pessimistic_and_several_relevant_items():
    # Every score equal: the relevant item is ranked last, never first by luck.
    np.testing.assert_array_equal(metrics.retrieval_ranks(np.zeros((2, 4)), [0, 3]), [4, 4])
    np.testing.assert_array_equal(metrics.retrieval_ranks([[0.5, 0.5, 0.1]], [0]), [2])
    relevant = np.array([[False, True, True, False], [True, False, False, True]])
    similarity = np.array(
        [
            [0.9, 0.5, 0.4, 0.1],  # best relevant (item 1) is second
            [0.1, 0.8, 0.7, 0.9],
        ]
    )  # item 3 relevant and top
    result = metrics.retrieval_metrics(similarity, relevant, ks=(1, 2))
    assert result["recall@1"] == 0.5 and result["recall@2"] == 1.0
    assert result["median_rank"] == 1.5
    # Two relevant items of four: P(top 1 relevant) = 1/2, P(some of top 2) = 1 - 1/6.
    assert result["chance_recall@1"] == pytest.approx(0.5)
    assert result["chance_recall@2"] == pytest.approx(5 / 6)
    # The same relevance as 0/1 integers.
    assert metrics.retrieval_metrics(similarity, relevant.astype(int), ks=(1, 2)) == result


def test_retrieval_ranks_match_a_sort_and_chance_matches_random_scores():
    rng = np.random.default_rng(0)
    similarity = rng.normal(size=(1500, 40))  # more queries than one chunk
    relevant = rng.integers(0, 40, 1500)
    order = np.argsort(-similarity, axis=1)
    expected = 1 + np.argmax(order == relevant[:, None], axis=1)
    np.testing.assert_array_equal(metrics.retrieval_ranks(similarity, relevant), expected)
    # Index and one-hot relevance agree, with many ties (integer scores).
    ties = rng.integers(0, 3, size=(200, 10)).astype(float)
    indices = rng.integers(0, 10, 200)
    np.testing.assert_array_equal(
        metrics.retrieval_ranks(ties, indices), metrics.retrieval_ranks(ties, np.eye(10, dtype=bool)[indices])
    )
    # Random scores achieve the chance recall, on average.
    several = rng.random((4000, 20)) < 0.1
    several[np.arange(4000), rng.integers(0, 20, 4000)] = True
    result = metrics.retrieval_metrics(rng.random((4000, 20)), several, ks=(1, 5))
    for k in (1, 5):
        assert result[f"recall@{k}"] == pytest.approx(result[f"chance_recall@{k}"], abs=0.03)


@pytest.mark.parametrize(
    "similarity, relevant, ks, error, match",
    [
        (np.zeros((2, 3)), [0, 1], (1, 5), ValueError, "k=5 is larger than the gallery"),
        (np.zeros((2, 3)), [0, 1], (0,), ValueError, "each k in ks must be an int >= 1"),
        (np.zeros((2, 3)), [0, 1], (1.5,), TypeError, "each k in ks must be an int"),
        (np.zeros((2, 3)), [0, 1, 2], (1,), ValueError, "3 entries but similarity has 2 queries"),
        (np.zeros((2, 3)), [0, 3], (1,), ValueError, "index 3 is out of range"),
        (np.zeros((2, 3)), np.array([[1, 0, 0], [0, 0, 0]], bool), (1,), ValueError, "1 queries have no relevant"),
        (np.zeros((2, 3)), np.ones((2, 2), bool), (1,), ValueError, "shape"),
        (np.array([[0.1, np.nan, 0.2]]), [0], (1,), ValueError, "NaN"),
        (np.zeros(3), [0], (1,), ValueError, "n_queries, n_gallery"),
        (np.zeros((1, 3)), np.array([[0, 2, 1]]), (1,), TypeError, "boolean"),
    ],
)
def test_retrieval_bad_input(similarity, relevant, ks, error, match):
    with pytest.raises(error, match=match):
        metrics.retrieval_metrics(similarity, relevant, ks=ks)


# --------------------------------------------------------------------------- probes
def _sklearn_probe(x_train, y_train, x_test, y_test, C):
    """The probe as it was before issue 16: scikit-learn's pipeline (lbfgs, multinomial)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reference = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
    reference.fit(x_train, y_train)
    return reference, reference.predict(x_test)


def _correlated_codes(n=1500, dim=16, num_classes=5, seed=0):
    """Overlapping classes seen through nearly collinear features of very different scales,
    the case that made scikit-learn's solver slow (issue 16)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    latent = rng.normal(size=(num_classes, 6))[labels] + rng.normal(size=(n, 6))
    mixing = rng.normal(size=(6, dim)) + 0.05 * rng.normal(size=(6, dim))
    features = np.maximum(latent @ mixing, 0) + 0.01 * rng.normal(size=(n, dim))
    return (features * np.logspace(-2, 2, dim)).astype("float32"), labels


def test_linear_probe_matches_sklearn_pipeline():
    x, y = _blobs(n=300, num_classes=4, dim=6, spread=2.0)
    x = x * np.array([1, 100, 0.01, 1, 5, 1], dtype="float32")  # scales standardisation must undo
    result = metrics.linear_probe(x[:200], y[:200], x[200:], y[200:], C=0.5)
    reference, predicted = _sklearn_probe(x[:200], y[:200], x[200:], y[200:], C=0.5)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y[200:], predicted))
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y[200:], predicted, average="macro"))
    assert result["train_accuracy"] == pytest.approx(reference.score(x[:200], y[:200]))
    assert 0.5 < result["accuracy"] < 1.0  # overlapping blobs: informative, not trivial


@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_linear_probe_agrees_with_sklearn_within_half_a_point_on_correlated_codes(C):
    x, y = _correlated_codes()
    result = metrics.linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], C=C)
    reference, predicted = _sklearn_probe(x[:1000], y[:1000], x[1000:], y[1000:], C=C)
    assert abs(result["accuracy"] - skm.accuracy_score(y[1000:], predicted)) <= 0.005
    assert abs(result["train_accuracy"] - reference.score(x[:1000], y[:1000])) <= 0.005
    assert 0.4 < result["accuracy"] < 0.99


def test_linear_probe_minimises_sklearns_objective():
    """Same C, same objective: the probe's minimum is scikit-learn's (tightly converged) minimum,
    and on well-conditioned features the weights agree too."""
    from sklearn.linear_model import LogisticRegression

    def objective(weights, intercepts, features, index, C):  # scikit-learn's: C * sum CE + |W|^2 / 2
        logits = features @ weights + intercepts
        logits = logits - logits.max(1, keepdims=True)
        cross_entropy = np.log(np.exp(logits).sum(1)) - logits[np.arange(len(index)), index]
        return C * cross_entropy.sum() + 0.5 * np.sum(weights**2)

    for features, labels, weights_agree in (
        _correlated_codes(n=800) + (False,),
        _blobs(n=300, num_classes=4, dim=6, spread=2.0) + (True,),
    ):
        features = features.astype(np.float64)
        standardised = (features - features.mean(0)) / features.std(0)
        classes, index = np.unique(labels, return_inverse=True)
        weights, intercepts, converged = metrics._softmax_probe_fit(standardised, index, len(classes), 2.0, 1000)
        reference = LogisticRegression(C=2.0, tol=1e-10, max_iter=20000).fit(standardised, labels)
        assert converged
        ours = objective(weights, intercepts, standardised, index, 2.0)
        theirs = objective(reference.coef_.T, reference.intercept_, standardised, index, 2.0)
        assert ours == pytest.approx(theirs, rel=1e-6)  # our tolerance: gradient below 1e-5
        if weights_agree:  # nearly collinear codes leave flat directions where weights may drift
            np.testing.assert_allclose(weights.T, reference.coef_, atol=1e-3)


def test_linear_probe_is_deterministic_and_ignores_label_gaps():
    x, y = _correlated_codes(n=600)
    first = metrics.linear_probe(x[:400], y[:400], x[400:], y[400:])
    assert metrics.linear_probe(x[:400], y[:400], x[400:], y[400:]) == first
    # Class indices 0, 2, 4, ... (absent classes in between) give the same predictions.
    gapped = metrics.linear_probe(x[:400], 2 * y[:400], x[400:], 2 * y[400:])
    assert gapped["accuracy"] == first["accuracy"]
    assert gapped["train_accuracy"] == first["train_accuracy"]


def test_linear_probe_handles_constant_and_duplicated_features():
    x, y = _blobs(n=200, num_classes=3, dim=4, spread=1.0)
    widened = np.concatenate([x, np.ones((200, 1), "float32"), x[:, :1]], axis=1)
    plain = metrics.linear_probe(x[:150], y[:150], x[150:], y[150:])
    result = metrics.linear_probe(widened[:150], y[:150], widened[150:], y[150:])
    assert abs(result["accuracy"] - plain["accuracy"]) <= 0.04  # at most one of 50 test rows


def test_linear_probe_warns_when_max_iter_is_too_small():
    x, y = _correlated_codes(n=600)
    with pytest.warns(RuntimeWarning, match="max_iter=2"):
        metrics.linear_probe(x[:400], y[:400], x[400:], y[400:], max_iter=2)


def test_linear_probe_bad_input():
    x, y = _blobs(n=20)
    with pytest.raises(ValueError, match="single class"):
        metrics.linear_probe(x, np.zeros(20, int), x, y)
    with pytest.raises(ValueError, match="4 features but test_features has 3"):
        metrics.linear_probe(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match="19 rows but train_labels has 20"):
        metrics.linear_probe(x[:19], y, x, y)
    with pytest.raises(ValueError, match=r"train_features has non-finite values \(NaN or inf\) in 20 row"):
        metrics.linear_probe(np.full_like(x, np.nan), y, x, y)
    with pytest.raises(ValueError, match=r"C \(inverse regularisation strength\) must be a finite number > 0"):
        metrics.linear_probe(x, y, x, y, C=0)
    with pytest.raises(TypeError, match="C .* must be a finite number"):
        metrics.linear_probe(x, y, x, y, C="1")
    with pytest.raises(ValueError, match="max_iter must be an int >= 1"):
        metrics.linear_probe(x, y, x, y, max_iter=0)
    with pytest.raises(ValueError, match="must be an \\(n, num_features\\) matrix"):
        metrics.linear_probe(x[:, 0], y, x, y)


# ------------------------------------------------------------------ cross-validation
def test_stratified_folds_are_stratified_disjoint_and_complete():
    labels = np.repeat([0, 1, 2, 3], [53, 21, 9, 6])[np.random.default_rng(0).permutation(89)]
    folds = metrics.stratified_folds(labels, n_splits=5, seed=3)
    assert len(folds) == 5
    tests = np.concatenate([test for _, test in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(89))  # disjoint and complete
    for train, test in folds:
        np.testing.assert_array_equal(train, np.setdiff1d(np.arange(89), test))
    per_fold = np.array([np.bincount(labels[test], minlength=4) for _, test in folds])
    assert np.all(per_fold.max(axis=0) - per_fold.min(axis=0) <= 1)
    sizes = [len(test) for _, test in folds]
    assert max(sizes) - min(sizes) <= 1
    # Reproducible by seed; another seed deals other examples.
    again = metrics.stratified_folds(labels, n_splits=5, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = metrics.stratified_folds(labels, n_splits=5, seed=4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))


def test_stratified_folds_are_sklearns_stratified_k_fold():
    from sklearn.model_selection import StratifiedKFold

    labels = np.random.default_rng(1).integers(0, 3, 50)
    expected = StratifiedKFold(n_splits=4, shuffle=True, random_state=7).split(np.zeros((50, 1)), labels)
    folds = metrics.stratified_folds(labels, n_splits=4, seed=7)
    for (train, test), (sk_train, sk_test) in zip(folds, expected, strict=True):
        assert train.dtype == test.dtype == np.int64
        np.testing.assert_array_equal(train, sk_train)
        np.testing.assert_array_equal(test, sk_test)


def test_stratified_folds_bad_input():
    with pytest.warns(UserWarning, match="class 1 has only 2 examples") as caught:
        metrics.stratified_folds([0, 0, 0, 1, 1, 0], n_splits=3)
    assert len(caught) == 1  # ours only: scikit-learn's own warning is silenced
    with pytest.raises(ValueError, match="between 2 and the number of examples"):
        metrics.stratified_folds([0, 1, 0, 1], n_splits=1)
    with pytest.raises(ValueError, match="between 2 and the number of examples"):
        metrics.stratified_folds([0, 1, 0, 1], n_splits=5)
    with pytest.raises(ValueError, match="n_splits=3 is more than the examples of any class"):
        metrics.stratified_folds([0, 1, 0, 1], n_splits=3)
    with pytest.raises(TypeError, match="n_splits must be an int"):
        metrics.stratified_folds([0, 1, 0, 1], n_splits=2.0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        metrics.stratified_folds([0, 1, 0, 1], n_splits=2, seed=-1)


def test_cross_validate_tiny_keras_models():
    x, y = _blobs(n=60, spread=0.4)
    built = []

    def build_model():
        built.append(_tiny_classifier())
        return built[-1]

    # Few epochs keep this fast: each fold's fit costs a tf.function trace.
    result = metrics.cross_validate(
        build_model, x, y, n_splits=2, seed=1, fit_kwargs={"epochs": 2, "batch_size": 4}, class_weight="balanced"
    )
    assert len(built) == 2 and built[0] is not built[1]  # a fresh model per fold
    assert [fold["test_size"] for fold in result["folds"]] == [30, 30]
    assert all(fold["epochs"] == 2 for fold in result["folds"])
    accuracies = [fold["accuracy"] for fold in result["folds"]]
    assert result["mean"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert result["std"]["accuracy"] == pytest.approx(np.std(accuracies))
    assert result["mean"]["accuracy"] > 0.9 and result["mean"]["macro_f1"] > 0.9

    # A dict of inputs for a two-input model.
    def build_two_input_model():
        left, right = keras.Input((2,), name="left"), keras.Input((2,), name="right")
        joined = keras.layers.Concatenate()([left, right])
        model = keras.Model({"left": left, "right": right}, keras.layers.Dense(3, activation="softmax")(joined))
        model.compile(optimizer=keras.optimizers.Adam(0.1), loss="sparse_categorical_crossentropy")
        return model

    two_inputs = metrics.cross_validate(
        build_two_input_model,
        {"left": x[:, :2], "right": x[:, 2:]},
        y,
        n_splits=2,
        fit_kwargs={"epochs": 2, "batch_size": 4},
    )
    assert two_inputs["n_splits"] == 2 and two_inputs["mean"]["accuracy"] > 0.8


def test_cross_validate_bad_input():
    x, y = _blobs(n=12)

    def uncompiled():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])

    with pytest.raises(ValueError, match="uncompiled"):
        metrics.cross_validate(uncompiled, x, y, n_splits=2)
    with pytest.raises(TypeError, match="keras.Model"):
        metrics.cross_validate(lambda: "not a model", x, y, n_splits=2)
    with pytest.raises(TypeError, match="not a model"):
        metrics.cross_validate(_tiny_classifier(), x, y)  # a model is callable, but not a builder
    with pytest.raises(ValueError, match="must not contain 'y'"):
        metrics.cross_validate(_tiny_classifier, x, y, fit_kwargs={"y": y})
    with pytest.raises(ValueError, match="class_weight must be"):
        metrics.cross_validate(_tiny_classifier, x, y, class_weight="inverse")
    with pytest.raises(ValueError, match=r"inputs\['b'\] has 11 rows"):
        metrics.cross_validate(_tiny_classifier, {"a": x, "b": x[:11]}, y)
    with pytest.raises(TypeError, match="seed must be an int"):
        metrics.cross_validate(_tiny_classifier, x, y, seed="0")
