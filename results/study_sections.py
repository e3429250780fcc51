"""The report's sections for the papers' other studies: Denton et al.'s plan families,
Wang et al.'s G/D initialisation x target size, source choice and conditional transfer,
and the IW / classifier metrics."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gansweep.core.metrics import Metric
from gansweep.results.common import (
    NotHere,
    best_row,
    better,
    figure_html,
    finite,
    metric_label,
    objective_words,
    scored_trials,
    spearman,
    trial_history,
)
from gansweep.results.tables import SweepTables


def _reached(history: pd.DataFrame, metric: Metric, threshold: float) -> int | None:
    """The first evaluated iteration at which ``metric`` is at least as good as ``threshold``."""
    hit = history[history[metric.name].map(metric.loss) <= metric.loss(threshold)]
    return None if hit.empty else int(hit["iteration"].min())


# The one-sentence "how to read" of each figure, by section.
HOW = {
    "families_curves": ("each line is the mean ranked metric of one family and n over training; "
            "the dotted line is the scratch baseline's best."),
    "families_by_n": ("each line is one family and mode; a point beating the dotted scratch line "
            "means transferring n units helped."),
    "init": ("each line is one G/D initialisation; {better} is better, and the gap between lines "
            "shows what initialising from the source is worth at each target size."),
    "sources": ("each point is one source; if points {rise} to the right, sources closer to the "
            "target (lower source-target FID) transfer better."),
    "conditional": ("each line is one trial's FID over training, all classes together; lower is "
            "better."),
    "metrics_curves": ("each line is one setting's classifier score over training (higher is "
            "better); dotted lines are trained from scratch."),
    "metrics": ("each point is one evaluation; a metric that agrees with FID makes the points "
            "fall (IW, classifier score: higher is better, FID: lower)."),
}


def section_families(t: SweepTables) -> str:
    """Denton et al.'s quantities for each plan family, on the sweep's ranked metric: the
    metric vs iteration, its best vs n units transferred, its value at iteration 0 (when
    evaluated: ``eval_at_start``) and the iterations to reach the scratch baseline's best."""
    fam = t.trials[t.trials["family"].notna()]
    if fam.empty:
        return NotHere("no plan-family trials (<code>plans: [{family: ...}]</code>)")
    metric = t.metric.name
    best = f"best_{metric}"
    scratch = finite(t.trials[t.trials["baseline"] == "scratch"], best)[best]
    given = t.trials["fid_threshold"].dropna() if metric == "fid" else pd.Series(dtype=float)
    threshold = given.iloc[0] if len(given) else scratch.mean() if len(scratch) else None
    history = t.metrics[t.metrics[metric].notna()] if metric in t.metrics else t.metrics.iloc[:0]
    by_n, curves = go.Figure(), go.Figure()
    rows = []
    for (family, mode), part in fam.groupby(["family", "family_mode"]):
        scored = finite(part, best).groupby("family_n")[best].mean()
        by_n.add_trace(go.Scatter(x=scored.index, y=scored.values, mode="lines+markers",
                                  name=f"{family}, {mode}"))
        for n, group in part.groupby("family_n"):
            runs = history[history["trial_id"].isin(group["trial_id"])]
            curve = runs.groupby("iteration")[metric].mean()
            curves.add_trace(go.Scatter(x=curve.index, y=curve.values, mode="lines+markers",
                                        name=f"{family} {int(n)} {mode}"))
            start = runs.loc[runs["iteration"] == 0, metric]
            reached = [] if threshold is None else [
                x for _, h in runs.groupby("trial_id")
                if (x := _reached(h, t.metric, threshold)) is not None]
            rows.append(f"<tr><td>{family}</td><td>{mode}</td><td>{int(n)}</td>"
                        f"<td>{finite(group, best)[best].mean():.3g}</td>"
                        f"<td>{f'{start.mean():.3g}' if len(start) else '–'}</td>"
                        f"<td>{int(np.median(reached)) if reached else 'never'}</td></tr>")
    for fig in (by_n, curves):
        if len(scratch):
            fig.add_hline(y=scratch.mean(), line_dash="dot", annotation_text="scratch (best)")
    by_n.update_layout(xaxis_title="units of G transferred (n)", yaxis_title=f"best {metric}",
                       height=420)
    curves.update_layout(xaxis_title="iteration", yaxis_title=metric, height=420)
    better = "≥" if t.metric.mode == "max" else "≤"
    what = f"{metric} {better} {threshold:.3g}" if threshold is not None else "the threshold"
    return ("<p>Denton et al.'s families: <i>forward</i> transfers G's first n units (from "
            "the latent input), <i>backward</i> its last n, frozen or fine-tuned; the other "
            f"units and D start from scratch. Ranked metric: <b>{metric}</b>. At iteration 0: "
            "the score before any training (with <code>budget.eval_at_start</code>). "
            f"Convergence: the first evaluated iteration with {what} (the scratch baseline's "
            "best unless given).</p>" + figure_html(curves, HOW["families_curves"])
            + figure_html(by_n, HOW["families_by_n"])
            + f"<table><thead><tr><th>family</th><th>mode</th><th>n</th><th>mean best "
            f"{metric}</th><th>{metric} at iteration 0</th><th>iterations to threshold "
            f"(median)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def section_init(t: SweepTables) -> str:
    scored = scored_trials(t)
    ft = scored[scored["baseline"] == "fine-tune"]
    if ft[["g_init", "d_init"]].drop_duplicates().shape[0] < 2:
        return NotHere("G and D initialisation did not vary (<code>g_init</code>, "
                       "<code>d_init</code> axes, Wang et al. Tables 1-2)")
    inits = ("pretrained", "scratch")
    cells = ft.groupby(["g_init", "d_init"])["value"].agg(["mean", "std", "size"])
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
        curve = part.groupby("size")["value"].mean()
        fig.add_trace(go.Scatter(x=[("all" if x < 0 else int(x)) for x in curve.index],
                                 y=curve.values, mode="lines+markers",
                                 name=f"G {g}, D {d}"))
    fig.update_layout(xaxis_title="target images (target_size)", xaxis_type="category",
                      yaxis_title=f"{metric_label(t)} ({better(t)} is better)", height=400)
    return (f"<p>Fine-tuning with G and D each initialised from the source or from scratch "
            f"(Wang et al. Tables 1-2): mean {html.escape(objective_words(t))} ± sd of the "
            f"trials that ran to the end, over seeds and target sizes.</p>"
            + table + figure_html(fig, HOW["init"].format(better=better(t))))


def section_sources(t: SweepTables) -> str:
    tried = t.trials[t.trials["source"].notna() & (t.trials["baseline"] != "scratch")]
    if tried["source"].nunique() < 2:
        return NotHere("one source: give several source checkpoints "
                       "(<code>source: [a.pt, b.pt]</code>) to compare them (Wang et al. "
                       "Table 4)")
    gaps = {(g["source"], g["target"]): g for g in t.references.get("sources", [])}
    scored = scored_trials(t)
    scratch = scored[scored["baseline"] == "scratch"]
    fig = go.Figure()
    rows, notes = [], []
    for (target, label), part in tried.groupby(["target", "setting"]):
        best = scored[scored["trial_id"].isin(part["trial_id"])].groupby("source")["value"].mean()
        gap = pd.Series({s: gaps.get((s, target), {}).get("source_target_fid")
                         for s in best.index}, dtype=float)
        fig.add_trace(go.Scatter(x=gap.values, y=best.values, mode="markers+text",
                                 text=[Path(s).stem for s in best.index],
                                 textposition="top center", name=f"{label} → {Path(target).name}"))
        rho = spearman(gap.dropna(), best[gap.notna()])
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
        fig.add_hline(y=scratch["value"].mean(), line_dash="dot", annotation_text="scratch")
    missing = [g for g in gaps.values() if g.get("error")]
    fig.update_layout(xaxis_title="FID(source's training data, target data)",
                      yaxis_title=f"{metric_label(t)} after transfer ({better(t)} is better)",
                      height=420)
    return ("<p>Several sources against one target (Wang et al. Table 4): does the distance "
            "between a source's own data and the target data predict how well it transfers? "
            + "; ".join(notes) + ".</p>"
            + "".join(f"<p class='warn'>{html.escape(g['error'])}</p>" for g in missing)
            + figure_html(fig, HOW["sources"].format(
                rise="rise" if better(t) == "lower" else "fall"))
            + "<table><thead><tr><th>source</th><th>its training data</th>"
            "<th>target</th><th>setting</th><th>FID(source data, target data)</th>"
            f"<th>mean {metric_label(t)}</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _init_text(trial: pd.Series) -> str:
    if trial["baseline"] == "scratch":
        return "scratch"
    return f"G {trial['g_init']}, D {trial['d_init']}"


def section_conditional(t: SweepTables) -> str:
    cond = t.trials[t.trials["conditional"].notna() & t.trials["trial_id"].notna()]
    if cond.empty:
        return NotHere("no conditional trials (<code>conditional: [projection, ac]</code> "
                       "with a target of class sub-folders, Wang et al. section 5)")
    rows, classes = [], None
    for _, trial in cond.iterrows():
        best = best_row(t, trial["trial_id"])
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
        history = trial_history(t, trial["trial_id"])
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
            f"<tbody>{''.join(rows)}</tbody></table>" + figure_html(fig, HOW["conditional"]))


def section_metrics(t: SweepTables) -> str:
    m = t.metrics
    present = [c for c in ("iw", "classifier") if m[c].notna().any()]
    if not present:
        return NotHere("neither the independent Wasserstein critic nor the classifier score "
                       "was measured (<code>metrics: [fid, kid, iw, classifier]</code>)")
    fig = make_subplots(rows=1, cols=len(present), subplot_titles=[
        {"iw": "IW vs FID (higher IW is better)",
         "classifier": "classifier score vs FID"}[c] for c in present])
    notes = []
    for col, metric in enumerate(present, start=1):
        scored = finite(finite(m, "fid"), metric)
        notes.append(f"{metric}: Spearman ρ with FID over all evaluations = "
                     f"{spearman(scored['fid'], scored[metric]):.2f}")
        fig.add_trace(go.Scatter(x=scored["fid"], y=scored[metric], mode="markers",
                                 text=scored["label"] + " @ " + scored["iteration"].astype(str),
                                 name=metric), row=1, col=col)
        fig.update_xaxes(title_text="FID", row=1, col=col)
        fig.update_yaxes(title_text=metric, row=1, col=col)
    fig.update_layout(height=400, showlegend=False)
    over_time = ""
    if "classifier" in present:  # Price's comparison: the score over training, by setting
        curves = go.Figure()
        trials = t.trials.set_index("trial_id")
        setting = m["trial_id"].map(trials["setting"])
        for label, part in m[m["classifier"].notna()].groupby(setting):
            curve = part.groupby("iteration")["classifier"].mean()
            kind = trials.loc[part["trial_id"].iloc[0], "baseline"]
            curves.add_trace(go.Scatter(x=curve.index, y=curve.values, mode="lines+markers",
                                        name=label, line_dash="dot" if kind == "scratch"
                                        else "solid"))
        curves.update_layout(xaxis_title="iteration", yaxis_title="classifier score "
                             "(mean over seeds)", height=400)
        over_time = ("<p>The classifier score over training, each setting against scratch "
                     "(dotted), Price's comparison of transfer with training from "
                     "scratch.</p>" + figure_html(curves, HOW["metrics_curves"]))
    for c in t.references.get("classifiers", []):
        notes.append(f"the classifier of {html.escape(Path(c['target']).name)} "
                     f"({', '.join(map(html.escape, c['classes']))} vs other) has a held-out "
                     f"balanced accuracy of {c['balanced_accuracy']:.3f}")
    return ("<p>The papers' other metrics, at every evaluation: the independent Wasserstein "
            "critic IW (Wang et al. eq. 6: a critic trained on one half of the real and "
            "generated images, measured on the other half; about 0 when they match, negative "
            "otherwise) and the classifier score (Price: the fraction of generated images a "
            "classifier of the target's classes accepts). " + "; ".join(notes) + ".</p>"
            + figure_html(fig, HOW["metrics"]) + over_time)


