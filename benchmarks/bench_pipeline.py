"""Input pipelines against the same batches held as in-memory tensors.

    python benchmarks/bench_pipeline.py                 # generated arrays of real sizes
    python benchmarks/bench_pipeline.py --quick         # small sizes, well under a minute
    python benchmarks/bench_pipeline.py --data-dir ../shared/data   # MNIST, AV-MNIST files
    python benchmarks/bench_pipeline.py --iterate-only  # no training step: the pipeline alone

Each row feeds one small training step (a 256-unit ReLU layer on every float input,
flattened and concatenated, then SGD on a squared output) from an ``xmodal_tf.data``
pipeline, ``steps`` steps in one ``tf.function`` that calls ``next(iterator)`` as the
Trainer does. The floor is the same step on the same batches, built beforehand and
stacked as tensors, picked by index in the same loop. Runs alternate (floor, pipeline,
floor, ...); each figure is the best per-batch time of ``repeats`` runs, and the ratio
is pipeline / floor: 1.0 means the step never waits for its input. On a CPU-only machine
the pipeline's threads share the cores with the step, so a ratio here is an upper bound
of what a GPU step (which leaves the cores to the pipeline) sees.

``rows(quick=..., precisions=...)`` returns the table for the suite runner.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

from xmodal_tf.data import (
    balanced_dataset,
    load_av_mnist,
    load_split_mnist,
    load_two_view_digits,
    make_dataset,
    map_random_shifts,
    random_shift_pairs,
    resolve_data_dir,
)

FLOOR = "same batches from in-memory tensors"
HIDDEN_UNITS = 256
COMPUTE_DTYPES = {
    "float32": tf.float32,
    "bfloat16": tf.bfloat16,
    "mixed_bfloat16": tf.bfloat16,
    "float16": tf.float16,
    "mixed_float16": tf.float16,
}
SIZES = {  # examples per generated data set: (full, quick)
    "split_mnist": (50000, 8000),
    "av_mnist": (20000, 4000),
}


# ---------------------------------------------------------------------- data


def _split_mnist_halves(data_dir, quick: bool):
    """(left, right, labels) of split-MNIST: real if mnist.npz is found, else generated."""
    n = SIZES["split_mnist"][quick]
    if data_dir is not None and (data_dir / "mnist.npz").is_file():
        train = load_split_mnist(data_dir, download=False).train
        return train.view1[:n], train.view2[:n], train.labels[:n], "MNIST"
    rng = np.random.default_rng(0)
    left, right = (rng.random((n, 392), dtype=np.float32) for _ in range(2))
    return left, right, rng.integers(0, 10, n), "generated"


def _av_mnist(data_dir, quick: bool):
    """({"image", "audio"}, labels) at AV-MNIST's shapes: real if both files are found."""
    n = SIZES["av_mnist"][quick]
    if data_dir is not None and all((data_dir / name).is_file() for name in ("mnist.npz", "fsdd_mfcc.npz")):
        train = load_av_mnist(data_dir, train_size=n).train
        return train.inputs, train.labels, "AV-MNIST"
    rng = np.random.default_rng(1)
    inputs = {
        "image": rng.random((n, 28, 28, 1), dtype=np.float32),
        "audio": rng.standard_normal((n, 92, 13), dtype=np.float32),
    }
    return inputs, rng.integers(0, 10, n), "generated"


