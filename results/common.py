"""What the report's sections share: filters of the trials table, settings ranked by
mean best FID, a trial's history, and plotly's HTML."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import yaml

from gansweep.core.metrics import HIGHER_IS_BETTER
from gansweep.results.tables import SweepTables

TOP = 5  # partitions shown next to the baselines
TREATMENT_ROWS = (("freeze", "frozen"), ("modulated", "modulated"), ("finetune", "fine-tuned"))


def finite(frame: pd.DataFrame, column: str = "best_fid") -> pd.DataFrame:
    """Rows whose ``column`` is a finite number (not missing, not a diverged inf)."""
    values = pd.to_numeric(frame[column], errors="coerce").astype(float).to_numpy()
    return frame.loc[np.isfinite(values)]


def sweep_spec(t: SweepTables) -> dict:
    """The sweep's spec as written (empty for a sweep without one on record)."""
    return yaml.safe_load(t.spec_text) if t.spec_text else {}


def ranked_metric(t: SweepTables) -> tuple[str, int]:
    """The metric the sweep ranks by and its sign: +1 lower is better, -1 higher is."""
    metric = sweep_spec(t).get("metric", "fid")  # the spec's own default
    return metric, -1 if metric in HIGHER_IS_BETTER else 1


def trial_kind(trials: pd.DataFrame) -> pd.Series:
    """partition, baseline or plan, per trial."""
    return pd.Series(["partition" if isinstance(d, str) else "baseline" if isinstance(b, str)
                      else "plan" for d, b in zip(trials["d_partition"], trials["baseline"])],
                     index=trials.index, dtype=object)


def partition_trials(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trial_kind(trials) == "partition"]


def by_setting(trials: pd.DataFrame) -> pd.DataFrame:
    """Best FID per setting (partition pair, baseline or plan) over seeds and other axes."""
    scored = finite(trials)
    grouped = scored.groupby("label")["best_fid"]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=0), "n": grouped.size()})
    kinds = pd.Series(trial_kind(trials).to_numpy(), index=trials["label"])
    out["kind"] = kinds[~kinds.index.duplicated()].reindex(out.index)
    return out.sort_values("mean")


def top_labels(trials: pd.DataFrame) -> tuple[list[str], list[str]]:
    settings = by_setting(trials)
    partitions = settings[settings["kind"] == "partition"].index[:TOP].tolist()
    baselines = sorted(trials["baseline"].dropna().unique().tolist())
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


AXIS_COLUMNS = ("source", "target", "target_size", "augment", "loss", "lr", "g_init",
                "d_init", "seed")


def varying_axes(trials: pd.DataFrame) -> list[str]:
    return [c for c in AXIS_COLUMNS if trials[c].nunique(dropna=False) > 1]


def trial_name(trial: pd.Series, varying: list[str]) -> str:
    """The trial's label with the axis values that tell it apart from its siblings."""
    values = [f"{c}={Path(v).name if c in ('source', 'target') else v}"
              for c, v in trial[varying].items() if c != "seed"]
    return " ".join([trial["label"], *values, f"s{trial['seed']}"])


def spearman(x: pd.Series, y: pd.Series) -> float:
    return float(x.rank().corr(y.rank())) if len(x) > 2 else float("nan")


