"""Linear canonical correlation analysis (CCA) for two or more views, in NumPy/SciPy.

Given centred views X (n x p) and Y (n x q), CCA finds weights Wx (p x k) and
Wy (q x k) such that the canonical variates X Wx and Y Wy are correlated column by
column as strongly as possible and uncorrelated across columns.

Method: each view's ridge-regularised covariance C + r I is factored by Cholesky
(C + r I = L L^T), the cross-covariance is whitened, T = Lx^-1 Cxy Ly^-T, and the
top-k singular triplets of T give the directions: Wx = Lx^-T U, Wy = Ly^-T V. The
weights are then scaled so that the training variates have unit variance, and the
reported correlations are measured on the training variates (for reg=0 they equal
the singular values of T). ``MCCA`` generalises this to m >= 3 views: the block
matrix of whitened cross-covariances, with identity diagonal blocks, is
eigen-decomposed (for two views its top eigenvalues are 1 + rho_i and it gives CCA).

The covariance sums are accumulated chunk by chunk (``partial_fit`` and
``fit_batches``), so data that does not fit in memory can be fitted exactly.
"""
from __future__ import annotations

import itertools
import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from xmodal_tf._lapack import one_thread, solve_triangular, top_eigh

__all__ = ["CCA", "MCCA", "column_correlations"]

# Above this relative rounding error, covariances computed from uncentred products
# (X^T X - n m m^T) lose too many digits and the data are centred explicitly instead.
_CANCELLATION_TOLERANCE = 1e-11
# A Cholesky pivot below this fraction of the largest variance (times the number of
# features) marks the covariance as numerically singular.
_SINGULAR_PIVOT_FACTOR = 100.0
_PROJECTION_BLOCK_ROWS = 1024
_SUM_ROW_GROUP = 8
_SUPPORTED_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


# ----------------------------------------------------------------------------- checks
def _resolve_dtype(dtype) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"dtype must be float64 or float32; got {dtype!r}.") from error
    if resolved not in _SUPPORTED_DTYPES:
        raise TypeError(f"dtype must be float64 or float32; got {resolved}.")
    return resolved


def _as_view(data, name: str, dtype: np.dtype) -> np.ndarray:
    """Return ``data`` as a 2-D (n_samples, n_features) array of ``dtype``, or raise.

    Finiteness is not checked here (that costs a pass over the data); callers check
    the column sums or products they compute anyway and call ``_raise_not_finite``.
    """
    if isinstance(data, (str, bytes)):
        raise TypeError(f"{name} must be a numeric 2-D array; got a {type(data).__name__}.")
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} could not be converted to a numeric array: {error}") from error
    if array.dtype.kind not in "biuf":
        try:
            array = array.astype(dtype)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must hold numbers; got dtype {array.dtype}. Encode non-numeric "
                "columns first (for example with sklearn.preprocessing.OneHotEncoder)."
            ) from None
    if array.ndim != 2:
        hint = " Use X.reshape(-1, 1) for a single feature." if array.ndim == 1 else ""
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features); got shape {array.shape}.{hint}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}; it needs samples and features.")
    return np.asarray(array, dtype=dtype)


def _raise_not_finite(view: np.ndarray, name: str) -> None:
    """Raise a ValueError describing the non-finite entries of ``view`` (or an overflow)."""
    bad = ~np.isfinite(view)
    if not bad.any():
        raise ValueError(
            f"{name} has values so large that its sums overflow {view.dtype}; rescale it "
            "(for example with sklearn.preprocessing.StandardScaler)."
        )
    rows, cols = np.nonzero(bad)
    kind = "NaN" if np.isnan(view[rows[0], cols[0]]) else "inf"
    raise ValueError(
        f"{name} contains {bad.sum()} NaN or infinite value(s), the first ({kind}) at row "
        f"{rows[0]}, column {cols[0]}. Impute or drop them before fitting."
    )


def _check_same_rows(views, names) -> int:
    rows = [view.shape[0] for view in views]
    if len(set(rows)) != 1:
        listed = ", ".join(f"{name}: {count}" for name, count in zip(names, rows))
        raise ValueError(
            f"The views must have the same number of rows (one row per paired sample); got {listed}."
        )
    return rows[0]


