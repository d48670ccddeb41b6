"""Real two-view data sets: each image is cut into a left and a right half.

The two halves of one image are two "views" of the same object that share the
class label, the classic setting for CCA / deep CCA and cross-modal transfer.

* ``load_two_view_digits`` -- scikit-learn's 8x8 digits (ships with scikit-learn,
  always available offline), 4 + 4 columns.
* ``load_split_mnist`` -- MNIST, 14 + 14 columns, the 50k/10k/10k split of the
  deep CCA papers; read from a Keras-layout ``mnist.npz`` or tensorflow_datasets.

NumPy only at import time: scikit-learn and tensorflow_datasets are imported
inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile
from typing import NamedTuple

import numpy as np

from xmodal_tf._validation import check_int
from xmodal_tf.network import network_reachable

DATA_DIR_ENV_VAR = "XMODAL_DATA_DIR"
MNIST_FILENAME = "mnist.npz"
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
SPLIT_NAMES = ("train", "validation", "test")

_MNIST_ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
_MNIST_IMAGE_SIZE = (28, 28)
_TFDS_STORAGE_HOST = "storage.googleapis.com"
# The probe, under the module-level name that tests patch to simulate being offline.
_network_reachable = network_reachable


class TwoViewSplit(NamedTuple):
    """One split of a two-view data set; unpacks as ``x1, x2, y = split``.

    Attributes:
        view1: (n, d1) float32 in [0, 1] when flattened, else (n, H, W1, 1).
        view2: (n, d2) float32 in [0, 1] when flattened, else (n, H, W2, 1).
        labels: (n,) int64 class ids.
    """

    view1: np.ndarray
    view2: np.ndarray
    labels: np.ndarray

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"TwoViewSplit(view1={self.view1.shape}, view2={self.view2.shape}, labels={self.labels.shape})"


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: fields hold arrays
class TwoViewDataset:
    """A two-view data set with fixed train / validation / test splits.

    Attributes:
        name: "two_view_digits" or "split_mnist".
        train: the training ``TwoViewSplit``.
        validation: the validation ``TwoViewSplit``.
        test: the test ``TwoViewSplit``.
        view_shapes: image shape (H, W, C) of each view, e.g. ((28, 14, 1), (28, 14, 1)).
        num_classes: number of classes (10).
        source: where the data came from: "sklearn", the mnist.npz path, or
            "tensorflow_datasets".
    """

    name: str
    train: TwoViewSplit
    validation: TwoViewSplit
    test: TwoViewSplit
    view_shapes: tuple
    num_classes: int
    source: str

    def summary(self) -> str:
        """Multi-line text with the size and array shapes of every split."""
        lines = [f"{self.name}: {self.num_classes} classes, view shapes {self.view_shapes}, source: {self.source}"]
        for split_name in SPLIT_NAMES:
            split = getattr(self, split_name)
            lines.append(
                f"  {split_name:<10} {split.num_examples:>6} examples  "
                f"view1 {split.view1.shape}  view2 {split.view2.shape}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={getattr(self, name).num_examples}" for name in SPLIT_NAMES)
        return (
            f"TwoViewDataset(name={self.name!r}, {sizes}, view_shapes="
            f"{self.view_shapes}, num_classes={self.num_classes}, "
            f"source={self.source!r})"
        )


def split_image_halves(images, flatten: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cut images into their left and right halves (values are not rescaled).

    Args:
        images: (n, H, W) or (n, H, W, C) array, any numeric dtype.
        flatten: return (n, features) rows instead of images.

    Returns:
        (left, right), float32. left holds the first W // 2 columns, right the
        other W - W // 2. Shapes (n, H * (W // 2) * C) and (n, H * (W - W // 2) * C)
        if flatten, else (n, H, W // 2, C) and (n, H, W - W // 2, C).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, H, W) or (n, H, W, C); got {images.shape}")
    if images.shape[2] < 2:
        raise ValueError(f"images must be at least 2 pixels wide to split; got shape {images.shape}")
    half_width = images.shape[2] // 2
    halves = (images[:, :, :half_width], images[:, :, half_width:])
    halves = tuple(np.ascontiguousarray(half, dtype=np.float32) for half in halves)
    if flatten:
        halves = tuple(half.reshape(len(half), int(np.prod(half.shape[1:]))) for half in halves)
    return halves


# --------------------------------------------------------------------- digits


def load_two_view_digits(flatten: bool = True) -> TwoViewDataset:
    """scikit-learn's 8x8 handwritten digits as two views (left / right 4 columns).

    1797 images, pixel values / 16 -> float32 in [0, 1]. Fixed stratified split
    (random_state=0): 1078 train / 359 validation / 360 test, identical on every call.

    Args:
        flatten: views of shape (n, 32) if True, else (n, 8, 4, 1).

    Returns:
        The ``TwoViewDataset`` "two_view_digits".
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    view1, view2 = split_image_halves(digits.images / 16.0, flatten=flatten)
    all_rows = np.arange(len(labels))
    train_rows, held_out_rows = train_test_split(all_rows, test_size=0.4, stratify=labels, random_state=0)
    validation_rows, test_rows = train_test_split(
        held_out_rows, test_size=0.5, stratify=labels[held_out_rows], random_state=0
    )
    splits = {
        name: TwoViewSplit(view1[rows], view2[rows], labels[rows])
        for name, rows in zip(SPLIT_NAMES, (train_rows, validation_rows, test_rows))
    }
    return TwoViewDataset(
        name="two_view_digits", **splits, view_shapes=((8, 4, 1), (8, 4, 1)), num_classes=10, source="sklearn"
    )


