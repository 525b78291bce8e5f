"""Atomic files: a reader sees either the old file or the complete new one, never half of either.

`atomic_write_text` writes to a temporary file in the destination's folder, fsyncs it and renames it over the
destination with `os.replace`; `atomic_write_json` does the same for JSON; `fsync_path` makes a rename durable.
Checkpoints, `results.json`, sample dumps, the shared results table and the report all go through here.

JSON written here is always valid for any reader: it has no NaN or infinity, so non-finite floats become the
strings `"nan"`, `"inf"` and `"-inf"`, and values JSON cannot encode (paths, numpy or torch scalars) become
Python numbers via `.item()` where they have it, else `str`. `dumps` is that encoder on one line.

A leaf module: it imports nothing from `rft`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see either the old file or the complete new one.

    The text goes to a temporary file in the same directory (same filesystem, so the rename is atomic), is
    fsynced, and then replaces `path` with `os.replace`. On any error the temporary file is removed and
    `path` is left untouched. Parent directories are created.

    Args:
        path: Destination file.
        text: Full new content, written as UTF-8.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; results are meant to be read by others, so keep the old mode or 0644.
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_path(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON with `atomic_write_text`.

    Non-finite floats become the strings `"nan"`, `"inf"`, `"-inf"`; objects JSON cannot encode (paths,
    numpy or torch scalars) are converted with `.item()` where they have it, else `str`.

    Args:
        path: Destination file.
        obj: JSON-like data.
    """
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory to make a rename in it durable; best effort, since some filesystems refuse
    to open directories."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def dumps(obj: Any, indent: int | None = None) -> str:
    """`obj` as strict JSON text (see `_jsonable`): valid for every reader, non-ASCII kept as is."""
    return json.dumps(_jsonable(obj), ensure_ascii=False, indent=indent, allow_nan=False)


def _jsonable(value: Any) -> Any:
    """`value` with non-finite floats as strings and 0-d tensors / numpy scalars as Python numbers."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "item"):
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            return _jsonable(value.item())
    return str(value)