def _check_n_components(n_components) -> int:
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
        raise TypeError(f"n_components must be a positive int; got {n_components!r}.")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1; got {n_components}.")
    return int(n_components)


def _check_regs(reg, n_views: int) -> list[float]:
    """Expand ``reg`` (a float, or one float per view) to a list of ``n_views`` floats."""
    values = list(reg) if isinstance(reg, (list, tuple, np.ndarray)) else [reg] * n_views
    if len(values) != n_views:
        raise ValueError(
            f"reg must be one float or one per view ({n_views}); got {len(values)} values: {reg!r}."
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"reg must be a float >= 0 (or one per view); got {reg!r}.")
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"reg must be finite and >= 0; got {reg!r}.")
    return [float(value) for value in values]


def _column_sums(array: np.ndarray) -> np.ndarray:
    """(p,) column sums of an (n, p) array, as matrix-vector products with ones.

    A C-contiguous array is summed as the (n/8, 8p) matrix of its 8-row groups: OpenBLAS
    streams those longer rows about 1.5x faster than the (n, p) ones (p=392).
    """
    rows, columns = array.shape
    whole = rows - rows % _SUM_ROW_GROUP
    if not array.flags.c_contiguous or whole == 0:
        return np.ones(rows, dtype=array.dtype) @ array
    groups = array[:whole].reshape(whole // _SUM_ROW_GROUP, _SUM_ROW_GROUP * columns)
    sums = (np.ones(groups.shape[0], dtype=array.dtype) @ groups)
    sums = sums.reshape(_SUM_ROW_GROUP, columns).sum(axis=0)
    if whole < rows:
        sums += np.ones(rows - whole, dtype=array.dtype) @ array[whole:]
    return sums


def _checked_column_sums(arrays, names) -> list[np.ndarray]:
    """Column sums of each view; a non-finite sum (any NaN or inf in the view, or an
    overflow) raises the ValueError of ``_raise_not_finite`` for that view."""
    sums = [_column_sums(array) for array in arrays]
    for total, array, name in zip(sums, arrays, names):
        if not np.all(np.isfinite(total)):
            _raise_not_finite(array, name)
    return sums


def column_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``a`` (n x k) with the same column of ``b``.

    Returns a (k,) array; a constant column has correlation 0.
    """
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    norms = np.sqrt(np.einsum("ij,ij->j", a, a) * np.einsum("ij,ij->j", b, b))
    products = np.einsum("ij,ij->j", a, b)
    return np.divide(products, norms, out=np.zeros_like(products), where=norms > 0)


# ----------------------------------------------------------------------- accumulation
class _CovarianceAccumulator:
    """Running sums for the covariance blocks of several paired views.

    For views V_i shifted by c_i, keeps n, the sums S_i = sum(V_i - c_i) over rows and
    the products M_ij = (V_i - c_i)^T (V_j - c_j) for i <= j, so that the mean is
    c_i + S_i / n and the covariance block C_ij = (M_ij - S_i S_j^T / n) / (n - 1).
    Shifting by a value near the mean keeps that subtraction well conditioned.
    """

    def __init__(self, dims: list[int], dtype: np.dtype):
        self.dims = list(dims)
        self.dtype = dtype
        self.n_samples = 0
        self.shifts = None
        self.sums = [np.zeros(dim, dtype=dtype) for dim in self.dims]
        self.products: dict[tuple[int, int], np.ndarray] = {}
        self._covariances: dict[tuple[int, int], np.ndarray] = {}  # cleared by every add

    def add(self, views: list[np.ndarray], sums: list[np.ndarray]) -> None:
        """Add one chunk of paired rows (with its column sums), shifted by the first chunk's mean."""
        if self.shifts is None:
            self.shifts = [total / view.shape[0] for total, view in zip(sums, views)]
        shifted = [view - shift for view, shift in zip(views, self.shifts)]
        self._add_products(shifted, [total - view.shape[0] * shift
                                     for total, view, shift in zip(sums, views, self.shifts)])

    def add_unshifted(self, views: list[np.ndarray], sums: list[np.ndarray]) -> None:
        """Add a chunk without copying it (shift 0); callers check ``cancellation_error``."""
        if self.shifts is None:
            self.shifts = [np.zeros_like(total) for total in self.sums]
        self._add_products(views, sums)

    def _add_products(self, views, sums) -> None:
        for i, view_i in enumerate(views):
            for j in range(i, len(views)):
                # view.T @ view is recognised by NumPy and runs as a symmetric rank-k update.
                block = view_i.T @ view_i if i == j else view_i.T @ views[j]
                if (i, j) in self.products:
                    self.products[i, j] += block
                else:
                    self.products[i, j] = block
        self.sums = [total + chunk_total for total, chunk_total in zip(self.sums, sums)]
        self.n_samples += views[0].shape[0]
        self._covariances.clear()

    def means(self) -> list[np.ndarray]:
        return [shift + total / self.n_samples for shift, total in zip(self.shifts, self.sums)]

    def covariance(self, i: int, j: int) -> np.ndarray:
        """The (p_i x p_j) covariance block between views i and j (computed once per state)."""
        if i > j:
            return self.covariance(j, i).T
        if (i, j) not in self._covariances:
            centred = self.products[i, j] - np.outer(self.sums[i], self.sums[j] / self.n_samples)
            centred /= self.n_samples - 1
            self._covariances[i, j] = centred
        return self._covariances[i, j]

    def diagonal_products(self) -> list[np.ndarray]:
        return [np.diag(self.products[i, i]) for i in range(len(self.dims))]

    def cancellation_error(self) -> float:
        """Relative rounding error of the variances caused by the shift (largest over features)."""
        second_moment = np.concatenate(self.diagonal_products()) / self.n_samples
        variance = second_moment - (np.concatenate(self.sums) / self.n_samples) ** 2
        lost = np.where(variance > 0, second_moment / np.where(variance > 0, variance, 1), np.inf)
        lost = np.where(second_moment > 0, lost, 1.0)
        return float(np.finfo(self.dtype).eps * lost.max())


# ------------------------------------------------------------------------- solving
def _cholesky(covariance: np.ndarray, name: str, reg: float, n_samples: int) -> np.ndarray:
    """Lower Cholesky factor of a view's regularised covariance, or a clear error."""
    size = covariance.shape[0]
    largest = max(float(np.max(np.diag(covariance))), np.finfo(covariance.dtype).tiny)
    floor = _SINGULAR_PIVOT_FACTOR * size * np.finfo(covariance.dtype).eps * largest
    try:
        with one_thread():
            factor = np.linalg.cholesky(covariance)
        singular = float(np.min(np.diag(factor))) ** 2 <= floor
    except np.linalg.LinAlgError:
        singular = True
    if singular:
        cause = "constant or linearly dependent features"
        if n_samples <= size:
            cause = f"fewer samples ({n_samples}) than features ({size}), or {cause}"
        advice = (
            "set reg to a small positive value, e.g. reg=1e-4 (a ridge on each view's covariance), "
            "or remove those features"
            if reg == 0 else f"increase reg (now {reg}) or remove those features"
        )
        raise ValueError(
            f"The covariance of view {name} ({size} features) is singular or nearly so "
            f"(with reg={reg}); typical causes are {cause}. To fix it, {advice}."
        )
    return factor


def _add_ridge(covariance: np.ndarray, reg: float) -> np.ndarray:
    """C + reg I as a new array (C itself when reg is 0)."""
    if reg == 0:
        return covariance
    ridged = covariance.copy()
    ridged.flat[::ridged.shape[0] + 1] += reg
    return ridged


def _whiten_cross_covariance(acc, factors, i: int, j: int) -> np.ndarray:
    """L_i^-1 C_ij L_j^-T by two triangular solves (cheaper and more accurate than
    forming the inverses)."""
    left_solved = solve_triangular(factors[i], acc.covariance(i, j))
    return solve_triangular(factors[j], left_solved, side="right", transpose=True,
                            overwrite_rhs=True)


def _top_singular_triplets(matrix: np.ndarray, k: int):
    """Top-k singular values and vectors of ``matrix`` (p x q), largest first.

    Uses the eigen-decomposition of the smaller Gram matrix (faster than an SVD);
    a full SVD takes over when a requested singular value is numerically zero, where
    the Gram route cannot recover the right vectors.
    """
    transpose = matrix.shape[0] > matrix.shape[1]
    work = matrix.T if transpose else matrix
    values, left = top_eigh(work @ work.T, k, overwrite=True)
    singular = np.sqrt(np.clip(values, 0, None))
    if singular[-1] <= np.sqrt(np.finfo(matrix.dtype).eps) * max(singular[0], 1.0):
        u, s, vt = np.linalg.svd(work, full_matrices=False)
        left, singular, right = u[:, :k], s[:k], vt[:k].T
    else:
        right = (work.T @ left) / singular
    return (singular, right, left) if transpose else (singular, left, right)


def _project(array: np.ndarray, weights: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """(array - mean) @ weights without a centred copy of ``array``.

    Multiplying 1024-row blocks keeps each block in cache and ran 30% faster than one
    tall (n x p) @ (p x k) product for k << p.
    """
    projected = np.empty((array.shape[0], weights.shape[1]), dtype=np.result_type(array, weights))
    for start in range(0, array.shape[0], _PROJECTION_BLOCK_ROWS):
        stop = start + _PROJECTION_BLOCK_ROWS
        np.matmul(array[start:stop], weights, out=projected[start:stop])
    projected -= mean @ weights
    return projected


def _unit_variance(weights: np.ndarray, directions: np.ndarray, covariance: np.ndarray,
                   reg: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale weight columns so that each variate's variance w^T C w is 1.

    ``weights`` (p x k) are L^-T ``directions`` for the factor L L^T = C + reg I, so
    w^T C w = |d|^2 - reg |w|^2 without a product with C. Where the ridge takes more
    than half of a column's |d|^2 that difference would lose digits, and the variance
    is computed from C directly. Returns the scaled weights and the (k,) scales.
    """
    variance = np.einsum("ij,ij->j", directions, directions)
    if reg > 0:
        ridge = reg * np.einsum("ij,ij->j", weights, weights)
        if np.any(2 * ridge > variance):
            variance = np.einsum("ij,ij->j", covariance @ weights, weights)
        else:
            variance = variance - ridge
    scale = np.divide(1.0, np.sqrt(variance), out=np.ones_like(variance), where=variance > 0)
    return weights * scale, scale


def _fix_signs(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Flip each component so the first view's largest-magnitude weight is positive."""
    first = weights[0]
    pivots = first[np.argmax(np.abs(first), axis=0), np.arange(first.shape[1])]
    signs = np.where(pivots < 0, -1.0, 1.0).astype(first.dtype)
    return [w * signs for w in weights]


# ---------------------------------------------------------------------- estimators
class _MultiViewCCABase(BaseEstimator):
    """Shared machinery: validation, covariance accumulation, transform and scoring."""

    def _view_names(self, n_views: int) -> list[str]:
        return [f"view {i}" for i in range(n_views)]

    def _check_input(self, views, reset: bool) -> list[np.ndarray]:
        """Validate a list of views; with ``reset`` also validate the parameters."""
        if reset:
            self._dtype = _resolve_dtype(self.dtype)
            _check_n_components(self.n_components)
            _check_regs(self.reg, len(views))
        names = self._view_names(len(views))
        arrays = [_as_view(view, name, self._dtype) for view, name in zip(views, names)]
        _check_same_rows(arrays, names)
        if not reset and hasattr(self, "_accumulator"):
            for array, name, expected in zip(arrays, names, self._accumulator.dims):
                if array.shape[1] != expected:
                    raise ValueError(
                        f"{name} has {array.shape[1]} features, but this model was fitted "
                        f"on {expected}."
                    )
        return arrays

    def _fit_views(self, views) -> None:
        """One-shot fit. Fast path: products of the raw data, no centred copy."""
        arrays = self._check_input(views, reset=True)
        self._reset_accumulation()
        names = self._view_names(len(arrays))
        sums = _checked_column_sums(arrays, names)
        accumulator = _CovarianceAccumulator([a.shape[1] for a in arrays], self._dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # reported just below, by name
            accumulator.add_unshifted(arrays, sums)
        # |M_ij| <= sqrt(M_ii M_jj): finite diagonals mean finite products.
        if not all(np.isfinite(diagonal).all() for diagonal in accumulator.diagonal_products()):
            for array, name in zip(arrays, names):
                _raise_not_finite(array, name)
        if accumulator.cancellation_error() > _CANCELLATION_TOLERANCE:
            accumulator = _CovarianceAccumulator(accumulator.dims, self._dtype)
            accumulator.add(arrays, sums)
        self._accumulator = accumulator
        self._solve()

    def _partial_fit_views(self, views) -> None:
        first = not hasattr(self, "_accumulator")
        arrays = self._check_input(views, reset=first)
        names = self._view_names(len(arrays))
        sums = _checked_column_sums(arrays, names)
        if first:
            self._accumulator = _CovarianceAccumulator([a.shape[1] for a in arrays], self._dtype)
        self._accumulator.add(arrays, sums)

    def _solve(self) -> None:
        """Compute weights, means and correlations from the accumulated sums."""
        acc = self._accumulator
        names = self._view_names(len(acc.dims))
        k = _check_n_components(self.n_components)
        limit = min([acc.n_samples - 1, *acc.dims])
        if k > limit:
            features = ", ".join(f"{n}: {d}" for n, d in zip(names, acc.dims))
            raise ValueError(
                f"n_components={k} is larger than min(n_samples - 1, features of any view) = "
                f"{limit} (n_samples: {acc.n_samples}; features {features}). "
                f"Use n_components <= {limit}."
            )
        regs = _check_regs(self.reg, len(acc.dims))
        view_covariances = [acc.covariance(i, i) for i in range(len(acc.dims))]
        # factors[i] = L_i where L_i L_i^T = C_ii + r_i I
        factors = [_cholesky(_add_ridge(c, r), name, r, acc.n_samples)
                   for c, r, name in zip(view_covariances, regs, names)]
        directions, strengths = self._whitened_directions(acc, factors, k)
        scaled = [_unit_variance(solve_triangular(factor, d, transpose=True), d, c, r)
                  for factor, d, c, r in zip(factors, directions, view_covariances, regs)]
        weights = _fix_signs([w for w, _ in scaled])
        self.weights_ = weights
        self.means_ = acc.means()
        self.canonical_correlations_ = self._training_correlations(
            acc, weights, [scale for _, scale in scaled], strengths)
        self.n_samples_seen_ = acc.n_samples

    def _training_correlations(self, acc, weights, scales, strengths) -> np.ndarray:
        """(k,) training correlation of each component, averaged over view pairs."""
        pairs = list(itertools.combinations(range(len(weights)), 2))
        total = sum(np.einsum("ij,ij->j", acc.covariance(i, j) @ weights[j], weights[i])
                    for i, j in pairs)
        return total / len(pairs)

    def _whitened_directions(self, acc, factors, k) -> tuple[list[np.ndarray], np.ndarray]:
        """Whitened canonical directions, one (p_i x k) array per view, given each
        view's Cholesky factor L_i, and the (k,) strength of each component (singular
        or eigenvalues of the whitened problem)."""
        raise NotImplementedError

    def _publish(self):
        """Expose view-specific attribute names after a solve (hook for subclasses)."""
        return self

    def _views_of(self, batch, method: str) -> list:
        """Turn one argument (or batch) into a list of views (hook for subclasses)."""
        raise NotImplementedError

    def _forget_solution(self) -> None:
        """Drop every fitted attribute (public names ending in "_") and the unsolved reason."""
        for name in [name for name in vars(self) if name.endswith("_") and name[0] != "_"]:
            delattr(self, name)
        self.__dict__.pop("_unsolved_reason", None)

    def _reset_accumulation(self) -> None:
        self._forget_solution()
        self.__dict__.pop("_accumulator", None)

    def _partial_fit_and_solve(self, views):
        """Accumulate a chunk, then solve if the data seen so far allow it.

        Until enough samples are seen (n_samples > n_components, non-singular
        covariances) the estimator only accumulates and stays unfitted; the reason is
        reported by transform/score.
        """
        self._partial_fit_views(views)
        try:
            self._solve()
        except ValueError as error:
            self._forget_solution()
            self._unsolved_reason = str(error)
            return self
        self.__dict__.pop("_unsolved_reason", None)
        return self._publish()

    def fit_batches(self, batches):
        """Fit on an iterable of chunks (a generator, or a tf.data.Dataset yielding tuples
        of tensors), accumulating covariance sums and solving once at the end; equals
        ``fit`` on all rows stacked."""
        self._reset_accumulation()
        for index, batch in enumerate(batches):
            self._partial_fit_views(self._views_of(batch, f"fit_batches (batch {index})"))
        if not hasattr(self, "_accumulator"):
            raise ValueError("fit_batches got no batches; the iterable was empty.")
        self._solve()
        return self._publish()

    def _check_fitted(self) -> None:
        if hasattr(self, "weights_"):
            return
        if hasattr(self, "_unsolved_reason"):
            raise NotFittedError(
                f"{type(self).__name__} has accumulated {self._accumulator.n_samples} samples "
                f"with partial_fit but cannot be solved yet: {self._unsolved_reason}"
            )
        raise NotFittedError(
            f"This {type(self).__name__} is not fitted yet; call fit (or partial_fit) first."
        )

    def _transform_views(self, views) -> list[np.ndarray]:
        self._check_fitted()
        arrays = self._check_input(views, reset=False)
        names = self._view_names(len(arrays))
        variates = []
        for array, weights, mean, name in zip(arrays, self.weights_, self.means_, names):
            # Non-finite input shows up in the result, and so in its sum, the cheapest check.
            projected = _project(array, weights, mean)
            if not np.isfinite(np.sum(projected)) and not np.isfinite(projected).all():
                _raise_not_finite(array, name)
            variates.append(projected)
        return variates

    def _score_variates(self, variates) -> float:
        pairs = list(itertools.combinations(range(len(variates)), 2))
        correlations = sum(column_correlations(variates[i], variates[j]) for i, j in pairs)
        return float(np.mean(correlations / len(pairs)))


class CCA(_MultiViewCCABase):
    """Linear CCA between two views, a scikit-learn compatible estimator.

    Parameters
    ----------
    n_components : int
        Number of canonical directions k, at most min(n_samples - 1, p, q).
    reg : float or (float, float)
        Ridge added to each view's covariance (C + reg I); 0 is exact CCA and needs
        non-singular covariances. A pair gives one ridge per view.
    dtype : "float64" (default) or "float32"
        Precision of all computations.

    Attributes (after fit)
    ----------------------
    x_weights_ : (p, k) array; y_weights_ : (q, k) array
        Projections; the training variates (X - x_mean_) @ x_weights_ have unit variance.
    x_mean_ : (p,) array; y_mean_ : (q,) array
    canonical_correlations_ : (k,) array
        Correlation of each pair of training variates, largest first (the canonical
        correlations when reg=0).
    n_features_in_ : int (p); n_samples_seen_ : int
    """

    def __init__(self, n_components: int = 2, reg=0.0, dtype="float64"):
        self.n_components = n_components
        self.reg = reg
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _view_names(self, n_views: int) -> list[str]:
        return ["X", "Y"]

    def _views_of(self, batch, method: str) -> list:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(f"CCA.{method} expects an (X, Y) pair; got {type(batch).__name__}.")
        return list(batch)

    def _pair(self, X, Y, method: str) -> list:
        if Y is None:
            raise TypeError(f"CCA.{method} needs both views: {method}(X, Y).")
        return [X, Y]

    def _publish(self) -> "CCA":
        self.x_weights_, self.y_weights_ = self.weights_
        self.x_mean_, self.y_mean_ = self.means_
        self.n_features_in_ = self.x_weights_.shape[0]
        return self

    def _whitened_directions(self, acc, factors, k):
        """Top-k singular triplets of T = Lx^-1 Cxy Ly^-T."""
        whitened = _whiten_cross_covariance(acc, factors, 0, 1)
        singular, left, right = _top_singular_triplets(whitened, k)
        return [left, right], singular

    def _training_correlations(self, acc, weights, scales, strengths):
        """The training variates' correlations, without a pass over Cxy.

        With unit singular vectors u, v of T (T v = s u) the variates X Wx, Y Wy have
        covariance (a u)^T T (b v) = a b s for the unit-variance scales a, b.
        """
        return strengths * scales[0] * scales[1]

    def fit(self, X, Y=None) -> "CCA":
        """Fit on paired views X (n x p) and Y (n x q). Returns self."""
        self._fit_views(self._pair(X, Y, "fit"))
        return self._publish()

    def partial_fit(self, X, Y=None) -> "CCA":
        """Add one chunk of paired rows and refit; equals ``fit`` on all chunks seen.

        The solution is recomputed after each chunk once enough samples have been
        seen; until then the estimator only accumulates (see ``fit_batches`` to
        solve once for a whole stream).
        """
        return self._partial_fit_and_solve(self._pair(X, Y, "partial_fit"))

    def transform(self, X, Y=None):
        """Canonical variates: (n x k) for X alone, or the pair (X_c, Y_c) when Y is given."""
        if Y is None:
            return self._transform_views([X])[0]
        x_variates, y_variates = self._transform_views([X, Y])
        return x_variates, y_variates

    def fit_transform(self, X, Y=None):
        """Fit, then return the training canonical variates (X_c, Y_c)."""
        return self.fit(X, Y).transform(X, Y)

    def correlations(self, X, Y=None) -> np.ndarray:
        """(k,) correlations of the canonical variates of the given data, per component."""
        x_variates, y_variates = self._transform_views(self._pair(X, Y, "correlations"))
        return column_correlations(x_variates, y_variates)

    def score(self, X, Y=None) -> float:
        """Mean canonical correlation of the projected data (higher is better)."""
        return float(np.mean(self.correlations(X, Y)))


class MCCA(_MultiViewCCABase):
    """Multiset CCA for two or more views (used for three or more).

    Maximises the sum of all pairwise covariances of the variates subject to unit
    (regularised) variance within each view, solved as an eigenproblem of the
    whitened block covariance. For two views it gives exactly ``CCA``.

    Parameters: ``n_components``, ``reg`` (a float, or one per view), ``dtype``.
    Attributes: ``weights_`` (list of (p_i, k)), ``means_`` (list of (p_i,)),
    ``canonical_correlations_`` ((k,), the mean pairwise training correlation of each
    component), ``eigenvalues_`` ((k,)), ``n_samples_seen_``.
    """

    def __init__(self, n_components: int = 2, reg=0.0, dtype="float64"):
        self.n_components = n_components
        self.reg = reg
        self.dtype = dtype

    def _views_of(self, views, method: str) -> list:
        if isinstance(views, np.ndarray) or not isinstance(views, (list, tuple)):
            raise TypeError(
                f"MCCA.{method} expects a list of views [X1, X2, ...]; got {type(views).__name__}."
            )
        if len(views) < 2:
            raise ValueError(f"MCCA needs at least two views; got {len(views)}.")
        return list(views)

    def _whitened_directions(self, acc, factors, k):
        """Top-k eigenvectors of the whitened block covariance (identity diagonal blocks)."""
        offsets = np.concatenate([[0], np.cumsum(acc.dims)])
        blocks = [slice(start, stop) for start, stop in zip(offsets[:-1], offsets[1:])]
        whitened = np.eye(offsets[-1], dtype=acc.dtype)
        for i, j in itertools.combinations(range(len(blocks)), 2):
            cross = _whiten_cross_covariance(acc, factors, i, j)
            whitened[blocks[i], blocks[j]] = cross
            whitened[blocks[j], blocks[i]] = cross.T
        self.eigenvalues_, vectors = top_eigh(whitened, k, overwrite=True)
        return [vectors[block] for block in blocks], self.eigenvalues_

    def fit(self, views, y=None) -> "MCCA":
        """Fit on a list of paired views [X1 (n x p1), X2 (n x p2), ...]. Returns self."""
        self._fit_views(self._views_of(views, "fit"))
        return self

    def partial_fit(self, views, y=None) -> "MCCA":
        """Add one chunk of paired rows (a list of views) and refit when possible."""
        return self._partial_fit_and_solve(self._views_of(views, "partial_fit"))

    def _check_input(self, views, reset):
        if not reset and hasattr(self, "weights_") and len(views) != len(self.weights_):
            raise ValueError(f"Expected {len(self.weights_)} views, got {len(views)}.")
        return super()._check_input(views, reset)

    def transform(self, views) -> list[np.ndarray]:
        """List of (n x k) canonical variates, one per view."""
        return self._transform_views(self._views_of(views, "transform"))

    def fit_transform(self, views, y=None) -> list[np.ndarray]:
        return self.fit(views).transform(views)

    def score(self, views, y=None) -> float:
        """Mean over components and view pairs of the variates' correlation."""
        return self._score_variates(self.transform(views))
