"""DCCAE's reconstruction weight (the paper's lambda) swept over orders of magnitude.

    python benchmarks/bench_dccae_sweep.py --data split_mnist --data-dir ../shared/data \\
        --weights 0 0.001 0.01 0.1 1 10 --set epochs=10 --set unshifted_final_epochs=2
    python benchmarks/bench_dccae_sweep.py                     # two_view_digits, offline

Each weight W is one run of the ``deepcca`` experiment's protocol, in its own process::

    python -m xmodal_tf.train deepcca --set models='["dccae"]' --set reconstruction_weight=W ...

(W = 0 is plain DeepCCA: the experiment then builds no decoders.) The networks train
on the training split, a linear CCA is fitted on their training outputs (its ridge
picked on validation), and the total correlation of the top k canonical directions
is reported on train, validation and test. Pick the weight on the validation column;
the test column is there to be read once, for the weight picked. ``--seeds`` repeats
every weight with several seeds and also prints the mean per weight. Extra ``--set``
options go to every run (a smaller budget, other hidden units...).

Reconstruction-dominated end: the reconstruction term is an example's squared error
summed over the 392 pixels of a half MNIST image, against a total correlation of at
most k = 50; at weight 10 the encoders keep little more than linear CCA finds.

Measured 2026-12-06 on the shared 2-core CPU (load 6-14 from other jobs, so the
seconds are only rough), split MNIST with a reduced budget (10 epochs, the last 2
unshifted, hidden units [512, 512]; the default recipe is 50 epochs of [1024, 1024])::

    python benchmarks/bench_dccae_sweep.py --data split_mnist --data-dir ../shared/data \
        --weights 0 0.001 0.01 0.1 1 10 --set epochs=10 --set unshifted_final_epochs=2 \
        --set 'hidden_units=[512,512]'

      weight    train    valid     test  train s  total s
           0   45.495   45.268   45.345    106.5    186.8     (DeepCCA, no decoders)
       0.001   45.534   45.337   45.390    190.2    283.5     (best on validation)
        0.01   45.493   45.330   45.348    192.3    296.4     (DeepCCA's default)
         0.1   45.228   45.045   45.067    168.6    231.7
           1   42.806   42.591   42.596    169.1    247.2
          10   30.401   30.259   30.227    143.5    215.0     (linear CCA: 28.7)

Seed 1 (``--seeds 1``), same budget: weight 0 gives 45.465 / 45.282 / 45.323, 0.01
gives 45.467 / 45.278 / 45.317 and 0.1 gives 45.217 / 45.011 / 45.054 (train / valid /
test): 0.001-0.01 are Deep CCA within seed noise (about 0.05), 0.1 costs 0.25 twice.

Two-view digits, default recipe, seeds 0 and 1, means (``--weights 0 0.0001 0.001
0.01 0.1 1 10 --seeds 0 1``): valid 7.860, 7.937, 7.939, 7.929, 7.906, 7.774, 7.328.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(weight: float, seed: int, args, logdir: str) -> dict:
    command = [
        sys.executable,
        "-m",
        "xmodal_tf.train",
        "deepcca",
        "--logdir",
        logdir,
        "--seed",
        str(seed),
        "--set",
        f'data="{args.data}"',
        "--set",
        'models=["dccae"]',
        "--set",
        f"reconstruction_weight={weight!r}",
        "--checkpoint-seconds",
        "100000",
    ]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    for setting in args.set or []:
        command += ["--set", setting]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-3000:])
        raise SystemExit(f"run failed (exit {completed.returncode}): {' '.join(command)}")
    with open(os.path.join(logdir, "metrics.json")) as file:
        result = json.load(file)["results"]["dccae"]
    return {
        "weight": weight,
        "seed": seed,
        "train": result["train_total_correlation"],
        "valid": result["validation_total_correlation"],
        "test": result["test_total_correlation"],
        "train_seconds": result["train_seconds"],
        "seconds": seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="two_view_digits", choices=("two_view_digits", "split_mnist"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.001, 0.01, 0.1, 1.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="passed to every run")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)

    rows = []
    print(f"DCCAE reconstruction weight sweep on {args.data}; extra settings: {args.set or 'none'}")
    print(f"{'weight':>8} {'seed':>4} {'train':>8} {'valid':>8} {'test':>8} {'train s':>8} {'total s':>8}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for weight in args.weights:
            for seed in args.seeds:
                row = run_one(weight, seed, args, os.path.join(folder, f"w{weight:g}-s{seed}"))
                rows.append(row)
                print(
                    f"{weight:8g} {seed:4d} {row['train']:8.3f} {row['valid']:8.3f} {row['test']:8.3f} "
                    f"{row['train_seconds']:8.1f} {row['seconds']:8.1f}",
                    flush=True,
                )
    if len(args.seeds) > 1:
        print("\nmeans over seeds")
        print(f"{'weight':>8} {'train':>8} {'valid':>8} {'test':>8}")
        for weight in args.weights:
            mine = [row for row in rows if row["weight"] == weight]
            print(
                f"{weight:8g} "
                + " ".join(f"{statistics.mean(r[key] for r in mine):8.3f}" for key in ("train", "valid", "test"))
            )
    by_weight = {}
    for row in rows:
        by_weight.setdefault(row["weight"], []).append(row["valid"])
    best = max(by_weight, key=lambda w: statistics.mean(by_weight[w]))
    print(f"\nbest weight on validation: {best:g}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
