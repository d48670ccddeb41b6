"""Every script in examples/ runs to the end with its ``--quick`` setting.

Each example runs in a fresh Python process (as a user would start it), offline, with
its temporary files under the test's ``tmp_path``, and must exit with status 0 and
print what it promises: the reloaded model agrees with the saved one, the scores are
numbers in range. ``--quick`` trains for an epoch or two, so the scores only need to
be sane, not good. A new example needs an entry in ``EXPECTED``.
"""

import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES_DIR = pathlib.Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(path.name for path in EXAMPLES_DIR.glob("*.py"))
TIMEOUT_S = 300  # each takes 5-25 s on two idle cores; the slack is for a busy machine


def number(pattern: str, text: str) -> float:
    """The number captured by ``pattern``'s first group in ``text``; fails if absent."""
    found = re.search(pattern, text)
    assert found, f"no match for {pattern!r} in:\n{text}"
    return float(found.group(1))


def in_unit_interval(*values: float) -> bool:
    return all(0.0 <= value <= 1.0 for value in values)


def check_cca(out, tmp_path):
    assert "partial_fit matches fit: True" in out
    assert number(r"accuracy on right halves: ([\d.]+)", out) > 0.5  # chance is 0.1; CCA needs no training


def check_cgan(out, tmp_path):
    low, high = (number(pattern, out) for pattern in (r"values in \[([\d.]+),", r"values in \[[\d.]+, ([\d.]+)\]"))
    assert "generated (20, 8, 8, 1)" in out and 0.0 <= low <= high <= 1.0
    assert re.search(r"same samples True; optimizer steps G (\d+), D \1$", out, re.MULTILINE), out


def check_deepcca(out, tmp_path):
    deep = re.search(r"DeepCCA ([\d.]+), linear CCA ([\d.]+)", out)
    assert deep and 0 < float(deep.group(1)) <= 10 and 0 < float(deep.group(2)) <= 10, out
    assert f"test total correlation {deep.group(1)}" in out  # the reloaded model's, identical


def check_distributed(out, tmp_path):
    assert 0 < number(r"replica\(s\); test total correlation of the top 10: ([\d.]+)", out) <= 10


def check_fusion(out, tmp_path):
    accuracies = [number(rf"{what} ([\d.]+)", out) for what in ("both halves", "right only", "noisy left only")]
    assert in_unit_interval(*accuracies)
    assert "same predictions: True" in out


def check_mae(out, tmp_path):
    assert number(r"right half drawn from the left half alone: MSE ([\d.]+)", out) < 1
    assert "saved and reloaded" in out  # after the script's own assert on the reloaded codes
    logdir = next(tmp_path.glob("mae_fit_*"))
    assert list(logdir.rglob("events.out.tfevents.*")), "no TensorBoard events written"
    assert (logdir / "projector").is_dir()


def check_pretrained(out, tmp_path):
    for stage in (1, 2):
        assert in_unit_interval(number(rf"stage {stage} zero-shot accuracy on 360 held-out images: ([\d.]+)", out))
    frozen = number(r"stage 1: text backbone frozen, (\d+) trainable parameters", out)
    opened = number(r"stage 2: unfroze .*transformer_layer_1 \(\d+ layers\), (\d+) trainable parameters", out)
    assert opened > frozen
    assert "same similarities: True" in out
    assert number(r"same similarities: True, trainable parameters (\d+)", out) == opened


def check_retrieval(out, tmp_path):
    assert in_unit_interval(number(r"zero-shot accuracy on 360 held-out images: ([\d.]+)", out))
    assert "identical text embeddings: True" in out


def check_transfer(out, tmp_path):
    assert "TransferReport: 4 copied, 0 missing, 0 mismatched, 0 unused (ok)" in out
    transferred = number(r"transferred ([\d.]+)", out)
    assert in_unit_interval(transferred) and number(r"reloaded test accuracy ([\d.]+)", out) == transferred


EXPECTED = {
    "cca_two_view_digits.py": check_cca,
    "cgan_fit.py": check_cgan,
    "deepcca_fit.py": check_deepcca,
    "distributed_trainer.py": check_distributed,
    "fusion_fit.py": check_fusion,
    "mae_fit.py": check_mae,
    "pretrained_transfer.py": check_pretrained,
    "retrieval_fit.py": check_retrieval,
    "transfer_learning.py": check_transfer,
}


def test_every_example_has_expected_output():
    assert EXAMPLES, f"no examples found in {EXAMPLES_DIR}"
    assert sorted(EXPECTED) == EXAMPLES, "add the new example's expected output to EXPECTED (or drop a removed one)"


@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs_quickly(script, tmp_path):
    environment = {
        **os.environ,
        "TMPDIR": str(tmp_path),  # the examples' tempfile.mkdtemp() folders
        "KERAS_HOME": str(tmp_path / "keras"),  # no cached downloads from the user's home
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",  # a download fails fast
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    environment.pop("XMODAL_DATA_DIR", None)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES_DIR / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
        env=environment,
    )
    assert result.returncode == 0, f"{script} exited with {result.returncode}:\n{result.stderr[-3000:]}"
    out = result.stdout
    assert out.strip(), f"{script} printed nothing"
    assert not re.search(r"\bnan\b", out, re.IGNORECASE), out
    EXPECTED[script](out, tmp_path)
    assert all(math.isfinite(float(value)) for value in re.findall(r"-?\d+\.\d+", out))
