"""What a replay reports (``Summary``), what it is judged by (``judge``: all the recorded
seeds; ``held_out``: one seed, the same for every row), and the one loop over search
seeds, concurrency and draws that every replay (``sweep.replays.schedulers``,
``sweep.replays.searchers``) runs."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gansweep.core.metrics import METRICS
from gansweep.sweep.replays.options import Variant

if TYPE_CHECKING:
    from gansweep.sweep.replays.schedulers import Outcome, RecordedTrial, Recording


@dataclass
class Summary:
    variant: Variant
    compute: list[float]  # fractions of the grid's trial-seconds
    regret: list[float]  # relative to the best setting's true value
    hit: list[bool]  # the best setting picked
    searcher: str | None = None  # what chose the trials (None: every trial, a grid)
    pairs: list[float] = field(default_factory=list)  # compute on the D x G pairs only
    found: list[float] = field(default_factory=list)  # regret of the best setting run
    held: list[float] = field(default_factory=list)  # regret against the seeds not run

    def add(self, o: Outcome, metric: str, truth: dict[str, float], best: str,
            pairs: set[str], ran: Sequence[str] | None = None,
            held: dict[str, float] | None = None) -> None:
        """One replay's figures: compute (all trials; the trial ids in ``pairs`` only),
        regret, hit; with ``ran`` (the settings that ran to the end), the regret of the best
        of them (what an error-free pick among them would have got); with ``held`` (each
        setting's mean over the seeds the replay did not run), the regret against it."""
        loss = METRICS.get(metric).loss
        if ran is not None:
            self.found.append(min((regret(truth, k, loss) for k in ran), default=math.inf))
        self.compute.append(o.spent_s / o.full_s)
        full_pairs = sum(v for k, v in o.cost.items() if k in pairs)
        if full_pairs:
            self.pairs.append(sum(v for k, v in o.spent.items() if k in pairs) / full_pairs)
        self.regret.append(regret(truth, o.pick, loss))
        self.hit.append(o.pick == best)
        if held:
            self.held.append(regret(held, o.pick, loss))

    def line(self) -> str:
        c, r = np.array(self.compute), np.array(self.regret)
        what = f"{self.searcher} + " if self.searcher else ""
        pairs = (f", pairs only {100 * np.median(self.pairs):.1f}%" if self.pairs and
                 self.searcher else "")
        return (f"{what}{self.variant}: compute {100 * np.median(c):.1f}% of the grid "
                f"({100 * c.min():.1f}-{100 * c.max():.1f}%{pairs}), regret median "
                f"{100 * np.median(r):.2f}%, 90th percentile {100 * np.percentile(r, 90):.2f}%, "
                f"best picked {100 * np.mean(self.hit):.0f}% of {len(r)} replays"
                + (f"; best setting run: regret median {100 * np.median(self.found):.2f}%, "
                   f"90th percentile {100 * np.percentile(self.found, 90):.2f}%"
                   if self.found else "")
                + (f"; held-out seeds: regret median {100 * np.median(self.held):.2f}%, "
                   f"90th percentile {100 * np.percentile(self.held, 90):.2f}%"
                   if self.held else ""))


def regret(truth: dict[str, float], pick: str | None, loss) -> float:
    """The pick's true value over the best's, minus 1, on the metric's better direction
    (inf: nothing picked)."""
    if pick is None:
        return math.inf
    best = min(truth.values(), key=loss)
    return (loss(truth[pick]) - loss(best)) / abs(best)


def judge(recording: Recording) -> tuple[dict[str, float], str]:
    """What every replay of ``recording`` is judged by: each setting's true value (its mean
    over all the recorded seeds, ``Recording.truth``) and the best setting by it."""
    truth, loss = recording.truth(), METRICS.get(recording.metric).loss
    return truth, min(truth, key=lambda k: loss(truth[k]))


def seeds_after(recording: Recording, s: int) -> list[int]:
    """The recorded seeds but ``s``, in a cycle from the one after it: a replay of search
    seed ``s`` confirms on the first ones (``sweep.replays.searchers.confirm_seeds``) and is
    judged on the last (``held_out``)."""
    seeds = recording.seeds
    at = seeds.index(s)
    return [seeds[(at + k) % len(seeds)] for k in range(1, len(seeds))]


def held_out(recording: Recording, s: int) -> list[int]:
    """The seed that judges every row of a replay of search seed ``s``, whatever the row
    confirms on, so that the rows' held-out regrets compare: the last of ``seeds_after`` (the
    one before ``s``), never the first (a confirmation always runs there), so none with fewer
    than 3 recorded seeds. A row that also confirms on it (on every other seed) reports no
    held-out regret rather than one on other seeds."""
    others = seeds_after(recording, s)
    return others[-1:] if len(others) > 1 else []


def replays(recording: Recording, orders: int, concurrency: Sequence[int], seed: int = 0
            ) -> Iterator[tuple[int, int, int, list[RecordedTrial], np.random.Generator]]:
    """The one replay loop: for each search seed, concurrency and draw, yields (search seed,
    concurrency, draw number, that seed's trials, the loop's random generator)."""
    rng = np.random.default_rng(seed)
    for s in recording.seeds:
        trials = [t for t in recording.trials if t.seed == s]
        for c in concurrency:
            for k in range(orders):
                yield s, c, k, trials, rng
