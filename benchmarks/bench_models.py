"""Per-model train step against a bare floor: autoencoder, cGAN, dual encoder, fusion classifier.

    python benchmarks/bench_models.py                  # float32 and mixed_bfloat16
    python benchmarks/bench_models.py --quick --precisions float32
    python -m benchmarks --only models                 # the same rows in the suite's table

Each model is built with the package's builders at modest sizes (28x28x1 images through
a ``cnn_encoder``, 128-feature vectors through an ``mlp_encoder``; batches held in
memory) and trained by ``xmodal_tf.training.Trainer`` (its per-epoch ``tf.function``
loop) and by ``model.fit``. The floor is one ``tf.function`` looping over the same
batches that runs, per step, the forward and backward passes of FRESH copies of the same
networks (same builders and sizes) with a trivial loss, the sum of the squared outputs,
plus the update of an optimizer of the same class (Adam):

* autoencoder: both encoders, their projections, the code layer and both decoders
  (encode each modality, average, code, decode both), one update;
* dual encoder: both encoders and both projections, one update;
* fusion classifier: the functional graph (encoders, fusion, head) with every
  modality present, one update;
* cGAN, as its step does: generator forward without gradient (the fakes), then with
  the discriminator's tape the discriminator on the real images inside an inner tape
  whose input gradient is squared into the loss (the R1 penalty's double backward),
  the discriminator on the fakes, the discriminator's update; then the generator on
  fresh noise and the discriminator on its output under the generator's tape, the
  generator's update. Two generator and three discriminator forward passes, two updates.

What the floor leaves out is what the model's step adds: its loss (masks, contrastive
logits, GAN losses), input checks, metric trackers, and the loop's own work. Each
runner is warmed up (traced) first, then the three are run in turn ``repeats`` times
(interleaved, so a noisy neighbour hits all alike) and the best time of each is kept:
``ratio = best step / best floor``; target <= 1.15. Two cross-checks for a shared
machine come with each row: ``paired_ratio``, the median over rounds of the step's run
over the floor's run of the same round, and ``cpu_ratio``, the ratio of the best CPU
times of this process (time other processes take from it does not count).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf.encoders import cnn_encoder, mlp_encoder
from xmodal_tf.models import ConditionalGAN, DualEncoder, MultimodalAutoencoder, build_fusion_classifier
from xmodal_tf.models.cgan import build_discriminator, build_generator
from xmodal_tf.models.mae import dense_decoder, image_decoder
from xmodal_tf.training import Trainer

IMAGE_SHAPE = (28, 28, 1)
FEATURES = 128
NUM_CLASSES = 10
TARGET = 1.15
PRECISIONS = ("float32", "mixed_bfloat16")
MODELS = ("MultimodalAutoencoder", "ConditionalGAN", "DualEncoder", "FusionClassifier")


# ----------------------------------------------------------------------------- data
def _arrays(rows: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.uniform(0.0, 1.0, (rows, *IMAGE_SHAPE)).astype(np.float32),
        "features": rng.standard_normal((rows, FEATURES)).astype(np.float32),
        "label": rng.integers(0, NUM_CLASSES, rows).astype(np.int32),
    }


def _dataset(elements, batch_size: int, steps: int) -> tf.data.Dataset:
    """``steps`` distinct in-memory batches, cached and repeated."""
    dataset = tf.data.Dataset.from_tensor_slices(elements).batch(batch_size, drop_remainder=True)
    return dataset.take(steps).cache().repeat().prefetch(2)


def _square_sum(*tensors):
    return tf.add_n([tf.reduce_sum(tf.square(tf.cast(t, tf.float32))) for t in tensors])


# ----------------------------------------------------------------------------- the four models
def _image_encoder(name):
    return cnn_encoder(IMAGE_SHAPE, 64, filters=(16, 32), global_pooling="flatten", dropout=0.0, name=name)


def _vector_encoder(name):
    return mlp_encoder(FEATURES, 64, hidden_units=(256,), activation="relu", name=name)


def autoencoder_case(batch_size: int, steps: int):
    def build():
        return MultimodalAutoencoder(
            {"image": _image_encoder("image_encoder"), "features": _vector_encoder("features_encoder")},
            {
                "image": image_decoder(
                    64, IMAGE_SHAPE, filters=(32, 16), output_activation="sigmoid", name="image_decoder"
                ),
                "features": dense_decoder(64, (FEATURES,), hidden_units=(256,), name="features_decoder"),
            },
            code_dim=64,
            modality_dropout=0.5,
            seed=0,
        )

    def floor_step(copy, batch):
        inputs = {"image": batch["image"], "features": batch["features"]}
        projections = [copy.projections[m](copy.encoders[m](inputs[m], training=True)) for m in copy.modalities]
        code = copy.code_layer(copy.fusion_activation(tf.add_n(projections) / float(len(projections))))
        return _square_sum(*(copy.decoders[m](code, training=True) for m in copy.modalities))

    data = _arrays(batch_size * steps)
    elements = {"image": data["image"], "features": data["features"]}
    return build, floor_step, _dataset(elements, batch_size, steps), "encoders+projections+code+decoders, 1 update"


def dual_encoder_case(batch_size: int, steps: int):
    def build():
        return DualEncoder(_image_encoder("image_encoder"), _vector_encoder("features_encoder"), projection_dim=64)

    def floor_step(copy, batch):
        a, b = batch
        return _square_sum(
            copy.projection_a(copy.encoder_a(a, training=True)), copy.projection_b(copy.encoder_b(b, training=True))
        )

    data = _arrays(batch_size * steps)
    return (
        build,
        floor_step,
        _dataset((data["image"], data["features"]), batch_size, steps),
        "both encoders+projections, 1 update",
    )


def fusion_case(batch_size: int, steps: int):
    def build():
        return build_fusion_classifier(
            {"image": _image_encoder("image_encoder"), "features": _vector_encoder("features_encoder")},
            "concat",
            NUM_CLASSES,
            modality_dropout=0.3,
            hidden_units=(64,),
            seed=0,
        )

    def floor_step(copy, batch):
        inputs, _ = batch
        # The functional graph itself (no input completion), every modality present.
        graph = getattr(copy, "_bench_graph", None)
        if graph is None:
            graph = copy._bench_graph = keras.Model(copy.inputs, copy.outputs)
        mask = tf.ones((tf.shape(inputs["image"])[0], 2), keras.backend.floatx())
        return _square_sum(graph({**inputs, "modality_mask": mask}, training=True))

    data = _arrays(batch_size * steps)
    elements = ({"image": data["image"], "features": data["features"]}, data["label"])
    return build, floor_step, _dataset(elements, batch_size, steps), "encoders+fusion+head graph, 1 update"


def gan_case(batch_size: int, steps: int):
    def build():
        return ConditionalGAN(
            build_generator(IMAGE_SHAPE, 64, num_classes=NUM_CLASSES),
            build_discriminator(IMAGE_SHAPE, num_classes=NUM_CLASSES),
            num_classes=NUM_CLASSES,
            seed=0,
        )

    def floor_step(copy, batch, optimizers):
        g_optimizer, d_optimizer = optimizers
        images, labels = batch
        rows = tf.shape(labels)[0]
        fakes = copy.generator([tf.random.normal((rows, 64)), labels], training=True)
        d_variables = copy.discriminator.trainable_variables
        with tf.GradientTape() as d_tape:
            with tf.GradientTape() as r1_tape:
                r1_tape.watch(images)
                real = copy.discriminator([images, labels], training=True)
                total = tf.reduce_sum(tf.cast(real, tf.float32))
            r1 = r1_tape.gradient(total, images)
            d_loss = _square_sum(real, copy.discriminator([fakes, labels], training=True), r1)
        d_optimizer.apply(d_tape.gradient(d_loss, d_variables), d_variables)
        g_variables = copy.generator.trainable_variables
        with tf.GradientTape() as g_tape:
            g_fakes = copy.generator([tf.random.normal((rows, 64)), labels], training=True)
            g_loss = _square_sum(copy.discriminator([g_fakes, labels], training=True))
        g_optimizer.apply(g_tape.gradient(g_loss, g_variables), g_variables)

    data = _arrays(batch_size * steps)
    return (
        build,
        floor_step,
        _dataset((data["image"], data["label"]), batch_size, steps),
        "2 G + 3 D passes (R1 double backward), 2 updates",
    )


CASES = {
    "MultimodalAutoencoder": autoencoder_case,
    "ConditionalGAN": gan_case,
    "DualEncoder": dual_encoder_case,
    "FusionClassifier": fusion_case,
}


# ----------------------------------------------------------------------------- runners
def compiled(model):
    """``model`` compiled as its users compile it (Adam, built-in or sparse CE loss)."""
    if isinstance(model, ConditionalGAN):
        model.compile(
            g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5), d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5)
        )
    elif isinstance(model, (MultimodalAutoencoder, DualEncoder)):
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    else:
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def floor_runner(build, floor_step, dataset, steps: int, jit_compile: bool = False):
    """The floor loop; with ``jit_compile`` each step is compiled with XLA (as the
    Trainer compiles the model's step when its ``jit`` resolves to XLA, e.g. on a GPU)."""
    copy = build()
    if isinstance(copy, ConditionalGAN):
        optimizers = (keras.optimizers.Adam(1e-3, beta_1=0.5), keras.optimizers.Adam(1e-3, beta_1=0.5))
        optimizers[0].build(copy.generator.trainable_variables)
        optimizers[1].build(copy.discriminator.trainable_variables)

        def step(batch):
            floor_step(copy, batch, optimizers)
    else:
        optimizer = keras.optimizers.Adam(1e-3)
        variables = copy.trainable_variables
        optimizer.build(variables)

        def step(batch):
            with tf.GradientTape() as tape:
                loss = floor_step(copy, batch)
            gradients = tape.gradient(loss, variables)
            # Variables outside the floor's networks (the dual encoder's temperature) get none.
            pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
            optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])

    if jit_compile:
        step = tf.function(step, jit_compile=True)

    @tf.function(jit_compile=False)
    def run(iterator):
        for _ in tf.range(steps):
            step(next(iterator))

    iterator = iter(dataset)
    return lambda: run(iterator)