def pipelines(data_dir=None, *, quick: bool = False) -> list[tuple[str, tf.data.Dataset]]:
    """(what, endless dataset of equal-shaped batches) for each main pipeline."""
    digits = load_two_view_digits().train
    left, right, labels, mnist_source = _split_mnist_halves(data_dir, quick)
    av_inputs, av_labels, av_source = _av_mnist(data_dir, quick)
    # A class-imbalanced subset for balanced_dataset: class c keeps 1 / (c + 1) of its rows.
    keep = np.random.default_rng(2).random(len(av_labels)) < 1.0 / (av_labels + 1)
    imbalanced = ({name: array[keep] for name, array in av_inputs.items()}, av_labels[keep])
    unshuffled_rows = len(labels) - len(labels) % 256  # a multiple of the batch: batches cached
    return [
        (
            f"make_dataset two-view digits {len(digits.labels)} x (32 + 32), batch 128",
            make_dataset(digits, batch_size=128, seed=0, repeat=True, drop_remainder=True),
        ),
        (
            f"make_dataset split-MNIST ({mnist_source}) {len(labels)} x (392 + 392), batch 256",
            make_dataset((left, right), labels, batch_size=256, seed=0, repeat=True, drop_remainder=True),
        ),
        (
            "make_dataset + random_shift_pairs, sequential map (as deepcca), batch 256",
            make_dataset((left, right), batch_size=256, seed=0, repeat=True, drop_remainder=True)
            .map(random_shift_pairs(((28, 14, 1), (28, 14, 1)), max_shift=2, seed=0))
            .prefetch(tf.data.AUTOTUNE),
        ),
        (
            "make_dataset + map_random_shifts (same shifts, parallel pixels), batch 256",
            map_random_shifts(
                make_dataset((left, right), batch_size=256, seed=0, repeat=True, drop_remainder=True),
                random_shift_pairs(((28, 14, 1), (28, 14, 1)), max_shift=2, seed=0),
            ),
        ),
        (
            f"make_dataset unshuffled, cached, split-MNIST {unshuffled_rows} rows, batch 256",
            make_dataset(
                (left[:unshuffled_rows], right[:unshuffled_rows]),
                labels[:unshuffled_rows],
                batch_size=256,
                shuffle=False,
                repeat=True,
            ),
        ),
        (
            f"make_dataset dict ({av_source}) {len(av_labels)} x image 28x28 + audio 92x13, batch 128",
            make_dataset(av_inputs, av_labels, batch_size=128, seed=0, repeat=True, drop_remainder=True),
        ),
        (
            f"balanced_dataset dict ({av_source}) {int(keep.sum())} imbalanced rows, batch 128",
            balanced_dataset(*imbalanced, batch_size=128, seed=0),
        ),
    ]


# ---------------------------------------------------------------------- the step


def make_step(element_spec, compute_dtype, iterate_only: bool):
    """step(batch): one SGD step of a ReLU layer on all float leaves of the batch."""
    float_specs = [spec for spec in tf.nest.flatten(element_spec) if spec.dtype.is_floating]
    features = sum(int(np.prod(spec.shape[1:])) for spec in float_specs)
    rng = np.random.default_rng(0)
    hidden = tf.Variable(rng.normal(0, features**-0.5, (features, HIDDEN_UNITS)).astype(np.float32))
    output = tf.Variable(rng.normal(0, HIDDEN_UNITS**-0.5, (HIDDEN_UNITS, 1)).astype(np.float32))
    checksum = tf.Variable(0.0)

    def step(batch):
        leaves = [leaf for leaf in tf.nest.flatten(batch) if leaf.dtype.is_floating]
        if iterate_only:  # touch every leaf, nothing more
            checksum.assign_add(tf.add_n([tf.reduce_sum(leaf[:1]) for leaf in leaves]))
            return
        rows = tf.shape(leaves[0])[0]
        x = tf.concat([tf.cast(tf.reshape(leaf, (rows, -1)), compute_dtype) for leaf in leaves], axis=1)
        with tf.GradientTape() as tape:
            h = tf.nn.relu(x @ tf.cast(hidden, compute_dtype))
            loss = tf.reduce_mean(tf.cast(h @ tf.cast(output, compute_dtype), tf.float32) ** 2)
        for variable, gradient in zip((hidden, output), tape.gradient(loss, (hidden, output))):
            variable.assign_sub(0.01 * gradient)

    return step


