"""Checks that a run directory holds an experiment's key figure: the PNG and its TensorBoard image."""

import pathlib
import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: pathlib.Path) -> tuple:
    """(width, height) in pixels of a PNG file; AssertionError if it is no PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG (it starts with {data[:8]!r})"
    assert data[12:16] == b"IHDR", f"{path} has no IHDR chunk first"
    return struct.unpack(">II", data[16:24])


def assert_figure(logdir: pathlib.Path, name: str) -> tuple:
    """``<logdir>/<name>.png`` is a PNG, and the events in ``logdir`` hold one TensorBoard
    image ``test_details/<name>`` at step 1 of the same size. Returns (width, height)."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    width, height = png_size(logdir / f"{name}.png")
    accumulator = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    accumulator.Reload()
    events = accumulator.Tensors(f"test_details/{name}")
    assert [event.step for event in events] == [1]
    assert accumulator.SummaryMetadata(f"test_details/{name}").plugin_data.plugin_name == "images"
    # An image summary is the strings [width, height, encoded image].
    stored = tf.make_ndarray(events[0].tensor_proto)
    assert (int(stored[0]), int(stored[1])) == (width, height)
    assert stored[2][:8] == PNG_SIGNATURE
    return width, height
