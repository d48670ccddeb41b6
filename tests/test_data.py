"""Tests for xmodal_tf.data: offline, no /work/shared, a fake mnist.npz per test."""

import subprocess
import sys
import time

import numpy as np
import pytest

import xmodal_tf.data as data
from xmodal_tf.data import datasets as datasets_module
from xmodal_tf.network import network_reachable

NUM_DIGITS = 1797


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """No real ~/.keras, ~/tensorflow_datasets or XMODAL_DATA_DIR can leak in."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("KERAS_HOME", "TFDS_DATA_DIR", "XMODAL_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def no_network_probe(monkeypatch):
    """Fails the test if the loader probes the network."""

    def forbidden_probe(*args, **kwargs):
        raise AssertionError("the network probe must not run here")

    monkeypatch.setattr(datasets_module, "_network_reachable", forbidden_probe)


def write_fake_mnist(folder, num_train=300, num_test=50, seed=0, **overrides):
    """A Keras-layout mnist.npz of random uint8 images; returns (path, arrays)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, size=(num_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=num_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(num_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=num_test).astype(np.uint8),
    }
    arrays.update(overrides)
    arrays = {name: array for name, array in arrays.items() if array is not None}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mnist.npz"
    np.savez(path, **arrays)
    return path, arrays


@pytest.fixture
def fake_mnist(tmp_path, isolated_home):
    return write_fake_mnist(tmp_path / "data")


# -------------------------------------------------------------------- import


