"""The sweep's answer: which setting won, and how sure that is. The one meaning of "best"
that ``status``, the progress table, the end-of-sweep lines and the report print.

The winner is decided by the confirmation phase when the sweep has one (``confirm:`` in the
spec): the settings it reran are compared on the fresh seeds by their final score (the
spec's score rule at the last evaluation, ``sweep.ranking``), each with its mean and 95 %
t-interval over the seeds, and paired with fine-tune, scratch and the runner-up on the same
seeds. Without one, the search's best setting (by the mean final score of its trials that
ran to the end) is named and marked as unconfirmed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gansweep.core.metrics import METRICS
from gansweep.core.trial import Trial
from gansweep.sweep.grid import setting_names
from gansweep.sweep.ranking import Interval, interval, paired
from gansweep.sweep.schema import SweepSpec


@dataclass
class Verdict:
    """The winning setting and how sure it is."""

    confirmed: bool
    metric: str
    what: str  # what the score is, in words
    ranking: list[tuple[str, Interval]]  # setting names, best first
    against: dict[str, Interval]  # paired differences winner - other, by other's name
    pending: int  # confirmation trials without a final score yet

    @property
    def winner(self) -> str:
        return self.ranking[0][0]

    def headline(self) -> str:
        """One line: the winner, its score and whether it is confirmed."""
        name, ci = self.ranking[0]
        how = "confirmed on fresh seeds" if self.confirmed else "search, not confirmed"
        return f"{name}, {self.what} {ci} ({how})"

    def text(self) -> str:
        """The verdict in plain sentences (the report and the CLI print it)."""
        name, ci = self.ranking[0]
        if not self.confirmed:
            return (f"Best setting of the search: {name}, {self.what} {ci}. Not confirmed: "
                    f"add 'confirm: {{top: k, seeds: [...]}}' to the spec to rerun the best "
                    f"settings and the baselines on fresh seeds.")
        out = [f"Winner on the confirmation seeds: {name}, {self.what} {ci} (mean [95% "
               f"interval])."]
        for other, diff in self.against.items():
            if other == "runner-up":
                continue
            out.append(f"Against {other} on the same seeds: {diff.mean:+.2f} "
                       f"[{diff.low:+.2f}, {diff.high:+.2f}]"
                       + (" (a real difference)." if diff.excludes_zero else
                          " (not distinguishable)."))
        if len(self.ranking) > 1:
            runner, diff = self.ranking[1][0], self.against["runner-up"]
            if diff.excludes_zero:
                out.append(f"It beats the runner-up, {runner}, by {abs(diff.mean):.2f} "
                           f"[{diff.low:+.2f}, {diff.high:+.2f}].")
            else:
                out.append(f"It cannot be told apart from the runner-up, {runner} (difference "
                           f"{diff.mean:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}] on "
                           f"{diff.n} seeds): more seeds would be needed to separate them.")
        if self.pending:
            out.append(f"{self.pending} confirmation trials have no final score yet.")
        return " ".join(out)


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
    the search has a final score. ``records``: trial records (``sweep.state``: config,
    status, last), or the same read off Tune's trials; ``planned_confirm``: the
    confirmation's trials, started or not."""
    trials = [Trial.from_dict(r["config"]) for r in records]
    names = setting_names(trials)
    confirm = [(t, r) for t, r in zip(trials, records) if t.phase == "confirm"]
    confirmed = bool(confirm)
    pool = confirm or [(t, r) for t, r in zip(trials, records) if t.phase == "search"]
    by_seed: dict[str, dict[int, float]] = {}
    scored = 0
    for t, r in pool:
        score = (r.get("last") or {}).get("score")
        if r["status"] != "finished" or score is None or (confirmed and not math.isfinite(score)):
            continue
        by_seed.setdefault(names[t.setting_key], {})[t.seed] = score
        scored += 1
    if not by_seed:
        return None
    loss = METRICS.get(spec.metric).loss
    ranking = sorted(((name, interval(list(v.values()))) for name, v in by_seed.items()),
                     key=lambda x: loss(x[1].mean))
    best = ranking[0][0]
    against = {name: paired(by_seed[best], by_seed[name]) for name in ("fine-tune", "scratch")
               if name in by_seed and name != best}
    if len(ranking) > 1:
        against["runner-up"] = paired(by_seed[best], by_seed[ranking[1][0]])
    pending = max(planned_confirm, len(confirm)) - scored if confirmed else 0
    return Verdict(confirmed, spec.metric, score_words(spec), ranking, against, pending)
