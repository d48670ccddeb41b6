"""Check that every model and experiment really runs on the GPU, and how fast.

    python benchmarks/gpu_check.py                 # on a machine with a GPU
    python benchmarks/gpu_check.py --cpu --quick   # the same checks against the CPU (a dry run)

Without a GPU it says so and exits 0 (``--cpu`` runs the checks against the CPU instead,
which is how the test suite exercises this script).

Two parts, each run in a fresh process per case (so one case's memory and graph
settings do not leak into the next):

1. Models (the cases of ``benchmarks/bench_models.py`` plus DeepCCA), each in float32
   and in mixed precision (bfloat16 on cards of compute capability >= 8.0, else
   float16), trained by ``xmodal_tf.training.Trainer`` with ``jit="auto"``:
   * every variable must live on the device;
   * every heavy op (matrix products, convolutions and their gradients), as TensorFlow's
     placer logs it (``tf.debugging.set_log_device_placement``), must run on it;
   * printed: step time, samples per second, peak device memory.
2. Experiments: each ``python -m xmodal_tf.train`` experiment that trains a network, run
   briefly with tiny settings in both precisions; the variables of every model it
   trained (``metrics.json``'s ``trained_models``) must live on the device.

Exit status: 0 when every check passed (or no GPU), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAVY_OPS = {
    "MatMul",
    "BatchMatMulV2",
    "BatchMatMulV3",
    "_FusedMatMul",
    "Conv2D",
    "_FusedConv2D",
    "Conv2DBackpropInput",
    "Conv2DBackpropFilter",
    "DepthwiseConv2dNative",
    "Einsum",
}
PLACEMENT = re.compile(r"^(?:.* placer\.cc:\d+\] )?(\S+): \((\w+)\): (/job:\S+)$")
RESULT = "GPU_CHECK_RESULT "
MODELS = (
    "DeepCCA",
    "DeepCCA_EY",
    "DeepMCCA",
    "MultimodalAutoencoder",
    "ConditionalGAN",
    "DualEncoder",
    "FusionClassifier",
)
EXPERIMENTS = {
    "deepcca": [
        "--set",
        "hidden_units=[64]",
        "--set",
        "epochs=2",
        "--set",
        "batch_size=128",
        "--set",
        "n_components=4",
    ],
    "mae": [
        "--set",
        "epochs=1",
        "--set",
        "train_size=400",
        "--set",
        "batch_size=100",
        "--set",
        "code_dim=8",
        "--set",
        "embedding_dim=8",
        "--set",
        "filters=[8]",
        "--set",
        "decoder_hidden_units=[16]",
    ],
    "retrieval": [
        "--set",
        "filters=[16]",
        "--set",
        "embedding_dim=32",
        "--set",
        "projection_dim=16",
        "--set",
        "epochs=2",
    ],
    "fusion": ["--set", "seeds=1", "--set", "epochs=2"],
    "cgan": [
        "--set",
        "steps=20",
        "--set",
        "steps_per_epoch=10",
        "--set",
        "batch_size=32",
        "--set",
        "classifier_epochs=2",
        "--set",
        "samples_per_condition=4",
        "--set",
        "generator_filters=4",
        "--set",
        "discriminator_filters=4",
    ],
    "transfer": [
        "--set",
        "label_fractions=[0.1]",
        "--set",
        "seeds=1",
        "--set",
        "pretrain_epochs=3",
        "--set",
        "target_epochs=3",
        "--set",
        "distill_epochs=3",
    ],
}


# ----------------------------------------------------------------------------- the child
def build_case(name: str, batch_size: int, steps: int):
    """(model built and compiled, dataset of ``steps`` batches) for one model."""
    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(ROOT))
    if name in ("DeepCCA", "DeepCCA_EY", "DeepMCCA"):
        from xmodal_tf.encoders import mlp_encoder
        from xmodal_tf.models import DeepCCA, DeepMCCA

        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch_size * steps, 392)).astype("float32")
        y = (x[:, :50] @ rng.standard_normal((50, 392)) + rng.standard_normal(x.shape)).astype("float32")
        if name == "DeepMCCA":  # three views: the EY objective of all of them
            z = (x[:, :50] @ rng.standard_normal((50, 392)) + rng.standard_normal(x.shape)).astype("float32")
            model = DeepMCCA([mlp_encoder(392, 50, name=f"encoder_{view}") for view in "xyz"], n_components=50)
            data = ((x, y, z),)
        else:
            objective = "ey" if name == "DeepCCA_EY" else "trace"
            encoders = (mlp_encoder(392, 50, name="encoder_x"), mlp_encoder(392, 50, name="encoder_y"))
            model = DeepCCA(*encoders, n_components=50, objective=objective)
            data = (x, y)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        dataset = tf.data.Dataset.from_tensor_slices(data).batch(batch_size, drop_remainder=True)
        return model, dataset.cache()
    from benchmarks.bench_models import CASES, compiled

    build, _, dataset, _ = CASES[name](batch_size, steps)
    return compiled(build()), dataset.take(steps)


def run_child(name: str, mixed_precision: str, device: str, batch_size: int, steps: int) -> None:
    """Train one model on ``device`` and print its RESULT line (placement goes to the log)."""
    import tensorflow as tf

    from xmodal_tf.training import Trainer

    tf.debugging.set_log_device_placement(True)
    with tf.device(f"/{device}:0"):
        model, dataset = build_case(name, batch_size, steps)
        trainer = Trainer(model, None, mixed_precision=mixed_precision, jit="auto", progress=False)
        trainer.fit(dataset, epochs=1)  # traces
        gpu = device == "GPU"
        if gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")
        began = time.perf_counter()
        history = trainer.fit(dataset, epochs=2)
        seconds = time.perf_counter() - began
    steps_run = history["steps"][-1]
    result = {
        "model": name,
        "mixed_precision": trainer.mixed_precision,
        "jit_compile": bool(trainer.jit_compile),
        "step_ms": 1000 * seconds / steps_run,
        "samples_per_second": steps_run * batch_size / seconds,
        "peak_memory_mib": tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpu else None,
        "variable_devices": sorted({_device_name(v.value.device) for v in model.weights}),
    }
    print(RESULT + json.dumps(result), flush=True)


def _device_name(device: str) -> str:
    """ "/job:localhost/replica:0/task:0/device:GPU:0" -> "GPU:0"."""
    return device.rsplit("device:", 1)[-1] if "device:" in device else device


def heavy_op_devices(log: str) -> dict:
    """{device: number of heavy ops placed there} from a placer log (TensorFlow prints
    each placement twice, plain and with a log prefix: counted once)."""
    placed = set()
    for line in log.splitlines():
        match = PLACEMENT.match(line.strip())
        if match and match.group(2) in HEAVY_OPS:
            placed.add((match.group(1), _device_name(match.group(3))))
    counts = {}
    for _, device in placed:
        counts[device] = counts.get(device, 0) + 1
    return counts


# ----------------------------------------------------------------------------- the parent
def check_model(name: str, mixed_precision: str, device: str, batch_size: int, steps: int) -> tuple:
    """(result dict, list of failures) of one model in a child process."""
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        mixed_precision,
        "--device",
        device,
        "--batch-size",
        str(batch_size),
        "--steps",
        str(steps),
    ]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=ROOT)
    log = completed.stdout + completed.stderr
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT)]
    if completed.returncode != 0 or not lines:
        return {"model": name, "mixed_precision": mixed_precision}, [f"failed to run: {log.strip()[-1500:]}"]
    result = json.loads(lines[-1][len(RESULT) :])
    failures = []
    expected = f"{device}:0"
    if result["variable_devices"] != [expected]:
        failures.append(f"variables on {result['variable_devices']}, expected only {expected}")
    heavy = heavy_op_devices(log)
    result["heavy_ops"] = heavy
    elsewhere = {d: n for d, n in heavy.items() if d != expected}
    if not heavy:
        failures.append("no heavy op in the placement log (is TF_CPP_MIN_LOG_LEVEL=0 honoured?)")
    elif elsewhere:
        failures.append(f"heavy ops off the device: {elsewhere}")
    return result, failures


def check_experiment(name: str, mixed_precision: str, device: str) -> tuple:
    """(seconds, trained models, failures) of one short CLI run."""
    with tempfile.TemporaryDirectory() as folder:
        logdir = pathlib.Path(folder) / name
        command = [
            sys.executable,
            "-m",
            "xmodal_tf.train",
            name,
            "--logdir",
            str(logdir),
            "--mixed-precision",
            mixed_precision,
            *EXPERIMENTS[name],
        ]
        environment = {**os.environ, "PYTHONPATH": str(ROOT)}
        if device == "CPU":
            environment["CUDA_VISIBLE_DEVICES"] = ""
        began = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=ROOT)
        seconds = time.perf_counter() - began
        if completed.returncode != 0:
            return seconds, [], [f"exit {completed.returncode}: {completed.stderr.strip()[-1500:]}"]
        trained = json.loads((logdir / "metrics.json").read_text()).get("trained_models", [])
    failures = [
        f"{entry['model']}: variables on {entry['variable_devices']}"
        for entry in trained
        if entry["variable_devices"] != [f"{device}:0"]
    ]
    if not trained:
        failures.append("no model trained through the Trainer")
    return seconds, trained, failures


def mixed_precision_for(device: str) -> str:
    """bfloat16 where the device computes in it natively (CPUs here; GPUs of compute
    capability 8.0 or more), else float16."""
    if device == "CPU":
        return "bfloat16"
    import tensorflow as tf

    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    return "bfloat16" if tuple(details.get("compute_capability", (0, 0))) >= (8, 0) else "float16"


def describe_gpu() -> str | None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return (
        f"{details.get('device_name', 'GPU')} (compute capability "
        f"{'.'.join(map(str, details.get('compute_capability', ('?',))))}), {len(gpus)} visible"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run the checks against the CPU (a dry run)")
    parser.add_argument("--quick", action="store_true", help="one mixed-precision model and experiment only")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--experiments", nargs="*", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--device", default="GPU", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.child:
        run_child(args.child[0], args.child[1], args.device, args.batch_size, args.steps)
        return 0
    gpu = describe_gpu()
    if gpu is None and not args.cpu:
        print(
            "No GPU is visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty): nothing to check. "
            "On this machine the GPU path is tested only through XLA on the CPU (tests/test_precision.py); "
            "run `python benchmarks/gpu_check.py --cpu` for a dry run of these checks against the CPU."
        )
        return 0
    device = "CPU" if args.cpu else "GPU"
    mixed = mixed_precision_for(device)
    precisions = [mixed] if args.quick else ["off", mixed]
    models = args.models[:1] if args.quick else args.models
    experiments = args.experiments[:1] if args.quick else args.experiments
    print(
        f"Device: {gpu if device == 'GPU' else 'CPU (dry run)'}; precisions {precisions}; batch {args.batch_size}, "
        f"{args.steps} steps\n"
    )
    failed = 0
    print(f"{'model':<22} {'precision':<9} {'XLA':<4} {'step ms':>8} {'samples/s':>10} {'peak MiB':>9}  heavy ops")
    for name in models:
        for precision in precisions:
            result, failures = check_model(name, precision, device, args.batch_size, args.steps)
            failed += bool(failures)
            if "step_ms" in result:
                peak = "-" if result["peak_memory_mib"] is None else f"{result['peak_memory_mib']:.0f}"
                print(
                    f"{name:<22} {precision:<9} {'yes' if result['jit_compile'] else 'no':<4} "
                    f"{result['step_ms']:8.2f} {result['samples_per_second']:10.0f} {peak:>9}  "
                    f"{result['heavy_ops']}",
                    flush=True,
                )
            for failure in failures:
                print(f"  FAILED {name} {precision}: {failure}", flush=True)
    print(f"\n{'experiment':<12} {'precision':<9} {'seconds':>8}  models trained (variables on the device)")
    for name in experiments:
        for precision in precisions:
            seconds, trained, failures = check_experiment(name, precision, device)
            failed += bool(failures)
            print(f"{name:<12} {precision:<9} {seconds:8.1f}  {len(trained)}", flush=True)
            for failure in failures:
                print(f"  FAILED {name} {precision}: {failure}", flush=True)
    print("\nall checks passed" if not failed else f"\n{failed} check(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