def time_pipeline(dataset, *, steps: int, repeats: int, compute_dtype, iterate_only: bool = False):
    """(floor_ms, step_ms): best per-batch ms of the step fed from in-memory tensors and
    from the pipeline, runs interleaved."""
    step = make_step(dataset.element_spec, compute_dtype, iterate_only)
    iterator = iter(dataset)
    held = [next(iterator) for _ in range(min(steps, 16))]
    stacked = tf.nest.map_structure(lambda *leaves: tf.stack(leaves), *held)
    count = len(held)

    @tf.function
    def from_pipeline(steps):
        for _ in tf.range(steps):
            step(next(iterator))

    @tf.function
    def from_tensors(steps):
        for index in tf.range(steps):
            position = index % count
            step(tf.nest.map_structure(lambda leaf, position=position: leaf[position], stacked))

    # Warm up: trace both, let AUTOTUNE settle and fill the cache of the unshuffled pipeline
    # (its one pass, 195 batches at full size and 31 quick, is shorter than 16 + 2 * steps).
    from_tensors(tf.constant(2))
    from_pipeline(tf.constant(2 * steps))
    best = {"floor": float("inf"), "pipeline": float("inf")}
    for _ in range(repeats):
        for name, run in (("floor", from_tensors), ("pipeline", from_pipeline)):
            began = time.perf_counter()
            run(tf.constant(steps))
            best[name] = min(best[name], (time.perf_counter() - began) * 1e3 / steps)
    return best["floor"], best["pipeline"]


# ---------------------------------------------------------------------- table


def rows(*, quick: bool = False, precisions=("float32",), data_dir=None, iterate_only: bool = False) -> list[dict]:
    """One dict per (pipeline, precision): benchmark, what, precision, floor, floor_ms,
    step_ms (per batch through the pipeline), ratio (step_ms / floor_ms)."""
    unknown = [name for name in precisions if name not in COMPUTE_DTYPES]
    if unknown:
        raise ValueError(f"unknown precisions {unknown}; use names from {sorted(COMPUTE_DTYPES)}")
    data_dir = resolve_data_dir(data_dir)
    steps, repeats = (20, 3) if quick else (100, 7)
    table = []
    for what, dataset in pipelines(data_dir, quick=quick):
        for precision in precisions:
            floor_ms, step_ms = time_pipeline(
                dataset,
                steps=steps,
                repeats=repeats,
                compute_dtype=COMPUTE_DTYPES[precision],
                iterate_only=iterate_only,
            )
            table.append(
                {
                    "benchmark": "input pipeline",
                    "what": what,
                    "precision": precision,
                    "floor": FLOOR,
                    "floor_ms": floor_ms,
                    "step_ms": step_ms,
                    "ratio": step_ms / floor_ms,
                }
            )
    return table


def print_table(table: list[dict]) -> None:
    width = max(len(row["what"]) for row in table)
    print(f"{'pipeline':<{width}}  {'precision':<9}  {'floor ms':>9}  {'pipeline ms':>11}  {'ratio':>6}")
    for row in table:
        print(
            f"{row['what']:<{width}}  {row['precision']:<9}  {row['floor_ms']:>9.3f}  "
            f"{row['step_ms']:>11.3f}  {row['ratio']:>6.2f}"
        )
    print(f"floor: {FLOOR}; ms per batch, best of the interleaved runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, few steps (under a minute)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with mnist.npz (and fsdd_mfcc.npz); default $XMODAL_DATA_DIR, else generated arrays",
    )
    parser.add_argument(
        "--precision",
        action="append",
        choices=sorted(COMPUTE_DTYPES),
        help="the step's compute dtype (repeatable); default float32",
    )
    parser.add_argument(
        "--iterate-only", action="store_true", help="no training step: time the pipeline alone against the tensors"
    )
    args = parser.parse_args()
    began = time.perf_counter()
    table = rows(
        quick=args.quick,
        precisions=tuple(args.precision or ("float32",)),
        data_dir=args.data_dir,
        iterate_only=args.iterate_only,
    )
    print_table(table)
    print(
        f"({time.perf_counter() - began:.0f} s, TensorFlow {tf.__version__}, "
        f"{os.cpu_count()} CPU cores, devices: "
        f"{', '.join(device.device_type for device in tf.config.list_logical_devices())})"
    )


if __name__ == "__main__":
    main()
