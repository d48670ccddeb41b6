"""DeepCCA training throughput against the floor of the bare networks.

    python benchmarks/bench_deepcca.py                 # float32, then mixed_bfloat16
    python benchmarks/bench_deepcca.py --steps 40 --batch-size 800 --no-bfloat16
    python benchmarks/bench_deepcca.py --stages        # where the fixed cost per step goes
    python -m benchmarks --only deepcca                # the rows() in the suite's table

Two 392-1024-1024-50 sigmoid MLP encoders (the DeepCCA networks of Andrew et al.),
batches of 800 random pairs held in memory, trained on the CPU. Timed in one process:

* floor: forward + backward of the same two encoders with a trivial loss (the sum of
  the squared outputs) in one ``tf.function``, no optimizer update: the matrix
  multiplies every DeepCCA step must do;
* floor + update: the same plus the ``FusedAdam`` update of the encoders' weights (the
  floor the other models' benchmarks use), reported as a second ratio;
* ``DeepCCATrainer``: the custom ``tf.function`` loop (loss, gradients, Adam update
  with ``xmodal_tf.optimizers.FusedAdam``);
* ``model.fit``: the same model and optimizer trained by Keras' ``fit``.

Each is warmed up (tracing), then the loops are timed in turn over ``--steps`` steps,
``--repeats`` rounds (interleaved, so a noisy neighbour hits all alike); the best time
per step is compared (``ratio = best step / best floor``), and the median of the
per-round ratios too. 1.00 means nothing is added on top of the networks.

``--stages`` times the parts of a step on one fixed batch (each in a ``tf.function``
looping over the steps, so no per-call overhead): the floors, the DeepCCA loss's
forward + backward with and without the update, the full step with its non-finite
check, and in isolation the objective's statistics, whitening (Cholesky + solves) and
SVD in float64 and float32, the non-finite check of the gradients, the optimizer
update and the casts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from xmodal_tf import losses  # noqa: E402
from xmodal_tf.encoders import mlp_encoder  # noqa: E402
from xmodal_tf.models import DeepCCA  # noqa: E402
from xmodal_tf.models.base import _all_finite  # noqa: E402
from xmodal_tf.optimizers import FusedAdam  # noqa: E402
from xmodal_tf.training import DeepCCATrainer  # noqa: E402

INPUT_DIM, OUTPUT_DIM = 392, 50
TARGET = 1.15
PRECISIONS = ("float32", "mixed_bfloat16")
FLOOR = "forward + backward of the two encoders, trivial loss"
FLOOR_UPDATE = FLOOR + ", + FusedAdam update"


def encoders():
    return (mlp_encoder(INPUT_DIM, OUTPUT_DIM, name="encoder_x"), mlp_encoder(INPUT_DIM, OUTPUT_DIM, name="encoder_y"))


def arrays(batch_size: int, steps: int):
    """``steps`` batches of correlated random pairs (float32)."""
    rng = np.random.default_rng(0)
    n = batch_size * steps
    shared = rng.standard_normal((n, 20)).astype(np.float32)
    x = shared @ rng.standard_normal((20, INPUT_DIM)).astype(np.float32)
    y = shared @ rng.standard_normal((20, INPUT_DIM)).astype(np.float32)
    x += rng.standard_normal(x.shape).astype(np.float32)
    y += rng.standard_normal(y.shape).astype(np.float32)
    return x, y


def batches(batch_size: int, steps: int):
    """A dataset of ``steps`` in-memory batches of correlated random pairs, repeated."""
    x, y = arrays(batch_size, steps)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)
    return dataset.cache().repeat().prefetch(tf.data.AUTOTUNE), (x, y)


def _square_sum(*tensors):
    return tf.add_n([tf.reduce_sum(tf.square(tf.cast(t, tf.float32))) for t in tensors])


def floor_runner(batch_size, steps, update=False):
    """A function running ``steps`` forward+backward passes with a trivial loss (and, with
    ``update``, the FusedAdam update)."""
    encoder_x, encoder_y = encoders()
    variables = encoder_x.trainable_variables + encoder_y.trainable_variables
    optimizer = FusedAdam(1e-3)
    optimizer.build(variables)
    dataset, _ = batches(batch_size, steps)

    @tf.function(jit_compile=False)
    def run(iterator):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            x, y = next(iterator)
            with tf.GradientTape() as tape:
                loss = _square_sum(encoder_x(x, training=True), encoder_y(y, training=True))
            gradients = tape.gradient(loss, variables)
            if update:
                optimizer.apply(gradients, variables)
                total += loss
            else:
                # Consume every gradient so none of the backward pass is pruned.
                total += tf.add_n([tf.cast(tf.reduce_sum(g[..., :1]), tf.float32) for g in gradients])
        return total

    iterator = iter(dataset)
    return lambda: run(iterator).numpy()


def trainer_runner(batch_size, steps):
    model = DeepCCA(*encoders(), n_components=OUTPUT_DIM, reg=1e-4)
    trainer = DeepCCATrainer(model, FusedAdam(1e-3), progress=False)
    dataset, _ = batches(batch_size, steps)
    one_epoch = dataset.take(steps)
    return lambda: trainer.fit(one_epoch, epochs=trainer.epoch + 1)


def fit_runner(batch_size, steps):
    model = DeepCCA(*encoders(), n_components=OUTPUT_DIM, reg=1e-4)
    model.compile(optimizer=FusedAdam(1e-3))
    dataset, _ = batches(batch_size, steps)
    return lambda: model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)


def interleaved(runners: dict, repeats: int, steps: int, warmups: int = 2) -> dict:
    """{name: [seconds per step, one per repeat]}, after ``warmups`` runs of each (the
    first traces)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fit's "shuffle=True ... ignored"
        for runner in runners.values():
            for _ in range(warmups):
                runner()
        times = {name: [] for name in runners}
        for _ in range(repeats):
            for name, runner in runners.items():
                started = time.perf_counter()
                runner()
                times[name].append((time.perf_counter() - started) / steps)
    return times


