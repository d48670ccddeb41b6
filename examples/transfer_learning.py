"""Transfer learning across views: pretrain on left halves of digits, reuse on right halves.

    python examples/transfer_learning.py [--quick]

1. build a CNN classifier from ``xmodal_tf.encoders`` and pretrain it on the left view;
2. build the same classifier for the right view and copy the weights in with
   ``transfer_weights`` (it reports what was copied, missing or mismatched);
3. teach the copied encoder the new view from unlabelled pairs: it learns to output
   the pretrained encoder's embedding of each right half's left half (``model.fit``);
4. fine-tune on 5 labels per class with ``model.fit``: first with the head frozen
   (``freeze``), then everything at a lower learning rate (``unfreeze``);
5. compare with the same network trained from scratch on the same 50 labels.
"""

import argparse
import pathlib
import tempfile

import keras
import numpy as np

import xmodal_tf as xm

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a smoke test: 1 epoch per stage")
quick = parser.parse_args().quick


def n_epochs(count):
    return 1 if quick else count


data = xm.data.load_two_view_digits(flatten=False)  # two (n, 8, 4, 1) views + labels
left, right, labels = data.train
keras.utils.set_random_seed(0)


def classifier(name):
    encoder = xm.encoders.cnn_encoder((8, 4, 1), embedding_dim=64, batch_norm=False, dropout=0.1, name="image_encoder")
    inputs = keras.Input((8, 4, 1))
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(encoder(inputs))
    return keras.Model(inputs, outputs, name=name)


def compile_and_fit(model, x, y, learning_rate, epochs):
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)


def test_accuracy(model):
    return model.evaluate(data.test.view2, data.test.labels, verbose=0)[1]


# 1. Pretrain on every left-view label.
source = classifier("left_classifier")
compile_and_fit(source, left, labels, 1e-3, epochs=n_epochs(40))
print(
    f"left-view classifier, test accuracy on left halves: "
    f"{source.evaluate(data.test.view1, data.test.labels, verbose=0)[1]:.3f}"
)

# A few labelled right halves: 5% of each class.
rng = np.random.default_rng(0)
few = np.concatenate([rng.choice(np.flatnonzero(labels == c), 5, replace=False) for c in range(10)])

# 2. Same architecture for the right view; copy the weights layer by layer.
target = classifier("right_classifier")
report = xm.transfer.transfer_weights(source, target, match="name", strict=True)
print(report.summary())

# 3. Pairs need no labels: match the left view's embeddings from the right halves.
teacher, student = source.get_layer("image_encoder"), target.get_layer("image_encoder")
student.compile(keras.optimizers.Adam(1e-3), loss="mse")
student.fit(right, teacher.predict(left, verbose=0), batch_size=32, epochs=n_epochs(10), verbose=0)

# 4. Few labels: train the body with the shared head frozen, then everything, gently.
xm.transfer.freeze(target, pattern="embedding|classifier")
compile_and_fit(target, right[few], labels[few], 1e-3, epochs=n_epochs(30))
xm.transfer.unfreeze(target)
compile_and_fit(target, right[few], labels[few], 1e-4, epochs=n_epochs(30))

# 5. The same network from scratch on the same 50 labels.
scratch = classifier("scratch_classifier")
compile_and_fit(scratch, right[few], labels[few], 1e-3, epochs=n_epochs(60))
print(
    f"right halves, 50 labels: transferred {test_accuracy(target):.3f}, "
    f"from scratch {test_accuracy(scratch):.3f} (chance 0.1)"
)

# Save and reload as usual: the encoders are plain Keras layers.
path = pathlib.Path(tempfile.mkdtemp()) / "right_classifier.keras"
target.save(path)
reloaded = keras.models.load_model(path)
print(f"saved {path}; reloaded test accuracy {test_accuracy(reloaded):.3f}")
