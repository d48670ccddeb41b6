"""BLAS/LAPACK routines NumPy does not expose, from NumPy's own OpenBLAS.

Linear CCA needs triangular solves with Cholesky factors and the top-k eigenvectors of
a symmetric matrix. NumPy offers only a full inverse and a full ``eigh``; SciPy has
both routines, but links a second OpenBLAS whose thread pool fights NumPy's on a small
machine (it slowed the whole CCA fit by a third on two cores). NumPy's wheels ship
``scipy_openblas64_``, which exports CBLAS and LAPACKE (ILP64, prefixed ``scipy_``), so
the routines are called here through ctypes on NumPy's own threads.

Where that library is not found (another NumPy build), every function falls back to
plain NumPy with the same results; ``AVAILABLE`` says which path runs.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading

import numpy as np

__all__ = ["AVAILABLE", "one_thread", "solve_triangular", "top_eigh"]

_ROW_MAJOR, _COLUMN_MAJOR = 101, 102
_NO_TRANS, _TRANS = 111, 112
_LOWER = 122
_NON_UNIT = 131
_LEFT, _RIGHT = 141, 142
_INT = ctypes.c_int64
_POINTER = ctypes.c_void_p
_PREFIX = {np.dtype(np.float64): "d", np.dtype(np.float32): "s"}


class _Routines:
    """The ctypes functions used here, per dtype, from one OpenBLAS library."""

    def __init__(self, library: ctypes.CDLL):
        self.trsm, self.sytrd, self.stemr, self.ormtr = {}, {}, {}, {}
        self._single_thread_lock = threading.Lock()
        self._single_thread_depth = 0  # blocks inside one_thread, over all Python threads
        self._threads_before = 1
        for dtype, letter in _PREFIX.items():
            real = ctypes.c_double if letter == "d" else ctypes.c_float
            self.trsm[dtype] = self._bind(
                library, f"scipy_cblas_{letter}trsm64_", None,
                [ctypes.c_int] * 5 + [_INT, _INT, real, _POINTER, _INT, _POINTER, _INT])
            self.sytrd[dtype] = self._bind(
                library, f"scipy_LAPACKE_{letter}sytrd64_", _INT,
                [ctypes.c_int, ctypes.c_char, _INT, _POINTER, _INT, _POINTER, _POINTER, _POINTER])
            self.stemr[dtype] = self._bind(
                library, f"scipy_LAPACKE_{letter}stemr64_", _INT,
                [ctypes.c_int, ctypes.c_char, ctypes.c_char, _INT, _POINTER, _POINTER, real, real,
                 _INT, _INT, ctypes.POINTER(_INT), _POINTER, _POINTER, _INT, _INT, _POINTER,
                 ctypes.POINTER(_INT)])
            self.ormtr[dtype] = self._bind(
                library, f"scipy_LAPACKE_{letter}ormtr64_", _INT,
                [ctypes.c_int, ctypes.c_char, ctypes.c_char, ctypes.c_char, _INT, _INT, _POINTER,
                 _INT, _POINTER, _POINTER, _INT])
        self.get_threads = self._bind(library, "scipy_openblas_get_num_threads64_", ctypes.c_int, [])
        self.set_threads = self._bind(library, "scipy_openblas_set_num_threads64_", None,
                                      [ctypes.c_int])

    @staticmethod
    def _bind(library, name, restype, argtypes):
        function = getattr(library, name)
        function.restype = restype
        function.argtypes = argtypes
        return function

    @contextlib.contextmanager
    def one_thread(self):
        """Run OpenBLAS on one thread inside the block, restoring the previous count
        when the last such block (in any Python thread) ends; the count is global."""
        with self._single_thread_lock:
            if self._single_thread_depth == 0:
                self._threads_before = self.get_threads()
                self.set_threads(1)
            self._single_thread_depth += 1
        try:
            yield
        finally:
            with self._single_thread_lock:
                self._single_thread_depth -= 1
                if self._single_thread_depth == 0:
                    self.set_threads(self._threads_before)


def _load():
    """The routines of NumPy's OpenBLAS, or None when that library is not there."""
    folder = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "libscipy_openblas64_*.so"))):
        try:
            return _Routines(ctypes.CDLL(path))
        except (OSError, AttributeError):
            continue
    return None


_ROUTINES = _load()
AVAILABLE = _ROUTINES is not None


def one_thread():
    """Context manager: NumPy's OpenBLAS on one thread inside the block (a no-op when
    that library is not found). For factorisations of a few hundred rows, whose many
    small BLAS calls lose more to thread hand-offs than they gain on two cores."""
    return _ROUTINES.one_thread() if _ROUTINES is not None else contextlib.nullcontext()


