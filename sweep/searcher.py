"""The structured search (``search: {type: structured}``, ``sweep.search``) as Ray Tune's
search algorithm: it suggests one trial of the grid at a time (a cell, as Tune's grid does),
learns each trial's end, and keeps its state where a resume finds it.

Resume, with no suggestion repeated or lost. The searcher writes its whole state
(``SEARCH_FILE``: the trials handed out with their Tune trial ids, the queue, every result)
at every suggestion and every result, before Tune hears of either. Tune's experiment
snapshot lags. A resumed searcher (at Tune's ``restore``, or its first call) reads the
file and the trial ids of the snapshot Tune restored from: a trial it handed out that Tune
does not know and that has no result (Tune lost it) is handed out again first, under its old
trial id (``StructuredGenerator``), so that it continues in its own folder from its own
checkpoint, or returns at once from its end marker (``sweep.state``) if it ended. A trial
Tune restored is not handed out again: it runs on, and its result arrives as usual.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray.tune.experiment import Trial as TuneTrial
from ray.tune.experiment.config_parser import _create_trial_from_spec
from ray.tune.search import Searcher, SearchGenerator
from ray.tune.search.variant_generator import format_vars
from ray.tune.utils.util import flatten_dict, merge_dicts

from gansweep.core.fileio import atomic_write
from gansweep.core.metrics import METRICS
from gansweep.core.trial import Trial
from gansweep.sweep import tune_internals, tune_state
from gansweep.sweep.schema import Search
from gansweep.sweep.search import FINISHED, StructuredSearch
from gansweep.sweep.state import SEARCH_FILE
from gansweep.sweep.worker import experiment_dir


def cell(trial: Trial) -> str:
    """A trial's grid cell, as the driver's grid names it (``sweep.driver``)."""
    return f"{trial.index}:{trial.label}"


class StructuredSearcher(Searcher):
    """Tune's side of ``sweep.search.StructuredSearch``: ``suggest`` gives the next trial's
    cell and settings, ``on_trial_complete`` passes its final score on (None unless it ran
    to ``max_iters``). ``max_concurrent`` (0: no limit) caps the trials running at once."""

    def __init__(self, sweep_dir: str | Path, trials: Sequence[Trial], settings: Search,
                 metric: str, max_iters: int, max_concurrent: int = 0):
        super().__init__(metric="score", mode=METRICS.get(metric).mode)
        self.sweep_dir, self.max_iters = str(sweep_dir), max_iters
        self.max_concurrent = max_concurrent
        self.search = StructuredSearch(trials, settings, METRICS.get(metric).loss)
        self.ids: dict[str, int] = {}  # Tune trial id -> trial index
        self.again: list[str] = []  # trial ids Tune lost, to hand out again first
        self._loaded = False  # a resumed search's state read (``_load``)

    # --- Tune's calls ------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return True  # the search space is the grid this searcher was made with

    def next_id(self) -> str:
        """The trial id the next suggestion is to have: a lost one's, else a new one."""
        self._load()
        return self.again[0] if self.again else TuneTrial.generate_id()

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._load()
        if self.again and trial_id == self.again[0]:
            self.again.pop(0)
            index = self.ids[trial_id]
        else:
            if self.max_concurrent and len(self.search.running) >= self.max_concurrent:
                return None
            index = self.search.next()
            if index is None:
                return None
            if index == FINISHED:
                self._write()
                return Searcher.FINISHED
            self.ids[trial_id] = index
        self._write()
        trial = self.search.trials[index]
        return {"cell": cell(trial), "trial": trial.to_dict()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        self._load()
        if trial_id not in self.ids:
            return
        done = not error and result is not None and \
            result.get("iteration", 0) >= self.max_iters and not result.get("diverged")
        self.search.observe(self.ids[trial_id], result.get("score") if done else None)
        self._write()

    # --- state ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {**self.search.to_dict(), "ids": self.ids, "planned": self.search.planned()}

    def _write(self) -> None:
        text = json.dumps(self.state()).encode()
        atomic_write(Path(self.sweep_dir) / SEARCH_FILE, lambda f: f.write(text))

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(self.state()))

    def restore(self, checkpoint_path: str) -> None:
        """Tune's restore: the state file is newer than Tune's copy (``checkpoint_path``)."""
        self._load()

    def _load(self) -> None:
        """Once per driver, before anything else: a resumed search's newest state, and the
        trials Tune restored (its newest snapshot: the one it read, or a newer one holding
        the same trials)."""
        if self._loaded:
            return
        self._loaded = True
        path = Path(self.sweep_dir) / SEARCH_FILE
        if not path.is_file():
            return  # a new sweep
        snapshot = tune_state.newest(experiment_dir(Path(self.sweep_dir), "search"))
        known = set() if snapshot is None else tune_state.trial_ids(snapshot)
        self.resume_from(json.loads(path.read_text()), known)

    def resume_from(self, newest: dict[str, Any], known: set[str]) -> None:
        """Continue from the state ``newest``, Tune having restored the trials ``known``."""
        self.search.load(newest)
        self.ids = dict(newest["ids"])
        self.again = [i for i, n in self.ids.items()
                      if i not in known and n not in self.search.results]
        self._write()


class StructuredGenerator(SearchGenerator):
    """Tune's SearchGenerator, but the trial id comes from the searcher: a trial Tune lost
    in a crash is handed out again under its old id (its folder, checkpoint, end marker).
    The rest is Tune's ``create_trial_if_possible``."""

    def create_trial_if_possible(self, experiment_spec: dict) -> TuneTrial | None:
        trial_id = self.searcher.next_id()
        suggested = self.searcher.suggest(trial_id)
        if suggested == Searcher.FINISHED:
            self._finished = True
            return None
        if suggested is None:
            return None
        spec = copy.deepcopy(experiment_spec)
        spec["config"] = merge_dicts(spec["config"], copy.deepcopy(suggested))
        self._counter += 1
        return _create_trial_from_spec(
            spec, self._parser, evaluated_params=flatten_dict({"cell": suggested["cell"]}),
            experiment_tag=f"{self._counter}_{format_vars({'cell': suggested['cell']})}",
            trial_id=trial_id)


def structured_search(sweep_dir: Path, trials: Sequence[Trial], settings: Search, metric: str,
                      max_iters: int, max_concurrent: int) -> StructuredGenerator:
    """The search algorithm of a structured search's Tuner."""
    tune_internals.require()  # StructuredGenerator relies on SearchGenerator's internals
    return StructuredGenerator(StructuredSearcher(sweep_dir, trials, settings, metric,
                                                  max_iters, max_concurrent))
