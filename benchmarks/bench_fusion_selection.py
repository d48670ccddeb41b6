"""The fusion experiment's modality-dropout settings, chosen on the validation split.

    python benchmarks/bench_fusion_selection.py                          # digits, offline
    python benchmarks/bench_fusion_selection.py --data av_mnist --data-dir ../shared/data
    python benchmarks/bench_fusion_selection.py --weights 0 1 --distillations 0 --dropouts 0.3 \\
        --seeds 3 --set 'strategies=["concat", "late"]'
    python benchmarks/bench_fusion_selection.py --quick                  # a smoke run of seconds

Sweeps ``unimodal_loss_weight`` x ``unimodal_distillation`` x ``modality_dropout`` (a weight
of 0 has no unimodal losses, so it runs once, whatever the distillation), and with
``--teachers`` / ``--heads`` also ``unimodal_teacher_distillation`` (the share of the
single-modality classifiers' predictions in the unimodal targets; pairs whose shares
sum above 1 are skipped) x ``unimodal_head``. Each setting is one run of the ``fusion``
experiment in its own process, its seeds in that run::

    python -m xmodal_tf.train fusion --seed S --set seeds=N --set unimodal_loss_weight=W \\
        --set unimodal_distillation=D --set modality_dropout=P \\
        [--set unimodal_teacher_distillation=T --set unimodal_head=H] ...

The settings change only the ``<strategy>_dropout`` classifiers, so a setting's score is
their mean VALIDATION accuracy (over those classifiers and the seeds; each classifier at
its best validation epoch) per condition: complete data and every missing-modality
condition of both modalities. ``--score best`` takes instead, per condition, the best
of those classifiers' validation accuracies (mean over seeds): the quantity the
experiment's missing-modality target reports (its best ``*_dropout`` classifier per
condition, chosen on validation), so that a recipe that lifts one strategy a lot is not
averaged away by the others. The table prints them, with their mean over the
missing-modality conditions. The pick: the highest missing-modality mean; settings
within ``--tie`` of it are ties, decided by complete-data accuracy. Test scores are never
read to choose: ``--show-test`` prints the picked setting's test scores once, after the
choice. Extra ``--set`` options go to every run (budget, strategies, sizes...).
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
QUICK_SETTINGS = (
    "epochs=2",
    'strategies=["concat"]',
    "batch_size=128",
    "encoder_hidden_units=[8]",
    "embedding_dim=4",
    "hidden_units=[8]",
    "missing_fractions=[1.0]",
    "train_size=2000",
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="digits", choices=("digits", "av_mnist"))
    parser.add_argument("--data-dir", default=None, help="the folder of mnist.npz and fsdd_mfcc.npz (av_mnist)")
    parser.add_argument(
        "--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0], help="unimodal_loss_weight values (>= 0)"
    )
    parser.add_argument(
        "--distillations", type=float, nargs="+", default=[0.0, 0.5], help="unimodal_distillation values, in [0, 1]"
    )
    parser.add_argument(
        "--dropouts", type=float, nargs="+", default=[0.3, 0.5], help="modality_dropout values, in (0, 0.5]"
    )
    parser.add_argument(
        "--teachers",
        type=float,
        nargs="+",
        default=None,
        help="unimodal_teacher_distillation values, in [0, 1] (default: the experiment's)",
    )
    parser.add_argument(
        "--heads",
        nargs="+",
        default=None,
        choices=("auxiliary", "fusion"),
        help="unimodal_head values (default: the experiment's)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (the experiment's seeds=)")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument(
        "--tie",
        type=float,
        default=0.002,
        help="missing-modality means this close to the best are ties (decided by complete data)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every run")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of seconds: weights 0 1, distillation 0, dropout 0.3, 1 seed, 2 epochs, "
        "tiny networks (later --set options still apply)",
    )
    parser.add_argument(
        "--score",
        default="mean",
        choices=("mean", "best"),
        help="per condition: the mean over the *_dropout classifiers (default) or the best of them",
    )
    parser.add_argument(
        "--rescore",
        nargs="+",
        default=None,
        metavar="RUN_DIR",
        help="no runs: score and choose among these finished runs' metrics.json (validation only)",
    )
    parser.add_argument("--show-test", action="store_true", help="after choosing, print the picked setting's test row")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.weights, args.distillations, args.dropouts, args.seeds = [0.0, 1.0], [0.0], [0.3], 1
        quick = [
            setting for setting in QUICK_SETTINGS if args.data == "av_mnist" or not setting.startswith("train_size")
        ]
        args.set = quick + args.set
    problems = [f"--weights {w:g}" for w in args.weights if not w >= 0]
    problems += [f"--distillations {d:g}" for d in args.distillations if not 0 <= d <= 1]
    problems += [f"--dropouts {p:g}" for p in args.dropouts if not 0 < p <= 0.5]
    problems += [f"--teachers {t:g}" for t in args.teachers or [] if not 0 <= t <= 1]
    problems += [f"--seeds {args.seeds}"] if args.seeds < 1 else []
    problems += [f"--tie {args.tie:g}"] if not args.tie >= 0 else []
    if problems:
        parser.error(
            "out of range: " + ", ".join(problems) + " (weights >= 0, distillations and teachers in "
            "[0, 1], dropouts in (0, 0.5], seeds >= 1, tie >= 0)"
        )
    return args


def settings_grid(weights, distillations, dropouts, teachers=None, heads=None) -> list[tuple]:
    """(weight, distillation, dropout) to run, in order; weight 0 (no unimodal losses,
    nothing to distil) once per dropout, with distillation 0. With ``teachers`` or
    ``heads`` (None: the experiment's own), (weight, distillation, dropout, teacher,
    head): weight 0 once per dropout with teacher 0 and the first head; a distillation
    and a teacher share summing above 1 are skipped."""
    extended = teachers is not None or heads is not None
    grid = []
    for weight in weights:
        for distillation in [0.0] if weight == 0 else distillations:
            for teacher in [None] if teachers is None else [0.0] if weight == 0 else teachers:
                if teacher is not None and distillation + teacher > 1 + 1e-9:
                    continue
                for head in [None] if heads is None else heads[:1] if weight == 0 else heads:
                    for dropout in dropouts:
                        setting = (weight, distillation, dropout) + ((teacher, head) if extended else ())
                        if setting not in grid:
                            grid.append(setting)
    return grid


def command_for(setting: tuple, args, logdir: str) -> list[str]:
    weight, distillation, dropout = setting[:3]
    command = [
        sys.executable,
        "-m",
        "xmodal_tf.train",
        "fusion",
        "--logdir",
        logdir,
        "--seed",
        str(args.seed),
        "--checkpoint-every",
        "0",
        "--set",
        f'data="{args.data}"',
        "--set",
        f"seeds={args.seeds}",
        "--set",
        f"unimodal_loss_weight={weight!r}",
        "--set",
        f"unimodal_distillation={distillation!r}",
        "--set",
        f"modality_dropout={dropout!r}",
    ]
    if len(setting) > 3:
        teacher, head = setting[3:]
        if teacher is not None:
            command += ["--set", f"unimodal_teacher_distillation={teacher!r}"]
        if head is not None:
            command += ["--set", f'unimodal_head="{head}"']
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    for setting_text in args.set:
        command += ["--set", setting_text]
    return command


def run_one(setting: tuple, args, logdir: str) -> dict:
    """The metrics.json of one run of the fusion experiment at ``setting``."""
    command = command_for(setting, args, logdir)
    completed = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-3000:])
        raise SystemExit(f"run failed (exit {completed.returncode}): {' '.join(command)}")
    with open(os.path.join(logdir, "metrics.json")) as file:
        return json.load(file)


def dropout_scores(metrics: dict, split: str = "validation", how: str = "mean") -> dict:
    """{condition: accuracy} of one run: the mean (``how="mean"``) or the best
    (``"best"``) over its ``*_dropout`` classifiers of their mean over seeds, on
    ``split`` ("validation" to choose; "results" is test), plus "missing_mean", the mean
    over the missing-modality conditions."""
    results = metrics["validation_results" if split == "validation" else "results"]
    names = [name for name in results if name.endswith("_dropout")]
    if not names:
        raise ValueError(f"the run has no *_dropout classifier (classifiers: {sorted(results)}).")
    if how not in ("mean", "best"):
        raise ValueError(f"how must be 'mean' or 'best'; got {how!r}.")
    reduce = statistics.mean if how == "mean" else max
    scores = {
        condition: reduce([results[name][condition]["accuracy"]["mean"] for name in names])
        for condition in metrics["conditions"]
    }
    missing = [value for condition, value in scores.items() if condition != "complete"]
    scores["missing_mean"] = statistics.mean(missing) if missing else scores["complete"]
    return scores


def setting_of(metrics: dict) -> tuple:
    """(weight, distillation, dropout, teacher, head) of a finished run's metrics.json."""
    return (
        float(metrics["unimodal_loss_weight"]),
        float(metrics["unimodal_distillation"]),
        float(metrics["modality_dropout"]),
        float(metrics.get("unimodal_teacher_distillation", 0.0)),
        metrics.get("unimodal_head", "auxiliary"),
    )


