"""Builder defaults against plain baselines (issue 16, item 1): accuracy, not speed.

    python benchmarks/bench_defaults.py                       # everything (about 15-25 min on 2 CPU cores)
    python benchmarks/bench_defaults.py --only digits8 spoken # a subset of the tasks
    python benchmarks/bench_defaults.py --quick               # a smoke run (1 epoch, tiny subsets)
    python benchmarks/bench_defaults.py --json out.json       # also write the rows as JSON
    python benchmarks/bench_defaults.py --table out.json      # the Markdown table of a saved run

Every encoder builder gets a linear classification head (Dense(classes), softmax
cross-entropy) and is trained with Adam(1e-3), batch 64, a fixed number of epochs; the
plain baselines are what a user would write by hand, of similar size:

* images: ``cnn_encoder(shape, 64)`` with BatchNorm and each ``global_pooling`` ("avg",
  the default before issue 16; "max"; "flatten"), and with "flatten" without BatchNorm
  (the default since issue 16: ``global_pooling="auto"`` flattens these fixed-size
  images, ``batch_norm=False``), against a plain two-layer CNN, Conv(32)-MaxPool-
  Conv(64)-MaxPool-Flatten-Dense(64, relu)-Dense(classes), all ReLU, 3x3 kernels, no
  BatchNorm. A row marked * is the builder's current default.
* sequences: ``rnn_encoder(input_dim=13, max_length=92)`` (LSTM, the default cell and
  GRU) and ``attention_encoder(input_dim=13, max_length=92)`` against a plain
  Masking-GRU(64)-Dense(classes).
* decoders: ``cnn_encoder`` + ``image_decoder`` autoencoders with a sigmoid and a linear
  output, mean squared error against the clean target, on [0, 1] and on noisy images.

Data sets (all from the package's loaders and the files in ../shared/data or
$XMODAL_DATA_DIR):

* ``digits8``: scikit-learn's 8x8 digits (``load_multimodal_digits(("image",))``; 1078
  train / 359 validation / 360 test), pixels in [0, 1]. 30 epochs.
* ``noisy_mnist``: the AV-MNIST images (``load_av_mnist``), pixels/255 plus N(0, 1)
  noise drawn once per split (seeded): the first 5000 training images, 2000 of the
  validation images, the first 5000 test images. 5 epochs.
* ``openmoji_tone``: OpenMoji images (``load_openmoji``, split by base emoji so no emoji
  straddles train and test), classify the skin tone named in the CLDR name (none,
  light, medium-light, medium, medium-dark, dark; names with two different tones are
  dropped); images averaged down to 32x32, /255; a fifth of the training base names
  held out as validation. 10 epochs.
* ``spoken``: the Free Spoken Digit recordings (``load_spoken_digits``, 92 frames x 13
  standardised MFCCs), a fifth of the training recordings held out as validation.
  15 epochs.

The validation accuracy is what a default is chosen on; the test split is evaluated once
per model, after training, and reported beside it. One seed (``--seed``); differences of
a point or two are within seed noise on the small sets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DATA_DIR = os.environ.get("XMODAL_DATA_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data"
)
TASKS = ("digits8", "noisy_mnist", "openmoji_tone", "spoken", "decoders")
TONES = ("light skin tone", "medium-light skin tone", "medium skin tone", "medium-dark skin tone", "dark skin tone")


# ----------------------------------------------------------------------------- data
class Task:
    def __init__(self, name, train, validation, test, num_classes, epochs, description):
        self.name, self.train, self.validation, self.test = name, train, validation, test
        self.num_classes, self.epochs, self.description = num_classes, epochs, description


def _take(split, n):
    return split if n is None else (split[0][:n], split[1][:n])


def load_digits8(quick: bool) -> Task:
    from xmodal_tf.data import load_multimodal_digits

    data = load_multimodal_digits(("image",))
    parts = [(s.inputs["image"], s.labels) for s in (data.train, data.validation, data.test)]
    return Task("digits8", *parts, 10, 1 if quick else 30, "sklearn digits 8x8, [0, 1]")


def load_noisy_mnist(quick: bool, seed: int) -> Task:
    from xmodal_tf.data import load_av_mnist

    sizes = (500, 200, 500) if quick else (5000, 2000, 5000)
    data = load_av_mnist(DATA_DIR, train_size=sizes[0], seed=seed)
    rng = np.random.default_rng(seed + 16)
    parts = []
    for split, n in zip((data.train, data.validation, data.test), sizes):
        images = split.inputs["image"][:n]
        parts.append(((images + rng.normal(size=images.shape)).astype(np.float32), split.labels[:n]))
    return Task(
        "noisy_mnist", *parts, 10, 1 if quick else 5, f"AV-MNIST images + N(0,1), {sizes[0]}/{sizes[1]}/{sizes[2]}"
    )


def tone_label(name: str) -> int | None:
    """0 for no skin tone, 1..5 for the one tone named; None for names with two tones."""
    found = {TONES.index(tone) + 1 for tone in TONES if re.search(rf"(^|[ :,]){re.escape(tone)}", name)}
    if len(found) > 1:
        return None
    return found.pop() if found else 0


def load_openmoji_tone(quick: bool, seed: int) -> Task:
    from xmodal_tf.data import load_openmoji

    data = load_openmoji(DATA_DIR, seed=seed)

    def arrays(split, mask=None):
        labels = np.array([-1 if (t := tone_label(n)) is None else t for n in split.names])
        keep = labels >= 0 if mask is None else (labels >= 0) & mask
        images = split.images[keep].astype(np.float32) / 255.0
        images = images.reshape(len(images), 32, 2, 32, 2, 3).mean(axis=(2, 4))  # 64x64 -> 32x32
        return images, labels[keep]

    bases = np.unique(data.train.base_names)
    held = np.random.default_rng(seed + 7).choice(bases, size=len(bases) // 5, replace=False)
    in_validation = np.isin(data.train.base_names, held)
    train, validation, test = arrays(data.train, ~in_validation), arrays(data.train, in_validation), arrays(data.test)
    if quick:
        train, validation, test = _take(train, 300), _take(validation, 100), _take(test, 100)
    return Task(
        "openmoji_tone",
        train,
        validation,
        test,
        6,
        1 if quick else 10,
        f"OpenMoji skin tone (6 classes), 32x32, {len(train[1])}/{len(validation[1])}/{len(test[1])}",
    )


def load_spoken(quick: bool, seed: int) -> Task:
    from xmodal_tf.data import load_spoken_digits

    data = load_spoken_digits(DATA_DIR, seed=seed)
    frames, labels = data.train.inputs["audio"], data.train.labels
    order = np.random.default_rng(seed + 3).permutation(len(labels))
    cut = len(labels) // 5
    validation, train = order[:cut], order[cut:]
    parts = [
        (frames[train], labels[train]),
        (frames[validation], labels[validation]),
        (data.test.inputs["audio"], data.test.labels),
    ]
    if quick:
        parts = [_take(p, n) for p, n in zip(parts, (300, 100, 100))]
    return Task("spoken", *parts, 10, 1 if quick else 15, "FSDD MFCCs (92x13), train/validation/test")


# ----------------------------------------------------------------------------- models
def with_head(encoder, num_classes):
    import keras

    inputs = keras.Input(encoder.input_shape[1:])
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="head")(encoder(inputs)))


def plain_cnn(shape, num_classes):
    import keras

    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(padding="same"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(num_classes),
        ]
    )


def plain_gru(shape, num_classes):
    import keras

    return keras.Sequential(
        [keras.Input(shape), keras.layers.Masking(0.0), keras.layers.GRU(64), keras.layers.Dense(num_classes)]
    )


def image_models(shape, num_classes):
    from xmodal_tf.encoders import cnn_encoder

    return {
        "cnn_encoder global_pooling='avg', batch_norm=True": lambda: with_head(
            cnn_encoder(shape, 64, global_pooling="avg", batch_norm=True, dropout=0.0), num_classes
        ),
        "cnn_encoder global_pooling='max', batch_norm=True": lambda: with_head(
            cnn_encoder(shape, 64, global_pooling="max", batch_norm=True, dropout=0.0), num_classes
        ),
        "cnn_encoder global_pooling='flatten', batch_norm=True": lambda: with_head(
            cnn_encoder(shape, 64, global_pooling="flatten", batch_norm=True, dropout=0.0), num_classes
        ),
        "cnn_encoder global_pooling='flatten', batch_norm=False": lambda: with_head(
            cnn_encoder(shape, 64, global_pooling="flatten", batch_norm=False, dropout=0.0), num_classes
        ),
        "cnn_encoder global_pooling='flatten', batch_norm=False, dropout=0.25": lambda: with_head(
            cnn_encoder(shape, 64, global_pooling="flatten", batch_norm=False, dropout=0.25), num_classes
        ),
        "plain two-layer CNN": lambda: plain_cnn(shape, num_classes),
    }


def sequence_models(shape, num_classes):
    from xmodal_tf.encoders import attention_encoder, rnn_encoder

    frames, features = shape
    return {
        "rnn_encoder cell='lstm'": lambda: with_head(
            rnn_encoder(input_dim=features, max_length=frames, cell="lstm"), num_classes
        ),
        "rnn_encoder cell='gru'": lambda: with_head(
            rnn_encoder(input_dim=features, max_length=frames, cell="gru"), num_classes
        ),
        "attention_encoder default": lambda: with_head(
            attention_encoder(input_dim=features, max_length=frames), num_classes
        ),
        "plain GRU": lambda: plain_gru(shape, num_classes),
    }


def current_defaults() -> dict:
    """The builders' defaults now, so each row says whether it is the default."""
    import inspect

    from xmodal_tf.encoders import cnn_encoder, rnn_encoder

    cnn = inspect.signature(cnn_encoder).parameters
    pooling, batch_norm = cnn["global_pooling"].default, cnn["batch_norm"].default
    pooling = "flatten" if pooling == "auto" else pooling  # "auto" flattens these small fixed-size images
    cell = inspect.signature(rnn_encoder).parameters["cell"].default
    dropout = cnn["dropout"].default
    cnn_label = f"cnn_encoder global_pooling={pooling!r}, batch_norm={batch_norm!r}" + (
        f", dropout={dropout!r}" if dropout else ""
    )
    return {cnn_label: True, f"rnn_encoder cell={cell!r}": True, "attention_encoder default": True}


