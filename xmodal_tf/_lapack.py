"""BLAS/LAPACK routines NumPy does not expose, from NumPy's own OpenBLAS.

Linear CCA needs triangular solves with Cholesky factors and the top-k eigenvectors of
a symmetric matrix. NumPy offers only a full inverse and a full ``eigh``; SciPy has
both routines, but links a second OpenBLAS whose thread pool fights NumPy's on a small
machine (it slowed the whole CCA fit by a third on two cores). NumPy's wheels ship
``scipy_openblas64_``, which exports CBLAS and LAPACKE (ILP64, prefixed ``scipy_``), so
the routines are called here through ctypes on NumPy's own threads. ``threadpoolctl``
finds that library among the loaded ones and limits its threads inside ``one_thread``.

Where that library is not found (another NumPy build), every function falls back to
plain NumPy with the same results; ``AVAILABLE`` says which path runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

import numpy as np
import threadpoolctl

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
    """The ctypes functions used here, per dtype, from one OpenBLAS library.

    Args:
        library: the loaded OpenBLAS (``ctypes.CDLL``).
        threads: a ``threadpoolctl.ThreadpoolController`` holding that library alone.

    Raises:
        AttributeError: the library lacks one of the ``scipy_``-prefixed ILP64 routines.
    """

    def __init__(self, library: ctypes.CDLL, threads: threadpoolctl.ThreadpoolController):
        self.trsm, self.sytrd, self.stemr, self.ormtr = {}, {}, {}, {}
        self.threads = threads
        # OpenBLAS's pool (pthreads build) is process-wide: blocks from two Python threads
        # would restore each other's limits out of order, so they take turns.
        self._one_thread_lock = threading.RLock()
        for dtype, letter in _PREFIX.items():
            real = ctypes.c_double if letter == "d" else ctypes.c_float
            self.trsm[dtype] = self._bind(
                library,
                f"scipy_cblas_{letter}trsm64_",
                None,
                [ctypes.c_int] * 5 + [_INT, _INT, real, _POINTER, _INT, _POINTER, _INT],
            )
            self.sytrd[dtype] = self._bind(
                library,
                f"scipy_LAPACKE_{letter}sytrd64_",
                _INT,
                [ctypes.c_int, ctypes.c_char, _INT, _POINTER, _INT, _POINTER, _POINTER, _POINTER],
            )
            self.stemr[dtype] = self._bind(
                library,
                f"scipy_LAPACKE_{letter}stemr64_",
                _INT,
                [
                    ctypes.c_int,
                    ctypes.c_char,
                    ctypes.c_char,
                    _INT,
                    _POINTER,
                    _POINTER,
                    real,
                    real,
                    _INT,
                    _INT,
                    ctypes.POINTER(_INT),
                    _POINTER,
                    _POINTER,
                    _INT,
                    _INT,
                    _POINTER,
                    ctypes.POINTER(_INT),
                ],
            )
            self.ormtr[dtype] = self._bind(
                library,
                f"scipy_LAPACKE_{letter}ormtr64_",
                _INT,
                [
                    ctypes.c_int,
                    ctypes.c_char,
                    ctypes.c_char,
                    ctypes.c_char,
                    _INT,
                    _INT,
                    _POINTER,
                    _INT,
                    _POINTER,
                    _POINTER,
                    _INT,
                ],
            )

    @staticmethod
    def _bind(library, name, restype, argtypes):
        function = getattr(library, name)
        function.restype = restype
        function.argtypes = argtypes
        return function

    def get_threads(self) -> int:
        """The library's current thread count."""
        return self.threads.info()[0]["num_threads"]

    @contextlib.contextmanager
    def one_thread(self):
        """Run the library on one thread inside the block, restoring the count after it.

        Blocks in different Python threads run one after another (see ``__init__``);
        nested blocks in one thread are fine. While another Python thread holds a
        ``threadpoolctl`` limit, that thread alone sets the count (threadpoolctl's rule
        for a process-wide pool): the block then runs on its count, slower perhaps,
        with the same results.
        """
        with self._one_thread_lock, self.threads.limit(limits=1):
            yield


def _load():
    """The routines of NumPy's OpenBLAS, or None when that library is not loaded.

    Among the OpenBLAS builds ``threadpoolctl`` finds loaded (SciPy's LP64 one is often
    there too), NumPy's is the one exporting the ``scipy_``-prefixed ILP64 routines.
    """
    controller = threadpoolctl.ThreadpoolController()
    for info in controller.info():
        if info["internal_api"] != "openblas":
            continue
        try:
            library = ctypes.CDLL(info["filepath"])
            return _Routines(library, controller.select(filepath=info["filepath"]))
        except (OSError, AttributeError):
            continue
    return None


_ROUTINES = _load()
AVAILABLE = _ROUTINES is not None


def one_thread():
    """Context manager: NumPy's OpenBLAS on one thread inside the block.

    A no-op when that library is not found. For factorisations of a few hundred rows,
    whose many small BLAS calls lose more to thread hand-offs than they gain on two
    cores. The count is restored when the block ends.
    """
    return _ROUTINES.one_thread() if _ROUTINES is not None else contextlib.nullcontext()


