"""Figures of results, drawn with matplotlib: one function per figure, each returning a Figure.

    >>> from xmodal_tf import plots
    >>> figure = plots.correlation_spectrum({"train": train_corr, "test": test_corr})
    >>> plots.save_figure(figure, run_dir / "correlation_spectrum.png")   # PNG, atomically
    >>> tf.summary.image("correlation_spectrum", plots.figure_to_image(figure), step=0)

Figures are ``matplotlib.figure.Figure`` objects on an Agg canvas, made without pyplot:
nothing opens a window or touches pyplot's global state, and they work on machines
without a display. matplotlib is imported inside the functions, so importing this module
loads NumPy only. Every function checks its input first (TypeError for a wrong type,
ValueError for a wrong value: empty or mismatched series, NaN or inf, a wrong image rank).
"""

from __future__ import annotations

import io
import math
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from xmodal_tf._files import write_bytes_atomically
from xmodal_tf._validation import check_finite_rows, check_positive_int, describe

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "confusion_matrix_figure",
    "correlation_spectrum",
    "figure_to_image",
    "image_grid",
    "label_fraction_curves",
    "missing_modality_curves",
    "recall_at_k",
    "save_figure",
]

_SIZE = (6.4, 4.0)  # inches: 640 x 400 pixels at _DPI
_DPI = 100
_TILE = 1.2  # inches per image in image_grid
_MAX_ANNOTATED_CLASSES = 20  # confusion matrices with more classes get no counts in the cells
_MAX_LABELLED_CLASSES = 50  # ... and more than this no class name on every tick
_FIX = "drop or fill them before plotting"


# ----------------------------------------------------------------------------- checks
def _check_title(title) -> str:
    if not isinstance(title, str):
        raise TypeError(f"title must be a str; got {describe(title)}")
    return title


def _check_values(values, name: str, *, length: int | None = None, against: str = "") -> np.ndarray:
    """``values`` as a non-empty, finite, 1-D float64 array (of ``length`` entries, like ``against``)."""
    if isinstance(values, (str, bytes, Mapping)):
        raise TypeError(f"{name} must be a sequence of numbers; got {describe(values)}")
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a sequence of numbers; got {describe(values)} of dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one number per point); got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty; give at least one value")
    if length is not None and len(array) != length:
        raise ValueError(f"{name} has {len(array)} values but {against} has {length}; give one per entry")
    check_finite_rows(array, name, fix=_FIX)
    return array.astype(np.float64)


def _check_series(series, name: str, *, length: int | None = None, against: str = "") -> dict:
    """``{label: checked values}`` from a non-empty mapping with string keys."""
    if not isinstance(series, Mapping):
        raise TypeError(
            f"{name} must be a mapping {{label: values}}, e.g. {{'train': [...], 'test': [...]}}; "
            f"got {describe(series)}"
        )
    if not series:
        raise ValueError(f"{name} is empty; give at least one {{label: values}} entry")
    checked = {}
    for label, values in series.items():
        if not isinstance(label, str):
            raise TypeError(f"{name} keys must be str (the legend's labels); got {label!r}")
        checked[label] = _check_values(values, f"{name}[{label!r}]", length=length, against=against)
    return checked


def _check_errors(errors, curves: dict, length: int, against: str) -> dict:
    """Checked ``{label: non-negative error}`` for a subset of the curves' labels."""
    if errors is None:
        return {}
    checked = _check_series(errors, "errors", length=length, against=against)
    unknown = sorted(set(checked) - set(curves))
    if unknown:
        raise ValueError(f"errors has labels {unknown} without a curve; use labels of the curves: {sorted(curves)}")
    for label, values in checked.items():
        if values.min() < 0:
            raise ValueError(
                f"errors[{label!r}] has a negative value ({values.min():g}); "
                "error bars are half-widths, >= 0 (e.g. a standard deviation)"
            )
    return checked


def _check_figure(figure) -> None:
    from matplotlib.figure import Figure

    if not isinstance(figure, Figure):
        raise TypeError(f"figure must be a matplotlib.figure.Figure; got {describe(figure)}")


