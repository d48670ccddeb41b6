"""Keras callbacks that show a model's progress in TensorBoard, every few epochs.

* ``GeneratedImagesCallback``       a conditional generator's samples, a row per condition.
* ``ReconstructionImagesCallback``  a ``MultimodalAutoencoder``'s originals and reconstructions.
* ``EmbeddingProjectorCallback``    shared codes for TensorBoard's embedding projector.
* ``ConfusionMatrixCallback``        a classifier's validation confusion matrix as an image.

    >>> callbacks = [ReconstructionImagesCallback("tensorboard_logs/run", inputs=few_examples),
    ...              EmbeddingProjectorCallback("tensorboard_logs/run", test_inputs, test_labels)]
    >>> model.fit(data, epochs=20, callbacks=callbacks)
    >>> # tensorboard --logdir tensorboard_logs   (IMAGES and PROJECTOR tabs)

Design notes (epoch counting, how non-image modalities are drawn): docs/DESIGN.md
(section xmodal_tf/training/callbacks.py).
"""

from __future__ import annotations

import os
import pathlib

import keras
import numpy as np
import tensorflow as tf

from xmodal_tf._validation import check_int, check_positive_int, describe
from xmodal_tf.data.balance import as_class_labels
from xmodal_tf.metrics import _check_rows, confusion_matrix, confusion_matrix_image

__all__ = [
    "ConfusionMatrixCallback",
    "EmbeddingProjectorCallback",
    "GeneratedImagesCallback",
    "ReconstructionImagesCallback",
    "heat_map",
    "image_grid",
    "to_pictures",
]

# Anchors of the viridis colour map (dark blue -> green -> yellow), at 0, 0.25 ... 1.
_VIRIDIS = (
    np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32) / 255.0
)
_MIN_HEAT_MAP_HEIGHT = 24  # pixels: a 13-coefficient MFCC map is drawn 2x taller


