"""One command, several seeds: mean ± std of every figure a run reports.

``python -m xmodal_tf.train EXPERIMENT --seeds N`` runs the experiment once per seed
(``--seed``, ``--seed + 1``, ...), each in its own run directory ``<logdir>/seed-<S>``
(so each seed resumes, or is only summarised, on its own), then writes
``<logdir>/seeds.json``: for every number in the runs' ``metrics.json`` (booleans,
lists and the bookkeeping keys ``run`` and ``trained_models`` aside) its mean, its
standard deviation (population, ``ddof=0``) and the value of each seed. Experiments
with a ``seeds`` setting of their own (fusion, transfer, crossmodal) repeat inside one
run; for them ``--seeds N`` is ``--set seeds=N``.
"""

from __future__ import annotations

import math
import pathlib

__all__ = ["SKIPPED_KEYS", "aggregate", "seed_directory", "spread_lines"]

SKIPPED_KEYS = ("run", "trained_models")  # per-run bookkeeping, not figures


def seed_directory(logdir, seed: int) -> pathlib.Path:
    """``<logdir>/seed-<seed>``: one seed's run directory."""
    return pathlib.Path(logdir) / f"seed-{seed}"


def aggregate(runs: list[dict]) -> dict:
    """The mean, standard deviation and values of the runs' metrics.

    Args:
        runs: the runs' metrics.

    Returns:
        ``{"mean": ..., "std": ..., "values": ...}``. Each part has the metrics'
        nesting, holding only the numbers found at the same key in every run: ``mean``
        and ``std`` (population) of the numbers, ``values`` the list of them, one per
        run, in the runs' order.
    """
    if not runs:
        raise ValueError("aggregate needs the metrics of at least one run; got none.")
    mean, std, values = {}, {}, {}
    for key in runs[0]:
        if key in SKIPPED_KEYS or not all(key in run for run in runs):
            continue
        items = [run[key] for run in runs]
        if all(isinstance(item, dict) for item in items):
            nested = aggregate(items)
            if nested["values"]:
                mean[key], std[key], values[key] = nested["mean"], nested["std"], nested["values"]
        elif all(_is_number(item) for item in items):
            center = sum(items) / len(items)
            mean[key] = center
            std[key] = math.sqrt(sum((item - center) ** 2 for item in items) / len(items))
            values[key] = list(items)
    return {"mean": mean, "std": std, "values": values}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def spread_lines(summary: dict, prefix: str = "") -> list[str]:
    """Summary lines ``"key.path  mean ± std  (v0 / v1 / ...)"``.

    Args:
        summary: what ``aggregate`` returned.
        prefix: the dotted path of ``summary`` in the whole summary.

    Returns:
        One line for every number that differs between the seeds (settings and counts
        that every seed shares are left out).
    """
    lines = []
    for key, center in summary["mean"].items():
        path = f"{prefix}{key}"
        if isinstance(center, dict):
            lines += spread_lines({part: summary[part][key] for part in ("mean", "std", "values")}, f"{path}.")
        elif len(set(summary["values"][key])) > 1:
            each = " / ".join(f"{value:.4g}" for value in summary["values"][key])
            lines.append(f"  {path:<58} {center:.4g} ± {summary['std'][key]:.2g}  ({each})")
    return lines