def test_import_loads_neither_tensorflow_nor_tfds():
    code = (
        "import sys, xmodal_tf.data; "
        "print(sorted(m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_public_names():
    assert set(data.__all__) >= {
        "TwoViewSplit",
        "TwoViewDataset",
        "split_image_halves",
        "load_two_view_digits",
        "load_split_mnist",
        "resolve_data_dir",
        "make_dataset",
    }
    for name in data.__all__:
        assert hasattr(data, name)


# ------------------------------------------------------- split_image_halves


def test_split_image_halves_odd_width_and_channels():
    images = np.arange(2 * 3 * 5 * 2).reshape(2, 3, 5, 2)
    left, right = data.split_image_halves(images, flatten=False)
    assert left.dtype == right.dtype == np.float32
    assert left.shape == (2, 3, 2, 2) and right.shape == (2, 3, 3, 2)
    np.testing.assert_array_equal(np.concatenate([left, right], axis=2), images)
    flat_left, flat_right = data.split_image_halves(images)
    assert flat_left.shape == (2, 12) and flat_right.shape == (2, 18)
    np.testing.assert_array_equal(flat_left, left.reshape(2, -1))


def test_split_image_halves_adds_channel_axis_to_grayscale():
    images = np.random.default_rng(0).random((4, 6, 6))
    left, right = data.split_image_halves(images, flatten=False)
    assert left.shape == right.shape == (4, 6, 3, 1)
    np.testing.assert_allclose(left[..., 0], images[:, :, :3].astype(np.float32))


@pytest.mark.parametrize("bad_shape", [(5, 8), (5, 8, 1), (2, 3, 4, 5, 6)])
def test_split_image_halves_rejects_bad_shapes(bad_shape):
    with pytest.raises(ValueError, match="shape"):
        data.split_image_halves(np.zeros(bad_shape))


# -------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return data.load_two_view_digits()


@pytest.fixture(scope="module")
def digit_images():
    from sklearn.datasets import load_digits

    raw = load_digits()
    return (raw.images / 16.0).astype(np.float32), raw.target


def test_digits_shapes_dtypes_and_range(digits):
    assert digits.name == "two_view_digits" and digits.source == "sklearn"
    assert digits.num_classes == 10
    assert digits.view_shapes == ((8, 4, 1), (8, 4, 1))
    expected_sizes = {"train": 1078, "validation": 359, "test": 360}
    for split_name, size in expected_sizes.items():
        x1, x2, y = getattr(digits, split_name)
        assert x1.shape == x2.shape == (size, 32)
        assert x1.dtype == x2.dtype == np.float32 and y.dtype == np.int64
        assert y.shape == (size,) and set(np.unique(y)) == set(range(10))
        for view in (x1, x2):
            assert view.min() >= 0.0 and view.max() <= 1.0
    assert digits.train.view1.max() == 1.0  # scaled by 16, not by 255
    assert sum(expected_sizes.values()) == NUM_DIGITS


def test_digits_halves_rebuild_the_original_images(digit_images):
    images, targets = digit_images
    unflat = data.load_two_view_digits(flatten=False)
    rebuilt, labels = [], []
    for split in (unflat.train, unflat.validation, unflat.test):
        assert split.view1.shape[1:] == split.view2.shape[1:] == (8, 4, 1)
        rebuilt.append(np.concatenate([split.view1, split.view2], axis=2)[..., 0])
        labels.append(split.labels)
    rebuilt, labels = np.concatenate(rebuilt), np.concatenate(labels)
    # Every original image (with its label) appears exactly once across the splits.
    original_rows = {images[i].tobytes(): targets[i] for i in range(NUM_DIGITS)}
    assert len(original_rows) == NUM_DIGITS  # the digits images are all distinct
    rebuilt_keys = [image.tobytes() for image in rebuilt]
    assert len(set(rebuilt_keys)) == NUM_DIGITS
    assert all(original_rows[key] == label for key, label in zip(rebuilt_keys, labels))


def test_digits_flat_views_match_image_views(digits):
    unflat = data.load_two_view_digits(flatten=False)
    np.testing.assert_array_equal(digits.test.view1, unflat.test.view1.reshape(-1, 32))
    np.testing.assert_array_equal(digits.test.view2, unflat.test.view2.reshape(-1, 32))


def test_digits_splits_are_disjoint(digits):
    def rows(split):
        return {row.tobytes() for row in np.hstack([split.view1, split.view2])}

    train, validation, test = rows(digits.train), rows(digits.validation), rows(digits.test)
    assert len(train) + len(validation) + len(test) == NUM_DIGITS
    assert not train & validation and not train & test and not validation & test


def test_digits_split_is_stratified(digits, digit_images):
    overall = np.bincount(digit_images[1], minlength=10) / NUM_DIGITS
    for split in (digits.train, digits.validation, digits.test):
        proportions = np.bincount(split.labels, minlength=10) / len(split.labels)
        np.testing.assert_allclose(proportions, overall, atol=0.01)


def test_digits_are_deterministic(digits):
    again = data.load_two_view_digits()
    for first, second in zip(
        (digits.train, digits.validation, digits.test), (again.train, again.validation, again.test)
    ):
        for array_first, array_second in zip(first, second):
            np.testing.assert_array_equal(array_first, array_second)


def test_summary_and_repr_show_sizes(digits):
    assert "1078" in digits.summary() and "359" in digits.summary()
    assert "train=1078" in repr(digits) and len(repr(digits)) < 400
    assert "(1078, 32)" in repr(digits.train)


# --------------------------------------------------------- split MNIST (npz)


def test_split_mnist_follows_the_deep_cca_protocol(fake_mnist):
    path, arrays = fake_mnist
    mnist = data.load_split_mnist(path.parent, validation_size=100, download=False)
    assert mnist.name == "split_mnist" and mnist.source == str(path)
    assert mnist.view_shapes == ((28, 14, 1), (28, 14, 1)) and mnist.num_classes == 10
    expected = {
        "train": (arrays["x_train"][:200], arrays["y_train"][:200]),
        "validation": (arrays["x_train"][200:], arrays["y_train"][200:]),
        "test": (arrays["x_test"], arrays["y_test"]),
    }
    for split_name, (images, labels) in expected.items():
        x1, x2, y = getattr(mnist, split_name)
        assert x1.shape == x2.shape == (len(images), 392)
        assert x1.dtype == x2.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_allclose(x1, images[:, :, :14].reshape(-1, 392) / 255.0, rtol=1e-6)
        np.testing.assert_allclose(x2, images[:, :, 14:].reshape(-1, 392) / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(y, labels)


def test_split_mnist_image_layout(fake_mnist):
    path, arrays = fake_mnist
    mnist = data.load_split_mnist(path.parent, validation_size=100, flatten=False, download=False)
    assert mnist.train.view1.shape == mnist.train.view2.shape == (200, 28, 14, 1)
    assert mnist.test.view2.shape == (50, 28, 14, 1)
    np.testing.assert_allclose(mnist.validation.view2[..., 0], arrays["x_train"][200:, :, 14:] / 255.0, rtol=1e-6)


def test_split_mnist_zero_validation(fake_mnist):
    mnist = data.load_split_mnist(fake_mnist[0].parent, validation_size=0, download=False)
    assert len(mnist.train.labels) == 300
    assert mnist.validation.view1.shape == (0, 392)


def test_explicit_data_dir_beats_environment_variable(tmp_path, monkeypatch, isolated_home):
    explicit_path, _ = write_fake_mnist(tmp_path / "explicit", num_train=300)
    env_path, _ = write_fake_mnist(tmp_path / "from_env", num_train=150)
    monkeypatch.setenv("XMODAL_DATA_DIR", str(env_path.parent))
    mnist = data.load_split_mnist(explicit_path.parent, validation_size=100, download=False)
    assert mnist.source == str(explicit_path) and len(mnist.train.labels) == 200
    assert data.resolve_data_dir(explicit_path.parent) == explicit_path.parent


def test_data_dir_may_name_the_file_itself(fake_mnist, no_network_probe):
    path, _ = fake_mnist
    assert data.load_split_mnist(path, validation_size=100).source == str(path)


def test_environment_variable_is_used(tmp_path, monkeypatch, isolated_home, no_network_probe):
    env_path, _ = write_fake_mnist(tmp_path / "from_env", num_train=150)
    monkeypatch.setenv("XMODAL_DATA_DIR", str(env_path.parent))
    assert data.resolve_data_dir() == env_path.parent
    mnist = data.load_split_mnist(validation_size=50)
    assert mnist.source == str(env_path) and len(mnist.train.labels) == 100


def test_keras_cache_is_the_last_local_place(isolated_home, no_network_probe):
    cached_path, _ = write_fake_mnist(isolated_home / ".keras" / "datasets", num_train=120)
    assert data.resolve_data_dir() is None
    mnist = data.load_split_mnist(validation_size=20)
    assert mnist.source == str(cached_path) and len(mnist.validation.labels) == 20


def test_missing_mnist_without_download_fails_fast(tmp_path, isolated_home, no_network_probe):
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as error:
        data.load_split_mnist(empty_dir, download=False)
    assert time.monotonic() - start < 5.0
    message = str(error.value)
    assert str(empty_dir / "mnist.npz") in message
    assert str(isolated_home / ".keras" / "datasets" / "mnist.npz") in message
    assert "XMODAL_DATA_DIR" in message and "data_dir" in message
    assert data.MNIST_URL in message and "download=False" in message


def test_missing_mnist_offline_download_fails_fast(tmp_path, isolated_home, monkeypatch):
    probed_hosts = []

    def offline_probe(host=datasets_module._TFDS_STORAGE_HOST, *args, **kwargs):
        probed_hosts.append(host)
        return False

    monkeypatch.setattr(datasets_module, "_network_reachable", offline_probe)
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="unreachable") as error:
        data.load_split_mnist(tmp_path, download=True)
    assert time.monotonic() - start < 30.0  # hang guard: tfds alone retries for minutes
    assert probed_hosts and "mnist.npz" in str(error.value)


def test_network_probe_gives_up_within_its_timeout():
    start = time.monotonic()
    reachable = network_reachable("host.invalid", 443, timeout_s=1.0)
    assert reachable is False
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("use_env", [False, True])
def test_nonexistent_data_dir_is_named(tmp_path, monkeypatch, isolated_home, use_env):
    missing = tmp_path / "no_such_folder"
    if use_env:
        monkeypatch.setenv("XMODAL_DATA_DIR", str(missing))
    with pytest.raises(FileNotFoundError, match="no_such_folder") as error:
        data.load_split_mnist(None if use_env else missing, download=False)
    assert ("XMODAL_DATA_DIR" in str(error.value)) == use_env


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"x_test": None}, "x_test"),
        ({"x_train": np.zeros((300, 32, 32), np.uint8)}, r"x_train has shape \(300, 32, 32\)"),
        ({"x_train": np.zeros((300, 28, 28), np.float32)}, "dtype float32"),
        ({"y_train": np.zeros(299, np.uint8)}, "y_train"),
    ],
)
def test_malformed_npz_raises_value_error(tmp_path, isolated_home, overrides, problem):
    path, _ = write_fake_mnist(tmp_path / "bad", **overrides)
    with pytest.raises(ValueError, match=problem) as error:
        data.load_split_mnist(path.parent, validation_size=100, download=False)
    assert str(path) in str(error.value)


