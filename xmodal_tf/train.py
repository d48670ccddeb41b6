"""The command line: ``python -m xmodal_tf.train [EXPERIMENT] [options]``.

Resolves the experiment's configuration (defaults <- --config file <- --set overrides
<- --seed), creates the run directory (default ``tensorboard_logs/<experiment>-<time>``),
writes ``config.json``, runs the experiment, writes ``metrics.json`` and the
TensorBoard scalars there, and prints a short summary.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import pathlib
import random
import sys
import tempfile
import traceback

from xmodal_tf import __version__
from xmodal_tf.experiments import (DEFAULT_EXPERIMENT, RunContext, get_experiment,
                                   list_experiments)
from xmodal_tf.experiments.base import TRAINING_CHOICES, write_json_atomically
from xmodal_tf.experiments.config import (ConfigError, load_config_file, parse_overrides,
                                          resolve_config)

STRATEGIES = ("auto", "default", "mirrored", "multiworker")  # as xmodal_tf.training.strategies

# TensorFlow's C++ start-up chatter (a CUDA probe that logs an error on CPU-only
# machines) buries the summary; Python exceptions are unaffected. Override by setting it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's Python logger warns about retracing whenever an experiment builds many
# small models (each has its own predict function): expected here, and not actionable.
logging.getLogger("tensorflow").setLevel(logging.ERROR)

DEFAULT_LOG_ROOT = pathlib.Path("tensorboard_logs")
PROGRAM = "python -m xmodal_tf.train"


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {experiment.name:<12} {experiment.description}"
                        for experiment in list_experiments())
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Run an xmodal_tf experiment and log it for TensorBoard.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(f"experiments (default: {DEFAULT_EXPERIMENT}):\n{listing}\n\n"
                "examples:\n"
                f"  {PROGRAM}\n"
                f"  {PROGRAM} cca --set data=split_mnist --data-dir ../shared/data\n"
                f"  {PROGRAM} cca --config my.toml --set reg=1e-3 --seed 1\n"
                "settings of an experiment: run it once and read config.json in its log dir"),
    )
    parser.add_argument("experiment", nargs="?", default=None,
                        help=f"experiment name (default: {DEFAULT_EXPERIMENT}, or the "
                             "config file's 'experiment' key)")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML or JSON file of settings (may name the 'experiment')")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one setting; repeatable; nested keys with dots")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder with data files such as mnist.npz "
                             "(default: $XMODAL_DATA_DIR)")
    parser.add_argument("--logdir", metavar="DIR",
                        help="run directory (default: tensorboard_logs/<experiment>-<timestamp>)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto",
                        help="tf.distribute strategy: auto (mirrored over several GPUs, else default), "
                             "default (one device), mirrored (all local GPUs), multiworker (the cluster "
                             "in TF_CONFIG; run the same command on every worker) (default: auto)")
    parser.add_argument("--worker-timeout", type=float, default=300.0, metavar="SECONDS",
                        help="multiworker: how long to wait for every worker to start (default: 300)")
    parser.add_argument("--mixed-precision", choices=TRAINING_CHOICES["mixed_precision"], default=None,
                        help="compute precision of the networks: off (float32), float16 (with loss scaling; "
                             "for GPUs) or bfloat16 (GPUs and CPUs with AVX512-BF16/AMX); variables stay float32 "
                             "(default: the experiment's mixed_precision setting, off)")
    parser.add_argument("--jit", choices=TRAINING_CHOICES["jit"], default=None,
                        help="XLA compilation of the training step: auto (with a GPU, where the model supports "
                             "it), on, off (default: the experiment's jit setting, auto)")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback of an error")
    parser.add_argument("--version", action="version", version=f"xmodal_tf {__version__}")
    return parser


def default_logdir(experiment: str) -> pathlib.Path:
    """tensorboard_logs/<experiment>-<YYYYmmdd-HHMMSS>, made unique with a suffix."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = DEFAULT_LOG_ROOT / f"{experiment}-{stamp}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = DEFAULT_LOG_ROOT / f"{experiment}-{stamp}-{suffix}"
    return candidate


def prepare(args: argparse.Namespace):
    """Resolve the experiment and its configuration; ConfigError on any bad input."""
    file_values = load_config_file(args.config) if args.config else {}
    named_in_file = file_values.pop("experiment", None)
    if named_in_file is not None and not isinstance(named_in_file, str):
        raise ConfigError(f"'experiment' in {args.config} must be a name such as "
                          f"{DEFAULT_EXPERIMENT!r}.")
    experiment = get_experiment(args.experiment or named_in_file or DEFAULT_EXPERIMENT)
    config = resolve_config(experiment.defaults, file_values, parse_overrides(args.overrides),
                            _training_overrides(args, experiment), choices=experiment.choices)
    if experiment.validate is not None:
        experiment.validate(config)
    return experiment, config


