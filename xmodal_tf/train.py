"""The command line: ``python -m xmodal_tf.train [EXPERIMENT] [options]``.

Resolves the experiment's configuration (defaults <- --config file <- --set overrides
<- --seed) and validates it, checks the run directory (default
``tensorboard_logs/<experiment>-<time>``; see ``experiments.rundir``: a finished run is
only summarised, an unfinished one resumes, a changed configuration is refused), loads
and checks the data, and only then writes ``config.json``, runs the experiment, writes
``metrics.json`` and the TensorBoard scalars, and prints a short summary. ``--seeds N``
runs N seeds, each in ``<logdir>/seed-<S>``, and writes the mean ± std of every figure to
``<logdir>/seeds.json`` (``experiments.seeds``).

Every expected failure (bad settings, a missing or corrupt data file, an unwritable
folder, a full disk, Ctrl-C) is one line on stderr naming what and how to fix it;
``--traceback`` adds the trace. Exit status: 0 done, 1 failed, 2 bad command line or
settings, 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import logging
import os
import pathlib
import random
import sys
import tempfile
import traceback

from xmodal_tf import __version__
from xmodal_tf._files import write_json_atomically
from xmodal_tf.experiments import DEFAULT_EXPERIMENT, RunContext, get_experiment, list_experiments
from xmodal_tf.experiments.base import TRAINING_CHOICES
from xmodal_tf.experiments.config import ConfigError, load_config_file, parse_overrides, resolve_config
from xmodal_tf.experiments.rundir import RunDirectory

STRATEGIES = ("auto", "default", "mirrored", "multiworker")  # as xmodal_tf.training.strategies

# TensorFlow's C++ start-up chatter (a CUDA probe that logs an error on CPU-only
# machines) buries the summary; Python exceptions are unaffected. Override by setting it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's Python logger warns about retracing whenever an experiment builds many
# small models (each has its own predict function): expected here, and not actionable.
logging.getLogger("tensorflow").setLevel(logging.ERROR)

DEFAULT_LOG_ROOT = pathlib.Path("tensorboard_logs")
PROGRAM = "python -m xmodal_tf.train"
SEEDS_FILE = "seeds.json"  # what --seeds writes beside the seeds' run directories


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, its epilog listing the experiments."""
    listing = "\n".join(f"  {experiment.name:<12} {experiment.description}" for experiment in list_experiments())
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Run an xmodal_tf experiment and log it for TensorBoard.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            f"experiments (default: {DEFAULT_EXPERIMENT}):\n{listing}\n\n"
            "examples:\n"
            f"  {PROGRAM}\n"
            f"  {PROGRAM} cca --set data=split_mnist --data-dir ../shared/data\n"
            f"  {PROGRAM} cca --config my.toml --set reg=1e-3 --seed 1\n"
            "settings of an experiment: run it once and read config.json in its log dir"
        ),
    )
    parser.add_argument(
        "experiment",
        nargs="?",
        default=None,
        help=f"experiment name (default: {DEFAULT_EXPERIMENT}, or the config file's 'experiment' key)",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML or JSON file of settings (may name the 'experiment')")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting; repeatable; nested keys with dots",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help="folder with data files such as mnist.npz (default: $XMODAL_DATA_DIR)"
    )
    parser.add_argument(
        "--logdir", metavar="DIR", help="run directory (default: tensorboard_logs/<experiment>-<timestamp>)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="run N seeds (--seed, --seed + 1, ...), each in <logdir>/seed-<S>, and write the mean "
        "± std of every figure to <logdir>/seeds.json; experiments with a 'seeds' setting "
        "(fusion, transfer, crossmodal) repeat inside one run: --set seeds=N (default: 1)",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="tf.distribute strategy: auto (mirrored over several GPUs, else default), "
        "default (one device), mirrored (all local GPUs), multiworker (the cluster "
        "in TF_CONFIG; run the same command on every worker) (default: auto)",
    )
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="multiworker: how long to wait for every worker to start (default: 300)",
    )
    parser.add_argument(
        "--mixed-precision",
        choices=TRAINING_CHOICES["mixed_precision"],
        default=None,
        help="compute precision of the networks: off (float32), float16 (with loss scaling; "
        "for GPUs) or bfloat16 (GPUs and CPUs with AVX512-BF16/AMX); variables stay float32 "
        "(default: the experiment's mixed_precision setting, off)",
    )
    parser.add_argument(
        "--jit",
        choices=TRAINING_CHOICES["jit"],
        default=None,
        help="XLA compilation of the training step: auto (with a GPU, where the model supports "
        "it), on, off (default: the experiment's jit setting, auto)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        metavar="EPOCHS",
        help="checkpoint every trainer every this many epochs (and at its end), so that the same "
        "command resumes a killed run; 0: no checkpoints (default: 1)",
    )
    parser.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="and at least this many seconds apart: a kill loses at most about this much "
        "training (default: 30; 0: at every --checkpoint-every epochs)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an existing run directory (deleting its run) instead of resuming it",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="TensorFlow's deterministic ops (tf.config.experimental.enable_op_determinism) and no "
        "XLA: reruns and resumed runs reproduce an uninterrupted run's figures, a little slower",
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
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
    """Resolve the experiment and its configuration.

    Settings come from the experiment's defaults, then the --config file, the --set
    overrides, --mixed-precision / --jit and --seeds, in that order.

    Args:
        args: the parsed command line.

    Returns:
        ``(experiment, config)``, the configuration validated by the experiment.

    Raises:
        ConfigError: any bad input (an unknown experiment, a bad file, setting or option).
    """
    file_values = load_config_file(args.config) if args.config else {}
    named_in_file = file_values.pop("experiment", None)
    if named_in_file is not None and not isinstance(named_in_file, str):
        raise ConfigError(f"'experiment' in {args.config} must be a name such as {DEFAULT_EXPERIMENT!r}.")
    experiment = get_experiment(args.experiment or named_in_file or DEFAULT_EXPERIMENT)
    overrides = parse_overrides(args.overrides)
    config = resolve_config(
        experiment.defaults,
        file_values,
        overrides,
        _training_overrides(args, experiment),
        _seeds_override(args, experiment, overrides),
        choices=experiment.choices,
    )
    experiment.validate(config)
    return experiment, config


