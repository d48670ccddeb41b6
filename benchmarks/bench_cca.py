"""Speed of linear CCA fit + transform against the bare covariance products.

Floor: the three NumPy products X^T X, Y^T Y, X^T Y that any CCA must compute.
Ours:  xmodal_tf.CCA(n_components).fit(X, Y) followed by .transform(X, Y).
Both are timed in the same process, interleaved (floor, ours, floor, ours, ...). Two
ratios are printed: best ours / best floor, and the median over repeats of each run of
ours divided by the floor run just before it. The second cancels the slow drifts in
speed of a shared machine, which the first (two separate minima) does not.

    python benchmarks/bench_cca.py                      # n=10000, 392 + 392 features, k=50
    python benchmarks/bench_cca.py --with-sklearn       # adds sklearn's CCA (about a minute)
    python benchmarks/bench_cca.py --data-dir ../shared/data   # real split-MNIST halves
    python benchmarks/bench_cca.py --stages             # also the time of each stage
    python -m benchmarks --only cca                     # rows(): the suite's table

``rows()`` gives the suite's two rows: ours against the covariance floor (best of the
interleaved repeats), and ours against scikit-learn's CCA (one run of sklearn, NIPALS;
a ratio below 1 means ours is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from xmodal_tf import CCA


def planted_views(n_samples: int, n_features: int, seed: int = 0):
    """Two views sharing a 50-dimensional latent signal plus independent noise."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_samples, 50))
    views = []
    for _ in range(2):
        mixing = rng.standard_normal((50, n_features))
        noise = rng.standard_normal((n_samples, n_features)) * 2.0
        views.append(latent @ mixing + noise + rng.uniform(0, 1, n_features))
    return views


def mnist_views(data_dir: str, n_samples: int):
    from xmodal_tf.data import load_split_mnist

    train = load_split_mnist(data_dir).train
    return (
        np.ascontiguousarray(train.view1[:n_samples], dtype=np.float64),
        np.ascontiguousarray(train.view2[:n_samples], dtype=np.float64),
    )


