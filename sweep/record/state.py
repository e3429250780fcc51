"""A sweep's own record of its trials, readable without Ray (status, results, report).

Two append-only logs in ``SWEEP/gansweep/`` are the durable truth, each line written and
fsync'd as it happens, so the driver's cost per event does not grow with the sweep:
- ``events.jsonl``: the trials' lifecycle (start, end with its status, error, recovery);
- ``results.jsonl``: every evaluation a trial reported.
``trials.json`` is a compacted snapshot of the records they imply, with the byte offsets of
the logs it covers; the driver rewrites it every ``COMPACT_S`` seconds and when a phase ends.
A reader (``status``, ``report``, a resume) loads the snapshot and folds in the lines after
its offsets, so it always sees every event. A trial reads only its own end marker,
``done/<key>.json``, written when it ended.

A record per trial, under its key: its phase and grid cell (``sweep.record.layout.cell_key``;
0.3.0 keyed them by Ray Tune's trial id, and its trials keep those keys): status (pending |
running | finished | stopped | diverged | errored), config (the trial settings), iteration,
reports, starts ([{time, iteration}], one per actual start), last and best metrics,
time_total_s, failures, error, ended, path (its folder, relative to the sweep directory).
"""
from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write
from gansweep.core.metrics import METRICS
from gansweep.sweep.record.storage import Mirror, is_uri, join

# In a subfolder: Tune's restore re-uploads stale copies of top-level .json files (the
# spec as launched is sweep.spec.files.SPEC_FILE, gansweep/sweep.yaml).
TRIALS_FILE = "gansweep/trials.json"
EVENTS_FILE = "gansweep/events.jsonl"
RESULTS_FILE = "gansweep/results.jsonl"  # every reported evaluation, appended as it arrives
DONE_DIR = "gansweep/done"
RUNGS_FILE = "gansweep/asha_rungs.json"
# Made by the driver before trials: the classifier metric's accuracy and negatives, and
# the FID between each source's training data and each target.
REFERENCES_FILE = "gansweep/references.json"
# {"format", "arch", "units": {"G", "D"}, "trials": [Trial dicts], "template": TrialTemplate}
GRID_FILE = "gansweep/grid.json"
# The confirmation phase: its selection {"settings": [labels], "trials": [Trial dicts]},
# written when the search ends, and its Ray Tune experiment folder.
CONFIRM_FILE = "gansweep/confirm.json"
# The structured search's log (sweep.run.searcher): a JSON line per suggestion (with how many
# trials the search plans: what a structured sweep expects of its search grid) and per result.
SEARCH_LOG = "gansweep/search.jsonl"
SEARCH_FILE = "gansweep/search.json"  # 0.3.0's: the search's whole state, rewritten each time
# Written when a signal stopped the sweep (sweep.run.interrupts): {time, signal, phase}.
INTERRUPTED_FILE = "gansweep/interrupted.json"
CONFIRM_DIR = "confirm"
STATUSES = ("pending", "running", "finished", "stopped", "diverged", "errored")
DONE = ("finished", "stopped", "diverged")  # never run again; errored ones may be retried


def ran_to_end(result: Mapping[str, Any], max_iters: int) -> bool:
    """The one rule for "finished": a trial's last result (or record) is at the budget's
    last iteration and did not diverge. Only such a trial's score is a final score."""
    return result.get("iteration", 0) >= max_iters and not result.get("diverged")


def completed(rec: Mapping[str, Any], max_iters: int) -> bool:
    """A trial's record that finished and ran to the end (``ran_to_end``): its last score is
    a final score."""
    return rec["status"] == "finished" and ran_to_end(
        {**(rec.get("last") or {}), "iteration": rec.get("iteration", 0)}, max_iters)
COMPACT_S = 30.0
# What the driver keeps of each result a trial reports (the results log), and of those what
# the trial's record keeps as its last values: everything but the per-report bookkeeping.
RESULT_KEYS = ("iteration", *METRICS, "is_sd", "class_fid", "fid_sd", "fid_rung", "fid_rung_sd",
               "score", "score_sd", "d_loss", "g_loss", "images_per_s", "train_seconds",
               "time_total_s", "diverged", "error", "node_id", "node_ip", "trainable_g",
               "trainable_d", "loss", "lr", "lr_mult", "label_smoothing", "label_noise",
               "new_units", "gpu_ids", "device", "device_name", "cuda_visible_devices",
               "deterministic", "tf32", "worker_start", "setup_s", "report_s")
LAST_KEYS = tuple(k for k in RESULT_KEYS if k not in (
    "iteration", "time_total_s", "diverged", "error", "node_ip", "fid_rung", "fid_rung_sd",
    "worker_start", "setup_s", "report_s"))


def default_storage() -> str:
    return os.environ.get("GANSWEEP_STORAGE") or "sweeps"


def is_path(name_or_path: str) -> bool:
    """Whether a sweep is given as a path (it contains a '/', or is '.'), not as a name
    under the storage: a folder of that name in the current directory does not count."""
    return "/" in name_or_path or os.sep in name_or_path or name_or_path in (".", "..")


