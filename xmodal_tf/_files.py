"""Small files written so that a kill never leaves half of one: a temporary file beside
the target, renamed into place (``os.replace`` is atomic on POSIX and Windows)."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

__all__ = ["write_bytes_atomically", "write_json_atomically"]


def write_json_atomically(path: pathlib.Path, payload) -> None:
    """Write ``payload`` as indented, key-sorted JSON to ``path``, atomically.

    Args:
        path: the target file.
        payload: JSON-serialisable data; NumPy scalars and arrays are written as numbers
            and lists.

    Raises:
        TypeError: ``payload`` holds something JSON cannot represent.
    """
    text = json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n"
    write_bytes_atomically(path, text.encode("utf-8"))


def write_bytes_atomically(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    The data go to a temporary file beside ``path`` that is renamed into place, so a
    killed run never leaves a half-written file. The file gets the usual permissions
    (0666 less the umask), not mkstemp's 0600.

    Args:
        path: the target file; its folder must exist.
        data: the bytes to write.
    """
    path = pathlib.Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_default(value):
    """JSON for NumPy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