def time_once(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def stage_times(X, Y, k: int, reg: float, repeats: int) -> dict[str, list[float]]:
    """Seconds spent in each stage of fit + transform, one list entry per repeat.

    Wraps the functions the estimator calls (the real code path). Stages nest: the
    top-k eigh is part of the singular triplets, and the centring of the cross-covariance
    is counted both on its own and in the whitening solves that ask for it.
    """
    from xmodal_tf import cca

    stages = {
        "column sums": (cca, "_column_sums"),
        "products": (cca._CovarianceAccumulator, "add_unshifted"),
        "covariance centring": (cca._CovarianceAccumulator, "covariance"),
        "Cholesky factors": (cca, "_cholesky"),
        "whitening solves": (cca, "_whiten_cross_covariance"),
        "top-k eigh (in singular triplets)": (cca, "top_eigh"),
        "singular triplets": (cca, "_top_singular_triplets"),
        "projection": (cca, "_project"),
    }
    spent = {name: 0.0 for name in stages}
    originals = {name: getattr(owner, attribute) for name, (owner, attribute) in stages.items()}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    results = {name: [] for name in [*stages, "fit + transform"]}
    try:
        for name, (owner, attribute) in stages.items():
            setattr(owner, attribute, timed(name, originals[name]))
        for _ in range(repeats):
            spent.update({name: 0.0 for name in stages})
            total = time_once(lambda: CCA(k, reg=reg).fit(X, Y).transform(X, Y))
            for name in stages:
                results[name].append(spent[name])
            results["fit + transform"].append(total)
    finally:
        for name, (owner, attribute) in stages.items():
            setattr(owner, attribute, originals[name])
    return results


def _quartiles(values) -> str:
    low, _, high = statistics.quantiles(values, n=4)
    return f"{low:.2f}-{high:.2f}"


def time_against_floor(X, Y, k: int, reg: float, repeats: int) -> tuple[list[float], list[float]]:
    """(floor seconds, ours seconds), interleaved, after a warm-up of each."""

    def floor():
        return X.T @ X, Y.T @ Y, X.T @ Y

    def ours():
        return CCA(k, reg=reg).fit(X, Y).transform(X, Y)

    ours()  # warm-up: first BLAS calls start their thread pools
    floor()
    floor_times, our_times = [], []
    for _ in range(repeats):
        floor_times.append(time_once(floor))
        our_times.append(time_once(ours))
    return floor_times, our_times


def rows(*, quick: bool = False, precisions=None) -> list[dict]:
    """The suite's rows: CCA fit + transform against the covariance products and against
    scikit-learn's CCA (synthetic planted views, float64; ``precisions`` does not apply
    to this NumPy code). ``quick``: 2000 x 50 + 50 features, k=5."""
    from sklearn.cross_decomposition import CCA as SklearnCCA

    n, features, k, repeats = (2000, 50, 5, 9) if quick else (10000, 392, 50, 15)
    X, Y = planted_views(n, features)
    floor_times, our_times = time_against_floor(X, Y, k, 0.0, repeats)
    best_floor, best_ours = min(floor_times), min(our_times)
    sklearn_time = time_once(lambda: SklearnCCA(k, max_iter=500).fit(X, Y).transform(X, Y))
    what = f"fit+transform, n={n}, {features}+{features} features, k={k}"
    return [
        {
            "benchmark": "linear CCA",
            "what": what,
            "precision": "float64",
            "floor": "X^T X, Y^T Y, X^T Y (NumPy)",
            "floor_ms": best_floor * 1e3,
            "step_ms": best_ours * 1e3,
            "ratio": best_ours / best_floor,
            "paired_ratio": statistics.median(o / f for f, o in zip(floor_times, our_times)),
        },
        {
            "benchmark": "linear CCA",
            "what": what,
            "precision": "float64",
            "floor": "scikit-learn CCA (NIPALS), 1 run",
            "floor_ms": sklearn_time * 1e3,
            "step_ms": best_ours * 1e3,
            "ratio": best_ours / sklearn_time,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--features", type=int, default=392)
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--reg", type=float, default=None, help="ridge; default 0 for synthetic data, 1e-4 for MNIST")
    parser.add_argument("--data-dir", default=None, help="folder with mnist.npz: real halves")
    parser.add_argument(
        "--stages", action="store_true", help="also time each stage of fit + transform (best and median)"
    )
    parser.add_argument("--with-sklearn", action="store_true", help="also time sklearn.cross_decomposition.CCA (slow)")
    args = parser.parse_args()

    if args.data_dir:
        X, Y = mnist_views(args.data_dir, args.samples)
        source = f"split-MNIST halves from {args.data_dir}"
        reg = 1e-4 if args.reg is None else args.reg
    else:
        X, Y = planted_views(args.samples, args.features)
        source = "synthetic views with a planted 50-d latent"
        reg = 0.0 if args.reg is None else args.reg
    k = args.components
    print(f"data: {source}; X {X.shape}, Y {Y.shape}, float64, k={k}, reg={reg}")

    floor_times, our_times = time_against_floor(X, Y, k, reg, args.repeats)
    best_floor, best_ours = min(floor_times), min(our_times)
    print(
        f"{'covariance products (floor)':32s} best {best_floor * 1e3:8.1f} ms   "
        f"median {statistics.median(floor_times) * 1e3:8.1f} ms"
    )
    print(
        f"{'xmodal_tf CCA fit+transform':32s} best {best_ours * 1e3:8.1f} ms   "
        f"median {statistics.median(our_times) * 1e3:8.1f} ms"
    )
    paired = [ours_time / floor_time for floor_time, ours_time in zip(floor_times, our_times)]
    print(
        f"ratio ours / floor: best {best_ours / best_floor:.2f}x   "
        f"median of paired runs {statistics.median(paired):.2f}x "
        f"(quartiles {_quartiles(paired)}; target <= 1.5x)"
    )
    model = CCA(k, reg=reg).fit(X, Y)
    print(f"top-{k} total correlation on the fitted data: {model.canonical_correlations_.sum():.4f}")

    if args.stages:
        print(
            f"stages of fit + transform ({args.repeats} repeats; the eigh is part of the "
            "triplets, the cross-covariance centring also of the whitening):"
        )
        for name, times in stage_times(X, Y, k, reg, args.repeats).items():
            print(f"  {name:34s} best {min(times) * 1e3:8.2f} ms   median {statistics.median(times) * 1e3:8.2f} ms")

    if args.with_sklearn:
        from sklearn.cross_decomposition import CCA as SklearnCCA

        print("timing sklearn.cross_decomposition.CCA (NIPALS, one run) ...", flush=True)
        sklearn_time = time_once(lambda: SklearnCCA(k, max_iter=500).fit(X, Y).transform(X, Y))
        print(
            f"{'sklearn CCA fit+transform':32s} {sklearn_time * 1e3:8.1f} ms   = {sklearn_time / best_ours:.0f}x ours"
        )


if __name__ == "__main__":
    main()