# ----------------------------------------------------------------------------- drawing
def image_grid(images, rows: int, padding: int = 1) -> np.ndarray:
    """Tile images, row by row, into one image with white padding between tiles.

    Args:
        images: (rows * columns, H, W, C) values in [0, 1].
        rows: the number of rows of tiles.
        padding: pixels of white between tiles.

    Returns:
        One (height, width, C) image, values in [0, 1].

    Raises:
        ValueError: ``images`` is not 4-D or its count is not a multiple of ``rows``.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[0] % rows:
        raise ValueError(f"image_grid needs (rows * columns, H, W, C) images, rows={rows}; got shape {images.shape}.")
    columns = images.shape[0] // rows
    _, height, width, channels = images.shape
    grid = np.ones(
        (rows * (height + padding) - padding, columns * (width + padding) - padding, channels), dtype=np.float32
    )
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + padding), (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def heat_map(values) -> np.ndarray:
    """Sequences as viridis heat-map images.

    Time runs left to right, the first feature is at the bottom; small maps are
    enlarged by repeating rows.

    Args:
        values: values in [0, 1] of shape (n, time, features).

    Returns:
        (n, features, time, 3) images.
    """
    values = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    maps = np.flip(np.swapaxes(values, 1, 2), axis=1)
    positions = maps * (len(_VIRIDIS) - 1)
    low = np.clip(np.floor(positions).astype(int), 0, len(_VIRIDIS) - 2)
    fraction = (positions - low)[..., None]
    colours = _VIRIDIS[low] * (1.0 - fraction) + _VIRIDIS[low + 1] * fraction
    repeat = max(1, -(-_MIN_HEAT_MAP_HEIGHT // maps.shape[1]))
    return np.repeat(colours, repeat, axis=1)


def _scaled(values, value_range) -> np.ndarray:
    low, high = value_range
    return np.clip((np.asarray(values, dtype=np.float32) - low) / (high - low), 0.0, 1.0)


def _data_range(values) -> tuple:
    values = np.asarray(values, dtype=np.float32)
    low, high = float(np.min(values)), float(np.max(values))
    return (low, high) if high > low else (low, low + 1.0)


def _is_image(example_shape) -> bool:
    return len(example_shape) == 3 and example_shape[-1] in (1, 3, 4)


def to_pictures(values, value_range) -> np.ndarray:
    """A batch of one modality as pictures: images as they are, anything else as heat maps.

    Examples of shape (H, W, C) with C in 1, 3 or 4 are images; other shapes (MFCC
    sequences (T, F), vectors (D,)) become heat maps with time (the first axis) running
    left to right.

    Args:
        values: the batch (n, ...).
        value_range: (low, high) used to scale the values to [0, 1] (then clipped).

    Returns:
        Pictures (n, H, W, C) in [0, 1].
    """
    values = np.asarray(values, dtype=np.float32)
    scaled = _scaled(values, value_range)
    if _is_image(values.shape[1:]):
        return scaled
    if values.ndim == 2:  # vectors: one strip each
        scaled = scaled[:, :, None]
    elif values.ndim > 3:  # e.g. (H, W, 2): first axis as time, the rest flattened
        scaled = scaled.reshape(scaled.shape[0], scaled.shape[1], -1)
    return heat_map(scaled)


# ----------------------------------------------------------------------------- base
class _TensorBoardCallback(keras.callbacks.Callback):
    """Writes to ``logdir`` every ``every`` epochs through its own summary writer."""

    def __init__(self, logdir, every: int = 1, name: str = "images"):
        super().__init__()
        if not isinstance(logdir, (str, os.PathLike)):
            raise TypeError(f"logdir must be a folder path (str or os.PathLike); got {describe(logdir)}.")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str (the TensorBoard tag); got {describe(name)}.")
        if not name:
            raise ValueError("name must be a non-empty str (the TensorBoard tag); got ''.")
        self.logdir = pathlib.Path(logdir)
        self.every = check_positive_int(every, "every")
        self.name = name
        self._writer = None

    def _writer_for(self):
        if self._writer is None:
            self.logdir.mkdir(parents=True, exist_ok=True)
            self._writer = tf.summary.create_file_writer(str(self.logdir))
        return self._writer

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.write(epoch + 1)  # steps from 1, as the Trainer's scalars

    def write(self, step: int) -> None:
        """Write this callback's summaries now, at TensorBoard step ``step``."""
        with self._writer_for().as_default():
            self._summarise(int(step))
        self._writer.flush()

    def _summarise(self, step: int) -> None:
        raise NotImplementedError

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ----------------------------------------------------------------------------- generated images
class GeneratedImagesCallback(_TensorBoardCallback):
    """Samples of a conditional generator as one image grid per epoch, a row per condition.

    Calls ``model.generate(conditions, n=n_per_condition, seed=seed)``
    (``xmodal_tf.models.ConditionalGAN``'s signature), which must return
    (len(conditions) * n_per_condition, H, W, C) images grouped by condition (all
    samples of the first condition, then the second...), C in 1, 3 or 4 (or (..., H, W)
    grayscale).

    Args:
        logdir: the folder of the events file.
        conditions: class labels (m,), condition vectors (m, d) or one label.
        n_per_condition: samples per condition (a row of the grid).
        every: write after every ``every``-th epoch (epochs every, 2 * every, ...).
        name: the image summary's name.
        value_range: the generator's output range, (0, 1) or (-1, 1), or None to pick
            (-1, 1) when a value is negative and (0, 1) otherwise.
        seed: the same noise every epoch, so the grid shows the generator changing,
            not the noise (None: fresh noise, and ``generate`` is called without ``seed``).
    """

    def __init__(
        self,
        logdir,
        conditions,
        n_per_condition: int = 8,
        every: int = 1,
        name: str = "generated_images",
        value_range=None,
        seed: int | None = 0,
    ):
        super().__init__(logdir, every, name)
        self.seed = check_int(seed, "seed", allow_none=True)
        n_per_condition = check_positive_int(n_per_condition, "n_per_condition")
        if value_range is not None:
            value_range = tuple(float(v) for v in value_range)
            if len(value_range) != 2 or not value_range[0] < value_range[1]:
                raise ValueError(f"value_range must be (low, high) with low < high, e.g. (-1, 1); got {value_range!r}.")
        self.conditions = conditions
        self.rows = 1 if np.ndim(conditions) == 0 else len(conditions)
        if self.rows < 1:
            raise ValueError("conditions must hold at least one condition (one grid row each).")
        self.n_per_condition = int(n_per_condition)
        self.value_range = value_range

    def _summarise(self, step: int) -> None:
        if not hasattr(self.model, "generate"):
            raise TypeError(
                f"GeneratedImagesCallback needs a model with generate(conditions, n=...); "
                f"{type(self.model).__name__} has none."
            )
        seed = {} if self.seed is None else {"seed": self.seed}
        images = np.asarray(self.model.generate(self.conditions, n=self.n_per_condition, **seed), dtype=np.float32)
        if images.ndim == 3:
            images = images[..., None]
        expected = self.rows * self.n_per_condition
        if images.ndim != 4 or images.shape[0] != expected or images.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"model.generate(conditions, n={self.n_per_condition}) returned shape {images.shape}; "
                f"expected ({self.rows} conditions * {self.n_per_condition} = {expected}, H, W, C) "
                "with C in 1, 3 or 4."
            )
        value_range = self.value_range or ((-1.0, 1.0) if images.min() < 0 else (0.0, 1.0))
        grid = image_grid(_scaled(images, value_range), rows=self.rows)
        tf.summary.image(
            self.name,
            grid[None],
            step=step,
            description=f"{self.rows} conditions (rows) x {self.n_per_condition} samples",
        )


