"""What the report's sections share: filters of the trials table, settings (the ``setting``
column, ``sweep.grid.setting_names``) ranked by the sweep's metric, a trial's history, and
plotly's HTML."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from gansweep.results.tables import SweepTables

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


def by_setting(t: SweepTables) -> pd.DataFrame:
    """The sweep's metric per setting: its trials' mean best value over seeds, its sd and
    count, and the setting's kind; best first."""
    best = f"best_{t.metric.name}"
    scored = finite(t.trials, best)
    grouped = scored.groupby("setting")[best]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=0), "n": grouped.size()})
    kinds = pd.Series(trial_kind(t.trials).to_numpy(), index=t.trials["setting"])
    out["kind"] = kinds[~kinds.index.duplicated()].reindex(out.index)
    return out.sort_values("mean", key=lambda v: v.map(t.metric.loss))


def top_settings(t: SweepTables) -> tuple[list[str], list[str]]:
    """The TOP best partition settings, and every baseline setting."""
    settings = by_setting(t)
    partitions = settings[settings["kind"] == "partition"].index[:TOP].tolist()
    baselines = sorted(t.trials.loc[t.trials["baseline"].notna(), "setting"].unique().tolist())
    return partitions, baselines


def trial_history(t: SweepTables, trial_id: str) -> pd.DataFrame:
    """A trial's evaluations with a finite FID, in iteration order."""
    return finite(t.metrics[t.metrics["trial_id"] == trial_id], "fid")


def best_row(t: SweepTables, trial_id: str) -> pd.Series | None:
    """A trial's evaluation with the lowest FID."""
    history = trial_history(t, trial_id)
    return None if history.empty else history.loc[history["fid"].idxmin()]


def figure_html(fig: go.Figure, how: str) -> str:
    """A figure with its one-sentence "how to read" caption above it."""
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 60})
    return (f"<p class='how'>How to read: {how}</p>"
            + pio.to_html(fig, full_html=False, include_plotlyjs=False,
                          config={"displaylogo": False, "responsive": True}))


class NotHere(str):
    """A section's one line for a sweep it does not apply to: the report folds these into
    one paragraph at its end instead of showing empty sections."""


def trial_name(trial: pd.Series) -> str:
    """The trial's setting and seed."""
    return f"{trial['setting']} s{trial['seed']}"


def spearman(x: pd.Series, y: pd.Series) -> float:
    return float(x.rank().corr(y.rank())) if len(x) > 2 else float("nan")


