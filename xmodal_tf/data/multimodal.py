"""Multimodal data sets: digits as image halves, spoken digits, AV-MNIST, emoji + names.

Each loader returns a ``MultimodalDataset`` whose splits hold a dict of arrays, one per
modality, and the labels:

    >>> from xmodal_tf.data import load_multimodal_digits, load_av_mnist
    >>> digits = load_multimodal_digits(("left", "right"))        # offline
    >>> digits.train.inputs["left"].shape                          # (1078, 8, 4, 1)
    >>> av = load_av_mnist("../shared/data")                       # mnist.npz + fsdd_mfcc.npz
    >>> av.test.inputs["image"].shape, av.test.inputs["audio"].shape   # (10000, 28, 28, 1), (10000, 92, 13)

Audio is 13 standardised MFCC coefficients per frame, zero-padded to 92 frames.
Design notes (the AV-MNIST pairing, the audio features): docs/DESIGN.md (section
xmodal_tf/data/multimodal.py).
"""

from __future__ import annotations

import pathlib
import re
from typing import NamedTuple

import numpy as np

from xmodal_tf._validation import check_finite_rows, check_number
from xmodal_tf.data.datasets import (
    DATA_DIR_ENV_VAR,
    _check_mnist_arrays,
    _read_mnist_npz,
    load_two_view_digits,
    read_npz_arrays,
    resolve_data_dir,
)

__all__ = [
    "DIGIT_MODALITIES",
    "EmojiDataset",
    "EmojiSplit",
    "MultimodalDataset",
    "MultimodalSplit",
    "load_av_mnist",
    "load_multimodal_digits",
    "load_openmoji",
    "load_spoken_digits",
    "emoji_base_name",
]

FSDD_FILENAME = "fsdd_mfcc.npz"
OPENMOJI_FILENAME = "openmoji64.npz"
MNIST_FILENAME = "mnist.npz"
DIGIT_MODALITIES = ("image", "left", "right")
_MNIST_TRAIN_SIZE = 50000
_SKIN_TONE = re.compile(r"[\s:,]*\b(?:medium-light|medium-dark|light|medium|dark) skin tone\b")


class MultimodalSplit(NamedTuple):
    """One split of a multimodal data set.

    Attributes:
        inputs: maps a modality name to an array whose first axis is the example.
        labels: (n,) int64 class of each example.
    """

    inputs: dict
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows) -> MultimodalSplit:
        """The examples at ``rows`` (indices or a boolean mask), every modality alike."""
        return MultimodalSplit({name: array[rows] for name, array in self.inputs.items()}, self.labels[rows])


class MultimodalDataset(NamedTuple):
    """Splits of a multimodal data set (``validation`` may be None)."""

    train: MultimodalSplit
    validation: MultimodalSplit | None
    test: MultimodalSplit
    modalities: tuple
    description: str
    num_classes: int = 10


class EmojiSplit(NamedTuple):
    """Emoji images with their names.

    Attributes:
        images: (n, 64, 64, 3) uint8 RGB.
        names: (n,) str, the CLDR names.
        base_names: (n,) str, the name without skin-tone qualifiers (``emoji_base_name``).
        aliases: (n,) str, other names of each emoji, "|"-separated ("" for none).
    """

    images: np.ndarray
    names: np.ndarray
    base_names: np.ndarray
    aliases: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, rows) -> EmojiSplit:
        """The emoji at ``rows`` (indices or a boolean mask), every array alike."""
        return EmojiSplit(*(array[rows] for array in self))


