"""DeepCCA training throughput against the floor of the bare networks.

    python benchmarks/bench_deepcca.py                 # float32, then mixed_bfloat16
    python benchmarks/bench_deepcca.py --steps 40 --batch-size 800 --no-bfloat16

Two 392-1024-1024-50 sigmoid MLP encoders (the DeepCCA networks of Andrew et al.),
batches of 800 random pairs held in memory, trained on the CPU. Timed in one process:

* floor: forward + backward of the same two encoders with a trivial loss (the sum of
  the squared outputs) in one ``tf.function``, no optimizer update: the matrix
  multiplies every DeepCCA step must do;
* ``DeepCCATrainer``: the custom ``tf.function`` loop (loss, gradients, Adam update);
* ``model.fit``: the same model trained by Keras' ``fit``.

Each is warmed up (tracing) and then timed over ``--steps`` steps, ``--repeats``
times; the best time per sample is compared (the median is printed too). Ratios are
time per sample relative to the floor: 1.00 means nothing is added on top.
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


def floor_seconds(batch_size, steps, repeats):
    """Best/median seconds for ``steps`` forward+backward passes with a trivial loss."""
    encoder_x, encoder_y = encoders()
    variables = encoder_x.trainable_variables + encoder_y.trainable_variables
    dataset, _ = batches(batch_size, steps)

    @tf.function(jit_compile=False)
    def run(iterator):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            x, y = next(iterator)
            with tf.GradientTape() as tape:
                loss = (tf.reduce_sum(tf.square(encoder_x(x, training=True)))
                        + tf.reduce_sum(tf.square(encoder_y(y, training=True))))
            gradients = tape.gradient(loss, variables)
            total += tf.add_n([tf.reduce_sum(g[..., :1]) for g in gradients])
        return total

    iterator = iter(dataset)
    run(iterator).numpy()  # trace and warm up
    return timed(lambda: run(iterator).numpy(), repeats)


def trainer_seconds(batch_size, steps, repeats):
    model = DeepCCA(*encoders(), n_components=OUTPUT_DIM, reg=1e-4)
    trainer = DeepCCATrainer(model, keras.optimizers.Adam(1e-3), progress=False)
    dataset, _ = batches(batch_size, steps)
    one_epoch = dataset.take(steps)
    trainer.fit(one_epoch, epochs=1)  # trace and warm up
    return timed(lambda: trainer.fit(one_epoch, epochs=trainer.epoch + 1), repeats)


def fit_seconds(batch_size, steps, repeats):
    model = DeepCCA(*encoders(), n_components=OUTPUT_DIM, reg=1e-4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    dataset, _ = batches(batch_size, steps)
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)  # trace and warm up
    return timed(lambda: model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0), repeats)


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times), float(np.median(times))


def report(policy, batch_size, steps, repeats):
    keras.mixed_precision.set_global_policy(policy)
    samples = batch_size * steps
    results = {"floor (forward + backward)": floor_seconds(batch_size, steps, repeats),
               "DeepCCATrainer": trainer_seconds(batch_size, steps, repeats),
               "DeepCCA model.fit": fit_seconds(batch_size, steps, repeats)}
    floor_best = results["floor (forward + backward)"][0]
    print(f"\npolicy {policy}: two {INPUT_DIM}-1024-1024-{OUTPUT_DIM} sigmoid MLPs, batch "
          f"{batch_size}, {steps} steps x {repeats} repeats")
    for name, (best, median) in results.items():
        print(f"  {name:<28} {samples / best:8.0f} samples/s (best)  {samples / median:8.0f} "
              f"(median)   time ratio to floor {best / floor_best:.3f}x")
    keras.mixed_precision.set_global_policy("float32")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=800)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-bfloat16", action="store_true", help="skip mixed_bfloat16")
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPU cores, target: both loops within 1.15x of the floor")
    report("float32", args.batch_size, args.steps, args.repeats)
    if not args.no_bfloat16:
        report("mixed_bfloat16", args.batch_size, args.steps, args.repeats)


if __name__ == "__main__":
    main()
