"""The comparison report: one self-contained HTML file (plotly inlined, images embedded)
built from a sweep's tables. Works on a partial sweep and says what is missing."""
from __future__ import annotations

import base64
import html
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import yaml
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write
from gansweep.core.treatments import enumerate_partitions
from gansweep.results.tables import SweepTables, load_tables, recorded_partition, write_tables
from gansweep.sweep.spec import Scheduler

TOP = 5  # partitions shown next to the baselines
TREATMENT_ROWS = (("freeze", "frozen"), ("modulated", "modulated"), ("finetune", "fine-tuned"))


def _finite(frame: pd.DataFrame, column: str = "best_fid") -> pd.DataFrame:
    """Rows whose ``column`` is a finite number (not missing, not a diverged inf)."""
    values = pd.to_numeric(frame[column], errors="coerce").astype(float).to_numpy()
    return frame.loc[np.isfinite(values)]


def _kind(trials: pd.DataFrame) -> pd.Series:
    """partition, baseline or plan, per trial."""
    return pd.Series(["partition" if isinstance(d, str) else "baseline" if isinstance(b, str)
                      else "plan" for d, b in zip(trials["d_partition"], trials["baseline"])],
                     index=trials.index, dtype=object)


def _partitions(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[_kind(trials) == "partition"]


def _by_setting(trials: pd.DataFrame) -> pd.DataFrame:
    """Best FID per setting (partition pair, baseline or plan) over seeds and other axes."""
    scored = _finite(trials)
    grouped = scored.groupby("label")["best_fid"]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=0), "n": grouped.size()})
    kind = pd.Series(_kind(trials).to_numpy(), index=trials["label"])
    out["kind"] = kind[~kind.index.duplicated()].reindex(out.index)
    return out.sort_values("mean")


def _top_labels(trials: pd.DataFrame) -> tuple[list[str], list[str]]:
    settings = _by_setting(trials)
    partitions = settings[settings["kind"] == "partition"].index[:TOP].tolist()
    baselines = sorted(trials["baseline"].dropna().unique().tolist())
    return partitions, baselines


def _history(t: SweepTables, trial_id: str) -> pd.DataFrame:
    """A trial's evaluations with a finite FID, in iteration order."""
    return _finite(t.metrics[t.metrics["trial_id"] == trial_id], "fid")


def _best_row(t: SweepTables, trial_id: str) -> pd.Series | None:
    """A trial's evaluation with the lowest FID."""
    history = _history(t, trial_id)
    return None if history.empty else history.loc[history["fid"].idxmin()]


def _figure_html(fig: go.Figure) -> str:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 60})
    return pio.to_html(fig, full_html=False, include_plotlyjs=False,
                       config={"displaylogo": False, "responsive": True})


# --- sections: each returns its HTML body ------------------------------------------------

def section_summary(t: SweepTables) -> str:
    counts = t.trials["status"].value_counts().to_dict()
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines = [f"<p><b>{len(t.trials)}</b> trials of <b>{t.expected}</b> expected: {parts}.</p>"]
    if t.missing:
        lines.append(f"<p class='warn'>Partial sweep: <b>{t.missing}</b> trials have no final "
                     f"result yet (pending or running). Figures use what exists.</p>")
    settings = _by_setting(t.trials)
    if len(settings):
        best = settings.iloc[0]
        lines.append(f"<p>Best setting by mean best FID: <b>{html.escape(settings.index[0])}"
                     f"</b> ({best['mean']:.2f}, n = {int(best['n'])}).</p>")
    threshold = t.trials["fid_threshold"].dropna()
    if len(threshold):
        lines.append(f"<p>FID threshold for 'iterations to threshold': {threshold.iloc[0]:.2f} "
                     f"(the scratch baseline's best FID unless given).</p>")
    varying = _varying(t.trials)
    if varying:
        lines.append(f"<p>Axes varied (figures average over them per setting): "
                     f"{', '.join(varying)}.</p>")
    return "".join(lines)


def section_heatmap(t: SweepTables) -> str:
    pairs = _partitions(t.trials)
    if pairs.empty:
        return "<p>No partition trials in this sweep.</p>"

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
            scored = _finite(cell)
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
            + _figure_html(fig))


