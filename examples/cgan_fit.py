"""A conditional GAN with ``model.fit``: draw 8x8 digits of a requested class.

    python examples/cgan_fit.py [--quick]

The generator and discriminator come from the builders of ``xmodal_tf.decoders``;
the GAN is compiled with one optimizer per network and trained on (images, labels)
pairs. ``generate`` then returns images grouped by the requested class, in [0, 1].
The model saves and reloads (both optimizers included) like any Keras model.
"""

import argparse
import pathlib
import tempfile

import keras
import numpy as np

from xmodal_tf.data import load_multimodal_digits
from xmodal_tf.decoders import build_discriminator, build_generator
from xmodal_tf.models.cgan import ConditionalGAN

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a smoke test: 2 epochs (the samples are noise)")
epochs = 2 if parser.parse_args().quick else 60

digits = load_multimodal_digits(("image",))  # 8x8x1 images in [0, 1]
images, labels = digits.train.inputs["image"], digits.train.labels
keras.utils.set_random_seed(0)

gan = ConditionalGAN(
    build_generator((8, 8, 1), latent_dim=32, num_classes=10),
    build_discriminator((8, 8, 1), num_classes=10),
    num_classes=10,
    seed=0,
    ema_decay=0.999,
)  # samples come from a weight average
gan.compile(
    g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5), d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5)
)  # non-saturating loss + R1 penalty
history = gan.fit(images, labels, batch_size=64, epochs=epochs, verbose=0)
print("last epoch: " + ", ".join(f"{key} {values[-1]:.3f}" for key, values in history.history.items()))

samples = gan.generate([0, 1, 2, 3], n=5, seed=0)  # (20, 8, 8, 1): five 0s, five 1s ...
print(f"generated {samples.shape}, values in [{samples.min():.2f}, {samples.max():.2f}]")
for digit, rows in zip((0, 1, 2, 3), samples.reshape(4, 5, 8, 8)):
    mean = rows.mean(axis=0)
    print(f"mean of the five generated {digit}s:")
    print("\n".join("  " + "".join(" .:#"[int(v * 3.99)] for v in row) for row in mean))

path = pathlib.Path(tempfile.mkdtemp()) / "cgan.keras"
gan.save(path)
reloaded = keras.models.load_model(path)
same = np.array_equal(reloaded.generate([7], n=3, seed=1), gan.generate([7], n=3, seed=1))
print(
    f"reloaded from {path}: same samples {same}; optimizer steps "
    f"G {int(reloaded.g_optimizer.iterations.numpy())}, D {int(reloaded.d_optimizer.iterations.numpy())}"
)
