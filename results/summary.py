"""The report's summary: which setting won, with its uncertainty, and what ran.

The winner is decided by the confirmation phase when the sweep has one (``confirm:`` in the
spec): the settings it reran are compared on the fresh seeds by their final score (the
scheduler's rung signal at the last evaluation, ``sweep.ranking``), each with its mean and
95 % t-interval over the seeds, and paired with fine-tune, scratch and the runner-up on the
same seeds. Without one, the search's best setting is named and marked as unconfirmed.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass

import pandas as pd

from gansweep.results.common import ranked_metric, sweep_spec, varying_axes
from gansweep.results.tables import SweepTables
from gansweep.sweep.ranking import Interval, interval, paired
from gansweep.sweep.spec import Scheduler


def setting_names(trials: pd.DataFrame) -> pd.Series:
    """Each trial's setting: its label and the values of the axes (but the seed) that vary."""
    axes = [c for c in varying_axes(trials) if c != "seed"]
    return trials.apply(lambda r: " ".join([r["label"], *(f"{c}={r[c]}" for c in axes)]),
                        axis=1) if len(trials) else pd.Series(dtype=object)


@dataclass
class Verdict:
    """The sweep's answer: the winning setting and how sure it is."""

    confirmed: bool
    metric: str
    what: str  # what the score is, in words
    ranking: list[tuple[str, Interval]]  # settings, best first
    against: dict[str, Interval]  # paired differences winner - other, by other's name
    pending: int  # confirmation trials without a final score yet

    @property
    def winner(self) -> str:
        return self.ranking[0][0]

    def text(self) -> str:
        """The verdict in plain sentences (the report and the CLI print it)."""
        name, ci = self.ranking[0]
        if not self.confirmed:
            return (f"Best setting of the search: {name}, {self.metric} {ci}. Not confirmed: "
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


def verdict(t: SweepTables) -> Verdict | None:
    """The winner of the confirmation phase, else of the search; None before any trial of
    the search has a score."""
    spec = sweep_spec(t)
    metric, sign = ranked_metric(t)
    rule = Scheduler(**(spec.get("scheduler") or {})).rule
    what = (f"{metric} (" + ("of the EMA generator, " if spec.get("ema_kimg") != "off" else "")
            + ("last evaluation" if rule.rule == "last" else
               f"mean of the last {rule.window} evaluations" if rule.rule == "mean" else
               "best evaluation") + ")")
    trials = t.trials.assign(setting=setting_names(t.trials))
    confirm = trials[trials["phase"] == "confirm"]
    confirmed = not confirm.empty
    pool = confirm if confirmed else trials[trials["phase"] == "search"]
    scored = pool[(pool["status"] == "finished") & pool["score"].notna()]
    if confirmed:
        scored = scored[scored["score"].map(math.isfinite)]
    if scored.empty:
        return None
    by_seed = {name: dict(zip(part["seed"], part["score"]))
               for name, part in scored.groupby("setting")}
    ranking = sorted(((name, interval(list(v.values()))) for name, v in by_seed.items()),
                     key=lambda x: sign * x[1].mean)
    best = ranking[0][0]
    against = {}
    for name in ("fine-tune", "scratch"):
        if name in by_seed and name != best:
            against[name] = paired(by_seed[best], by_seed[name])
    if len(ranking) > 1:
        against["runner-up"] = paired(by_seed[best], by_seed[ranking[1][0]])
    pending = int(((confirm["status"] != "finished") | confirm["score"].isna()).sum())
    return Verdict(confirmed, metric, what, ranking, against, pending)


def section_summary(t: SweepTables) -> str:
    counts = t.trials["status"].value_counts().to_dict()
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines = []
    v = verdict(t)
    if v is not None:
        lines.append(f"<p class='{'verdict' if v.confirmed else 'warn'}'>"
                     f"{html.escape(v.text())}</p>")
        if v.confirmed:
            rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{ci.mean:.2f}</td>"
                           f"<td>{ci.low:.2f} – {ci.high:.2f}</td><td>{ci.n}</td></tr>"
                           for name, ci in v.ranking)
            lines.append(f"<table><thead><tr><th>setting (confirmation)</th><th>mean "
                         f"{html.escape(v.what)}</th><th>95% interval</th><th>seeds</th></tr>"
                         f"</thead><tbody>{rows}</tbody></table>")
    lines.append(f"<p><b>{len(t.trials)}</b> trials of <b>{t.expected}</b> expected: "
                 f"{parts}.</p>")
    if t.missing:
        lines.append(f"<p class='warn'>Partial sweep: <b>{t.missing}</b> trials have no final "
                     f"result yet (pending or running). Figures use what exists.</p>")
    threshold = t.trials["fid_threshold"].dropna()
    if len(threshold):
        lines.append(f"<p>FID threshold for 'iterations to threshold': {threshold.iloc[0]:.2f} "
                     f"(the scratch baseline's best FID unless given).</p>")
    new_units = t.trials["new_units"].dropna().unique()
    if len(new_units):
        lines.append(f"<p>Transfer to a lower resolution: the new units "
                     f"<b>{html.escape(', '.join(new_units))}</b> are re-initialised in every "
                     f"trial, every other unit is the source's (column <code>new_units</code>)."
                     f"</p>")
    varying = varying_axes(t.trials)
    if varying:
        lines.append(f"<p>Axes varied (figures average over them per setting): "
                     f"{', '.join(varying)}.</p>")
    return "".join(lines)
