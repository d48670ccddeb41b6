"""xmodal_tf.plots: each figure's lines, axes and labels, PNG and image output, bad input."""

import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from xmodal_tf import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def labelled_lines(axes) -> dict:
    """{label: (x, y)} of the Axes' lines that have a legend label."""
    return {
        line.get_label(): (np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
        for line in axes.lines
        if not line.get_label().startswith("_")
    }


def legend_texts(axes) -> list:
    return [text.get_text() for text in axes.get_legend().get_texts()]


def png_size(path) -> tuple:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ----------------------------------------------------------------------------- line figures
def test_correlation_spectrum_one_line_per_key():
    figure = plots.correlation_spectrum({"train": [0.9, 0.6, 0.2], "test": [0.8, 0.4]}, title="CCA on digits")
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    axes = figure.axes[0]
    lines = labelled_lines(axes)
    assert list(lines) == ["train", "test"] and len(axes.lines) == 2
    np.testing.assert_array_equal(lines["train"][0], [1, 2, 3])  # components counted from 1
    np.testing.assert_allclose(lines["train"][1], [0.9, 0.6, 0.2])
    np.testing.assert_array_equal(lines["test"][0], [1, 2])
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == (
        "component",
        "canonical correlation",
        "CCA on digits",
    )
    assert legend_texts(axes) == ["train", "test"]
    low, high = axes.get_ylim()
    assert low <= 0.0 and high >= 1.0


def test_missing_modality_curves_sorted_with_error_bars():
    figure = plots.missing_modality_curves(
        [0.0, 0.5, 0.25],
        {"concat": [0.9, 0.5, 0.7], "tensor": [0.85, 0.6, 0.8]},
        errors={"concat": [0.01, 0.03, 0.02]},
        xlabel="share missing audio",
        title="fusion",
    )
    axes = figure.axes[0]
    lines = labelled_lines(axes)
    assert list(lines) == ["concat", "tensor"] and len(axes.lines) == 2
    np.testing.assert_allclose(lines["concat"][0], [0.0, 0.25, 0.5])  # drawn in increasing share
    np.testing.assert_allclose(lines["concat"][1], [0.9, 0.7, 0.5])
    np.testing.assert_allclose(lines["tensor"][1], [0.85, 0.8, 0.6])
    assert len(axes.collections) == 1  # error bars for "concat" only
    segments = axes.collections[0].get_segments()
    np.testing.assert_allclose([segment[:, 1] for segment in segments], [[0.89, 0.91], [0.68, 0.72], [0.47, 0.53]])
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == ("share missing audio", "accuracy", "fusion")
    assert legend_texts(axes) == ["concat", "tensor"]
    default = plots.missing_modality_curves([0.0, 0.5], {"a": [0.9, 0.8]}).axes[0]
    assert default.get_xlabel() == "share of examples missing the modality" and not default.collections


def test_label_fraction_curves_log_axis():
    figure = plots.label_fraction_curves(
        [0.01, 0.1, 1.0],
        {"scratch": [0.3, 0.6, 0.9], "fine_tune": [0.5, 0.7, 0.92]},
        errors={"scratch": [0.05, 0.02, 0.0], "fine_tune": [0.0, 0.0, 0.0]},
    )
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    lines = labelled_lines(axes)
    assert list(lines) == ["scratch", "fine_tune"]
    np.testing.assert_allclose(lines["fine_tune"][0], [0.01, 0.1, 1.0])
    np.testing.assert_allclose(lines["fine_tune"][1], [0.5, 0.7, 0.92])
    assert len(axes.collections) == 2
    assert axes.get_xlabel() == "fraction of training labels" and axes.get_ylabel() == "accuracy"
    figure.canvas.draw()
    assert [label.get_text() for label in axes.get_xticklabels()] == ["1%", "10%", "100%"]


def test_recall_at_k_one_line_per_direction():
    figure = plots.recall_at_k(
        [1, 5, 10], {"image -> text": [0.2, 0.5, 0.7], "text -> image": [0.1, 0.4, 0.6]}, title="retrieval"
    )
    axes = figure.axes[0]
    lines = labelled_lines(axes)
    assert list(lines) == ["image -> text", "text -> image"]
    np.testing.assert_array_equal(lines["text -> image"][0], [1, 5, 10])
    np.testing.assert_allclose(lines["text -> image"][1], [0.1, 0.4, 0.6])
    assert axes.get_xscale() == "linear" and axes.get_ylabel() == "recall@k" and axes.get_title() == "retrieval"
    assert [label.get_text() for label in axes.get_xticklabels()] == ["1", "5", "10"]
    wide = plots.recall_at_k([1, 10, 100], {"a": [0.1, 0.5, 0.9]}).axes[0]
    assert wide.get_xscale() == "log"


# ----------------------------------------------------------------------------- images
def test_image_grid_one_axes_per_image_scaled_per_grid():
    images = np.linspace(-2.0, 6.0, 7 * 4 * 3).reshape(7, 4, 3)  # float, outside [0, 1]
    figure = plots.image_grid(images, titles=[f"digit {i}" for i in range(7)], columns=3, title="samples")
    assert len(figure.axes) == 7
    assert [axes.get_title() for axes in figure.axes] == [f"digit {i}" for i in range(7)]
    assert figure.get_suptitle() == "samples"
    geometry = {axes.get_subplotspec().get_geometry()[:2] for axes in figure.axes}
    assert geometry == {(3, 3)}  # ceil(7 / 3) rows of 3
    shown = [axes.images[0].get_array() for axes in figure.axes]
    assert shown[0].min() == 0.0 and shown[-1].max() == 1.0  # one scale for the whole grid
    np.testing.assert_allclose(shown[3], (images[3] + 2.0) / 8.0, rtol=1e-6)
    assert all(not axes.axison for axes in figure.axes)


def test_image_grid_channels_and_uint8():
    rgb = np.zeros((2, 5, 6, 3), dtype=np.uint8)
    rgb[1] = 255
    figure = plots.image_grid(rgb)
    assert len(figure.axes) == 2
    np.testing.assert_allclose(figure.axes[1].images[0].get_array(), np.ones((5, 6, 3)))  # uint8 as 0..255
    np.testing.assert_allclose(figure.axes[0].images[0].get_array(), np.zeros((5, 6, 3)))
    single_channel = plots.image_grid(np.random.default_rng(0).random((3, 4, 4, 1)), columns=10)
    assert single_channel.axes[0].images[0].get_array().shape == (4, 4)  # drawn in grey
    assert {axes.get_subplotspec().get_geometry()[:2] for axes in single_channel.axes} == {(1, 3)}
    assert plots.image_grid(np.zeros((1, 3, 3, 4))).axes[0].images[0].get_array().shape == (3, 3, 4)


@pytest.mark.parametrize(
    "images, kwargs, error, match",
    [
        (np.zeros((4, 4)), {}, ValueError, r"\(n, H, W\) or \(n, H, W, C\)"),
        (np.zeros((2, 3, 4, 4, 1)), {}, ValueError, "got shape"),
        (np.zeros((2, 4, 4, 2)), {}, ValueError, "C in 1, 3 or 4"),
        (np.zeros((0, 4, 4)), {}, ValueError, "empty"),
        (np.array([[[0.0, np.nan]]]), {}, ValueError, "non-finite"),
        (np.array([[["a"]]]), {}, TypeError, "numbers"),
        (np.zeros((2, 4, 4)), {"titles": ["one"]}, ValueError, "titles has 1 entries but there are 2 images"),
        (np.zeros((2, 4, 4)), {"titles": "ab"}, TypeError, "titles must be a sequence of str"),
        (np.zeros((2, 4, 4)), {"titles": [1, 2]}, TypeError, "titles must hold str"),
        (np.zeros((2, 4, 4)), {"columns": 0}, ValueError, "columns must be an int >= 1"),
        (np.zeros((2, 4, 4)), {"columns": 2.0}, TypeError, "columns must be an int"),
        (np.zeros((2, 4, 4)), {"title": None}, TypeError, "title must be a str"),
    ],
)
def test_image_grid_bad_input(images, kwargs, error, match):
    with pytest.raises(error, match=match):
        plots.image_grid(images, **kwargs)


# ----------------------------------------------------------------------------- confusion matrix
def test_confusion_matrix_figure_shades_row_shares_and_prints_counts():
    counts = np.array([[8, 2, 0], [0, 5, 5], [0, 0, 0]])
    figure = plots.confusion_matrix_figure(counts, class_names=["cat", "dog", "bird"], title="validation")
    axes = figure.axes[0]
    assert len(figure.axes) == 2  # the matrix and its colour bar
    np.testing.assert_allclose(axes.images[0].get_array(), [[0.8, 0.2, 0.0], [0.0, 0.5, 0.5], [0, 0, 0]])
    assert [text.get_text() for text in axes.texts] == ["8", "2", "0", "0", "5", "5", "0", "0", "0"]
    assert [text.get_color() for text in axes.texts[:2]] == ["white", "black"]  # dark cell, light cell
    assert [label.get_text() for label in axes.get_xticklabels()] == ["cat", "dog", "bird"]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["cat", "dog", "bird"]
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == ("predicted class", "true class", "validation")
    fractional = plots.confusion_matrix_figure(np.array([[0.5, 1.25], [0.0, 2.0]])).axes[0]
    assert [text.get_text() for text in fractional.texts] == ["0.5", "1.25", "0", "2"]
    many = plots.confusion_matrix_figure(np.eye(25)).axes[0]
    assert not many.texts and many.images[0].get_array().shape == (25, 25)


@pytest.mark.parametrize(
    "matrix, class_names, error, match",
    [
        (np.ones((2, 3)), None, ValueError, "square"),
        (np.ones((0, 0)), None, ValueError, "square"),
        (-np.eye(2), None, ValueError, "non-negative"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), None, ValueError, "finite"),
        (np.array([["a", "b"], ["c", "d"]]), None, TypeError, "numbers"),
        (np.eye(3), ["a", "b"], ValueError, "3 names"),
        (np.eye(3), "abc", TypeError, "sequence of 3 names"),
    ],
)
def test_confusion_matrix_figure_bad_input(matrix, class_names, error, match):
    with pytest.raises(error, match=match):
        plots.confusion_matrix_figure(matrix, class_names=class_names)


