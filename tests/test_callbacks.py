"""TensorBoard callbacks: image grids, confusion matrices and projector files written during fit, read back."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from xmodal_tf import metrics
from xmodal_tf.models.mae import MultimodalAutoencoder
from xmodal_tf.training.callbacks import (
    ConfusionMatrixCallback,
    EmbeddingProjectorCallback,
    GeneratedImagesCallback,
    ReconstructionImagesCallback,
    image_grid,
)

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
    model.fit(np.zeros((8, 2), "float32"), np.zeros((8, 1), "float32"), epochs=epochs, verbose=0, callbacks=[callback])
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
        tile = grid[row * 7 : row * 7 + 6, :5, 0]
        assert np.all(np.abs(tile.astype(int) - expected) <= 1), (row, tile)
    assert np.all(grid[6, :, 0] == 255)  # the padding line between rows


def test_generated_images_every_and_errors(tmp_path):
    model = fit_fake_generator(
        GeneratedImagesCallback(
            tmp_path / "every", conditions=[0, 1], every=2, name="samples", value_range=(0, 1), seed=None
        ),
        epochs=3,
    )
    assert model.seeds == [None]
    assert [step for step, _ in read_images(tmp_path / "every")["samples"]] == [2]
    with pytest.raises(ValueError, match=r"expected \(2 conditions \* 3 = 6, H, W, C\)"):
        generate_wrong_count(tmp_path)
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        GeneratedImagesCallback(tmp_path, conditions=[0], every=0)
    with pytest.raises(TypeError, match="every must be an int"):
        GeneratedImagesCallback(tmp_path, conditions=[0], every=1.5)
    with pytest.raises(ValueError, match="n_per_condition must be an int >= 1"):
        GeneratedImagesCallback(tmp_path, conditions=[0], n_per_condition=0)
    with pytest.raises(TypeError, match="seed must be an int or None"):
        GeneratedImagesCallback(tmp_path, conditions=[0], seed="0")
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

    model = MultimodalAutoencoder(
        {"image": encoder(IMAGE, "image_encoder"), "mfcc": encoder(SEQUENCE, "mfcc_encoder")},
        {"image": decoder(IMAGE, "image_decoder"), "mfcc": decoder(SEQUENCE, "mfcc_decoder")},
        code_dim=4,
        seed=0,
    )
    model.compile(optimizer="adam")
    return model


@pytest.fixture(scope="module")
def mae_data():
    rng = np.random.default_rng(0)
    inputs = {
        "image": rng.uniform(size=(40, *IMAGE)).astype("float32"),
        "mfcc": rng.normal(size=(40, *SEQUENCE)).astype("float32"),
    }
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
    codes = tf.train.load_variable(
        tf.train.latest_checkpoint(str(tmp_path / "single")), "shared_code/.ATTRIBUTES/VARIABLE_VALUE"
    )
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


# ----------------------------------------------------------------------------- confusion matrix
def tiny_classifier(input_dim=4, num_classes=3):
    model = keras.Sequential([keras.Input((input_dim,)), keras.layers.Dense(num_classes, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="sparse_categorical_crossentropy")
    return model


def blobs(n=90, num_classes=3, dim=4, seed=0, spread=0.5):
    """Gaussian blobs around well-separated centres: (features float32, labels)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    centres = 3 * np.eye(num_classes, dim)
    return (centres[labels] + spread * rng.normal(size=(n, dim))).astype("float32"), labels


def test_confusion_matrix_callback_is_a_plain_module_level_class():
    assert ConfusionMatrixCallback.__module__ == "xmodal_tf.training.callbacks"
    assert ConfusionMatrixCallback.__qualname__ == "ConfusionMatrixCallback"
    assert issubclass(ConfusionMatrixCallback, keras.callbacks.Callback)
    assert metrics.ConfusionMatrixCallback is ConfusionMatrixCallback  # the old import path


def test_confusion_matrix_callback_writes_the_image(tmp_path):
    x, y = blobs()
    keras.utils.set_random_seed(0)
    model = tiny_classifier()
    callback = ConfusionMatrixCallback(tmp_path / "val", (x[:30], y[:30]), class_names=["a", "b", "c"], every=2)
    model.fit(x, y, epochs=5, batch_size=30, verbose=0, callbacks=[callback])
    images = dict(read_images(tmp_path / "val")["confusion_matrix"])
    assert sorted(images) == [1, 3]  # after epochs 2 and 4, at Keras' 0-based epoch index
    expected = metrics.confusion_matrix(y[:30], model.predict(x[:30], verbose=0), num_classes=3)
    np.testing.assert_array_equal(callback.last_matrix, expected)
    assert expected.sum() == 30
    # The logged PNG is the matplotlib drawing of the last matrix, pixel for pixel.
    np.testing.assert_array_equal(images[3], metrics.confusion_matrix_image(expected, ["a", "b", "c"])[0])

    # A tf.data.Dataset of (inputs, labels) batches works the same way, under its own tag.
    dataset = tf.data.Dataset.from_tensor_slices((x[:30], y[:30])).batch(8)
    from_dataset = ConfusionMatrixCallback(tmp_path / "dataset", dataset, tag="cm")
    assert from_dataset.tag == "cm"
    model.fit(x, y, epochs=1, verbose=0, callbacks=[from_dataset])
    np.testing.assert_array_equal(
        from_dataset.last_matrix, metrics.confusion_matrix(y[:30], model.predict(x[:30], verbose=0), num_classes=3)
    )
    logged = read_images(tmp_path / "dataset")
    assert list(logged) == ["cm"] and [step for step, _ in logged["cm"]] == [0]


def test_confusion_matrix_callback_bad_input(tmp_path):
    x, y = blobs(n=12)
    with pytest.raises(TypeError, match=r"\(inputs, labels\)"):
        ConfusionMatrixCallback(tmp_path, x)
    with pytest.raises(ValueError, match="has 12 rows but there are 11 labels"):
        ConfusionMatrixCallback(tmp_path, (x, y[:11]))
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        ConfusionMatrixCallback(tmp_path, (x, y), every=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        ConfusionMatrixCallback(tmp_path, (x, y), batch_size=0)
    with pytest.raises(TypeError, match="name must be a str"):
        ConfusionMatrixCallback(tmp_path, (x, y), tag=3)
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        ConfusionMatrixCallback(tmp_path, (x, y), tag="")
    with pytest.raises(TypeError, match="logdir must be a folder path"):
        ConfusionMatrixCallback(None, (x, y))
    callback = ConfusionMatrixCallback(tmp_path, (x, y), class_names=["only", "two"])
    with pytest.raises(ValueError, match="3 names"):
        tiny_classifier().fit(x, y, epochs=1, verbose=0, callbacks=[callback])
