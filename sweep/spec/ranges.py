"""The range of every scheduler and search setting, stated once: a spec's ``scheduler:`` and
``search:`` blocks (``sweep.spec.validate``) and replay's ``--scheduler`` and ``--searcher``
options (``sweep.replays``) are checked here, each error naming the setting as the user
wrote it."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gansweep.core.errors import GansweepError
from gansweep.core.metrics import METRICS
from gansweep.sweep.spec.ranking import SCORE_RULES
from gansweep.sweep.spec.schema import Scheduler

# The types a search's settings take (their ranges: RANGES)
SEARCH_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "max_pairs": ((int,), "an integer"), "fraction": ((int, float), "a number"),
    "stop": ((int, float), "a number"), "confirm_top": ((int,), "an integer"),
    "confirm_seeds": ((int,), "an integer")}


def _finite(test: Callable[[float], bool]) -> Callable[[float], bool]:
    # an int is finite however large (math.isfinite cannot take one past a float's range)
    return lambda v: (isinstance(v, int) or math.isfinite(v)) and test(v)


RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "grace_period": (_finite(lambda v: v >= 1), ">= 1"),
    "reduction_factor": (_finite(lambda v: v > 1), "> 1"),
    "window": (_finite(lambda v: v >= 1), ">= 1"),
    "noise": (_finite(lambda v: v >= 0), ">= 0"),
    "max_pairs": (_finite(lambda v: v >= 1), ">= 1"),
    "fraction": (_finite(lambda v: 0 < v <= 1), "in (0, 1]"),
    "stop": (_finite(lambda v: v > 0), "> 0"),
    "confirm_top": (_finite(lambda v: 0 <= v <= 20), "in 0..20"),
    "confirm_seeds": (_finite(lambda v: 1 <= v <= 10), "in 1..10"),
}


def check_range(where: str, key: str, value: float) -> float:
    """``value`` of setting ``key`` in its range (``RANGES``); else one line naming
    ``where``, the value and the range."""
    test, rule = RANGES[key]
    if not test(value):
        raise GansweepError(f"{where}: {value!r} must be {rule}")
    return value


def check_scheduler(scheduler: Scheduler, metric: str, label: Callable[[str], str],
                    iters: int | None, fid_samples: int | None = None) -> Scheduler:
    """A scheduler's settings in their ranges for ``metric`` and a budget of ``iters``
    iterations (None: not known); ``label`` names a field as the user wrote it
    (``scheduler.noise``, replay's ``--scheduler 'x:noise=-1': noise``); ``fid_samples``: the
    budget's, which a rung FID must exceed (None: no rung FID)."""
    if scheduler.type not in ("asha", "none"):
        raise GansweepError(f"{label('type')}: {scheduler.type!r} is not 'asha' or 'none'")
    for key in ("grace_period", "reduction_factor", "window", "noise"):
        check_range(label(key), key, getattr(scheduler, key))
    if scheduler.type == "asha" and iters is not None and scheduler.grace_period >= iters:
        raise GansweepError(f"{label('grace_period')}: {scheduler.grace_period} must be less "
                            f"than the budget's {iters} iterations: ASHA stops no trial before "
                            f"its grace period")
    if scheduler.score not in SCORE_RULES:
        raise GansweepError(f"{label('score')}: {scheduler.score!r} is not one of "
                            f"{', '.join(SCORE_RULES)}")
    if scheduler.noise and METRICS.get(metric).sd is None:
        with_sd = [m for m in METRICS if METRICS.get(m).sd is not None]
        raise GansweepError(f"{label('noise')}: {scheduler.noise:g} needs a metric with a "
                            f"sampling sd ({', '.join(with_sd)}); {metric!r} has none")
    if scheduler.rung_fid_samples is not None and fid_samples is not None and (
            metric != "fid" or scheduler.rung_fid_samples <= fid_samples):
        raise GansweepError(f"{label('rung_fid_samples')}: {scheduler.rung_fid_samples} needs "
                            f"metric 'fid' and more than budget.fid_samples ({fid_samples})")
    return scheduler


def check_search(values: dict[str, Any], where: str, label: Callable[[str], str]) -> None:
    """A search's max_pairs, fraction, stop, confirm_top and confirm_seeds (those given) in
    their ranges, not both of the first two; ``label`` names a key as the user wrote it,
    ``where`` the whole."""
    for key in SEARCH_TYPES:
        if values.get(key) is not None:
            check_range(label(key), key, values[key])
    if values.get("max_pairs") is not None and values.get("fraction") is not None:
        raise GansweepError(f"{where}: give max_pairs ({values['max_pairs']}) or fraction "
                            f"({values['fraction']}), not both")