def _training_overrides(args: argparse.Namespace, experiment) -> dict:
    """--mixed-precision and --jit as settings (ConfigError where the experiment trains
    no network)."""
    given = {
        key: value for key, value in (("mixed_precision", args.mixed_precision), ("jit", args.jit)) if value is not None
    }
    if given and "mixed_precision" not in experiment.defaults:
        options = " and ".join("--" + key.replace("_", "-") for key in given)
        raise ConfigError(
            f"experiment {experiment.name!r} trains no network (it is NumPy/SciPy); {options} do not apply to it."
        )
    return given


def _seeds_override(args: argparse.Namespace, experiment, overrides: dict) -> dict:
    """--seeds as the experiment's own ``seeds`` setting, where it has one."""
    if args.seeds is None:
        return {}
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (the number of seeds to run); got {args.seeds}.")
    if "seeds" not in experiment.defaults:
        return {}
    if "seeds" in overrides and overrides["seeds"] != args.seeds:
        raise ConfigError(f"--seeds {args.seeds} and --set seeds={overrides['seeds']} disagree; give one of them.")
    return {"seeds": args.seeds}


def repeats_runs(args: argparse.Namespace, experiment) -> bool:
    """True when --seeds asks for one run per seed (the experiment has no ``seeds`` setting)."""
    return args.seeds is not None and args.seeds > 1 and "seeds" not in experiment.defaults


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and Keras/TensorFlow.

    Experiments import TensorFlow lazily, so seeding only an already-imported TensorFlow
    would miss it.

    Args:
        seed: the seed.
    """
    import keras
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


def check_strategy_arguments(args: argparse.Namespace) -> None:
    """Check --worker-timeout and (multiworker) TF_CONFIG before TensorFlow starts.

    Args:
        args: the parsed command line.

    Raises:
        ConfigError: a --worker-timeout that is not > 0, or a bad TF_CONFIG.
    """
    if not args.worker_timeout > 0:
        raise ConfigError(f"--worker-timeout must be > 0 seconds; got {args.worker_timeout:g}.")
    if args.strategy == "multiworker":
        from xmodal_tf.training.strategies import parse_tf_config

        try:
            parse_tf_config()
        except ValueError as error:
            raise ConfigError(str(error)) from None


def main(argv=None) -> int:
    """Run the command line.

    Args:
        argv: the arguments after the program name; None reads ``sys.argv``.

    Returns:
        The exit status: 0 done, 1 failed, 2 bad command line or settings, 130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command = [PROGRAM, *(argv if argv is not None else sys.argv[1:])]
    try:
        experiment, config = prepare(args)
        check_run_arguments(args, experiment, config)
    except ConfigError as error:
        return _usage_error(parser, error)
    if repeats_runs(args, experiment):
        return run_seeds(parser, args, experiment, config, command)
    return run_once(parser, args, experiment, config, command)


