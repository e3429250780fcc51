"""What a trial is ranked by, and how settings are compared. No Ray here: the live trial, the
scheduler, ``gansweep replay`` and the report all call these functions.

A trial's **score** at an evaluation is its rung signal: a rule over the metric's values so far
(``last``, the ``mean`` of the last ``window`` values, or the ``best`` so far), where an
evaluation made with more generated samples at a rung (``fid_rung``) stands in for the plain
value. Its **score_sd** is the score's sampling noise, from the evaluations' ``fid_sd``
(bootstrap over the generated features, ``core.metrics.fid_sd``); None where a metric has no
noise estimate.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gansweep.core.errors import GansweepError
from gansweep.core.metrics import METRICS
from gansweep.core.trial import setting_key

SCORE_RULES = ("last", "mean", "best")


@dataclass(frozen=True)
class ScoreRule:
    """How a trial's evaluations become its rung signal."""

    rule: str = "last"
    window: int = 1  # evaluations averaged by the 'mean' rule

    def __post_init__(self) -> None:
        if self.rule not in SCORE_RULES:
            raise GansweepError(f"scheduler.score: {self.rule!r} is not one of {SCORE_RULES}")
        if not isinstance(self.window, int) or self.window < 1:
            raise GansweepError(f"scheduler.window: {self.window!r} must be a positive integer")


def values(history: Sequence[dict[str, Any]], metric: str) -> list[tuple[float, float | None]]:
    """(value, sd) per evaluation; the rung evaluation's larger-sample FID where there is
    one."""
    m, out = METRICS.get(metric), []
    for record in history:
        if metric == "fid" and record.get("fid_rung") is not None:
            out.append((record["fid_rung"], record.get("fid_rung_sd")))
        else:
            value = record.get(metric)
            out.append((m.worst if value is None else value,
                        None if m.sd is None else record.get(m.sd)))
    return out


def score(history: Sequence[dict[str, Any]], metric: str,
          rule: ScoreRule) -> tuple[float, float | None]:
    """The trial's score and its sampling sd after the evaluations in ``history``."""
    series, m = values(history, metric), METRICS.get(metric)
    if not series or not all(math.isfinite(v) for v, _ in series[-rule.window:]):
        return m.worst, None
    if rule.rule == "last":
        return series[-1]
    if rule.rule == "best":
        return min(series, key=lambda vs: m.loss(vs[0]))
    window = series[-rule.window:]
    mean = float(np.mean([v for v, _ in window]))
    sds = [sd for _, sd in window]
    sd = None if any(s is None for s in sds) else float(np.sqrt(np.sum(np.square(sds))))
    return mean, None if sd is None else sd / len(window)


# --- comparing settings over seeds ---------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided 95 % Student-t interval over n values."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:.2f} (n = {self.n}: no interval)"
        return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}] (n = {self.n})"

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)


def interval(sample: Sequence[float], level: float = 0.95) -> Interval:
    """The mean of ``sample`` and its t-interval (no interval for fewer than 2 values)."""
    x = np.asarray(sample, dtype=float)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, math.nan, math.nan, len(x))
    from scipy import stats  # here: a trial imports this module, and scipy.stats is slow

    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half, len(x))


def paired(a: dict[int, float], b: dict[int, float]) -> Interval:
    """The mean difference a - b over the seeds both have, with its t-interval."""
    seeds = sorted(set(a) & set(b))
    return interval([a[s] - b[s] for s in seeds])


# --- the confirmation phase's selection ------------------------------------------------------

def rank_settings(records: Sequence[dict[str, Any]],
                  metric: str) -> list[tuple[str, float, int]]:
    """Settings of the search, best first: (setting key, mean score, iterations reached).
    A setting whose trials got further ranks first (a trial stopped at a rung has a score
    from fewer iterations); among those at the same depth, the better mean score of the
    trials that got there. Records are ``trials.json`` records (config, status, iteration,
    last)."""
    by_setting: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        value = (r.get("last") or {}).get("score")
        if r["status"] == "errored" or value is None:
            continue
        by_setting.setdefault(setting_key(r["config"]), []).append((r["iteration"], value))
    ranked = []
    for setting, scored in by_setting.items():
        depth = max(it for it, _ in scored)
        ranked.append((setting, float(np.mean([v for it, v in scored if it == depth])), depth))
    return sorted(ranked, key=lambda x: (-x[2], METRICS.get(metric).loss(x[1])))