def trainer_runner(build, dataset, steps: int):
    """(runner, whether the Trainer compiles the step with XLA)."""
    trainer = Trainer(compiled(build()), optimizer=None, progress=False)
    one_epoch = dataset.take(steps)
    return (lambda: trainer.fit(one_epoch, epochs=trainer.epoch + 1)), bool(getattr(trainer, "jit_compile", False))


def fit_runner(build, dataset, steps: int):
    model = compiled(build())
    return lambda: model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)


def time_case(name: str, precision: str, *, batch_size: int, steps: int, repeats: int) -> list[dict]:
    """The rows of one model under one precision (see the module docstring)."""
    keras.backend.clear_session()  # also resets the dtype policy: set it after
    keras.config.set_dtype_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        build, floor_step, dataset, floor_text = CASES[name](batch_size, steps)
        trainer, xla = trainer_runner(build, dataset, steps)
        runners = {
            "floor": floor_runner(build, floor_step, dataset, steps, jit_compile=xla),
            "Trainer step": trainer,
            "model.fit step": fit_runner(build, dataset, steps),
        }
        if xla:
            floor_text += ", XLA"
        with warnings.catch_warnings():
            # fit's "shuffle=True ... ignored" for datasets: expected here.
            warnings.simplefilter("ignore", UserWarning)
            for runner in runners.values():
                runner()  # trace
                runner()  # and warm up
            times = {key: [] for key in runners}
            cpu_times = {key: [] for key in runners}
            for _ in range(repeats):
                for key, runner in runners.items():
                    started, cpu_started = time.perf_counter(), time.process_time()
                    runner()
                    times[key].append((time.perf_counter() - started) / steps)
                    cpu_times[key].append((time.process_time() - cpu_started) / steps)
    finally:
        keras.config.set_dtype_policy("float32")
    floor_ms = min(times["floor"]) * 1e3
    return [
        {
            "benchmark": name,
            "what": what,
            "precision": precision,
            "floor": floor_text,
            "floor_ms": floor_ms,
            "step_ms": min(times[what]) * 1e3,
            "ratio": min(times[what]) * 1e3 / floor_ms,
            # Two cross-checks for a shared machine: each run over the floor run of the
            # same round (cancels slow drifts), and the ratio of the best CPU times of
            # this process (what other processes take from it does not count).
            "paired_ratio": statistics.median(t / f for t, f in zip(times[what], times["floor"])),
            "cpu_ratio": min(cpu_times[what]) / min(cpu_times["floor"]),
        }
        for what in ("Trainer step", "model.fit step")
    ]


