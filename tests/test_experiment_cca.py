"""The `cca` experiment on a strategy: one replica (today's fit), and workers fitting their shards."""

import json
import sys
import types

import pytest
from figure_checks import assert_figure

from xmodal_tf import train
from xmodal_tf.experiments import cca as cca_experiment


def fake_strategy(cluster: dict, task_type: str, task_id: int):
    spec = types.SimpleNamespace(as_dict=lambda: cluster)
    resolver = types.SimpleNamespace(cluster_spec=lambda: spec, task_type=task_type, task_id=task_id)
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_worker_shard_counts_the_chief_first():
    workers = {"worker": ["a:1", "b:1", "c:1"]}
    assert cca_experiment.worker_shard(fake_strategy(workers, "worker", 2)) == (2, 3)
    with_chief = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert cca_experiment.worker_shard(fake_strategy(with_chief, "chief", 0)) == (0, 3)
    assert cca_experiment.worker_shard(fake_strategy(with_chief, "worker", 1)) == (2, 3)
    assert cca_experiment.worker_shard(fake_strategy({}, None, None)) == (0, 1)
    assert cca_experiment.worker_shard(types.SimpleNamespace()) == (0, 1)  # no cluster: MirroredStrategy


def test_runs_on_a_mirrored_strategy(tmp_path):
    """--strategy mirrored (one CPU replica here, one worker): the plain fit, same numbers."""
    runs = {}
    for strategy in ("mirrored", "default"):
        logdir = tmp_path / strategy
        assert train.main(["cca", "--logdir", str(logdir), "--strategy", strategy, "--set", "probe=false"]) == 0
        runs[strategy] = json.loads((logdir / "metrics.json").read_text())
    config = json.loads((tmp_path / "mirrored" / "config.json").read_text())
    assert config["distribution"] == {"strategy": "mirrored", "replicas": 1, "workers": 1, "task": None}
    for key in ("reg", "train_correlations", "validation_total_correlation_by_reg", "test_correlations"):
        assert runs["mirrored"][key] == runs["default"][key], key
    # The key figure: the spectrum of each split, as a PNG and a TensorBoard image.
    for strategy in ("mirrored", "default"):
        assert assert_figure(tmp_path / strategy, "canonical_correlations") == (640, 400)


@pytest.mark.multiworker
def test_two_workers_fit_their_shards_to_the_single_process_fit(tmp_path):
    """Two workers, each with half of the training rows, report the single-process figures."""
    from multiworker import start_workers, wait_for

    single = tmp_path / "single"
    assert train.main(["cca", "--logdir", str(single), "--set", "probe=false"]) == 0
    expected = json.loads((single / "metrics.json").read_text())
    logdir = tmp_path / "workers"
    results = wait_for(
        start_workers(
            [
                sys.executable,
                "-m",
                "xmodal_tf.train",
                "cca",
                "--strategy",
                "multiworker",
                "--logdir",
                str(logdir),
                "--set",
                "probe=false",
            ],
            count=2,
        ),
        timeout=180,
    )
    for index, (code, _, stderr) in enumerate(results):
        assert code == 0, f"worker {index} exited with {code}:\n{stderr[-4000:]}"
    assert "fitting on 2 workers' shards of the 1078 training rows (this worker: 539)" in results[0][1]
    assert "worker 1 finished" in results[1][1]
    config = json.loads((logdir / "config.json").read_text())
    assert config["distribution"] == {"strategy": "multiworker", "replicas": 2, "workers": 2, "task": "worker 0"}
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert metrics["reg"] == expected["reg"]
    for key in ("train_correlations", "validation_correlations", "test_correlations"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key
    for ridge, value in expected["validation_total_correlation_by_reg"].items():
        assert metrics["validation_total_correlation_by_reg"][ridge] == pytest.approx(value, rel=1e-9)


def test_kernel_cca_beside_linear_cca_chosen_on_validation(tmp_path):
    """kcca (on by default): its ridge is the validation's best, and on the digit halves it
    finds more held-out correlation than linear CCA; kcca=false leaves it out."""
    logdir = tmp_path / "run"
    args = ["cca", "--logdir", str(logdir), "--set", "probe=false", "--set", "kcca_reg=[0.001, 0.1]"]
    assert train.main(args) == 0
    metrics = json.loads((logdir / "metrics.json").read_text())
    kcca = metrics["kcca"]
    by_reg = kcca["validation_total_correlation_by_reg"]
    assert set(by_reg) == {"0.001", "0.1"} and by_reg[str(kcca["reg"])] == max(by_reg.values())
    assert kcca["landmarks"] == 300 and len(kcca["test_correlations"]) == metrics["n_components"]
    assert kcca["test_total_correlation"] > metrics["test_total_correlation"] + 1.0
    assert train.main(["cca", "--logdir", str(tmp_path / "off"), "--set", "probe=false", "--set", "kcca=false"]) == 0
    assert "kcca" not in json.loads((tmp_path / "off" / "metrics.json").read_text())
