"""NumPy's OpenBLAS routines called through ctypes agree with plain NumPy, and the
NumPy fallback (for builds without that library) gives the same CCA."""
import numpy as np
import pytest

from xmodal_tf import CCA, MCCA, _lapack


def test_numpy_openblas_routines_are_found():
    # The wheels this package pins ship them; if this fails the fast path is silently off.
    assert _lapack.AVAILABLE


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-10), (np.float32, 2e-3)])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("transpose", [False, True])
def test_solve_triangular_matches_inverse(dtype, tolerance, side, transpose):
    rng = np.random.default_rng(0)
    lower = (np.tril(rng.normal(size=(30, 30))) + 8 * np.eye(30)).astype(dtype)
    rhs = rng.normal(size=(30, 7) if side == "left" else (7, 30)).astype(dtype)
    inverse = np.linalg.inv(lower.astype(np.float64))
    inverse = inverse.T if transpose else inverse
    expected = inverse @ rhs if side == "left" else rhs @ inverse
    solved = _lapack.solve_triangular(lower, rhs, side=side, transpose=transpose)
    assert solved.dtype == dtype and solved.shape == rhs.shape
    np.testing.assert_allclose(solved, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-10), (np.float32, 1e-3)])
def test_top_eigh_matches_numpy(dtype, tolerance):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 40))
    symmetric = (base @ base.T).astype(dtype)
    values, vectors = _lapack.top_eigh(symmetric, 6)
    all_values, all_vectors = np.linalg.eigh(symmetric.astype(np.float64))
    np.testing.assert_allclose(values, all_values[::-1][:6], rtol=tolerance)
    overlap = np.abs(np.sum(vectors * all_vectors[:, ::-1][:, :6], axis=0))
    np.testing.assert_allclose(overlap, 1, atol=tolerance)


def test_fallback_path_gives_the_same_models(monkeypatch):
    rng = np.random.default_rng(2)
    latent = rng.normal(size=(300, 3))
    views = [latent @ rng.normal(size=(3, p)) + rng.normal(size=(300, p)) for p in (8, 6, 5)]
    fast_cca = CCA(3, reg=1e-3).fit(views[0], views[1])
    fast_mcca = MCCA(3, reg=1e-3).fit(views)
    monkeypatch.setattr(_lapack, "_ROUTINES", None)
    slow_cca = CCA(3, reg=1e-3).fit(views[0], views[1])
    slow_mcca = MCCA(3, reg=1e-3).fit(views)
    np.testing.assert_allclose(fast_cca.canonical_correlations_, slow_cca.canonical_correlations_, rtol=1e-10)
    np.testing.assert_allclose(fast_cca.x_weights_, slow_cca.x_weights_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fast_mcca.eigenvalues_, slow_mcca.eigenvalues_, rtol=1e-10)
    for fast, slow in zip(fast_mcca.weights_, slow_mcca.weights_):
        np.testing.assert_allclose(np.abs(fast), np.abs(slow), rtol=1e-8, atol=1e-10)


def test_top_eigh_overwrite_gives_the_same_result():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(30, 30))
    symmetric = base @ base.T
    values, vectors = _lapack.top_eigh(symmetric, 5)
    work = symmetric.copy()
    overwritten_values, overwritten_vectors = _lapack.top_eigh(work, 5, overwrite=True)
    np.testing.assert_allclose(overwritten_values, values, rtol=1e-12)
    np.testing.assert_allclose(np.abs(overwritten_vectors), np.abs(vectors), atol=1e-10)


def test_top_eigh_survives_a_tridiagonal_solver_failure(monkeypatch):
    """Should ?stemr not converge, a dense eigh of the tridiagonal matrix takes over."""
    rng = np.random.default_rng(4)
    base = rng.normal(size=(25, 25))
    symmetric = base @ base.T
    expected_values, expected_vectors = _lapack.top_eigh(symmetric, 4)
    monkeypatch.setitem(_lapack._ROUTINES.stemr, np.dtype(np.float64), lambda *args: 1)
    values, vectors = _lapack.top_eigh(symmetric, 4, overwrite=True)
    np.testing.assert_allclose(values, expected_values, rtol=1e-10)
    np.testing.assert_allclose(np.abs(np.sum(vectors * expected_vectors, axis=0)), 1, atol=1e-10)


def test_one_thread_restores_the_thread_count():
    before = _lapack._ROUTINES.get_threads()
    with _lapack.one_thread():
        assert _lapack._ROUTINES.get_threads() == 1
    assert _lapack._ROUTINES.get_threads() == before


def test_one_thread_blocks_overlapping_in_two_threads_restore_the_count():
    """Interleaved blocks (A enters, B enters, A leaves, B leaves) must not leave one thread."""
    import threading

    before = _lapack._ROUTINES.get_threads()
    a_entered, b_entered, a_left = threading.Event(), threading.Event(), threading.Event()
    seen_by_second = []

    def first():
        with _lapack.one_thread():
            a_entered.set()
            b_entered.wait(5)
        a_left.set()

    def second():
        a_entered.wait(5)
        with _lapack.one_thread():
            b_entered.set()
            a_left.wait(5)
            seen_by_second.append(_lapack._ROUTINES.get_threads())  # A has left, B is inside

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen_by_second == [1]
    assert _lapack._ROUTINES.get_threads() == before


@pytest.mark.parametrize("rows", [1, 7, 8, 13, 1000])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_column_sums_match_numpy(rows, layout):
    from xmodal_tf.cca import _column_sums

    rng = np.random.default_rng(rows)
    array = rng.normal(size=(rows, 10))
    array = {"C": array, "F": np.asfortranarray(array), "strided": array[:, ::2]}[layout]
    np.testing.assert_allclose(_column_sums(array), array.sum(axis=0), rtol=1e-12, atol=1e-12)