def sweep_dir_of(name_or_path: str, storage: str | None = None) -> Path:
    """A sweep directory given as a path (``is_path``), or as a name under the storage
    (``--storage``, else $GANSWEEP_STORAGE, else ./sweeps). A sweep on object storage (a
    URI, or a name under a URI storage) is pulled into its local mirror (sweep.record.storage),
    trial checkpoints left in the bucket, and that is returned."""
    storage = storage or default_storage()
    if is_uri(name_or_path) or (is_uri(storage) and not is_path(name_or_path)):
        uri = name_or_path if is_uri(name_or_path) else join(storage, name_or_path)
        mirror = Mirror.of(uri)
        if not mirror.exists():
            raise GansweepError(f"sweep {name_or_path!r}: nothing at {mirror.uri}")
        mirror.claim()
        mirror.pull(checkpoints=False)
        return mirror.local
    if is_path(name_or_path):
        p = Path(name_or_path)
    else:
        check_storage(storage)
        p = Path(storage).expanduser() / name_or_path
    if not (p / TRIALS_FILE).is_file():
        where = "" if is_path(name_or_path) else f" in the storage {storage}"
        local = "" if is_path(name_or_path) or not Path(name_or_path).exists() else \
            f"; the {name_or_path!r} here is taken as a path only when written as one " \
            f"(./{name_or_path})"
        raise GansweepError(f"sweep {name_or_path!r}: no sweep there{where} (looked for "
                            f"{p / TRIALS_FILE}){local}; 'gansweep ls' lists the sweeps of a "
                            f"storage")
    return p.resolve()


def check_storage(storage: str) -> None:
    """A local storage must be a folder (or not exist yet), not a file."""
    p = Path(storage).expanduser()
    if p.exists() and not p.is_dir():
        raise GansweepError(f"--storage {storage}: is a file, not a folder of sweeps")


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


