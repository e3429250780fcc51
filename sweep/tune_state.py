"""Ray Tune's experiment snapshot, kept whole across a killed driver.

Tune writes ``experiment_state-<session>.json`` in a staging folder and copies it into the
sweep directory from a background thread; a driver killed during the copy leaves a
truncated file there, and ``Tuner.restore`` then fails on it. The driver therefore keeps
the last copy that parsed under ``.tune-state/`` (``back_up``), and a resume puts it back
in place of a truncated one (``repair``). The backup lags Tune by at most
``BACKUP_EVERY_S``: trials that ended in that window are seen by Tune as unfinished, and
return at once (the done markers of ``sweep.state``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gansweep.core.fileio import atomic_write

PATTERN = "experiment_state-*.json"
BACKUP_DIR = ".tune-state"
BACKUP_EVERY_S = 30.0


def _parses(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
        return True
    except (OSError, ValueError):
        return False


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def newest(experiment: Path) -> Path | None:
    """The snapshot Tune restores from: the greatest name (names carry the session time)."""
    files = sorted(experiment.glob(PATTERN), key=lambda p: p.name)
    return files[-1] if files else None


def back_up(experiment: Path) -> None:
    """Copy the newest snapshot to the backup folder if it changed and parses whole."""
    path = newest(experiment)
    if path is None:
        return
    copy = experiment / BACKUP_DIR / path.name
    if copy.is_file() and copy.stat().st_mtime >= path.stat().st_mtime:
        return
    data = path.read_bytes()
    try:
        json.loads(data)
    except ValueError:  # read while Tune was copying it: the next call catches up
        return
    _write(copy, data)


def repair(experiment: Path) -> None:
    """Replace each truncated snapshot by its backup; one without a backup is moved aside
    (Tune then restores from the previous session's snapshot, if any)."""
    for path in experiment.glob(PATTERN):
        if _parses(path):
            continue
        copy = experiment / BACKUP_DIR / path.name
        if _parses(copy):
            _write(path, copy.read_bytes())
            what = "restored the driver's last whole copy"
        else:
            path.rename(path.with_name(path.name + ".truncated"))
            what = "set it aside"
        print(f"gansweep: Ray Tune's snapshot {path} was cut short when the driver was "
              f"killed; {what}", file=sys.stderr)
