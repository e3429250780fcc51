"""What the report's sections share: filters of the trials table; the one objective every
section plots, what the verdict ranks (``objective``: the spec's metric under its score rule,
in its direction, ``core.metrics.Metric.loss``); settings (the ``setting`` column) with their
95 % intervals over seeds, per phase; a trial's history; and plotly's HTML."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from gansweep.core.metrics import METRICS, Metric
from gansweep.results.tables import SweepTables
from gansweep.sweep.record.verdict import score_words
from gansweep.sweep.spec.ranking import interval

TOP = 5  # partitions shown next to the baselines
TREATMENT_ROWS = (("freeze", "frozen"), ("modulated", "modulated"), ("finetune", "fine-tuned"))


def finite(frame: pd.DataFrame, column: str = "best_fid") -> pd.DataFrame:
    """Rows whose ``column`` is a finite number (not missing, not a diverged inf)."""
    values = pd.to_numeric(frame[column], errors="coerce").astype(float).to_numpy()
    return frame.loc[np.isfinite(values)]


def trial_kind(trials: pd.DataFrame) -> pd.Series:
    """partition, baseline or plan, per trial."""
    return pd.Series(["partition" if isinstance(d, str) else "baseline" if isinstance(b, str)
                      else "plan" for d, b in zip(trials["d_partition"], trials["baseline"])],
                     index=trials.index, dtype=object)


def partition_trials(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trial_kind(trials) == "partition"]


def metric_label(t: SweepTables) -> str:
    """The ranked metric's name as a caption writes it (FID, KID, IS; longer names as is)."""
    name = t.metric.name
    return name.upper() if len(name) <= 3 else name


def better(t: SweepTables) -> str:
    """Which way the ranked metric is better, in a word: 'lower' or 'higher'."""
    return "higher" if t.metric.mode == "max" else "lower"


def objective_words(t: SweepTables) -> str:
    """What the verdict ranks by, in words (``sweep.record.verdict.score_words``), the metric
    named as captions name it."""
    words = score_words(t.spec) if t.spec is not None else f"{t.metric.name} (last evaluation)"
    return metric_label(t) + words[len(t.metric.name):]


def objective(t: SweepTables) -> pd.Series:
    """Each trial's value of what the verdict ranks: its final score (the spec's metric
    under its score rule, of the EMA generator where the run keeps one), else (a sweep
    recorded before scores) the metric's last or best value as the rule says; NaN where
    missing or not finite."""
    rule = t.spec.scheduler.rule.rule if t.spec is not None else "last"
    fallback = t.trials[f"{'best' if rule == 'best' else 'last'}_{t.metric.name}"]
    values = pd.to_numeric(t.trials["score"].fillna(fallback), errors="coerce").astype(float)
    return values.where(np.isfinite(values))


def scored_trials(t: SweepTables, phase: str | None = None,
                  finished: bool = True) -> pd.DataFrame:
    """Trials with a finite objective (column ``value``) and their kind; of one ``phase``
    (search, confirm) if given, and only those that ran to the end if ``finished`` (the
    trials the verdict counts)."""
    frame = t.trials.assign(value=objective(t), kind=trial_kind(t.trials))
    keep = frame["value"].notna()
    if phase is not None:
        keep &= frame["phase"] == phase
    if finished:
        keep &= frame["status"] == "finished"
    return frame[keep]


def rank(t: SweepTables, values: pd.Series) -> pd.Series:
    """``values`` best first by the ranked metric's direction."""
    return values.sort_values(key=lambda v: v.map(t.metric.loss))


def by_setting(t: SweepTables, phase: str = "search") -> pd.DataFrame:
    """The objective per setting over the seeds of one phase's finished trials: its mean
    and 95 % t-interval (``sweep.spec.ranking.interval``, as the verdict states it), the number
    of seeds, the setting's kind and its trainable parameters (G + D); best first."""
    scored = scored_trials(t, phase)
    rows = {}
    for name, part in scored.groupby("setting"):
        # A pair and its twin baseline share seeds: their trials of a seed are one value.
        ci = interval(part.groupby("seed")["value"].mean().tolist())
        params = (part["trainable_g"] + part["trainable_d"]).mean()
        rows[name] = {"mean": ci.mean, "low": ci.low, "high": ci.high, "n": ci.n,
                      "kind": part["kind"].iloc[0], "params": params}
    out = pd.DataFrame.from_dict(rows, orient="index",
                                 columns=["mean", "low", "high", "n", "kind", "params"])
    return out.loc[rank(t, out["mean"]).index] if len(out) else out


def top_settings(t: SweepTables) -> tuple[list[str], list[str]]:
    """The TOP best partition settings (the confirmation's first, by their confirmation
    mean, then the search's), and every baseline setting (with a pair that trains the
    same, one setting of both names)."""
    baselines = sorted(t.trials.loc[t.trials["baseline"].notna(), "setting"].unique().tolist())
    partitions: list[str] = []
    for phase in ("confirm", "search"):
        settings = by_setting(t, phase)
        partitions += [p for p in settings[settings["kind"] == "partition"].index
                       if p not in partitions and p not in baselines]  # a pair = a baseline
    return partitions[:TOP], baselines


def trial_history(t: SweepTables, trial_id: str, column: str = "fid") -> pd.DataFrame:
    """A trial's evaluations with a finite ``column`` (a metric), in iteration order."""
    if column not in t.metrics:
        return t.metrics.iloc[:0]
    return finite(t.metrics[t.metrics["trial_id"] == trial_id], column)


def best_row(t: SweepTables, trial_id: str, metric: Metric | None = None) -> pd.Series | None:
    """A trial's evaluation with the best value of ``metric`` (default FID)."""
    metric = metric or METRICS.get("fid")
    history = trial_history(t, trial_id, metric.name)
    if history.empty:
        return None
    return history.loc[history[metric.name].map(metric.loss).idxmin()]


def error_bars(low: pd.Series, mean: pd.Series, high: pd.Series, color: str) -> dict:
    """Plotly's asymmetric error bars from an interval, in one colour (an array of marker
    colours would reach the bars as an invalid one). A point without an interval (one seed)
    gets a zero-length bar, a trace of only such points none: plotly draws a cap even there."""
    if (high - mean).isna().all():
        return {"visible": False}
    return {"type": "data", "symmetric": False, "color": color, "thickness": 1.5,
            "array": (high - mean).fillna(0).tolist(),
            "arrayminus": (mean - low).fillna(0).tolist()}


def colour_scale(t: SweepTables) -> dict:
    """A heatmap's colours with the better values darker, whichever way the metric is
    better."""
    return {"colorscale": "Viridis", "reversescale": t.metric.mode == "max"}


def figure_html(fig: go.Figure, how: str) -> str:
    """A figure with its one-sentence "how to read" caption above it."""
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 60})
    return (f"<p class='how'>How to read: {how}</p>"
            + pio.to_html(fig, full_html=False, include_plotlyjs=False,
                          config={"displaylogo": False, "responsive": True}))


class NotHere(str):
    """A section's one line for a sweep it does not apply to: the report folds these into
    one paragraph at its end instead of showing empty sections."""


def spearman(x: pd.Series, y: pd.Series) -> float:
    return float(x.rank().corr(y.rank())) if len(x) > 2 else float("nan")