def train_classifier(build, task: Task, seed: int) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    model = build()
    model.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    start = time.perf_counter()
    model.fit(*task.train, batch_size=64, epochs=task.epochs, verbose=0)
    seconds = time.perf_counter() - start
    validation = model.evaluate(*task.validation, batch_size=256, verbose=0)[1]
    test = model.evaluate(*task.test, batch_size=256, verbose=0)[1]  # once, after training
    return {
        "validation": float(validation),
        "test": float(test),
        "params": int(model.count_params()),
        "train_s": round(seconds, 1),
    }


def run_classification(task: Task, models: dict, seed: int) -> list[dict]:
    rows, defaults = [], current_defaults()
    for label, build in models.items():
        result = train_classifier(build, task, seed)
        default = bool(defaults.get(label, False))
        rows.append(
            {
                "task": task.name,
                "data": task.description,
                "model": label,
                "default": default,
                "epochs": task.epochs,
                **result,
            }
        )
        print(
            f"{task.name:14s} {label + (' *' if default else ''):58s} "
            f"val {result['validation']:.3f} test {result['test']:.3f} "
            f"params {result['params']:>8d} {result['train_s']:6.1f} s",
            flush=True,
        )
    return rows


# ----------------------------------------------------------------------------- decoders
def run_decoders(quick: bool, seed: int) -> list[dict]:
    """Reconstruction MSE of cnn_encoder + image_decoder(sigmoid | linear) on clean
    [0, 1] MNIST images and on noisy ones (the target is the input itself)."""
    import keras

    from xmodal_tf.data import load_av_mnist
    from xmodal_tf.encoders import cnn_encoder
    from xmodal_tf.models.mae import image_decoder

    sizes = (500, 200) if quick else (5000, 2000)
    epochs = 1 if quick else 5
    data = load_av_mnist(DATA_DIR, train_size=sizes[0], seed=seed)
    clean_train = data.train.inputs["image"][: sizes[0]]
    clean_test = data.test.inputs["image"][: sizes[1]]
    rng = np.random.default_rng(seed + 16)
    sets = {
        "[0, 1] images": (clean_train, clean_test),
        "standardised images": tuple((x - clean_train.mean()) / clean_train.std() for x in (clean_train, clean_test)),
        "images + N(0,1)": tuple((x + rng.normal(size=x.shape)).astype(np.float32) for x in (clean_train, clean_test)),
    }
    rows = []
    for data_name, (train, test) in sets.items():
        for output in ("sigmoid", None):
            keras.utils.set_random_seed(seed)
            inputs = keras.Input((28, 28, 1))
            code = cnn_encoder((28, 28, 1), 64, global_pooling="flatten", dropout=0.0)(inputs)
            model = keras.Model(inputs, image_decoder(64, (28, 28, 1), output_activation=output)(code))
            model.compile(keras.optimizers.Adam(1e-3), "mse")
            model.fit(train, train, batch_size=64, epochs=epochs, verbose=0)
            mse = float(model.evaluate(test, test, batch_size=256, verbose=0))
            baseline = float(np.mean((test - train.mean()) ** 2))  # predicting the mean training pixel everywhere
            label = f"image_decoder output_activation={output!r}"
            rows.append(
                {
                    "task": "decoders",
                    "data": f"MNIST {data_name}",
                    "model": label,
                    "epochs": epochs,
                    "test_mse": mse,
                    "mean_predictor_mse": baseline,
                }
            )
            print(
                f"decoders       {data_name:22s} {label:44s} test MSE {mse:.4f} (mean pixel {baseline:.4f})", flush=True
            )
    return rows


