"""A fusion classifier with ``model.fit``: digits seen through two halves, one of them noisy.

    python examples/fusion_fit.py [--quick]

Each modality gets its own CNN encoder; a gated fusion layer weighs the two embeddings
per example, and modality dropout teaches the model to cope when one is missing. The
auxiliary unimodal losses (``unimodal_loss_weight``) also train each encoder, through a
small head of its own, to classify alone, towards a target that mixes the labels with
the model's own fused prediction (``unimodal_distillation``). At
test time a modality can be left out entirely (omit its key) or per example (the
``modality_mask`` input). The model saves and reloads like any Keras model.
"""

import argparse
import pathlib
import tempfile

import keras
import numpy as np

import xmodal_tf as xm
from xmodal_tf.models.fusion import build_fusion_classifier

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a smoke test: 2 epochs")
epochs = 2 if parser.parse_args().quick else 25

data = xm.data.load_multimodal_digits(("left", "right"))  # (n, 8, 4, 1) halves in [0, 1]
rng = np.random.default_rng(0)
train, test = dict(data.train.inputs), dict(data.test.inputs)
for inputs in (train, test):  # a noisy left camera
    inputs["left"] = np.clip(inputs["left"] + rng.normal(0, 0.3, inputs["left"].shape), 0, 1).astype("float32")

keras.utils.set_random_seed(0)
encoders = {
    name: xm.encoders.cnn_encoder((8, 4, 1), 32, filters=(16,), global_pooling="flatten", name=f"{name}_encoder")
    for name in ("left", "right")
}
model = build_fusion_classifier(
    encoders, fusion="gated", num_classes=10, modality_dropout=0.3, unimodal_loss_weight=1.0, unimodal_distillation=0.5
)
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(train, data.train.labels, epochs=epochs, batch_size=64, verbose=0)
print(
    f"final training loss {history.history['loss'][-1]:.3f}, including the unimodal loss "
    f"{history.history['unimodal_loss'][-1]:.3f} x weight {model.unimodal_loss_weight}"
)


def accuracy(inputs) -> float:
    return xm.metrics.accuracy(data.test.labels, model.predict(inputs, verbose=0))


print(
    f"test accuracy: both halves {accuracy(test):.3f}, right only {accuracy({'right': test['right']}):.3f}, "
    f"noisy left only {accuracy({'left': test['left']}):.3f}"
)
half_missing = np.ones((len(data.test.labels), 2), dtype="float32")
half_missing[::2, 1] = 0.0  # every other example lost its right half
print(f"right half missing for 50% of the examples: {accuracy({**test, 'modality_mask': half_missing}):.3f}")
gates = model.fusion_layer.gates([model.encoders[name](test[name]) for name in model.modalities])
print(f"mean gate per modality (left, right): {np.round(np.mean(gates, axis=0), 2)}")

path = pathlib.Path(tempfile.mkdtemp()) / "fusion.keras"
model.save(path)
reloaded = keras.models.load_model(path)
same = np.allclose(reloaded.predict(test, verbose=0), model.predict(test, verbose=0))
print(f"reloaded from {path}: same predictions: {same}")
