"""The report's sections about the sweep itself: the D x G heatmap, baselines vs the top
partitions, curves, parameters, compute, layer sensitivity and the ASHA check. Each plots
what the verdict ranks (``common.objective``), in the ranked metric's direction."""
from __future__ import annotations

import html
import math

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from gansweep.core.treatments import Partition, in_order
from gansweep.results.common import (
    TREATMENT_ROWS,
    NotHere,
    better,
    by_setting,
    colour_scale,
    error_bars,
    figure_html,
    finite,
    metric_label,
    objective_words,
    partition_trials,
    scored_trials,
    top_settings,
    trial_history,
)
from gansweep.results.tables import SweepTables

# The one-sentence "how to read" of each figure, by section ({better}: lower or higher).
HOW = {
    "heatmap": ("each cell is one D × G pair, its value printed in it; the darker the cell, the "
            "better (the {better}) its value, so the best pairs sit where dark cells cluster."),
    "baselines": ("a marker further {where} is a better setting; its bar is the 95% interval of "
            "its mean over seeds (the summary's paired differences, on the same seeds, are the "
            "sharper test of two settings)."),
    "curves": ("each colour is one setting: thin lines are its seeds, the bold line their mean; a "
            "line still improving at the right edge would have gained from more iterations."),
    "pareto": ("{better} is better and further left trains fewer parameters; the red steps are "
            "the settings no other setting beats on both (by its mean over seeds)."),
    "compute": ("the left bar is the compute spent, split by how trials ended; the grey bar is "
            "what running every trial to the end would have cost."),
    "sensitivity": ("read each column (one unit) down its three rows: the treatment with the "
            "darker cell (the {better} mean) suits that unit best."),
    "asha": ("each point is a trial that ran to the end; the closer the points lie to a rising "
            "line, the better early scores predicted final ones."),
}
PALETTE = qualitative.D3  # curves: one colour per setting
PHASES = (("search", "search runs", "#7f7f7f"), ("confirm", "confirmation runs (fresh seeds)",
                                                  "#2ca02c"))


def _how(t: SweepTables, key: str) -> str:
    return HOW[key].format(better=better(t), where="down" if better(t) == "lower" else "up")


def _value(v: float) -> str:
    return f"{v:.4g}"


def section_heatmap(t: SweepTables) -> str:
    search = t.trials[t.trials["phase"] == "search"]
    pairs = partition_trials(search)
    if pairs.empty:
        return NotHere("no D × G partition trials")

    ds, gs = in_order(pairs["d_partition"]), in_order(pairs["g_partition"])
    scored = scored_trials(t, "search", finished=False)
    if partition_trials(scored).empty:
        return NotHere("no D × G pair has a score yet")
    label = metric_label(t)
    z, text, hover = [], [], []
    for d in ds:
        z_row, text_row, hover_row = [], [], []
        for g in gs:
            cell = pairs[(pairs["d_partition"] == d) & (pairs["g_partition"] == g)]
            # With the trials of a baseline that trains the same pair (one setting).
            values = scored[scored["setting"].isin(cell["setting"].unique())]
            final = values[values["status"] == "finished"]
            # A pair none of whose trials ran to the end: its early value, uncoloured (an
            # early value is not comparable with final ones), marked.
            shown = final if len(final) else values
            z_row.append(final["value"].mean() if len(final) else None)
            mark = next((m for s, m in (("diverged", " !"), ("errored", " E"))
                         if (cell["status"] == s).any()), " ×" if len(shown) > len(final) else "")
            twin = [n.split(" = ")[0] for n in cell["setting"].unique() if " = " in n]
            text_row.append((_value(shown["value"].mean()) if len(shown) else "") + mark
                            + "".join(f"<br>= {n}" for n in twin))
            statuses = ", ".join(f"{n} {s}" for s, n in cell["status"].value_counts().items())
            hover_row.append(f"{d}{g}<br>n = {len(cell)}: {statuses}<br>mean of "
                             f"{len(shown)} {'finished' if len(final) else 'early'} trial(s)")
        z.append(z_row)
        text.append(text_row)
        hover.append(hover_row)
    fig = go.Figure(go.Heatmap(z=z, x=gs, y=ds, text=text, customdata=hover,
                               texttemplate="%{text}", **colour_scale(t),
                               hovertemplate="%{customdata}<br>" + label + " %{z:.4g}"
                                             "<extra></extra>",
                               colorbar={"title": {"text": f"{label}<br>(darker:<br>better)"}}))
    fig.update_layout(height=max(350, 40 * len(ds) + 150), xaxis_title="G partition",
                      yaxis_title="D partition", yaxis={"autorange": "reversed"})
    return (f"<p>Each pair's mean {html.escape(objective_words(t))} over its search trials that "
            f"ran to the end ({len(ds)} × {len(gs)} pairs; {better(t)} is better). A pair none "
            f"of whose trials ran to the end is left white, with their value at the iteration "
            f"ASHA stopped them at, marked ×; ! = some trial diverged, E = some trial errored. "
            f"Confirmation runs are in 'Baselines vs the top partitions'.</p>"
            + figure_html(fig, _how(t, "heatmap")))


