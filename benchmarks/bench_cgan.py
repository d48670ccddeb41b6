"""Conditional GAN quality on MNIST: our default recipe against the textbook conditional GAN.

    python benchmarks/bench_cgan.py --data-dir ../shared/data                       # the final score (test images)
    python benchmarks/bench_cgan.py --data-dir ../shared/data --validation          # for tuning: no test image used
    python benchmarks/bench_cgan.py --data-dir ../shared/data --validation \\
        --models ours --set classifier_margin=2 --set steps=3000                    # a variant of the recipe
    python benchmarks/bench_cgan.py --data-dir ../shared/data --baseline-seconds 480  # baseline: 8 min of training
    python benchmarks/bench_cgan.py --data-dir ../shared/data --models baseline --baseline-steps 28125  # 30 epochs
    python benchmarks/bench_cgan.py --data digits                                   # scikit-learn's 8x8 digits, offline

1. An independent CNN classifier (``xmodal_tf.experiments.cgan.build_image_classifier``)
   is trained on the training images (60000 for MNIST, 1078 for digits); its accuracy
   on the reference images is printed (it should be >= 99% for the scores below to mean
   much).
2. Two conditional GANs train on batches of 64 (images in [0, 1], labels):

   * ours: the recipe of the ``cgan`` experiment for this data set (its defaults, with
     any ``--set KEY=VALUE`` on top; see ``xmodal_tf.experiments.cgan``), built and fed
     as the experiment does, for the recipe's ``steps`` (or ``--steps``);
   * baseline: the simplest conditional GAN (Mirza & Osindero 2014; the Keras GAN
     examples): dense networks (generator 256-512-1024 with batch norm, discriminator
     512-256 with dropout) with one-hot labels concatenated to the inputs, binary
     cross-entropy, Adam(2e-4, beta_1 = 0.5), for ``--baseline-steps`` (default: as
     many steps as ours) or ``--baseline-seconds`` of training (its steps are cheaper:
     give it our training time for a comparison at equal wall time).

3. Each generates 1000 images per class. Printed per model: the share the classifier
   labels as the requested class, over all and per class (with the minimum over the
   classes), the Frechet distance between the generated images and the reference
   images in the classifier's penultimate (128-d ReLU) feature space (lower is better;
   the distance between 10000 training images and the reference images is printed as
   a floor), the training wall time and steps per second.

Reference images: the test split (default), or with ``--validation`` the last 10000
training images (MNIST; the last 20% for digits), held out from the classifier and both
GANs, so that settings can be chosen without looking at the test split.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from xmodal_tf.experiments import cgan as recipe  # noqa: E402
from xmodal_tf.experiments.config import parse_overrides, resolve_config  # noqa: E402
from xmodal_tf.models.cgan import ConditionalGAN, build_dense_discriminator, build_dense_generator  # noqa: E402

BATCH_SIZE = 64
SAMPLES_PER_CLASS = 1000
VALIDATION_SIZE = {"mnist": 10000}  # digits: 20% of the training images


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        choices=("mnist", "digits"),
        default="mnist",
        help="MNIST 28x28 (mnist.npz) or scikit-learn's 8x8 digits (offline)",
    )
    parser.add_argument("--data-dir", default=None, help="folder holding mnist.npz (or $XMODAL_DATA_DIR)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps of our GAN (default: the recipe's steps for the data set)",
    )
    parser.add_argument(
        "--baseline-steps",
        type=int,
        default=None,
        help="training steps of the textbook baseline (default: as many as ours)",
    )
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=None,
        help="train the baseline for this many seconds instead (whole 500-step rounds until the "
        "time is up), e.g. our training time for a comparison at equal wall time",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of our recipe (a key of the cgan experiment), e.g. classifier_weight=0.5",
    )
    parser.add_argument(
        "--models", default="ours,baseline", help="which GANs to train: ours, baseline or both (default ours,baseline)"
    )
    parser.add_argument(
        "--validation",
        action="store_true",
        help="score against held-out training images (the last 10000 for MNIST), never the test split",
    )
    parser.add_argument(
        "--classifier-epochs",
        type=int,
        default=None,
        help="epochs of the classifier (default: the cgan experiment's, 3 MNIST / 30 digits)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def our_config(data: str, overrides: list, steps) -> dict:
    """The cgan experiment's configuration for ``data`` with the overrides on top."""
    layers = [{"data": data}, parse_overrides(overrides)]
    if steps is not None:
        layers.append({"steps": steps})
    config = recipe.resolve_data_defaults(resolve_config(recipe.DEFAULTS, *layers, choices=recipe.EXPERIMENT.choices))
    recipe.EXPERIMENT.validate(config)
    return config


def our_gan(image_shape, config, seed):
    return recipe.build_gan(image_shape, config, num_classes=10, seed=seed)


def baseline_gan(image_shape, seed):
    keras.utils.set_random_seed(seed)
    gan = ConditionalGAN(
        build_dense_generator(image_shape, 64, num_classes=10),
        build_dense_discriminator(image_shape, num_classes=10),
        num_classes=10,
        seed=seed,
    )
    gan.compile(
        g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
        d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
        loss="non_saturating",
    )
    return gan