# ----------------------------------------------------------------------------- output
def save_figure(figure: Figure, path) -> pathlib.Path:
    """Write ``figure`` as a PNG, atomically, and close it.

    The PNG goes to a temporary file beside ``path`` that is renamed into place
    (``os.replace``), so a kill never leaves half an image; missing parent folders are
    created. Closing removes the figure from pyplot if pyplot manages it; a figure made
    here (not by pyplot) stays usable, e.g. for ``figure_to_image``.

    Args:
        figure: a ``matplotlib.figure.Figure``.
        path: the target file, ending in ``.png``.

    Returns:
        The path written, as a ``pathlib.Path``.

    Raises:
        TypeError: figure is not a Figure, or path is not a str or os.PathLike.
        ValueError: path does not end in ``.png``.
    """
    _check_figure(figure)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {describe(path)}")
    path = pathlib.Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png (save_figure writes PNG); got {str(path)!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi="figure")
        write_bytes_atomically(path, png.getvalue())
    finally:
        _close(figure)
    return path


def _close(figure: Figure) -> None:
    # Only pyplot keeps figures alive; importing it here would pick a GUI backend.
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)


def figure_to_image(figure: Figure) -> np.ndarray:
    """The figure rendered by Agg as a batch of one image for ``tf.summary.image``.

    Args:
        figure: a ``matplotlib.figure.Figure``; it is not closed.

    Returns:
        (1, height, width, 4) uint8 RGBA pixels, the size ``save_figure`` writes.

    Raises:
        TypeError: figure is not a Figure.
    """
    _check_figure(figure)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    original = figure.canvas
    canvas = original if isinstance(original, FigureCanvasAgg) else FigureCanvasAgg(figure)
    try:
        canvas.draw()
        pixels = np.array(canvas.buffer_rgba(), dtype=np.uint8)
    finally:
        if canvas is not original:  # give a pyplot figure its own canvas back
            figure.set_canvas(original)
    return pixels[None]


