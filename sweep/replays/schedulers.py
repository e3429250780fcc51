"""``gansweep replay``: measure a scheduler on a finished grid without training anything.

A grid sweep (every trial run to the end) records every evaluation of every trial with its
wall time. A replay feeds those recorded results, in the order a sweep with a given trial
order and concurrency would produce them, to the scheduler class live sweeps use
(``sweep.run.scheduler.RobustASHA``, i.e. Ray Tune's AsyncHyperBandScheduler), and honours its
decisions: a stopped trial reports nothing more and frees its slot. No Ray cluster, no
model: a replay of a 41-trial grid takes milliseconds, so one can try many orders.

For each scheduler setting it reports the compute spent (trial-seconds, as a fraction of
running the grid), the regret of its pick against the grid's best, and how often it picked
the best. A setting's true value is the mean over the grid's seeds of its trials' final
metric; a replay searches one seed's trials (as a sweep with one search seed does) and
picks the trial with the best final score among those it ran to the end.
"""
from __future__ import annotations

import dataclasses
import gzip
import heapq
import itertools
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write
from gansweep.core.metrics import METRICS
from gansweep.core.trial import Trial, setting_key
from gansweep.sweep.record.state import GRID_FILE, SweepState, completed, ran_to_end
from gansweep.sweep.record.verdict import twins
from gansweep.sweep.replays.options import Variant
from gansweep.sweep.replays.summary import Summary, held_out, judge, replays
from gansweep.sweep.run.scheduler import STOP, RobustASHA
from gansweep.sweep.spec.files import load_sweep_spec
from gansweep.sweep.spec.ranking import score
from gansweep.sweep.spec.schema import Scheduler


@dataclass
class RecordedTrial:
    trial_id: str
    label: str
    setting: str  # core.trial.setting_key
    seed: int
    evaluations: list[dict[str, Any]]  # results.jsonl records, one per iteration, in order


@dataclass
class Recording:
    """A finished grid: its trials' evaluations, the metric, the budget and the scheduler its
    spec named (what ``spec`` replays)."""

    name: str
    metric: str
    max_iters: int
    trials: list[RecordedTrial]
    scheduler: Scheduler = field(default_factory=Scheduler)

    def truth(self, seeds: Sequence[int] | None = None) -> dict[str, float]:
        """Each setting's true value: its final metric, averaged over ``seeds`` (None: all
        the grid's; a replay's held-out truth: ``summary.held_out``) and over a pair and the
        baseline it equals (``same``)."""
        finals = defaultdict(list)
        for t in self.trials:
            if seeds is None or t.seed in seeds:
                finals[self.same[t.setting]].append(t.evaluations[-1][self.metric])
        return {k: float(np.mean(v)) for k, v in finals.items()}

    @cached_property
    def same(self) -> dict[str, str]:
        """Setting -> the setting it trains the same as: a D x G pair equal to a baseline ->
        the baseline (``sweep.record.verdict.twins``), else itself; one trained thing, one
        setting."""
        settings = {t.setting for t in self.trials}
        try:
            twin = twins([Trial.from_dict(json.loads(k)) for k in settings])
        except (ValueError, TypeError, GansweepError):  # settings made by hand, not trials
            twin = {}
        return {k: twin.get(k, k) for k in settings}

    @property
    def seeds(self) -> list[int]:
        return sorted({t.seed for t in self.trials})

    def save(self, path: str | Path) -> None:
        """Write the recording as one gzipped JSON file (tens of kB), so a grid that took
        hours to record outlives its sweep directory and can be kept beside the code."""
        data = {"format": EXPORT_FORMAT, "name": self.name, "metric": self.metric,
                "max_iters": self.max_iters, "scheduler": dataclasses.asdict(self.scheduler),
                "trials": [dataclasses.asdict(t) for t in self.trials]}
        text = json.dumps(data, separators=(",", ":"), default=_plain).encode()
        # mtime=0: the same recording gives the same bytes
        atomic_write(path, lambda f: f.write(gzip.compress(text, mtime=0)))


EXPORT_FORMAT = "gansweep-recording-1"


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _read_export(path: Path) -> Recording:
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError) as e:
        raise GansweepError(f"{path}: not a recording exported by 'gansweep replay --export' "
                            f"({e})") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise GansweepError(f"{path}: not a recording in format {EXPORT_FORMAT!r}")
    return Recording(data["name"], data["metric"], data["max_iters"],
                     [RecordedTrial(**t) for t in data["trials"]],
                     Scheduler(**data["scheduler"]))


