"""DeepCCA with ``model.fit``: correlate the left and right halves of digits.

    python examples/deepcca_fit.py [--quick]

Two MLP encoders are trained so that their outputs on paired halves are maximally
correlated (Andrew et al. 2013); then a linear CCA on the training outputs gives the
canonical variates, scored on held-out data and compared with linear CCA on the raw
pixels. The model saves and reloads like any Keras model.
"""

import argparse
import pathlib
import tempfile

import keras

import xmodal_tf as xm

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a smoke test: 2 epochs")
epochs = 2 if parser.parse_args().quick else 100

data = xm.data.load_two_view_digits()  # (n, 32) left halves, (n, 32) right halves
x, y, _ = data.train
keras.utils.set_random_seed(0)

k = 10
model = xm.models.DeepCCA(
    xm.encoders.mlp_encoder(32, k, hidden_units=(256, 256), activation="relu", batch_norm=True),
    xm.encoders.mlp_encoder(32, k, hidden_units=(256, 256), activation="relu", batch_norm=True, name="mlp_encoder_y"),
    n_components=k,
    reg=1e-4,
)
model.compile(optimizer=keras.optimizers.Adam(1e-3))
train = xm.data.make_dataset((x, y), batch_size=256, seed=0, drop_remainder=True)
validation = xm.data.make_dataset(data.validation[:2], batch_size=len(data.validation.labels), shuffle=False)
history = model.fit(train, epochs=epochs, validation_data=validation, verbose=0)
print(
    f"total correlation of a training batch: first epoch "
    f"{history.history['total_correlation'][0]:.2f}, last "
    f"{history.history['total_correlation'][-1]:.2f}; validation set "
    f"{history.history['val_total_correlation'][-1]:.2f} (at most {k})"
)

# The paper's protocol: a linear CCA on the training outputs, scored on the test split.
model.fit_linear_cca(x, y)
linear = xm.CCA(n_components=k, reg=1e-3).fit(x, y)
print(
    f"test total correlation of the top {k}: DeepCCA {model.score(*data.test[:2]):.3f}, "
    f"linear CCA {linear.correlations(*data.test[:2]).sum():.3f}"
)
x_c, y_c = model.transform(*data.test[:2])  # canonical variates, (360, 10) each

path = pathlib.Path(tempfile.mkdtemp()) / "deepcca.keras"
model.save(path)
reloaded = keras.models.load_model(path)
print(f"reloaded from {path}: test total correlation {reloaded.score(*data.test[:2]):.3f}")
