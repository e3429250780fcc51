"""The report follows the spec's ranked metric and its direction: reports of ``fid``,
``kid`` and ``is`` sweeps, built from synthetic recorded sweeps (no Ray, no training),
have every section filled from what the verdict ranks; the report renders in headless
Chromium without console errors or warnings and without horizontal scroll."""
import base64
import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from gansweep.core.metrics import METRICS
from gansweep.core.models import unit_names
from gansweep.results.common import objective
from gansweep.results.report import render, write_report
from gansweep.results.tables import load_tables
from gansweep.sweep.record.state import CONFIRM_FILE, GRID_FILE, SweepState
from gansweep.sweep.spec.files import SPEC_FILE, load_sweep_spec

CHROMIUM = os.environ.get("GANSWEEP_CHROMIUM", "/usr/bin/chromium")
# How good each setting is (lower: better, on every metric): the best pair is
# D(1,2,2)G(1,2,2), then fine-tune; D(2,0,3)G(0,0,5) is stopped by ASHA.
QUALITY = {"D(0,0,5)G(0,0,5)": 1.0, "D(0,0,5)G(1,2,2)": 1.5, "D(1,2,2)G(0,0,5)": 2.0,
           "D(1,2,2)G(1,2,2)": 0.0, "D(2,0,3)G(0,0,5)": 4.0, "D(2,0,3)G(1,2,2)": 3.0,
           "fine-tune": 1.0, "scratch": 6.0}
STOPPED = "D(2,0,3)G(0,0,5)"
BEST = "D(1,2,2)G(1,2,2)"


def values(quality: float, seed: int, iteration: int, salt: int) -> dict[str, float]:
    """The metrics of an evaluation, all agreeing on which setting is better; seeds differ
    by up to a quarter of the gap between neighbouring settings."""
    noise = 3.0 * np.sin(1.7 * seed + 0.9 * salt + iteration)
    fid = 150 + 12 * quality + noise + 40 / iteration
    return {"fid": fid, "kid": fid / 1000, "is": 6.0 - 0.4 * quality - noise / 30 - 1 / iteration,
            "fid_sd": 2.0, "is_sd": 0.1}


def write_grid(path: Path, colour: tuple[int, int, int], resolution: int = 32) -> None:
    """An 8 x 8 sample grid laid out as core.evaluate writes one (padding 2)."""
    step = resolution + 2
    Image.new("RGB", (8 * step + 2, 8 * step + 2), colour).save(path)


