"""Speed of ``xmodal_tf.metrics.linear_probe`` against the probe it replaced (issue 16).

Old: scikit-learn's ``make_pipeline(StandardScaler(), LogisticRegression(C=1, max_iter=1000))``
     (lbfgs, multinomial), what ``linear_probe`` ran before.
New: ``xmodal_tf.metrics.linear_probe`` (same objective, L-BFGS in whitened coordinates).
Both run in the same process on the same features, old first, and both score the same
test set; the script prints the seconds of each, the speed-up (old / new) and both test
accuracies.

Features: 60000 x 64 "codes" of the MNIST training images (10000 of the test images) made
by a fixed random network, pixels/255 -> 512 ReLU units (random weights and biases) -> a
nearly rank-20 random linear map to 64, so the codes are correlated and on very different
scales, as learned codes often are. Without ``mnist.npz``, synthetic clustered data of the
same shape (10 Gaussian clusters seen through the same kind of map).

    python benchmarks/bench_probe.py                            # ../shared/data/mnist.npz if present
    python benchmarks/bench_probe.py --data-dir ../shared/data --repeats 3
    python benchmarks/bench_probe.py --samples 20000            # fewer training rows
    python -m benchmarks --only probe                           # rows(): the suite's table
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def _random_codes(pixels_train: np.ndarray, pixels_test: np.ndarray, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    inputs = pixels_train.shape[1]
    hidden = rng.standard_normal((inputs, 512)) / np.sqrt(inputs) * 3
    bias = rng.standard_normal(512) * 0.5
    mixing = (
        rng.standard_normal((512, 20)) @ rng.standard_normal((20, dim)) + 0.05 * rng.standard_normal((512, dim))
    ) / np.sqrt(512)

    def codes(pixels):
        return np.maximum(pixels @ hidden.astype(np.float32) + bias.astype(np.float32), 0) @ mixing.astype(np.float32)

    return codes(pixels_train), codes(pixels_test)


def probe_data(data_dir: str | None = None, n_train: int = 60000, n_test: int = 10000, dim: int = 64, seed: int = 0):
    """(train codes, train labels, test codes, test labels, description), float32 codes."""
    path = os.path.join(data_dir or DEFAULT_DATA_DIR, "mnist.npz")
    if os.path.exists(path):
        with np.load(path) as mnist:
            x_train = mnist["x_train"][:n_train].reshape(-1, 784).astype(np.float32) / 255
            x_test = mnist["x_test"][:n_test].reshape(-1, 784).astype(np.float32) / 255
            y_train, y_test = mnist["y_train"][:n_train].astype(np.int64), mnist["y_test"][:n_test].astype(np.int64)
        source = f"random-network codes of MNIST ({os.path.normpath(path)})"
    else:
        rng = np.random.default_rng(seed + 1)
        centres = rng.standard_normal((10, 100)) * 0.6
        y_train, y_test = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)
        x_train = (centres[y_train] + rng.standard_normal((n_train, 100))).astype(np.float32)
        x_test = (centres[y_test] + rng.standard_normal((n_test, 100))).astype(np.float32)
        source = "random-network codes of synthetic clusters (no mnist.npz found)"
    train, test = _random_codes(x_train, x_test, dim, seed)
    return train, y_train, test, y_test, f"{source}: {len(train)} x {dim} train, {len(test)} test, 10 classes"


def old_probe(train, train_labels, test, test_labels, *, C: float = 1.0, max_iter: int = 1000) -> dict:
    """The probe before issue 16: scikit-learn's pipeline, lbfgs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
        probe.fit(train, train_labels)
    return {
        "accuracy": float(np.mean(probe.predict(test) == test_labels)),
        "train_accuracy": float(probe.score(train, train_labels)),
        "iterations": int(np.max(probe[-1].n_iter_)),
        "warnings": [str(w.message)[:80] for w in caught],
    }


