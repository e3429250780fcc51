"""The sweep's answer: which setting won, and how sure that is. The one meaning of "best"
that ``status``, the progress table, the end-of-sweep lines and the report print.

The winner is decided by the confirmation phase when the sweep has one (``confirm:`` in the
spec): the settings it reran are compared on the fresh seeds by their final score (the
spec's score rule at the last evaluation, ``sweep.spec.ranking``), each with its mean and 95 %
t-interval over the seeds, and paired with fine-tune, scratch and the runner-up on the same
seeds. Without one, the search's best setting (by the mean final score of its trials that
ran to the end) is named and marked as unconfirmed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gansweep.core.metrics import METRICS
from gansweep.core.treatments import Partition
from gansweep.core.trial import Trial
from gansweep.sweep.searchers.structured import baseline_partitions, context_key
from gansweep.sweep.spec.grid import setting_names
from gansweep.sweep.spec.ranking import Interval, interval, paired
from gansweep.sweep.spec.schema import SweepSpec


@dataclass
class Verdict:
    """The winning setting and how sure it is."""

    confirmed: bool
    metric: str
    what: str  # what the score is, in words
    ranking: list[tuple[str, Interval]]  # setting names, best first
    against: dict[str, Interval]  # paired differences winner - other, by other's name
    pending: int  # confirmation trials without a final score yet
    confirm_planned: bool = False  # the spec has a confirmation phase (that has not run yet)
    # each ranked name -> the setting keys it stands for (two for a pair and its twin baseline)
    settings: dict[str, set[str]] = field(default_factory=dict)
    # the structured search's own confirmation: its candidates ranked on the mean over their
    # search and confirmation seeds (``sweep.searchers.confirm``), not on fresh seeds alone
    within_search: bool = False

    @property
    def winner(self) -> str:
        return self.ranking[0][0]

    @property
    def how(self) -> str:
        """What decided the winner, in words."""
        return ("on the mean over its search and confirmation seeds" if self.within_search
                else "confirmed on fresh seeds") if self.confirmed else \
            "best of the search, not confirmed"

    def headline(self) -> str:
        """One line: the winner, its score and whether it is confirmed."""
        name, ci = self.ranking[0]
        return f"{name}, {self.what} {ci} ({self.how})"

    def compared(self, other: str, diff: Interval) -> str:
        """'W is lower (better) than OTHER by d [lo, hi] on n seeds': the paired difference
        winner - other (``diff``) stated in the direction it goes, so that d > 0 lies in its
        interval, and whether that direction is better for the metric."""
        lower = diff.mean < 0
        d, lo, hi = (-diff.mean, -diff.high, -diff.low) if lower else \
            (diff.mean, diff.low, diff.high)
        better = METRICS.get(self.metric).loss(diff.mean) < 0
        spread = f"[{lo:.2f}, {hi:.2f}]" if diff.n >= 2 else "(no interval)"
        seeds = f"{diff.n} seed{'s' if diff.n != 1 else ''}"
        if diff.mean == 0:
            return f"{self.winner} equals {other} on average, difference 0 {spread} on {seeds}"
        return (f"{self.winner} is {'lower' if lower else 'higher'} "
                f"({'better' if better else 'worse'}) than {other} by {d:.2f} {spread} on "
                f"{seeds}")

    def text(self) -> str:
        """The verdict in plain sentences (the report and the CLI print it)."""
        name, ci = self.ranking[0]
        if not self.confirmed and self.confirm_planned:
            return (f"Best setting of the search: {name}, {self.what} {ci}. Not confirmed yet: "
                    f"the spec's confirmation phase has not run; 'gansweep resume' runs it.")
        if not self.confirmed:
            return (f"Best setting of the search: {name}, {self.what} {ci}. Not confirmed: "
                    f"add 'confirm: {{top: k, seeds: [...]}}' to the spec to rerun the best "
                    f"settings and the baselines on fresh seeds.")
        out = [f"Winner on the confirmation seeds: {name}, {self.what} {ci} (mean [95% "
               f"interval])."] if not self.within_search else [
            f"Pick of the structured search's confirmation (its top {len(self.ranking)} "
            f"candidates rerun on further seeds, ranked on the mean over all their seeds): "
            f"{name}, {self.what} {ci} (mean [95% interval] over {ci.n} seeds)."]
        runner = self.ranking[1][0] if len(self.ranking) > 1 else None
        for other, diff in self.against.items():
            if other in ("runner-up", runner):  # the runner-up's sentence says it
                continue
            out.append(f"On the same seeds, {self.compared(other, diff)}"
                       + (" (a real difference)." if diff.excludes_zero else
                          " (not distinguishable: the interval includes 0)."))
        if len(self.ranking) > 1:
            runner, diff = self.ranking[1][0], self.against["runner-up"]
            if diff.excludes_zero:
                out.append(f"{self.compared(f'the runner-up, {runner},', diff)}.")
            else:
                out.append(f"It cannot be told apart from the runner-up, {runner}: "
                           f"{self.compared(runner, diff)}, an interval that includes 0; "
                           f"more seeds would be needed to separate them.")
        if self.pending:
            out.append(f"{self.pending} confirmation trials have no final score yet.")
        return " ".join(out)


def twins(trials: Sequence[Trial]) -> dict[str, str]:
    """Setting key of a D x G pair that trains what a baseline of its context trains (the
    freeze baseline is D(3,0,2)G(3,0,2) at L = 5) -> the baseline's setting key: one trained
    thing, whose trials count as one setting, shown with both names."""
    pairs = [t for t in trials if t.d is not None and t.g is not None]
    if not pairs:
        return {}
    ld, lg = Partition.parse(pairs[0].d).units, Partition.parse(pairs[0].g).units
    baselines = {}
    for t in trials:
        if t.baseline is not None and (p := baseline_partitions(t, ld, lg)) is not None:
            baselines[(context_key(t), p)] = t.setting_key
    return {t.setting_key: baselines[(context_key(t), (t.d, t.g))] for t in pairs
            if (context_key(t), (t.d, t.g)) in baselines}


def identity_names(trials: Sequence[Trial]) -> tuple[dict[str, str], dict[str, str]]:
    """Setting key -> name, a pair and the baseline it equals (``twins``) both named
    "baseline = pair"; and ``twins`` itself."""
    names, same = setting_names(trials), twins(trials)
    for pair, baseline in same.items():
        names[baseline] = names[pair] = f"{names[baseline]} = {names[pair]}"
    return names, same


def score_words(spec: SweepSpec) -> str:
    """What a trial's score is, in words."""
    rule = spec.scheduler.rule
    return (f"{spec.metric} (" + ("of the EMA generator, " if spec.ema_kimg is not None else "")
            + ("last evaluation" if rule.rule == "last" else
               f"mean of the last {rule.window} evaluations" if rule.rule == "mean" else
               "best evaluation") + ")")


