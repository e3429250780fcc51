"""``gansweep replay --searcher``: measure a searcher (with or without a scheduler) on a
finished grid without training anything.

The searcher (``sweep.search.StructuredSearch``, the object a live sweep's Tune searcher
drives) is asked for a trial whenever the simulated sweep has a free slot, and sees only
the trials it chose, each when it ends in the simulated order and concurrency
(``sweep.replay.replay``), with the scheduler's stops honoured. A replay searches one seed's
trials, as a sweep with one search seed does; its "orders" are the design's random draws.
Compute counts every trial started, baselines included, against the whole grid (the
scheduler replays' measure), and on the D x G pairs alone against the grid's pairs.

``random`` runs the baselines and then pairs drawn at random, as many as the structured
search's budget: what structure is worth, measured against no structure.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gansweep.core.errors import GansweepError
from gansweep.core.metrics import METRICS
from gansweep.core.trial import Trial
from gansweep.sweep.replay import Chooser, RecordedTrial, Recording, Summary, replay
from gansweep.sweep.replay_options import Variant, parse_options
from gansweep.sweep.schema import Search
from gansweep.sweep.search import FINISHED, Context, Pair, StructuredSearch
from gansweep.sweep.validate import SEARCH_TYPES, check_search

# --searcher's keys and the type each is read as (their ranges: sweep.validate)
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
    with keys max_pairs, fraction, stop, in the ranges of a spec's search section."""
    kind, _, body = text.partition(":")
    if kind not in ("grid", "structured", "random") or (kind == "grid" and body):
        raise GansweepError(f"--searcher {text!r}: give grid, structured or random, the last "
                            f"two optionally with :key=value,... (keys {', '.join(KEYS)})")
    values = parse_options("--searcher", text, body, KEYS)
    check_search(values, f"--searcher {text!r}", lambda key: f"--searcher {text!r}: {key}")
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
        chosen, known = set(self._chosen(c)), set(c.known.values())
        unrun = [p for p in c.pairs if p not in chosen and p not in known]
        return unrun[0] if unrun and len(chosen) < c.budget else FINISHED


class SearchChooser(Chooser):
    """A search over one seed's recorded trials, as the replay's chooser."""

    def __init__(self, recording: Recording, trials: Sequence[RecordedTrial],
                 searcher: Searcher, seed: int):
        self.trials = list(trials)
        grid = [Trial.from_dict({**json.loads(t.setting), "seed": t.seed, "index": n})
                for n, t in enumerate(self.trials)]
        cls = RandomSearch if searcher.kind == "random" else StructuredSearch
        self.search = cls(grid, replace(searcher.settings, seed=seed),
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


def replay_searcher(recording: Recording, searcher: Searcher, variant: Variant, orders: int,
                    concurrency: Sequence[int], seed: int = 0) -> Summary:
    """``orders`` replays of each search seed's trials at each concurrency, the searcher
    choosing the trials (a grid: in a random order) and the variant's scheduler stopping
    them."""
    truth = recording.truth()
    loss = METRICS.get(recording.metric).loss
    best = min(truth, key=lambda k: loss(truth[k]))
    pairs = pair_trials(recording)
    rng = np.random.default_rng(seed)
    out = Summary(variant, [], [], [], searcher=str(searcher))
    for s in recording.seeds:
        trials = [t for t in recording.trials if t.seed == s]
        for c in concurrency:
            for k in range(orders):
                if searcher.kind == "grid":
                    chooser = Chooser([trials[i] for i in rng.permutation(len(trials))])
                else:
                    chooser = SearchChooser(recording, trials, searcher, seed + k)
                o = replay(recording, variant, trials, c, chooser)
                ran = [recording.same[t.setting] for t in trials
                       if o.stops.get(t.trial_id, 0) >= recording.max_iters]
                out.add(o, recording.metric, truth, best, pairs, ran)
    return out