def measure(policy: str, batch_size: int, steps: int, repeats: int, warmups: int = 2) -> dict:
    """Seconds per step of the floors and the two loops (interleaved) under ``policy``."""
    keras.backend.clear_session()  # also resets the dtype policy: set it after
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        runners = {
            "floor": floor_runner(batch_size, steps),
            "floor + update": floor_runner(batch_size, steps, update=True),
            "DeepCCATrainer step": trainer_runner(batch_size, steps),
            "model.fit step": fit_runner(batch_size, steps),
        }
        return interleaved(runners, repeats, steps, warmups)
    finally:
        keras.config.set_dtype_policy("float32")


def rows(*, quick: bool = False, precisions=PRECISIONS, batch_size: int = 800, steps=None, repeats=None) -> list[dict]:
    """Rows for the benchmark suite (``benchmarks.ROW_KEYS``): for each precision and loop
    (``DeepCCATrainer`` step, ``model.fit`` step), one row against the forward + backward
    floor and one against the floor with the optimizer update. ``ratio`` is the best
    step time over the best floor time; ``paired_ratio`` the median over rounds of each
    round's step / floor. ``quick``: 5 steps x 3 rounds after one warm-up (mostly tracing:
    about 25 s for both precisions on 2 idle cores)."""
    steps = steps or (5 if quick else 30)
    repeats = repeats or (3 if quick else 5)
    results = []
    for precision in precisions:
        times = measure(precision, batch_size, steps, repeats, warmups=1 if quick else 2)
        for what in ("DeepCCATrainer step", "model.fit step"):
            for floor_key, floor_text in (("floor", FLOOR), ("floor + update", FLOOR_UPDATE)):
                floor_ms = min(times[floor_key]) * 1e3
                step_ms = min(times[what]) * 1e3
                results.append(
                    {
                        "benchmark": "DeepCCA",
                        "what": what,
                        "precision": precision,
                        "floor": floor_text,
                        "floor_ms": floor_ms,
                        "step_ms": step_ms,
                        "ratio": step_ms / floor_ms,
                        "paired_ratio": statistics.median(t / f for t, f in zip(times[what], times[floor_key])),
                        "batch_size": batch_size,
                        "steps": steps,
                        "repeats": repeats,
                    }
                )
    return results


# ----------------------------------------------------------------------------- --stages
def _loop(body, steps: int):
    """A function running ``body()`` ``steps`` times in one tf.function (no per-step host
    work); each body returns a scalar that is summed, so nothing is pruned."""

    @tf.function(jit_compile=False)
    def run():
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            total += tf.cast(body(), tf.float32)
        return total

    return lambda: run().numpy()


def _consume(gradients):
    return tf.add_n([tf.cast(tf.reduce_sum(g[..., :1]), tf.float32) for g in gradients if g is not None])


