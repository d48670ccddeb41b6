"""Linear canonical correlation analysis (CCA) for two or more views, in NumPy/SciPy.

Given centred views X (n x p) and Y (n x q), ``CCA`` finds weights Wx (p x k) and Wy (q x k)
such that the canonical variates X Wx and Y Wy are correlated column by column as strongly as
possible and uncorrelated across columns; ``MCCA`` generalises it to m >= 3 views. Both are
scikit-learn estimators, solved from ridge-regularised covariances by Cholesky whitening.

The covariance sums are accumulated chunk by chunk (``partial_fit`` and ``fit_batches``), so
data that does not fit in memory can be fitted exactly. They are public as
``CovarianceStatistics``: statistics computed apart add exactly (``a + b``), estimators solve
from them (``fit_statistics``) or pool their data (``merge``), and ``fit_batches(..., strategy=)``
all-reduces them across ``tf.distribute`` workers. ``column_correlations`` scores variates.

Design notes (the method): docs/DESIGN.md (section xmodal_tf/cca.py).
"""

from __future__ import annotations

import itertools
import numbers
import warnings

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import NotFittedError

from xmodal_tf._lapack import one_thread, solve_triangular, top_eigh
from xmodal_tf._validation import check_finite_rows, check_positive_int, check_ridges

__all__ = ["CCA", "CovarianceStatistics", "MCCA", "column_correlations"]

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


def _as_view(data, name: str, dtype: np.dtype, *, one_feature_1d: bool = False) -> np.ndarray:
    """Return ``data`` as a 2-D (n_samples, n_features) array of ``dtype``, or raise.

    Finiteness is not checked here (that costs a pass over the data); callers check
    the column sums or products they compute anyway and call ``_raise_not_finite``.

    Args:
        data: an array-like view, (n_samples, n_features).
        name: the view's name in messages ("X", "Y", "view 2").
        dtype: the dtype of the result.
        one_feature_1d: read a 1-D (n_samples,) array as one feature, (n_samples, 1), as
            scikit-learn's estimators read a target ``y``.

    Returns:
        A (n_samples, n_features) array of ``dtype`` (``data`` itself when it is one).

    Raises:
        TypeError: ``data`` is a string, sparse, complex or non-numeric.
        ValueError: ``data`` has the wrong rank, no samples or no features.
    """
    if isinstance(data, (str, bytes)):
        raise TypeError(f"{name} must be a numeric 2-D array; got a {type(data).__name__}.")
    if scipy.sparse.issparse(data):
        raise TypeError(
            f"{name} is a sparse {type(data).__name__}; CCA needs dense arrays (its covariances are "
            f"dense anyway): pass {name}.toarray()."
        )
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} could not be converted to a numeric array: {error}") from error
    if array.dtype.kind == "c":
        raise TypeError(
            f"{name} must hold real numbers; got dtype {array.dtype}. Split complex data into "
            "real and imaginary columns (np.hstack([Z.real, Z.imag]))."
        )
    if array.dtype.kind not in "biuf":
        try:
            array = array.astype(dtype)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must hold numbers; got dtype {array.dtype}. Encode non-numeric "
                "columns first (for example with sklearn.preprocessing.OneHotEncoder)."
            ) from None
    if array.ndim == 1 and one_feature_1d:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        hint = (
            f" Reshape your data: {name}.reshape(-1, 1) for a single feature, {name}.reshape(1, -1) for a "
            "single sample."
            if array.ndim == 1
            else ""
        )
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {array.shape}.{hint}")
    for axis, what in ((0, "sample"), (1, "feature")):
        if array.shape[axis] == 0:
            raise ValueError(
                f"{name} is empty: 0 {what}(s) (shape={array.shape}) while a minimum of 1 is "
                "required; it needs samples and features."
            )
    return np.asarray(array, dtype=dtype)


def _raise_not_finite(
    view: np.ndarray, name: str, where: str | None = None, fix: str = "impute or drop them before fitting"
) -> None:
    """Raise a ValueError naming the rows of ``view`` that hold NaN or inf (the shared
    ``check_finite_rows``), or, if there are none, the overflow of its sums."""
    range_note = (
        " (values beyond float32's range, 3.4e38, become inf in dtype float32)" if view.dtype == np.float32 else ""
    )
    check_finite_rows(view, name, where=where, fix=fix + range_note)
    prefix = f"{where}: " if where else ""
    raise ValueError(
        f"{prefix}{name} has values so large that its sums overflow {view.dtype}; rescale it "
        "(for example with sklearn.preprocessing.StandardScaler)."
    )


def _check_same_rows(views, names) -> int:
    rows = [view.shape[0] for view in views]
    if len(set(rows)) != 1:
        listed = ", ".join(f"{name}: {count}" for name, count in zip(names, rows))
        raise ValueError(f"The views must have the same number of rows (one row per paired sample); got {listed}.")
    return rows[0]


def _check_regs(reg, n_views: int) -> list[float]:
    """Expand ``reg`` (a float, or one float per view) to a list of ``n_views`` floats."""
    values = list(reg) if isinstance(reg, (list, tuple, np.ndarray)) else [reg] * n_views
    if len(values) != n_views:
        raise ValueError(f"reg must be one float or one per view ({n_views}); got {len(values)} values: {reg!r}.")
    return check_ridges(values, reg, "a float >= 0 (or one per view)")


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
    sums = np.ones(groups.shape[0], dtype=array.dtype) @ groups
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
    """Pearson correlation of each column of ``a`` with the same column of ``b``.

    Args:
        a: (n, k) array, e.g. one view's canonical variates.
        b: (n, k) array, e.g. the other view's canonical variates.

    Returns:
        A (k,) array; a constant column has correlation 0.
    """
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    norms = np.sqrt(np.einsum("ij,ij->j", a, a) * np.einsum("ij,ij->j", b, b))
    products = np.einsum("ij,ij->j", a, b)
    return np.divide(products, norms, out=np.zeros_like(products), where=norms > 0)


# ----------------------------------------------------------------------- accumulation
def _check_dims(dims) -> list[int]:
    if isinstance(dims, (str, bytes)) or not isinstance(dims, (list, tuple, np.ndarray)):
        raise TypeError(f"dims must be a list of feature counts, one per view; got {dims!r}.")
    checked = []
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"dims must hold positive ints (features per view); got {list(dims)!r}.")
        checked.append(int(dim))
    if not checked:
        raise ValueError("dims is empty; statistics need at least one view.")
    return checked