def verdict(spec: SweepSpec, records: Sequence[dict[str, Any]],
            planned_confirm: int = 0) -> Verdict | None:
    """The winner of the confirmation phase, else of the search; None before any trial of
    the search has a final score. ``records``: trial records (``sweep.record.state``: config,
    status, last), or the same read off Tune's trials; ``planned_confirm``: the
    confirmation's trials, started or not."""
    trials = [Trial.from_dict(r["config"]) for r in records]
    names, same = identity_names(trials)
    confirm = [(t, r) for t, r in zip(trials, records) if t.phase == "confirm"]
    confirmed = bool(confirm)
    search = [(t, r) for t, r in zip(trials, records) if t.phase == "search"]
    # (a spec made by hand, as some callers pass, may have no search section: a grid's)
    within = spec.confirm is None and getattr(spec, "search", None) is not None and \
        spec.search.confirms
    pool = confirm or search
    if confirmed and within:  # the structured search's rule: the mean over all the seeds
        keys = {t.setting_key for t, _ in confirm}
        pool = [(t, r) for t, r in search if t.setting_key in keys] + confirm
    scores: dict[str, dict[int, list[float]]] = {}  # a pair and its twin baseline: one
    settings: dict[str, set[str]] = {}
    scored = scored_confirm = 0
    for t, r in pool:
        score = (r.get("last") or {}).get("score")
        if r["status"] != "finished" or score is None or (confirmed and not math.isfinite(score)):
            continue
        key = same.get(t.setting_key, t.setting_key)
        scores.setdefault(names[key], {}).setdefault(t.seed, []).append(score)
        settings.setdefault(names[key], set()).add(t.setting_key)
        scored += 1
        scored_confirm += t.phase == "confirm"
    if not scores:
        return None
    by_seed = {name: {seed: sum(v) / len(v) for seed, v in s.items()}
               for name, s in scores.items()}
    shown = {t.baseline: names[same.get(t.setting_key, t.setting_key)] for t, _ in pool
             if t.baseline is not None}
    loss = METRICS.get(spec.metric).loss
    ranking = sorted(((name, interval(list(v.values()))) for name, v in by_seed.items()),
                     key=lambda x: loss(x[1].mean))
    best = ranking[0][0]
    against = {shown[b]: paired(by_seed[best], by_seed[shown[b]]) for b in ("fine-tune", "scratch")
               if shown.get(b) in by_seed and shown[b] != best}
    if len(ranking) > 1:
        against["runner-up"] = paired(by_seed[best], by_seed[ranking[1][0]])
    pending = max(planned_confirm, len(confirm)) - scored_confirm if confirmed else 0
    return Verdict(confirmed, spec.metric, score_words(spec), ranking, against, max(pending, 0),
                   spec.confirm is not None or within, settings, within)