def stage_runners(batch_size: int, steps: int) -> dict:
    """{name: runner} for ``--stages``: the parts of a DeepCCA step on one fixed batch."""
    x_array, y_array = arrays(batch_size, 1)
    x, y = tf.constant(x_array), tf.constant(y_array)
    model = DeepCCA(*encoders(), n_components=OUTPUT_DIM, reg=1e-4)
    encoder_x, encoder_y = model.encoder_x, model.encoder_y
    variables = model.trainable_variables
    optimizer = FusedAdam(1e-3)
    optimizer.build(variables)
    h_x, h_y = encoder_x(x, training=False), encoder_y(y, training=False)  # the policy's output dtype
    frozen = [tf.identity(v.value) for v in variables]  # gradient-sized tensors

    def backward(loss_of_batch, update):
        """Forward + backward of ``loss_of_batch()``, then the update or a use of every gradient."""

        def body():
            with tf.GradientTape() as tape:
                loss = loss_of_batch()
            gradients = tape.gradient(loss, variables)
            if update:
                optimizer.apply(gradients, variables)
                return loss
            return _consume(gradients)

        return body

    def floor(update):
        return backward(lambda: _square_sum(encoder_x(x, training=True), encoder_y(y, training=True)), update)

    def deepcca(update):
        return backward(lambda: model.batch_loss(x, y, training=True)["loss"], update)

    def full_step():
        model.compute_and_apply_gradients((x, y), optimizer)
        return tf.constant(0.0)

    def objective(part, dtype):
        """Forward + backward (w.r.t. the outputs) of a part of the objective."""

        def body():
            with tf.GradientTape() as tape:
                tape.watch([h_x, h_y])
                statistics_ = losses.batch_statistics(h_x, h_y, dtype)
                if part == "statistics":
                    value = tf.add_n([tf.reduce_sum(s) for s in statistics_[1:]])
                elif part == "whitening":
                    value = tf.reduce_sum(losses._whitened_from_statistics(statistics_, (1e-4, 1e-4)))
                else:
                    value = -tf.reduce_sum(losses.correlations_from_statistics(statistics_, reg=1e-4))
            return tf.cast(value, tf.float32) + _consume(tape.gradient(value, [h_x, h_y]))

        return body

    def batch_loss_on_outputs():
        """The model's objective path on fixed outputs (statistics, usability check,
        algebra, cast back), forward + backward."""
        with tf.GradientTape() as tape:
            tape.watch([h_x, h_y])
            statistics_ = model.objective_fn.statistics(h_x, h_y, runtime_checks=False)
            loss = -tf.reduce_sum(model.correlations_from_statistics(statistics_, tf.float32))
        return loss + _consume(tape.gradient(loss, [h_x, h_y]))

    def casts():
        with tf.GradientTape() as tape:
            tape.watch([h_x, h_y])
            value = tf.reduce_sum(tf.cast(h_x, tf.float64)) + tf.reduce_sum(tf.cast(h_y, tf.float64))
        return tf.cast(value, tf.float32) + _consume(tape.gradient(value, [h_x, h_y]))

    def finite_check():
        return tf.cast(_all_finite(tf.constant(1.0), frozen), tf.float32)

    def update_alone():
        optimizer.apply(frozen, variables)
        return tf.constant(0.0)

    bodies = {
        "floor: forward + backward": floor(False),
        "floor + FusedAdam update": floor(True),
        "DeepCCA loss forward + backward": deepcca(False),
        "DeepCCA loss + update (no skip logic)": deepcca(True),
        "full step (compute_and_apply_gradients)": full_step,
        "objective path of batch_loss, f64 (fwd+bwd)": batch_loss_on_outputs,
    }
    for dtype in ("float64", "float32"):
        for part in ("statistics", "whitening", "objective"):
            bodies[f"  {part} alone, {dtype} (fwd+bwd)"] = objective(part, tf.as_dtype(dtype))
    bodies.update(
        {
            "  cast outputs -> float64 (fwd+bwd)": casts,
            "  non-finite check of 3.0M gradients": finite_check,
            "  FusedAdam update alone": update_alone,
        }
    )
    return {name: _loop(body, steps) for name, body in bodies.items()}


def print_stages(policy: str, batch_size: int, steps: int, repeats: int) -> dict:
    keras.backend.clear_session()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        times = interleaved(stage_runners(batch_size, steps), repeats, steps)
    finally:
        keras.config.set_dtype_policy("float32")
    floor = min(times["floor: forward + backward"])
    print(
        f"\n{policy}: parts of a DeepCCA step, batch {batch_size}, {steps} steps x {repeats} rounds "
        "(ms per step; share of the forward + backward floor)"
    )
    for name, values in times.items():
        print(
            f"  {name:<46} best {min(values) * 1e3:7.2f}  median {np.median(values) * 1e3:7.2f}"
            f"  ({min(values) / floor:6.1%})"
        )
    return times


# ----------------------------------------------------------------------------- CLI
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=800)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-bfloat16", action="store_true", help="skip mixed_bfloat16")
    parser.add_argument("--stages", action="store_true", help="time the parts of a step instead")
    parser.add_argument("--quick", action="store_true", help="5 steps x 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 5, 3
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"{os.cpu_count()} CPU cores, target: both loops within {TARGET}x of the floor"
    )
    precisions = ("float32",) if args.no_bfloat16 else PRECISIONS
    if args.stages:
        for precision in precisions:
            print_stages(precision, args.batch_size, args.steps, args.repeats)
        return
    for precision in precisions:
        table = rows(precisions=(precision,), batch_size=args.batch_size, steps=args.steps, repeats=args.repeats)
        print(
            f"\npolicy {precision}: two {INPUT_DIM}-1024-1024-{OUTPUT_DIM} sigmoid MLPs, batch "
            f"{args.batch_size}, {args.steps} steps x {args.repeats} interleaved repeats"
        )
        for row in table:
            floor = "floor + update" if row["floor"] == FLOOR_UPDATE else "floor"
            print(
                f"  {row['what']:<20} vs {floor:<15} step {row['step_ms']:7.2f} ms  floor "
                f"{row['floor_ms']:7.2f} ms  ratio {row['ratio']:.3f}x  (paired median "
                f"{row['paired_ratio']:.3f}x){'' if row['ratio'] <= TARGET else '  above target'}",
                flush=True,
            )


if __name__ == "__main__":
    main()
