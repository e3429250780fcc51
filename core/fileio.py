"""Atomic file writes: a temporary file in the target's folder, then a rename, so a reader
(or a crash) never sees half a file."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import: setting and restoring it per write would race with other threads.
_UMASK = _read_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = True
                 ) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from the team
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
