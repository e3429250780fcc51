"""Which network's layers matter: the partition-effects model (``sweep.searchers.model``)
fitted to a sweep's D x G trials that ran to the end, per context
(``sweep.searchers.structured.context_key``), on a full grid or on the part of it a structured
search ran. ``effects_table`` is the Parquet table (``effects.parquet``), ``section_effects`` the
report's section; both show the effects on the metric's own scale (its direction from
``core.metrics``)."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
from plotly.subplots import make_subplots

from gansweep.core.metrics import Metric
from gansweep.core.treatments import Partition, in_order
from gansweep.core.trial import Trial
from gansweep.results.common import NotHere, figure_html
from gansweep.results.tables import SweepTables, table_meta, write_parquet
from gansweep.sweep.record.state import completed
from gansweep.sweep.searchers.model import Effects, Estimate, Observation, Posterior, grid_effects
from gansweep.sweep.searchers.structured import baseline_partitions, context_key

EFFECTS_PARQUET = "effects.parquet"
EFFECT_SCHEMA = pa.schema([
    ("context", pa.string()),  # sweep.searchers.structured.context_key: source, target, axes
    ("term", pa.string()),  # D | G: a main effect; interaction: its share of the variance;
    # best: the predicted best pair; noise: one trial's sd
    ("level", pa.string()),  # the partition, or the pair of 'best'
    ("mean", pa.float64()), ("low", pa.float64()), ("high", pa.float64()),  # 95 % interval
    ("probability", pa.float64()),  # best: that it is the grid's best
    ("metric", pa.string()), ("trials", pa.int64()),  # trials the model saw
    ("pairs_run", pa.int64()), ("pairs", pa.int64()),  # of the grid's pairs
])

HOW = ("a bar below zero is a partition that lowers the metric on average over the other "
       "network's partitions (better for a lower-is-better metric); where two bars' "
       "intervals overlap, the seeds cannot tell those partitions apart.")


@dataclass(frozen=True)
class ContextEffects:
    """One context's fitted effects, on the metric's scale."""

    context: str
    effects: Effects
    trials: int
    pairs_run: int
    ds: list[str]
    gs: list[str]


def _final(rec: dict, metric: Metric, max_iters: int) -> float | None:
    """A trial's final value, if it ran to the end (the score the search ranks by)."""
    if not completed(rec, max_iters):
        return None
    last = rec.get("last", {})
    value = last.get("score", last.get(metric.name))
    return None if value is None else float(value)


def _scaled(e: Estimate, metric: Metric) -> Estimate:
    """An estimate on the lower-is-better scale, on the metric's own (loss is its own
    inverse: x or -x)."""
    a, b = metric.loss(e.low), metric.loss(e.high)
    return Estimate(metric.loss(e.mean), min(a, b), max(a, b))


def fit_effects(t: SweepTables) -> list[ContextEffects]:
    """The model of each context's finished partition trials (and baselines that are
    pairs) over the grid's D and G partitions; contexts with fewer than 3 such trials are
    left out. Fitted once per tables (the section and the Parquet table share it)."""
    if "effects" not in t.cache:
        t.cache["effects"] = _fit(t)
    return t.cache["effects"]


def _fit(t: SweepTables) -> list[ContextEffects]:
    metric = t.metric
    grid = [p for p in t.planned if p.phase == "search" and p.d is not None]
    if not grid:
        return []
    ld, lg = Partition.parse(grid[0].d).units, Partition.parse(grid[0].g).units
    levels: dict[str, tuple[set[str], set[str]]] = {}
    for trial in grid:  # the grid's partitions, run or not
        d_names, g_names = levels.setdefault(context_key(trial), (set(), set()))
        d_names.add(trial.d)
        g_names.add(trial.g)
    observed: dict[str, list[Observation]] = {}
    for rec in t.records:
        trial = Trial.from_dict(rec["config"])
        value = _final(rec, metric, t.max_iters)
        if trial.phase != "search" or value is None:
            continue
        pair = (trial.d, trial.g) if trial.d is not None else \
            baseline_partitions(trial, ld, lg) if trial.baseline is not None else None
        if pair is not None:
            observed.setdefault(context_key(trial), []).append(
                Observation(*pair, metric.loss(value)))
    out = []
    for key, (d_names, g_names) in levels.items():
        obs = observed.get(key, [])
        if len(obs) < 3:
            continue
        ds, gs = in_order(d_names), in_order(g_names)
        e = grid_effects(Posterior(obs), ds, gs)
        scaled = Effects({k: _scaled(v, metric) for k, v in e.d.items()},
                         {k: _scaled(v, metric) for k, v in e.g.items()},
                         e.interaction_share, e.best, _scaled(e.best_value, metric),
                         e.best_probability, e.noise_sd)
        run = {(o.d, o.g) for o in obs} & {(d, g) for d in ds for g in gs}
        out.append(ContextEffects(key, scaled, len(obs), len(run), ds, gs))
    return out


