"""Choosing a ``tf.distribute`` strategy by name, and who may write files.

    >>> from xmodal_tf.training.strategies import make_strategy, is_chief
    >>> strategy = make_strategy("auto")          # mirrored over >1 GPU, else the default
    >>> strategy = make_strategy("multiworker", connect_timeout=120)   # reads TF_CONFIG

The names are ``STRATEGIES``: ``default``, ``mirrored``, ``auto`` and ``multiworker``.
``parse_tf_config`` checks ``TF_CONFIG`` before TensorFlow starts; ``is_chief`` tells the
process that owns the side effects (checkpoints, TensorBoard events, metrics);
``describe_strategy`` summarises a strategy.

Design notes (the multi-worker watchdog): docs/DESIGN.md (section xmodal_tf/training/strategies.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

__all__ = ["STRATEGIES", "describe_strategy", "is_chief", "make_strategy", "parse_tf_config"]

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
_WORKER_TYPES = ("chief", "worker")

_WATCHDOG = """
import os, select, signal, sys
parent, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ready, _, _ = select.select([sys.stdin], [], [], timeout)
if not ready:
    sys.stderr.write(message + "\\n")
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
"""


def parse_tf_config(text: str | None = None) -> dict:
    """The ``TF_CONFIG`` JSON, checked.

    Args:
        text: the JSON text; None (default) reads the environment variable ``TF_CONFIG``.

    Returns:
        The parsed dict.

    Raises:
        ValueError: naming the problem and the fix, for a missing or empty variable,
            text that is not JSON, no ``cluster`` with a non-empty ``worker`` (or
            ``chief``) list of ``"host:port"`` strings, a ``task`` whose ``type`` is not
            in the cluster or whose ``index`` is out of range, or a repeated address.
    """
    if text is None:
        text = os.environ.get("TF_CONFIG", "")
    example = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
    if not text.strip():
        raise ValueError(
            "--strategy multiworker needs the TF_CONFIG environment variable, e.g. "
            f"TF_CONFIG='{example}' on worker 0 (index 1 on the next worker)."
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"TF_CONFIG is not valid JSON ({error.msg} at character {error.pos}); expected something like {example}."
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise ValueError(f"TF_CONFIG needs a 'cluster' object listing the workers, e.g. {example}.")
    cluster = config["cluster"]
    addresses = []
    for job, hosts in cluster.items():
        if not isinstance(hosts, list) or not hosts:
            raise ValueError(
                f"TF_CONFIG cluster[{job!r}] must be a non-empty list of 'host:port' strings; got {hosts!r}."
            )
        for host in hosts:
            if not isinstance(host, str) or not _is_address(host):
                raise ValueError(
                    f"TF_CONFIG cluster[{job!r}] holds {host!r}, which is not 'host:port' "
                    "(a port number from 1 to 65535)."
                )
            addresses.append(host)
    if not any(job in cluster for job in _WORKER_TYPES):
        raise ValueError(f"TF_CONFIG cluster has no 'worker' list (jobs: {sorted(cluster)}); e.g. {example}.")
    repeated = sorted({address for address in addresses if addresses.count(address) > 1})
    if repeated:
        raise ValueError(f"TF_CONFIG cluster lists {repeated[0]} more than once; every task needs its own port.")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"TF_CONFIG needs a 'task' with this process's 'type' and 'index', e.g. {example}.")
    kind, index = task["type"], task["index"]
    if kind not in cluster:
        raise ValueError(f"TF_CONFIG task type {kind!r} is not a job of the cluster ({sorted(cluster)}).")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise ValueError(
            f"TF_CONFIG task index {index!r} is out of range: cluster[{kind!r}] has "
            f"{len(cluster[kind])} entries (indices 0 to {len(cluster[kind]) - 1})."
        )
    return config


def _is_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def make_strategy(name: str = "auto", *, connect_timeout: float = 300.0):
    """The strategy called ``name``.

    Starting a multi-worker strategy blocks until every worker of the cluster has
    started, so for ``multiworker`` a watchdog process stops a worker whose peers have
    not answered within ``connect_timeout`` (exit status 137, with a message naming the
    awaited peers).

    Args:
        name: one of ``STRATEGIES``:

            * ``default``: TensorFlow's default strategy (one device, no distribution).
            * ``mirrored``: ``MirroredStrategy`` over every local GPU (one CPU without GPUs).
            * ``auto``: ``mirrored`` when the machine has more than one GPU, else ``default``.
            * ``multiworker``: ``MultiWorkerMirroredStrategy`` over the cluster in
              ``TF_CONFIG`` (every worker runs the same command with its own ``task.index``).
        connect_timeout: seconds a ``multiworker`` worker waits for all its peers to
            start before it stops with a message.

    Returns:
        The ``tf.distribute.Strategy``.

    Raises:
        ValueError: an unknown name, a bad ``TF_CONFIG`` (``parse_tf_config``) or a
            ``connect_timeout`` that is not > 0.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; choose one of {STRATEGIES}.")
    if name == "multiworker":
        return _multi_worker_strategy(parse_tf_config(), connect_timeout)
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto" and len(gpus) <= 1:
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy()


