"""Conditional GAN quality on MNIST: our default recipe against the textbook conditional GAN.

    python benchmarks/bench_cgan.py --data-dir ../shared/data              # 2000 steps each
    python benchmarks/bench_cgan.py --data-dir ../shared/data --steps 1000
    python benchmarks/bench_cgan.py --data digits                          # scikit-learn's 8x8 digits, offline

1. An independent CNN classifier (``xmodal_tf.experiments.cgan.build_image_classifier``)
   is trained on the training images (60000 for MNIST, 1078 for digits); its test accuracy is printed (it
   should be >= 99% for the scores below to mean much).
2. Two conditional GANs are trained for the SAME number of steps on the same batches
   of 64 (images in [0, 1], labels):

   * ours: the default recipe of ``xmodal_tf.models.cgan`` / the ``cgan`` experiment
     (conv generator with conditional batch norm, projection discriminator,
     non-saturating loss + R1 penalty, Adam(1e-3, beta_1 = 0.5), samples from the
     moving average of the generator's weights);
   * baseline: the simplest conditional GAN (Mirza & Osindero 2014; the Keras GAN
     examples): dense networks (generator 256-512-1024 with batch norm, discriminator
     512-256 with dropout) with one-hot labels concatenated to the inputs, binary
     cross-entropy, Adam(2e-4, beta_1 = 0.5).

3. Each generates 1000 images per class. Printed per model: the share the classifier
   labels as the requested class, and the Frechet distance between the generated
   images and the 10000 real test images in the classifier's penultimate (128-d
   ReLU) feature space (lower is better; the distance between the training and test
   images is printed as a floor), and the training wall time.
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
from xmodal_tf.models.cgan import ConditionalGAN, build_dense_discriminator, build_dense_generator  # noqa: E402

BATCH_SIZE = 64
SAMPLES_PER_CLASS = 1000


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("mnist", "digits"), default="mnist",
                        help="MNIST 28x28 (mnist.npz) or scikit-learn's 8x8 digits (offline)")
    parser.add_argument("--data-dir", default=None, help="folder holding mnist.npz (or $XMODAL_DATA_DIR)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps of each GAN (default 2000)")
    parser.add_argument("--classifier-epochs", type=int, default=None,
                        help="epochs of the classifier (default: the cgan experiment's, 3 MNIST / 30 digits)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def batches(images, labels, seed):
    return (tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(len(images), seed=seed)
            .repeat().batch(BATCH_SIZE, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def our_gan(image_shape, data, seed):
    config = {**recipe.DEFAULTS, "data": data}
    return recipe.build_gan(image_shape, config, num_classes=10, seed=seed)


def baseline_gan(image_shape, data, seed):
    keras.utils.set_random_seed(seed)
    gan = ConditionalGAN(build_dense_generator(image_shape, 64, num_classes=10),
                         build_dense_discriminator(image_shape, num_classes=10), num_classes=10, seed=seed)
    gan.compile(g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5), loss="non_saturating")
    return gan


def train(gan, dataset, steps):
    started = time.perf_counter()
    per_epoch = min(steps, 500)
    gan.fit(dataset, steps_per_epoch=per_epoch, epochs=-(-steps // per_epoch), verbose=0)
    return time.perf_counter() - started


def score(gan, classifier, features, real_features):
    requested = np.repeat(np.arange(10), SAMPLES_PER_CLASS)
    generated = gan.generate(np.arange(10), n=SAMPLES_PER_CLASS, seed=1)
    accuracy = float(np.mean(recipe.predict_classes(classifier, generated) == requested))
    distance = recipe.frechet_distance(features.predict(generated, batch_size=1000, verbose=0), real_features)
    return accuracy, distance


def main():
    args = parse_args()
    started = time.perf_counter()
    x_train, y_train, x_test, y_test, description = recipe.load_images(
        {"data": args.data, "train_size": None}, args.data_dir)
    image_shape = x_train.shape[1:]
    epochs = args.classifier_epochs or recipe.DEFAULT_CLASSIFIER_EPOCHS[args.data]
    print(f"{description}: {len(x_train)} training / {len(x_test)} test images; {os.cpu_count()} CPU cores; "
          f"{args.steps} GAN steps of {BATCH_SIZE}", flush=True)

    tick = time.perf_counter()
    classifier, features = recipe.train_image_classifier(x_train, y_train, epochs, seed=args.seed)
    classifier_accuracy = float(np.mean(recipe.predict_classes(classifier, x_test) == y_test))
    real_features = features.predict(x_test, batch_size=1000, verbose=0)
    floor = recipe.frechet_distance(features.predict(x_train[:10000], batch_size=1000, verbose=0), real_features)
    print(f"independent classifier: test accuracy {classifier_accuracy:.4f} ({epochs} epochs, "
          f"{time.perf_counter() - tick:.0f} s); Frechet distance train vs test images {floor:.3f}", flush=True)

    rows = []
    for name, build in (("ours (cond. BN, projection D, R1, EMA)", our_gan),
                        ("baseline (dense, one-hot concat, BCE)", baseline_gan)):
        gan = build(image_shape, args.data, args.seed)
        seconds = train(gan, batches(x_train, y_train, args.seed), args.steps)
        accuracy, distance = score(gan, classifier, features, real_features)
        rows.append((name, accuracy, distance, seconds))
        print(f"{name}: accuracy {accuracy:.4f}, Frechet distance {distance:.3f}, {seconds:.0f} s", flush=True)

    print(f"\n{'model':<42} {'class accuracy':>15} {'Frechet dist.':>14} {'train time':>11}")
    for name, accuracy, distance, seconds in rows:
        print(f"{name:<42} {accuracy:>15.4f} {distance:>14.3f} {seconds:>10.0f}s")
    print(f"{'real test images (classifier)':<42} {classifier_accuracy:>15.4f} {floor:>14.3f}")
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