def effects_table(t: SweepTables) -> pd.DataFrame:
    """The effects of every context as rows of ``EFFECT_SCHEMA``."""
    rows = []
    for c in fit_effects(t):
        e = c.effects
        common = {"context": c.context, "metric": t.metric.name, "trials": c.trials,
                  "pairs_run": c.pairs_run, "pairs": len(c.ds) * len(c.gs),
                  "probability": None}
        for term, values in (("D", e.d), ("G", e.g)):
            rows += [{**common, "term": term, "level": p, "mean": v.mean, "low": v.low,
                      "high": v.high} for p, v in values.items()]
        s = e.interaction_share
        rows.append({**common, "term": "interaction", "level": None, "mean": s.mean,
                     "low": s.low, "high": s.high})
        b = e.best_value
        rows.append({**common, "term": "best", "level": "".join(e.best), "mean": b.mean,
                     "low": b.low, "high": b.high, "probability": e.best_probability})
        rows.append({**common, "term": "noise", "level": None, "mean": e.noise_sd,
                     "low": None, "high": None})
    return pd.DataFrame(rows, columns=EFFECT_SCHEMA.names)


def write_effects(t: SweepTables, out_dir: str | Path | None = None) -> Path | None:
    """``effects.parquet`` beside the other tables (None: no context to fit)."""
    frame = effects_table(t)
    if frame.empty:
        return None
    path = (Path(out_dir) if out_dir is not None else t.sweep_dir / "gansweep") / EFFECTS_PARQUET
    write_parquet(frame, EFFECT_SCHEMA, path, table_meta(t))
    return path


def _figure(c: ContextEffects, metric: str) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("D's partition", "G's partition"),
                        shared_yaxes=True, horizontal_spacing=0.06)
    for col, values in ((1, c.effects.d), (2, c.effects.g)):
        names = list(values)
        means = [values[p].mean for p in names]
        fig.add_trace(go.Bar(
            x=names, y=means, showlegend=False, marker_color="#4c78a8" if col == 1 else "#f58518",
            error_y={"type": "data", "symmetric": False,
                     "array": [values[p].high - values[p].mean for p in names],
                     "arrayminus": [values[p].mean - values[p].low for p in names]},
            hovertemplate="%{x}: %{y:+.2f} " + metric + "<extra></extra>"), row=1, col=col)
    fig.update_yaxes(title_text=f"main effect on {metric}", row=1, col=1)
    fig.update_layout(height=360)
    return fig


def section_effects(t: SweepTables) -> str:
    fitted = fit_effects(t)
    if not fitted:
        return NotHere("fewer than 3 finished D × G trials of a context")
    metric = t.metric.name
    parts = []
    for n, c in enumerate(fitted):
        e = c.effects
        spread = {net: max(v.mean for v in side.values()) - min(v.mean for v in side.values())
                  for net, side in (("D", e.d), ("G", e.g))}
        more = max(spread, key=spread.get)
        s, b = e.interaction_share, e.best_value
        partial = (f" (a partial grid: the model predicts the {len(c.ds) * len(c.gs) - c.pairs_run}"
                   f" pairs not run)" if c.pairs_run < len(c.ds) * len(c.gs) else "")
        title = f"<h3>Context {n + 1}</h3>" if len(fitted) > 1 else ""
        parts.append(
            f"{title}<p>A model of the final {html.escape(metric)}: an effect of D's partition, "
            f"one of G's, a smooth interaction and each pair's own deviation "
            f"(sweep.searchers.model), fitted to "
            f"<b>{c.trials}</b> trials that ran to the end, {c.pairs_run} of the grid's "
            f"{len(c.ds) * len(c.gs)} pairs{partial}; intervals are 95 %, with one trial's "
            f"noise estimated from the seeds (sd {e.noise_sd:.2f}).</p>"
            f"<ul><li><b>{more}</b>'s partition matters more here: its main effects span "
            f"{spread[more]:.2f} against {spread['G' if more == 'D' else 'D']:.2f}.</li>"
            f"<li>The interaction holds <b>{100 * s.mean:.0f}%</b> of the pairs' variance "
            f"({100 * s.low:.0f}–{100 * s.high:.0f}%), the two main effects the rest.</li>"
            f"<li>Predicted best pair: <b>{html.escape(''.join(e.best))}</b>, "
            f"{html.escape(metric)} {b.mean:.2f} ({b.low:.2f}–{b.high:.2f}), the grid's best "
            f"with probability {e.best_probability:.2f}.</li></ul>"
            + figure_html(_figure(c, metric), HOW))
    return "".join(parts) + (f"<p>Table: <code>gansweep/{EFFECTS_PARQUET}</code>.</p>")