# ----------------------------------------------------------------------------- reconstructions
class ReconstructionImagesCallback(_TensorBoardCallback):
    """Originals vs reconstructions of a ``MultimodalAutoencoder``, one grid per modality.

    For each target modality t the grid ``f"{name}/{t}"`` has one column per example
    and the rows: the original; the reconstruction from all modalities; then the
    reconstruction from each modality alone (``model.translate``; for t itself the
    unimodal reconstruction, for the others the cross-modal translation).

    Args:
        logdir: the folder of the events file.
        inputs: a dict {modality: (n, ...) array} of a few examples (say 8), every modality.
        every: write after every ``every``-th epoch (epochs every, 2 * every, ...).
        name: the prefix of the image summaries' names.
    """

    def __init__(self, logdir, inputs, every: int = 1, name: str = "reconstructions"):
        super().__init__(logdir, every, name)
        if not isinstance(inputs, dict) or not inputs:
            raise TypeError("inputs must be a non-empty dict {modality: (n, ...) array}.")
        self.inputs = {key: np.asarray(value) for key, value in inputs.items()}
        rows = {key: len(value) for key, value in self.inputs.items()}
        if len(set(rows.values())) != 1 or not next(iter(rows.values())):
            raise ValueError(f"every modality in inputs needs the same number (> 0) of examples; got {rows}.")

    def _summarise(self, step: int) -> None:
        model = self.model
        if not all(hasattr(model, attr) for attr in ("reconstruct", "translate", "modalities")):
            raise TypeError(
                f"ReconstructionImagesCallback needs a MultimodalAutoencoder (reconstruct, "
                f"translate); got {type(model).__name__}."
            )
        modalities = list(model.modalities)
        missing = [m for m in modalities if m not in self.inputs]
        if missing:
            raise ValueError(f"ReconstructionImagesCallback: inputs lack the modalities {missing}.")
        from_all = model.reconstruct(self.inputs)
        alone = {source: model.translate(self.inputs, source=source, target=modalities) for source in modalities}
        for target in modalities:
            original = self.inputs[target]
            value_range = _data_range(original)
            rows = [original, from_all[target], *(alone[source][target] for source in modalities)]
            pictures = np.concatenate([to_pictures(row, value_range) for row in rows])
            grid = image_grid(pictures, rows=len(rows))
            tf.summary.image(
                f"{self.name}/{target}",
                grid[None],
                step=step,
                description=(
                    f"columns: {len(original)} examples; rows: original {target}, reconstructed from all "
                    f"modalities, then from {', then from '.join(m + ' alone' for m in modalities)}"
                ),
            )


# ----------------------------------------------------------------------------- projector
def _subsets(present) -> list | None:
    """None (all modalities), or a list of subsets (tuples of names)."""
    if present is None:
        return None
    if isinstance(present, str):
        return [(present,)]
    present = list(present)
    if not present:
        raise ValueError("present must name at least one modality (or be None for all).")
    if all(isinstance(item, str) for item in present):
        return [tuple(present)]
    if all(not isinstance(item, str) and len(item) for item in present):
        return [(item,) if isinstance(item, str) else tuple(item) for item in present]
    raise ValueError(
        f"present must be a modality name, a list of names (one subset) or a list of "
        f"non-empty subsets; got {present!r}."
    )


