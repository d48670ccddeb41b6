"""NumPy's OpenBLAS routines called through ctypes agree with plain NumPy, and the
NumPy fallback (for builds without that library) gives the same CCA."""

import threading
import time

import numpy as np
import pytest
import threadpoolctl

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


def set_thread_count(count):
    """Set NumPy's OpenBLAS to ``count`` threads from a Python thread that then ends.

    threadpoolctl lets one Python thread at a time control a process-wide pool; setting
    the count from the test's own thread would make it the controller, and the blocks
    tested in other threads could not change the count.
    """
    setter = threading.Thread(target=lambda: _lapack._ROUTINES.threads.limit(limits=count))
    setter.start()
    setter.join(10)


@pytest.fixture
def two_threads():
    """OpenBLAS on two threads during the test, so that a count left at one shows."""
    before = _lapack._ROUTINES.get_threads()
    set_thread_count(2)
    assert _lapack._ROUTINES.get_threads() == 2
    yield
    set_thread_count(before)


def test_the_library_is_numpys_found_through_threadpoolctl():
    import scipy.linalg  # noqa: F401 (loads SciPy's own LP64 OpenBLAS beside NumPy's)

    ours = _lapack._ROUTINES.threads.info()
    assert len(ours) == 1 and ours[0]["internal_api"] == "openblas"
    loaded = {info["filepath"] for info in threadpoolctl.threadpool_info()}
    assert ours[0]["filepath"] in loaded
    # Found again with SciPy's library loaded too, the choice is the same one.
    assert _lapack._load().threads.info()[0]["filepath"] == ours[0]["filepath"]
    assert "scipy.libs" not in ours[0]["filepath"]


def test_no_openblas_loaded_means_the_numpy_fallback(monkeypatch):
    class NoLibraries:
        def info(self):
            return [{"internal_api": "mkl", "filepath": "/nowhere/libmkl_rt.so"}]

    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", NoLibraries)
    assert _lapack._load() is None
    monkeypatch.setattr(_lapack, "_ROUTINES", None)
    with _lapack.one_thread():  # a no-op, not an error
        pass


def test_one_thread_restores_the_thread_count(two_threads):
    with _lapack.one_thread():
        assert _lapack._ROUTINES.get_threads() == 1
        seen = {info["filepath"]: info["num_threads"] for info in threadpoolctl.threadpool_info()}
        assert seen[_lapack._ROUTINES.threads.info()[0]["filepath"]] == 1
        with _lapack.one_thread():  # nested in one Python thread
            assert _lapack._ROUTINES.get_threads() == 1
        assert _lapack._ROUTINES.get_threads() == 1
    assert _lapack._ROUTINES.get_threads() == 2


def test_one_thread_restores_the_count_after_an_error(two_threads):
    with pytest.raises(KeyError):
        with _lapack.one_thread():
            raise KeyError("inside")
    assert _lapack._ROUTINES.get_threads() == 2


def test_one_thread_blocks_in_two_threads_take_turns_and_restore_the_count(two_threads):
    """B asks while A is inside: B enters only after A has left, and on one thread.

    (Overlapping blocks that each restore their own count would leave one thread behind.)
    """
    a_inside, log = threading.Event(), []

    def first():
        with _lapack.one_thread():
            a_inside.set()
            time.sleep(0.2)
            log.append("a leaves")

    def second():
        a_inside.wait(5)
        with _lapack.one_thread():
            log.append(("b inside", _lapack._ROUTINES.get_threads()))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert log == ["a leaves", ("b inside", 1)]
    assert _lapack._ROUTINES.get_threads() == 2


def test_many_blocks_in_two_threads_always_run_on_one_thread(two_threads):
    seen = []

    def work():
        for _ in range(200):
            with _lapack.one_thread():
                seen.append(_lapack._ROUTINES.get_threads())

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == [1] * 400
    assert _lapack._ROUTINES.get_threads() == 2


@pytest.mark.parametrize("rows", [1, 7, 8, 13, 1000])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_column_sums_match_numpy(rows, layout):
    from xmodal_tf.cca import _column_sums

    rng = np.random.default_rng(rows)
    array = rng.normal(size=(rows, 10))
    array = {"C": array, "F": np.asfortranarray(array), "strided": array[:, ::2]}[layout]
    np.testing.assert_allclose(_column_sums(array), array.sum(axis=0), rtol=1e-12, atol=1e-12)