def section_baselines(t: SweepTables) -> str:
    top, baselines = top_settings(t)
    names = baselines + top
    place = {name: n for n, name in enumerate(names)}
    phases = [(phase, words, colour, settings) for phase, words, colour in PHASES
              if not (settings := by_setting(t, phase).reindex(names).dropna(
                  subset=["mean"])).empty]
    fig = go.Figure()
    for offset, (phase, words, colour, settings) in zip(
            (-0.15, 0.15) if len(phases) == 2 else (0.0,), phases):
        fig.add_trace(go.Scatter(
            x=[place[n] + offset for n in settings.index], y=settings["mean"], mode="markers",
            name=f"{words}: mean, 95% interval", legendgroup=phase,
            error_y=error_bars(settings["low"], settings["mean"], settings["high"], colour),
            marker={"size": 14, "color": colour, "line": {"width": 2}, "symbol": [
                "square-open" if n in baselines else "diamond-open" for n in settings.index]},
            text=settings.index, customdata=settings["n"],
            hovertemplate="%{text}: %{y:.4g} (%{customdata} seeds)<extra></extra>"))
        single = scored_trials(t, phase)
        single = single[single["setting"].isin(names)]
        fig.add_trace(go.Scatter(
            x=[place[n] + offset for n in single["setting"]], y=single["value"],
            mode="markers", name=f"{words}: single trials", legendgroup=phase,
            marker={"color": colour, "size": 5, "opacity": 0.7},
            text=single["setting"] + ", seed " + single["seed"].astype(str),
            hovertemplate="%{text}: %{y:.4g}<extra></extra>"))
    if not fig.data:
        return NotHere("no baseline or partition trial has run to the end yet")
    fig.update_layout(yaxis_title=f"{metric_label(t)} ({better(t)} is better)", height=440,
                      xaxis={"tickvals": list(range(len(names))), "range": [-0.5, len(names) - 0.5],
                             "ticktext": [n if any(n in p[3].index for p in phases) else
                                          f"{n}<br>(none ran to the end)" for n in names]})
    apart = ("the search's trials that ran to the end (grey, left) apart from the "
             "confirmation's reruns on fresh seeds (green, right)" if len(phases) == 2 else
             f"the {phases[0][1]} that ran to the end")
    return (f"<p>Baselines (squares) vs the top partitions (diamonds): each setting's mean "
            f"{html.escape(objective_words(t))} over its seeds with its 95% t-interval (none "
            f"for one seed), {apart}; dots are single trials.</p>"
            + figure_html(fig, _how(t, "baselines")))