def rows(*, quick: bool = False, precisions=PRECISIONS, models=MODELS, progress=None) -> list[dict]:
    """One row per (model, loop, precision): the Trainer's and model.fit's step time
    against the floor. ``quick``: fewer steps and repeats (about a minute per precision);
    ``progress``: called with each row as soon as it is measured."""
    settings = (
        {"batch_size": 64, "steps": 5, "repeats": 3} if quick else {"batch_size": 128, "steps": 10, "repeats": 10}
    )
    results = []
    for precision in precisions:
        for name in models:
            results.extend(time_case(name, precision, **settings))
            if progress is not None:
                for row in results[-2:]:
                    progress(row)
    return results


def print_row(row) -> None:
    flag = "" if row["ratio"] <= TARGET else "   above target"
    print(
        f"{row['benchmark']:22s} {row['what']:15s} {row['precision']:15s} floor {row['floor_ms']:7.2f} ms  "
        f"step {row['step_ms']:7.2f} ms  ratio {row['ratio']:.3f}x (paired median {row['paired_ratio']:.3f}x, "
        f"CPU time {row['cpu_ratio']:.3f}x){flag}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args()
    rows(quick=args.quick, precisions=tuple(args.precisions), models=tuple(args.models), progress=print_row)


if __name__ == "__main__":
    main()