# ----------------------------------------------------------------------------- table
def markdown_table(rows: list[dict]) -> str:
    """Classification rows: validation / test accuracy; decoder rows: test MSE."""
    lines = ["| data set | model | validation acc. | test acc. | params |", "|---|---|---|---|---|"]
    for row in rows:
        if "test" in row:
            model = f"**{row['model']}** (default)" if row.get("default") else row["model"]
            lines.append(
                f"| {row['data']}, {row['epochs']} epochs | {model} | {row['validation']:.3f} | "
                f"{row['test']:.3f} | {row['params']} |"
            )
    decoders = [row for row in rows if "test_mse" in row]
    if decoders:
        lines += ["", "| data set | decoder | test MSE | MSE of the mean pixel |", "|---|---|---|---|"]
        lines += [
            f"| {row['data']}, {row['epochs']} epochs | {row['model']} | {row['test_mse']:.4f} | "
            f"{row['mean_predictor_mse']:.4f} |"
            for row in decoders
        ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--quick", action="store_true", help="1 epoch on tiny subsets (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument(
        "--table", metavar="JSON", help="print the Markdown table of a run saved with --json; no training"
    )
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table, encoding="utf-8") as file:
            rows = json.load(file)
        print(markdown_table(rows))
        return rows
    # Import the builders once, before any training (a later edit of them does not mix into a run).
    import xmodal_tf.encoders
    import xmodal_tf.models.mae  # noqa: F401

    rows = []
    for name in args.only:
        if name == "decoders":
            rows += run_decoders(args.quick, args.seed)
            continue
        if name == "digits8":
            task = load_digits8(args.quick)
        elif name == "noisy_mnist":
            task = load_noisy_mnist(args.quick, args.seed)
        elif name == "openmoji_tone":
            task = load_openmoji_tone(args.quick, args.seed)
        else:
            task = load_spoken(args.quick, args.seed)
        shape = task.train[0].shape[1:]
        models = sequence_models(shape, task.num_classes) if name == "spoken" else image_models(shape, task.num_classes)
        rows += run_classification(task, models, args.seed)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(rows, file, indent=1)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
