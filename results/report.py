"""The comparison report: one self-contained HTML file (plotly inlined, images embedded)
built from a sweep's tables. Works on a partial sweep and says what is missing."""
from __future__ import annotations

import html
import sys
from collections.abc import Callable
from pathlib import Path

from plotly.offline import get_plotlyjs

from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write
from gansweep.core.progress import Progress
from gansweep.results.common import NotHere, metric_label
from gansweep.results.effects import section_effects, write_effects
from gansweep.results.study_sections import (
    section_conditional,
    section_families,
    section_init,
    section_metrics,
    section_sources,
)
from gansweep.results.summary import section_summary, sweep_verdict
from gansweep.results.sweep_sections import (
    section_asha,
    section_baselines,
    section_compute,
    section_curves,
    section_heatmap,
    section_pareto,
    section_sensitivity,
)
from gansweep.results.tables import SweepTables, load_tables, write_tables
from gansweep.results.trial_sections import section_samples, section_table

# Titles name the ranked metric where {metric} stands.
SECTIONS: list[tuple[str, str, Callable[[SweepTables], str]]] = [
    ("summary", "Summary", section_summary),
    ("heatmap", "D partition × G partition: {metric}", section_heatmap),
    ("effects", "Which network's layers matter: partition effects", section_effects),
    ("baselines", "Baselines vs the top partitions", section_baselines),
    ("curves", "{metric} vs iteration", section_curves),
    ("pareto", "Trainable parameters vs {metric}", section_pareto),
    ("compute", "Compute accounting", section_compute),
    ("sensitivity", "Layer sensitivity", section_sensitivity),
    ("families", "Forward and backward transfer (plan families)", section_families),
    ("init", "G/D initialisation and target size", section_init),
    ("sources", "Source choice", section_sources),
    ("conditional", "Conditional transfer", section_conditional),
    ("metrics", "IW critic and classifier score", section_metrics),
    ("asha", "ASHA trust check", section_asha),
    ("samples", "Samples", section_samples),
    ("table", "All trials", section_table),
]

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222}
section{margin:28px 0;border-top:1px solid #ddd}
.warn{background:#fff3cd;padding:6px 10px}
.how{color:#555;font-size:13px;font-style:italic}
.folded{color:#666;font-size:13px}
.verdict{background:#e7f4e4;padding:8px 12px;font-size:16px}
.grid{display:flex;flex-wrap:wrap;gap:16px}
.grid img{image-rendering:pixelated;width:256px}
.scroll{overflow:auto;max-height:70vh;max-width:100%}
table:not(.sortable){display:block;overflow-x:auto;max-width:100%}
figure{margin:0} figcaption{font-size:12px;max-width:256px}
table{border-collapse:collapse;font-size:12px} th,td{border:1px solid #ddd;padding:2px 6px}
th{cursor:pointer;background:#f4f4f4;position:sticky;top:0}
tr.diverged td,tr.errored td{color:#b00} tr.stopped td{color:#777}
"""

SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    var key = function (tr) { var td = tr.children[col];
      return td.dataset.v !== undefined ? parseFloat(td.dataset.v) : td.textContent; };
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) { var x = key(a), y = key(b);
      if (x === y) return 0; if (x === '') return 1; if (y === '') return -1;
      return (x < y ? -1 : 1) * (asc ? 1 : -1); });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def render(t: SweepTables, progress: Progress | None = None) -> str:
    """The report as one HTML string (plotly.js inlined: opens offline); ``progress``
    counts the sections."""
    parts, folded = [], []
    for key, title, fn in SECTIONS:
        title = title.format(metric=metric_label(t))
        content = fn(t)
        if isinstance(content, NotHere):
            folded.append(f"<b>{title}</b> ({content})")
        else:
            parts.append(f"<section id='{key}'><h2>{title}</h2>{content}</section>")
        if progress is not None:
            progress.update(1, section=key)
    if folded:
        parts.append(f"<section id='not-here'><p class='folded'>Not in this sweep: "
                     f"{'; '.join(folded)}.</p></section>")
    body = "".join(parts)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>gansweep report: {html.escape(t.name)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>gansweep report: {html.escape(t.name)}</h1>"
            f"<p><code>{html.escape(str(t.sweep_dir))}</code></p>{body}"
            f"<details><summary>Sweep spec</summary><pre>{html.escape(t.spec_text)}</pre>"
            f"</details><script>{SORT_SCRIPT}</script></body></html>")


def write_report(t: SweepTables, out: str | Path, progress: Progress | None = None) -> Path:
    out = Path(out)
    text = render(t, progress)
    atomic_write(out, lambda f: f.write(text), binary=False)
    return out


def write_results(sweep_dir: Path, out: str | None = None,
                  fid_threshold: float | None = None, quiet: bool = True) -> Path:
    """Parquet tables into the sweep's gansweep/ folder (skipped, with a warning, where it
    is read-only) and the HTML report to ``out`` (default SWEEP/report.html); prints the
    sweep's verdict (its winner and how sure it is). Progress of the sections unless
    ``quiet`` (the driver writes the report quietly at the end of a sweep)."""
    tables = load_tables(sweep_dir, fid_threshold)
    try:
        for path in [*write_tables(tables), write_effects(tables)]:
            if path is not None:
                print(f"table: {path}")
    except OSError as e:
        print(f"warning: Parquet tables not written ({e})", file=sys.stderr)
    try:
        with Progress(len(SECTIONS), "sections", "report", quiet) as progress:
            path = write_report(tables, out or sweep_dir / "report.html", progress)
    except OSError as e:
        raise GansweepError(f"cannot write the report: {e}; give --out FILE elsewhere"
                            ) from None
    found = sweep_verdict(tables)
    if found is not None:
        print(f"verdict: {found.text()}")
    return path
