"""A sweep's own record of its trials, readable without Ray (status, results, report).

``gansweep/trials.json`` = {"name", "expected", "max_iters", "created", "trials": {id: rec}}
with one record per Ray Tune trial id:
status (pending | running | finished | stopped | diverged | errored), config (the trial
settings), iteration, reports, starts ([{time, iteration}] — one per actual start),
last and best metrics, time_total_s, failures, error, ended, path.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write

# In a subfolder: Tune's restore re-uploads stale copies of top-level .json files.
SPEC_FILE = "gansweep/sweep.yaml"
TRIALS_FILE = "gansweep/trials.json"
RUNGS_FILE = "gansweep/asha_rungs.json"
RESULTS_FILE = "gansweep/results.jsonl"  # every reported evaluation, appended as it arrives
# Made by the driver before trials: the classifier metric's accuracy and negatives, and
# the FID between each source's training data and each target.
REFERENCES_FILE = "gansweep/references.json"
GRID_FILE = "gansweep/grid.json"  # {"arch", "units": {"G", "D"}, "trials": [Trial dicts]}
# The confirmation phase: its selection {"settings": [labels], "trials": [Trial dicts]},
# written when the search ends, and its Ray Tune experiment folder.
CONFIRM_FILE = "gansweep/confirm.json"
CONFIRM_DIR = "confirm"
STATUSES = ("pending", "running", "finished", "stopped", "diverged", "errored")
DONE = ("finished", "stopped", "diverged")  # never run again; errored ones may be retried


def default_storage() -> str:
    return os.environ.get("GANSWEEP_STORAGE", "sweeps")


def sweep_dir_of(name_or_path: str, storage: str | None = None) -> Path:
    """A sweep directory given as a path, or as a name under the storage."""
    p = Path(name_or_path)
    if not p.is_dir():
        p = Path(storage or default_storage()) / name_or_path
    if not (p / TRIALS_FILE).is_file():
        raise GansweepError(f"sweep {name_or_path!r}: not a gansweep sweep directory (looked "
                            f"for {p / TRIALS_FILE})")
    return p.resolve()


class StorageError(GansweepError):
    """The sweep directory cannot be written (read-only, full, gone)."""


def storage_error(sweep_dir: Path, e: OSError) -> StorageError:
    return StorageError(f"cannot write to the sweep directory {sweep_dir}: {e.strerror or e} "
                        f"({e.filename or sweep_dir}). What was written before is intact "
                        f"('gansweep status' and 'gansweep report --out FILE' read it); fix the "
                        f"storage, then run 'gansweep resume {sweep_dir}'")


def atomic_write_text(path: Path, text: str) -> None:
    """Write one of our files (all in SWEEP/gansweep/); a failure is a StorageError."""
    try:
        atomic_write(path, lambda f: f.write(text), binary=False)
    except OSError as e:
        raise storage_error(path.parent.parent, e) from None


@dataclass
class SweepState:
    path: Path
    data: dict[str, Any]

    @classmethod
    def create(cls, sweep_dir: Path, name: str, expected: int, max_iters: int) -> SweepState:
        return cls(sweep_dir / TRIALS_FILE, {"name": name, "expected": expected,
                                             "max_iters": max_iters, "created": time.time(),
                                             "trials": {}})

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepState:
        path = Path(sweep_dir) / TRIALS_FILE
        if not path.is_file():
            raise GansweepError(f"{sweep_dir}: not a gansweep sweep directory (no {TRIALS_FILE})")
        return cls(path, json.loads(path.read_text()))

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1))

    @property
    def trials(self) -> dict[str, dict[str, Any]]:
        return self.data["trials"]

    def trial(self, trial_id: str, config: dict[str, Any], path: str | None) -> dict[str, Any]:
        if trial_id not in self.trials:
            self.trials[trial_id] = {
                "trial_id": trial_id, "label": config["label"], "config": config,
                "status": "pending", "iteration": 0, "reports": 0, "starts": [],
                "last": {}, "best": {}, "time_total_s": 0.0, "failures": 0, "error": None,
                "ended": None, "path": path, "node_ip": None}
        return self.trials[trial_id]

    @property
    def confirm_trials(self) -> list[dict[str, Any]]:
        """The confirmation phase's trials (empty until the search has ended)."""
        path = self.path.parent / Path(CONFIRM_FILE).name
        return json.loads(path.read_text())["trials"] if path.is_file() else []

    @property
    def expected(self) -> int:
        """Trials of the search grid plus, once selected, of the confirmation phase."""
        return self.data["expected"] + len(self.confirm_trials)

    @property
    def results_path(self) -> Path:
        return self.path.parent / Path(RESULTS_FILE).name

    def append_result(self, record: dict[str, Any]) -> None:
        """Append one evaluation to results.jsonl, durable at once (Tune's own result.json
        reaches the storage only at its next sync)."""
        try:
            with open(self.results_path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise storage_error(self.path.parent.parent, e) from None

    def results(self) -> list[dict[str, Any]]:
        """Every evaluation appended so far; a line cut short by a crash is skipped."""
        out = []
        if self.results_path.is_file():
            for line in self.results_path.read_text().splitlines():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def counts(self) -> dict[str, int]:
        c = Counter(t["status"] for t in self.trials.values())
        c["pending"] += self.expected - len(self.trials)
        return {s: c[s] for s in STATUSES}


def status_text(sweep_dir: Path) -> str:
    """What ``gansweep status`` prints: trials by state, best so far, compute spent."""
    state = SweepState.load(sweep_dir)
    counts = state.counts()
    lines = [f"sweep {state.data['name']} at {sweep_dir}",
             f"trials: {state.expected} expected; " +
             ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    for metric in ("fid", "kid"):
        scored = [(t["best"][metric], t) for t in state.trials.values()
                  if t["best"].get(metric) is not None]
        if scored:
            value, t = min(scored, key=lambda x: x[0])
            lines.append(f"best {metric}: {value:.4g}  {t['label']}  "
                         f"(trial {t['trial_id']}, iteration {t['iteration']})")
    seconds = sum(t["time_total_s"] for t in state.trials.values())
    iters = sum(t["iteration"] for t in state.trials.values())
    full = state.expected * state.data["max_iters"]
    lines.append(f"compute: {seconds / 3600:.3f} trial-hours, {iters} of {full} iterations "
                 f"({100 * iters / full if full else 0:.1f}% of running every trial to the end)")
    errored = [t for t in state.trials.values() if t["status"] == "errored"]
    for t in errored[:5]:
        last = (t["error"] or "").strip().splitlines()[-1:] or ["?"]
        lines.append(f"errored: {t['label']} (trial {t['trial_id']}): {last[0][:160]}")
    return "\n".join(lines)