def section_baselines(t: SweepTables) -> str:
    top, baselines = _top_labels(t.trials)
    labels = baselines + top
    if not labels:
        return "<p>No scored trials yet.</p>"
    settings = _by_setting(t.trials).reindex(labels)
    fig = go.Figure(go.Scatter(x=labels, y=settings["mean"], mode="markers",
                               error_y={"type": "data", "array": settings["std"].fillna(0)},
                               marker={"size": 14, "symbol": "diamond", "color": [
                                   "#888" if b in baselines else "#3b6" for b in labels]},
                               name="mean best FID ± sd"))
    scored = _finite(t.trials[t.trials["label"].isin(labels)])
    fig.add_trace(go.Scatter(x=scored["label"], y=scored["best_fid"], mode="markers",
                             marker={"color": "black", "size": 6}, name="trials (seeds)",
                             text=scored["seed"].map(lambda s: f"seed {s}")))
    fig.update_layout(yaxis_title="best FID (lower is better)", height=420)
    return ("<p>Baselines (grey) vs the top partitions (green): mean best FID, error bars = "
            "standard deviation over seeds, dots = single trials.</p>" + _figure_html(fig))


AXIS_COLUMNS = ("source", "target", "target_size", "augment", "loss", "lr", "g_init",
                "d_init", "seed")


def _varying(trials: pd.DataFrame) -> list[str]:
    return [c for c in AXIS_COLUMNS if trials[c].nunique(dropna=False) > 1]


def _trial_name(trial: pd.Series, varying: list[str]) -> str:
    """The trial's label with the axis values that tell it apart from its siblings."""
    values = [f"{c}={Path(v).name if c in ('source', 'target') else v}"
              for c, v in trial[varying].items() if c != "seed"]
    return " ".join([trial["label"], *values, f"s{trial['seed']}"])


def section_curves(t: SweepTables) -> str:
    top, baselines = _top_labels(t.trials)
    varying = _varying(t.trials)
    fig = go.Figure()
    for label in baselines + top:
        for _, trial in t.trials[t.trials["label"] == label].iterrows():
            history = _history(t, trial["trial_id"])
            if history.empty:
                continue
            fig.add_trace(go.Scatter(x=history["iteration"], y=history["fid"],
                                     mode="lines+markers", name=_trial_name(trial, varying),
                                     line={"dash": "dot" if label in baselines else "solid"}))
    fig.update_layout(xaxis_title="iteration", yaxis_title="FID", height=450)
    return "<p>Dotted: baselines; solid: top partitions.</p>" + _figure_html(fig)


def section_pareto(t: SweepTables) -> str:
    scored = _finite(t.trials).dropna(subset=["trainable_g", "trainable_d"]).copy()
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
    kinds = _kind(scored)
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
        _figure_html(fig)


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
            + _figure_html(fig))


def section_sensitivity(t: SweepTables) -> str:
    pairs = _finite(_partitions(t.trials))
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
            + _figure_html(fig))