# ----------------------------------------------------------------------------- shared checks
LINE_FIGURES = {
    "correlation_spectrum": lambda series: plots.correlation_spectrum(series),
    "missing_modality_curves": lambda series: plots.missing_modality_curves([0.0, 0.5], series),
    "label_fraction_curves": lambda series: plots.label_fraction_curves([0.1, 1.0], series),
    "recall_at_k": lambda series: plots.recall_at_k([1, 5], series),
}


@pytest.mark.parametrize("draw", LINE_FIGURES.values(), ids=LINE_FIGURES.keys())
@pytest.mark.parametrize(
    "series, error, match",
    [
        ({}, ValueError, "is empty"),
        ([0.5, 0.6], TypeError, "must be a mapping"),
        ({1: [0.5, 0.6]}, TypeError, "keys must be str"),
        ({"a": []}, ValueError, r"\['a'\] is empty"),
        ({"a": [0.5, np.nan]}, ValueError, r"\['a'\] has non-finite values \(NaN or inf\)"),
        ({"a": [[0.5, 0.6]]}, ValueError, "one-dimensional"),
        ({"a": ["x", "y"]}, TypeError, "sequence of numbers"),
        ({"a": "xy"}, TypeError, "sequence of numbers"),
    ],
)
def test_line_figures_check_their_series(draw, series, error, match):
    with pytest.raises(error, match=match):
        draw(series)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: plots.missing_modality_curves([0.0, 0.5], {"a": [0.9]}),
            ValueError,
            r"accuracies\['a'\] has 1 values but shares has 2",
        ),
        (lambda: plots.missing_modality_curves([], {"a": []}), ValueError, "shares is empty"),
        (lambda: plots.missing_modality_curves([0.0, np.inf], {"a": [0.9, 0.8]}), ValueError, "shares has non-finite"),
        (
            lambda: plots.missing_modality_curves([0.0, 0.5], {"a": [0.9, 0.8]}, errors={"b": [0.1, 0.1]}),
            ValueError,
            r"errors has labels \['b'\] without a curve",
        ),
        (
            lambda: plots.missing_modality_curves([0.0, 0.5], {"a": [0.9, 0.8]}, errors={"a": [0.1]}),
            ValueError,
            r"errors\['a'\] has 1 values but shares has 2",
        ),
        (
            lambda: plots.missing_modality_curves([0.0, 0.5], {"a": [0.9, 0.8]}, errors={"a": [0.1, -0.1]}),
            ValueError,
            "negative",
        ),
        (
            lambda: plots.missing_modality_curves([0.0, 0.5], {"a": [0.9, 0.8]}, xlabel=3),
            TypeError,
            "xlabel must be a str",
        ),
        (lambda: plots.label_fraction_curves([0.0, 1.0], {"a": [0.9, 0.8]}), ValueError, r"\(0, 1\]"),
        (lambda: plots.label_fraction_curves([0.5, 2.0], {"a": [0.9, 0.8]}), ValueError, r"\(0, 1\] .*; got 2"),
        (lambda: plots.label_fraction_curves([0.5, 1.0], {"a": [0.9, 0.8, 0.7]}), ValueError, "but fractions has 2"),
        (lambda: plots.recall_at_k([1, 0], {"a": [0.1, 0.2]}), ValueError, "each k in ks must be an int >= 1"),
        (lambda: plots.recall_at_k([1, 2.5], {"a": [0.1, 0.2]}), TypeError, "each k in ks must be an int"),
        (lambda: plots.recall_at_k([5, 5], {"a": [0.1, 0.2]}), ValueError, "distinct"),
        (lambda: plots.recall_at_k([], {"a": []}), ValueError, "ks is empty"),
        (lambda: plots.recall_at_k(5, {"a": [0.1]}), TypeError, "ks must be a sequence"),
        (lambda: plots.recall_at_k([1, 5], {"a": [0.1]}), ValueError, "has 1 values but ks has 2"),
        (lambda: plots.correlation_spectrum({"a": [0.5]}, title=1), TypeError, "title must be a str"),
    ],
)
def test_figures_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- output
def test_figure_to_image_shape_and_dtype():
    figure = plots.correlation_spectrum({"test": [0.9, 0.5]})
    image = plots.figure_to_image(figure)
    assert image.dtype == np.uint8 and image.shape == (1, 400, 640, 4)  # 6.4 x 4 inches at 100 dpi
    assert image[..., 3].min() == 255  # an opaque figure
    assert len(np.unique(image[0, ..., :3].reshape(-1, 3), axis=0)) > 10  # lines and text, not a blank page
    with pytest.raises(TypeError, match="figure must be a matplotlib.figure.Figure"):
        plots.figure_to_image(np.zeros((4, 4)))


