"""Which trials of the search a sweep runs (``search:`` in a spec): every one (``grid``,
Tune's grid), or the pairs a model of the partition effects picks (``structured``). The
structured policy is here, without Ray: the live sweep's Tune searcher (``sweep.searcher``)
and ``gansweep replay --searcher`` (``sweep.replay_search``) drive the same object.

Per context (the trials' settings but the pair and the seed: source, target, the axes),
the structured search
1. runs every baseline first: they are the comparison, and those that are partition pairs
   (fine-tune is D(0,0,L)G(0,0,L), freeze-d, freeze, scale-shift) are observations of the
   model too; a grid pair that is a baseline's partitions is not run again;
2. runs a design covering every D and every G partition of the grid: a Latin rectangle
   of max(#D, #G) pairs, drawn from ``search.seed``;
3. then fits the partition model (``sweep.structure``) to every trial of the context that
   ran to the end and runs the unrun pair with the largest expected improvement over the
   best observed pair (by its posterior mean), pairs still running counted as observed at
   their predicted mean, so that concurrent suggestions spread out;
4. until the context's budget of pairs is spent (``max_pairs``, or ``fraction`` of the
   grid's pairs), every pair has run, or (``stop``) no unrun pair's expected improvement
   exceeds ``stop`` times one trial's noise sd.
A chosen pair runs on every search seed; its seeds are replicates that measure the noise.
A trial stopped early (by ASHA) or diverged counts as run, but only trials that ran to the
end inform the model: an early score is not a final one.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gansweep.core.errors import GansweepError
from gansweep.core.registry import Registry
from gansweep.core.treatments import BASELINES
from gansweep.core.trial import Trial
from gansweep.sweep.structure import Observation, Posterior

SEARCH_FILE = "gansweep/search.json"  # the structured search's state (sweep.searcher)
FINISHED = "finished"  # next(): no trial will ever be suggested again
MIN_OBSERVED = 3  # finished trials of a context before the model chooses (else: wait)
NOT_CONTEXT = ("label", "d", "g", "baseline", "seed", "phase", "index")
Pair = tuple[str, str]


def context_key(trial: Trial) -> str:
    """What a trial's pair is compared within: its settings but the pair (or baseline)
    and its seed."""
    return json.dumps({k: v for k, v in trial.to_dict().items() if k not in NOT_CONTEXT},
                      sort_keys=True)


def units_of(partition: str) -> int:
    return sum(int(x) for x in partition[2:-1].split(","))


def baseline_partitions(trial: Trial, ld: int, lg: int) -> Pair | None:
    """The (D, G) partitions a baseline trial trains, None for scratch."""
    parts = BASELINES.get(trial.baseline)(ld, lg, trial.freeze_d_depth)
    return None if parts is None else (str(parts[0]), str(parts[1]))


def latin_design(pairs: Sequence[Pair], excluded: set[Pair], seed: int) -> list[Pair]:
    """max(#D, #G) pairs among ``pairs`` (not ``excluded``) in which every D and every G
    partition of ``pairs`` appears, each as evenly as possible: a random Latin rectangle,
    repaired by swaps where a drawn pair is not available; a greedy cover if none is."""
    ds = list(dict.fromkeys(d for d, _ in pairs))
    gs = list(dict.fromkeys(g for _, g in pairs))
    allowed = [p for p in pairs if p not in excluded]
    ok = set(allowed)
    n = max(len(ds), len(gs))
    rng = np.random.default_rng(seed)

    def sequence(levels: list[str]) -> list[str]:
        out = [levels[i] for i in rng.permutation(len(levels))]
        return out + [levels[i] for i in rng.permutation(len(levels))[:n - len(levels)]]

    for _ in range(200):
        dl, gl = sequence(ds), sequence(gs)
        for k in range(n):  # repair: swap G partitions until pair k is available
            if (dl[k], gl[k]) in ok:
                continue
            for m in rng.permutation(n):
                if (dl[k], gl[m]) in ok and (dl[m], gl[k]) in ok:
                    gl[k], gl[m] = gl[m], gl[k]
                    break
        design = list(zip(dl, gl))
        if all(p in ok for p in design) and len(set(design)) == n:
            return design
    design: list[Pair] = []  # greedy: the pair covering most uncovered partitions
    for p in sorted(allowed, key=lambda p: rng.random()):
        if p[0] not in {d for d, _ in design} or p[1] not in {g for _, g in design}:
            design.append(p)
    return design


@dataclass
class Context:
    """One context's grid: its candidate pairs and the trials (one per seed) of each, the
    baseline trials that observe a pair, its design and budget."""

    key: str
    pairs: list[Pair] = field(default_factory=list)
    trials: dict[Pair, list[int]] = field(default_factory=dict)
    known: dict[int, Pair] = field(default_factory=dict)  # baseline trial -> its pair
    design: list[Pair] = field(default_factory=list)
    budget: int = 0


@dataclass(frozen=True)
class Settings:
    """The structured search's knobs (a spec's ``search`` section, or a replay's)."""

    max_pairs: int | None = None
    fraction: float | None = None
    stop: float | None = None
    seed: int = 0

    def budget(self, pairs: int) -> int:
        if self.max_pairs is not None:
            return min(self.max_pairs, pairs)
        return min(pairs, math.ceil((self.fraction if self.fraction is not None
                                     else DEFAULT_FRACTION) * pairs - 1e-9))


DEFAULT_FRACTION = 1 / 3


class StructuredSearch:
    """The structured search over a sweep's search trials (grid order; their ``index``
    is where they are in ``trials``). ``next`` gives the index of the next trial to start;
    ``observe`` takes a trial's outcome. Its state (``to_dict``) is what was given out,
    what is queued and every outcome: the same state gives the same next suggestion."""

    def __init__(self, trials: Sequence[Trial], settings: Settings, loss: Callable[[float],
                 float]):
        self.trials, self.settings, self.loss = list(trials), settings, loss
        pairs = [t for t in self.trials if t.d is not None and t.g is not None]
        if not pairs or any(t.g_plan is not None for t in self.trials):
            raise GansweepError("search: structured needs a grid of D x G partition pairs "
                                "without per-unit plans; keep search: {type: grid} for it")
        ld, lg = units_of(pairs[0].d), units_of(pairs[0].g)
        self.contexts: dict[str, Context] = {}
        for n, t in enumerate(self.trials):
            if t.d is not None:
                c = self.contexts.setdefault(context_key(t), Context(context_key(t)))
                if (t.d, t.g) not in c.trials:
                    c.pairs.append((t.d, t.g))
                c.trials.setdefault((t.d, t.g), []).append(n)
        self.baselines = [n for n, t in enumerate(self.trials) if t.baseline is not None]
        for n in self.baselines:
            c = self.contexts.get(context_key(self.trials[n]))
            pair = baseline_partitions(self.trials[n], ld, lg)
            if c is not None and pair is not None:
                c.known[n] = pair
        for k, c in enumerate(self.contexts.values()):
            observed = set(c.known.values())
            c.design = latin_design(c.pairs, observed, settings.seed + k)
            c.budget = max(settings.budget(len(c.pairs)), len(c.design))
        self.given: list[int] = []  # trial indices handed out, in order
        self.queue: list[int] = list(self.baselines)  # chosen, not yet handed out
        self.results: dict[int, float | None] = {}  # final loss, None: did not run to the end

    # --- state ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"given": self.given, "queue": self.queue,
                "results": {str(n): v for n, v in self.results.items()}}

    def load(self, data: dict[str, Any]) -> None:
        self.given, self.queue = list(data["given"]), list(data["queue"])
        self.results = {int(n): v for n, v in data["results"].items()}

    def planned(self) -> int:
        """Trials the search will have run at most: those chosen, plus each unfinished
        context's remaining budget on every seed."""
        out = len(self.given) + len(self.queue)
        for c in self.contexts.values():
            if self._decide(c, peek=True) != FINISHED:
                seeds = max(len(v) for v in c.trials.values())
                out += (c.budget - len(self._chosen(c))) * seeds
        return out

    # --- the policy ------------------------------------------------------------------------

    def observe(self, index: int, value: float | None) -> None:
        """A trial ended: ``value`` is its final score if it ran to the end (None if it
        was stopped early, diverged or errored)."""
        finite = value is not None and math.isfinite(self.loss(value))
        self.results[index] = self.loss(value) if finite else None

    def next(self) -> int | str | None:
        """The next trial to start; None: wait for results; FINISHED: no more."""
        if not self.queue:
            waiting = False
            for c in sorted(self.contexts.values(), key=lambda c: len(self._chosen(c))):
                pair = self._decide(c)
                if pair is None:
                    waiting = True
                elif pair != FINISHED:
                    self.queue += c.trials[pair]
                    break
            else:
                return None if waiting else FINISHED
        index = self.queue.pop(0)
        self.given.append(index)
        return index

    def _chosen(self, c: Context) -> list[Pair]:
        taken = set(self.given) | set(self.queue)
        return [p for p in c.pairs if any(n in taken for n in c.trials[p])]

    def observations(self, c: Context) -> list[Observation]:
        """Every trial of the context that ran to the end (baselines that are pairs too)."""
        out = [Observation(*pair, self.results[n]) for n, pair in c.known.items()
               if self.results.get(n) is not None]
        return out + [Observation(*p, self.results[n]) for p in c.pairs for n in c.trials[p]
                      if self.results.get(n) is not None]

    def posterior(self, c: Context) -> Posterior | None:
        obs = self.observations(c)
        return Posterior(obs) if len(obs) >= MIN_OBSERVED else None

    def _decide(self, c: Context, peek: bool = False) -> Pair | str | None:
        """The context's next pair; None: wait; FINISHED: the context is done."""
        chosen = set(self._chosen(c))
        known = set(c.known.values())
        unrun = [p for p in c.pairs if p not in chosen and p not in known]
        if len(chosen) >= c.budget or not unrun:
            return FINISHED
        for p in c.design:
            if p not in chosen:
                return p
        if peek:
            return None
        model = self.posterior(c)
        if model is None:
            return None
        running = [p for p in chosen if any(n not in self.results for n in c.trials[p])]
        running += [p for n, p in c.known.items() if n not in self.results]
        observed = [(o.d, o.g) for o in model.observations]
        incumbent = float(np.min(model.predict([d for d, _ in observed],
                                               [g for _, g in observed])[0]))
        gain = model.believing(running).expected_improvement(
            [d for d, _ in unrun], [g for _, g in unrun], incumbent)
        best = int(np.argmax(gain))
        if self.settings.stop is not None and gain[best] < self.settings.stop * model.noise_sd:
            return None if running else FINISHED
        return unrun[best]


@dataclass(frozen=True)
class SearchKind:
    """A ``search.type``: whether it chooses which trials run (else every trial of the
    grid runs) and what it needs of the grid."""

    name: str
    description: str
    chooses: bool
    needs_pairs: bool  # a D x G partition grid without plans


SEARCHES: Registry[SearchKind] = Registry("search type")
SEARCHES.register("grid")(SearchKind("grid", "every trial of the grid (Ray Tune's grid)",
                                     chooses=False, needs_pairs=False))
SEARCHES.register("structured")(SearchKind(
    "structured", "baselines, a design covering every partition, then the pairs a model of "
    "the partition effects expects most of", chooses=True, needs_pairs=True))
