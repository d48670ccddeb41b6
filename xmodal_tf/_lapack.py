"""Two LAPACK/BLAS routines NumPy does not expose, from NumPy's own OpenBLAS.

Linear CCA needs triangular solves with Cholesky factors and the top-k eigenvectors of
a symmetric matrix. NumPy offers only a full inverse and a full ``eigh``; SciPy has
both routines, but links a second OpenBLAS whose thread pool fights NumPy's on a small
machine (it slowed the whole CCA fit by a third on two cores). NumPy's wheels ship
``scipy_openblas64_``, which exports ``cblas_?trsm`` and ``LAPACKE_?syevr`` (ILP64,
prefixed ``scipy_``), so they are called here through ctypes on NumPy's own threads.

Where that library is not found (another NumPy build), every function falls back to
plain NumPy with the same results; ``AVAILABLE`` says which path runs.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

__all__ = ["AVAILABLE", "solve_triangular", "top_eigh"]

_ROW_MAJOR, _COLUMN_MAJOR = 101, 102
_NO_TRANS, _TRANS = 111, 112
_LOWER = 122
_NON_UNIT = 131
_LEFT, _RIGHT = 141, 142
_INT = ctypes.c_int64


def _load():
    """(trsm, syevr) dicts keyed by dtype, or None when NumPy's OpenBLAS is not there."""
    folder = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "libscipy_openblas64_*.so"))):
        try:
            library = ctypes.CDLL(path)
            trsm = {np.dtype(np.float64): library.scipy_cblas_dtrsm64_,
                    np.dtype(np.float32): library.scipy_cblas_strsm64_}
            syevr = {np.dtype(np.float64): library.scipy_LAPACKE_dsyevr64_,
                     np.dtype(np.float32): library.scipy_LAPACKE_ssyevr64_}
        except (OSError, AttributeError):
            continue
        for dtype, function in trsm.items():
            scalar = ctypes.c_double if dtype == np.float64 else ctypes.c_float
            function.restype = None
            function.argtypes = [ctypes.c_int] * 5 + [_INT, _INT, scalar, ctypes.c_void_p, _INT,
                                                       ctypes.c_void_p, _INT]
        for dtype, function in syevr.items():
            scalar = ctypes.c_double if dtype == np.float64 else ctypes.c_float
            function.restype = _INT
            function.argtypes = [ctypes.c_int, ctypes.c_char, ctypes.c_char, ctypes.c_char, _INT,
                                 ctypes.c_void_p, _INT, scalar, scalar, _INT, _INT, scalar,
                                 ctypes.POINTER(_INT), ctypes.c_void_p, ctypes.c_void_p, _INT,
                                 ctypes.c_void_p]
        return trsm, syevr
    return None


_ROUTINES = _load()
AVAILABLE = _ROUTINES is not None


def solve_triangular(lower: np.ndarray, rhs: np.ndarray, *, side: str = "left",
                     transpose: bool = False) -> np.ndarray:
    """Solve with a lower-triangular ``lower`` (p x p), returning a new array.

    side="left":  X = L^-1 B  (or L^-T B with ``transpose``), B is (p x m);
    side="right": X = B L^-1  (or B L^-T), B is (m x p).
    """
    dtype = np.result_type(lower, rhs)
    result = np.array(rhs, dtype=dtype, order="C", copy=True)
    if _ROUTINES is None or dtype not in _ROUTINES[0]:
        inverse = np.linalg.inv(lower)
        inverse = inverse.T if transpose else inverse
        return inverse @ rhs if side == "left" else rhs @ inverse
    lower = np.ascontiguousarray(lower, dtype=dtype)
    rows, columns = result.shape
    _ROUTINES[0][dtype](_ROW_MAJOR, _LEFT if side == "left" else _RIGHT, _LOWER,
                        _TRANS if transpose else _NO_TRANS, _NON_UNIT, rows, columns, 1.0,
                        lower.ctypes.data, lower.shape[0], result.ctypes.data, columns)
    return result


def top_eigh(symmetric: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending) and their eigenvectors (p x k) of a
    symmetric matrix; only the lower triangle is read."""
    size = symmetric.shape[0]
    if _ROUTINES is None or symmetric.dtype not in _ROUTINES[1]:
        values, vectors = np.linalg.eigh(symmetric)
        return values[::-1][:k], vectors[:, ::-1][:, :k]
    work = np.array(symmetric, order="F", copy=True)
    values = np.empty(size, dtype=work.dtype)
    vectors = np.empty((size, k), dtype=work.dtype, order="F")
    support = np.empty(2 * max(k, 1), dtype=np.int64)
    found = _INT(0)
    info = _ROUTINES[1][work.dtype](
        _COLUMN_MAJOR, b"V", b"I", b"L", size, work.ctypes.data, size, 0.0, 0.0,
        size - k + 1, size, 0.0, ctypes.byref(found), values.ctypes.data, vectors.ctypes.data,
        size, support.ctypes.data)
    if info != 0 or found.value != k:  # not expected for a finite matrix; stay correct anyway
        full_values, full_vectors = np.linalg.eigh(symmetric)
        return full_values[::-1][:k], full_vectors[:, ::-1][:, :k]
    return values[:k][::-1].copy(), np.ascontiguousarray(vectors[:, ::-1])