def read_log(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of a log after ``offset``, and the offset after the last one.
    A line cut short by a crash is not complete: it is left for the writer to drop."""
    if not path.is_file():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out, offset + end


def append_line(sweep_dir: Path, name: str, line: dict[str, Any], closed: set[str]) -> int:
    """Append a JSON line to a log of the sweep, fsync'd: the offset after it. A writer's first
    append (``closed``: logs it checked) ends a line a crash cut short: skipped, not joined."""
    path = Path(sweep_dir) / name
    try:
        if name not in closed:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            if name not in closed:
                closed.add(name)
                if f.tell() and not _ends_with_newline(path):
                    f.write(b"\n")
            f.write(json.dumps(line).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
            return f.tell()
    except OSError as e:
        raise storage_error(Path(sweep_dir), e) from None


@dataclass
class SweepState:
    """The records of a sweep's trials. Readers ``load`` it; the driver changes it only
    through ``event`` and ``result``, which append to the logs first."""

    sweep_dir: Path
    data: dict[str, Any]
    _compacted: float = field(default=0.0, repr=False)
    _closed: set[str] = field(default_factory=set, repr=False)  # logs checked for a cut line

    @classmethod
    def create(cls, sweep_dir: Path, name: str, expected: int, max_iters: int) -> SweepState:
        return cls(Path(sweep_dir), {"name": name, "expected": expected,
                                     "max_iters": max_iters, "created": time.time(),
                                     "trials": {}, "offsets": {"events": 0, "results": 0}})

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepState:
        sweep_dir = Path(sweep_dir)
        path = sweep_dir / TRIALS_FILE
        if not path.is_file():
            raise GansweepError(f"{sweep_dir}: not a gansweep sweep directory (no {TRIALS_FILE})")
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            raise GansweepError(f"{path}: not a sweep's record ({type(e).__name__}: {e}); "
                                f"gansweep writes it whole or not at all, so it was changed "
                                f"by hand") from None
        if not isinstance(data, dict) or not isinstance(data.get("trials"), dict):
            raise GansweepError(f"{path}: not a sweep's record (no trials mapping)")
        state = cls(sweep_dir, data)
        if "offsets" not in state.data:  # gansweep 0.1 rewrote it whole: it holds everything
            results = sweep_dir / RESULTS_FILE
            state.data["offsets"] = {"events": 0,
                                     "results": results.stat().st_size if results.is_file() else 0}
        offsets = state.data["offsets"]
        events, offsets["events"] = read_log(sweep_dir / EVENTS_FILE, offsets["events"])
        results, offsets["results"] = read_log(sweep_dir / RESULTS_FILE, offsets["results"])
        # Results and events interleave by time; a result needs its trial's start first.
        for kind, line in sorted([("e", e) for e in events] + [("r", r) for r in results],
                                 key=lambda x: (x[1]["time"], x[0] == "r")):
            (state._apply_event if kind == "e" else state._apply_result)(line)
        return state

    def save(self) -> None:
        """Write the compacted snapshot (the logs stay: they are the durable truth)."""
        atomic_write_text(self.sweep_dir / TRIALS_FILE, json.dumps(self.data, indent=1))
        self._compacted = time.monotonic()

    def compact_if_due(self) -> None:
        if time.monotonic() - self._compacted > COMPACT_S:
            self.save()

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

    # --- the driver's writes: a log line first, then the in-memory record ------------------

    def _append(self, name: str, line: dict[str, Any]) -> None:
        self.data["offsets"]["events" if name == EVENTS_FILE else "results"] = append_line(
            self.sweep_dir, name, line, self._closed)

    def event(self, kind: str, trial_id: str, **fields: Any) -> dict[str, Any]:
        """Record a lifecycle event (start, end, error, recover) of a trial."""
        line = {"event": kind, "trial_id": trial_id, "time": time.time(), **fields}
        self._append(EVENTS_FILE, line)
        return self._apply_event(line)

    def result(self, trial_id: str, result: dict[str, Any]) -> dict[str, Any]:
        """Record one evaluation a trial reported."""
        line = {**result, "trial_id": trial_id, "time": time.time()}
        self._append(RESULTS_FILE, line)
        return self._apply_result(line)

    def _apply_event(self, e: dict[str, Any]) -> dict[str, Any]:
        rec = self.trial(e["trial_id"], e["config"], e.get("path")) if "config" in e else \
            self.trials[e["trial_id"]]
        kind = e["event"]
        if kind == "start" and rec["status"] not in DONE:
            rec["status"] = "running"
            rec["starts"].append({"time": e["time"], "iteration": rec["iteration"]})
        elif kind == "end":
            rec["ended"] = e["time"]
            if rec["status"] not in DONE:
                rec["status"] = e["status"]
        elif kind == "error":
            rec["status"], rec["ended"], rec["error"] = "errored", e["time"], e["error"]
        elif kind == "recover":
            rec["failures"] += 1
            rec["error"] = e["error"]
        return rec

    def _apply_result(self, r: dict[str, Any]) -> dict[str, Any] | None:
        rec = self.trials.get(r["trial_id"])
        if rec is None:
            return None
        rec["iteration"] = int(r.get("iteration", rec["iteration"]))
        rec["reports"] += 1
        rec["time_total_s"] = float(r.get("time_total_s") or 0.0)
        rec["node_ip"] = r.get("node_ip")
        rec["last"] = {k: r.get(k) for k in LAST_KEYS}
        for name, m in METRICS.items():
            value, best = r.get(name), rec["best"].get(name)
            if value is not None and (best is None or m.loss(value) < m.loss(best)):
                rec["best"][name] = value
        if r.get("diverged"):
            rec["status"], rec["error"] = "diverged", r.get("error")
        return rec

    def mark_done(self, key: str) -> None:
        """The end marker the trial itself reads (``done_record``) if Tune starts it again."""
        rec = self.trials[key]
        atomic_write_text(self.sweep_dir / done_path(key), json.dumps(
            {"status": rec["status"], "iteration": rec["iteration"], "last": rec["last"]}))

    def results(self) -> list[dict[str, Any]]:
        """Every evaluation appended so far; a line cut short by a crash is skipped."""
        return read_log(self.sweep_dir / RESULTS_FILE)[0]

    @property
    def confirm_trials(self) -> list[dict[str, Any]]:
        """The confirmation phase's trials (empty until the search has ended)."""
        path = self.sweep_dir / CONFIRM_FILE
        return json.loads(path.read_text())["trials"] if path.is_file() else []

    @property
    def expected(self) -> int:
        """Trials of the search grid (those a structured search plans to run) plus, once
        selected, of the confirmation phase."""
        search = self.search_state
        planned = self.data["expected"] if search is None else search["planned"]
        return planned + len(self.confirm_trials)

    @functools.cached_property
    def search_state(self) -> dict[str, Any] | None:
        """The structured search's ``planned`` and ``finished`` as its log's newest suggestion
        (or 0.3.0's state file) says, read once; None: a grid."""
        lines = [x for x in read_log(self.sweep_dir / SEARCH_LOG)[0] if "planned" in x]
        if lines:
            return {"planned": lines[-1]["planned"], "finished": lines[-1]["finished"]}
        path = self.sweep_dir / SEARCH_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def counts(self) -> dict[str, int]:
        c = Counter(t["status"] for t in self.trials.values())
        c["pending"] += self.expected - len(self.trials)
        return {s: c[s] for s in STATUSES}


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def done_path(key: str) -> str:
    """A trial's end marker (by its record's key), relative to the sweep directory."""
    return f"{DONE_DIR}/{key}.json"


def done_record(sweep_dir: Path, key: str) -> dict[str, Any] | None:
    """A trial's end marker: its final status, iteration and last result, if it ended."""
    path = Path(sweep_dir) / done_path(key)
    return json.loads(path.read_text()) if path.is_file() else None


def where(sweep_dir: Path) -> str:
    """How commands name a sweep to the user: its bucket URI, else its absolute path."""
    mirror = Mirror.of_local(sweep_dir)
    return mirror.uri if mirror else str(Path(sweep_dir).resolve())


def interrupted(sweep_dir: Path) -> dict[str, Any] | None:
    """How a signal stopped the sweep ({time, signal, phase}); None if none did."""
    path = Path(sweep_dir) / INTERRUPTED_FILE
    return json.loads(path.read_text()) if path.is_file() else None
