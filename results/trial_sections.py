"""The report's sections about single trials: sample grids (under a row of real target
images) and the sortable table of every trial, both ordered by what the verdict ranks."""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import pandas as pd
from PIL import Image

from gansweep.core.data import list_images, load_image
from gansweep.core.errors import GansweepError
from gansweep.core.evaluate import grid_path
from gansweep.results.common import (
    NotHere,
    best_row,
    metric_label,
    objective,
    objective_words,
    rank,
    scored_trials,
    top_settings,
)
from gansweep.results.tables import SweepTables

GRID_COLUMNS, PADDING = 8, 2  # as core.evaluate's save_image writes a sample grid


def _png(data: bytes, alt: str, caption: str) -> str:
    src = base64.b64encode(data).decode()
    return (f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{src}'>"
            f"<figcaption>{caption}</figcaption></figure>")


def _sample_image(t: SweepTables, trial: pd.Series) -> Path | None:
    """The trial's grid at the evaluation its score comes from: the best one under the
    ``best`` rule, else the last."""
    if trial["trial_dir"] is None or pd.isna(trial["trial_dir"]):
        return None
    folder = t.sweep_dir / trial["trial_dir"]
    images = sorted((folder / "samples").glob("iter_*.png"))
    if not images:
        return None
    if t.spec is not None and t.spec.scheduler.rule.rule == "best":
        best = best_row(t, trial["trial_id"], t.metric)
        if best is not None and grid_path(folder, int(best["iteration"])).is_file():
            return grid_path(folder, int(best["iteration"]))
    return images[-1]


def real_row(target: str, resolution: int) -> bytes | str:
    """A row of the target's first images as a PNG laid out like a sample grid's rows
    (same size and padding, so both show at one scale), or why there is none."""
    try:
        paths = list_images(target)[:GRID_COLUMNS]
        images = [load_image(p, resolution) for p in paths]
    except GansweepError as e:
        return f"the target is not readable from here ({e})"
    step = resolution + PADDING
    row = Image.new("RGB", (GRID_COLUMNS * step + PADDING, step + PADDING))
    for n, image in enumerate(images):
        row.paste(Image.fromarray(image), (PADDING + n * step, PADDING))
    out = io.BytesIO()
    row.save(out, format="PNG")
    return out.getvalue()


def _real_rows(t: SweepTables, shown: list[pd.Series], grids: list[Path]) -> list[str]:
    """One row of real images per target of the trials shown, at their grids' resolution."""
    if not grids:
        return []
    with Image.open(grids[0]) as im:
        resolution = (im.width - PADDING) // GRID_COLUMNS - PADDING
    out = []
    for target in dict.fromkeys(trial["target"] for trial in shown):
        row = real_row(target, resolution)
        name = html.escape(Path(target).name)
        if isinstance(row, bytes):
            out.append(_png(row, f"real: {name}", f"<b>real target images</b> ({name})"))
        else:
            out.append(f"<p class='folded'>No row of real images for {name}: "
                       f"{html.escape(row)}.</p>")
    return out


def section_samples(t: SweepTables) -> str:
    top, baselines = top_settings(t)
    scored = scored_trials(t, finished=False)
    cells, shown, grids = [], [], []
    label = metric_label(t)
    for name in top[:3] + baselines:
        runs = scored[scored["setting"] == name]
        if runs.empty:
            continue
        finished = runs[runs["status"] == "finished"]  # an early score is not comparable
        pool = finished if len(finished) else runs
        trial = pool.loc[rank(t, pool["value"]).index[0]]
        image = _sample_image(t, trial)
        if image is None:
            continue
        shown.append(trial)
        grids.append(image)
        cells.append(_png(image.read_bytes(), name,
                          f"{html.escape(name)} ({trial['phase']} seed {trial['seed']}, "
                          f"{label} {trial['value']:.4g}, iteration {int(image.stem[5:])})"))
    if not cells:
        return NotHere("no sample grids in the trial folders")
    return (f"<p>First, real images of the target; then, for each top partition and each "
            f"baseline, samples of its trial with the best {html.escape(objective_words(t))}, "
            f"at the evaluation that score comes from.</p><div class='grid'>"
            + "".join(_real_rows(t, shown, grids)) + "</div><div class='grid'>"
            + "".join(cells) + "</div>")


def table_columns(t: SweepTables) -> list[str]:
    """The table's columns: the ranked score and the ranked metric's best and last values
    first (FID's and KID's too where the metric is another)."""
    m = t.metric.name
    metrics = [f"best_{m}", f"last_{m}"] + [c for c in ("best_fid", "best_kid")
                                            if c != f"best_{m}"]
    return ["setting", "seed", "phase", "status", "score", *metrics, "iterations",
            "iters_to_threshold", "wall_s", "images_per_s", "trainable_g", "trainable_d",
            "target_size", "augment", "loss", "lr", "g_init", "d_init", "new_units", "trial_id"]


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
    columns = table_columns(t)
    order = rank(t, objective(t).dropna()).index.tolist()
    frame = t.trials.loc[order + [i for i in t.trials.index if i not in set(order)], columns]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join(
        f"<tr class='{html.escape(str(row['status']))}'>"
        + "".join(_cell(None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
                  for v in row) + "</tr>"
        for _, row in frame.iterrows())
    return (f"<p>Best first by {html.escape(objective_words(t))} (column "
            f"<code>score</code>); click a column header to sort. Errored trials keep their "
            f"message in trials.parquet (column <code>error</code>).</p>"
            f"<div class='scroll'><table id='trials' class='sortable'><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table></div>")