def _metadata_text(value) -> str:
    return str(value).replace("\t", " ").replace("\n", " ") or " "


class EmbeddingProjectorCallback(_TensorBoardCallback):
    """Shared codes of a ``MultimodalAutoencoder`` for TensorBoard's embedding projector.

    Every ``every`` epochs ``model.encode(inputs, present=...)`` is written to a
    checkpoint in ``logdir`` (the variable ``name``), with ``metadata.tsv`` (the labels)
    and ``projector_config.pbtxt`` beside it, plus a short text summary, because the
    projector only looks at run folders that hold an events file. Use one projector
    callback per ``logdir`` (the projector reads one config per run folder).

    Args:
        logdir: the folder of the checkpoint and events file.
        inputs: a dict {modality: (n, ...) array}.
        labels: one label per example, (n,); the metadata.
        present: None (codes from all modalities in ``inputs``), a name or list of names
            (one subset), or a list of subsets such as ``[["image"], ["audio"]]``: the
            codes of each subset are stacked into one embedding, and the metadata gets a
            header and a second column ``present`` (e.g. "image"), so the projector can
            colour points by label or by the modality they were encoded from.
        every: write after every ``every``-th epoch (epochs every, 2 * every, ...).
        name: the embedding variable's name.
    """

    def __init__(self, logdir, inputs, labels, present=None, every: int = 1, name: str = "shared_code"):
        super().__init__(logdir, every, name)
        if not isinstance(inputs, dict) or not inputs:
            raise TypeError("inputs must be a non-empty dict {modality: (n, ...) array}.")
        self.inputs = inputs
        rows = {key: len(value) for key, value in inputs.items()}
        if len(set(rows.values())) != 1:
            raise ValueError(f"every modality in inputs needs the same number of examples; got {rows}.")
        self.labels = np.asarray(labels)
        if self.labels.ndim != 1 or len(self.labels) != next(iter(rows.values())):
            raise ValueError(
                f"labels must be one label per example, shape ({next(iter(rows.values()))},); "
                f"got shape {self.labels.shape}."
            )
        self.subsets = _subsets(present)
        self._embedding = None
        self._manager = None

    @property
    def tensor_name(self) -> str:
        """The embedding's name in the checkpoint (as the projector config names it)."""
        return f"{self.name}/.ATTRIBUTES/VARIABLE_VALUE"

    def _codes(self) -> tuple:
        if self.subsets is None:
            return self.model.encode(self.inputs), None
        codes = [self.model.encode(self.inputs, present=list(subset)) for subset in self.subsets]
        return np.concatenate(codes), ["+".join(subset) for subset in self.subsets]

    def _summarise(self, step: int) -> None:
        from tensorboard.plugins import projector

        codes, subset_names = self._codes()
        if self._embedding is None:
            self._embedding = tf.Variable(codes, trainable=False, name=self.name)
            checkpoint = tf.train.Checkpoint(**{self.name: self._embedding})
            self._manager = tf.train.CheckpointManager(
                checkpoint, str(self.logdir), max_to_keep=1, checkpoint_name=f"{self.name}.ckpt"
            )
            self._write_metadata(subset_names)
            config = projector.ProjectorConfig()
            embedding = config.embeddings.add()
            embedding.tensor_name = self.tensor_name
            embedding.metadata_path = "metadata.tsv"
            projector.visualize_embeddings(str(self.logdir), config)
        else:
            self._embedding.assign(codes)
        self._manager.save(checkpoint_number=step)
        described = "all modalities" if subset_names is None else ", ".join(subset_names)
        tf.summary.text(
            f"{self.name}/projector",
            f"{len(codes)} shared codes of size {codes.shape[1]} "
            f"(encoded from {described}) at epoch {step}; see the PROJECTOR tab.",
            step=step,
        )

    def _write_metadata(self, subset_names) -> None:
        if subset_names is None:  # one column: the projector expects no header
            lines = [_metadata_text(label) for label in self.labels]
        else:
            lines = ["label\tpresent"] + [
                f"{_metadata_text(label)}\t{subset}" for subset in subset_names for label in self.labels
            ]
        (self.logdir / "metadata.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- confusion matrix
def _check_validation_data(validation_data):
    """(inputs, checked labels), or a tf.data.Dataset as it is."""
    if isinstance(validation_data, tf.data.Dataset):
        return validation_data
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError(
            "validation_data must be (inputs, labels) or a tf.data.Dataset of "
            f"(inputs, labels) batches; got {type(validation_data).__name__}"
        )
    inputs, labels = validation_data
    labels = as_class_labels(labels, name="validation labels")
    _check_rows(inputs, len(labels), "validation inputs")
    return inputs, labels


def _single_output(outputs) -> np.ndarray:
    if isinstance(outputs, (dict, list, tuple)):
        raise TypeError(
            "ConfusionMatrixCallback needs a model with one (batch, num_classes) "
            f"output; this model returns a {type(outputs).__name__}"
        )
    return np.asarray(outputs)


class ConfusionMatrixCallback(_TensorBoardCallback):
    """Writes the validation confusion matrix to TensorBoard as an image every few epochs.

    The model must output (batch, num_classes) probabilities or logits. The image (see
    ``xmodal_tf.metrics.confusion_matrix_image``: row shares shaded, counts in the cells)
    is logged at step = epoch index (0-based, like Keras' TensorBoard callback), with a
    description of the axes; ``last_matrix`` holds the latest counts.

        >>> callback = ConfusionMatrixCallback(os.path.join(run_dir, "validation"), (x_val, y_val))
        >>> model.fit(x, y, epochs=10, callbacks=[callback])

    Args:
        logdir: the folder of the events file, e.g. ``os.path.join(run_dir, "validation")``
            to sit beside the validation scalars of Keras' TensorBoard callback.
        validation_data: ``(inputs, labels)`` with inputs an array or a dict of arrays
            and labels (n,) class indices, or a ``tf.data.Dataset`` of
            ``(inputs, labels[, sample_weights])`` batches.
        class_names: optional names, one per model output column.
        every: write after every ``every``-th epoch (epochs every, 2 * every, ...).
        tag: the image's TensorBoard tag.
        batch_size: prediction batch size for array inputs.

    Raises:
        TypeError: validation_data that is neither a pair nor a Dataset; a model with
            several outputs (at the first write).
        ValueError: inputs and labels of different lengths, every or batch_size < 1,
            class_names of the wrong length (at the first write).
    """

    def __init__(
        self,
        logdir,
        validation_data,
        class_names=None,
        every: int = 1,
        *,
        tag: str = "confusion_matrix",
        batch_size: int = 256,
    ):
        super().__init__(logdir, every, tag)
        self.validation_data = _check_validation_data(validation_data)
        self.class_names = None if class_names is None else list(class_names)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.last_matrix = None

    @property
    def tag(self) -> str:
        """The image's TensorBoard tag (the base class' ``name``)."""
        return self.name

    @tag.setter
    def tag(self, value: str) -> None:
        self.name = value

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.write(epoch)  # Keras' 0-based epoch, as the TensorBoard callback's validation scalars

    def _summarise(self, step: int) -> None:
        labels, scores = self._labels_and_scores()
        self.last_matrix = confusion_matrix(labels, scores, num_classes=scores.shape[1])
        image = confusion_matrix_image(self.last_matrix, self.class_names)
        tf.summary.image(self.tag, image, step=step, description=self._description())

    def _labels_and_scores(self) -> tuple:
        if isinstance(self.validation_data, tf.data.Dataset):
            labels, scores = [], []
            for batch in self.validation_data:
                labels.append(np.asarray(batch[1]))
                scores.append(_single_output(self.model.predict_on_batch(batch[0])))
            return np.concatenate(labels), np.concatenate(scores)
        inputs, labels = self.validation_data
        outputs = self.model.predict(inputs, batch_size=self.batch_size, verbose=0)
        return labels, _single_output(outputs)

    def _description(self) -> str:
        names = self.class_names or []
        legend = ", ".join(f"{index} = {name}" for index, name in enumerate(names))
        return "Rows: true class; columns: predicted class. Shade: share of the row; numbers: counts." + (
            f" Classes: {legend}." if legend else ""
        )
