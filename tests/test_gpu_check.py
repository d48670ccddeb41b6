"""benchmarks/gpu_check.py: it says so and exits 0 without a GPU, parses the placer's log,
and its checks run end to end against the CPU (--cpu), the way they run on a GPU."""

import subprocess
import sys

import pytest
import tensorflow as tf

from benchmarks import gpu_check

pytestmark = pytest.mark.skipif(
    bool(tf.config.list_physical_devices("GPU")), reason="the no-GPU message is for machines without one"
)


def test_without_a_gpu_it_says_so_and_exits_0(capsys):
    assert gpu_check.main([]) == 0
    assert "No GPU is visible to TensorFlow" in capsys.readouterr().out


def test_heavy_ops_are_counted_per_device_from_the_placer_log():
    log = "\n".join(
        [
            "MatMul: (MatMul): /job:localhost/replica:0/task:0/device:GPU:0",
            (
                "I0000 00:00:1796530941.556205    1523 placer.cc:162] gradient/Conv2DBackpropFilter: "
                "(Conv2DBackpropFilter): /job:localhost/replica:0/task:0/device:GPU:0"
            ),
            "svd: (Svd): /job:localhost/replica:0/task:0/device:CPU:0",  # not a heavy op
            "dense/MatMul_1: (MatMul): /job:localhost/replica:0/task:0/device:CPU:0",
        ]
    )
    assert gpu_check.heavy_op_devices(log) == {"GPU:0": 2, "CPU:0": 1}


def test_the_checks_run_against_the_cpu():
    completed = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_check.py",
            "--cpu",
            "--quick",
            "--models",
            "DualEncoder",
            "--experiments",
            "mae",
            "--steps",
            "2",
            "--batch-size",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    out = completed.stdout
    assert "all checks passed" in out
    assert "DualEncoder            bfloat16" in out and "{'CPU:0':" in out
    assert "mae          bfloat16" in out
