"""The report's sections about the sweep itself: the D x G heatmap, baselines vs the top
partitions, curves, parameters, compute, layer sensitivity, the ASHA check, samples and the
trial table."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gansweep.core.evaluate import grid_path
from gansweep.core.treatments import enumerate_partitions
from gansweep.results.common import (
    TREATMENT_ROWS,
    NotHere,
    best_row,
    by_setting,
    figure_html,
    finite,
    partition_trials,
    top_settings,
    trial_history,
    trial_kind,
    trial_name,
)
from gansweep.results.tables import SweepTables, recorded_partition

# The one-sentence "how to read" of each figure, by section.
HOW = {
    "heatmap": ("each cell is one D × G pair; the darker, the lower (better) its best FID, so "
            "the best pairs sit where dark cells cluster."),
    "baselines": ("a diamond lower down is a better setting; where the error bars of two "
            "settings overlap, their seeds cannot tell them apart."),
    "curves": ("each line is one trial's FID over training; a line still falling at the right "
            "edge would have gained from more iterations."),
    "pareto": ("lower is better and further left trains fewer parameters; the red steps are the "
            "trials no other trial beats on both."),
    "compute": ("the left bar is the compute spent, split by how trials ended; the grey bar is "
            "what running every trial to the end would have cost."),
    "sensitivity": ("read each column (one unit) down its three rows: the treatment with the "
            "lowest mean FID suits that unit best."),
    "asha": ("each point is a trial that ran to the end; the closer the points lie to a rising "
            "line, the better early scores predicted final ones."),
}


def section_heatmap(t: SweepTables) -> str:
    pairs = partition_trials(t.trials)
    if pairs.empty:
        return NotHere("no D × G partition trials")

    def order(column: str, net: str) -> list[str]:
        names = set(pairs[column])
        units = recorded_partition(next(iter(names))).units
        return [str(p) for p in enumerate_partitions(net, units) if str(p) in names]

    ds, gs = order("d_partition", "D"), order("g_partition", "G")
    z, text, marks_x, marks_y, marks = [], [], [], [], []
    for d in ds:
        z_row, text_row = [], []
        for g in gs:
            cell = pairs[(pairs["d_partition"] == d) & (pairs["g_partition"] == g)]
            scored = finite(cell)
            z_row.append(scored["best_fid"].mean() if len(scored) else None)
            statuses = ", ".join(f"{n} {s}" for s, n in cell["status"].value_counts().items())
            text_row.append(f"{d}{g}<br>n = {len(cell)}: {statuses}")
            for status, mark in (("diverged", "!"), ("errored", "E"), ("stopped", "×")):
                if (cell["status"] == status).any():
                    marks_x.append(g), marks_y.append(d), marks.append(mark)
                    break
        z.append(z_row)
        text.append(text_row)
    fig = go.Figure(go.Heatmap(z=z, x=gs, y=ds, text=text, colorscale="Viridis_r",
                               hovertemplate="%{text}<br>best FID %{z:.2f}<extra></extra>",
                               colorbar={"title": "best FID"}))
    fig.add_trace(go.Scatter(x=marks_x, y=marks_y, text=marks, mode="text",
                             textfont={"color": "#d62728", "size": 16}, hoverinfo="skip",
                             showlegend=False))
    fig.update_layout(height=max(350, 28 * len(ds) + 150), xaxis_title="G partition",
                      yaxis_title="D partition", yaxis={"autorange": "reversed"})
    return (f"<p>Mean best FID per pair ({len(ds)} × {len(gs)}). × = some trial stopped by "
            f"ASHA (its best FID is from fewer iterations), ! = diverged, E = errored.</p>"
            + figure_html(fig, HOW["heatmap"]))


def section_baselines(t: SweepTables) -> str:
    top, baselines = top_settings(t)
    names = baselines + top
    if not names:
        return "<p>No scored trials yet.</p>"
    metric = t.metric.name
    settings = by_setting(t).reindex(names)
    fig = go.Figure(go.Scatter(x=names, y=settings["mean"], mode="markers",
                               error_y={"type": "data", "array": settings["std"].fillna(0)},
                               marker={"size": 14, "symbol": "diamond", "color": [
                                   "#888" if b in baselines else "#3b6" for b in names]},
                               name=f"mean best {metric} ± sd"))
    scored = finite(t.trials[t.trials["setting"].isin(names)], f"best_{metric}")
    fig.add_trace(go.Scatter(x=scored["setting"], y=scored[f"best_{metric}"], mode="markers",
                             marker={"color": "black", "size": 6}, name="trials (seeds)",
                             text=scored["seed"].map(lambda s: f"seed {s}")))
    better = "higher" if t.metric.mode == "max" else "lower"
    fig.update_layout(yaxis_title=f"best {metric} ({better} is better)", height=420)
    return (f"<p>Baselines (grey) vs the top partitions (green): mean best {metric}, error "
            f"bars = standard deviation over seeds, dots = single trials.</p>"
            + figure_html(fig, HOW["baselines"]))


def section_curves(t: SweepTables) -> str:
    top, baselines = top_settings(t)
    fig = go.Figure()
    for name in baselines + top:
        for _, trial in t.trials[t.trials["setting"] == name].iterrows():
            history = trial_history(t, trial["trial_id"])
            if history.empty:
                continue
            fig.add_trace(go.Scatter(x=history["iteration"], y=history["fid"],
                                     mode="lines+markers", name=trial_name(trial),
                                     line={"dash": "dot" if name in baselines else "solid"}))
    fig.update_layout(xaxis_title="iteration", yaxis_title="FID", height=450)
    return "<p>Dotted: baselines; solid: top partitions.</p>" + figure_html(fig, HOW["curves"])


def section_pareto(t: SweepTables) -> str:
    scored = finite(t.trials).dropna(subset=["trainable_g", "trainable_d"]).copy()
    if scored.empty:
        return "<p>No scored trials yet.</p>"
    scored["params"] = scored["trainable_g"] + scored["trainable_d"]
    front, best = [], math.inf
    for _, row in scored.sort_values(["params", "best_fid"]).iterrows():
        if row["best_fid"] < best:
            best = row["best_fid"]
            front.append(row)
    front = pd.DataFrame(front)
    fig = go.Figure()
    kinds = trial_kind(scored)
    for name in ("partition", "baseline", "plan"):
        part = scored[kinds == name]
        if part.empty:
            continue
        fig.add_trace(go.Scatter(x=part["params"], y=part["best_fid"], mode="markers",
                                 name=f"{name}s", text=part["label"],
                                 hovertemplate="%{text}<br>%{x} params<br>FID %{y:.2f}"))
    fig.add_trace(go.Scatter(x=front["params"], y=front["best_fid"], mode="lines+markers",
                             name="Pareto front", line={"shape": "hv", "color": "red"},
                             text=front["label"], hovertemplate="%{text}"))
    fig.update_layout(xaxis_title="trainable parameters (G + D)", xaxis_type="log",
                      yaxis_title="best FID", height=450)
    names = ", ".join(html.escape(x) for x in front["label"])
    return f"<p>Pareto front (fewest parameters for a given FID): {names}.</p>" + \
        figure_html(fig, HOW["pareto"])


def section_compute(t: SweepTables) -> str:
    ran = t.trials[t.trials["iterations"] > 0]
    if ran.empty:
        return "<p>No trial has run yet.</p>"
    per_iter = (ran["wall_s"] / ran["iterations"]).median()
    full = ran.apply(lambda r: r["wall_s"] / r["iterations"] * r["max_iters"], axis=1).sum()
    full += (t.expected - len(ran)) * per_iter * t.max_iters
    spent = t.trials["wall_s"].sum()
    by_status = t.trials.groupby("status")["wall_s"].sum() / 3600
    fig = go.Figure([go.Bar(x=["spent"], y=[by_status.get(s, 0.0)], name=s)
                     for s in by_status.index])
    fig.add_trace(go.Bar(x=["every trial to the end"], y=[full / 3600], name="estimate",
                         marker_color="#bbb"))
    fig.update_layout(barmode="stack", yaxis_title="trial-hours", height=380)
    return (f"<p>Spent <b>{spent / 3600:.3f}</b> trial-hours; running every one of the "
            f"{t.expected} trials to {t.max_iters} iterations would take about "
            f"<b>{full / 3600:.3f}</b> ({100 * spent / full:.0f}% spent). Estimated from each "
            f"trial's own seconds per iteration (the median for trials not yet run).</p>"
            + figure_html(fig, HOW["compute"]))


def section_sensitivity(t: SweepTables) -> str:
    pairs = finite(partition_trials(t.trials))
    if pairs.empty:
        return "<p>No scored partition trials yet.</p>"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("D units", "G units"),
                        horizontal_spacing=0.12)
    for col, net in enumerate(("D", "G"), start=1):
        column = f"{net.lower()}_partition"
        records = []
        for _, row in pairs.iterrows():
            plan = recorded_partition(row[column]).plan("modulated")
            records += [(u, treatment, row["best_fid"]) for u, treatment in enumerate(plan)]
        frame = pd.DataFrame(records, columns=["unit", "treatment", "fid"])
        n_units = frame["unit"].max() + 1
        names = (t.units or {}).get(net) or [f"{net}{u + 1}" for u in range(n_units)]
        z, text = [], []
        for key, _ in TREATMENT_ROWS:
            cells = [frame[(frame["unit"] == u) & (frame["treatment"] == key)]["fid"]
                     for u in range(n_units)]
            z.append([c.mean() if len(c) else None for c in cells])
            text.append([f"n = {len(c)}" for c in cells])
        fig.add_trace(go.Heatmap(z=z, x=names, y=[label for _, label in TREATMENT_ROWS],
                                 text=text, coloraxis="coloraxis",
                                 hovertemplate="%{x} %{y}: mean FID %{z:.2f}, %{text}"
                                               "<extra></extra>"), row=1, col=col)
    fig.update_layout(coloraxis={"colorscale": "Viridis_r", "colorbar": {"title": "FID"}},
                      height=330)
    return ("<p>For each unit, the mean best FID of the partition trials in which it was "
            "frozen, modulated or fine-tuned (D units from the image input, G units from "
            "the latent input). A unit whose rows differ little can be frozen cheaply.</p>"
            + figure_html(fig, HOW["sensitivity"]))


def _grace_period(t: SweepTables) -> int | None:
    """ASHA's grace period from the recorded spec; None without ASHA or without a spec."""
    if t.spec is None or t.spec.scheduler.type != "asha":
        return None
    return t.spec.scheduler.grace_period


