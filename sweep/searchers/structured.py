"""Which trials of the search a sweep runs (``search:`` in a spec, ``sweep.spec.schema.Search``):
every one (``grid``, Tune's grid), or the pairs a model of the partition effects picks
(``structured``). The structured policy is here, without Ray: the live sweep's Tune searcher
(``sweep.run.searcher``) and ``gansweep replay --searcher`` (``sweep.replays.searchers``) drive the
same object.

Per context (the trials' settings but the pair and the seed: source, target, the axes),
the structured search
1. runs every baseline first: they are the comparison, and those that are partition pairs
   (for L = 5 fine-tune is D(0,0,5)G(0,0,5); freeze, freeze-d and scale-shift are pairs too)
   are observations of the model; a grid pair that is a baseline's is not run again;
2. runs a design that, with the baselines' pairs, covers every D and every G partition of
   the grid: the uncovered partitions in a random order, paired (a random transversal),
   drawn from ``search.seed``;
3. then fits the partition model (``sweep.searchers.model``) to every trial of the context that
   ran to the end and runs the unrun pair with the largest expected improvement over the
   best observed pair (by its posterior mean), pairs still running counted as observed at
   their predicted mean, so that concurrent suggestions spread out;
4. until the context's budget of pairs is spent (``Search.budget``), every pair has run, or
   (``stop``) no unrun pair's expected improvement exceeds ``stop`` times one trial's noise sd.
5. then (``sweep.searchers.confirm``, run by the driver's confirmation phase) its top
   ``confirm_top`` candidates rerun on further seeds; the pick is on the mean.
A chosen pair runs on every search seed: its seeds are replicates that measure the noise.
A trial stopped early (by ASHA) or diverged counts as run, but only trials that ran to the
end inform the model: an early score is not a final one. With too few of those to fit the
model and nothing running (ASHA stopped the design), the next pair is drawn at random.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gansweep.core.errors import GansweepError
from gansweep.core.treatments import BASELINES, Partition
from gansweep.core.trial import SETTING_EXCLUDES, Trial
from gansweep.sweep.searchers.model import Observation, Posterior
from gansweep.sweep.spec.schema import Search

FINISHED = "finished"  # next(): no trial will ever be suggested again
MIN_OBSERVED = 3  # finished trials of a context before the model chooses
# A context is a setting (core.trial) without its pair or baseline.
NOT_CONTEXT = (*SETTING_EXCLUDES, "label", "d", "g", "baseline")
Pair = tuple[str, str]


def context_key(trial: Trial) -> str:
    """What a trial's pair is compared within: its settings but the pair (or baseline)
    and its seed."""
    return json.dumps({k: v for k, v in trial.to_dict().items() if k not in NOT_CONTEXT},
                      sort_keys=True)


def baseline_partitions(trial: Trial, ld: int, lg: int) -> Pair | None:
    """The (D, G) partitions a baseline trial trains, None for scratch."""
    parts = BASELINES.get(trial.baseline)(ld, lg, trial.freeze_d_depth)
    return None if parts is None else (str(parts[0]), str(parts[1]))


def cover_design(pairs: Sequence[Pair], known: set[Pair], seed: int) -> list[Pair]:
    """Pairs among ``pairs`` (none of ``known``) that, with ``known``, cover every D and
    every G partition of ``pairs``: as many as the more numerous side's uncovered
    partitions, each uncovered one once, paired at random (the other side topped up with
    random partitions), repaired by swaps where a pair is not in the grid; a greedy cover
    if no draw works."""
    ds = list(dict.fromkeys(d for d, _ in pairs))
    gs = list(dict.fromkeys(g for _, g in pairs))
    need_d = [d for d in ds if d not in {k[0] for k in known}]
    need_g = [g for g in gs if g not in {k[1] for k in known}]
    n = max(len(need_d), len(need_g))
    ok = set(pairs) - known
    rng = np.random.default_rng(seed)

    def line(need: list[str], levels: list[str]) -> list[str]:
        return [need[i] for i in rng.permutation(len(need))] + \
            [levels[i] for i in rng.integers(len(levels), size=n - len(need))]

    for _ in range(200):
        dl, gl = line(need_d, ds), line(need_g, gs)
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
    design: list[Pair] = []  # greedy: any pair covering a partition not covered yet
    for p in (pairs[i] for i in rng.permutation(len(pairs))):
        if p not in ok:
            continue
        covered_d = {d for d, _ in [*design, *known]}
        covered_g = {g for _, g in [*design, *known]}
        if p[0] not in covered_d or p[1] not in covered_g:
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


class StructuredSearch:
    """The structured search over a sweep's search trials (grid order: a trial's ``index``
    is where it is in ``trials``). ``next`` gives the index of the next trial to start;
    ``observe`` takes a trial's outcome. Its state (``to_dict``) is what was given out, what
    is queued and every outcome: the same state gives the same next suggestion."""

    def __init__(self, trials: Sequence[Trial], settings: Search,
                 loss: Callable[[float], float]):
        self.trials, self.settings, self.loss = list(trials), settings, loss
        pairs = [t for t in self.trials if t.d is not None and t.g is not None]
        if not pairs or any(t.g_plan is not None for t in self.trials):
            raise GansweepError("search: structured needs a grid of D x G partition pairs "
                                "without per-unit plans; keep search: {type: grid} for it")
        ld, lg = Partition.parse(pairs[0].d).units, Partition.parse(pairs[0].g).units
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
            c.design = cover_design(c.pairs, set(c.known.values()), settings.seed + k)
            c.budget = max(settings.budget(len(c.pairs)), len(c.design))
        self.given: list[int] = []  # trial indices handed out, in order
        self.queue: list[int] = list(self.baselines)  # chosen, not yet handed out
        self.results: dict[int, float | None] = {}  # final loss, None: did not run to the end
        self.finished = False  # next() said FINISHED
        # context -> its last fit and the observations it fitted
        self._fits: dict[str, tuple[list[Observation], Posterior]] = {}

    # --- state ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"given": list(self.given), "queue": list(self.queue),
                "results": {str(n): v for n, v in self.results.items()},
                "finished": self.finished}

    def load(self, data: dict[str, Any]) -> None:
        self.given, self.queue = list(data["given"]), list(data["queue"])
        self.results = {int(n): v for n, v in data["results"].items()}
        self.finished = data["finished"]

    def planned(self) -> int:
        """The trials the search will have run: those chosen, plus (until it finished)
        each context's budget left, on every seed: an upper bound under ``stop``."""
        out = len(self.given) + len(self.queue)
        if self.finished:
            return out
        for c in self.contexts.values():
            chosen = set(self.chosen(c))
            unrun = self.unrun(c, chosen)
            seeds = max((len(c.trials[p]) for p in unrun), default=0)
            out += max(min(c.budget - len(chosen), len(unrun)), 0) * seeds
        return out

    @property
    def running(self) -> list[int]:
        """Trials handed out that have not ended."""
        return [n for n in self.given if n not in self.results]

    # --- the policy ------------------------------------------------------------------------

    def observe(self, index: int, value: float | None) -> None:
        """A trial ended: ``value`` is its final score if it ran to the end (None if it
        was stopped early, diverged or errored). A trial observed again (a retried or
        restored one) keeps its first final score."""
        if self.results.get(index) is not None:
            return
        finite = value is not None and math.isfinite(self.loss(value))
        self.results[index] = self.loss(value) if finite else None

    def next(self) -> int | str | None:
        """The next trial to start; None: wait for results; FINISHED: no more."""
        if not self.queue:
            waiting = False
            for c in sorted(self.contexts.values(), key=lambda c: len(self.chosen(c))):
                pair = self._decide(c)
                if pair is None:
                    waiting = True
                elif pair != FINISHED:
                    self.queue += c.trials[pair]
                    break
            else:
                self.finished = not waiting
                return None if waiting else FINISHED
        index = self.queue.pop(0)
        self.given.append(index)
        return index

    @staticmethod
    def unrun(c: Context, chosen: set[Pair]) -> list[Pair]:
        """The context's pairs not chosen yet and not a baseline's, in the context's order."""
        known = set(c.known.values())
        return [p for p in c.pairs if p not in chosen and p not in known]

    def chosen(self, c: Context) -> list[Pair]:
        """The context's pairs handed out or queued, in the context's order."""
        taken = set(self.given) | set(self.queue)
        return [p for p in c.pairs if any(n in taken for n in c.trials[p])]

    def done(self, c: Context) -> bool:
        """The context chooses no more pairs: its budget is spent or no pair is unrun."""
        chosen = set(self.chosen(c))
        return len(chosen) >= c.budget or not self.unrun(c, chosen)

    def observations(self, c: Context) -> list[Observation]:
        """Every trial of the context that ran to the end (baselines that are pairs too)."""
        out = [Observation(*pair, self.results[n]) for n, pair in c.known.items()
               if self.results.get(n) is not None]
        return out + [Observation(*p, self.results[n]) for p in c.pairs for n in c.trials[p]
                      if self.results.get(n) is not None]

    def posterior(self, c: Context) -> Posterior | None:
        """The model of the context's finished trials (None: fewer than MIN_OBSERVED);
        refitted only when they changed (a result elsewhere leaves it as it is)."""
        obs = self.observations(c)
        if len(obs) < MIN_OBSERVED:
            return None
        if c.key not in self._fits or self._fits[c.key][0] != obs:
            self._fits[c.key] = obs, Posterior(obs)
        return self._fits[c.key][1]

    def _decide(self, c: Context) -> Pair | str | None:
        """The context's next pair; None: wait; FINISHED: the context is done."""
        if self.done(c):
            return FINISHED
        chosen = set(self.chosen(c))
        unrun = self.unrun(c, chosen)
        for p in c.design:
            if p not in chosen:
                return p
        running = [p for p in chosen if any(n not in self.results for n in c.trials[p])]
        running += [p for n, p in c.known.items() if n not in self.results]
        model = self.posterior(c)
        if model is None:  # wait for the running; with none, a random pair (ASHA stopped them)
            rng = np.random.default_rng([self.settings.seed, len(chosen)])
            return None if running else unrun[int(rng.integers(len(unrun)))]
        observed = [(o.d, o.g) for o in model.observations]
        incumbent = float(np.min(model.predict([d for d, _ in observed],
                                               [g for _, g in observed])[0]))
        gain = model.believing(running).expected_improvement(
            [d for d, _ in unrun], [g for _, g in unrun], incumbent)
        best = int(np.argmax(gain))
        if self.settings.stop is not None and gain[best] < self.settings.stop * model.noise_sd:
            return None if running else FINISHED
        return unrun[best]
