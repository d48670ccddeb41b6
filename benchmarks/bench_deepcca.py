"""DeepCCA training throughput against the floor of the bare networks.

    python benchmarks/bench_deepcca.py                 # float32, then mixed_bfloat16
    python benchmarks/bench_deepcca.py --steps 40 --batch-size 800 --no-bfloat16

Two 392-1024-1024-50 sigmoid MLP encoders (the DeepCCA networks of Andrew et al.),
batches of 800 random pairs held in memory, trained on the CPU. Timed in one process:

* floor: forward + backward of the same two encoders with a trivial loss (the sum of
  the squared outputs) in one ``tf.function``, no optimizer update: the matrix
  multiplies every DeepCCA step must do;
* ``DeepCCATrainer``: the custom ``tf.function`` loop (loss, gradients, Adam update
  with ``xmodal_tf.optimizers.FusedAdam``);
* ``model.fit``: the same model and optimizer trained by Keras' ``fit``.

Each is warmed up (tracing), then the three are timed in turn over ``--steps`` steps,
``--repeats`` rounds (interleaved, so a noisy neighbour hits all three alike); the best
time per sample is compared, and the median too. Ratios are time per sample relative
to the floor: 1.00 means nothing is added on top of the networks.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from xmodal_tf.encoders import mlp_encoder  # noqa: E402
from xmodal_tf.models import DeepCCA  # noqa: E402
from xmodal_tf.optimizers import FusedAdam  # noqa: E402
from xmodal_tf.training import DeepCCATrainer  # noqa: E402

INPUT_DIM, OUTPUT_DIM = 392, 50


def encoders():
    return (mlp_encoder(INPUT_DIM, OUTPUT_DIM, name="encoder_x"),
            mlp_encoder(INPUT_DIM, OUTPUT_DIM, name="encoder_y"))


def batches(batch_size: int, steps: int):
    """A dataset of ``steps`` in-memory batches of correlated random pairs, repeated."""
    rng = np.random.default_rng(0)
    n = batch_size * steps
    shared = rng.standard_normal((n, 20)).astype(np.float32)
    x = shared @ rng.standard_normal((20, INPUT_DIM)).astype(np.float32)
    y = shared @ rng.standard_normal((20, INPUT_DIM)).astype(np.float32)
    x += rng.standard_normal(x.shape).astype(np.float32)
    y += rng.standard_normal(y.shape).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)
    return dataset.cache().repeat().prefetch(tf.data.AUTOTUNE), (x, y)


def floor_runner(batch_size, steps):
    """A function running ``steps`` forward+backward passes with a trivial loss."""
    encoder_x, encoder_y = encoders()
    variables = encoder_x.trainable_variables + encoder_y.trainable_variables
    dataset, _ = batches(batch_size, steps)

    @tf.function(jit_compile=False)
    def run(iterator):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            x, y = next(iterator)
            with tf.GradientTape() as tape:
                loss = (tf.reduce_sum(tf.square(tf.cast(encoder_x(x, training=True), tf.float32)))
                        + tf.reduce_sum(tf.square(tf.cast(encoder_y(y, training=True), tf.float32))))
            gradients = tape.gradient(loss, variables)
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


def report(policy, batch_size, steps, repeats):
    """Time the three loops interleaved (one run of each per repeat), after a warm-up."""
    keras.mixed_precision.set_global_policy(policy)
    runners = {"floor (forward + backward)": floor_runner(batch_size, steps),
               "DeepCCATrainer": trainer_runner(batch_size, steps),
               "DeepCCA model.fit": fit_runner(batch_size, steps)}
    for runner in runners.values():
        runner()  # trace and warm up
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner()
            times[name].append(time.perf_counter() - started)
    samples = batch_size * steps
    floor_best = min(times["floor (forward + backward)"])
    floor_median = float(np.median(times["floor (forward + backward)"]))
    print(f"\npolicy {policy}: two {INPUT_DIM}-1024-1024-{OUTPUT_DIM} sigmoid MLPs, batch "
          f"{batch_size}, {steps} steps x {repeats} interleaved repeats")
    for name, values in times.items():
        best, median = min(values), float(np.median(values))
        print(f"  {name:<28} {samples / best:8.0f} samples/s (best)  {samples / median:8.0f} "
              f"(median)   time ratio to floor: best {best / floor_best:.3f}x, "
              f"median {median / floor_median:.3f}x")
    keras.mixed_precision.set_global_policy("float32")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=800)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-bfloat16", action="store_true", help="skip mixed_bfloat16")
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPU cores, target: both loops within 1.15x of the floor")
    report("float32", args.batch_size, args.steps, args.repeats)
    if not args.no_bfloat16:
        report("mixed_bfloat16", args.batch_size, args.steps, args.repeats)


if __name__ == "__main__":
    main()
