"""How accurate is the Deep CCA objective with float32 covariance algebra?

    python benchmarks/bench_covariance_precision.py                  # the full table
    python benchmarks/bench_covariance_precision.py --quick          # a short run

Everything after the networks (centring, covariances, Cholesky, triangular solves,
SVD; ``xmodal_tf.losses``) runs in float64 on a CPU; float64 is 1/32 to 1/64 of the
float32 speed on most GPUs. This script measures what float32 algebra costs in
accuracy, on real batches: split MNIST (left / right 14 columns of the digits, from
``xmodal_tf.data.load_split_mnist``; scikit-learn's 8x8 digits split the same way when
MNIST is not on disk) through the networks of Andrew et al. (two 392-1024-1024-50
sigmoid MLPs, ``xmodal_tf.encoders.mlp_encoder``), with the default ridge 1e-4.

For each state of the networks (at initialisation, and after ``--train-steps`` Adam
steps of Deep CCA training in float64), batch size and ``n_components``, it takes
``--batches`` training batches, and for each one computes the loss and its gradients
twice, with ``compute_dtype="float64"`` (the reference) and ``"float32"``, from the
same float32 network outputs (and once more from bfloat16 outputs, what a
mixed_bfloat16 network gives, with ``--bfloat16``). Reported, the worst over the
batches:

* ``loss rel``: |loss32 - loss64| / |loss64|;
* ``dH rel`` / ``dH cos``: relative L2 error and cosine of the gradient with respect
  to the network outputs (both views stacked);
* ``dW rel`` / ``dW cos``: the same for the gradient with respect to all network
  weights (3.0 M numbers);
* ``batch cos``: for scale, the cosine between the float64 weight gradients of two
  DIFFERENT batches (the minibatch noise SGD already lives with); and ``fails``, the
  number of batches where float32 raised (a covariance not positive definite).
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
from xmodal_tf.losses import deep_cca_loss  # noqa: E402
from xmodal_tf.optimizers import FusedAdam  # noqa: E402

OUTPUT_DIM = 50
REG = 1e-4


def load_views(data_dir: str | None):
    """Training views (n, d) float32 and the data set's name."""
    try:
        from xmodal_tf.data import load_split_mnist

        data = load_split_mnist(data_dir=data_dir, download=False)
        return data.train.view1, data.train.view2, "split MNIST (392 + 392 pixels)"
    except (FileNotFoundError, OSError, ValueError) as error:
        print(f"split MNIST unavailable ({error}); using scikit-learn's digits instead")
        from sklearn.datasets import load_digits

        images = load_digits().images.astype(np.float32) / 16.0
        return (
            images[:, :, :4].reshape(len(images), -1),
            images[:, :, 4:].reshape(len(images), -1),
            "scikit-learn digits (32 + 32 pixels)",
        )


def flat(gradients) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in gradients])


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))


class Measure:
    """The loss and its gradients (outputs, weights) for one batch and one setting."""

    def __init__(self, encoders):
        self.encoders = encoders
        self.variables = encoders[0].trainable_variables + encoders[1].trainable_variables
        self._functions = {}

    def __call__(self, x, y, k, compute_dtype, output_dtype):
        key = (k, compute_dtype, output_dtype)
        if key not in self._functions:
            self._functions[key] = tf.function(
                lambda x, y: self._loss_and_gradients(x, y, k, compute_dtype, output_dtype), jit_compile=False
            )
        loss, outputs, weights = self._functions[key](x, y)
        return float(loss.numpy()), flat(outputs), flat(weights)

    def _loss_and_gradients(self, x, y, k, compute_dtype, output_dtype):
        with tf.GradientTape(persistent=True) as tape:
            h = [tf.cast(encoder(view, training=False), output_dtype) for encoder, view in zip(self.encoders, (x, y))]
            tape.watch(h)
            loss = deep_cca_loss(h[0], h[1], n_components=k, reg=REG, compute_dtype=compute_dtype)
        outputs = tape.gradient(loss, h)
        weights = tape.gradient(loss, self.variables)
        del tape
        return loss, outputs, weights