def check_run_arguments(args: argparse.Namespace, experiment, config: dict) -> None:
    """Check that the options fit together and with the configuration.

    Args:
        args: the parsed command line.
        experiment: the resolved experiment.
        config: its resolved configuration.

    Raises:
        ConfigError: a bad --worker-timeout, TF_CONFIG, --checkpoint-every or
            --checkpoint-seconds; --deterministic with jit "on"; or --seeds with the
            multiworker strategy.
    """
    check_strategy_arguments(args)
    if args.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0 epochs (0: no checkpoints); got {args.checkpoint_every}.")
    if args.deterministic and config.get("jit") == "on":
        raise ConfigError(
            "--deterministic needs --jit off (or auto): XLA has no deterministic kernels for some "
            "gradients (MaxPool's among them)."
        )
    if not 0 <= args.checkpoint_seconds < float("inf"):
        raise ConfigError(f"--checkpoint-seconds must be a number of seconds >= 0; got {args.checkpoint_seconds}.")
    if repeats_runs(args, experiment) and args.strategy == "multiworker":
        raise ConfigError(
            f"--seeds {args.seeds} runs the seeds one after another in one process, which a "
            "multi-worker cluster cannot restart; run one command per seed (--seed S --logdir "
            "DIR/seed-S) on every worker instead."
        )


def _usage_error(parser, error: ConfigError) -> int:
    parser.print_usage(sys.stderr)
    print(f"{PROGRAM}: error: {error}", file=sys.stderr)
    return 2


def _record(experiment, config: dict, args: argparse.Namespace, command: list) -> dict:
    """What ``config.json`` holds (its ``COMPARED`` keys decide whether a run resumes)."""
    return {
        "experiment": experiment.name,
        "config": config,
        "seed": args.seed,
        "data_dir": args.data_dir,
        "xmodal_tf_version": __version__,
        "command": command,
    }


def run_seeds(parser, args: argparse.Namespace, experiment, config: dict, command: list) -> int:
    """--seeds N: one run per seed in ``<logdir>/seed-<S>``, then ``<logdir>/seeds.json``.

    Every seed's folder is checked before any trains; a failed seed stops the loop, and
    the same command resumes it (see ``xmodal_tf.experiments.seeds``).

    Args:
        parser: the command line's parser (for usage errors).
        args: the parsed command line.
        experiment: the resolved experiment.
        config: its resolved configuration.
        command: the command line as run, recorded in each ``config.json``.

    Returns:
        The exit status: 0 when every seed finished, 2 for a bad run directory, else the
        failed seed's.
    """
    import copy

    from xmodal_tf.experiments.seeds import aggregate, seed_directory, spread_lines

    logdir = pathlib.Path(args.logdir) if args.logdir else default_logdir(experiment.name)
    seeds = list(range(args.seed, args.seed + args.seeds))
    runs = []
    for seed in seeds:
        runs.append(copy.copy(args))
        runs[-1].seed, runs[-1].logdir, runs[-1].seeds = seed, str(seed_directory(logdir, seed)), None
    try:
        _check_seeds_folder(logdir)
        for run in runs:
            RunDirectory(run.logdir).status(_record(experiment, config, run, command), overwrite=args.overwrite)
    except ConfigError as error:
        return _usage_error(parser, error)
    except OSError as error:
        return _fail(args, _describe_os_error(error, logdir=None), 2)
    for number, run in enumerate(runs, start=1):
        print(f"{PROGRAM}: seed {run.seed} ({number} of {len(runs)}), run directory {run.logdir}", flush=True)
        status = run_once(parser, run, experiment, config, command)
        if status:
            print(
                f"{PROGRAM}: stopped at seed {run.seed}; the same command resumes it and runs the rest.",
                file=sys.stderr,
            )
            return status
        import keras

        keras.backend.clear_session()  # the next seed builds its models afresh
    summary = aggregate([RunDirectory(run.logdir).metrics() for run in runs])
    write_json_atomically(
        logdir / SEEDS_FILE,
        {"experiment": experiment.name, "seeds": seeds, "runs": [run.logdir for run in runs], **summary},
    )
    lines = spread_lines(summary)
    print(
        "\n".join(
            [
                "",
                f"mean ± std (population) over seeds {', '.join(map(str, seeds))} of every figure that "
                f"differs between them{':' if lines else ': none differs'}",
                *lines,
                f"all figures, with each seed's value: {logdir / SEEDS_FILE}",
            ]
        )
    )
    return 0


