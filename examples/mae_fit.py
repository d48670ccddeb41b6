"""A multimodal autoencoder with ``model.fit``: draw the right half of a digit from its left half.

    python examples/mae_fit.py [--quick]

The left and right halves of scikit-learn's 8x8 digits are two modalities. Each has a
CNN encoder; the present modalities are fused into one shared code, from which a
decoder per modality reconstructs both halves. With modality dropout, half of every
training batch sees only one half but must still reconstruct both, so the model
learns to translate one half into the other. TensorBoard shows the reconstructions
and the shared codes (``tensorboard --logdir`` the printed folder).
"""

import argparse
import pathlib
import tempfile

import keras
import numpy as np

from xmodal_tf.data import load_multimodal_digits
from xmodal_tf.decoders import image_decoder
from xmodal_tf.encoders import cnn_encoder
from xmodal_tf.models.mae import MultimodalAutoencoder
from xmodal_tf.training.callbacks import EmbeddingProjectorCallback, ReconstructionImagesCallback

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a smoke test: 2 epochs, images and projector every epoch")
quick = parser.parse_args().quick
epochs, image_every, projector_every = (2, 1, 2) if quick else (40, 10, 40)

data = load_multimodal_digits(("left", "right"))  # inputs: {"left": (n, 8, 4, 1), "right": (n, 8, 4, 1)}
train, test = data.train.inputs, data.test.inputs
keras.utils.set_random_seed(0)

code_dim = 32
model = MultimodalAutoencoder(
    encoders={
        side: cnn_encoder((8, 4, 1), 32, filters=(32,), global_pooling="flatten", name=f"{side}_encoder")
        for side in ("left", "right")
    },
    decoders={
        side: image_decoder(code_dim, (8, 4, 1), filters=(32,), name=f"{side}_decoder") for side in ("left", "right")
    },
    code_dim=code_dim,
    modality_dropout=0.5,
    seed=0,
)
model.compile(optimizer=keras.optimizers.Adam(1e-3))

logdir = pathlib.Path(tempfile.mkdtemp(prefix="mae_fit_"))
callbacks = [
    ReconstructionImagesCallback(logdir, {side: images[:8] for side, images in test.items()}, every=image_every),
    EmbeddingProjectorCallback(
        logdir / "projector", test, data.test.labels, present=[["left"], ["right"]], every=projector_every
    ),
]
history = model.fit(
    train, batch_size=64, epochs=epochs, validation_data=(data.validation.inputs,), callbacks=callbacks, verbose=0
)
print(
    f"reconstruction MSE (validation, both halves given): left {history.history['val_reconstruction_left'][-1]:.4f}, "
    f"right {history.history['val_reconstruction_right'][-1]:.4f}"
)

# Translate: encode from the left half alone, decode the right half.
right_from_left = model.translate(test["left"], source="left", target="right")  # (360, 8, 4, 1)
mean_guess = np.mean((test["right"] - train["right"].mean(axis=0)) ** 2)
print(
    f"right half drawn from the left half alone: MSE {np.mean((right_from_left - test['right']) ** 2):.4f} "
    f"(the mean right half: {mean_guess:.4f})"
)
codes = model.encode(test, present="left")  # (360, 32) shared codes

path = logdir / "mae.keras"
model.save(path)
reloaded = keras.models.load_model(path)
assert np.array_equal(reloaded.encode(test, present="left"), codes)
print(f"saved and reloaded {path}; TensorBoard: tensorboard --logdir {logdir}")