def _check_shifts(shifts, dims: list[int], dtype: np.dtype) -> list[np.ndarray] | None:
    """``shifts`` as one (p_i,) array of ``dtype`` per view; None stays None."""
    if shifts is None:
        return None
    if isinstance(shifts, numbers.Real) and not isinstance(shifts, bool):
        shifts = [shifts] * len(dims)
    if isinstance(shifts, np.ndarray) or not isinstance(shifts, (list, tuple)):
        raise TypeError(
            "shift must be None, a number, or a list with one (p_i,) array (or number) per "
            f"view; got {type(shifts).__name__}."
        )
    if len(shifts) != len(dims):
        raise ValueError(
            f"shift has {len(shifts)} entries, but there are {len(dims)} views; "
            "give one (p_i,) array (or number) per view."
        )
    checked = []
    for index, (shift, dim) in enumerate(zip(shifts, dims)):
        array = np.asarray(shift, dtype=dtype)
        if array.ndim == 0:
            array = np.full(dim, array, dtype=dtype)
        if array.shape != (dim,):
            raise ValueError(
                f"The shift of view {index} has shape {array.shape}; it must be a "
                f"number or have shape ({dim},), one value per feature."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(
                f"The shift of view {index} is not finite; use finite values "
                "(for example the column means of a first batch)."
            )
        checked.append(array)
    return checked


def _pairs_with_self(n_views: int) -> list[tuple[int, int]]:
    """(i, j) for i <= j in row order: the keys of ``CovarianceStatistics.products``."""
    return [(i, j) for i in range(n_views) for j in range(i, n_views)]


class CovarianceStatistics:
    """Sufficient statistics of the covariance blocks of m paired views, around a shift.

    For views V_i (n x p_i) and shifts c_i (p_i,) it holds

    ``n_samples``  n, the number of paired rows;
    ``shifts``     [c_i], one (p_i,) array per view;
    ``sums``       [S_i = sum over rows of (V_i - c_i)], (p_i,) each;
    ``products``   {(i, j): M_ij = (V_i - c_i)^T (V_j - c_j)} for i <= j, (p_i, p_j) each
                   (empty while n is 0);

    from which mean_i = c_i + S_i / n and the covariance C_ij = (M_ij - S_i S_j^T / n) / (n - 1)
    (``means``, ``covariance``). All arrays are in the data's units (products and
    covariances in squared units) and of one ``dtype``, float64 or float32. The subtraction
    loses about eps * (1 + (mean - c)^2 / variance) in relative terms, so a shift near the
    mean (a first batch's mean is plenty) keeps the covariances accurate.

    Combining. ``a + b`` (and ``sum([a, b, ...])``) are the statistics of the rows of both,
    exact up to rounding. With equal shifts the counts, sums and products add. Otherwise
    both are re-centred on the pooled mean m = m_a + (m_b - m_a) n_b / n (Chan, Golub and
    LeVeque's pairwise update): the result has shift m, zero sums and products
    (M_a - S_a S_a^T / n_a) + (M_b - S_b S_b^T / n_b) + (n_a n_b / n) d d^T with d = m_b - m_a,
    which stays accurate however far apart the two shifts or means are.

    All-reduce. ``to_array`` flattens the count, sums and products (not the shifts) into one
    vector and ``from_array`` rebuilds the statistics from it. Statistics that share one
    shift, agreed on by all workers beforehand, combine by plain summation of these vectors,
    which is what a collective all-reduce computes; statistics around different shifts must
    be combined with ``+`` instead. ``CCA.fit_batches(..., strategy=...)`` does this for you.

    Construct from data with ``from_views``; ``CovarianceStatistics(dims, dtype)`` makes empty
    statistics (n = 0), the neutral element of ``+``. Estimators accept them through
    ``CCA.fit_statistics`` / ``MCCA.fit_statistics`` and expose theirs as
    ``covariance_statistics_``. No public method modifies statistics in place (``add`` and
    ``add_unshifted`` are the estimators' internal accumulation).

    Args:
        dims: features per view, [p_1, ..., p_m] (list of int).
        dtype: "float64" (default) or "float32".
        shifts: None, or a list of (p_i,) arrays; None lets the first chunk added set
            them (to its column means).
    """

    def __init__(self, dims, dtype="float64", shifts=None):
        self.dims = _check_dims(dims)
        self.dtype = _resolve_dtype(dtype)
        self.n_samples = 0
        self.shifts = _check_shifts(shifts, self.dims, self.dtype)
        self.sums = [np.zeros(dim, dtype=self.dtype) for dim in self.dims]
        self.products: dict[tuple[int, int], np.ndarray] = {}
        self._covariances: dict[tuple[int, int], np.ndarray] = {}  # cleared by every add

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_views(cls, views, shift=None, dtype="float64") -> CovarianceStatistics:
        """Statistics of paired views.

        Args:
            views: a list of (n, p_i) arrays of paired rows: row r of every view belongs
                to the same sample.
            shift: None (default) shifts by the views' own column means; or a number, or
                a list with one number or (p_i,) array per view. Workers whose statistics
                are to be summed as arrays (``to_array``) must all use one and the same shift.
            dtype: "float64" (default) or "float32".

        Returns:
            The statistics of the views' rows.

        Raises:
            TypeError: ``views`` is not a list of arrays, a view is not numeric (or is
                sparse), or the dtype is unsupported.
            ValueError: a view is not 2-D, empty or not finite, the views have different
                numbers of rows, or the shift does not match the views' feature counts.
        """
        if isinstance(views, np.ndarray) or not isinstance(views, (list, tuple)):
            raise TypeError(f"views must be a list of (n, p_i) arrays, one per view; got {type(views).__name__}.")
        if not views:
            raise ValueError("views is empty; give at least one (n, p) array.")
        dtype = _resolve_dtype(dtype)
        names = [f"view {index}" for index in range(len(views))]
        arrays = [_as_view(view, name, dtype) for view, name in zip(views, names)]
        _check_same_rows(arrays, names)
        sums = _checked_column_sums(arrays, names)
        dims = [array.shape[1] for array in arrays]
        statistics = cls(dims, dtype, shifts=_check_shifts(shift, dims, dtype))
        statistics.add(arrays, sums)
        return statistics

    @staticmethod
    def array_size(dims) -> int:
        """Length of ``to_array``'s vector for views of ``dims`` features.

        Args:
            dims: features per view, [p_1, ..., p_m].

        Returns:
            1 + sum(p_i) + sum over i <= j of p_i p_j.

        Raises:
            TypeError: ``dims`` is not a list of ints.
            ValueError: ``dims`` is empty or holds a count < 1.
        """
        dims = _check_dims(dims)
        return 1 + sum(dims) + sum(dims[i] * dims[j] for i, j in _pairs_with_self(len(dims)))

    def to_array(self, dtype=None) -> np.ndarray:
        """The count, sums and products as one 1-D array (the shifts are not included).

        Args:
            dtype: None (the statistics' own), "float64" or "float32". All-reduce in
                float64: it keeps counts exact up to 2^53, and the products' digits.

        Returns:
            [n_samples, S_1, ..., S_m, M_11, M_12, ..., M_1m, M_22, ..., M_mm], each block
            M_ij (i <= j) flattened row by row; length ``array_size(dims)``.
        """
        dtype = self.dtype if dtype is None else _resolve_dtype(dtype)
        parts = [np.array([self.n_samples], dtype=dtype)]
        parts += [np.asarray(total, dtype=dtype) for total in self.sums]
        for i, j in _pairs_with_self(len(self.dims)):
            block = self.products.get((i, j))
            parts.append(
                np.zeros(self.dims[i] * self.dims[j], dtype=dtype)
                if block is None
                else np.asarray(block, dtype=dtype).ravel()
            )
        return np.concatenate(parts)

    @classmethod
    def from_array(cls, array, shifts, dtype=None) -> CovarianceStatistics:
        """Rebuild statistics from ``to_array``'s vector (or a sum of such vectors).

        Args:
            array: a float array of shape (array_size(dims),).
            shifts: a list of (p_i,) arrays, the shift every summed vector was computed
                around; it also gives the dims.
            dtype: None (the array's dtype), "float64" or "float32".

        Returns:
            The statistics.

        Raises:
            TypeError: a non-float ``array`` without ``dtype``, or ``shifts`` not a list.
            ValueError: ``array`` is not 1-D, has the wrong length for the shifts, or its
                first entry is not a sample count.
        """
        array = np.asarray(array)
        if array.ndim != 1:
            raise ValueError(f"array must be 1-D (to_array's layout); got shape {array.shape}.")
        if array.dtype.kind != "f" and dtype is None:
            raise TypeError(f"array must be float64 or float32; got {array.dtype}.")
        dtype = _resolve_dtype(array.dtype if dtype is None else dtype)
        if isinstance(shifts, np.ndarray) or not isinstance(shifts, (list, tuple)):
            raise TypeError(f"shifts must be a list with one (p_i,) array per view; got {type(shifts).__name__}.")
        dims = [int(np.size(shift)) for shift in shifts]
        statistics = cls(dims, dtype, shifts=[np.ravel(shift) for shift in shifts])
        expected = cls.array_size(dims)
        if array.size != expected:
            raise ValueError(
                f"array has {array.size} values, but statistics of views with {dims} features "
                f"take {expected}; the shifts must be those the array was computed around."
            )
        count = float(array[0])
        if not (count >= 0 and count.is_integer()):
            raise ValueError(f"array[0] must be the sample count, an integer >= 0; got {count}.")
        statistics.n_samples = int(count)
        offset = 1
        for index, dim in enumerate(dims):
            statistics.sums[index] = array[offset : offset + dim].astype(dtype)
            offset += dim
        if statistics.n_samples:
            for i, j in _pairs_with_self(len(dims)):
                size = dims[i] * dims[j]
                block = array[offset : offset + size].reshape(dims[i], dims[j])
                statistics.products[i, j] = block.astype(dtype)
                offset += size
        return statistics

    def copy(self) -> CovarianceStatistics:
        """An independent copy."""
        return self.astype(self.dtype)

    def astype(self, dtype) -> CovarianceStatistics:
        """A copy with every array converted to ``dtype`` ("float64" or "float32")."""
        dtype = _resolve_dtype(dtype)
        result = CovarianceStatistics(self.dims, dtype)
        result.n_samples = self.n_samples
        result.shifts = None if self.shifts is None else [s.astype(dtype) for s in self.shifts]
        result.sums = [total.astype(dtype) for total in self.sums]
        result.products = {key: block.astype(dtype) for key, block in self.products.items()}
        return result

    @property
    def n_views(self) -> int:
        """The number of views, m."""
        return len(self.dims)

    def __repr__(self) -> str:
        return f"CovarianceStatistics(n_samples={self.n_samples}, dims={self.dims}, dtype={self.dtype.name})"

    # ------------------------------------------------------------------- combination
    def __add__(self, other) -> CovarianceStatistics:
        if isinstance(other, numbers.Number) and not isinstance(other, bool) and other == 0:
            return self  # sum() starts from 0
        if not isinstance(other, CovarianceStatistics):
            raise TypeError(
                "CovarianceStatistics can only be added to CovarianceStatistics "
                f"(or to 0, as sum() does); got {type(other).__name__}."
            )
        self._check_compatible(other)
        if other.n_samples == 0:
            return self.copy()
        if self.n_samples == 0:
            return other.copy()
        if all(np.array_equal(a, b) for a, b in zip(self.shifts, other.shifts)):
            result = self.copy()
            result.n_samples += other.n_samples
            result.sums = [a + b for a, b in zip(result.sums, other.sums)]
            for key, block in other.products.items():
                result.products[key] += block
            return result
        return self._pooled(other)

    def __radd__(self, other) -> CovarianceStatistics:
        return self.__add__(other)

    def _check_compatible(self, other: CovarianceStatistics) -> None:
        if other.n_views != self.n_views:
            raise ValueError(
                f"Cannot add statistics of {self.n_views} views and of "
                f"{other.n_views} views; both must describe the same views."
            )
        if other.dims != self.dims:
            raise ValueError(
                f"Cannot add statistics of views with {self.dims} and {other.dims} "
                "features; both must describe the same views."
            )
        if other.dtype != self.dtype:
            raise TypeError(
                f"Cannot add {self.dtype.name} and {other.dtype.name} statistics; "
                f"convert one first, e.g. b.astype('{self.dtype.name}')."
            )

    def _pooled(self, other: CovarianceStatistics) -> CovarianceStatistics:
        """Both re-centred on the pooled mean (Chan et al.'s pairwise update)."""
        n_a, n_b = self.n_samples, other.n_samples
        total = n_a + n_b
        means_a, means_b = self.means(), other.means()
        deltas = [b - a for a, b in zip(means_a, means_b)]
        result = CovarianceStatistics(
            self.dims, self.dtype, shifts=[a + d * (n_b / total) for a, d in zip(means_a, deltas)]
        )
        result.n_samples = total
        weight = n_a * n_b / total
        for i, j in _pairs_with_self(len(self.dims)):
            block = self._scatter(i, j) + other._scatter(i, j)
            block += np.outer(deltas[i] * weight, deltas[j])
            result.products[i, j] = block
        return result

    # -------------------------------------------------------------------- read-out
    def _scatter(self, i: int, j: int) -> np.ndarray:
        """M_ij - S_i S_j^T / n: the products of the rows centred on their mean."""
        return self.products[i, j] - np.outer(self.sums[i], self.sums[j] / self.n_samples)

    def means(self) -> list[np.ndarray]:
        """Column means, one (p_i,) array per view."""
        if self.n_samples == 0:
            raise ValueError("These statistics hold no samples, so they have no mean.")
        return [shift + total / self.n_samples for shift, total in zip(self.shifts, self.sums)]

    def covariance(self, i: int, j: int) -> np.ndarray:
        """The (p_i x p_j) sample covariance block (divisor n - 1) between views i and j."""
        if i > j:
            return self.covariance(j, i).T
        if (i, j) not in self._covariances:
            if self.n_samples < 2:
                raise ValueError(f"A covariance needs at least 2 samples; these statistics hold {self.n_samples}.")
            centred = self._scatter(i, j)
            centred /= self.n_samples - 1
            self._covariances[i, j] = centred
        return self._covariances[i, j]

    # ---------------------------------------------------------- in-place (internal)
    def add(self, views: list[np.ndarray], sums: list[np.ndarray]) -> None:
        """Add one chunk of paired rows, shifted by ``shifts``. Internal: it modifies in place.

        The first chunk's column means become the shifts when they are unset.

        Args:
            views: the chunk's checked (b, p_i) arrays, one per view.
            sums: their (p_i,) column sums.
        """
        if self.shifts is None:
            self.shifts = [total / view.shape[0] for total, view in zip(sums, views)]
        shifted = [view - shift for view, shift in zip(views, self.shifts)]
        self._add_products(
            shifted, [total - view.shape[0] * shift for total, view, shift in zip(sums, views, self.shifts)]
        )

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

    def diagonal_products(self) -> list[np.ndarray]:
        """The diagonals of the products M_ii, one (p_i,) array per view."""
        return [np.diag(self.products[i, i]) for i in range(len(self.dims))]

    def cancellation_error(self) -> float:
        """Relative rounding error of the variances caused by the shift (largest over features)."""
        second_moment = np.concatenate(self.diagonal_products()) / self.n_samples
        variance = second_moment - (np.concatenate(self.sums) / self.n_samples) ** 2
        lost = np.where(variance > 0, second_moment / np.where(variance > 0, variance, 1), np.inf)
        lost = np.where(second_moment > 0, lost, 1.0)
        return float(np.finfo(self.dtype).eps * lost.max())


# The estimators' running sums are CovarianceStatistics; benchmarks/bench_cca.py times them
# by this name.
_CovarianceAccumulator = CovarianceStatistics


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
            if reg == 0
            else f"increase reg (now {reg}) or remove those features"
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
    ridged.flat[:: ridged.shape[0] + 1] += reg
    return ridged


def _whiten_cross_covariance(acc, factors, i: int, j: int) -> np.ndarray:
    """L_i^-1 C_ij L_j^-T by two triangular solves (cheaper and more accurate than
    forming the inverses)."""
    left_solved = solve_triangular(factors[i], acc.covariance(i, j))
    return solve_triangular(factors[j], left_solved, side="right", transpose=True, overwrite_rhs=True)


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


def _unit_variance(
    weights: np.ndarray, directions: np.ndarray, covariance: np.ndarray, reg: float
) -> tuple[np.ndarray, np.ndarray]:
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


# -------------------------------------------------------------------- distribution
class _StrategySum:
    """Sums float64 vectors over the workers of a ``tf.distribute.Strategy``.

    ``all_reduce(values)`` returns, on every worker, the sum of the vectors all workers
    passed (each worker must call it, in the same order, with vectors of one length).
    Only the first local replica of each worker contributes its vector, the others
    zeros, so a worker with several devices is not counted twice. TensorFlow is
    imported here, not with the module: the estimators themselves need only NumPy.
    """

    def __init__(self, strategy):
        import tensorflow as tf  # only when a strategy is used

        if not isinstance(strategy, (tf.distribute.Strategy, tf.compat.v1.distribute.Strategy)):
            raise TypeError(
                "strategy must be a tf.distribute.Strategy (for example "
                "tf.distribute.MultiWorkerMirroredStrategy()) or None; got "
                f"{type(strategy).__name__}."
            )
        if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
            raise ValueError(
                "ParameterServerStrategy has no all-reduce between workers; use "
                "tf.distribute.MultiWorkerMirroredStrategy for fit_batches."
            )
        self._tf = tf
        self._strategy = strategy
        try:
            self._local_replicas = len(strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy lists no devices; it has one replica
            self._local_replicas = 1

    def __call__(self, values) -> np.ndarray:
        tf = self._tf
        contribution = np.asarray(values, dtype=np.float64)
        nothing = np.zeros_like(contribution)

        def replica_value(context):
            first = context.replica_id_in_sync_group % self._local_replicas == 0
            return tf.constant(contribution if first else nothing, dtype=tf.float64)

        per_replica = self._strategy.experimental_distribute_values_from_function(replica_value)
        total = self._strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        total = np.asarray(total.numpy())
        if total.dtype != np.float64 or total.shape != contribution.shape:
            raise RuntimeError(
                f"The all-reduce returned {total.dtype} {total.shape} for float64 "
                f"{contribution.shape}; the statistics would lose digits."
            )
        return total


def _local_batch(batch):
    """``batch`` itself, or a TypeError if it came from a distributed dataset."""
    import tensorflow as tf

    parts = batch if isinstance(batch, (tuple, list)) else [batch]
    if any(isinstance(part, tf.distribute.DistributedValues) for part in parts):
        raise TypeError(
            "fit_batches(..., strategy=) needs this worker's own batches (arrays, or a plain "
            "tf.data.Dataset such as dataset.shard(num_workers, worker_index)), not "
            "per-replica values from strategy.experimental_distribute_dataset."
        )
    return batch


def _raise_if_any_failed(failures: float, error: Exception | None) -> None:
    """Raise this worker's own error, or report that another worker failed."""
    if error is not None:
        raise error
    if failures > 0:
        raise RuntimeError(
            f"fit_batches failed on {int(failures)} other worker(s); their own error messages name the problem."
        )


def _agreed(sums: np.ndarray, squares: np.ndarray, workers: int, what: str) -> np.ndarray:
    """The value every worker with data contributed, given the sums over those workers of
    the values and of their squares (equal values iff workers * sum(v^2) == sum(v)^2)."""
    if np.any(workers * squares != np.square(sums)):
        raise ValueError(
            f"The workers' batches disagree on {what} (mean {(sums / workers).tolist()} over "
            f"{workers} workers); every worker must pass batches of the same views."
        )
    return sums / workers


# ---------------------------------------------------------------------- estimators
class _MultiViewCCABase(TransformerMixin, BaseEstimator):
    """Shared machinery: validation, covariance accumulation, transform and scoring."""

    # Views whose 1-D arrays count as one feature (CCA's Y, as scikit-learn's y).
    _one_feature_1d_views: tuple[str, ...] = ()

    def _view_names(self, n_views: int) -> list[str]:
        return [f"view {i}" for i in range(n_views)]

    def _check_parameters(self, n_views: int) -> None:
        self._dtype = _resolve_dtype(self.dtype)
        check_positive_int(self.n_components, "n_components", expected="a positive int")
        _check_regs(self.reg, n_views)

    def _check_input(self, views, reset: bool) -> list[np.ndarray]:
        """Validate a list of views; with ``reset`` also validate the parameters."""
        if reset:
            self._check_parameters(len(views))
        names = self._view_names(len(views))
        arrays = [
            _as_view(view, name, self._dtype, one_feature_1d=name in self._one_feature_1d_views)
            for view, name in zip(views, names)
        ]
        _check_same_rows(arrays, names)
        if not reset and hasattr(self, "_accumulator"):
            for array, name, expected in zip(arrays, names, self._accumulator.dims):
                if array.shape[1] != expected:
                    raise ValueError(f"{name} has {array.shape[1]} features, but this model was fitted on {expected}.")
        return arrays

    def _fit_views(self, views) -> None:
        """One-shot fit. Fast path: products of the raw data, no centred copy."""
        arrays = self._check_input(views, reset=True)
        self._reset_accumulation()
        names = self._view_names(len(arrays))
        sums = _checked_column_sums(arrays, names)
        accumulator = CovarianceStatistics([a.shape[1] for a in arrays], self._dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # reported just below, by name
            accumulator.add_unshifted(arrays, sums)
        # |M_ij| <= sqrt(M_ii M_jj): finite diagonals mean finite products.
        if not all(np.isfinite(diagonal).all() for diagonal in accumulator.diagonal_products()):
            for array, name in zip(arrays, names):
                _raise_not_finite(array, name)
        if accumulator.cancellation_error() > _CANCELLATION_TOLERANCE:
            accumulator = CovarianceStatistics(accumulator.dims, self._dtype)
            accumulator.add(arrays, sums)
        self._accumulator = accumulator
        self._solve()

    def _partial_fit_views(self, views) -> None:
        first = not hasattr(self, "_accumulator")
        arrays = self._check_input(views, reset=first)
        names = self._view_names(len(arrays))
        sums = _checked_column_sums(arrays, names)
        if first:
            self._accumulator = CovarianceStatistics([a.shape[1] for a in arrays], self._dtype)
        self._accumulator.add(arrays, sums)

    def _solve(self) -> None:
        """Compute weights, means and correlations from the accumulated sums."""
        acc = self._accumulator
        names = self._view_names(len(acc.dims))
        k = check_positive_int(self.n_components, "n_components", expected="a positive int")
        limit = min([acc.n_samples - 1, *acc.dims])
        if k > limit:
            features = ", ".join(f"{n}: {d}" for n, d in zip(names, acc.dims))
            raise ValueError(
                f"n_components={k} is larger than min(n_samples - 1, features of any view) = "
                f"{limit} (n_samples={acc.n_samples}; features {features}). "
                f"Use n_components <= {limit}."
            )
        regs = _check_regs(self.reg, len(acc.dims))
        view_covariances = [acc.covariance(i, i) for i in range(len(acc.dims))]
        # factors[i] = L_i where L_i L_i^T = C_ii + r_i I
        factors = [
            _cholesky(_add_ridge(c, r), name, r, acc.n_samples) for c, r, name in zip(view_covariances, regs, names)
        ]
        directions, strengths = self._whitened_directions(acc, factors, k)
        scaled = [
            _unit_variance(solve_triangular(factor, d, transpose=True), d, c, r)
            for factor, d, c, r in zip(factors, directions, view_covariances, regs)
        ]
        weights = _fix_signs([w for w, _ in scaled])
        self.weights_ = weights
        self.means_ = acc.means()
        self.canonical_correlations_ = self._training_correlations(
            acc, weights, [scale for _, scale in scaled], strengths
        )
        self.n_samples_seen_ = acc.n_samples

    def _training_correlations(self, acc, weights, scales, strengths) -> np.ndarray:
        """(k,) training correlation of each component, averaged over view pairs."""
        pairs = list(itertools.combinations(range(len(weights)), 2))
        total = sum(np.einsum("ij,ij->j", acc.covariance(i, j) @ weights[j], weights[i]) for i, j in pairs)
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
        """Accumulate a chunk, then solve if the data seen so far allow it."""
        self._partial_fit_views(views)
        return self._solve_when_possible()

    def _solve_when_possible(self):
        """Solve if the statistics allow it.

        Until enough samples are seen (n_samples > n_components, non-singular
        covariances) the estimator only accumulates and stays unfitted; the reason is
        reported by transform/score.
        """
        try:
            self._solve()
        except ValueError as error:
            self._forget_solution()
            self._unsolved_reason = str(error)
            return self
        self.__dict__.pop("_unsolved_reason", None)
        return self._publish()

    def fit_batches(self, batches, strategy=None):
        """Fit on an iterable of chunks, accumulating covariance sums and solving once at the end.

        Equals ``fit`` on all rows stacked.

        Args:
            batches: chunks of paired rows: (X (b, p), Y (b, q)) pairs for ``CCA``, lists
                of views for ``MCCA``; a generator, a list, or a ``tf.data.Dataset``
                yielding tuples of tensors. The chunks may differ in their number of rows.
            strategy: None fits on ``batches`` alone. With a ``tf.distribute.Strategy``
                (``MultiWorkerMirroredStrategy`` in practice) every worker calls
                ``fit_batches`` at the same point of its program with its OWN shard of the
                data (for example ``dataset.shard(num_workers, worker_index)``, not
                ``strategy.experimental_distribute_dataset``). The workers first agree on a
                common shift, the pooled column means of their first chunks (one
                all-reduce of counts and sums), accumulate their shards around it, then
                all-reduce their ``CovarianceStatistics.to_array`` vectors in float64.
                Every worker ends with the same estimator, equal to ``fit`` on all workers'
                rows stacked. A worker may have no rows; an error on one worker (a bad
                chunk) is raised on every worker instead of leaving the others waiting. A
                single-worker strategy gives the same result as ``strategy=None``, bit for bit.

        Returns:
            self, fitted.

        Raises:
            TypeError: ``strategy`` is not a ``tf.distribute.Strategy``, or a chunk has the
                wrong form.
            ValueError: no chunk at all (on any worker), bad data, or a problem that
                cannot be solved.
        """
        if strategy is not None:
            return self._fit_batches_across_workers(batches, _StrategySum(strategy))
        self._reset_accumulation()
        for index, batch in enumerate(batches):
            self._partial_fit_views(self._views_of(batch, f"fit_batches (batch {index})"))
        if not hasattr(self, "_accumulator"):
            raise ValueError("fit_batches got no batches; the iterable was empty.")
        self._solve()
        return self._publish()

    def _fit_batches_across_workers(self, batches, all_reduce: _StrategySum):
        """``fit_batches`` with statistics summed over workers by ``all_reduce``.

        Every worker makes the same all-reduce calls in the same order, whatever happens
        locally: (1) failure flag, workers with data, view count; (2) feature counts;
        (3) the first chunks' counts and sums, which give the shift; (4) failure flag and
        the statistics. A local error is held until the next call and then raised on
        every worker (a ValueError or TypeError where it happened, a RuntimeError on the
        others), so all workers stop at the same call and none waits for the rest.
        """
        self._reset_accumulation()
        error, arrays, sums = None, None, None
        try:
            iterator = iter(batches)
            batch = next(iterator, None)
            if batch is not None:
                views = self._views_of(_local_batch(batch), "fit_batches (batch 0)")
                arrays = self._check_input(views, reset=True)
                sums = _checked_column_sums(arrays, self._view_names(len(arrays)))
        except Exception as caught:  # noqa: BLE001 - raised below, on every worker
            error = caught
        n_views = 0 if arrays is None else len(arrays)
        header = all_reduce([error is not None, arrays is not None, n_views, n_views**2])
        _raise_if_any_failed(header[0], error)
        workers_with_data = int(header[1])
        if workers_with_data == 0:
            raise ValueError(
                "fit_batches got no batches on any worker; every worker's iterable "
                "was empty. Give at least one worker its shard of the data."
            )
        n_views = int(_agreed(header[2:3], header[3:4], workers_with_data, "the number of views per batch")[0])
        dims = [0] * n_views if arrays is None else [array.shape[1] for array in arrays]
        totals = all_reduce(np.concatenate([dims, np.square(dims)]))
        dims = [
            int(dim)
            for dim in _agreed(
                totals[:n_views], totals[n_views:], workers_with_data, "the number of features of each view"
            )
        ]
        self._check_parameters(n_views)
        # The shift: the pooled column means of the workers' first chunks.
        if arrays is None:
            firsts = all_reduce(np.zeros(1 + sum(dims)))
        else:
            firsts = all_reduce(np.concatenate([[arrays[0].shape[0]], *sums]))
        shifts = [
            np.asarray(mean, dtype=self._dtype) for mean in np.split(firsts[1:] / firsts[0], np.cumsum(dims)[:-1])
        ]
        self._accumulator = CovarianceStatistics(dims, self._dtype, shifts=shifts)
        if arrays is not None:
            try:
                self._accumulator.add(arrays, sums)
                for index, batch in enumerate(iterator, start=1):
                    self._partial_fit_views(self._views_of(_local_batch(batch), f"fit_batches (batch {index})"))
            except Exception as caught:  # noqa: BLE001 - raised below, on every worker
                error = caught
        if error is None:
            local = np.concatenate([[0.0], self._accumulator.to_array(np.float64)])
        else:
            local = np.zeros(1 + CovarianceStatistics.array_size(dims))
            local[0] = 1.0
        total = all_reduce(local)
        _raise_if_any_failed(total[0], error)
        self._accumulator = CovarianceStatistics.from_array(total[1:], shifts, dtype=self._dtype)
        self._solve()
        return self._publish()

    def fit_statistics(self, statistics: CovarianceStatistics):
        """Fit from covariance statistics (``CovarianceStatistics``) instead of data.

        Equals ``fit`` on the rows the statistics describe (up to rounding). The
        statistics are copied; ``partial_fit`` may continue from them.

        Args:
            statistics: the ``CovarianceStatistics`` of the views.

        Returns:
            self, fitted.

        Raises:
            TypeError: ``statistics`` is not a ``CovarianceStatistics``, or its dtype
                differs from the estimator's ``dtype``.
            ValueError: wrong number of views, no samples, or a problem that cannot be solved.
        """
        if not isinstance(statistics, CovarianceStatistics):
            raise TypeError(
                "fit_statistics expects CovarianceStatistics (for example "
                "CovarianceStatistics.from_views([X, Y])); got "
                f"{type(statistics).__name__}."
            )
        self._check_view_count(statistics.n_views, "fit_statistics")
        self._check_parameters(statistics.n_views)
        if statistics.dtype != self._dtype:
            raise TypeError(
                f"The statistics are {statistics.dtype.name} but this estimator computes in "
                f"{self._dtype.name}; pass statistics.astype('{self._dtype.name}') or set "
                f"dtype='{statistics.dtype.name}'."
            )
        if statistics.n_samples == 0:
            raise ValueError("The statistics hold no samples; there is nothing to fit.")
        self._reset_accumulation()
        self._accumulator = statistics.copy()
        self._solve()
        return self._publish()

    def merge(self, other):
        """A new estimator fitted on the data of both ``self`` and ``other``.

        The statistics are combined with ``CovarianceStatistics.__add__`` (exact:
        re-centred on the pooled mean when their shifts differ). Neither ``self`` nor
        ``other`` is changed.

        Args:
            other: an estimator of the same class that has accumulated statistics of the
                same views (with ``fit``, ``partial_fit``, ``fit_batches``,
                ``fit_statistics`` or ``merge``), as ``self`` must have.

        Returns:
            A new estimator with ``self``'s parameters, which can go on with
            ``partial_fit``; like ``partial_fit`` it stays unfitted, with the reason,
            while the pooled data cannot be solved yet.

        Raises:
            TypeError: ``other`` is not of ``self``'s class, or its statistics have
                another dtype.
            NotFittedError: ``self`` or ``other`` has seen no data.
            ValueError: the statistics describe different views.
        """
        if not isinstance(other, type(self)):
            raise TypeError(
                f"{type(self).__name__}.merge expects another {type(self).__name__}; got {type(other).__name__}."
            )
        for role, estimator in (("self", self), ("other", other)):
            if not hasattr(estimator, "_accumulator"):
                raise NotFittedError(
                    f"merge needs two estimators that have seen data, but {role} has none; call "
                    "fit, partial_fit or fit_batches on it first."
                )
        merged = clone(self)
        merged._check_parameters(self._accumulator.n_views)
        merged._accumulator = self._accumulator + other._accumulator
        return merged._solve_when_possible()

    @property
    def covariance_statistics_(self) -> CovarianceStatistics:
        """A copy of the accumulated ``CovarianceStatistics`` (after any fit)."""
        if not hasattr(self, "_accumulator"):
            raise AttributeError(
                f"This {type(self).__name__} has no covariance statistics yet; call fit (or partial_fit) first."
            )
        return self._accumulator.copy()

    def _check_view_count(self, n_views: int, method: str) -> None:
        if n_views < 2:
            raise ValueError(f"{type(self).__name__}.{method} needs at least two views; got {n_views}.")

    def _check_fitted(self) -> None:
        if hasattr(self, "weights_"):
            return
        if hasattr(self, "_unsolved_reason"):
            raise NotFittedError(
                f"{type(self).__name__} has accumulated {self._accumulator.n_samples} samples "
                f"with partial_fit but cannot be solved yet: {self._unsolved_reason}"
            )
        raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit (or partial_fit) first.")

    def _transform_views(self, views, method: str = "transform") -> list[np.ndarray]:
        self._check_fitted()
        arrays = self._check_input(views, reset=False)
        names = self._view_names(len(arrays))
        variates = []
        for array, weights, mean, name in zip(arrays, self.weights_, self.means_, names):
            # Non-finite input shows up in the result, and so in its sum, the cheapest check.
            with np.errstate(over="ignore", invalid="ignore"):  # reported just below, by row
                projected = _project(array, weights, mean)
            if not np.isfinite(np.sum(projected)) and not np.isfinite(projected).all():
                _raise_not_finite(
                    array, name, where=f"{type(self).__name__}.{method}", fix="remove or impute those rows first"
                )
            variates.append(projected)
        return variates

    def _score_variates(self, variates) -> float:
        pairs = list(itertools.combinations(range(len(variates)), 2))
        correlations = sum(column_correlations(variates[i], variates[j]) for i, j in pairs)
        return float(np.mean(correlations / len(pairs)))


class CCA(_MultiViewCCABase):
    """Linear CCA between two views, a scikit-learn compatible estimator.

    Fitting: ``fit(X, Y)``; ``partial_fit`` chunk by chunk; ``fit_batches(batches,
    strategy=None)`` for a stream, on one machine or across the workers of a
    ``tf.distribute`` strategy; ``fit_statistics(CovarianceStatistics)``; and
    ``a.merge(b)``, a new estimator fitted on the data of both. Y may be 1-D, one
    feature (as scikit-learn's ``y``); X must be 2-D.

    Args:
        n_components: number of canonical directions k, at most min(n_samples - 1, p, q).
        reg: ridge added to each view's covariance (C + reg I); 0 is exact CCA and needs
            non-singular covariances. A pair (float, float) gives one ridge per view.
        dtype: "float64" (default) or "float32", the precision of all computations.

    Attributes:
        x_weights_: (p, k) projection of X; the training variates
            (X - x_mean_) @ x_weights_ have unit variance.
        y_weights_: (q, k) projection of Y, likewise.
        x_mean_: (p,) column means of the training X.
        y_mean_: (q,) column means of the training Y.
        canonical_correlations_: (k,) correlation of each pair of training variates,
            largest first (the canonical correlations when reg=0).
        n_features_in_: p, the features of X.
        n_samples_seen_: the number of training rows.
        covariance_statistics_: a copy of the accumulated count, sums and products of
            (X, Y), a ``CovarianceStatistics``.
    """

    def __init__(self, n_components: int = 2, reg=0.0, dtype="float64"):
        self.n_components = n_components
        self.reg = reg
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    _one_feature_1d_views = ("Y",)

    def _view_names(self, n_views: int) -> list[str]:
        return ["X", "Y"]

    def _views_of(self, batch, method: str) -> list:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(f"CCA.{method} expects an (X, Y) pair; got {type(batch).__name__}.")
        return list(batch)

    def _check_view_count(self, n_views: int, method: str) -> None:
        if n_views != 2:
            raise ValueError(
                f"CCA.{method} needs statistics of exactly two views (X, Y); got "
                f"{n_views}. Use MCCA for three or more views."
            )

    def _pair(self, X, Y, method: str) -> list:
        if Y is None:
            raise TypeError(f"CCA.{method} needs both views: {method}(X, Y).")
        return [X, Y]

    def _publish(self) -> CCA:
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

    def fit(self, X, Y=None) -> CCA:
        """Fit on paired views X (n x p) and Y (n x q).

        Warns (UserWarning) when n <= max(p, q): a view then spans every centred sample
        direction, and the training canonical correlations come out near 1 whatever
        the data (overfit); judge such a fit on held-out rows.

        Args:
            X: (n, p) array, the first view.
            Y: (n, q) array, the second view, row r paired with row r of X; a 1-D (n,)
                array is one feature. Required (None only for scikit-learn's signature).

        Returns:
            self, fitted.

        Raises:
            TypeError: Y is missing, a view is not a dense numeric array, or a parameter
                has a wrong type.
            ValueError: a view is not 2-D, empty or not finite, the views have different
                numbers of rows, or the problem cannot be solved (``n_components`` too
                large, a singular covariance).
        """
        self._fit_views(self._pair(X, Y, "fit"))  # validates the views first
        n_samples, (x_features, y_features) = self._accumulator.n_samples, self._accumulator.dims
        if n_samples <= max(x_features, y_features):
            warnings.warn(
                f"CCA.fit: {n_samples} samples for views of {x_features} and {y_features} features: "
                "with no more samples than a view's features the training canonical correlations are "
                "overfit (near 1 for any data). Judge the fit on held-out rows (score(X_test, Y_test)), "
                "or reduce the features.",
                UserWarning,
                stacklevel=2,
            )
        return self._publish()

    def partial_fit(self, X, Y=None) -> CCA:
        """Add one chunk of paired rows and refit; equals ``fit`` on all chunks seen.

        The solution is recomputed after each chunk once enough samples have been
        seen; until then the estimator only accumulates (see ``fit_batches`` to
        solve once for a whole stream).

        Args:
            X: (b, p) array, a chunk of the first view.
            Y: (b, q) array, the same rows of the second view (1-D: one feature).

        Returns:
            self; fitted once the rows seen so far can be solved, else unfitted (its
            ``transform`` then says why).
        """
        return self._partial_fit_and_solve(self._pair(X, Y, "partial_fit"))

    def transform(self, X, Y=None):
        """Canonical variates of new data.

        Args:
            X: (n, p) array.
            Y: optional (n, q) array, paired with X.

        Returns:
            (n, k) variates of X alone, or the pair (X_c, Y_c) when Y is given.

        Raises:
            NotFittedError: the estimator is not fitted.
            ValueError: a view with another number of features than in training, or
                non-finite values.
        """
        if Y is None:
            return self._transform_views([X])[0]
        x_variates, y_variates = self._transform_views([X, Y])
        return x_variates, y_variates

    def fit_transform(self, X, Y=None):
        """Fit, then return the training canonical variates (X_c, Y_c)."""
        return self.fit(X, Y).transform(X, Y)

    def correlations(self, X, Y=None) -> np.ndarray:
        """Correlation of the canonical variates of the given data, per component.

        Args:
            X: (n, p) array.
            Y: (n, q) array, paired with X.

        Returns:
            A (k,) array.
        """
        return self._correlations(X, Y, "correlations")

    def _correlations(self, X, Y, method: str) -> np.ndarray:
        x_variates, y_variates = self._transform_views(self._pair(X, Y, method), method)
        return column_correlations(x_variates, y_variates)

    def score(self, X, Y=None) -> float:
        """Mean canonical correlation of the projected data (higher is better).

        Args:
            X: (n, p) array.
            Y: (n, q) array, paired with X.

        Returns:
            The mean over components of ``correlations(X, Y)``, a float.
        """
        return float(np.mean(self._correlations(X, Y, "score")))


class MCCA(_MultiViewCCABase):
    """Multiset CCA for two or more views (used for three or more).

    Maximises the sum of all pairwise covariances of the variates subject to unit
    (regularised) variance within each view, solved as an eigenproblem of the
    whitened block covariance. For two views it gives exactly ``CCA``. Its methods take
    a list of views [X1 (n, p1), X2 (n, p2), ...]. Fitting methods as for ``CCA``:
    ``fit``, ``partial_fit``, ``fit_batches`` (with ``strategy=``), ``fit_statistics``
    and ``merge``.

    Args:
        n_components: number of canonical directions k, at most min(n_samples - 1, p_i).
        reg: ridge added to each view's covariance, a float or one per view.
        dtype: "float64" (default) or "float32", the precision of all computations.

    Attributes:
        weights_: list of (p_i, k) projections, one per view.
        means_: list of (p_i,) column means, one per view.
        canonical_correlations_: (k,) mean pairwise training correlation of each component.
        eigenvalues_: (k,) top eigenvalues of the whitened block covariance.
        n_samples_seen_: the number of training rows.
        covariance_statistics_: a copy of the accumulated ``CovarianceStatistics``.
    """

    def __init__(self, n_components: int = 2, reg=0.0, dtype="float64"):
        self.n_components = n_components
        self.reg = reg
        self.dtype = dtype

    def _views_of(self, views, method: str) -> list:
        if isinstance(views, np.ndarray) or not isinstance(views, (list, tuple)):
            raise TypeError(f"MCCA.{method} expects a list of views [X1, X2, ...]; got {type(views).__name__}.")
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

    def fit(self, views, y=None) -> MCCA:
        """Fit on a list of paired views.

        Args:
            views: [X1 (n, p1), X2 (n, p2), ...], at least two, paired row by row.
            y: ignored (scikit-learn's signature).

        Returns:
            self, fitted.

        Raises:
            TypeError: ``views`` is not a list, or a view is not a dense numeric array.
            ValueError: fewer than two views, or a view as ``CCA.fit`` refuses it.
        """
        self._fit_views(self._views_of(views, "fit"))
        return self

    def partial_fit(self, views, y=None) -> MCCA:
        """Add one chunk of paired rows and refit when possible (see ``CCA.partial_fit``).

        Args:
            views: [X1 (b, p1), X2 (b, p2), ...], the chunk's rows of every view.
            y: ignored (scikit-learn's signature).

        Returns:
            self; fitted once the rows seen so far can be solved.
        """
        return self._partial_fit_and_solve(self._views_of(views, "partial_fit"))

    def _check_input(self, views, reset):
        if not reset and hasattr(self, "weights_") and len(views) != len(self.weights_):
            raise ValueError(f"Expected {len(self.weights_)} views, got {len(views)}.")
        return super()._check_input(views, reset)

    def transform(self, views) -> list[np.ndarray]:
        """Canonical variates of new data.

        Args:
            views: [X1 (n, p1), X2 (n, p2), ...], as many views as in training.

        Returns:
            A list of (n, k) canonical variates, one per view.

        Raises:
            NotFittedError: the estimator is not fitted.
        """
        self._check_fitted()
        return self._transform_views(self._views_of(views, "transform"))

    def fit_transform(self, views, y=None) -> list[np.ndarray]:
        """Fit, then return the training canonical variates, one (n, k) array per view."""
        return self.fit(views).transform(views)

    def score(self, views, y=None) -> float:
        """Mean over components and view pairs of the variates' correlation.

        Args:
            views: [X1 (n, p1), X2 (n, p2), ...], paired row by row.
            y: ignored (scikit-learn's signature).

        Returns:
            The mean correlation, a float (higher is better).
        """
        return self._score_variates(self._transform_views(self._views_of(views, "score"), "score"))