def load_recording(sweep_dir: str | Path, grid: bool = True) -> Recording:
    """A finished grid's recorded evaluations, from its sweep directory or from a file
    ``Recording.save`` wrote; one clear error when it is not one. ``grid=False`` also takes a
    sweep whose scheduler stopped trials (to replay its own decisions)."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.is_file():
        return _read_export(sweep_dir)
    state = SweepState.load(sweep_dir)
    spec = load_sweep_spec(sweep_dir)
    planned = json.loads((sweep_dir / GRID_FILE).read_text())["trials"]
    search = [r for r in state.trials.values() if r["config"].get("phase", "search") == "search"]
    max_iters = state.data["max_iters"]
    short = [r for r in search if r["status"] != "diverged"
             and not completed(r, max_iters)]
    stopped = [r for r in short if r["status"] == "stopped"]
    if stopped and grid:
        raise GansweepError(f"replay needs a grid (every trial run to the end), but "
                            f"{len(stopped)} trials of {sweep_dir.name} were stopped early "
                            f"(it ran with a scheduler); record it with scheduler: "
                            f"{{type: none}}")
    short = [r for r in short if r["status"] != "stopped"]
    if short or len(search) < len(planned):
        missing = len(short) + len(planned) - len(search)
        raise GansweepError(f"replay needs a finished grid, but {missing} of {len(planned)} trials "
                            f"of {sweep_dir.name} have not run to iteration {max_iters} "
                            f"(pending, running or errored); finish it with "
                            f"'gansweep resume {sweep_dir}'")
    by_trial: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in state.results():
        by_trial[r["trial_id"]][r["iteration"]] = r  # a repeat after a restart: the newest
    trials = [RecordedTrial(r["trial_id"], r["label"], setting_key(r["config"]),
                            r["config"]["seed"],
                            [by_trial[r["trial_id"]][i] for i in sorted(by_trial[r["trial_id"]])])
              for r in search]
    return Recording(spec.name, spec.metric, max_iters, trials, spec.scheduler)


# --- one replay ------------------------------------------------------------------------------

class _Trial:
    """What the scheduler reads of a trial."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


@dataclass
class Outcome:
    spent_s: float  # trial-seconds
    full_s: float  # trial-seconds of the grid
    pick: str | None  # the setting picked
    stops: dict[str, int]  # trial id -> iteration of its last report (started trials)
    spent: dict[str, float] = field(default_factory=dict)  # trial id -> its trial-seconds
    cost: dict[str, float] = field(default_factory=dict)  # trial id -> seconds to the end


def _results(trial: RecordedTrial, variant: Variant, metric: str,
             milestones: list[int]) -> list[dict[str, Any]]:
    """The results the trial reports under ``variant``: its evaluations, scored by the
    variant's rule, the rung FID kept only where the variant decides on it."""
    out, history, previous = [], [], 0
    for e in trial.evaluations:
        at_rung = variant.rung_samples and any(previous < m <= e["iteration"]
                                               for m in milestones)
        if e.get("fid_rung") is not None and not at_rung:
            e = {k: v for k, v in e.items() if k not in ("fid_rung", "fid_rung_sd")}
        elif at_rung and e.get("fid_rung") is None:
            raise GansweepError(f"the recording has no rung FID at iteration {e['iteration']} "
                                f"of {trial.label}: record the grid with scheduler."
                                f"rung_fid_samples and these rungs")
        history.append(e)
        value, sd = score(history, metric, variant.rule)
        out.append({"iteration": e["iteration"], "score": value, "score_sd": sd,
                    "elapsed_s": e["time_total_s"]})
        previous = e["iteration"]
    return out


class _Replayer:
    """The variant's scheduler and the results each recorded trial reports under it."""

    def __init__(self, recording: Recording, variant: Variant, trials: Sequence[RecordedTrial]):
        self.max_iters, metric = recording.max_iters, recording.metric
        self.scheduler = RobustASHA(None, noise=variant.noise, time_attr="iteration",
                                    metric="score", mode=METRICS.get(metric).mode,
                                    max_t=self.max_iters, grace_period=variant.grace,
                                    reduction_factor=variant.rf) if variant.stops else None
        milestones = Scheduler(grace_period=variant.grace,
                               reduction_factor=variant.rf).milestones(self.max_iters)
        self.results = {t.trial_id: _results(t, variant, metric, milestones) for t in trials}
        self.stops: dict[str, int] = {}

    def add(self, trial_id: str) -> None:
        if self.scheduler is not None:
            self.scheduler.on_trial_add(None, _Trial(trial_id))

    def report(self, trial_id: str, k: int) -> bool:
        """Result k of the trial reaches the scheduler; True when the trial ends with it
        (stopped, or its last recorded result)."""
        result = self.results[trial_id][k]
        last = k == len(self.results[trial_id]) - 1
        if self.scheduler is None:
            if last:
                self.stops[trial_id] = result["iteration"]
            return last
        action = self.scheduler.on_trial_result(None, _Trial(trial_id), result)
        if action == STOP or last:
            self.scheduler.on_trial_complete(None, _Trial(trial_id), result)
            self.stops[trial_id] = result["iteration"]
            return True
        return False


