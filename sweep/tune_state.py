"""Ray Tune's experiment snapshot, kept whole across a killed driver.

Tune writes ``experiment_state-<session>.json`` in a staging folder and copies it into the
sweep directory from a background thread; a driver killed during the copy leaves a
truncated file there, and ``Tuner.restore`` then fails on it. The driver therefore keeps
the last copy that parsed under ``.tune-state/`` (``back_up``), and a resume puts it back
in place of a truncated one (``repair``). The backup lags Tune by at most
``BACKUP_EVERY_S``: trials that ended in that window are seen by Tune as unfinished, and
return at once (the done markers of ``sweep.state``).

Beside each snapshot Tune saves its search algorithm's state of the same session
(``basic-variant-state-<session>.json`` for the grid; ``search_gen_state-<session>.json``
and ``searcher-state-<session>.pkl``, which holds JSON, for the structured searcher of
``sweep.searcher``): which trials it has generated and which it counts as running.
Restored from a newer session than the snapshot, it counts a trial the snapshot never had
as running forever: under ``max_concurrent`` Tune then waits for it and starts nothing.
The snapshot and its searcher's files are therefore backed up, put back and set aside
together."""

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


SEARCHER_FILES = ("basic-variant-state-{}.json", "search_gen_state-{}.json",
                  "searcher-state-{}.pkl")


def trial_ids(snapshot: Path) -> set[str]:
    """The ids of the trials a snapshot holds (what Tune restores from it)."""
    return {json.loads(state)["trial_id"]
            for state, _ in json.loads(snapshot.read_bytes())["trial_data"]}


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
    pair = [(p, p.read_bytes()) for p in (path, *searcher_states(path)) if p.is_file()]
    try:
        for _, data in pair:
            json.loads(data)
    except ValueError:  # read while Tune was copying it: the next call catches up
        return
    for p, data in reversed(pair):  # the snapshot last: its mtime marks the pair as done
        _write(experiment / BACKUP_DIR / p.name, data)


def repair(experiment: Path) -> None:
    """Replace each truncated snapshot, and its searcher's state, by their backups; one
    without a backup is moved aside with its searcher's state (Tune then restores both from
    the previous session, if any)."""
    for path in experiment.glob(PATTERN):
        if _parses(path):
            continue
        copy = experiment / BACKUP_DIR / path.name
        if _parses(copy):
            _write(path, copy.read_bytes())
            for searcher, searcher_copy in zip(searcher_states(path), searcher_states(copy)):
                if _parses(searcher_copy):
                    _write(searcher, searcher_copy.read_bytes())
            what = "restored the driver's last whole copy"
        else:
            for p in (path, *searcher_states(path)):
                if p.is_file():
                    p.rename(p.with_name(p.name + ".truncated"))
            what = "set it aside"
        print(f"gansweep: Ray Tune's snapshot {path} was cut short when the driver was "
              f"killed; {what}", file=sys.stderr)