def solve_triangular(
    lower: np.ndarray, rhs: np.ndarray, *, side: str = "left", transpose: bool = False, overwrite_rhs: bool = False
) -> np.ndarray:
    """Solve a triangular system with a lower-triangular ``lower`` (p, p).

    side="left" gives X = L^-1 B (or L^-T B with ``transpose``) for B of shape (p, m);
    side="right" gives X = B L^-1 (or B L^-T) for B of shape (m, p).

    Args:
        lower: the lower-triangular factor L, (p, p); its upper triangle is not read.
        rhs: B, (p, m) for side="left", (m, p) for side="right".
        side: "left" or "right", where L stands.
        transpose: solve with L^T in place of L.
        overwrite_rhs: write the result into ``rhs`` when it is a C-contiguous array of
            the result's dtype (saves a copy).

    Returns:
        X, the shape of ``rhs``, in the common dtype of ``lower`` and ``rhs``.
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
    _ROUTINES.trsm[dtype](
        _ROW_MAJOR,
        _LEFT if side == "left" else _RIGHT,
        _LOWER,
        _TRANS if transpose else _NO_TRANS,
        _NON_UNIT,
        rows,
        columns,
        1.0,
        lower.ctypes.data,
        lower.shape[0],
        result.ctypes.data,
        columns,
    )
    return result


def _numpy_top_eigh(symmetric: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_eigh`` by NumPy's full ``eigh`` (the fallback)."""
    values, vectors = np.linalg.eigh(symmetric)
    return values[::-1][:k], vectors[:, ::-1][:, :k]


def top_eigh(symmetric: np.ndarray, k: int, *, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenpairs of a symmetric matrix.

    Tridiagonal reduction (?sytrd), then MRRR (?stemr) for the k wanted eigenpairs of
    the tridiagonal matrix, then the back-transformation (?ormtr). LAPACK's ?syevr uses
    MRRR only when every eigenvalue is wanted and bisection plus inverse iteration
    otherwise, which took 3 ms more here (p=392, k=50). The last two steps run on one
    OpenBLAS thread: ?ormtr's many small products ran three times slower on two.

    Args:
        symmetric: a symmetric (p, p) float32 or float64 matrix; only its lower
            triangle is read.
        k: how many eigenpairs, 1 <= k <= p.
        overwrite: let the routine use the matrix's memory as workspace (its contents
            are then undefined).

    Returns:
        The eigenvalues, (k,) in descending order, and their eigenvectors as the
        columns of a C-ordered (p, k) array.

    Raises:
        RuntimeError: LAPACK rejected an argument (a bug here, not in the caller's data).
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
    info = _ROUTINES.sytrd[dtype](
        _COLUMN_MAJOR,
        b"L",
        size,
        reduced.ctypes.data,
        size,
        diagonal.ctypes.data,
        off_diagonal.ctypes.data,
        scales.ctypes.data,
    )
    if info != 0:
        raise RuntimeError(f"LAPACK ?sytrd rejected argument {-info}; this is a bug.")
    with _ROUTINES.one_thread():
        values, vectors = _tridiagonal_top_eigh(diagonal, off_diagonal, k)
        info = _ROUTINES.ormtr[dtype](
            _COLUMN_MAJOR,
            b"L",
            b"L",
            b"N",
            size,
            k,
            reduced.ctypes.data,
            size,
            scales.ctypes.data,
            vectors.ctypes.data,
            size,
        )
    if info != 0:
        raise RuntimeError(f"LAPACK ?ormtr rejected argument {-info}; this is a bug.")
    return values[::-1].copy(), np.ascontiguousarray(vectors[:, ::-1])


def _tridiagonal_top_eigh(diagonal: np.ndarray, off_diagonal: np.ndarray, k: int):
    """The k largest eigenpairs of a symmetric tridiagonal matrix.

    By ?stemr, or by a dense ``eigh`` should ?stemr fail to converge.

    Args:
        diagonal: the diagonal, (p,).
        off_diagonal: the sub-diagonal, (p,); its last entry is unused.
        k: how many eigenpairs.

    Returns:
        The eigenvalues, (k,) ascending, and an F-ordered (p, k) array of eigenvectors.
    """
    size, dtype = diagonal.shape[0], diagonal.dtype
    values = np.empty(size, dtype=dtype)
    vectors = np.empty((size, k), dtype=dtype, order="F")
    support = np.empty(2 * k, dtype=np.int64)
    found, relative_accuracy = _INT(0), _INT(1)
    work_diagonal, work_off_diagonal = diagonal.copy(), off_diagonal.copy()  # both overwritten
    info = _ROUTINES.stemr[dtype](
        _COLUMN_MAJOR,
        b"V",
        b"I",
        size,
        work_diagonal.ctypes.data,
        work_off_diagonal.ctypes.data,
        0.0,
        0.0,
        size - k + 1,
        size,
        ctypes.byref(found),
        values.ctypes.data,
        vectors.ctypes.data,
        size,
        k,
        support.ctypes.data,
        ctypes.byref(relative_accuracy),
    )
    if info == 0 and found.value == k:
        return values[:k], vectors
    dense = np.diag(diagonal) + np.diag(off_diagonal[:-1], -1) + np.diag(off_diagonal[:-1], 1)
    all_values, all_vectors = np.linalg.eigh(dense)
    return all_values[size - k :], np.asfortranarray(all_vectors[:, size - k :])
