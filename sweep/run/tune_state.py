"""Ray Tune's experiment snapshot, kept whole across a killed driver or a failing storage;
a resume Tune cannot restore is stopped, not started over.

Tune writes ``experiment_state-<session>.json`` in a staging folder and copies it into the
sweep directory from a background thread; a driver killed during the copy leaves a
truncated file there, and ``Tuner.restore`` then fails on it. The driver therefore keeps
the last copy that parsed under ``.tune-state/`` (``back_up``), and a resume puts it back
in place of a truncated one (``repair``). The backup lags Tune by at most
``BACKUP_EVERY_S``: trials that ended in that window are seen by Tune as unfinished, and
return at once (the done markers of ``sweep.record.state``).

Beside each snapshot Tune saves its search algorithm's state of the same session
(``basic-variant-state-<session>.json`` for the grid and ``search_gen_state-<session>.json``
for the structured searcher, both pickles whatever their names say; ``searcher-state-
<session>.pkl``, JSON, for ``sweep.run.searcher`` itself): which trials it has generated and
which it counts as running. Restored from a newer session than the snapshot, it counts a
trial the snapshot never had as running forever: under ``max_concurrent`` Tune then waits
for it and starts nothing. The snapshot and its searcher's files are therefore checked,
backed up, put back and set aside together. A file of the pair cut short that is left in
place would make Tune's restore fail, and Tune then starts the experiment over under new
trial ids, or with none, the sweep then ending with its trials pending: ``no_fresh_start``
stops a resume there instead."""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write
from gansweep.sweep.run.tune_internals import (
    RESTORE_FAILED,
    RESTORE_LOGGER,
    SEARCHER_FILES,
    SNAPSHOT_PATTERN,
)

PATTERN = SNAPSHOT_PATTERN  # Tune's file names and formats are the adapter's to know
BACKUP_DIR = ".tune-state"
BACKUP_EVERY_S = 30.0


def _whole(data: bytes) -> bool:
    """Whether a file Tune wrote (JSON or a pickle) reads to its end."""
    try:
        json.loads(data)
        return True
    except ValueError:
        pass
    try:
        pickle.loads(data)  # the sweep's own file, which Tune itself unpickles on restore
        return True
    except Exception:  # a cut pickle raises anything from EOFError to UnpicklingError
        return False


def _pair(snapshot: Path) -> list[Path]:
    """A snapshot and the files of its searcher's state that exist (the snapshot first)."""
    return [snapshot, *(p for p in searcher_states(snapshot) if p.is_file())]


def _pair_whole(snapshot: Path) -> bool:
    try:
        return all(_whole(p.read_bytes()) for p in _pair(snapshot))
    except OSError:
        return False


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def newest(experiment: Path) -> Path | None:
    """The snapshot Tune restores from: the greatest name (names carry the session time)."""
    files = sorted(experiment.glob(PATTERN), key=lambda p: p.name)
    return files[-1] if files else None


def searcher_states(snapshot: Path) -> list[Path]:
    """The search algorithm's files saved with ``snapshot`` (the same session)."""
    session = snapshot.name[len("experiment_state-"):-len(".json")]
    return [snapshot.with_name(f.format(session)) for f in SEARCHER_FILES]


def back_up(experiment: Path) -> None:
    """Copy the newest snapshot, with its searcher's state, to the backup folder if it
    changed and both parse whole."""
    path = newest(experiment)
    if path is None:
        return
    copy = experiment / BACKUP_DIR / path.name
    if copy.is_file() and copy.stat().st_mtime >= path.stat().st_mtime:
        return
    pair = [(p, p.read_bytes()) for p in _pair(path)]
    if not all(_whole(data) for _, data in pair):  # read mid-copy: the next call catches up
        return
    for p, data in reversed(pair):  # the snapshot last: its mtime marks the pair as done
        _write(experiment / BACKUP_DIR / p.name, data)


def repair(experiment: Path) -> None:
    """Replace each snapshot of which a file is cut short, with its searcher's state, by
    their backups; a pair without a whole backup is moved aside (Tune then restores both
    from the previous session, if any)."""
    for path in experiment.glob(PATTERN):
        if _pair_whole(path):
            continue
        copy = experiment / BACKUP_DIR / path.name
        if _pair_whole(copy) and all(
                (copy.parent / p.name).is_file() for p in _pair(path)):
            for p in _pair(copy):
                _write(experiment / p.name, p.read_bytes())
            what = "restored the driver's last whole copy"
        else:
            for p in _pair(path):
                p.rename(p.with_name(p.name + ".truncated"))
            what = "set it aside"
        print(f"gansweep: Ray Tune's snapshot {path} (or its searcher's state) was cut short "
              f"when the driver was killed or the storage failed; {what}", file=sys.stderr)


class _RestoreFailed(Exception):
    """Tune could not restore an experiment's state (the cause is its argument)."""


class _NoFreshStart(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == RESTORE_FAILED:
            raise _RestoreFailed(record.exc_info[1] if record.exc_info else None)
        return True


@contextlib.contextmanager
def no_fresh_start(experiment: Path) -> Iterator[None]:
    """Run a Tuner restoring ``experiment`` without letting Tune start it over when it
    cannot restore its state: one clear error instead. Tune logs the failure and carries
    on; its log record is the only moment to stop it, so a filter on Tune's controller
    logger raises there, out of the Tuner's ``fit``."""
    controller = logging.getLogger(RESTORE_LOGGER)
    guard = _NoFreshStart()
    controller.addFilter(guard)
    try:
        yield
    except _RestoreFailed as e:
        cause = e.args[0]
        first = (str(cause).strip().splitlines() or [""])[0][:200]
        what = f"{type(cause).__name__}: {first}" if cause else "no cause given"
        raise GansweepError(f"cannot resume {experiment}: Ray Tune could not restore its state "
                            f"({what}); nothing was started again. 'gansweep report' reads "
                            f"what the sweep holds") from None
    finally:
        controller.removeFilter(guard)