def baseline_batches(images, labels, seed):
    return (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(images), seed=seed)
        .repeat()
        .batch(BATCH_SIZE, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def train(gan, dataset, steps, seconds=None):
    """Fit for ``steps`` steps (or, with ``seconds``, in rounds of 500 steps until that
    much time has passed); returns (wall seconds, steps taken)."""
    started = time.perf_counter()
    if seconds is not None:
        done = 0
        while time.perf_counter() - started < seconds:
            gan.fit(dataset, steps_per_epoch=500, epochs=1, verbose=0)
            done += 500
        return time.perf_counter() - started, done
    per_epoch = min(steps, 500)
    gan.fit(dataset, steps_per_epoch=per_epoch, epochs=-(-steps // per_epoch), verbose=0)
    return time.perf_counter() - started, per_epoch * -(-steps // per_epoch)


def score(gan, classifier, features, real_features):
    """(accuracy, per-class accuracies, Frechet distance) of 1000 samples per class."""
    requested = np.repeat(np.arange(10), SAMPLES_PER_CLASS)
    generated = gan.generate(np.arange(10), n=SAMPLES_PER_CLASS, seed=1)
    predicted = recipe.predict_classes(classifier, generated)
    per_class = np.array([np.mean(predicted[requested == k] == k) for k in range(10)])
    distance = recipe.frechet_distance(features.predict(generated, batch_size=1000, verbose=0), real_features)
    return float(np.mean(predicted == requested)), per_class, distance


def split(data: str, data_dir, validation: bool):
    """(train images, train labels, reference images, reference labels, description)."""
    x_train, y_train, x_test, y_test, description = recipe.load_images({"data": data, "train_size": None}, data_dir)
    if not validation:
        return x_train, y_train, x_test, y_test, f"{description}, scored against the test split"
    held_out = VALIDATION_SIZE.get(data, len(x_train) // 5)
    return (
        x_train[:-held_out],
        y_train[:-held_out],
        x_train[-held_out:],
        y_train[-held_out:],
        f"{description}, VALIDATION: scored against the last {held_out} training images (held out)",
    )


def main():
    args = parse_args()
    started = time.perf_counter()
    config = our_config(args.data, args.overrides, args.steps)
    steps = config["steps"]
    baseline_steps = args.baseline_steps or steps
    x_train, y_train, x_reference, y_reference, description = split(args.data, args.data_dir, args.validation)
    image_shape = x_train.shape[1:]
    epochs = args.classifier_epochs or recipe.DATA_DEFAULTS[args.data]["classifier_epochs"]
    budgets = {
        "ours": f"ours {steps} GAN steps of {config['batch_size']}",
        "baseline": "baseline "
        + (f"{args.baseline_seconds:.0f} s" if args.baseline_seconds else f"{baseline_steps} steps")
        + f" of {BATCH_SIZE}",
    }
    print(
        f"{description}: {len(x_train)} training / {len(x_reference)} reference images; "
        f"{os.cpu_count()} CPU cores; " + ", ".join(text for name, text in budgets.items() if name in args.models),
        flush=True,
    )
    changed = {
        key: value
        for key, value in config.items()
        if key in recipe.DEFAULTS and recipe.resolve_data_defaults({**recipe.DEFAULTS, "data": args.data})[key] != value
    }
    print(
        f"our recipe: the cgan experiment's {args.data} defaults" + (f" with {changed}" if changed else ""), flush=True
    )

    tick = time.perf_counter()
    classifier, features = recipe.train_image_classifier(x_train, y_train, epochs, seed=args.seed)
    classifier_accuracy = float(np.mean(recipe.predict_classes(classifier, x_reference) == y_reference))
    real_features = features.predict(x_reference, batch_size=1000, verbose=0)
    floor = recipe.frechet_distance(features.predict(x_train[:10000], batch_size=1000, verbose=0), real_features)
    print(
        f"independent classifier: reference accuracy {classifier_accuracy:.4f} ({epochs} epochs, "
        f"{time.perf_counter() - tick:.0f} s); Frechet distance training vs reference images {floor:.3f}",
        flush=True,
    )

    chosen = {name.strip() for name in args.models.split(",")}
    if not chosen or not chosen <= {"ours", "baseline"}:
        raise SystemExit(f"--models must list ours and/or baseline; got {args.models!r}")
    models = []
    if "ours" in chosen:
        models.append(
            (
                "ours",
                lambda: our_gan(image_shape, config, args.seed),
                lambda: recipe.gan_batches(x_train, y_train, config, config["batch_size"], args.seed, labels=y_train),
                steps,
                None,
            )
        )
    if "baseline" in chosen:
        models.append(
            (
                "baseline (dense, one-hot concat, BCE)",
                lambda: baseline_gan(image_shape, args.seed),
                lambda: baseline_batches(x_train, y_train, args.seed),
                baseline_steps,
                args.baseline_seconds,
            )
        )
    rows = []
    for name, build, dataset, model_steps, budget in models:
        gan = build()
        seconds, done = train(gan, dataset(), model_steps, budget)
        accuracy, per_class, distance = score(gan, classifier, features, real_features)
        rows.append((name, accuracy, per_class, distance, seconds, done))
        print(
            f"{name}: accuracy {accuracy:.4f} (lowest class {per_class.min():.4f}, digit {per_class.argmin()}), "
            f"Frechet distance {distance:.3f}, {done} steps in {seconds:.0f} s ({done / seconds:.2f} steps/s)",
            flush=True,
        )
        print("  per class: " + " ".join(f"{k}:{value:.3f}" for k, value in enumerate(per_class)), flush=True)

    print(
        f"\n{'model':<40} {'accuracy':>9} {'min class':>10} {'Frechet':>8} {'steps':>6} {'train time':>11} "
        f"{'steps/s':>8}"
    )
    for name, accuracy, per_class, distance, seconds, done in rows:
        print(
            f"{name:<40} {accuracy:>9.4f} {per_class.min():>10.4f} {distance:>8.3f} {done:>6} {seconds:>10.0f}s "
            f"{done / seconds:>8.2f}"
        )
    print(f"{'real reference images (classifier)':<40} {classifier_accuracy:>9.4f} {'':>10} {floor:>8.3f}")
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
