"""Files written so that a kill at any moment leaves the old file or the new one, never half of one; and the one
naming of a run's folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write `path` through `write(tmp_path)`, flush the bytes to disk, then rename over `path`.

    The temporary file sits beside `path` (a rename within one folder is atomic) and keeps its suffix, which
    some writers insist on (Keras' `.keras`, numpy's `.npz`); a failed write leaves no temporary file behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """`text` as a UTF-8 file, atomically."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj) -> Path:
    """`obj` as indented JSON, atomically."""
    return write_text(path, json.dumps(obj, indent=1) + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_run_folder(parent: Path, suffix: str = "") -> Path:
    """A free path `parent/<YYYYmmdd-HHMMSS><suffix>` for a new run (not created): `-1` appended while taken."""
    folder = Path(parent) / (time.strftime("%Y%m%d-%H%M%S") + suffix)
    while folder.exists():  # two runs in one second
        folder = folder.with_name(folder.name + "-1")
    return folder
