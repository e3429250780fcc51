"""The structured search's confirmation, inside its budget: after its pairs, its top
``Search.confirm_top`` candidates rerun on ``Search.confirm_seeds`` further seeds, and the
pick is the candidate with the best mean over all its seeds. The live sweep
(``sweep.run.driver``), its verdict (``sweep.record.verdict``) and the replay
(``sweep.replays.searchers``) use these functions, so they choose alike on the same results.

Why: only a few settings are near the best and one seed's FID ranks them by luck (its noise,
~4% of the FID on the emoji grid, is as large as their differences), so the lowest
single-seed score often names a runner-up. The candidates are the best by the observed
score and the best by the model's posterior mean (which pools each pair with its
neighbours, and so shrinks one lucky seed), alternately: the two ways a runner-up hides.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from gansweep.core.trial import Trial
from gansweep.sweep.searchers.structured import StructuredSearch, context_key
from gansweep.sweep.spec.schema import Search

Setting = tuple[int, ...]  # a setting's search trials, as trial indices (one per seed)


def settings_run(search: StructuredSearch) -> dict[Setting, tuple[float, float]]:
    """Each setting with a trial that ran to the end -> (its observed mean final loss, the
    model's posterior mean at its pair, or the observed mean where it has no pair or the
    context no model)."""
    out: dict[Setting, tuple[float, float]] = {}
    for c in search.contexts.values():
        model = search.posterior(c)
        groups: dict[Setting, tuple[str, str] | None] = {tuple(c.trials[p]): p for p in c.pairs}
        by_key: dict[str, list[int]] = {}  # a baseline's trials, one per seed
        for n in search.baselines:
            if _context_of(search, n) == c.key:
                by_key.setdefault(search.trials[n].setting_key, []).append(n)
        for indices in by_key.values():
            groups[tuple(indices)] = c.known.get(indices[0])
        for setting, pair in groups.items():
            values = [search.results[n] for n in setting if search.results.get(n) is not None]
            if not values:
                continue
            observed = float(np.mean(values))
            predicted = observed if model is None or pair is None else \
                float(model.predict([pair[0]], [pair[1]])[0][0])
            out[setting] = observed, predicted
    # a baseline of no context (scratch without pairs of its settings): observed only
    for n in search.baselines:
        if _context_of(search, n) is None and search.results.get(n) is not None:
            out.setdefault((n,), (search.results[n], search.results[n]))
    return out


def _context_of(search: StructuredSearch, n: int) -> str | None:
    key = context_key(search.trials[n])
    return key if key in search.contexts else None


def candidates(search: StructuredSearch, top: int) -> list[Setting]:
    """The ``top`` settings to confirm, best first: the best observed, the best predicted,
    the second observed, the second predicted, ... (each once)."""
    run = settings_run(search)
    observed = sorted(run, key=lambda k: run[k][0])
    predicted = sorted(run, key=lambda k: run[k][1])
    out: list[Setting] = []
    for a, b in zip(observed, predicted):
        for k in (a, b):
            if k not in out and len(out) < top:
                out.append(k)
    return out


def pick(search: StructuredSearch, chosen: Sequence[Setting],
         confirmed: Mapping[Setting, Sequence[float]]) -> Setting | None:
    """The candidate with the lowest mean loss over its search trials that ran to the end
    and its confirmation results (``confirmed``: loss values, those that ran to the end);
    without candidates, the best observed setting (a search without confirmation)."""
    run = settings_run(search)
    if not chosen:
        return min(run, key=lambda k: run[k][0], default=None)

    def mean(k: Setting) -> float:  # as the verdict: a non-finite confirmation is left out
        values = [search.results[n] for n in k if search.results.get(n) is not None]
        values += [v for v in confirmed.get(k, ()) if math.isfinite(v)]
        return float(np.mean(values)) if values else float("inf")
    return min(chosen, key=mean)


def chosen_settings(search: StructuredSearch) -> list[int]:
    """The candidates to confirm, each as the index of its first search trial (the trial
    whose settings the confirmation reruns on fresh seeds)."""
    return [k[0] for k in candidates(search, search.settings.confirm_top)]


def to_confirm(grid: Sequence[Trial], settings: Search, loss: Callable[[float], float],
               outcomes: Mapping[int, float | None]) -> list[str]:
    """The setting keys a finished structured search confirms, best first, from its trials'
    outcomes (grid index -> final score, None for a trial that did not run to the end)."""
    search = StructuredSearch(grid, settings, loss)
    for n, value in outcomes.items():
        search.observe(n, value)
    return [grid[n].setting_key for n in chosen_settings(search)]
