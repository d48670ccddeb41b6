"""TensorBoard callbacks: image grids and projector files written during fit, read back."""
import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from xmodal_tf.models.mae import MultimodalAutoencoder
from xmodal_tf.training.callbacks import (EmbeddingProjectorCallback, GeneratedImagesCallback,
                                          ReconstructionImagesCallback, image_grid)

IMAGE, SEQUENCE = (8, 4, 1), (6, 3)  # an image modality and an MFCC-like (time, features) one
N = 5


def read_images(logdir) -> dict:
    """{tag: [(step, decoded image array (H, W, C) uint8), ...]} from every events file."""
    found = {}
    for path in sorted(glob.glob(str(logdir / "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    width_height_png = tf.make_ndarray(value.tensor)
                    image = tf.io.decode_png(width_height_png[2]).numpy()
                    assert (int(width_height_png[0]), int(width_height_png[1])) == image.shape[1::-1]
                    found.setdefault(value.tag, []).append((event.step, image))
    return found


class FakeGenerator(keras.Model):
    """A stand-in for a conditional GAN: generate() gives every sample of condition c the
    constant value c / (rows - 1) scaled to [-1, 1], as (rows * n, 6, 5, 1)."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self.seeds = []

    def call(self, inputs):
        return self.dense(inputs)

    def generate(self, conditions, n, seed=None):
        self.seeds.append(seed)
        values = np.repeat(np.linspace(-1.0, 1.0, len(conditions)), n)
        return np.broadcast_to(values[:, None, None, None], (len(values), 6, 5, 1)).astype("float32")


def fit_fake_generator(callback, epochs):
    model = FakeGenerator()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((8, 2), "float32"), np.zeros((8, 1), "float32"), epochs=epochs, verbose=0,
              callbacks=[callback])
    return model


def test_generated_images_grid_has_a_row_per_condition(tmp_path):
    model = fit_fake_generator(GeneratedImagesCallback(tmp_path, conditions=[0, 1, 2], n_per_condition=4), epochs=2)
    assert model.seeds == [0, 0]  # the same noise every epoch
    events = read_images(tmp_path)["generated_images"]
    assert [step for step, _ in events] == [1, 2]
    grid = events[-1][1]
    assert grid.shape == (3 * 7 - 1, 4 * 6 - 1, 1)  # 3 rows of 6-pixel tiles, 4 columns of 5, 1-pixel gaps
    # value_range (-1, 1) was detected: rows are black, mid grey, white.
    for row, expected in enumerate((0, 128, 255)):
        tile = grid[row * 7:row * 7 + 6, :5, 0]
        assert np.all(np.abs(tile.astype(int) - expected) <= 1), (row, tile)
    assert np.all(grid[6, :, 0] == 255)  # the padding line between rows


def test_generated_images_every_and_errors(tmp_path):
    model = fit_fake_generator(GeneratedImagesCallback(tmp_path / "every", conditions=[0, 1], every=2,
                                                       name="samples", value_range=(0, 1), seed=None), epochs=3)
    assert model.seeds == [None]
    assert [step for step, _ in read_images(tmp_path / "every")["samples"]] == [2]
    with pytest.raises(ValueError, match=r"expected \(2 conditions \* 3 = 6, H, W, C\)"):
        generate_wrong_count(tmp_path)
    with pytest.raises(ValueError, match="every must be a positive int"):
        GeneratedImagesCallback(tmp_path, conditions=[0], every=0)
    with pytest.raises(ValueError, match="low < high"):
        GeneratedImagesCallback(tmp_path, conditions=[0], value_range=(1, 0))


def generate_wrong_count(tmp_path):
    callback = GeneratedImagesCallback(tmp_path / "bad", conditions=[0, 1], n_per_condition=3)
    model = FakeGenerator()
    model.generate = lambda conditions, n, seed: np.zeros((5, 6, 5, 1), "float32")
    callback.set_model(model)
    callback.on_epoch_end(0)


def image_and_sequence_model():
    keras.utils.set_random_seed(0)

    def encoder(shape, name):
        inputs = keras.Input(shape)
        return keras.Model(inputs, keras.layers.Dense(8, activation="tanh")(keras.layers.Flatten()(inputs)), name=name)

    def decoder(shape, name):
        inputs = keras.Input((4,))
        flat = keras.layers.Dense(int(np.prod(shape)), activation="sigmoid")(inputs)
        return keras.Model(inputs, keras.layers.Reshape(shape)(flat), name=name)

    model = MultimodalAutoencoder({"image": encoder(IMAGE, "image_encoder"), "mfcc": encoder(SEQUENCE, "mfcc_encoder")},
                                  {"image": decoder(IMAGE, "image_decoder"), "mfcc": decoder(SEQUENCE, "mfcc_decoder")},
                                  code_dim=4, seed=0)
    model.compile(optimizer="adam")
    return model


@pytest.fixture(scope="module")
def mae_data():
    rng = np.random.default_rng(0)
    inputs = {"image": rng.uniform(size=(40, *IMAGE)).astype("float32"),
              "mfcc": rng.normal(size=(40, *SEQUENCE)).astype("float32")}
    return inputs, rng.integers(0, 3, size=40)


def test_reconstruction_grids_for_an_image_and_a_sequence_modality(tmp_path, mae_data):
    inputs, _ = mae_data
    model = image_and_sequence_model()
    few = {key: value[:N] for key, value in inputs.items()}
    model.fit(inputs, batch_size=20, epochs=2, verbose=0, callbacks=[ReconstructionImagesCallback(tmp_path, few)])
    images = read_images(tmp_path)
    assert set(images) == {"reconstructions/image", "reconstructions/mfcc"}
    assert [step for step, _ in images["reconstructions/image"]] == [1, 2]
    # Rows: original, from all, from image alone, from mfcc alone; a column per example.
    image_grid_png = images["reconstructions/image"][-1][1]
    assert image_grid_png.shape == (4 * 9 - 1, N * 5 - 1, 1)
    low, high = few["image"].min(), few["image"].max()
    first_original = (few["image"][0, :, :, 0] - low) / (high - low) * 255
    np.testing.assert_allclose(image_grid_png[:8, :4, 0], first_original, atol=1)
    # The (6 steps, 3 coefficients) sequences are 3x6 viridis heat maps, drawn 8x taller.
    sequence_grid = images["reconstructions/mfcc"][-1][1]
    assert sequence_grid.shape == (4 * 25 - 1, N * 7 - 1, 3)
    assert len(np.unique(sequence_grid[:24, :6].reshape(-1, 3), axis=0)) > 3  # colours, not a flat image


def test_embedding_projector_files(tmp_path, mae_data):
    inputs, labels = mae_data
    model = image_and_sequence_model()
    stacked = EmbeddingProjectorCallback(tmp_path / "stacked", inputs, labels, present=[["image"], ["mfcc"]])
    single = EmbeddingProjectorCallback(tmp_path / "single", inputs, labels, every=2)
    model.fit(inputs, batch_size=20, epochs=2, verbose=0, callbacks=[stacked, single])
    for run, rows, header in (("stacked", 80, "label\tpresent"), ("single", 40, None)):
        folder = tmp_path / run
        config = (folder / "projector_config.pbtxt").read_text()
        assert 'tensor_name: "shared_code/.ATTRIBUTES/VARIABLE_VALUE"' in config
        assert 'metadata_path: "metadata.tsv"' in config
        lines = (folder / "metadata.tsv").read_text().splitlines()
        if header:
            assert lines[0] == header
            lines = lines[1:]
            assert lines[0] == f"{labels[0]}\timage" and lines[40] == f"{labels[0]}\tmfcc"
        assert len(lines) == rows
        checkpoint = tf.train.latest_checkpoint(str(folder))
        codes = tf.train.load_variable(checkpoint, "shared_code/.ATTRIBUTES/VARIABLE_VALUE")
        assert codes.shape == (rows, 4)
        assert glob.glob(str(folder / "events.out.tfevents.*"))
    # The checkpoint holds the codes after the last epoch.
    codes = tf.train.load_variable(tf.train.latest_checkpoint(str(tmp_path / "single")),
                                   "shared_code/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_allclose(codes, model.encode(inputs), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"one label per example, shape \(40,\)"):
        EmbeddingProjectorCallback(tmp_path, inputs, labels[:10])


def test_image_grid_layout():
    tiles = np.arange(6, dtype="float32").reshape(6, 1, 1, 1) / 5
    grid = image_grid(tiles, rows=2, padding=1)
    assert grid.shape == (3, 5, 1)
    np.testing.assert_allclose(grid[::2, ::2, 0], tiles.reshape(2, 3))
    with pytest.raises(ValueError, match="rows=4"):
        image_grid(tiles, rows=4)
