"""Deep CCA on one device against two replicas: same weights, and what the global batch costs.

    python benchmarks/bench_distributed.py [--steps 20] [--batch 800] [--repeats 3]

Two logical CPU devices stand in for two GPUs (``MirroredStrategy``). The same DeepCCA
(two 392-256-256-50 ReLU MLPs with synchronised BatchNorm, SGD) trains the same global
batches three ways: on one device; on two replicas with the global-batch objective
(``global_batch=True``, statistics all-reduced); on two replicas with per-replica
objectives (``global_batch=False``). It prints, for each, the best time per step over
``--repeats`` runs and the largest weight difference from the one-device run after
``--steps`` steps. On a 2-core CPU the two "devices" share the cores, so the times say
what the synchronisation costs, not what a second GPU gains.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xmodal_tf.encoders import mlp_encoder  # noqa: E402
from xmodal_tf.models import DeepCCA  # noqa: E402
from xmodal_tf.training import Trainer  # noqa: E402


def build(global_batch: bool):
    keras.utils.set_random_seed(0)
    encoders = [
        mlp_encoder(
            392, 50, hidden_units=(256, 256), activation="relu", batch_norm=True, sync_batch_norm=True, name=name
        )
        for name in ("encoder_x", "encoder_y")
    ]
    return DeepCCA(*encoders, n_components=50, global_batch=global_batch)


def run(strategy, global_batch: bool, data, steps: int):
    with strategy.scope():
        model = build(global_batch)
        trainer = Trainer(model, keras.optimizers.SGD(0.05), strategy=strategy, progress=False)
    trainer.fit(data.take(1), epochs=1)  # trace and warm up
    began = time.perf_counter()
    trainer.fit(data.take(steps), epochs=2)
    seconds = (time.perf_counter() - began) / (2 * steps)
    return model, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(args.batch * args.steps, 30))
    views = [
        np.tanh(latent @ rng.normal(size=(30, 392)) + 0.5 * rng.normal(size=(len(latent), 392))).astype("float32")
        for _ in range(2)
    ]
    data = tf.data.Dataset.from_tensor_slices(tuple(views)).batch(args.batch, drop_remainder=True).cache()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    runs = {
        "one device": (tf.distribute.get_strategy(), True),
        "2 replicas, global_batch=True": (mirrored, True),
        "2 replicas, global_batch=False": (mirrored, False),
    }
    best, models = {}, {}
    for _ in range(args.repeats):
        for name, (strategy, global_batch) in runs.items():
            models[name], seconds = run(strategy, global_batch, data, args.steps)
            best[name] = min(best.get(name, np.inf), seconds)
    reference = models["one device"]
    print(
        f"DeepCCA 392-256-256-50, global batch {args.batch}, {args.steps} SGD steps x 2 epochs, best of {args.repeats}"
    )
    for name in runs:
        difference = max(
            float(np.abs(a.numpy() - b.numpy()).max())
            for a, b in zip(models[name].trainable_weights, reference.trainable_weights)
        )
        print(
            f"{name:<32} {best[name] * 1e3:8.1f} ms/step  {best[name] / best['one device']:5.2f}x  "
            f"max weight difference from one device {difference:.2e}"
        )


if __name__ == "__main__":
    main()
