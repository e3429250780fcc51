"""Sweeps on object storage: ``--storage s3://bucket/prefix`` (or ``gs://``, or any URI
``pyarrow.fs`` opens, as Ray Tune does).

Every part of gansweep reads and writes a sweep as a local folder. When the storage is a URI,
that folder is a **mirror** of ``URI/NAME`` under ``$GANSWEEP_CACHE/mirrors/``, and the
bucket holds the truth:

- the driver pulls the sweep (without trial checkpoints) before it resumes, reports or shows
  status, and pushes what changed (its records first) when a trial ends, every
  ``GANSWEEP_PUSH_S`` seconds (default 30) while the sweep runs, when a phase ends and after
  writing the report;
- a trial, wherever Ray runs it, pulls its own folder (its newest checkpoint) and the shared
  real-data statistics when it starts, and pushes its folder after every evaluation
  (checkpoint, samples, metrics), removing the checkpoints it has replaced.

A push uploads a file when the bucket lacks it, holds another size, or holds an older copy
than the local one; a pull downloads the converse and gives the local copy the bucket's
time, so nothing goes up and down again. Objects are written whole (S3 and GCS have no
partial objects), and nothing else is ever deleted, so a killed driver or worker leaves the
bucket with whole files from before its last push; ``gansweep resume URI/NAME`` (or ``NAME
--storage URI``) continues from there on any machine.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from gansweep.core.config import default_cache_dir
from gansweep.core.errors import GansweepError

MIRROR_FILE = ".gansweep-mirror"  # in a mirror's root: the URI it mirrors (never pushed)
STATE_DIR = "gansweep"  # the sweep's own records (sweep.record.state)


def is_uri(location: str | os.PathLike | None) -> bool:
    """An object-storage location (``scheme://...``), not a path."""
    return isinstance(location, str) and "://" in location and not location.startswith("file:")


def join(uri: str, name: str) -> str:
    base, sep, query = uri.partition("?")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


def mirrors_root() -> Path:
    """Where the local copies of sweeps on object storage live."""
    return Path(default_cache_dir()) / "mirrors"


def _fs(uri: str):
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(uri)
    except (OSError, ValueError, TypeError) as e:
        raise GansweepError(f"storage {uri}: {e}") from None


def _is_checkpoint(rel: str) -> bool:
    return rel.endswith("/checkpoint.pt") or rel == "checkpoint.pt"


def _in_flight(rel: str) -> bool:
    """A file being written: an atomic write's temporary file or checkpoint folder."""
    return rel.endswith((".tmp", ".part")) or "/.checkpoint-" in f"/{rel}"


def _files(top: Path) -> list[Path]:
    """The files under ``top``. A trial on this node replaces its checkpoint folders while
    the driver pushes, so a folder that vanishes mid-walk is skipped (``os.walk`` ignores
    it), where ``Path.rglob`` would raise."""
    return [Path(d) / f for d, _, names in os.walk(top) for f in names]


@dataclass(frozen=True)
class Mirror:
    """A sweep at ``uri`` and its local copy ``local``."""

    uri: str
    local: Path

    @classmethod
    def of(cls, uri: str) -> Mirror:
        """The mirror of the sweep at ``uri``: ``mirrors/<hash of its storage>/<name>``."""
        path, sep, query = uri.partition("?")
        storage, _, name = path.rstrip("/").rpartition("/")
        if not name or name.startswith(".") or "\\" in name:
            raise GansweepError(f"storage {uri}: {name!r} is not a sweep's folder name")
        key = hashlib.sha256(f"{storage}{sep}{query}".encode()).hexdigest()[:16]
        return cls(uri, mirrors_root() / key / name)

    def discard_local(self) -> None:
        """Delete the local copy (a stale one of a deleted sweep): only ever a sweep's own
        folder inside the mirrors' root, whatever the URI was."""
        root, local = mirrors_root().resolve(), self.local.resolve()
        if local.parent.parent != root:
            raise GansweepError(f"storage {self.uri}: its local copy {local} is not a sweep "
                                f"folder inside {root}; not deleting it")
        shutil.rmtree(local, ignore_errors=True)

    @classmethod
    def of_local(cls, sweep_dir: Path) -> Mirror | None:
        """The mirror whose local copy ``sweep_dir`` is; None for a sweep on a path."""
        marker = Path(sweep_dir) / MIRROR_FILE
        return cls(marker.read_text().strip(), Path(sweep_dir)) if marker.is_file() else None

    def claim(self) -> None:
        """Mark the local folder as this mirror's copy."""
        self.local.mkdir(parents=True, exist_ok=True)
        (self.local / MIRROR_FILE).write_text(self.uri)

    def _remote(self, rel: str) -> tuple[object, str, dict[str, tuple[int, int]]]:
        from pyarrow import fs

        filesystem, root = _fs(self.uri)
        base = f"{root.rstrip('/')}/{rel}".rstrip("/") if rel else root.rstrip("/")
        try:
            infos = [filesystem.get_file_info(base)]  # ``rel`` may name one file
            if infos[0].type != fs.FileType.File:
                infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True,
                                                                 allow_not_found=True))
        except OSError as e:
            raise GansweepError(f"storage {self.uri}: {e}") from None
        files = {i.path[len(root.rstrip("/")) + 1:]: (i.size, i.mtime_ns or 0)
                 for i in infos if i.type == fs.FileType.File}
        return filesystem, root.rstrip("/"), files

    def exists(self) -> bool:
        """Whether the bucket holds anything of this sweep."""
        return bool(self._remote("")[2])

    def push(self, rel: str = "", prune: str | None = None, checkpoints: bool = True) -> int:
        """Upload the files under ``rel`` that the bucket lacks or holds older (trial
        checkpoints only if ``checkpoints``: the driver leaves them to their trials); with
        ``prune``, also delete the bucket's folders under ``rel`` whose names start with it
        and that the local copy no longer has. Returns the number uploaded."""
        filesystem, root, remote = self._remote(rel)
        sent = 0
        # Our records first: locally they are always ahead of Tune's snapshot, and a push
        # cut short must leave them so in the bucket too (else a trial Tune calls ended
        # would have no record of its results).
        paths = sorted(_files(self.local / rel),
                       key=lambda p: (p.relative_to(self.local).parts[:1] != (STATE_DIR,), p))
        for path in paths:
            r = path.relative_to(self.local).as_posix()
            if r == MIRROR_FILE or _in_flight(r) or (not checkpoints and _is_checkpoint(r)):
                continue
            try:  # a trial on this node may replace its files while the driver pushes
                st = path.stat()
                if not path.is_file():
                    continue
                size, mtime = remote.get(r, (None, 0))
                if size == st.st_size and mtime >= st.st_mtime_ns:
                    continue
                with path.open("rb") as src, \
                        filesystem.open_output_stream(f"{root}/{r}") as dst:
                    while chunk := src.read(1 << 22):
                        dst.write(chunk)
            except FileNotFoundError:
                continue
            sent += 1
        if prune is not None:
            base = f"{rel}/" if rel else ""
            children = {r[len(base):].split("/")[0] for r in remote if "/" in r[len(base):]}
            for child in children:
                if child.startswith(prune) and not (self.local / base / child).exists():
                    filesystem.delete_dir(f"{root}/{base}{child}")
        return sent

    def pull(self, rel: str = "", checkpoints: bool = True) -> int:
        """Download the files under ``rel`` that the local copy lacks or holds older (trial
        checkpoints only if ``checkpoints``). Returns the number downloaded."""
        filesystem, root, remote = self._remote(rel)
        got = 0
        for r, (size, mtime) in remote.items():
            if not checkpoints and _is_checkpoint(r):
                continue
            path = self.local / r
            if path.is_file():
                st = path.stat()
                if st.st_size == size and st.st_mtime_ns >= mtime:
                    continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.part")
            with filesystem.open_input_stream(f"{root}/{r}") as src, tmp.open("wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
            os.utime(tmp, ns=(mtime, mtime))
            tmp.replace(path)
            got += 1
        return got


class Pusher:
    """Pushes a mirrored sweep now and then (the driver's side)."""

    def __init__(self, sweep_dir: Path):
        self.mirror = Mirror.of_local(sweep_dir)
        self.every = float(os.environ.get("GANSWEEP_PUSH_S", "30"))
        self._last = 0.0

    def __call__(self, force: bool = False) -> None:
        if self.mirror is None or not (force or time.monotonic() - self._last >= self.every):
            return
        self.mirror.push(checkpoints=False)
        self._last = time.monotonic()


def push_if_mirrored(sweep_dir: Path) -> None:
    """Push a sweep folder that is a mirror; nothing for one on a path."""
    mirror = Mirror.of_local(sweep_dir)
    if mirror is not None:
        mirror.push(checkpoints=False)


def publish(sweep_dir: Path, written: Path) -> str:
    """Push what was written into a mirrored sweep to its bucket; where to find ``written``
    (its bucket URI too, when it lies inside the sweep)."""
    mirror = Mirror.of_local(sweep_dir)
    out, here = Path(written).resolve(), Path(sweep_dir).resolve()
    if mirror is None:
        return str(out)
    mirror.push(checkpoints=False)
    if not out.is_relative_to(here):
        return str(out)
    return f"{out} (in the bucket: {join(mirror.uri, out.relative_to(here).as_posix())})"
