"""Run every benchmark and write one Markdown table.

    python -m benchmarks                          # all of them; writes benchmarks/results.md
    python -m benchmarks --quick                  # short runs (a few minutes in all)
    python -m benchmarks --only models --precisions float32
    make bench ARGS="--quick --output /tmp/bench.md"

A module of ``benchmarks.BENCHMARKS`` that is missing, or has no ``rows()`` yet, is
skipped with a printed note (and a note under the table).

Each benchmark runs in a process of its own (``--in-process`` runs them all in this
one). In one process, after the NumPy/scikit-learn CCA benchmark, DeepCCA's Trainer
rows came out at 1.80x and 1.95x in two runs, against 1.12x to 1.35x when its
benchmark ran alone (2-core machine; two libraries' thread pools in one process).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import traceback

from benchmarks import BENCHMARKS, ROW_KEYS, TARGET

PRECISIONS = ("float32", "mixed_bfloat16")
COLUMNS = ("benchmark", "what", "precision", "floor", "floor ms", "step ms", "ratio", f"within {TARGET:g}x?")


# ----------------------------------------------------------------------------- environment
def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError:
        return ""


def machine_description() -> str:
    """CPU model, core count and memory (from /proc on Linux)."""
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")
            ),
            None,
        )
        or platform.processor()
        or platform.machine()
    )
    memory = next(
        (line.split()[1] for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), None
    )
    memory_text = f", {int(memory) / 2**20:.1f} GiB memory" if memory else ""
    return f"{cpu}, {os.cpu_count()} cores{memory_text} ({platform.system()} {platform.release()})"


def device_description() -> str:
    """The GPUs TensorFlow sees (name and compute capability), or "CPU only"."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU only"
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        suffix = f" (compute capability {capability[0]}.{capability[1]})" if capability else ""
        names.append(f"{details.get('device_name', gpu.name)}{suffix}")
    return ", ".join(names)


def versions() -> dict:
    """{package: version} of the stack the numbers depend on."""
    found = {"Python": platform.python_version()}
    for label, module in (
        ("TensorFlow", "tensorflow"),
        ("Keras", "keras"),
        ("NumPy", "numpy"),
        ("SciPy", "scipy"),
        ("scikit-learn", "sklearn"),
        ("xmodal_tf", "xmodal_tf"),
    ):
        try:
            found[label] = importlib.import_module(module).__version__
        except Exception:  # noqa: BLE001 (a missing or broken package is reported, not fatal)
            found[label] = "not installed"
    return found


