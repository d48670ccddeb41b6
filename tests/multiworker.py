"""Run a script as several ``MultiWorkerMirroredStrategy`` workers on 127.0.0.1.

``run_workers(script)`` starts one fresh interpreter per worker with its ``TF_CONFIG``
(free local ports, worker i has task index i), waits for all of them within a
deadline, and returns what each printed on its last stdout line, parsed as JSON.
A worker that fails, or a run past the deadline, fails the test with the workers'
stderr; nothing is left running.

Tests that use it are marked ``multiworker`` (``pytest -m "not multiworker"`` skips
them locally; CI runs them).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            handle = socket.socket()
            handle.bind(("127.0.0.1", 0))
            sockets.append(handle)
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]}, "task": {"type": "worker", "index": index}}
    )


def start_workers(command: list[str], count: int = 2, env=None, cwd=REPO_ROOT) -> list[subprocess.Popen]:
    """Start ``count`` processes running ``command``, each with its worker TF_CONFIG."""
    ports = free_ports(count)
    processes = []
    for index in range(count):
        worker_env = dict(
            os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=tf_config(ports, index), PYTHONPATH=REPO_ROOT, **(env or {})
        )
        processes.append(
            subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=worker_env
            )
        )
    return processes


def wait_for(processes: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str, str]]:
    """(returncode, stdout, stderr) of each process; kills them all past ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for process in processes:
            remaining = max(1.0, deadline - time.monotonic())
            stdout, stderr = process.communicate(timeout=remaining)
            results.append((process.returncode, stdout, stderr))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        outputs = [process.communicate() for process in processes]
        details = "\n".join(f"--- worker {i} stderr:\n{err[-2000:]}" for i, (_, err) in enumerate(outputs))
        raise AssertionError(f"the workers did not finish within {timeout:.0f} s\n{details}") from None
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return results


def run_workers(script: str, count: int = 2, timeout: float = 240, env=None) -> list[dict]:
    """Run ``script`` (Python source) as ``count`` workers; the JSON each printed last."""
    results = wait_for(start_workers([sys.executable, "-c", script], count, env=env), timeout)
    for index, (code, _, stderr) in enumerate(results):
        assert code == 0, f"worker {index} exited with {code}:\n{stderr[-4000:]}"
    return [json.loads(stdout.strip().splitlines()[-1]) for _, stdout, _ in results]