def test_figure_to_image_gives_a_figure_its_own_canvas_back():
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    figure = plots.recall_at_k([1, 5], {"a": [0.2, 0.6]})
    canvas = FigureCanvasSVG(figure)
    assert plots.figure_to_image(figure).shape == (1, 400, 640, 4)
    assert figure.canvas is canvas


def test_save_figure_writes_a_png_of_the_figures_size(tmp_path):
    figure = plots.image_grid(np.zeros((3, 4, 4)), columns=3)
    height, width = plots.figure_to_image(figure).shape[1:3]
    path = plots.save_figure(figure, str(tmp_path / "new" / "grid.png"))  # the folder is created
    assert path == tmp_path / "new" / "grid.png"
    assert png_size(path) == (width, height) == (360, 120)
    assert os.listdir(tmp_path / "new") == ["grid.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match=r"path must end in \.png"):
        plots.save_figure(figure, tmp_path / "grid.jpg")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        plots.save_figure(figure, 3)
    with pytest.raises(TypeError, match="figure must be a matplotlib.figure.Figure"):
        plots.save_figure("figure", tmp_path / "grid.png")


def test_save_figure_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "curve.png"
    path.write_bytes(b"the previous figure")
    figure = plots.correlation_spectrum({"a": [0.5]})
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda source, target: replaced.append(source) or real_replace(source, target))

    def half_a_png(stream, **kwargs):
        stream.write(PNG_SIGNATURE)
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(figure, "savefig", half_a_png)
    with pytest.raises(KeyboardInterrupt):
        plots.save_figure(figure, path)
    assert path.read_bytes() == b"the previous figure" and os.listdir(tmp_path) == ["curve.png"]
    assert not replaced
    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", lambda source, target: replaced.append(source) or real_replace(source, target))
    plots.save_figure(figure, path)
    assert len(replaced) == 1 and os.path.dirname(replaced[0]) == str(tmp_path)  # written beside, then renamed
    assert png_size(path) == (640, 400) and os.listdir(tmp_path) == ["curve.png"]


