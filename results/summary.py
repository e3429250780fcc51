"""The report's summary: which setting won, with its uncertainty (``sweep.record.verdict``), and
what ran."""
from __future__ import annotations

import html

from gansweep.results.tables import NOT_CHOSEN, SweepTables
from gansweep.sweep.record.verdict import Verdict, verdict


def sweep_verdict(t: SweepTables) -> Verdict | None:
    """The sweep's verdict (None: no trial has a final score yet, or no spec on record)."""
    if t.spec is None:
        return None
    return verdict(t.spec, t.records, int((t.trials["phase"] == "confirm").sum()))


def section_summary(t: SweepTables) -> str:
    counts = t.trials.loc[t.trials["status"] != NOT_CHOSEN, "status"].value_counts().to_dict()
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines = []
    v = sweep_verdict(t)
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
    chosen = int((t.trials["status"] != NOT_CHOSEN).sum())
    lines.append(f"<p><b>{chosen}</b> trials of <b>{t.expected}</b> expected: {parts}.</p>")
    if chosen < len(t.trials):
        lines.append(f"<p>A structured search (<code>search: {{type: structured}}</code>) ran "
                     f"{chosen} of the grid's {len(t.trials)} trials; the model of the "
                     f"partition effects speaks for the rest (section 'partition effects')."
                     f"</p>")
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
    return "".join(lines)