def test_npz_that_is_no_archive_raises_value_error(tmp_path, isolated_home):
    (tmp_path / "mnist.npz").write_bytes(b"definitely not a zip archive")
    with pytest.raises(ValueError, match="mnist.npz"):
        data.load_split_mnist(tmp_path, download=False)


@pytest.mark.parametrize(
    "validation_size, error",
    [(300, ValueError), (1000, ValueError), (-1, ValueError), (2.5, TypeError), ("100", TypeError), (True, TypeError)],
)
def test_bad_validation_size(fake_mnist, validation_size, error):
    with pytest.raises(error, match="validation_size"):
        data.load_split_mnist(fake_mnist[0].parent, validation_size=validation_size, download=False)


# ------------------------------------------------- split MNIST (tfds, mocked)


def test_tfds_fallback_with_mocked_mnist(tmp_path, isolated_home, monkeypatch):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import download_manager

    def no_real_download(*args, **kwargs):
        raise AssertionError("a real download was attempted")

    monkeypatch.setattr(download_manager.DownloadManager, "download", no_real_download)
    monkeypatch.setattr(download_manager.DownloadManager, "download_and_extract", no_real_download)
    monkeypatch.setattr(datasets_module, "_network_reachable", lambda *args, **kwargs: True)
    with tfds.testing.mock_data(num_examples=12):
        mnist = data.load_split_mnist(tmp_path, validation_size=4, flatten=False)
        flat = data.load_split_mnist(tmp_path, validation_size=4)
    assert mnist.source == "tensorflow_datasets"
    assert mnist.train.view1.shape == mnist.train.view2.shape == (8, 28, 14, 1)
    assert mnist.validation.view1.shape == (4, 28, 14, 1)
    assert mnist.test.view2.shape == (12, 28, 14, 1)
    assert flat.train.view1.shape == (8, 392) and flat.test.view2.shape == (12, 392)
    assert mnist.train.view1.dtype == np.float32 and mnist.train.labels.dtype == np.int64
    assert 0.0 <= mnist.train.view1.min() and mnist.train.view1.max() <= 1.0
    assert set(mnist.train.labels) <= set(range(10))


