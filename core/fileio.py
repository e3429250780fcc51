"""Atomic file writes: a temporary file in the target's folder, then a rename, so a reader
(or a crash) never sees half a file."""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from gansweep.core import faults


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import: setting and restoring it per write would race with other threads.
_UMASK = _read_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = True
                 ) -> None:
    """Write ``path`` through ``write(file)``: whole or not at all, even if ``write`` fails
    or the process dies part-way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from the team
        faults.point("write.rename")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.lru_cache(maxsize=32)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, computed once per process while the file is unchanged."""
    st = os.stat(path)
    return _sha256(str(path), st.st_mtime_ns, st.st_size)