def section_curves(t: SweepTables) -> str:
    top, baselines = top_settings(t)
    metric = t.metric.name
    phases = [p for p in PHASES if (t.trials["phase"] == p[0]).any()]
    fig = make_subplots(rows=1, cols=len(phases), shared_yaxes=True,
                        subplot_titles=[words for _, words, _ in phases],
                        horizontal_spacing=0.05)
    shown: set[str] = set()
    for n, name in enumerate(baselines + top):
        colour = PALETTE[n % len(PALETTE)]
        dash = "dot" if name in baselines else "solid"
        for col, (phase, _, _) in enumerate(phases, start=1):
            trials = t.trials[(t.trials["setting"] == name) & (t.trials["phase"] == phase)
                              & t.trials["trial_id"].notna()]
            runs = [(trial["seed"], trial_history(t, trial["trial_id"], metric))
                    for _, trial in trials.iterrows()]
            runs = [(seed, h) for seed, h in runs if not h.empty]
            if not runs:
                continue
            for seed, history in runs:
                fig.add_trace(go.Scatter(
                    x=history["iteration"], y=history[metric], mode="lines", opacity=0.45,
                    line={"color": colour, "width": 1, "dash": dash}, legendgroup=name,
                    showlegend=False, hovertemplate=f"{html.escape(name)} seed {seed}: "
                                                    "%{y:.4g} at %{x}<extra></extra>"),
                    row=1, col=col)
            mean = pd.concat([h for _, h in runs]).groupby("iteration")[metric].mean()
            fig.add_trace(go.Scatter(
                x=mean.index, y=mean.values, mode="lines+markers", name=name,
                line={"color": colour, "width": 3, "dash": dash}, legendgroup=name,
                showlegend=name not in shown, hovertemplate=f"{html.escape(name)}, mean of "
                f"{len(runs)} seeds: " + "%{y:.4g} at %{x}<extra></extra>"), row=1, col=col)
            shown.add(name)
    if not shown:
        return NotHere("no evaluations of the baselines or top partitions yet")
    fig.update_xaxes(title_text="iteration")
    fig.update_yaxes(title_text=f"{metric_label(t)} ({better(t)} is better)", row=1, col=1)
    fig.update_layout(height=450)
    return (f"<p>{metric_label(t)} at each evaluation"
            + (" (of the EMA generator)" if t.spec is not None and t.spec.ema_kimg is not None
               else "") + ", one colour per setting: thin lines are single seeds, the bold line "
            "their mean at each iteration (over the seeds evaluated there: ASHA stops some "
            "early); dotted: baselines, solid: top partitions.</p>"
            + figure_html(fig, _how(t, "curves")))


def section_pareto(t: SweepTables) -> str:
    settings = by_setting(t, "search").dropna(subset=["params"])
    if settings.empty:
        return NotHere("no setting with trainable-parameter counts has run to the end yet")
    front, best = [], math.inf
    for name, row in settings.sort_values("params", kind="stable").iterrows():
        if t.metric.loss(row["mean"]) < best:  # settings are best first: ties keep the better
            best = t.metric.loss(row["mean"])
            front.append(name)
    fig = go.Figure()
    for kind, colour in (("partition", "#1f77b4"), ("baseline", "#ff7f0e"), ("plan", "#9467bd")):
        part = settings[settings["kind"] == kind]
        if part.empty:
            continue
        fig.add_trace(go.Scatter(x=part["params"], y=part["mean"], mode="markers",
                                 name=f"{kind}s", text=part.index, marker={"color": colour},
                                 error_y=error_bars(part["low"], part["mean"], part["high"],
                                                    colour),
                                 hovertemplate="%{text}<br>%{x} params<br>"
                                               + metric_label(t) + " %{y:.4g}<extra></extra>"))
    on_front = settings.loc[front]
    fig.add_trace(go.Scatter(x=on_front["params"], y=on_front["mean"], mode="lines",
                             name="Pareto front", line={"shape": "hv", "color": "red"},
                             hoverinfo="skip"))
    fig.update_layout(xaxis_title="trainable parameters (G + D)", xaxis_type="log",
                      yaxis_title=f"{metric_label(t)}, mean over seeds ({better(t)} is better)",
                      height=450)
    names = ", ".join(html.escape(x) for x in front)
    return (f"<p>Each setting's mean {html.escape(objective_words(t))} over its search seeds "
            f"(bars: 95% intervals) against the parameters it trains. Pareto front (fewest "
            f"parameters for a given value): {names}.</p>" + figure_html(fig, _how(t, "pareto")))