def _multi_worker_strategy(config: dict, connect_timeout: float):
    if not connect_timeout > 0:
        raise ValueError(f"connect_timeout must be > 0 seconds; got {connect_timeout!r}.")
    task = config["task"]
    me = config["cluster"][task["type"]][task["index"]]
    peers = [host for hosts in config["cluster"].values() for host in hosts if host != me]
    message = (
        f"xmodal_tf: {task['type']} {task['index']} ({me}) could not reach its peers {peers} within "
        f"{connect_timeout:g} s. Start every task listed in TF_CONFIG (each with its own task index), "
        "check the addresses, ports and firewalls, or allow more time (--worker-timeout)."
    )
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(connect_timeout), message], stdin=subprocess.PIPE
    )
    try:
        import tensorflow as tf

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _handshake(strategy)
    finally:
        watchdog.stdin.close()  # EOF: the watchdog leaves quietly
        watchdog.wait()
    return strategy


def _handshake(strategy) -> None:
    """One all-reduce over every replica, so that all workers are known to be up."""
    import tensorflow as tf

    @tf.function
    def count_replicas():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("SUM", tf.constant(1.0)))

    total = strategy.experimental_local_results(count_replicas())[0]
    if int(total.numpy()) != strategy.num_replicas_in_sync:
        raise RuntimeError(
            f"The workers' handshake counted {int(total.numpy())} replicas, expected {strategy.num_replicas_in_sync}."
        )


def is_chief(strategy=None) -> bool:
    """Whether this is the process that writes checkpoints, events and metrics.

    That is any process outside a multi-worker cluster, else the ``chief`` task or,
    without one, worker 0.

    Args:
        strategy: the strategy; None (or one without a cluster) counts as no cluster.

    Returns:
        True for the chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    kind, index = resolver.task_type, resolver.task_id
    if kind is None or kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in resolver.cluster_spec().as_dict()


def describe_strategy(strategy) -> dict:
    """A short description of a strategy.

    Args:
        strategy: a ``tf.distribute.Strategy``.

    Returns:
        {"strategy": "default" / "mirrored" / "multiworker" (else the class name),
        "replicas": n, "workers": n, "task": e.g. "worker 0", None outside a cluster}.
    """
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "multiworker"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        name = "mirrored"
    elif strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        name = "default"
    else:
        name = type(strategy).__name__
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    workers = sum(len(hosts) for job, hosts in cluster.items() if job in _WORKER_TYPES) or 1
    task = None if not cluster else f"{resolver.task_type} {resolver.task_id}"
    return {"strategy": name, "replicas": int(strategy.num_replicas_in_sync), "workers": workers, "task": task}