def ended_at_budget(stops: dict[str, int], trial_id: str, max_iters: int) -> bool:
    """A replayed trial ran to the end: its last report is at the budget's last iteration
    (``sweep.record.state.ran_to_end``; a recorded trial that diverged stopped short of it)."""
    return ran_to_end({"iteration": stops.get(trial_id, 0)}, max_iters)


class Chooser:
    """Which recorded trial starts next (``replay`` asks when a slot is free) and what it
    learns when one ends. This one: a fixed order, every trial (a grid)."""

    def __init__(self, order: Sequence[RecordedTrial]):
        self.waiting = list(order)

    def next(self) -> RecordedTrial | None:
        """The next trial; None: none now (wait for a trial to end, or the end)."""
        return self.waiting.pop(0) if self.waiting else None

    def ended(self, trial: RecordedTrial, result: dict[str, Any], finished: bool) -> None:
        """``trial`` ended with ``result`` (its last report), run to the end or not."""


def replay(recording: Recording, variant: Variant, trials: Sequence[RecordedTrial],
           concurrency: int, chooser: Chooser | None = None) -> Outcome:
    """Run ``trials``, ``concurrency`` at a time, each result arriving at the trial's
    recorded wall time after its start, through the variant's scheduler: in this order, or
    those ``chooser`` picks (it sees each trial's end before it is asked again)."""
    r = _Replayer(recording, variant, trials)
    chooser = chooser or Chooser(trials)
    events, tick, spent = [], itertools.count(), {}
    by_id = {t.trial_id: t for t in trials}

    def fill(now: float) -> None:
        while len(events) < concurrency:
            t = chooser.next()
            if t is None:
                return
            r.add(t.trial_id)
            heapq.heappush(events, (now + r.results[t.trial_id][0]["elapsed_s"], next(tick),
                                    t.trial_id, 0, now))

    fill(0.0)
    while events:
        clock, _, trial_id, k, began = heapq.heappop(events)
        if r.report(trial_id, k):
            spent[trial_id] = r.results[trial_id][k]["elapsed_s"]
            chooser.ended(by_id[trial_id], r.results[trial_id][k],
                          ended_at_budget(r.stops, trial_id, recording.max_iters))
            fill(clock)
        else:
            heapq.heappush(events, (began + r.results[trial_id][k + 1]["elapsed_s"],
                                    next(tick), trial_id, k + 1, began))
    assert chooser.next() is None, "the chooser waited with no trial running"
    cost = {t.trial_id: t.evaluations[-1]["time_total_s"] for t in trials}
    loss = METRICS.get(recording.metric).loss
    done = [t for t in trials if ended_at_budget(r.stops, t.trial_id, recording.max_iters)]
    best = min(done, key=lambda t: loss(r.results[t.trial_id][-1]["score"]), default=None)
    return Outcome(sum(spent.values()), sum(cost.values()),
                   None if best is None else recording.same[best.setting], r.stops, spent, cost)


def replay_sequence(recording: Recording, variant: Variant,
                    sequence: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Feed results in a given order of (trial id, iteration), as a live sweep's scheduler
    received them; returns each trial's last iteration (where the scheduler stopped it)."""
    r = _Replayer(recording, variant, recording.trials)
    index = {tid: {res["iteration"]: k for k, res in enumerate(results)}
             for tid, results in r.results.items()}
    added = set()
    for trial_id, iteration in sequence:
        if trial_id in r.stops:
            continue
        if trial_id not in added:
            added.add(trial_id)
            r.add(trial_id)
        r.report(trial_id, index[trial_id][iteration])
    return r.stops


def replay_many(recording: Recording, variant: Variant, orders: int,
                concurrency: Sequence[int], seed: int = 0) -> Summary:
    """Replays of each search seed's trials in ``orders`` random orders at each concurrency."""
    truth, best = judge(recording)
    out = Summary(variant, [], [], [])
    held = {s: recording.truth(held_out(recording, s)) for s in recording.seeds}
    for s, c, _, trials, rng in replays(recording, orders, concurrency, seed):
        order = [trials[i] for i in rng.permutation(len(trials))]
        out.add(replay(recording, variant, order, c), recording.metric, truth, best, set(),
                held=held[s])
    return out