def choose(rows: list[dict], tie: float = 0.0) -> dict:
    """The row with the best validation "missing_mean"; rows within ``tie`` of it are
    ties, decided by validation "complete" (then the earlier row). Reads
    ``row["validation"]`` only."""
    if not rows:
        raise ValueError("no rows to choose from.")
    best_missing = max(row["validation"]["missing_mean"] for row in rows)
    tied = [row for row in rows if row["validation"]["missing_mean"] >= best_missing - tie]
    return max(tied, key=lambda row: row["validation"]["complete"])  # (max keeps the first of equals)


def _label(setting: tuple) -> str:
    weight, distillation, dropout = setting[:3]
    label = f"{weight:6g} {('-' if weight == 0 else f'{distillation:g}'):>7} {dropout:7g}"
    if len(setting) > 3:
        teacher, head = setting[3:]
        label += f" {('-' if teacher is None else f'{teacher:g}'):>7} {head or '-':>9}"
    return label


def _short(condition: str) -> str:
    return condition.replace("_missing_", " -")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rescore:
        return rescore(args)
    grid = settings_grid(args.weights, args.distillations, args.dropouts, args.teachers, args.heads)
    extended = args.teachers is not None or args.heads is not None
    print(
        f"fusion settings on {args.data}, {len(grid)} setting(s) x {args.seeds} seed(s) from {args.seed}; "
        f"extra settings: {args.set or 'none'}",
        flush=True,
    )
    print(
        f"validation accuracy: {'mean' if args.score == 'mean' else 'best'} over the *_dropout classifiers "
        "(each a mean over seeds, at its best validation epoch)",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for index, setting in enumerate(grid):
            started = time.perf_counter()
            metrics = run_one(setting, args, os.path.join(folder, f"setting{index}"))
            row = {
                "unimodal_loss_weight": setting[0],
                "unimodal_distillation": setting[1],
                "modality_dropout": setting[2],
                "setting": list(setting),
                "validation": dropout_scores(metrics, "validation", args.score),
                "seconds": time.perf_counter() - started,
                "_metrics": metrics,
            }
            if not rows:
                columns = list(row["validation"])
                print(
                    f"{'weight':>6} {'distil':>7} {'dropout':>7}"
                    + (f" {'teacher':>7} {'head':>9}" if extended else "")
                    + "".join(f" {_short(c):>13}" for c in columns)
                    + f" {'seconds':>8}",
                    flush=True,
                )
            rows.append(row)
            print(
                _label(setting)
                + "".join(f" {row['validation'][c]:13.3f}" for c in columns)
                + f" {row['seconds']:8.1f}",
                flush=True,
            )
    picked = choose(rows, args.tie)
    setting = tuple(picked["setting"])
    extra = ""
    if len(setting) > 3:
        extra = "".join(
            f" {key}={value!r}"
            for key, value in (("unimodal_teacher_distillation", setting[3]), ("unimodal_head", setting[4]))
            if value is not None
        )
    print(
        f"\npicked on validation (best missing-modality mean, ties within {args.tie:g} to complete data): "
        f"unimodal_loss_weight={setting[0]:g} unimodal_distillation={setting[1]:g} modality_dropout={setting[2]:g}"
        + extra
    )
    if args.show_test:  # read once, for the setting already picked
        test = dropout_scores(picked["_metrics"], "test", args.score)
        print("its test accuracy: " + ", ".join(f"{_short(c)} {value:.3f}" for c, value in test.items()))
    if args.json:
        with open(args.json, "w") as file:
            json.dump([{key: value for key, value in row.items() if key != "_metrics"} for row in rows], file, indent=1)
    return 0


def rescore(args) -> int:
    """Score and choose among finished runs (``--rescore DIR ...``, each holding a
    metrics.json of the fusion experiment), on validation only; prints the table."""
    rows = []
    for folder in args.rescore:
        with open(os.path.join(folder, "metrics.json")) as file:
            metrics = json.load(file)
        setting = setting_of(metrics)
        rows.append(
            {
                "unimodal_loss_weight": setting[0],
                "unimodal_distillation": setting[1],
                "modality_dropout": setting[2],
                "setting": list(setting),
                "run": folder,
                "validation": dropout_scores(metrics, "validation", args.score),
                "_metrics": metrics,
            }
        )
    columns = list(rows[0]["validation"])
    print(f"validation accuracy: {args.score} over the *_dropout classifiers (each a mean over seeds)")
    print(
        f"{'weight':>6} {'distil':>7} {'dropout':>7} {'teacher':>7} {'head':>9}"
        + "".join(f" {_short(c):>13}" for c in columns)
        + "  run"
    )
    for row in rows:
        print(
            _label(tuple(row["setting"]))
            + "".join(f" {row['validation'][c]:13.3f}" for c in columns)
            + f"  {row['run']}"
        )
    picked = choose(rows, args.tie)
    print(f"\npicked on validation: {picked['run']} (setting {tuple(picked['setting'])})")
    if args.show_test:
        test = dropout_scores(picked["_metrics"], "test", args.score)
        print("its test accuracy: " + ", ".join(f"{_short(c)} {value:.3f}" for c, value in test.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