def solve_triangular(lower: np.ndarray, rhs: np.ndarray, *, side: str = "left",
                     transpose: bool = False, overwrite_rhs: bool = False) -> np.ndarray:
    """Solve with a lower-triangular ``lower`` (p x p).

    side="left":  X = L^-1 B  (or L^-T B with ``transpose``), B is (p x m);
    side="right": X = B L^-1  (or B L^-T), B is (m x p).
    The result is a new array, or ``rhs`` itself with ``overwrite_rhs`` when it is a
    C-contiguous array of the result's dtype.
    """
    dtype = np.result_type(lower, rhs)
    copy = np.asarray if overwrite_rhs else np.array
    result = copy(rhs, dtype=dtype, order="C")
    if _ROUTINES is None or dtype not in _ROUTINES.trsm:
        inverse = np.linalg.inv(lower)
        inverse = inverse.T if transpose else inverse
        return inverse @ rhs if side == "left" else rhs @ inverse
    lower = np.ascontiguousarray(lower, dtype=dtype)
    rows, columns = result.shape
    _ROUTINES.trsm[dtype](_ROW_MAJOR, _LEFT if side == "left" else _RIGHT, _LOWER,
                          _TRANS if transpose else _NO_TRANS, _NON_UNIT, rows, columns, 1.0,
                          lower.ctypes.data, lower.shape[0], result.ctypes.data, columns)
    return result


def _numpy_top_eigh(symmetric: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(symmetric)
    return values[::-1][:k], vectors[:, ::-1][:, :k]


def top_eigh(symmetric: np.ndarray, k: int, *,
             overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending) and their eigenvectors (p x k) of a
    symmetric matrix; only the lower triangle is read. With ``overwrite`` the
    matrix's memory may be used as workspace (its contents are then undefined).

    Tridiagonal reduction (?sytrd), then MRRR (?stemr) for the k wanted eigenpairs of
    the tridiagonal matrix, then the back-transformation (?ormtr). LAPACK's ?syevr uses
    MRRR only when every eigenvalue is wanted and bisection plus inverse iteration
    otherwise, which took 3 ms more here (p=392, k=50). The last two steps run on one
    OpenBLAS thread: ?ormtr's many small products ran three times slower on two.
    """
    size, dtype = symmetric.shape[0], symmetric.dtype
    if _ROUTINES is None or dtype not in _ROUTINES.sytrd:
        return _numpy_top_eigh(symmetric, k)
    # Becomes the Householder vectors. A C-ordered symmetric matrix is its own transpose,
    # the F-ordered view LAPACK needs.
    reduced = symmetric.T if overwrite and symmetric.flags.c_contiguous else symmetric
    reduced = (np.asarray if overwrite else np.array)(reduced, order="F")
    diagonal = np.empty(size, dtype=dtype)
    off_diagonal = np.zeros(size, dtype=dtype)  # ?stemr uses the last entry as workspace
    scales = np.empty(max(size - 1, 1), dtype=dtype)
    info = _ROUTINES.sytrd[dtype](_COLUMN_MAJOR, b"L", size, reduced.ctypes.data, size,
                                  diagonal.ctypes.data, off_diagonal.ctypes.data,
                                  scales.ctypes.data)
    if info != 0:
        raise RuntimeError(f"LAPACK ?sytrd rejected argument {-info}; this is a bug.")
    with _ROUTINES.one_thread():
        values, vectors = _tridiagonal_top_eigh(diagonal, off_diagonal, k)
        info = _ROUTINES.ormtr[dtype](_COLUMN_MAJOR, b"L", b"L", b"N", size, k,
                                      reduced.ctypes.data, size, scales.ctypes.data,
                                      vectors.ctypes.data, size)
    if info != 0:
        raise RuntimeError(f"LAPACK ?ormtr rejected argument {-info}; this is a bug.")
    return values[::-1].copy(), np.ascontiguousarray(vectors[:, ::-1])


def _tridiagonal_top_eigh(diagonal: np.ndarray, off_diagonal: np.ndarray, k: int):
    """The k largest eigenvalues (ascending) and F-ordered (p x k) eigenvectors of the
    symmetric tridiagonal matrix with this diagonal (p,) and off-diagonal (p,; the last
    entry unused), by ?stemr, or by a dense ``eigh`` should ?stemr fail to converge."""
    size, dtype = diagonal.shape[0], diagonal.dtype
    values = np.empty(size, dtype=dtype)
    vectors = np.empty((size, k), dtype=dtype, order="F")
    support = np.empty(2 * k, dtype=np.int64)
    found, relative_accuracy = _INT(0), _INT(1)
    work_diagonal, work_off_diagonal = diagonal.copy(), off_diagonal.copy()  # both overwritten
    info = _ROUTINES.stemr[dtype](
        _COLUMN_MAJOR, b"V", b"I", size, work_diagonal.ctypes.data,
        work_off_diagonal.ctypes.data, 0.0, 0.0, size - k + 1, size, ctypes.byref(found),
        values.ctypes.data, vectors.ctypes.data, size, k, support.ctypes.data,
        ctypes.byref(relative_accuracy))
    if info == 0 and found.value == k:
        return values[:k], vectors
    dense = np.diag(diagonal) + np.diag(off_diagonal[:-1], -1) + np.diag(off_diagonal[:-1], 1)
    all_values, all_vectors = np.linalg.eigh(dense)
    return all_values[size - k:], np.asfortranarray(all_vectors[:, size - k:])
