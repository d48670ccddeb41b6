"""The benchmark suite's plumbing (``python -m benchmarks``), on fake rows: no timing runs."""

import inspect
import json
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

import benchmarks  # noqa: E402
from benchmarks import __main__ as suite  # noqa: E402


def fake_rows():
    return [
        {
            "benchmark": "model A",
            "what": "Trainer step",
            "precision": "float32",
            "floor": "fwd+bwd, 1 update",
            "floor_ms": 10.0,
            "step_ms": 11.0,
            "ratio": 1.1,
            "paired_ratio": 1.12,
        },
        {
            "benchmark": "model A",
            "what": "model.fit step",
            "precision": "mixed_bfloat16",
            "floor": "a|b",
            "floor_ms": 10.0,
            "step_ms": 13.456,
            "ratio": 1.3456,
        },
        {
            "benchmark": "pipeline",
            "what": "no floor",
            "precision": "float32",
            "floor": "-",
            "floor_ms": None,
            "step_ms": 2.0,
            "ratio": None,
        },
    ]


def table_lines(text):
    """The lines of the first Markdown table in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def cells(line):
    # Split on pipes that are not escaped.
    parts, current, escaped = [], "", False
    for char in line.strip()[1:-1]:
        if char == "|" and not escaped:
            parts.append(current.strip())
            current = ""
        else:
            current += char
        escaped = char == "\\"
    parts.append(current.strip())
    return parts


def test_markdown_table_has_the_columns_and_one_line_per_row():
    lines = table_lines(suite.markdown_table(fake_rows()))
    assert cells(lines[0]) == [
        "benchmark",
        "what",
        "precision",
        "floor",
        "floor ms",
        "step ms",
        "ratio",
        "within 1.15x?",
    ]
    assert set(lines[1].replace("|", "").replace(":", "")) == {"-"}
    assert len(cells(lines[1])) == 8
    assert len(lines) == 2 + len(fake_rows())
    first, second, third = (cells(line) for line in lines[2:])
    assert first == ["model A", "Trainer step", "float32", "fwd+bwd, 1 update", "10.00", "11.00", "1.10x", "yes"]
    assert second[3] == "a\\|b"  # a pipe in a cell is escaped, so the row keeps 8 cells
    assert second[5:] == ["13.46", "1.35x", "no"]
    assert third[4:] == ["n/a", "2.00", "n/a", "n/a"]


def test_ratio_exactly_at_the_target_is_within():
    row = dict(fake_rows()[0], ratio=benchmarks.TARGET)
    assert cells(table_lines(suite.markdown_table([row]))[2])[-1] == "yes"


def test_a_row_without_a_required_key_is_an_error():
    row = fake_rows()[0]
    del row["floor_ms"]
    with pytest.raises(ValueError, match="floor_ms"):
        suite.markdown_table([row])


def test_report_heads_the_table_with_machine_device_versions_date_and_command():
    text = suite.report(
        fake_rows(),
        machine="Some CPU, 2 cores",
        device="CPU only",
        package_versions={"Python": "3.11.0", "TensorFlow": "2.21.0"},
        date="2026-01-01",
        command="python -m benchmarks --quick",
        notes=["bench_x: skipped (no rows() yet)"],
    )
    lines = text.splitlines()
    header = "\n".join(lines[: lines.index(table_lines(text)[0])])
    for expected in (
        "Machine: Some CPU, 2 cores",
        "Device: CPU only",
        "Python 3.11.0",
        "TensorFlow 2.21.0",
        "Date: 2026-01-01",
        "`python -m benchmarks --quick`",
    ):
        assert expected in header
    assert len(table_lines(text)) == 5
    assert text.rstrip().endswith("- bench_x: skipped (no rows() yet)")


def test_environment_descriptions_are_filled_in():
    assert "cores" in suite.machine_description()
    assert suite.device_description()  # "CPU only" or GPU names
    found = suite.versions()
    assert {"Python", "TensorFlow", "Keras", "NumPy", "SciPy", "scikit-learn", "xmodal_tf"} <= set(found)
    assert found["Python"].count(".") == 2


def test_call_rows_passes_only_the_arguments_a_module_accepts():
    seen = {}

    def with_both(*, quick=False, precisions=("float32",)):
        seen["both"] = (quick, precisions)
        return fake_rows()[:1]

    def quick_only(*, quick=False):
        seen["quick"] = quick
        return []

    assert suite.call_rows(with_both, quick=True, precisions=["mixed_bfloat16"]) == fake_rows()[:1]
    assert seen["both"] == (True, ("mixed_bfloat16",))
    assert suite.call_rows(quick_only, quick=True, precisions=["float32"]) == []
    assert seen["quick"] is True


def test_main_writes_the_report_and_notes_skipped_benchmarks(tmp_path, monkeypatch, capsys):
    calls = []

    def loader(name):
        if name == "cca":
            return (lambda *, quick=False, precisions=(): calls.append((name, quick, precisions)) or fake_rows()), None
        return None, f"bench_{name}: skipped (no rows() yet)"

    monkeypatch.setattr(suite, "load_rows_function", loader)
    monkeypatch.setattr(suite, "device_description", lambda: "CPU only")
    output = tmp_path / "sub" / "results.md"
    assert (
        suite.main(
            ["--quick", "--only", "cca,models", "--precisions", "float32", "--output", str(output), "--in-process"]
        )
        == 0
    )
    assert calls == [("cca", True, ("float32",))]
    text = output.read_text()
    assert len(table_lines(text)) == 2 + len(fake_rows())
    assert "bench_models: skipped (no rows() yet)" in text
    assert "`python -m benchmarks --quick --only cca,models --precisions float32 --output" in text
    assert text in capsys.readouterr().out


def test_a_child_process_hands_its_rows_back_through_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "load_rows_function", lambda name: (lambda *, quick=False: fake_rows(), None))
    rows_file = tmp_path / "rows.json"
    assert suite.main(["--child", "cca", str(rows_file), "--quick"]) == 0
    assert json.loads(rows_file.read_text()) == {"rows": fake_rows(), "note": None}


def test_each_benchmark_runs_in_its_own_process_and_a_failed_one_leaves_a_note(monkeypatch):
    commands = []

    def fake_run(command, check):
        commands.append(command)
        return types.SimpleNamespace(returncode=1)

    monkeypatch.setattr(suite.subprocess, "run", fake_run)
    rows, note = suite.run_in_subprocess("models", True, ["float32"])
    assert rows == [] and note == "bench_models: failed (its process exited with status 1)"
    assert commands[0][1:4] == ["-m", "benchmarks", "--child"] and commands[0][4] == "models"
    assert commands[0][-3:] == ["--precisions", "float32", "--quick"]


def test_unknown_only_name_is_refused():
    with pytest.raises(SystemExit, match="unknown benchmark 'nope'"):
        suite.main(["--only", "nope", "--output", "unused.md"])


def test_a_missing_module_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "benchmarks.bench_absent_for_test", None)
    function, note = suite.load_rows_function("absent_for_test")
    assert function is None and "skipped" in note

    module = types.ModuleType("benchmarks.bench_norows_for_test")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    function, note = suite.load_rows_function("norows_for_test")
    assert function is None and "no rows()" in note


@pytest.mark.parametrize("name", benchmarks.BENCHMARKS)
def test_each_benchmark_with_rows_has_the_documented_signature(name):
    function, note = suite.load_rows_function(name)
    if function is None:
        pytest.skip(note)
    parameters = inspect.signature(function).parameters
    assert parameters["quick"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["quick"].default is False
    assert parameters["precisions"].kind is inspect.Parameter.KEYWORD_ONLY
    required = [
        p
        for p in parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    assert not required  # rows() runs with the defaults


def test_cross_checks_get_their_own_table_only_when_rows_carry_them():
    text = suite.report(fake_rows(), machine="m", device="d", package_versions={}, date="t", command="c")
    tables = [line for line in text.splitlines() if line.startswith("| benchmark")]
    assert len(tables) == 2
    checks = suite.cross_check_table(fake_rows()).splitlines()
    assert len(checks) == 3  # header, separator, the one row with paired_ratio
    assert cells(checks[2]) == ["model A", "Trainer step", "float32", "1.10x", "1.12x", "n/a"]
    plain = [{key: value for key, value in row.items() if key != "paired_ratio"} for row in fake_rows()]
    assert suite.cross_check_table(plain) == ""
    assert "Cross-checks" not in suite.report(
        plain, machine="m", device="d", package_versions={}, date="t", command="c"
    )