def recorded_sweep(root: Path, metric: str, confirm: bool = True,
                   ds: tuple[str, ...] = ("D(1,2,2)", "D(2,0,3)")) -> Path:
    """A demo-shaped sweep (2 x 2 D x G pairs, fine-tune and scratch, 2 search seeds, ASHA;
    the best pair and the baselines confirmed on 3 fresh seeds) as the driver records it,
    ranked on ``metric``, with sample grids and a target folder of real images."""
    target = root / "target"
    target.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            target / f"cat{n}.png")
    sweep_dir = root / metric
    (sweep_dir / "gansweep").mkdir(parents=True)
    spec_data = {
        "name": metric, "source": "/src.pt", "target": str(target),
        "arch": {"name": "dcgan", "resolution": 32},
        "partitions": {"d": list(ds), "g": ["G(0,0,5)", "G(1,2,2)"]},
        "baselines": ["fine-tune", "scratch"], "seed": [0, 1],
        "budget": {"iters": 4, "eval_every": 2}, "metric": metric, "metrics": ["fid", "kid", "is"],
        "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 2}}
    if confirm:
        spec_data["confirm"] = {"top": 1, "seeds": [5, 6, 7]}
    (sweep_dir / SPEC_FILE).write_text(yaml.safe_dump(spec_data))
    spec = load_sweep_spec(sweep_dir)
    grid = spec.trials()
    g_units, d_units = unit_names(spec.arch)
    (sweep_dir / GRID_FILE).write_text(json.dumps(
        {"units": {"G": g_units, "D": d_units}, "trials": [t.to_dict() for t in grid]}))
    trials = list(grid)
    if confirm:
        chosen = [t for t in grid if t.seed == 0 and (t.label == BEST or t.baseline)]
        planned = [replace(t, seed=s, phase="confirm") for t in chosen for s in (5, 6, 7)]
        planned = [replace(t, index=i) for i, t in enumerate(planned)]
        (sweep_dir / CONFIRM_FILE).write_text(json.dumps(
            {"trials": [t.to_dict() for t in planned]}))
        trials += planned
    state = SweepState.create(sweep_dir, metric, len(grid), 4)
    state.save()
    m = METRICS.get(metric)
    for n, trial in enumerate(trials):
        tid = f"t{n:02d}"
        path = f"{trial.phase}/{tid}"
        (sweep_dir / path / "samples").mkdir(parents=True)
        state.event("start", tid, config=trial.to_dict(), path=path)
        stopped = trial.label == STOPPED and trial.phase == "search"
        for it in (2,) if stopped else (2, 4):
            v = values(QUALITY[trial.label], trial.seed, it, len(trial.label))
            state.result(tid, {"iteration": it, **v, "score": v[metric],
                               "score_sd": v.get(m.sd) if m.sd else None,
                               "time_total_s": 1.5 * it, "trainable_g": 1000 + 100 * n,
                               "trainable_d": 500, "images_per_s": 100.0})
            shade = int(40 * QUALITY[trial.label])
            write_grid(sweep_dir / path / "samples" / f"iter_{it:07d}.png", (shade, 90, 160))
        state.event("end", tid, status="stopped" if stopped else "finished")
    state.save()
    return sweep_dir


def plain(value):
    """Plotly's JSON with its typed arrays ({dtype, bdata, shape}) as lists."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if shape:
            array = array.reshape([int(x) for x in str(shape).split(",")])
        return array.tolist()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def figures(section_html: str) -> list[dict]:
    """The plotly figures (data, layout) a section's HTML holds."""
    out, decoder = [], json.JSONDecoder()
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', section_html):
        data, end = decoder.raw_decode(section_html, match.end())
        layout, _ = decoder.raw_decode(section_html, re.match(r",\s*", section_html[end:]).end()
                                       + end)
        out.append({"data": plain(data), "layout": plain(layout)})
    return out


def sections(text: str) -> dict[str, str]:
    return dict(re.findall(r"<section id='([^']+)'>(.*?)</section>", text, re.S))


@pytest.mark.parametrize("metric", ["fid", "kid", "is"])
def test_every_section_follows_the_ranked_metric(metric, tmp_path):
    t = load_tables(recorded_sweep(tmp_path, metric))
    m = METRICS.get(metric)
    label = metric.upper()
    parts = sections(render(t))
    for key in ("summary", "heatmap", "baselines", "curves", "pareto", "sensitivity",
                "samples", "table"):
        assert key in parts, (metric, key)
    assert f"D partition × G partition: {label}</h2>" in parts["heatmap"]
    # The verdict names the best pair; the heatmap's darkest cell is that pair.
    assert f"Winner on the confirmation seeds: {BEST}" in parts["summary"]
    (heat,) = figures(parts["heatmap"])
    trace = heat["data"][0]
    z = np.array([[np.nan if v is None else v for v in row] for row in trace["z"]])
    stopped = trace["y"].index("D(2,0,3)"), trace["x"].index("G(0,0,5)")
    assert np.isnan(z[stopped]) and np.isfinite(z).sum() == 3  # no final value: no colour
    z[stopped] = m.worst
    best_cell = np.unravel_index(np.argmin([[m.loss(v) for v in row] for row in z]), z.shape)
    assert trace["y"][best_cell[0]] + trace["x"][best_cell[1]] == BEST
    # Viridis puts low values dark: reversed exactly when higher is better.
    assert bool(trace.get("reversescale")) == (metric == "is")
    assert "darker the cell, the better" in parts["heatmap"]
    assert trace["text"][best_cell[0]][best_cell[1]] == f"{z[best_cell]:.4g}"
    assert trace["text"][stopped[0]][stopped[1]].endswith(" ×")
    # The values plotted are the ranked metric's (IS is near 5, FID near 150, KID near 0.15).
    expected = {"fid": (140, 260), "kid": (0.14, 0.26), "is": (2.5, 6.0)}[metric]
    (base,) = figures(parts["baselines"])
    means = [tr for tr in base["data"] if "mean" in tr["name"]]
    assert [tr["name"].split(":")[0] for tr in means] == ["search runs",
                                                          "confirmation runs (fresh seeds)"]
    for tr in means:
        assert all(expected[0] < y < expected[1] for y in tr["y"])
        assert isinstance(tr["error_y"]["color"], str) and max(tr["error_y"]["array"]) > 0
    assert set(means[1]["text"]) == {BEST, "fine-tune", "scratch"}
    (curves,) = figures(parts["curves"])
    bold = [tr for tr in curves["data"] if tr["line"]["width"] == 3]
    thin = [tr for tr in curves["data"] if tr["line"]["width"] == 1]
    assert len(thin) > len(bold) > 0
    for tr in bold:  # one colour per setting: its seeds share it
        assert {s["line"]["color"] for s in thin if s["legendgroup"] == tr["legendgroup"]} \
            == {tr["line"]["color"]}
        assert all(expected[0] < y < expected[1] for y in tr["y"])
    assert len({tr["line"]["color"] for tr in bold}) == len({tr["name"] for tr in bold})
    (pareto,) = figures(parts["pareto"])
    front = next(tr for tr in pareto["data"] if tr["name"] == "Pareto front")
    assert front["y"] and all(expected[0] < y < expected[1] for y in front["y"])
    points = sum(len(tr["x"]) for tr in pareto["data"] if tr["name"] != "Pareto front")
    assert points == 5  # settings, not trials: the stopped pair has no finished trial
    (sens,) = figures(parts["sensitivity"])
    cells = [v for tr in sens["data"] for row in tr["z"] for v in row if v is not None]
    assert cells and all(expected[0] < v < expected[1] for v in cells)
    assert parts["samples"].count("<img") == 1 + 3 + 2  # real row, top partitions, baselines
    assert f"{BEST} (" in parts["samples"] and ", iteration 4)" in parts["samples"]
    assert "real target images" in parts["samples"]
    first_row = re.search(r"<tbody><tr class='[^']+'><td>([^<]+)</td>", parts["table"])
    assert first_row.group(1) == BEST
    assert f"<th>best_{metric}</th>" in parts["table"] and "class='scroll'" in parts["table"]
    scores = objective(t)
    assert scores.notna().sum() == len(t.trials)


def test_samples_say_when_the_target_is_not_readable(tmp_path):
    """A sweep read where its target folder is not: the grids, and one line saying why there
    is no row of real images."""
    sweep_dir = recorded_sweep(tmp_path, "kid", confirm=False)
    shutil.rmtree(tmp_path / "target")
    samples = sections(render(load_tables(sweep_dir)))["samples"]
    assert samples.count("<img") == 3 + 2 and "real target images" not in samples
    assert "No row of real images for target: the target is not readable from here (" \
        in samples


def test_sections_without_data_fold(tmp_path):
    """A sweep with nothing run yet folds its empty sections into the one 'Not in this
    sweep' line, the ASHA trust check among them."""
    sweep_dir = recorded_sweep(tmp_path, "fid", confirm=False)
    state = SweepState.load(sweep_dir)
    (sweep_dir / "gansweep" / "events.jsonl").unlink()
    (sweep_dir / "gansweep" / "results.jsonl").unlink()
    state.data["trials"], state.data["offsets"] = {}, {"events": 0, "results": 0}
    state.save()
    text = render(load_tables(sweep_dir))
    parts = sections(text)
    assert set(parts) == {"summary", "table", "not-here"}, set(parts)
    for title in ("ASHA trust check", "Baselines vs the top partitions", "Layer sensitivity",
                  "FID vs iteration", "Samples"):
        assert f"<b>{title}</b>" in parts["not-here"]


def test_a_pair_that_is_a_baseline_is_one_setting_with_both_names(tmp_path):
    """D(0,0,5)G(0,0,5) trains what fine-tune trains: the report shows one setting named
    both ways (as the verdict does), its trials pooled, once among the baselines."""
    t = load_tables(recorded_sweep(tmp_path, "fid", ds=("D(0,0,5)", "D(1,2,2)")))
    both = "fine-tune = D(0,0,5)G(0,0,5)"
    assert set(t.trials.loc[t.trials["label"].isin(["fine-tune", "D(0,0,5)G(0,0,5)"]),
                            "setting"]) == {both}
    parts = sections(render(t))
    (base,) = figures(parts["baselines"])
    search = next(tr for tr in base["data"] if tr["name"] == "search runs: mean, 95% interval")
    assert search["text"].count(both) == 1 and search["customdata"][search["text"].index(
        both)] == 2  # seeds 0 and 1, each the mean of the pair's and the baseline's trial
    assert "fine-tune</td>" not in parts["table"] and f"{both}</td>" in parts["table"]
    (heat,) = figures(parts["heatmap"])
    trace = heat["data"][0]
    row, col = trace["y"].index("D(0,0,5)"), trace["x"].index("G(0,0,5)")
    assert trace["text"][row][col].endswith("<br>= fine-tune")
    assert trace["z"][row][col] == pytest.approx(search["y"][search["text"].index(both)])
    assert both in parts["summary"]


def open_report(report: Path, shots: Path | None = None, width: int = 1400) -> dict:
    """Open a report in headless Chromium at ``width`` px: console errors and warnings
    (plotly's too), page errors, the page's and each section's horizontal overflow; with
    ``shots``, a PNG of each section there."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM} (.ci/run installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        messages: list[str] = []
        page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
        # plotly.js logs its warnings with console.trace ("WARN: ...")
        page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}")
                if msg.type in ("error", "warning", "trace", "assert") else None)
        page.goto(report.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg')"
                               ".length >= 5", timeout=30_000)
        page.wait_for_timeout(300)
        found = page.evaluate("""() => ({
            page: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
            sections: Array.from(document.querySelectorAll('section')).map(
                s => [s.id, s.scrollWidth, s.clientWidth,
                      s.querySelectorAll('.js-plotly-plot').length])})""")
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            for name, *_ in found["sections"]:
                page.locator(f"section#{name}").screenshot(path=str(shots / f"{name}.png"))
        browser.close()
    return {"messages": messages, **found}


@pytest.mark.parametrize("metric", ["fid", "is"])
def test_report_renders_in_chromium_without_warnings_or_scroll(metric, tmp_path):
    pytest.importorskip("playwright.sync_api")
    out = write_report(load_tables(recorded_sweep(tmp_path, metric)), tmp_path / "report.html")
    shots = os.environ.get("GANSWEEP_TEST_ARTIFACTS")
    seen = open_report(out, Path(shots) / f"report-{metric}" if shots else None)
    assert seen["messages"] == []
    scroll, client = seen["page"]
    assert scroll <= client, f"the page scrolls sideways at 1,400 px: {seen['page']}"
    for name, scroll, client, _ in seen["sections"]:
        assert scroll <= client, f"section {name} is wider than the page"
    plots = {name: n for name, _, _, n in seen["sections"]}
    for name in ("heatmap", "baselines", "curves", "pareto", "sensitivity"):
        assert plots[name] == 1, (name, plots)