def test_tfds_without_prepared_copy_and_no_download(tmp_path, isolated_home, no_network_probe):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        with pytest.raises(FileNotFoundError, match="tensorflow_datasets"):
            data.load_split_mnist(tmp_path, download=False)


def test_prepared_tfds_copy_is_used_before_any_download(tmp_path, isolated_home, no_network_probe, monkeypatch):
    (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
    (tmp_path / "mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
    _, arrays = write_fake_mnist(tmp_path / "unused", num_train=30, num_test=10)
    arrays = {
        name: (array[..., None] if name.startswith("x_") else array) for name, array in arrays.items()
    }  # tfds images are (n, 28, 28, 1)
    seen_dirs = []

    def fake_prepared_builder(tfds_dirs):
        seen_dirs.extend(tfds_dirs)
        return "prepared-builder"

    monkeypatch.setattr(datasets_module, "_prepared_tfds_builder", fake_prepared_builder)
    monkeypatch.setattr(
        datasets_module, "_tfds_builder_arrays", lambda builder: arrays if builder == "prepared-builder" else None
    )
    mnist = data.load_split_mnist(tmp_path, validation_size=10, download=False)
    assert seen_dirs == [tmp_path]
    assert mnist.source == "tensorflow_datasets" and mnist.train.view1.shape == (20, 392)
    np.testing.assert_allclose(mnist.test.view1, arrays["x_test"][:, :, :14, 0].reshape(10, -1) / 255.0, rtol=1e-6)


# ------------------------------------------------------------- make_dataset


def indexed_arrays(num_examples=10):
    """Views whose values encode the row index: x1[i] = [i, i], x2[i] = [10 i], y[i] = i."""
    index = np.arange(num_examples)
    x1 = np.stack([index, index], axis=1).astype(np.float64)
    x2 = (10 * index)[:, None].astype(np.float32)
    return x1, x2, index.astype(np.int64)


def collect(dataset):
    """((x1, x2), y) batches -> (list of batch sizes, x1 rows, x2 rows, labels)."""
    sizes, x1_rows, x2_rows, labels = [], [], [], []
    for (x1, x2), y in dataset:
        sizes.append(len(y))
        x1_rows.append(x1.numpy())
        x2_rows.append(x2.numpy())
        labels.append(y.numpy())
    return sizes, np.concatenate(x1_rows), np.concatenate(x2_rows), np.concatenate(labels)


def test_make_dataset_batches_without_shuffle():
    x1, x2, y = indexed_arrays(10)
    dataset = data.make_dataset((x1, x2), y, batch_size=4, shuffle=False)
    first_views, first_labels = next(iter(dataset))
    assert isinstance(first_views, tuple)
    assert first_views[0].dtype.name == "float32"  # cast from float64
    assert first_views[1].shape == (4, 1) and first_labels.dtype.name == "int64"
    sizes, seen_x1, seen_x2, seen_y = collect(dataset)
    assert sizes == [4, 4, 2]
    np.testing.assert_array_equal(seen_y, np.arange(10))
    np.testing.assert_array_equal(seen_x1, x1.astype(np.float32))
    np.testing.assert_array_equal(seen_x2, x2)


def test_make_dataset_shuffles_every_example_once_per_epoch_and_keeps_alignment():
    x1, x2, y = indexed_arrays(100)
    dataset = data.make_dataset((x1, x2), y, batch_size=16)
    orders = []
    for _ in range(2):
        _, seen_x1, seen_x2, seen_y = collect(dataset)
        np.testing.assert_array_equal(np.sort(seen_y), np.arange(100))
        np.testing.assert_array_equal(seen_x1[:, 0], seen_y)
        np.testing.assert_array_equal(seen_x1[:, 1], seen_y)
        np.testing.assert_array_equal(seen_x2[:, 0], 10 * seen_y)
        orders.append(seen_y)
    assert not np.array_equal(orders[0], np.arange(100))
    assert not np.array_equal(orders[0], orders[1])  # reshuffled each epoch


def test_make_dataset_same_seed_same_order():
    x1, x2, y = indexed_arrays(50)

    def order(seed):
        return collect(data.make_dataset((x1, x2), y, batch_size=8, seed=seed))[3]

    np.testing.assert_array_equal(order(7), order(7))
    assert not np.array_equal(order(7), order(8))


def test_make_dataset_accepts_a_two_view_split():
    x1, x2, y = indexed_arrays(6)
    split = data.TwoViewSplit(x1.astype(np.float32), x2, y)
    sizes, seen_x1, seen_x2, seen_y = collect(data.make_dataset(split, batch_size=4, shuffle=False))
    assert sizes == [4, 2]
    np.testing.assert_array_equal(seen_y, y)
    np.testing.assert_array_equal(seen_x2, x2)


def test_make_dataset_dict_views_without_labels():
    x1, x2, y = indexed_arrays(10)
    dataset = data.make_dataset({"image": x1, "audio": x2}, batch_size=3, seed=0)
    seen = {"image": [], "audio": []}
    for batch in dataset:
        assert isinstance(batch, dict) and set(batch) == {"image", "audio"}
        for name in seen:
            seen[name].append(batch[name].numpy())
    image, audio = np.concatenate(seen["image"]), np.concatenate(seen["audio"])
    np.testing.assert_array_equal(np.sort(image[:, 0]), np.arange(10))
    np.testing.assert_array_equal(audio[:, 0], 10 * image[:, 0])


def test_make_dataset_single_array_and_list_structures():
    x1, x2, y = indexed_arrays(5)
    single = next(iter(data.make_dataset(x1, batch_size=5, shuffle=False)))
    assert single.shape == (5, 2)
    from_list = next(iter(data.make_dataset([x1, x2], batch_size=5, shuffle=False)))
    assert isinstance(from_list, tuple) and len(from_list) == 2
    assert from_list[1].shape == (5, 1)
    rows_and_labels = data.make_dataset([[0.0, 1.0], [2.0, 3.0]], [0, 1], batch_size=2, shuffle=False)
    rows, labels = next(iter(rows_and_labels))
    assert rows.shape == (2, 2) and rows.dtype.name == "float32"
    assert labels.numpy().tolist() == [0, 1]


def test_make_dataset_drop_remainder_and_repeat():
    x1, x2, y = indexed_arrays(10)
    dropped = collect(data.make_dataset((x1, x2), y, batch_size=4, drop_remainder=True))[0]
    assert dropped == [4, 4]
    repeated = data.make_dataset((x1, x2), y, batch_size=4, repeat=True, seed=1)
    labels = np.concatenate([batch_y.numpy() for _, batch_y in repeated.take(5)])
    assert len(labels) == 20
    np.testing.assert_array_equal(np.sort(labels[:10]), np.arange(10))  # first epoch complete


@pytest.mark.parametrize(
    "make_args, error_type, message",
    [
        (lambda: ((np.zeros((10, 2)), np.zeros((7, 2))), None, {}), ValueError, r"10.*7"),
        (lambda: (np.zeros((10, 2)), np.zeros(9), {}), ValueError, r"labels: 9"),
        (lambda: (np.zeros((0, 2)), None, {}), ValueError, "no rows"),
        (lambda: ((), None, {}), ValueError, "empty"),
        (lambda: ({}, None, {}), ValueError, "empty"),
        (lambda: (np.zeros((4, 2)), None, {"batch_size": 0}), ValueError, "batch_size"),
        (lambda: (np.zeros((4, 2)), None, {"batch_size": 2.5}), TypeError, "batch_size"),
        (lambda: (np.zeros((4, 2)), None, {"batch_size": 8, "drop_remainder": True}), ValueError, "drop_remainder"),
        (lambda: (np.zeros((4, 2)), None, {"seed": "x"}), TypeError, "seed"),
        (lambda: ([[1.0, 2.0], [3.0]], None, {}), TypeError, "equal-length"),
        (lambda: (np.float32(3.0), None, {}), ValueError, "scalar"),
        (
            lambda: (data.TwoViewSplit(np.zeros((3, 1)), np.zeros((3, 1)), np.zeros(3)), np.zeros(3), {}),
            TypeError,
            "TwoViewSplit",
        ),
    ],
)
def test_make_dataset_errors(make_args, error_type, message):
    views, labels, kwargs = make_args()
    with pytest.raises(error_type, match=message):
        data.make_dataset(views, labels, **kwargs)
