"""Optuna's samplers as searchers of the replay (``sweep.replays.searchers``): the same
recordings, the same baselines first, the same budget in pairs and the same measure as the
structured search, only the choice of the next pair is Optuna's. Needs the ``bench`` extra
(``pip install -e '.[bench]'``); gansweep itself does not import Optuna.

A pair is two categorical parameters, D's partition and G's (the grid's levels). The
baselines that are grid pairs (fine-tune, freeze, freeze-d) are told to the study as
finished trials when they end, as the structured search's model sees them. Optuna may ask
for a pair that already ran: it is told that pair's recorded result (or, still running,
marked failed) and asked again, so every budgeted pair is a new one, as in the other
searchers; after 50 repeats the next unrun pair in a random order is run.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from gansweep.core.trial import Trial
from gansweep.sweep.searchers.structured import FINISHED, Context, Pair, StructuredSearch
from gansweep.sweep.spec.schema import Search

optuna.logging.set_verbosity(logging.WARNING)
# Both samplers sample at random for their first n_startup_trials; Optuna's default, 10, is
# most of the budgets measured here, so they get 4 (the structured design's size), counting
# the baselines' pairs told to them.
STARTUP = 4
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP,
                                                   multivariate=True, constant_liar=True),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP),
}


def optuna_policy(name: str) -> type[StructuredSearch]:
    """A search class (``SearchChooser``'s ``policy``) that asks Optuna's sampler ``name``."""

    class OptunaSearch(StructuredSearch):
        def __init__(self, trials: Sequence[Trial], settings: Search, loss):
            super().__init__(trials, settings, loss)
            self.rng = np.random.default_rng(settings.seed)
            self.studies: dict[str, optuna.Study] = {}
            self.asked: dict[int, tuple[optuna.Study, optuna.Trial]] = {}  # index -> trial
            self.space: dict[str, dict[str, CategoricalDistribution]] = {}
            for c in self.contexts.values():
                c.design = []
                self.studies[c.key] = optuna.create_study(sampler=SAMPLERS[name](settings.seed))
                self.space[c.key] = {
                    "d": CategoricalDistribution(sorted({d for d, _ in c.pairs})),
                    "g": CategoricalDistribution(sorted({g for _, g in c.pairs}))}

        def observe(self, index: int, value: float | None) -> None:
            super().observe(index, value)
            result = self.results.get(index)
            if index in self.asked:
                study, trial = self.asked.pop(index)
                study.tell(trial, result, state=TrialState.COMPLETE if result is not None
                           else TrialState.FAIL)
                return
            for c in self.contexts.values():  # a baseline that is a grid pair
                pair = c.known.get(index)
                if pair is not None and result is not None and pair in c.pairs:
                    self.studies[c.key].add_trial(create_trial(
                        params={"d": pair[0], "g": pair[1]}, distributions=self.space[c.key],
                        value=result))

        def _decide(self, c: Context) -> Pair | str | None:
            if self.done(c):
                return FINISHED
            unrun = self.unrun(c, set(self.chosen(c)))
            study = self.studies[c.key]
            done = {p: self.results.get(n) for p in c.pairs for n in c.trials[p]}
            done.update({p: self.results.get(n) for n, p in c.known.items()})
            for _ in range(50):
                trial = study.ask(self.space[c.key])
                pair = (trial.params["d"], trial.params["g"])
                if pair in unrun:
                    self.asked[c.trials[pair][0]] = study, trial
                    return pair
                known = done.get(pair)
                study.tell(trial, known, state=TrialState.COMPLETE if known is not None
                           else TrialState.FAIL)
            return unrun[int(self.rng.integers(len(unrun)))]

    OptunaSearch.__name__ = f"Optuna{name.upper()}Search"
    return OptunaSearch