# ---------------------------------------------------------------------- MNIST


def resolve_data_dir(data_dir=None) -> pathlib.Path | None:
    """The data folder: ``data_dir`` if given, else $XMODAL_DATA_DIR, else None."""
    if data_dir is not None and str(data_dir) != "":
        return pathlib.Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV_VAR, "").strip()
    return pathlib.Path(from_env).expanduser() if from_env else None


def load_split_mnist(
    data_dir=None, *, validation_size: int = 10000, flatten: bool = True, download: bool = True
) -> TwoViewDataset:
    """MNIST as two views: left and right 14 columns, pixel values / 255.

    The deep CCA protocol: the first 60000 - validation_size training images are
    "train", the last validation_size are "validation", the 10000 test images
    are "test".

    Look-up order: ``mnist.npz`` (Keras layout) in ``data_dir`` or
    $XMODAL_DATA_DIR (either may also name the .npz file itself), then the Keras cache
    ~/.keras/datasets/mnist.npz, then a
    prepared tensorflow_datasets 'mnist' (in that folder or the default tfds
    folder), then -- only if ``download`` and the network is reachable -- a
    tensorflow_datasets download.

    Args:
        data_dir: the data folder (or the .npz file); None: $XMODAL_DATA_DIR.
        validation_size: the number of training images held out for validation.
        flatten: views of float32 shape (n, 392) if True, else (n, 28, 14, 1).
        download: allow a tensorflow_datasets download.

    Returns:
        The ``TwoViewDataset`` "split_mnist".

    Raises:
        FileNotFoundError: the folder does not exist, or MNIST is nowhere and
            cannot be downloaded (the message says where to put mnist.npz).
        ValueError: a malformed mnist.npz, or validation_size out of range.
    """
    check_int(
        validation_size, "validation_size", minimum=0, expected="an int >= 0 (the number of training images held out)"
    )
    folder = resolve_data_dir(data_dir)
    if folder is not None and not folder.exists():
        origin = "data_dir" if data_dir not in (None, "") else f"${DATA_DIR_ENV_VAR}"
        raise FileNotFoundError(
            f"MNIST data folder {folder} (from {origin}) does not exist. Create it and "
            f"save {MNIST_URL} there as {MNIST_FILENAME}, or point {origin} at the "
            f"folder that holds {MNIST_FILENAME}."
        )
    npz_path = next((path for path in _mnist_npz_candidates(folder) if path.is_file()), None)
    if npz_path is not None:
        arrays = _read_mnist_npz(npz_path)
        source = str(npz_path)
    else:
        arrays = _load_mnist_from_tfds(folder, download=download)
        source = "tensorflow_datasets"
    _check_mnist_arrays(arrays, where=source)
    return _split_mnist_from_arrays(arrays, validation_size, flatten, source)


def _keras_datasets_dir() -> pathlib.Path:
    """Where keras.utils.get_file caches data sets ($KERAS_HOME or ~/.keras)."""
    keras_home = os.environ.get("KERAS_HOME") or pathlib.Path.home() / ".keras"
    return pathlib.Path(keras_home).expanduser() / "datasets"