def held_out_base_emoji(base_names: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A mask of the rows whose base emoji are held out whole.

    Args:
        base_names: (n,) base names; at least two distinct ones.
        fraction: the share of the distinct base names held out (at least one, and at
            least one kept).
        rng: draws the held-out names.

    Returns:
        A (n,) bool mask.
    """
    unique = np.unique(base_names)
    count = min(len(unique) - 1, max(1, int(round(fraction * len(unique)))))
    return np.isin(base_names, rng.choice(unique, size=count, replace=False))


class EmojiDataset(NamedTuple):
    train: EmojiSplit
    test: EmojiSplit
    description: str


# ---------------------------------------------------------------------- digits (offline)


def load_multimodal_digits(modalities=("left", "right"), *, seed: int = 0) -> MultimodalDataset:
    """scikit-learn's 8x8 digits as modalities, offline.

    Args:
        modalities: any of "image" (n, 8, 8, 1), "left" and "right" (n, 8, 4, 1)
            halves; float32 in [0, 1].
        seed: accepted for a uniform loader signature; the split is fixed
            (1078 train / 359 validation / 360 test, as ``load_two_view_digits``).

    Returns:
        A ``MultimodalDataset``.
    """
    modalities = _check_modalities(modalities, DIGIT_MODALITIES, "load_multimodal_digits")
    del seed
    halves = load_two_view_digits(flatten=False)

    def split(part) -> MultimodalSplit:
        arrays = {"left": part.view1, "right": part.view2, "image": np.concatenate([part.view1, part.view2], axis=2)}
        return MultimodalSplit({name: arrays[name].astype(np.float32) for name in modalities}, part.labels)

    return MultimodalDataset(
        split(halves.train),
        split(halves.validation),
        split(halves.test),
        modalities,
        "scikit-learn digits 8x8 (offline)",
    )


def _check_modalities(modalities, known, where: str) -> tuple:
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities = tuple(modalities)
    unknown = [name for name in modalities if name not in known]
    if not modalities or unknown or len(set(modalities)) != len(modalities):
        raise ValueError(f"{where}: modalities must be distinct names from {known}, got {modalities!r}.")
    return modalities


# ---------------------------------------------------------------------- files in the data folder

_DATA_FIX = "Replace it with a good copy (the README's Data section says where each file comes from)."


def _data_file(data_dir, filename: str, what: str) -> pathlib.Path:
    folder = resolve_data_dir(data_dir)
    if folder is not None and (folder / filename).is_file():
        return folder / filename
    where = f"in {folder}" if folder is not None else "(no data folder given)"
    raise FileNotFoundError(
        f"{filename} ({what}) not found {where}. Put the file in a folder and pass it as "
        f"data_dir= / --data-dir, or set ${DATA_DIR_ENV_VAR} to that folder."
    )


def _check_fraction(value, name: str) -> float:
    return check_number(
        value,
        name,
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
        exclusive_maximum=True,
        expected="a number strictly between 0 and 1",
    )


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """(train_rows, test_rows): per class, a seeded random test_fraction is held out."""
    rng = np.random.default_rng(seed)
    train_rows, test_rows = [], []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        # At least one held out, and one kept for training whenever there are two.
        held_out = min(max(1, int(round(test_fraction * len(rows)))), max(len(rows) - 1, 1))
        test_rows.append(rows[:held_out])
        train_rows.append(rows[held_out:])
    return np.sort(np.concatenate(train_rows)), np.sort(np.concatenate(test_rows))


# ---------------------------------------------------------------------- spoken digits


class _Recordings(NamedTuple):
    frames: np.ndarray  # (n, max_frames, 13) float32, standardised, zero-padded
    labels: np.ndarray  # (n,) int64
    train_rows: np.ndarray
    test_rows: np.ndarray


def _check_recordings(arrays: dict, path) -> tuple:
    """(frames, lengths, labels) of an fsdd_mfcc.npz, or ValueError naming the file and
    what is wrong: shapes, dtypes, counts, NaN/inf frames, digits without a recording
    to train and one to test on."""
    frames, lengths, labels = arrays["X"], arrays["lengths"], arrays["y"]
    problems = []
    if frames.ndim != 2 or frames.dtype.kind != "f" or 0 in frames.shape:
        problems.append(f"X has shape {frames.shape} and dtype {frames.dtype}, expected floats (frames, 13)")
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths.size and lengths.min() < 1):
        problems.append(
            f"lengths has shape {lengths.shape} and dtype {lengths.dtype}, expected (n,) integers >= 1 "
            "(frames per recording)"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        problems.append(f"y has shape {labels.shape} and dtype {labels.dtype}, expected (n,) integers >= 0 (digits)")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems) + f". {_DATA_FIX}")
    if not len(labels):
        raise ValueError(f"{path} holds no recordings (y is empty). {_DATA_FIX}")
    if lengths.sum() != len(frames) or len(lengths) != len(labels):
        raise ValueError(
            f"{path}: lengths must sum to len(X) and match len(y); got {len(lengths)} lengths summing "
            f"to {int(lengths.sum())} for {len(frames)} frames and {len(labels)} labels. {_DATA_FIX}"
        )
    check_finite_rows(frames, "X (frames)", where=str(path), fix=_DATA_FIX)
    digits, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        raise ValueError(
            f"{path}: digit(s) {digits[counts < 2].tolist()} have fewer than 2 recordings; every digit "
            f"needs one to train and one to test on. {_DATA_FIX}"
        )
    return frames, lengths.astype(np.int64), labels.astype(np.int64)


def _read_recordings(data_dir, test_fraction: float, seed: int) -> _Recordings:
    path = _data_file(data_dir, FSDD_FILENAME, "Free Spoken Digit Dataset MFCCs")
    arrays = read_npz_arrays(path, ("X", "lengths", "y"), fix=_DATA_FIX)
    frames, lengths, labels = _check_recordings(arrays, path)
    train_rows, test_rows = _stratified_split(labels, test_fraction, seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    train_frames = np.concatenate([frames[offsets[i] : offsets[i] + lengths[i]] for i in train_rows])
    mean, std = train_frames.mean(axis=0), train_frames.std(axis=0) + 1e-6
    padded = np.zeros((len(labels), int(lengths.max()), frames.shape[1]), dtype=np.float32)
    for i, (start, length) in enumerate(zip(offsets, lengths)):
        padded[i, :length] = (frames[start : start + length] - mean) / std
    return _Recordings(padded, labels, train_rows, test_rows)


def load_spoken_digits(data_dir=None, *, test_fraction: float = 0.2, seed: int = 0) -> MultimodalDataset:
    """The 3000 FSDD recordings as modality "audio": (n, 92, 13) float32 frames.

    Split stratified by digit; no validation split. Needs ``fsdd_mfcc.npz`` in
    ``data_dir`` or $XMODAL_DATA_DIR.

    Args:
        data_dir: the data folder; None: $XMODAL_DATA_DIR.
        test_fraction: the share of recordings held out for the test split.
        seed: fixes the split.

    Returns:
        A ``MultimodalDataset`` whose ``validation`` is None.

    Raises:
        FileNotFoundError: ``fsdd_mfcc.npz`` is missing.
    """
    recordings = _read_recordings(data_dir, _check_fraction(test_fraction, "test_fraction"), seed)

    def split(rows) -> MultimodalSplit:
        return MultimodalSplit({"audio": recordings.frames[rows]}, recordings.labels[rows])

    return MultimodalDataset(
        split(recordings.train_rows),
        None,
        split(recordings.test_rows),
        ("audio",),
        "Free Spoken Digit Dataset, 13 MFCCs per frame",
    )


# ---------------------------------------------------------------------- AV-MNIST


def load_av_mnist(
    data_dir=None, *, audio_test_fraction: float = 0.2, seed: int = 0, train_size: int | None = None
) -> MultimodalDataset:
    """MNIST images paired by digit with spoken-digit recordings.

    Modalities "image" (n, 28, 28, 1) float32 in [0, 1] and "audio" (n, 92, 13).
    train: the first 50000 MNIST training images; validation: the last 10000;
    test: the 10000 MNIST test images. Each image gets a random recording of its digit
    (seeded): train and validation draw from the training recordings, test from the
    recordings held out. Needs ``mnist.npz`` and ``fsdd_mfcc.npz`` in the data folder.

    Args:
        data_dir: the data folder; None: $XMODAL_DATA_DIR.
        audio_test_fraction: the share of recordings held out for the test images.
        seed: fixes the recording split and the pairing.
        train_size: keep the first n training pairs; None keeps all 50000.

    Returns:
        A ``MultimodalDataset``.

    Raises:
        FileNotFoundError: a data file is missing.
        ValueError: a bad ``train_size`` or malformed data files.
    """
    fraction = _check_fraction(audio_test_fraction, "audio_test_fraction")
    if train_size is not None and (
        isinstance(train_size, bool) or not isinstance(train_size, int) or not 1 <= train_size <= _MNIST_TRAIN_SIZE
    ):
        raise ValueError(f"train_size must be None or an int in [1, {_MNIST_TRAIN_SIZE}], got {train_size!r}.")
    mnist_path = _data_file(data_dir, MNIST_FILENAME, "MNIST, Keras layout")
    mnist = _read_mnist_npz(mnist_path)
    _check_mnist_arrays(mnist, where=str(mnist_path))
    if len(mnist["x_train"]) <= _MNIST_TRAIN_SIZE:
        raise ValueError(
            f"{mnist_path} has {len(mnist['x_train'])} training images; AV-MNIST needs the full "
            f"Keras layout (60000: the first {_MNIST_TRAIN_SIZE} train, the rest validate). {_DATA_FIX}"
        )
    recordings = _read_recordings(data_dir, fraction, seed)
    unheard = sorted(
        set(np.unique(np.concatenate([mnist["y_train"], mnist["y_test"]])).tolist()) - set(recordings.labels.tolist())
    )
    if unheard:
        raise ValueError(
            f"{_data_file(data_dir, FSDD_FILENAME, 'FSDD')} has no recordings of the digit(s) {unheard} "
            f"that {mnist_path} holds images of. {_DATA_FIX}"
        )
    rng = np.random.default_rng(seed + 1)

    def paired(images, labels, recording_rows) -> MultimodalSplit:
        labels = labels.astype(np.int64)
        chosen = np.empty(len(labels), dtype=np.int64)
        for digit in np.unique(labels):
            where = np.flatnonzero(labels == digit)
            pool = recording_rows[recordings.labels[recording_rows] == digit]
            chosen[where] = rng.choice(pool, size=len(where))
        image = (images.astype(np.float32) / 255.0)[..., None]
        return MultimodalSplit({"image": image, "audio": recordings.frames[chosen]}, labels)

    end = train_size or _MNIST_TRAIN_SIZE
    x, y = mnist["x_train"], mnist["y_train"]
    return MultimodalDataset(
        train=paired(x[:end], y[:end], recordings.train_rows),
        validation=paired(x[_MNIST_TRAIN_SIZE:], y[_MNIST_TRAIN_SIZE:], recordings.train_rows),
        test=paired(mnist["x_test"], mnist["y_test"], recordings.test_rows),
        modalities=("image", "audio"),
        description="AV-MNIST: MNIST images paired by digit with FSDD recordings (13 MFCCs)",
    )


# ---------------------------------------------------------------------- OpenMoji


def emoji_base_name(name: str) -> str:
    """The emoji a name belongs to: the text before any ':' without skin-tone words.

    "Santa Claus medium-dark skin tone" -> "Santa Claus"; "waving hand: light skin tone"
    -> "waving hand"; "couple with heart woman man light skin tone dark skin tone" ->
    "couple with heart woman man"; "dark sunglasses" stays.

    Args:
        name: a CLDR emoji name.

    Returns:
        The base name.
    """
    return _SKIN_TONE.sub("", str(name).split(":")[0]).strip(" ,")


def load_openmoji(data_dir=None, *, test_fraction: float = 0.2, seed: int = 0) -> EmojiDataset:
    """OpenMoji images with their CLDR names and aliases, split by base emoji.

    A seeded share of the base names (``emoji_base_name``) is held out whole, so the
    skin-tone variants of one emoji never straddle train and test. Needs
    ``openmoji64.npz`` in ``data_dir`` or $XMODAL_DATA_DIR.

    Args:
        data_dir: the data folder; None: $XMODAL_DATA_DIR.
        test_fraction: the share of base names held out for the test split.
        seed: fixes the split.

    Returns:
        An ``EmojiDataset`` (train and test ``EmojiSplit``).

    Raises:
        FileNotFoundError: ``openmoji64.npz`` is missing.
        ValueError: a malformed archive, or too few base emoji to split.
    """
    fraction = _check_fraction(test_fraction, "test_fraction")
    path = _data_file(data_dir, OPENMOJI_FILENAME, "OpenMoji images and names")
    arrays = read_npz_arrays(path, ("images", "names"), fix=_DATA_FIX, optional=("aliases",))
    images, names = arrays["images"], arrays["names"]
    aliases = arrays.get("aliases", np.full(len(names), ""))
    if aliases.shape != names.shape or aliases.dtype.kind not in "US":
        raise ValueError(
            f"{path}: aliases must be one string per name; got {aliases.shape} {aliases.dtype} for "
            f"{names.shape} names. {_DATA_FIX}"
        )
    if (
        images.ndim != 4
        or 0 in images.shape[1:]
        or images.dtype.kind not in "uif"
        or names.ndim != 1
        or names.dtype.kind not in "US"
        or len(images) != len(names)
    ):
        raise ValueError(
            f"{path}: expected images (n, height, width, channels) of numbers and n names (strings); "
            f"got {images.shape} {images.dtype} and {names.shape} {names.dtype}. {_DATA_FIX}"
        )
    check_finite_rows(images, "images", where=str(path), fix=_DATA_FIX)
    names = names.astype(str)
    base_names = np.array([emoji_base_name(name) for name in names])
    unique = np.unique(base_names)
    if len(unique) < 2:
        raise ValueError(f"{path}: {len(unique)} base emoji cannot be split into train and test.")
    test_mask = held_out_base_emoji(base_names, fraction, np.random.default_rng(seed))
    everything = EmojiSplit(images, names, base_names, aliases.astype(str))
    return EmojiDataset(
        everything.subset(~test_mask),
        everything.subset(test_mask),
        "OpenMoji 17 images (64x64 RGB) with Unicode CLDR names",
    )
