"""``gansweep replay --searcher``: measure a searcher (with or without a scheduler) on a
finished grid without training anything.

The searcher (``sweep.searchers.structured.StructuredSearch``, the object a live sweep's Tune
searcher drives) is asked for a trial whenever the simulated sweep has a free slot, and sees only
the trials it chose, each when it ends in the simulated order and concurrency
(``sweep.replays.schedulers.replay``), with the scheduler's stops honoured. A replay searches one
seed's trials, as a sweep with one search seed does; its "orders" are the design's random draws.
Compute counts every trial started, baselines included, against the whole grid (the scheduler
replays' measure), and on the D x G pairs alone against the grid's pairs.

``random`` runs the baselines and then pairs drawn at random, as many as the structured
search's budget: what structure is worth, measured against no structure.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gansweep.core.errors import GansweepError
from gansweep.core.metrics import METRICS
from gansweep.core.trial import Trial
from gansweep.sweep.record.state import ran_to_end
from gansweep.sweep.replays.options import Variant, parse_options
from gansweep.sweep.replays.schedulers import (
    Chooser,
    Outcome,
    RecordedTrial,
    Recording,
    ended_at_budget,
    replay,
)
from gansweep.sweep.replays.summary import Summary, held_out, judge, replays, seeds_after
from gansweep.sweep.searchers.confirm import candidates, pick
from gansweep.sweep.searchers.structured import FINISHED, Context, Pair, StructuredSearch
from gansweep.sweep.spec.ranges import SEARCH_TYPES, check_search
from gansweep.sweep.spec.schema import Search

# --searcher's keys and the type each is read as (their ranges: sweep.spec.ranges)
KEYS = {key: types[-1] for key, (types, _) in SEARCH_TYPES.items()}


@dataclass(frozen=True)
class Searcher:
    """A searcher to replay: ``grid`` (every trial), ``structured`` or ``random``, with
    its settings."""

    name: str
    kind: str  # grid | structured | random
    settings: Search = field(default_factory=Search)

    def __str__(self) -> str:
        return self.name


def parse_searcher(text: str) -> Searcher:
    """``grid``, ``structured``, ``random``, or ``structured:key=value,...`` (or random:...)
    with the keys of a spec's search section, in their ranges. Only the structured search
    confirms unless ``confirm_top`` is given."""
    kind, _, body = text.partition(":")
    if kind not in ("grid", "structured", "random") or (kind == "grid" and body):
        raise GansweepError(f"--searcher {text!r}: give grid, structured or random, the last "
                            f"two optionally with :key=value,... (keys {', '.join(KEYS)})")
    values = parse_options("--searcher", text, body, KEYS)
    check_search(values, f"--searcher {text!r}", lambda key: f"--searcher {text!r}: {key}")
    if kind != "structured":  # the structured search's confirmation, unless asked for
        values.setdefault("confirm_top", 0)
    return Searcher(text, kind, Search(type="structured", **values))


class RandomSearch(StructuredSearch):
    """The baselines, then pairs in a random order (``settings.seed``), up to the budget."""

    def __init__(self, trials: Sequence[Trial], settings: Search, loss):
        super().__init__(trials, settings, loss)
        rng = np.random.default_rng(settings.seed)
        for c in self.contexts.values():
            c.design = []
            c.pairs = [c.pairs[i] for i in rng.permutation(len(c.pairs))]

    def _decide(self, c: Context) -> Pair | str | None:
        return FINISHED if self.done(c) else self.unrun(c, set(self.chosen(c)))[0]


class SearchChooser(Chooser):
    """A search over one seed's recorded trials, as the replay's chooser; ``policy`` makes
    the search (default: the searcher's kind) from the grid, settings and loss."""

    def __init__(self, recording: Recording, trials: Sequence[RecordedTrial],
                 searcher: Searcher, seed: int, policy: Callable | None = None):
        self.trials = list(trials)
        self.grid = [Trial.from_dict({**json.loads(t.setting), "seed": t.seed, "index": n})
                     for n, t in enumerate(self.trials)]
        cls = policy or (RandomSearch if searcher.kind == "random" else StructuredSearch)
        self.search = cls(self.grid, replace(searcher.settings, seed=seed),
                          METRICS.get(recording.metric).loss)
        self.at = {t.trial_id: n for n, t in enumerate(self.trials)}

    def next(self) -> RecordedTrial | None:
        n = self.search.next()
        return None if n is None or n == FINISHED else self.trials[n]

    def ended(self, trial: RecordedTrial, result: dict[str, Any], finished: bool) -> None:
        self.search.observe(self.at[trial.trial_id], result["score"] if finished else None)


def pair_trials(recording: Recording) -> set[str]:
    """The trial ids of the D x G partition pairs (not baselines, not plans)."""
    return {t.trial_id for t in recording.trials if json.loads(t.setting).get("d")}


def confirm_seeds(recording: Recording, s: int, settings: Search) -> list[int]:
    """The recorded seeds a search of seed ``s`` confirms on: the first of ``seeds_after``
    (with 3 seeds and one confirmation seed, the third is left for the truth)."""
    others = seeds_after(recording, s)
    if settings.confirm_top and len(others) < settings.confirm_seeds:
        raise GansweepError(f"confirm_seeds={settings.confirm_seeds}: the recording has "
                            f"{len(others) + 1} seeds, so a search confirms on at most "
                            f"{len(others)}; give confirm_top=0 to replay without it")
    return others[:settings.confirm_seeds] if settings.confirm_top else []


def replay_searcher(recording: Recording, searcher: Searcher, variant: Variant, orders: int,
                    concurrency: Sequence[int], seed: int = 0) -> Summary:
    """``orders`` replays of each search seed's trials at each concurrency, the searcher
    choosing the trials (a grid: in a random order) and the variant's scheduler stopping
    them; a structured search then confirms its candidates on the next recorded seed(s)."""
    return replay_budgets(recording, searcher, variant, orders, concurrency, seed)[None]


def replay_budgets(recording: Recording, searcher: Searcher, variant: Variant, orders: int,
                   concurrency: Sequence[int], seed: int = 0,
                   budgets: Sequence[int] | None = None,
                   policy: Callable | None = None) -> dict[int | None, Summary]:
    """The replays of ``replay_searcher``, measured at each budget of pairs in ``budgets``
    (None: the searcher's own). Without a scheduler, a search's choices up to its B-th pair
    do not depend on its budget, so one replay at the largest budget is measured at every
    smaller one by its first B pairs (and what B pairs leave to confirm): the same figures
    as a replay at each budget, for one replay's time."""
    if budgets is not None and variant.stops:
        raise GansweepError("replays at several budgets need scheduler 'none'")
    truth, best = judge(recording)
    pairs = pair_trials(recording)
    keys = budgets or [None]
    out = {b: Summary(variant, [], [], [], searcher=str(searcher) if b is None else
                      f"{searcher.kind}:max_pairs={b}") for b in keys}
    settings = searcher.settings
    if budgets is not None:
        settings = replace(settings, max_pairs=max(budgets), fraction=None)
    run = replace(searcher, settings=settings)
    for s, c, k, trials, rng in replays(recording, orders, concurrency, seed):
        if searcher.kind == "grid":
            chooser = Chooser([trials[i] for i in rng.permutation(len(trials))])
            o = replay(recording, variant, trials, c, chooser)
            out[None].add(o, recording.metric, truth, best, pairs, _ran(recording, trials, o),
                          recording.truth(held_out(recording, s)))
            continue
        chooser = SearchChooser(recording, trials, run, seed + k, policy)
        o = replay(recording, variant, trials, c, chooser)
        for b in keys:
            out[b].add(*measure(recording, chooser, o, b, truth, best, pairs))
    return out


def _ran(recording: Recording, trials: Sequence[RecordedTrial], o: Outcome) -> list[str]:
    return [recording.same[t.setting] for t in trials
            if ended_at_budget(o.stops, t.trial_id, recording.max_iters)]


def measure(recording: Recording, chooser: SearchChooser, o: Outcome, budget: int | None,
            truth: dict[str, float], best: str, pairs: set[str]) -> tuple:
    """``Summary.add``'s arguments for the replay ``o`` cut at its first ``budget`` pairs
    (None: all it ran), with the search's confirmation on the next recorded seed(s); judged
    on the held-out seed unless the confirmation ran there (``summary.held_out``)."""
    search, trials = chooser.search, chooser.trials
    kept = _first_pairs(search, budget)
    view = type(search)(search.trials, search.settings, search.loss)
    view.results = {n: v for n, v in search.results.items() if n in kept}
    view.given = [n for n in search.given if n in kept]
    ids = {trials[n].trial_id for n in kept}
    spent = {i: v for i, v in o.spent.items() if i in ids}
    s = trials[0].seed
    seeds = confirm_seeds(recording, s, search.settings)
    chosen = candidates(view, search.settings.confirm_top) if seeds else []
    confirmed: dict[tuple[int, ...], list[float]] = {}
    others = {(t.setting, t.seed): t for t in recording.trials if t.seed in seeds}
    for setting in chosen:
        for seed in seeds:
            t = others[(trials[setting[0]].setting, seed)]
            last = t.evaluations[-1]  # a recording's trials all reported (load_recording)
            spent[f"confirm:{t.trial_id}"] = last["time_total_s"]
            if ran_to_end(last, recording.max_iters):
                confirmed.setdefault(setting, []).append(search.loss(last[recording.metric]))
    picked = pick(view, chosen, confirmed)
    cut = Outcome(sum(spent.values()), o.full_s,
                  None if picked is None else recording.same[trials[picked[0]].setting],
                  {i: v for i, v in o.stops.items() if i in ids}, spent, o.cost)
    ran = _ran(recording, [trials[n] for n in kept], cut)
    held = held_out(recording, s)
    truth_held = None if set(held) & set(seeds) else recording.truth(held)
    return cut, recording.metric, truth, best, pairs, ran, truth_held


def _first_pairs(search: StructuredSearch, budget: int | None) -> set[int]:
    """The trials handed out, baselines and the first ``budget`` pairs of each context (in
    the order given; None: every one)."""
    kept: set[int] = set()
    count: dict[str, int] = {}
    pair_of = {n: (c.key, p) for c in search.contexts.values() for p in c.pairs
               for n in c.trials[p]}
    seen: set = set()
    for n in search.given:
        if n not in pair_of:
            kept.add(n)
            continue
        key, p = pair_of[n]
        if (key, p) not in seen:
            if budget is not None and count.get(key, 0) >= budget:
                continue
            seen.add((key, p))
            count[key] = count.get(key, 0) + 1
        kept.add(n)
    return kept