def section_families(t: SweepTables) -> str:
    fam = t.trials[t.trials["family"].notna()]
    if fam.empty:
        return "<p>No plan-family trials in this sweep (<code>plans: [{family: ...}]</code>).</p>"
    fig = go.Figure()
    rows = []
    for (family, mode), part in fam.groupby(["family", "family_mode"]):
        scored = _finite(part).groupby("family_n")["best_fid"].mean()
        fig.add_trace(go.Scatter(x=scored.index, y=scored.values, mode="lines+markers",
                                 name=f"{family}, {mode}"))
        for n, group in part.groupby("family_n"):
            reached = group["iters_to_threshold"].dropna()
            rows.append(f"<tr><td>{family}</td><td>{mode}</td><td>{n}</td>"
                        f"<td>{_finite(group)['best_fid'].mean():.2f}</td>"
                        f"<td>{int(reached.median()) if len(reached) else 'never'}</td></tr>")
    scratch = _finite(t.trials[t.trials["baseline"] == "scratch"])["best_fid"]
    if len(scratch):
        fig.add_hline(y=scratch.mean(), line_dash="dot", annotation_text="scratch")
    fig.update_layout(xaxis_title="units of G transferred (n)", yaxis_title="best FID",
                      height=420)
    threshold = t.trials["fid_threshold"].dropna()
    what = f"FID ≤ {threshold.iloc[0]:.2f}" if len(threshold) else "the threshold"
    return ("<p>Denton et al.'s families: <i>forward</i> transfers G's first n units (from "
            "the latent input), <i>backward</i> its last n, frozen or fine-tuned; the other "
            "units and D start from scratch. Convergence: the first evaluated iteration "
            f"with {what} (the scratch baseline's best unless given).</p>"
            + _figure_html(fig) + "<table><thead><tr><th>family</th><th>mode</th><th>n</th>"
            "<th>mean best FID</th><th>iterations to threshold (median)</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def section_init(t: SweepTables) -> str:
    ft = _finite(t.trials[t.trials["baseline"] == "fine-tune"])
    if ft[["g_init", "d_init"]].drop_duplicates().shape[0] < 2:
        return ("<p>G and D initialisation did not vary in this sweep (<code>g_init</code>, "
                "<code>d_init</code> axes, Wang et al. Tables 1-2).</p>")
    inits = ("pretrained", "scratch")
    cells = ft.groupby(["g_init", "d_init"])["best_fid"].agg(["mean", "std", "size"])
    rows = "".join(
        f"<tr><th>G {g}</th>" + "".join(
            f"<td>{cells.loc[(g, d), 'mean']:.2f} ± {cells.loc[(g, d), 'std']:.2f} "
            f"(n = {cells.loc[(g, d), 'size']})</td>" if (g, d) in cells.index else "<td></td>"
            for d in inits) + "</tr>" for g in inits)
    table = (f"<table><thead><tr><th></th>{''.join(f'<th>D {d}</th>' for d in inits)}</tr>"
             f"</thead><tbody>{rows}</tbody></table>")
    sizes = ft.assign(size=ft["target_size"].fillna(-1))
    fig = go.Figure()
    for (g, d), part in sizes.groupby(["g_init", "d_init"]):
        curve = part.groupby("size")["best_fid"].mean()
        fig.add_trace(go.Scatter(x=[("all" if x < 0 else int(x)) for x in curve.index],
                                 y=curve.values, mode="lines+markers",
                                 name=f"G {g}, D {d}"))
    fig.update_layout(xaxis_title="target images (target_size)", xaxis_type="category",
                      yaxis_title="best FID", height=400)
    return ("<p>Fine-tuning with G and D each initialised from the source or from scratch "
            "(Wang et al. Tables 1-2): mean best FID ± sd over seeds and target sizes.</p>"
            + table + _figure_html(fig))


def _spearman(x: pd.Series, y: pd.Series) -> float:
    return float(x.rank().corr(y.rank())) if len(x) > 2 else float("nan")


def section_sources(t: SweepTables) -> str:
    tried = t.trials[t.trials["source"].notna() & (t.trials["baseline"] != "scratch")]
    if tried["source"].nunique() < 2:
        return ("<p>One source in this sweep: give several source checkpoints "
                "(<code>source: [a.pt, b.pt]</code>) to compare them (Wang et al. Table 4).</p>")
    gaps = {(g["source"], g["target"]): g for g in t.references.get("sources", [])}
    scratch = _finite(t.trials[t.trials["baseline"] == "scratch"])
    fig = go.Figure()
    rows, notes = [], []
    for (target, label), part in tried.groupby(["target", "label"]):
        best = _finite(part).groupby("source")["best_fid"].mean()
        gap = pd.Series({s: gaps.get((s, target), {}).get("source_target_fid")
                         for s in best.index}, dtype=float)
        fig.add_trace(go.Scatter(x=gap.values, y=best.values, mode="markers+text",
                                 text=[Path(s).stem for s in best.index],
                                 textposition="top center", name=f"{label} → {Path(target).name}"))
        rho = _spearman(gap.dropna(), best[gap.notna()])
        notes.append(f"{html.escape(label)} → {html.escape(Path(target).name)}: Spearman ρ = "
                     f"{rho:.2f} over {int(gap.notna().sum())} sources")
        for source in best.index:
            row = gaps.get((source, target), {})
            value = row.get("source_target_fid")
            rows.append(f"<tr><td>{html.escape(Path(source).name)}</td>"
                        f"<td>{html.escape(str(row.get('source_data', '?')))}</td>"
                        f"<td>{html.escape(Path(target).name)}</td><td>{html.escape(label)}</td>"
                        f"<td>{'n/a' if value is None else f'{value:.2f}'}</td>"
                        f"<td>{best[source]:.2f}</td></tr>")
    if len(scratch):
        fig.add_hline(y=scratch["best_fid"].mean(), line_dash="dot", annotation_text="scratch")
    missing = [g for g in gaps.values() if g.get("error")]
    fig.update_layout(xaxis_title="FID(source's training data, target data)",
                      yaxis_title="best FID after transfer", height=420)
    return ("<p>Several sources against one target (Wang et al. Table 4): does the distance "
            "between a source's own data and the target data predict how well it transfers? "
            + "; ".join(notes) + ".</p>"
            + "".join(f"<p class='warn'>{html.escape(g['error'])}</p>" for g in missing)
            + _figure_html(fig) + "<table><thead><tr><th>source</th><th>its training data</th>"
            "<th>target</th><th>setting</th><th>FID(source data, target data)</th>"
            f"<th>mean best FID</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _init_text(trial: pd.Series) -> str:
    if trial["baseline"] == "scratch":
        return "scratch"
    return f"G {trial['g_init']}, D {trial['d_init']}"


def section_conditional(t: SweepTables) -> str:
    cond = t.trials[t.trials["conditional"].notna() & t.trials["trial_id"].notna()]
    if cond.empty:
        return ("<p>No conditional trials in this sweep (<code>conditional: [projection, "
                "ac]</code> with a target of class sub-folders, Wang et al. section 5).</p>")
    rows, classes = [], None
    for _, trial in cond.iterrows():
        best = _best_row(t, trial["trial_id"])
        if best is None or best["class_fid"] is None:
            continue
        per_class = dict(best["class_fid"])
        classes = classes or sorted(per_class)
        values = [per_class.get(c, float("nan")) for c in classes]
        rows.append(f"<tr><td>{html.escape(trial['label'])}</td>"
                    f"<td>{trial['conditional']}</td><td>{_init_text(trial)}"
                    f"</td><td>{trial['seed']}</td><td>{int(best['iteration'])}</td>"
                    + "".join(f"<td>{v:.2f}</td>" for v in values)
                    + f"<td>{np.nanmean(values):.2f}</td><td>{best['fid']:.2f}</td></tr>")
    fig = go.Figure()
    shown = t.trials[t.trials["trial_id"].notna() & (t.trials["conditional"].notna() |
                                                     t.trials["baseline"].notna())]
    for _, trial in shown.iterrows():
        history = _history(t, trial["trial_id"])
        kind = "unconditional" if pd.isna(trial["conditional"]) else trial["conditional"]
        fig.add_trace(go.Scatter(x=history["iteration"], y=history["fid"], mode="lines+markers",
                                 name=f"{trial['label']} ({kind}, seed {trial['seed']})"))
    fig.update_layout(xaxis_title="iteration", yaxis_title="FID (all classes)", height=420)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in classes or [])
    return ("<p>Class-conditional transfer from an unconditional source (Wang et al. section 5, "
            "Table 6): FID of each class's generated images against that class's real ones, "
            "their average, and the class-agnostic FID, at each trial's best evaluation. Per-"
            "class FIDs use a fraction of the images and are biased upwards.</p>"
            "<table><thead><tr><th>setting</th><th>head</th><th>init</th><th>seed</th>"
            f"<th>iteration</th>{head}<th>avg.</th><th>all</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>" + _figure_html(fig))


def section_metrics(t: SweepTables) -> str:
    m = t.metrics
    present = [c for c in ("iw", "classifier") if m[c].notna().any()]
    if not present:
        return ("<p>Neither the independent Wasserstein critic nor the classifier score was "
                "measured (<code>metrics: [fid, kid, iw, classifier]</code>).</p>")
    fig = make_subplots(rows=1, cols=len(present), subplot_titles=[
        {"iw": "IW vs FID (higher IW is better)",
         "classifier": "classifier score vs FID"}[c] for c in present])
    notes = []
    for col, metric in enumerate(present, start=1):
        scored = _finite(_finite(m, "fid"), metric)
        notes.append(f"{metric}: Spearman ρ with FID over all evaluations = "
                     f"{_spearman(scored['fid'], scored[metric]):.2f}")
        fig.add_trace(go.Scatter(x=scored["fid"], y=scored[metric], mode="markers",
                                 text=scored["label"] + " @ " + scored["iteration"].astype(str),
                                 name=metric), row=1, col=col)
        fig.update_xaxes(title_text="FID", row=1, col=col)
        fig.update_yaxes(title_text=metric, row=1, col=col)
    fig.update_layout(height=400, showlegend=False)
    for c in t.references.get("classifiers", []):
        notes.append(f"the classifier of {html.escape(Path(c['target']).name)} "
                     f"({', '.join(map(html.escape, c['classes']))} vs other) has a held-out "
                     f"balanced accuracy of {c['balanced_accuracy']:.3f}")
    return ("<p>The papers' other metrics, at every evaluation: the independent Wasserstein "
            "critic IW (Wang et al. eq. 6: a critic trained on one half of the real and "
            "generated images, measured on the other half; about 0 when they match, negative "
            "otherwise) and the classifier score (Price: the fraction of generated images a "
            "classifier of the target's classes accepts). " + "; ".join(notes) + ".</p>"
            + _figure_html(fig))


def _grace_period(t: SweepTables) -> int | None:
    """ASHA's grace period from the recorded spec (the spec's defaults where it is silent);
    None without ASHA or without a recorded spec."""
    if not t.spec_text:
        return None
    scheduler = Scheduler(**(yaml.safe_load(t.spec_text).get("scheduler") or {}))
    return scheduler.grace_period if scheduler.type == "asha" else None


def section_asha(t: SweepTables) -> str:
    grace = _grace_period(t)
    if grace is None:
        return "<p>This sweep ran without ASHA (or its spec is not recorded).</p>"
    frame = _finite(_finite(t.grace_and_final(grace), "grace"), "final")
    if len(frame) < 3:
        return (f"<p>Rank correlation needs at least 3 trials that ran to the end; "
                f"{len(frame)} did.</p>")
    rho = frame["grace"].rank().corr(frame["final"].rank())
    fig = go.Figure(go.Scatter(x=frame["grace"], y=frame["final"], mode="markers",
                               text=frame["label"], hovertemplate="%{text}"))
    fig.update_layout(xaxis_title=f"FID at the grace rung (iteration {grace})",
                      yaxis_title="final FID", height=420)
    verdict = ("ASHA's early decisions look trustworthy" if rho >= 0.7 else
               "early FID predicts final FID only weakly; consider a longer grace period")
    return (f"<p>Spearman rank correlation between FID at the grace rung and final FID over "
            f"the {len(frame)} trials that ran to the end: <b>ρ = {rho:.2f}</b> "
            f"({verdict}).</p>" + _figure_html(fig))


def _sample_image(t: SweepTables, trial: pd.Series) -> Path | None:
    if trial["trial_dir"] is None:
        return None
    images = sorted((t.sweep_dir / trial["trial_dir"] / "samples").glob("iter_*.png"))
    if not images:
        return None
    best = _best_row(t, trial["trial_id"])
    if best is not None:
        at_best = [p for p in images if p.stem == f"iter_{int(best['iteration']):07d}"]
        if at_best:
            return at_best[0]
    return images[-1]


def section_samples(t: SweepTables) -> str:
    top, baselines = _top_labels(t.trials)
    cells = []
    for label in top[:3] + baselines:
        scored = _finite(t.trials[t.trials["label"] == label])
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
        return "<p>No sample grids found in the trial folders.</p>"
    return ("<p>Samples of the best trial of each top partition and each baseline, at its "
            "best-FID evaluation.</p><div class='grid'>" + "".join(cells) + "</div>")


TABLE_COLUMNS = ["label", "seed", "status", "best_fid", "best_kid", "last_fid", "iterations",
                 "iters_to_threshold", "wall_s", "images_per_s", "trainable_g", "trainable_d",
                 "target_size", "augment", "loss", "lr", "g_init", "d_init", "trial_id"]


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


SECTIONS: list[tuple[str, str, Callable[[SweepTables], str]]] = [
    ("summary", "Summary", section_summary),
    ("heatmap", "D partition × G partition: best FID", section_heatmap),
    ("baselines", "Baselines vs the top partitions", section_baselines),
    ("curves", "FID vs iteration", section_curves),
    ("pareto", "Trainable parameters vs FID", section_pareto),
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
.grid{display:flex;flex-wrap:wrap;gap:16px}
.grid img{image-rendering:pixelated;width:256px}
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


def render(t: SweepTables) -> str:
    """The report as one HTML string (plotly.js inlined: opens offline)."""
    body = "".join(f"<section id='{key}'><h2>{title}</h2>{fn(t)}</section>"
                   for key, title, fn in SECTIONS)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>gansweep report: {html.escape(t.name)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>gansweep report: {html.escape(t.name)}</h1>"
            f"<p><code>{html.escape(str(t.sweep_dir))}</code></p>{body}"
            f"<details><summary>Sweep spec</summary><pre>{html.escape(t.spec_text)}</pre>"
            f"</details><script>{SORT_SCRIPT}</script></body></html>")


def write_report(t: SweepTables, out: str | Path) -> Path:
    out = Path(out)
    text = render(t)
    atomic_write(out, lambda f: f.write(text), binary=False)
    return out


def write_results(sweep_dir: Path, out: str | None = None,
                  fid_threshold: float | None = None) -> Path:
    """Parquet tables into the sweep's gansweep/ folder (skipped, with a warning, where it
    is read-only) and the HTML report to ``out`` (default SWEEP/report.html)."""
    tables = load_tables(sweep_dir, fid_threshold)
    try:
        for path in write_tables(tables):
            print(f"table: {path}")
    except OSError as e:
        print(f"warning: Parquet tables not written ({e})", file=sys.stderr)
    try:
        return write_report(tables, out or sweep_dir / "report.html")
    except OSError as e:
        raise GansweepError(f"cannot write the report: {e}; give --out FILE elsewhere"
                            ) from None