def _check_seeds_folder(logdir: pathlib.Path) -> None:
    """ConfigError unless ``logdir`` is new or holds only a --seeds run (seed folders and
    ``seeds.json``)."""
    if not logdir.exists():
        return
    if not logdir.is_dir():
        raise ConfigError(f"--logdir {logdir} is a file, not a folder; pick a folder for the runs.")
    if (logdir / "config.json").exists():
        raise ConfigError(
            f"--logdir {logdir} is the run directory of one seed; --seeds puts a folder per seed "
            "inside a folder of its own: pick another --logdir."
        )
    foreign = [
        path.name
        for path in logdir.iterdir()
        if not (
            path.name == SEEDS_FILE
            or path.name.startswith(f".{SEEDS_FILE}.")
            or (path.is_dir() and path.name.startswith("seed-"))
        )
    ]
    if foreign:
        raise ConfigError(
            f"--logdir {logdir} holds {', '.join(sorted(foreign)[:3])}, which a --seeds run does not "
            "write; pick a new or empty folder."
        )


def run_once(parser, args: argparse.Namespace, experiment, config: dict, command: list) -> int:
    """One run of ``experiment`` with ``args.seed`` in ``args.logdir`` (see the module docstring).

    Args:
        parser: the command line's parser (for usage errors).
        args: the parsed command line.
        experiment: the resolved experiment.
        config: its resolved configuration.
        command: the command line as run, recorded in ``config.json``.

    Returns:
        The exit status: 0 done (or already finished), 1 failed, 2 bad settings or run
        directory, 130 interrupted.
    """
    try:
        logdir = pathlib.Path(args.logdir) if args.logdir else default_logdir(experiment.name)
        record = _record(experiment, config, args, command)
        run_directory = RunDirectory(logdir)
        status = run_directory.status(record, overwrite=args.overwrite)
        if status == "finished":
            print(
                f"{PROGRAM}: the run in {logdir} has finished; nothing was changed (add --overwrite to run it again)."
            )
            print_summary(experiment, run_directory.metrics(), logdir)
            return 0
    except ConfigError as error:
        return _usage_error(parser, error)
    except OSError as error:
        return _fail(args, _describe_os_error(error, logdir=None), 2)

    _import_tensorflow_quietly()
    from xmodal_tf.training.strategies import make_strategy

    # First of all TensorFlow calls: a multi-worker strategy must start before any other.
    strategy = make_strategy(args.strategy, connect_timeout=args.worker_timeout)
    seed_everything(args.seed)
    if args.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    context = None
    try:
        data = None
        if experiment.load_data is not None:
            print(f"{experiment.name}: loading and checking the data ...", flush=True)
            data = experiment.load_data(config, args.data_dir, args.seed)
        context = RunContext(
            logdir,
            data_dir=args.data_dir,
            seed=args.seed,
            strategy=strategy,
            checkpoint_every=args.checkpoint_every,
            checkpoint_seconds=args.checkpoint_seconds,
            data=data,
            **_training_settings(config, args.deterministic),
        )
        if context.is_chief:
            if args.overwrite:
                run_directory.clear()
            run_directory.begin({**record, "distribution": context.describe_strategy()})
        resuming = " (resuming)" if status == "resume" and not args.overwrite else ""
        context.progress(f"{experiment.name}: logging to {logdir}{resuming} ({_strategy_line(context)})")
        seed_everything(args.seed)  # after loading: the run's draws do not depend on the loader's
        metrics = experiment.run(config, context)
        if context.is_chief:
            context.log_hparams({"experiment": experiment.name, "seed": args.seed, **config})
        context.close()
    except BaseException as error:  # noqa: BLE001 - the CLI's one error boundary
        if context is not None:
            context.close()
        if context is not None and context.is_chief and run_directory.path.exists():
            _end_quietly(run_directory, "interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
        message, status_code = _expected_failure(error, experiment.name, logdir)
        if message is None:
            raise
        return _fail(args, message, status_code)
    if not context.is_chief:
        task = context.describe_strategy()["task"]
        print(f"{PROGRAM}: {task} finished; the chief writes the run directory {logdir}.")
        return 0
    if context.trained_models:
        metrics = {**metrics, "trained_models": context.trained_models}
    metrics = {**metrics, "run": run_directory.end("finished")}
    run_directory.finish(metrics)
    print_summary(experiment, metrics, logdir)
    return 0


def _training_settings(config: dict, deterministic: bool) -> dict:
    """The run's mixed_precision and jit (jit off under --deterministic)."""
    settings = {key: config[key] for key in TRAINING_CHOICES if key in config}
    if deterministic and "jit" in settings:
        settings["jit"] = "off"
    return settings


def _fail(args, message: str, status: int) -> int:
    if args.traceback:
        traceback.print_exc()
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    return status


def _end_quietly(run_directory, outcome: str) -> None:
    try:
        run_directory.end(outcome)
    except OSError:  # the disk that failed the run may fail this too
        pass


def _expected_failure(error: BaseException, experiment: str, logdir: pathlib.Path):
    """(one-line message, exit status) for an expected failure; (None, None) for a bug."""
    resume = f"the same command (with --logdir {logdir}) resumes from the last checkpoint"
    if isinstance(error, KeyboardInterrupt):
        return f"interrupted; {resume}.", 130
    if isinstance(error, ConfigError):
        return str(error), 2
    if isinstance(error, OSError):
        full = error.errno == errno.ENOSPC
        return _describe_os_error(error, logdir) + (f", then {resume}." if full else "."), 1
    import tensorflow as tf

    if isinstance(error, tf.errors.OpError):
        text = error.message or str(error)
        if "No space left" in text or ("disk" in text.lower() and "full" in text.lower()):
            return f"the disk under {logdir} is full ({text.splitlines()[0]}); free some space, then {resume}.", 1
        if isinstance(error, tf.errors.PermissionDeniedError):
            return f"permission denied ({text.splitlines()[0]}); pick a writable --logdir.", 1
        if isinstance(error, tf.errors.ResourceExhaustedError):
            return (
                f"out of memory ({text.splitlines()[0][:200]}); lower batch_size (--set batch_size=...), "
                f"then {resume}.",
                1,
            )
        return None, None
    if isinstance(error, (ValueError, TypeError)):
        return f"in experiment {experiment!r}: {error}", 1
    return None, None


def _describe_os_error(error: OSError, logdir) -> str:
    """ "cannot use FILE: reason; fix" for an OSError."""
    if error.errno is None:  # raised with a message of its own (the data loaders')
        return str(error).rstrip(".")
    name = error.filename or logdir or "a file"
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        return f"the disk is full while writing {name} ({reason}); free some space"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return f"cannot write {name} ({reason}); pick a writable folder with --logdir"
    if error.errno == errno.ENOENT:
        return f"{name} does not exist ({reason}); check the path (--data-dir for data files)"
    return f"cannot use {name} ({reason})"


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
    """Print the experiment's summary of ``metrics`` and where the run directory is."""
    lines = (
        experiment.summarize(metrics)
        if experiment.summarize
        else [f"{key}: {value}" for key, value in metrics.items() if isinstance(value, (int, float))]
    )
    print(
        "\n".join(
            [
                "",
                *lines,
                f"run directory: {logdir} (config.json, metrics.json, the figures as PNG, TensorBoard events)",
                f"view it with: tensorboard --logdir {logdir.parent}",
            ]
        )
    )


if __name__ == "__main__":
    sys.exit(main())
