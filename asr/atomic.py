"""Atomic file writes: a killed process leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from asr.errors import InputError


def make_dirs(folder: str | Path) -> Path:
    """mkdir -p, with a one-line InputError instead of a traceback when the user's path cannot be made."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{folder}: cannot create this folder ({e.strerror or e})") from None
    return folder


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb"):
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`.

    The temporary file lives in the same folder so that the rename stays on one file system (and
    so is atomic). On any exception the temporary file is removed and `path` is left untouched.
    """
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # a read-only or missing folder is the user's to fix: say so in one line
        raise InputError(f"{path}: cannot write here ({e.strerror or e})") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # disk full, quota, I/O error: the old file stays; say which file in one line
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{path}: could not write it ({e.strerror or e}); the previous version, if any, "
                         "is left as it was") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)