def section_asha(t: SweepTables) -> str:
    grace = _grace_period(t)
    if grace is None:
        return NotHere("the sweep ran without ASHA (or its spec is not recorded)")
    frame = finite(finite(t.grace_and_final(grace), "grace"), "final")
    if len(frame) < 3:
        return (f"<p>Rank correlation needs at least 3 trials that ran to the end; "
                f"{len(frame)} did.</p>")
    rho = frame["grace"].rank().corr(frame["final"].rank())
    fig = go.Figure(go.Scatter(x=frame["grace"], y=frame["final"], mode="markers",
                               text=frame["label"], hovertemplate="%{text}"))
    fig.update_layout(xaxis_title=f"score at the grace rung (iteration {grace})",
                      yaxis_title="final score", height=420)
    verdict = ("ASHA's early decisions look trustworthy" if rho >= 0.7 else
               "the early score predicts the final one only weakly: a longer grace period, a "
               "steadier score (scheduler.score, the EMA generator) or a noise margin "
               "(scheduler.noise) may help; 'gansweep replay' measures them on a grid")
    return (f"<p>Spearman rank correlation between the score ASHA decided on at the grace "
            f"rung and the final score, over the {len(frame)} search trials that ran to the end "
            f"(the survivors only, so it flatters ASHA): <b>ρ = {rho:.2f}</b> ({verdict}).</p>"
            + figure_html(fig, HOW["asha"]))