def section_compute(t: SweepTables) -> str:
    ran = t.trials[t.trials["iterations"] > 0]
    if ran.empty:
        return NotHere("no trial has run yet")
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
    pairs = partition_trials(scored_trials(t, "search"))
    if pairs.empty:
        return NotHere("no partition trial has run to the end yet")
    label = metric_label(t)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("D units", "G units"),
                        horizontal_spacing=0.12)
    for col, net in enumerate(("D", "G"), start=1):
        column = f"{net.lower()}_partition"
        records = []
        for _, row in pairs.iterrows():
            plan = Partition.parse(row[column]).plan("modulated")
            records += [(u, treatment, row["value"]) for u, treatment in enumerate(plan)]
        frame = pd.DataFrame(records, columns=["unit", "treatment", "value"])
        n_units = frame["unit"].max() + 1
        names = (t.units or {}).get(net) or [f"{net}{u + 1}" for u in range(n_units)]
        z, text = [], []
        for key, _ in TREATMENT_ROWS:
            cells = [frame[(frame["unit"] == u) & (frame["treatment"] == key)]["value"]
                     for u in range(n_units)]
            z.append([c.mean() if len(c) else None for c in cells])
            text.append([f"n = {len(c)}" for c in cells])
        fig.add_trace(go.Heatmap(z=z, x=names, y=[label for _, label in TREATMENT_ROWS],
                                 text=text, coloraxis="coloraxis", texttemplate="%{z:.4g}",
                                 hovertemplate="%{x} %{y}: mean " + label + " %{z:.4g}, "
                                               "%{text}<extra></extra>"), row=1, col=col)
    fig.update_layout(coloraxis={**colour_scale(t), "colorbar": {
        "title": {"text": f"{label}<br>(darker:<br>better)"}}}, height=330)
    return (f"<p>For each unit, the mean {html.escape(objective_words(t))} of the search's "
            f"partition trials that ran to the end in which it was frozen, modulated or "
            f"fine-tuned (D units from the image input, G units from the latent input; "
            f"{better(t)} is better). A unit whose rows differ little can be frozen cheaply.</p>"
            + figure_html(fig, _how(t, "sensitivity")))


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
        return NotHere(f"a rank correlation needs at least 3 search trials that ran to the "
                       f"end; {len(frame)} did")
    rho = frame["grace"].rank().corr(frame["final"].rank())
    fig = go.Figure(go.Scatter(x=frame["grace"], y=frame["final"], mode="markers",
                               text=frame["label"], hovertemplate="%{text}"))
    label = f"{metric_label(t)} score ({better(t)} is better)"
    fig.update_layout(xaxis_title=f"{label} at the grace rung (iteration {grace})",
                      yaxis_title=f"final {label}", height=420)
    verdict = ("ASHA's early decisions look trustworthy" if rho >= 0.7 else
               "the early score predicts the final one only weakly: a longer grace period, a "
               "steadier score (scheduler.score, the EMA generator) or a noise margin "
               "(scheduler.noise) may help; 'gansweep replay' measures them on a grid")
    return (f"<p>Spearman rank correlation between the score ASHA decided on at the grace "
            f"rung and the final score, over the {len(frame)} search trials that ran to the end "
            f"(the survivors only, so it flatters ASHA): <b>ρ = {rho:.2f}</b> ({verdict}).</p>"
            + figure_html(fig, HOW["asha"]))