def train(encoders, x, y, steps: int, batch_size: int, seed: int) -> None:
    """``steps`` Adam steps of the float64 Deep CCA objective (top 50 correlations)."""
    variables = encoders[0].trainable_variables + encoders[1].trainable_variables
    optimizer = FusedAdam(1e-3)
    optimizer.build(variables)
    rng = np.random.default_rng(seed)

    @tf.function(jit_compile=False)
    def step(bx, by):
        with tf.GradientTape() as tape:
            loss = deep_cca_loss(
                encoders[0](bx, training=True),
                encoders[1](by, training=True),
                n_components=OUTPUT_DIM,
                reg=REG,
                compute_dtype="float64",
            )
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    for index in range(steps):
        rows = rng.choice(len(x), batch_size, replace=False)
        loss = step(x[rows], y[rows])
        if (index + 1) % max(1, steps // 4) == 0:
            print(f"  training step {index + 1}/{steps}: loss {float(loss):.3f}", flush=True)


def table(encoders, x, y, state, batch_sizes, components, batches, output_dtypes, seed):
    measure = Measure(encoders)
    rng = np.random.default_rng(seed)
    rows = []
    for batch_size in batch_sizes:
        picks = [rng.choice(len(x), batch_size, replace=False) for _ in range(batches + 1)]
        for k in components:
            for output_dtype in output_dtypes:
                worst = {"loss": 0.0, "dh_rel": 0.0, "dh_cos": 1.0, "dw_rel": 0.0, "dw_cos": 1.0}
                losses, batch_cos, fails = [], 1.0, 0
                previous = None
                for rows_ in picks:
                    bx, by = tf.constant(x[rows_]), tf.constant(y[rows_])
                    loss64, dh64, dw64 = measure(bx, by, k, "float64", output_dtype)
                    if previous is not None:
                        batch_cos = min(batch_cos, cosine(dw64, previous))
                    previous = dw64
                    if len(losses) == batches:  # the extra batch only serves batch_cos
                        continue
                    losses.append(loss64)
                    try:
                        loss32, dh32, dw32 = measure(bx, by, k, "float32", output_dtype)
                    except tf.errors.InvalidArgumentError:
                        fails += 1
                        continue
                    worst["loss"] = max(worst["loss"], abs(loss32 - loss64) / abs(loss64))
                    worst["dh_rel"] = max(worst["dh_rel"], relative(dh32, dh64))
                    worst["dh_cos"] = min(worst["dh_cos"], cosine(dh32, dh64))
                    worst["dw_rel"] = max(worst["dw_rel"], relative(dw32, dw64))
                    worst["dw_cos"] = min(worst["dw_cos"], cosine(dw32, dw64))
                rows.append(
                    {
                        "state": state,
                        "batch": batch_size,
                        "k": k,
                        "outputs": output_dtype,
                        "loss64": float(np.mean(losses)),
                        **worst,
                        "batch_cos": batch_cos,
                        "fails": fails,
                    }
                )
                print_row(rows[-1])
    return rows


HEADER = (
    f"{'networks':<12} {'batch':>5} {'k':>3} {'outputs':>8} {'mean loss64':>11} {'loss rel':>9} "
    f"{'dH rel':>9} {'dH cos':>11} {'dW rel':>9} {'dW cos':>11} {'batch cos':>9} {'fails':>5}"
)


def print_row(row: dict) -> None:
    print(
        f"{row['state']:<12} {row['batch']:>5} {row['k']:>3} {row['outputs']:>8} {row['loss64']:>11.4f} "
        f"{row['loss']:>9.1e} {row['dh_rel']:>9.1e} {row['dh_cos']:>11.8f} {row['dw_rel']:>9.1e} "
        f"{row['dw_cos']:>11.8f} {row['batch_cos']:>9.3f} {row['fails']:>5}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with mnist.npz (default: $XMODAL_DATA_DIR, then /work/shared/data when it exists)",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 200, 800])
    parser.add_argument("--components", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--batches", type=int, default=5, help="batches measured per setting (worst reported)")
    parser.add_argument("--train-steps", type=int, default=300, help="Adam steps before the 'trained' rows")
    parser.add_argument("--train-batch-size", type=int, default=800)
    parser.add_argument("--bfloat16", action="store_true", help="also measure from bfloat16 network outputs")
    parser.add_argument("--quick", action="store_true", help="2 batches, 30 training steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.batches, args.train_steps = 2, 30
    data_dir = args.data_dir
    if data_dir is None and not os.environ.get("XMODAL_DATA_DIR") and os.path.isdir("/work/shared/data"):
        data_dir = "/work/shared/data"
    x, y, source = load_views(data_dir)
    output_dtypes = ["float32"] + (["bfloat16"] if args.bfloat16 else [])
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; {source}, {len(x)} training pairs; "
        f"ridge {REG}; worst of {args.batches} batches per row"
    )
    keras.utils.set_random_seed(args.seed)
    encoders = (
        mlp_encoder(x.shape[1], OUTPUT_DIM, name="encoder_x"),
        mlp_encoder(y.shape[1], OUTPUT_DIM, name="encoder_y"),
    )
    started = time.perf_counter()
    print(HEADER)
    rows = table(encoders, x, y, "init", args.batch_sizes, args.components, args.batches, output_dtypes, args.seed)
    print(f"training {args.train_steps} steps (float64 algebra, batch {args.train_batch_size}, Adam 1e-3) ...")
    train(encoders, x, y, args.train_steps, args.train_batch_size, args.seed)
    print(HEADER)
    rows += table(
        encoders,
        x,
        y,
        f"{args.train_steps} steps",
        args.batch_sizes,
        args.components,
        args.batches,
        output_dtypes,
        args.seed + 1,
    )
    worst_loss = max(row["loss"] for row in rows)
    worst_cos = min(row["dw_cos"] for row in rows)
    print(
        f"\nworst over all rows: loss rel {worst_loss:.1e}, weight-gradient cosine {worst_cos:.8f}, "
        f"float32 failures {sum(row['fails'] for row in rows)}; {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