def test_save_figure_closes_a_pyplot_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")  # never a window, even where a display exists
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    assert plt.fignum_exists(figure.number)
    plots.save_figure(figure, tmp_path / "pyplot.png")
    assert not plt.fignum_exists(figure.number)
    assert png_size(tmp_path / "pyplot.png")[0] > 0


def test_importing_plots_and_metrics_loads_neither_matplotlib_nor_tensorflow():
    code = (
        "import sys, xmodal_tf.plots, xmodal_tf.metrics; "
        "print(sorted(name for name in ('matplotlib', 'tensorflow', 'keras') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_grouped_bars_one_container_per_series():
    from xmodal_tf import plots

    figure = plots.grouped_bars(
        ["image -> audio", "audio -> image"],
        {"cca": [0.8, 0.7], "deepcca": [0.99, 0.98]},
        errors={"deepcca": [0.01, 0.02]},
        ylabel="accuracy",
    )
    (axes,) = figure.axes
    assert len(axes.containers) >= 2
    heights = sorted(round(patch.get_height(), 3) for patch in axes.patches)
    assert heights == [0.7, 0.8, 0.98, 0.99]
    assert [label.get_text() for label in axes.get_xticklabels()] == ["image -> audio", "audio -> image"]
    with pytest.raises(ValueError, match="groups"):
        plots.grouped_bars(["a"], {"cca": [0.1, 0.2]})
    with pytest.raises(TypeError, match="groups"):
        plots.grouped_bars("ab", {"cca": [0.1, 0.2]})