# ----------------------------------------------------------------------------- the table
def _number(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows) -> str:
    """The rows as a Markdown table with ``COLUMNS``."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 3 + [":---:"]) + "|"]
    for row in rows:
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"benchmark row {row!r} lacks {missing}; every row needs {list(ROW_KEYS)}.")
        ratio = row["ratio"]
        within = "n/a" if ratio is None else ("yes" if ratio <= TARGET else "no")
        cells = [
            _cell(row["benchmark"]),
            _cell(row["what"]),
            _cell(row["precision"]),
            _cell(row["floor"]),
            _number(row["floor_ms"], 2),
            _number(row["step_ms"], 2),
            "n/a" if ratio is None else f"{ratio:.2f}x",
            within,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cross_check_table(rows) -> str:
    """The rows that carry ``paired_ratio`` / ``cpu_ratio`` (cross-checks of the ratio on a
    shared machine) as a Markdown table; "" when none does."""
    checked = [row for row in rows if "paired_ratio" in row or "cpu_ratio" in row]
    if not checked:
        return ""
    lines = [
        "| benchmark | what | precision | ratio | paired median ratio | CPU-time ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in checked:
        values = [row.get(key) for key in ("ratio", "paired_ratio", "cpu_ratio")]
        lines.append(
            "| "
            + " | ".join(
                [_cell(row["benchmark"]), _cell(row["what"]), _cell(row["precision"])]
                + ["n/a" if value is None else f"{value:.2f}x" for value in values]
            )
            + " |"
        )
    return "\n".join(lines)


def report(rows, *, machine: str, device: str, package_versions: dict, date: str, command: str, notes=()) -> str:
    """The whole Markdown report: header lines, the table, then notes."""
    parts = [
        "# xmodal_tf benchmarks",
        "",
        f"- Machine: {machine}",
        f"- Device: {device}",
        "- Versions: " + ", ".join(f"{name} {version}" for name, version in package_versions.items()),
        f"- Date: {date}",
        f"- Command: `{command}`",
        f"- Ratio: step time / floor time (best of interleaved repeats); target <= {TARGET:g}x.",
        "",
        markdown_table(rows),
    ]
    checks = cross_check_table(rows)
    if checks:
        parts += [
            "",
            (
                "Cross-checks (paired: median over rounds of step run / floor run of the same round; "
                "CPU time: best process CPU time per step over the floor's, blind to other processes):"
            ),
            "",
            checks,
        ]
    if notes:
        parts += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- running
def load_rows_function(name: str):
    """(rows function, None) for ``benchmarks/bench_<name>.py``, or (None, why it is skipped)."""
    module_name = f"benchmarks.bench_{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None, f"bench_{name}: skipped (no benchmarks/bench_{name}.py)"
        raise
    function = getattr(module, "rows", None)
    if not callable(function):
        return None, f"bench_{name}: skipped (no rows() yet)"
    return function, None


def call_rows(function, *, quick: bool, precisions) -> list[dict]:
    """``function(quick=..., precisions=...)``, leaving out what it does not accept."""
    parameters = inspect.signature(function).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs = {
        key: value
        for key, value in (("quick", quick), ("precisions", tuple(precisions)), ("progress", _print_progress))
        if key in parameters or (accepts_any and key != "progress")
    }
    return list(function(**kwargs))


def run_in_process(name: str, quick: bool, precisions) -> tuple:
    """(rows, note or None) of ``benchmarks/bench_<name>.py`` run here."""
    function, note = load_rows_function(name)
    if function is None:
        print(note, flush=True)
        return [], note
    print(f"bench_{name}: running ...", flush=True)
    try:
        return call_rows(function, quick=quick, precisions=precisions), None
    except Exception:  # noqa: BLE001 (one broken benchmark does not lose the others' rows)
        traceback.print_exc()
        return [], f"bench_{name}: failed ({traceback.format_exc().strip().splitlines()[-1]})"


def run_in_subprocess(name: str, quick: bool, precisions) -> tuple:
    """(rows, note or None) of ``benchmarks/bench_<name>.py`` run in a fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        rows_file = os.path.join(folder, "rows.json")
        command = [sys.executable, "-m", "benchmarks", "--child", name, rows_file, "--precisions", *precisions] + (
            ["--quick"] if quick else []
        )
        completed = subprocess.run(command, check=False)
        if completed.returncode != 0 or not os.path.exists(rows_file):
            return [], f"bench_{name}: failed (its process exited with status {completed.returncode})"
        with open(rows_file, encoding="utf-8") as file:
            result = json.load(file)
    return result["rows"], result["note"]


def _print_progress(row) -> None:
    print(
        f"  {row['benchmark']} | {row['what']} | {row['precision']}: {row['step_ms']:.2f} ms, "
        f"{row['ratio']:.2f}x its floor",
        flush=True,
    )


def _names(only) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = []
    for item in only:
        for name in item.split(","):
            name = name.strip().removeprefix("bench_").removesuffix(".py")
            if name not in BENCHMARKS:
                raise SystemExit(f"--only: unknown benchmark {name!r}; choose from {list(BENCHMARKS)}.")
            names.append(name)
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (less precise)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable or comma-separated): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--output",
        default=os.path.join("benchmarks", "results.md"),
        help="where to write the Markdown report (default: benchmarks/results.md)",
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=list(PRECISIONS),
        metavar="POLICY",
        help="Keras dtype policies for the TensorFlow benchmarks (default: float32 mixed_bfloat16)",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="run every benchmark in this process instead of one process each"
    )
    parser.add_argument("--child", nargs=2, metavar=("NAME", "ROWS_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.child:
        rows, note = run_in_process(args.child[0], args.quick, args.precisions)
        with open(args.child[1], "w", encoding="utf-8") as file:
            json.dump({"rows": rows, "note": note}, file)
        return 0

    command = "python -m benchmarks" + "".join(
        " " + shlex.quote(arg) for arg in (sys.argv[1:] if argv is None else argv)
    )
    all_rows, notes = [], []
    for name in _names(args.only):
        rows, note = (run_in_process if args.in_process else run_in_subprocess)(name, args.quick, args.precisions)
        if note:
            notes.append(note)
        all_rows.extend(rows)

    text = report(
        all_rows,
        machine=machine_description(),
        device=device_description(),
        package_versions=versions(),
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=command,
        notes=notes,
    )
    print(text)
    directory = os.path.dirname(args.output)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as file:
        file.write(text)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