# ----------------------------------------------------------------------------- figures
def _new_figure(size: tuple = _SIZE, *, layout: str | None = "constrained") -> Figure:
    """An empty Figure on its own Agg canvas (no pyplot, no window)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=_DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _one_axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.set(xlabel=xlabel, ylabel=ylabel, title=_check_title(title))
    axes.grid(True, alpha=0.3)
    return figure, axes


def _draw_curves(axes: Axes, x: np.ndarray, curves: dict, errors: dict) -> None:
    """One line with markers per curve, sorted by x; vertical error bars where given."""
    order = np.argsort(x, kind="stable")
    for label, y in curves.items():
        (line,) = axes.plot(x[order], y[order], marker="o", label=label)
        if label in errors:  # capsize=0: the bars are one LineCollection, axes.lines stays one per curve
            axes.errorbar(
                x[order],
                y[order],
                yerr=errors[label][order],
                fmt="none",
                ecolor=line.get_color(),
                capsize=0,
                elinewidth=1.2,
            )
    axes.legend()


def correlation_spectrum(correlations: Mapping[str, Sequence[float]], *, title: str = "") -> Figure:
    """Canonical correlation against component index, one line per key.

    Args:
        correlations: ``{label: correlations}``, e.g. ``{"train": [...], "test": [...]}``;
            each a non-empty sequence of finite numbers, first component first (lengths may differ).
        title: the figure's title.

    Returns:
        A Figure with one Axes: x = component 1, 2, ..., y = canonical correlation.

    Raises:
        TypeError: not a mapping of str to sequences of numbers, or a non-str title.
        ValueError: an empty mapping or series, or NaN / inf values.
    """
    series = _check_series(correlations, "correlations")
    figure, axes = _one_axes(title, "component", "canonical correlation")
    for label, values in series.items():
        axes.plot(np.arange(1, len(values) + 1), values, marker="o", label=label)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    low = min(values.min() for values in series.values())
    high = max(values.max() for values in series.values())
    axes.set_ylim(min(0.0, low) - 0.02, max(1.0, high) + 0.02)  # correlations live in [0, 1]
    axes.legend()
    return figure


def missing_modality_curves(
    shares: Sequence[float],
    accuracies: Mapping[str, Sequence[float]],
    *,
    errors: Mapping[str, Sequence[float]] | None = None,
    xlabel: str = "share of examples missing the modality",
    title: str = "",
) -> Figure:
    """Accuracy against the share of examples missing a modality, one line per classifier.

    Args:
        shares: (m,) the missing shares (x), finite; drawn in increasing order.
        accuracies: ``{classifier: (m,) accuracies}``, one per share.
        errors: optional ``{classifier: (m,) error-bar half-widths}`` (e.g. the standard
            deviation over seeds) for some of the classifiers.
        xlabel: the x axis' label (e.g. which modality goes missing).
        title: the figure's title.

    Returns:
        A Figure with one Axes and one line per classifier (error bars as vertical lines).

    Raises:
        TypeError: wrong types (see ``correlation_spectrum``), or a non-str xlabel.
        ValueError: empty input, lengths that differ from ``shares``, NaN / inf values,
            negative errors, or errors for a classifier without a curve.
    """
    x = _check_values(shares, "shares")
    curves = _check_series(accuracies, "accuracies", length=len(x), against="shares")
    bars = _check_errors(errors, curves, len(x), "shares")
    if not isinstance(xlabel, str):
        raise TypeError(f"xlabel must be a str; got {describe(xlabel)}")
    figure, axes = _one_axes(title, xlabel, "accuracy")
    _draw_curves(axes, x, curves, bars)
    return figure


def grouped_bars(
    groups: Sequence[str],
    values: Mapping[str, Sequence[float]],
    *,
    errors: Mapping[str, Sequence[float]] | None = None,
    ylabel: str = "",
    title: str = "",
) -> Figure:
    """Bars per group, one bar per series in each group (e.g. each method's accuracy per direction).

    Args:
        groups: (m,) the groups' names, drawn along x in this order.
        values: ``{series: (m,) values}``, one value per group; a bar each, side by side.
        errors: optional ``{series: (m,) error-bar half-widths}`` for some of the series.
        ylabel: the y axis' label.
        title: the figure's title.

    Returns:
        A Figure with one Axes holding a bar container per series.

    Raises:
        TypeError: groups not a sequence of str, wrong types as in ``correlation_spectrum``,
            or a non-str ylabel.
        ValueError: no groups, lengths that differ from ``groups``, NaN / inf values,
            negative errors, or errors for a series without bars.
    """
    if isinstance(groups, (str, bytes)) or not all(isinstance(group, str) for group in groups):
        raise TypeError(f"groups must be a sequence of str (the groups' names); got {describe(groups)}")
    if not groups:
        raise ValueError("groups is empty; give at least one group name")
    series = _check_series(values, "values", length=len(groups), against="groups")
    bars = _check_errors(errors, series, len(groups), "groups")
    if not isinstance(ylabel, str):
        raise TypeError(f"ylabel must be a str; got {describe(ylabel)}")
    figure, axes = _one_axes(title, "", ylabel)
    width = 0.8 / len(series)
    centres = np.arange(len(groups), dtype=np.float64)
    for index, (label, heights) in enumerate(series.items()):
        offsets = centres - 0.4 + width * (index + 0.5)
        axes.bar(offsets, heights, width, yerr=bars.get(label), label=label, capsize=2)
    axes.set_xticks(centres, labels=list(groups))
    axes.legend(fontsize="small")
    return figure


def label_fraction_curves(
    fractions: Sequence[float],
    accuracies: Mapping[str, Sequence[float]],
    *,
    errors: Mapping[str, Sequence[float]] | None = None,
    title: str = "",
) -> Figure:
    """Accuracy against the fraction of training labels (log x axis), one line per method.

    Args:
        fractions: (m,) label fractions in (0, 1], e.g. (0.01, 0.05, 0.1, 1.0).
        accuracies: ``{method: (m,) accuracies}``, one per fraction.
        errors: optional ``{method: (m,) error-bar half-widths}`` for some methods.
        title: the figure's title.

    Returns:
        A Figure with one Axes (log x) and one line per method.

    Raises:
        TypeError: wrong types (see ``correlation_spectrum``).
        ValueError: as ``missing_modality_curves``, or a fraction outside (0, 1].
    """
    x = _check_values(fractions, "fractions")
    outside = x[(x <= 0) | (x > 1)]
    if outside.size:
        raise ValueError(f"fractions must lie in (0, 1] (shares of the labels, on a log axis); got {outside[0]:g}")
    curves = _check_series(accuracies, "accuracies", length=len(x), against="fractions")
    bars = _check_errors(errors, curves, len(x), "fractions")
    figure, axes = _one_axes(title, "fraction of training labels", "accuracy")
    axes.set_xscale("log")
    _draw_curves(axes, x, curves, bars)
    from matplotlib.ticker import FuncFormatter

    axes.set_xticks(np.unique(x))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{100 * value:g}%"))
    axes.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    return figure


def recall_at_k(ks: Sequence[int], recalls: Mapping[str, Sequence[float]], *, title: str = "") -> Figure:
    """Recall@k against k, one line per retrieval direction.

    Args:
        ks: (m,) distinct positive ints, e.g. (1, 5, 10); a log x axis when they span
            more than a factor 20.
        recalls: ``{direction: (m,) recall@k}``, e.g. ``{"image -> text": [...], ...}``.
        title: the figure's title.

    Returns:
        A Figure with one Axes and one line per direction.

    Raises:
        TypeError: a non-integer k, or wrong types (see ``correlation_spectrum``).
        ValueError: k < 1, repeated ks, empty input, mismatched lengths, NaN / inf.
    """
    if isinstance(ks, (str, bytes, Mapping)) or np.ndim(ks) != 1:
        raise TypeError(f"ks must be a sequence of positive ints; got {describe(ks)}")
    x = np.array([check_positive_int(k, "each k in ks") for k in ks], dtype=np.int64)
    if x.size == 0:
        raise ValueError("ks is empty; give at least one k")
    if len(np.unique(x)) != len(x):
        raise ValueError(f"ks must be distinct; got {list(map(int, x))}")
    curves = _check_series(recalls, "recalls", length=len(x), against="ks")
    figure, axes = _one_axes(title, "k", "recall@k")
    if x.max() > 20 * x.min():
        axes.set_xscale("log")
    _draw_curves(axes, x.astype(np.float64), curves, {})
    from matplotlib.ticker import NullFormatter

    axes.set_xticks(np.sort(x), labels=[str(k) for k in np.sort(x)])
    axes.xaxis.set_minor_formatter(NullFormatter())
    return figure


# ----------------------------------------------------------------------------- images
def _check_images(images) -> np.ndarray:
    """(n, H, W) or (n, H, W, C) images as float32 in [0, 1], C in 3 or 4 kept, C = 1 dropped."""
    if isinstance(images, (str, bytes, Mapping)):
        raise TypeError(f"images must be an array (n, H, W) or (n, H, W, C); got {describe(images)}")
    array = np.asarray(images)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"images must hold numbers; got {describe(images)} of dtype {array.dtype}")
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3, 4)):
        raise ValueError(
            f"images must be (n, H, W) or (n, H, W, C) with C in 1, 3 or 4; got shape "
            f"{array.shape} (channels first? move the channel axis last)"
        )
    if 0 in array.shape:
        raise ValueError(f"images is empty (shape {array.shape}); give at least one image of at least 1 x 1 pixels")
    check_finite_rows(array, "images", fix=_FIX)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    # One scale for the whole grid, so images stay comparable; a constant grid is shown as is.
    return (array - low) / (high - low) if high > low else np.clip(array, 0.0, 1.0)


def _check_titles(titles, count: int) -> list[str] | None:
    if titles is None:
        return None
    if isinstance(titles, (str, bytes)) or not isinstance(titles, Sequence):
        raise TypeError(f"titles must be a sequence of str, one per image; got {describe(titles)}")
    if len(titles) != count:
        raise ValueError(f"titles has {len(titles)} entries but there are {count} images; give one per image")
    if not all(isinstance(text, str) for text in titles):
        raise TypeError(f"titles must hold str; got {describe(list(titles))}")
    return list(titles)


def image_grid(images, *, titles: Sequence[str] | None = None, columns: int = 10, title: str = "") -> Figure:
    """Images in a grid, row by row, one Axes per image (no ticks).

    Args:
        images: (n, H, W) or (n, H, W, C) with C in 1, 3, 4 (grey, RGB, RGBA). uint8 is
            drawn as 0..255; anything else is scaled to [0, 1] with the whole grid's minimum
            and maximum (one scale for all, so images stay comparable).
        titles: optional n short titles, one above each image (e.g. the class).
        columns: images per row; the grid has ceil(n / columns) rows.
        title: the figure's title.

    Returns:
        A Figure with n Axes, each showing one image.

    Raises:
        TypeError: non-numeric images, titles that are not str, a non-int columns.
        ValueError: a wrong rank or channel count, no images, NaN / inf pixels, not n
            titles, columns < 1.
    """
    pictures = _check_images(images)
    names = _check_titles(titles, len(pictures))
    columns = min(check_positive_int(columns, "columns"), len(pictures))
    rows = math.ceil(len(pictures) / columns)
    title = _check_title(title)
    heading = 0.4 if title else 0.0
    # Fixed margins instead of the constrained layout, which is slow for a hundred Axes.
    figure = _new_figure((columns * _TILE, rows * _TILE + heading), layout=None)
    figure.subplots_adjust(
        left=0.01,
        right=0.99,
        bottom=0.01,
        top=1 - (heading + 0.05) / (rows * _TILE + heading),
        wspace=0.05,
        hspace=0.3 if names else 0.05,
    )
    for index, picture in enumerate(pictures):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axes.set_axis_off()
        if names:
            axes.set_title(names[index], fontsize=8)
    if title:
        figure.suptitle(title)
    return figure


# ----------------------------------------------------------------------------- confusion matrix
def _check_confusion_matrix(matrix) -> np.ndarray:
    array = np.asarray(matrix)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"matrix must hold numbers (counts); got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise ValueError(
            f"matrix must be a square (num_classes, num_classes) confusion matrix; got shape {array.shape}"
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)) or array.min() < 0:
        raise ValueError("matrix must hold finite, non-negative counts")
    return array


def _class_names(num_classes: int, class_names) -> list[str]:
    if class_names is None:
        return [str(index) for index in range(num_classes)]
    if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__len__"):
        raise TypeError(
            f"class_names must be a sequence of {num_classes} names, one per class; got {describe(class_names)}"
        )
    if len(class_names) != num_classes:
        raise ValueError(f"class_names must be a sequence of {num_classes} names, one per class; got {class_names!r}")
    return [str(name) for name in class_names]


def _count_text(value: float) -> str:
    return str(int(value)) if value == round(value) else f"{value:.3g}"


def confusion_matrix_figure(matrix, *, class_names=None, title: str = "") -> Figure:
    """A confusion matrix as a heat map of row shares, with the counts in the cells.

    Each cell is shaded by its share of the row (the share of the true class predicted
    as that column, white 0 to dark blue 1), so rare classes are as readable as common
    ones; up to 20 classes the cells also show the counts.

    Args:
        matrix: (C, C) non-negative counts, row = true class, column = predicted class.
        class_names: optional C names for the ticks (class indices by default; with more
            than 50 classes only some ticks are labelled).
        title: the figure's title.

    Returns:
        A Figure with the matrix's Axes (its image holds the row shares) and a colour bar.

    Raises:
        TypeError: a matrix that does not hold numbers, class_names that is not a sequence.
        ValueError: a non-square, empty, negative or non-finite matrix, or not C names.
    """
    counts = _check_confusion_matrix(matrix)
    size = len(counts)
    names = _class_names(size, class_names)
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    side = float(np.clip(0.35 * size + 2.5, 4.0, 12.0))
    figure = _new_figure((side + 1.2, side))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, label="share of the true class")
    axes.set(xlabel="predicted class", ylabel="true class", title=_check_title(title))
    if size <= _MAX_LABELLED_CLASSES:
        rotation = 90 if max(map(len, names)) > 3 else 0
        axes.set_xticks(range(size), labels=names, rotation=rotation)
        axes.set_yticks(range(size), labels=names)
    if size <= _MAX_ANNOTATED_CLASSES:
        fontsize = 10 if size <= 10 else 7
        for (row, column), count in np.ndenumerate(counts):
            colour = "white" if shares[row, column] > 0.5 else "black"
            axes.text(column, row, _count_text(count), ha="center", va="center", color=colour, fontsize=fontsize)
    return figure