def _training_overrides(args: argparse.Namespace, experiment) -> dict:
    """--mixed-precision and --jit as settings (ConfigError where the experiment trains
    no network)."""
    given = {key: value for key, value in (("mixed_precision", args.mixed_precision), ("jit", args.jit))
             if value is not None}
    if given and "mixed_precision" not in experiment.defaults:
        options = " and ".join("--" + key.replace("_", "-") for key in given)
        raise ConfigError(f"experiment {experiment.name!r} trains no network (it is NumPy/SciPy); {options} "
                          "do not apply to it.")
    return given


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and Keras/TensorFlow (experiments import TensorFlow lazily, so
    seeding only an already-imported TensorFlow would miss it)."""
    import keras
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


def check_strategy_arguments(args: argparse.Namespace) -> None:
    """ConfigError for a bad --worker-timeout or (multiworker) a bad TF_CONFIG, before
    TensorFlow starts."""
    if not args.worker_timeout > 0:
        raise ConfigError(f"--worker-timeout must be > 0 seconds; got {args.worker_timeout:g}.")
    if args.strategy == "multiworker":
        from xmodal_tf.training.strategies import parse_tf_config

        try:
            parse_tf_config()
        except ValueError as error:
            raise ConfigError(str(error)) from None


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        experiment, config = prepare(args)
        check_strategy_arguments(args)
    except ConfigError as error:
        parser.print_usage(sys.stderr)
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2

    _import_tensorflow_quietly()
    from xmodal_tf.training.strategies import make_strategy

    # First of all TensorFlow calls: a multi-worker strategy must start before any other.
    strategy = make_strategy(args.strategy, connect_timeout=args.worker_timeout)
    logdir = pathlib.Path(args.logdir) if args.logdir else default_logdir(experiment.name)
    try:
        context = RunContext(logdir, data_dir=args.data_dir, seed=args.seed, strategy=strategy,
                             **{key: config[key] for key in TRAINING_CHOICES if key in config})
        if context.is_chief:
            write_json_atomically(logdir / "config.json", {
                "experiment": experiment.name, "config": config, "seed": args.seed,
                "data_dir": args.data_dir, "xmodal_tf_version": __version__,
                "distribution": context.describe_strategy(),
                "command": [PROGRAM, *(argv if argv is not None else sys.argv[1:])],
            })
    except OSError as error:
        if args.traceback:
            traceback.print_exc()
        print(f"{PROGRAM}: error: cannot write the run directory {logdir}: {error.strerror or error}; "
              "pick a writable folder with --logdir.", file=sys.stderr)
        return 2
    seed_everything(args.seed)
    context.progress(f"{experiment.name}: logging to {logdir} ({_strategy_line(context)})")
    try:
        metrics = experiment.run(config, context)
    except (ValueError, TypeError, FileNotFoundError) as error:
        if args.traceback:
            traceback.print_exc()
        print(f"{PROGRAM}: error in experiment {experiment.name!r}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.traceback:
            traceback.print_exc()
        print(f"\n{PROGRAM}: interrupted. The same command with --logdir {logdir} resumes from the last epoch "
              "checkpoint where the experiment keeps them (deepcca); the others start over.", file=sys.stderr)
        return 130
    finally:
        context.close()
    if not context.is_chief:
        task = context.describe_strategy()["task"]
        print(f"{PROGRAM}: {task} finished; the chief writes the run directory {logdir}.")
        return 0
    if context.trained_models:
        metrics = {**metrics, "trained_models": context.trained_models}
    write_json_atomically(logdir / "metrics.json", metrics)
    print_summary(experiment, metrics, logdir)
    return 0


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its native start-up lines held back.

    TensorFlow 2.21 prints them (oneDNN, CUDA probe) twice, from C++ before its logging
    is set up, so TF_CPP_MIN_LOG_LEVEL cannot silence them; they are captured from the
    process's stderr during the import and shown only if the import fails. With
    TF_CPP_MIN_LOG_LEVEL set below 3 nothing is held back.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _strategy_line(context: RunContext) -> str:
    described = context.describe_strategy()
    workers = f", {described['workers']} workers" if described["workers"] > 1 else ""
    precision = f", mixed precision {context.mixed_precision}" if context.mixed_precision != "off" else ""
    return f"strategy {described['strategy']}, {described['replicas']} replica(s){workers}{precision}"


def print_summary(experiment, metrics: dict, logdir: pathlib.Path) -> None:
    lines = experiment.summarize(metrics) if experiment.summarize else [
        f"{key}: {value}" for key, value in metrics.items() if isinstance(value, (int, float))]
    print("\n".join(["", *lines,
                     f"run directory: {logdir} (config.json, metrics.json, TensorBoard events)",
                     f"view it with: tensorboard --logdir {logdir.parent}"]))


if __name__ == "__main__":
    sys.exit(main())