def _sample_image(t: SweepTables, trial: pd.Series) -> Path | None:
    if trial["trial_dir"] is None:
        return None
    images = sorted((t.sweep_dir / trial["trial_dir"] / "samples").glob("iter_*.png"))
    if not images:
        return None
    best = best_row(t, trial["trial_id"])
    if best is not None:
        at_best = grid_path(t.sweep_dir / trial["trial_dir"], int(best["iteration"]))
        if at_best.is_file():
            return at_best
    return images[-1]


def section_samples(t: SweepTables) -> str:
    top, baselines = top_settings(t)
    cells = []
    for label in top[:3] + baselines:
        scored = finite(t.trials[t.trials["setting"] == label])
        if scored.empty:
            continue
        trial = scored.loc[scored["best_fid"].idxmin()]
        image = _sample_image(t, trial)
        if image is None:
            continue
        data = base64.b64encode(image.read_bytes()).decode()
        cells.append(f"<figure><img alt='{html.escape(label)}' src='data:image/png;base64,"
                     f"{data}'><figcaption>{html.escape(label)} (seed {trial['seed']}, FID "
                     f"{trial['best_fid']:.1f}, {image.stem.replace('_', ' ')})</figcaption>"
                     f"</figure>")
    if not cells:
        return NotHere("no sample grids in the trial folders")
    return ("<p>Samples of the best trial of each top partition and each baseline, at its "
            "best-FID evaluation.</p><div class='grid'>" + "".join(cells) + "</div>")


TABLE_COLUMNS = ["setting", "seed", "phase", "status", "best_fid", "best_kid", "last_fid",
                 "iterations", "iters_to_threshold", "wall_s", "images_per_s", "trainable_g",
                 "trainable_d", "target_size", "augment", "loss", "lr", "g_init", "d_init",
                 "new_units", "trial_id"]


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td></td>"
    if isinstance(value, float):
        text = "inf" if math.isinf(value) else f"{value:.4g}"
        return f"<td data-v='{'1e308' if math.isinf(value) else value}'>{text}</td>"
    if isinstance(value, int):
        return f"<td data-v='{value}'>{value}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def section_table(t: SweepTables) -> str:
    frame = t.trials.sort_values("best_fid", na_position="last")[TABLE_COLUMNS]
    head = "".join(f"<th>{c}</th>" for c in TABLE_COLUMNS)
    body = "".join(
        f"<tr class='{html.escape(str(row['status']))}'>"
        + "".join(_cell(None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
                  for v in row) + "</tr>"
        for _, row in frame.iterrows())
    return ("<p>Click a column header to sort. Errored trials keep their message in "
            "trials.parquet (column <code>error</code>).</p>"
            f"<table id='trials' class='sortable'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