def compare(train, train_labels, test, test_labels, repeats: int = 1) -> dict:
    """Seconds (best of ``repeats``) and accuracies of the old and the new probe, old first
    in each round."""
    from xmodal_tf.metrics import linear_probe

    old_times, new_times, old_cpu, new_cpu = [], [], [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        old = old_probe(train, train_labels, test, test_labels)
        old_times.append(time.perf_counter() - start)
        old_cpu.append(time.process_time() - start_cpu)
        start, start_cpu = time.perf_counter(), time.process_time()
        new = linear_probe(train, train_labels, test, test_labels)
        new_times.append(time.perf_counter() - start)
        new_cpu.append(time.process_time() - start_cpu)
    return {
        "old_s": min(old_times),
        "new_s": min(new_times),
        "speedup": min(old_times) / min(new_times),
        "old_cpu_s": min(old_cpu),
        "new_cpu_s": min(new_cpu),
        "cpu_speedup": min(old_cpu) / min(new_cpu),
        "old_accuracy": old["accuracy"],
        "new_accuracy": new["accuracy"],
        "old_train_accuracy": old["train_accuracy"],
        "new_train_accuracy": new["train_accuracy"],
        "old_iterations": old["iterations"],
        "old_warnings": old["warnings"],
        "old_times": old_times,
        "new_times": new_times,
    }


def rows(*, quick: bool = False, precisions=None) -> list[dict]:
    """The suite's row: the new probe against the old one (one run each, float64 inside
    both; ``precisions`` does not apply). ``quick``: 10000 training rows instead of 60000."""
    n_train = 10000 if quick else 60000
    train, train_labels, test, test_labels, _ = probe_data(n_train=n_train)
    result = compare(train, train_labels, test, test_labels)
    return [
        {
            "benchmark": "linear probe",
            "what": f"fit+score, {len(train)} x {train.shape[1]} codes, 10 classes",
            "precision": "float64",
            "floor": "old probe: scikit-learn lbfgs, 1 run",
            "floor_ms": result["old_s"] * 1e3,
            "step_ms": result["new_s"] * 1e3,
            "ratio": result["new_s"] / result["old_s"],
            "cpu_ratio": result["new_cpu_s"] / result["old_cpu_s"],
            "old_accuracy": result["old_accuracy"],
            "new_accuracy": result["new_accuracy"],
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with mnist.npz (default ../shared/data)")
    parser.add_argument("--samples", type=int, default=60000, help="training rows")
    parser.add_argument("--dim", type=int, default=64, help="code dimension")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of old + new; best of each is reported")
    args = parser.parse_args()

    train, train_labels, test, test_labels, description = probe_data(args.data_dir, args.samples, dim=args.dim)
    print(description)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPU cores, load average {load:.1f} at the start")
    result = compare(train, train_labels, test, test_labels, args.repeats)
    print(
        f"| probe | seconds | CPU seconds | test accuracy | train accuracy |\n|---|---:|---:|---:|---:|\n"
        f"| old: scikit-learn lbfgs ({result['old_iterations']} iterations) | {result['old_s']:.2f} | "
        f"{result['old_cpu_s']:.2f} | {100 * result['old_accuracy']:.2f}% | "
        f"{100 * result['old_train_accuracy']:.2f}% |\n"
        f"| new: linear_probe | {result['new_s']:.2f} | {result['new_cpu_s']:.2f} | "
        f"{100 * result['new_accuracy']:.2f}% | {100 * result['new_train_accuracy']:.2f}% |"
    )
    print(
        f"speed-up (old / new): {result['speedup']:.1f}x in seconds, {result['cpu_speedup']:.1f}x in CPU seconds; "
        f"accuracy difference (new - old): "
        f"{100 * (result['new_accuracy'] - result['old_accuracy']):+.2f} points"
    )
    if args.repeats > 1:
        print("all old seconds:", ", ".join(f"{t:.2f}" for t in result["old_times"]))
        print("all new seconds:", ", ".join(f"{t:.2f}" for t in result["new_times"]))
    if result["old_warnings"]:
        print("old probe warned:", result["old_warnings"])


if __name__ == "__main__":
    main()