def _default_tfds_dir() -> pathlib.Path:
    tfds_dir = os.environ.get("TFDS_DATA_DIR") or pathlib.Path.home() / "tensorflow_datasets"
    return pathlib.Path(tfds_dir).expanduser()


def _mnist_npz_candidates(folder: pathlib.Path | None) -> list[pathlib.Path]:
    candidates = []
    if folder is not None:
        candidates.append(folder if folder.is_file() else folder / MNIST_FILENAME)
    candidates.append(_keras_datasets_dir() / MNIST_FILENAME)
    return candidates


def _tfds_dir_candidates(folder: pathlib.Path | None) -> list[pathlib.Path]:
    candidates = [folder] if folder is not None and folder.is_dir() else []
    return candidates + [_default_tfds_dir()]


def read_npz_arrays(path, names, *, fix: str, optional=()) -> dict:
    """Read arrays from an .npz archive, never unpickling.

    Args:
        path: the .npz archive.
        names: the arrays it must hold.
        fix: how to get a good copy, for the error message.
        optional: arrays read when the archive holds them.

    Returns:
        {name: array} of ``names`` and of those of ``optional`` that it holds.

    Raises:
        ValueError: naming the file, what is wrong with it and ``fix``, when it is not
            a readable .npz (checked from its first bytes, so random bytes are not
            mistaken for pickled data) or lacks an array of ``names``.
    """
    path = pathlib.Path(path)
    with open(path, "rb") as stream:
        head = stream.read(4)
    if head != b"PK\x03\x04":
        kind = "an empty file" if not head else ("a single .npy array" if head == b"\x93NUM" else "not a zip archive")
        raise ValueError(f"{path} is not an .npz archive ({kind}). {fix}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            found = list(npz.files)
            missing = [name for name in names if name not in found]
            if missing:
                raise ValueError(f"{path} lacks the arrays {missing} (it has {found}). {fix}")
            return {name: npz[name] for name in [*names, *[extra for extra in optional if extra in found]]}
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as error:
        if str(path) in str(error):
            raise
        reason = "it holds pickled objects" if "pickle" in str(error) else f"{type(error).__name__}: {error}"
        raise ValueError(f"{path} is damaged or truncated ({reason}). {fix}") from None


def _read_mnist_npz(path: pathlib.Path) -> dict:
    """The four arrays of a Keras-layout mnist.npz, or ValueError naming the file."""
    return read_npz_arrays(path, _MNIST_ARRAY_NAMES, fix=f"Replace it with {MNIST_URL}.")


def _check_mnist_arrays(arrays: dict, where: str) -> None:
    """ValueError unless images are uint8 (n, 28, 28[, 1]) with n integer labels."""
    problems = []
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        image_shape_ok = (
            images.ndim in (3, 4)
            and images.shape[1:3] == _MNIST_IMAGE_SIZE
            and images.shape[3:] in ((), (1,))
            and len(images) > 0
        )
        if not image_shape_ok:
            problems.append(f"x_{split} has shape {images.shape}, expected (n, 28, 28) or (n, 28, 28, 1) with n > 0")
        if images.dtype != np.uint8:
            problems.append(f"x_{split} has dtype {images.dtype}, expected uint8 pixels 0..255")
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            problems.append(
                f"y_{split} has shape {labels.shape} and dtype {labels.dtype}, "
                f"expected ({len(images)},) integers to match x_{split}"
            )
    if problems:
        raise ValueError(
            f"malformed MNIST data in {where}: " + "; ".join(problems) + f". Expected the Keras layout of {MNIST_URL}."
        )


def _split_mnist_from_arrays(arrays: dict, validation_size: int, flatten: bool, source: str) -> TwoViewDataset:
    num_train_images = len(arrays["x_train"])
    if not 0 <= validation_size < num_train_images:
        raise ValueError(
            f"validation_size must be in [0, {num_train_images}) for the "
            f"{num_train_images} training images of {source}; got {validation_size}"
        )
    num_fit = num_train_images - validation_size
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    splits = {
        "train": _scaled_halves(x_train[:num_fit], y_train[:num_fit], flatten),
        "validation": _scaled_halves(x_train[num_fit:], y_train[num_fit:], flatten),
        "test": _scaled_halves(arrays["x_test"], arrays["y_test"], flatten),
    }
    return TwoViewDataset(
        name="split_mnist", **splits, view_shapes=((28, 14, 1), (28, 14, 1)), num_classes=10, source=source
    )


def _scaled_halves(images: np.ndarray, labels: np.ndarray, flatten: bool) -> TwoViewSplit:
    left, right = split_image_halves(images, flatten=flatten)
    left /= 255.0
    right /= 255.0
    return TwoViewSplit(left, right, labels.astype(np.int64))


# -------------------------------------------------------- tensorflow_datasets


def _load_mnist_from_tfds(folder: pathlib.Path | None, *, download: bool) -> dict:
    """MNIST arrays from tensorflow_datasets: a prepared copy, else a download.

    Fails fast (FileNotFoundError) when there is no prepared copy and no
    download is possible: tfds itself would retry an offline download for minutes.
    """
    tfds_dirs = _tfds_dir_candidates(folder)
    prepared_dirs = [d for d in tfds_dirs if any(d.glob("mnist/*/dataset_info.json"))]
    builder = _prepared_tfds_builder(prepared_dirs) if prepared_dirs else None
    if builder is None:
        if not download:
            raise FileNotFoundError(_mnist_not_found_message(folder, tfds_dirs, "download=False was given"))
        if not _network_reachable(_TFDS_STORAGE_HOST):
            raise FileNotFoundError(
                _mnist_not_found_message(
                    folder, tfds_dirs, f"{_TFDS_STORAGE_HOST} is unreachable (offline?), so nothing was downloaded"
                )
            )
        builder = _download_tfds_mnist(folder, tfds_dirs)
    return _tfds_builder_arrays(builder)


def _prepared_tfds_builder(tfds_dirs: list[pathlib.Path]):
    import tensorflow_datasets as tfds

    for tfds_dir in tfds_dirs:
        builder = tfds.builder("mnist", data_dir=str(tfds_dir))
        if builder.is_prepared():
            return builder
    return None


def _download_tfds_mnist(folder: pathlib.Path | None, tfds_dirs: list[pathlib.Path]):
    import tensorflow_datasets as tfds

    builder = tfds.builder("mnist", data_dir=str(tfds_dirs[0]))
    try:
        builder.download_and_prepare()
    except Exception as error:  # tfds raises many types; report them one way
        raise FileNotFoundError(
            _mnist_not_found_message(folder, tfds_dirs, f"the tensorflow_datasets download failed ({error!r})")
        ) from error
    return builder


def _tfds_builder_arrays(builder) -> dict:
    """Keras-layout arrays from a tfds 'mnist' builder; images stay (n, 28, 28, 1)."""
    import tensorflow_datasets as tfds

    arrays = {}
    for split in ("train", "test"):
        # Not batch_size=-1: that sizes one batch from the split metadata, which
        # is missing for mocked or partially described builders.
        batches = list(tfds.as_numpy(builder.as_dataset(split=split, batch_size=4096)))
        arrays[f"x_{split}"] = np.concatenate([batch["image"] for batch in batches])
        arrays[f"y_{split}"] = np.concatenate([batch["label"] for batch in batches])
    return arrays


def _mnist_not_found_message(folder: pathlib.Path | None, tfds_dirs: list[pathlib.Path], reason: str) -> str:
    searched_files = "\n".join(f"  - {path}" for path in _mnist_npz_candidates(folder))
    searched_tfds = "\n".join(f"  - {path}" for path in tfds_dirs)
    target = folder if folder is not None and folder.is_dir() else pathlib.Path("<folder>")
    no_folder_note = f" (no data_dir was given and ${DATA_DIR_ENV_VAR} is unset)" if folder is None else ""
    return (
        f"MNIST not found: searched for {MNIST_FILENAME}{no_folder_note} at\n{searched_files}\n"
        f"and for a prepared tensorflow_datasets 'mnist' in\n{searched_tfds}\n"
        f"and {reason}.\n"
        f"Fix: download the Keras file {MNIST_URL}, save it as "
        f"{target / MNIST_FILENAME}, then pass data_dir='{target}' or set "
        f"{DATA_DIR_ENV_VAR}={target} (or save it as "
        f"{_keras_datasets_dir() / MNIST_FILENAME}, which is found automatically)."
    )
