"""The structured search (``search: {type: structured}``, ``sweep.searchers.structured``) as
Ray Tune's search algorithm: a plain ``ray.tune.search.Searcher`` (under Tune's
``ConcurrencyLimiter``, which leaves the cap to it) that suggests one trial of the grid at a
time (a cell, as Tune's grid does), learns each trial's end, and logs both where a resume
finds them.

The log (``SEARCH_LOG``) has a JSON line per event, appended and fsync'd before Tune hears
of it, so its cost per event does not grow with the sweep:
- a suggestion: ``{"id", "index", "queue", "finished", "planned"}`` (the Tune trial id, the
  trial's index, the policy's queue and ``finished`` after it, how many trials it plans);
- a lost cell handed out again: ``{"id", "again", "key"?}``;
- the policy's end: ``{"finished": true, "planned"}``; a result: ``{"result", "value"}``;
- a resumed 0.3.0 sweep's first line, ``{"state": ...}``: that version's whole state file
  (``SEARCH_FILE``), which it rewrote at every event.
A resumed searcher replays it once (at Tune's ``restore``, or its first call), a line cut
short by a crash skipped: the suggestions rebuild the policy's ``given``, ``queue`` and
``finished`` (``StructuredSearch.to_dict``), the results are observed again.

Resume, with no suggestion repeated or lost. Tune's experiment snapshot lags the log. A
cell handed out that the snapshot Tune restored from does not hold and that has no result
(Tune lost it) is handed out again first, under the new trial id Tune asks with: its
folder, checkpoint and end marker are the cell's (``sweep.record.layout.trial_key``), so it
continues from its checkpoint, or returns at once if it ended. A cell of a 0.3.0 sweep,
whose trials were keyed by their Tune ids, keeps its old key (``"key"`` in its config). A
trial Tune restored is not handed out again: it runs on, and its result arrives as usual.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator

from gansweep.core.metrics import METRICS
from gansweep.core.trial import Trial
from gansweep.sweep.record.layout import cell, experiment_dir
from gansweep.sweep.record.state import (
    GRID_FILE,
    SEARCH_FILE,
    SEARCH_LOG,
    append_line,
    ran_to_end,
    read_log,
)
from gansweep.sweep.run import tune_internals, tune_state
from gansweep.sweep.searchers.structured import FINISHED, StructuredSearch
from gansweep.sweep.spec.files import load_sweep_spec
from gansweep.sweep.spec.schema import Search

# 0.3.0 wrapped its searcher in a SearchGenerator subclass of this name, and its sweeps'
# tuner.pkl names it: unpickled now, it is Tune's own SearchGenerator.
StructuredGenerator = SearchGenerator


class StructuredSearcher(Searcher):
    """Tune's side of ``sweep.searchers.structured.StructuredSearch``: ``suggest`` gives the next
    trial's cell and settings, ``on_trial_complete`` passes its final score on (None unless it
    ran to ``max_iters``). ``max_concurrent`` (0: no limit) caps the trials running at once."""

    def __init__(self, sweep_dir: str | Path, trials: Sequence[Trial], settings: Search,
                 metric: str, max_iters: int, max_concurrent: int = 0):
        super().__init__(metric="score", mode=METRICS.get(metric).mode)
        self.sweep_dir, self.max_iters = str(sweep_dir), max_iters
        self.max_concurrent = max_concurrent
        self.search = StructuredSearch(trials, settings, METRICS.get(metric).loss)
        self.ids: dict[str, int] = {}  # Tune trial id -> trial index
        self.keys: dict[int, str] = {}  # trial index -> its 0.3.0 key (its first Tune id)
        self.again: list[int] = []  # indices of the cells Tune lost, to hand out again first
        self._closed: set[str] = set()  # the log checked for a line cut short
        self._loaded = False  # a resumed search's log replayed (``_load``)

    # --- pickling: Tune keeps the search algorithm in the sweep's tuner.pkl -----------------

    def __reduce__(self):
        """Pickled as where to rebuild it from: its state is the log, its grid the sweep's."""
        return _rebuilt, (self.sweep_dir, self.max_iters, self.max_concurrent)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A 0.3.0 sweep's searcher, pickled whole (its policy inside): rebuilt instead."""
        self.__dict__.update(_rebuilt(state["sweep_dir"], state["max_iters"],
                                      state.get("max_concurrent", 0)).__dict__)

    # --- Tune's calls ------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return True  # the search space is the grid this searcher was made with

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """ConcurrencyLimiter's cap: kept here (True), where a lost cell is not counted twice."""
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._load()
        if self.again:
            index = self.again.pop(0)
            self.ids[trial_id] = index
            key = self.keys.get(index)
            self._log({"id": trial_id, "again": index, **({"key": key} if key else {})})
        else:
            if self.max_concurrent and len(self.search.running) >= self.max_concurrent:
                return None
            index = self.search.next()
            if index is None:
                return None
            if index == FINISHED:
                self._log({"finished": True, "planned": self.search.planned()})
                return Searcher.FINISHED
            self.ids[trial_id] = index
            state = self.search.to_dict()
            self._log({"id": trial_id, "index": index, "queue": state["queue"],
                       "finished": state["finished"], "planned": self.search.planned()})
            key = None
        trial = self.search.trials[index]
        return {"cell": cell(trial), "trial": trial.to_dict(), **({"key": key} if key else {})}

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        self._load()
        if trial_id not in self.ids:
            return
        done = not error and result is not None and ran_to_end(result, self.max_iters)
        value = result.get("score") if done else None
        self.search.observe(self.ids[trial_id], value)
        self._log({"result": self.ids[trial_id], "value": value})

    # --- state ---------------------------------------------------------------------------

    def _log(self, line: dict[str, Any]) -> None:
        append_line(Path(self.sweep_dir), SEARCH_LOG, line, self._closed)

    def save(self, checkpoint_path: str) -> None:
        """Tune's copy: where the state is (the log is newer than any copy Tune holds)."""
        Path(checkpoint_path).write_text(json.dumps({"log": SEARCH_LOG}))

    def restore(self, checkpoint_path: str) -> None:
        """Tune's restore: the log, not Tune's copy (``checkpoint_path``)."""
        self._load()

    def _load(self) -> None:
        """Once per driver, before anything else: a resumed search's log, and the trials Tune
        restored (its newest snapshot: the one it read, or a newer one holding the same
        trials)."""
        if self._loaded:
            return
        self._loaded = True
        sweep_dir = Path(self.sweep_dir)
        if not (sweep_dir / SEARCH_LOG).is_file() and (sweep_dir / SEARCH_FILE).is_file():
            self._log({"state": json.loads((sweep_dir / SEARCH_FILE).read_text())})  # 0.3.0's
        lines = read_log(sweep_dir / SEARCH_LOG)[0]
        if not lines:
            return  # a new sweep
        snapshot = tune_state.newest(experiment_dir(sweep_dir, "search"))
        known = set() if snapshot is None else tune_internals.snapshot_trial_ids(snapshot)
        self.replay(lines, known)

    def replay(self, lines: list[dict[str, Any]], known: set[str]) -> None:
        """Continue from the log's ``lines``, Tune having restored the trials ``known``."""
        state, results = self.search.to_dict(), []
        for line in lines:
            if "state" in line:  # 0.3.0's: its trials are keyed by their Tune ids
                old = line["state"]
                state.update({k: old[k] for k in ("given", "queue", "results", "finished")})
                self.ids = {i: int(n) for i, n in old["ids"].items()}
                self.keys = {n: i for i, n in reversed(self.ids.items())}
            elif "index" in line:
                state["given"].append(line["index"])
                state["queue"], state["finished"] = line["queue"], line["finished"]
                self.ids[line["id"]] = line["index"]
            elif "again" in line:
                self.ids[line["id"]] = line["again"]
            elif "result" in line:
                results.append((line["result"], line["value"]))
            elif "finished" in line:
                state["finished"] = line["finished"]
        self.search.load(state)
        for index, value in results:
            self.search.observe(index, value)
        newest = {n: i for i, n in self.ids.items()}  # each cell's latest Tune trial id
        self.again = [n for n, i in newest.items()
                      if i not in known and n not in self.search.results]


def _rebuilt(sweep_dir: str, max_iters: int, max_concurrent: int) -> StructuredSearcher:
    """The searcher of the sweep at ``sweep_dir``, from its spec and recorded grid."""
    spec = load_sweep_spec(Path(sweep_dir))
    grid = json.loads((Path(sweep_dir) / GRID_FILE).read_text())
    return StructuredSearcher(sweep_dir, [Trial.from_dict(t) for t in grid["trials"]],
                              spec.search, spec.metric, max_iters, max_concurrent)


def structured_search(sweep_dir: Path, trials: Sequence[Trial], settings: Search, metric: str,
                      max_iters: int, max_concurrent: int) -> Searcher:
    """The search algorithm of a structured search's Tuner: Tune makes its SearchGenerator."""
    searcher = StructuredSearcher(sweep_dir, trials, settings, metric, max_iters)
    return ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
