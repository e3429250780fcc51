"""Parquet tables and the HTML report of a real tiny sweep, read without Ray; the report is
opened in headless Chromium."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from results.report import SECTIONS
from results.tables import METRIC_SCHEMA, TRIAL_SCHEMA, load_tables, write_tables
from sweep.state import SweepState
from tests.helpers import MAX_ITERS, tune_trial_count

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("GANSWEEP_CHROMIUM", "/usr/bin/chromium")


def test_tables_match_the_sweep(tiny_sweep, tmp_path):
    sweep_dir, _ = tiny_sweep
    state = SweepState.load(sweep_dir)
    trials_path, metrics_path = write_tables(load_tables(sweep_dir), tmp_path)

    trials = pd.read_parquet(trials_path)
    assert len(trials) == len(state.trials) == tune_trial_count(sweep_dir) == 9
    assert set(trials["trial_id"]) == set(state.trials)
    assert pq.read_schema(trials_path).remove_metadata() == TRIAL_SCHEMA
    assert pq.read_schema(metrics_path).remove_metadata() == METRIC_SCHEMA
    meta = pq.read_schema(trials_path).metadata
    assert b"gansweep.spec" in meta and b"partitions" in meta[b"gansweep.spec"]

    for _, row in trials.iterrows():
        rec = state.trials[row["trial_id"]]
        assert row["status"] == rec["status"] and row["iterations"] == rec["iteration"]
        assert row["best_fid"] == rec["best"]["fid"]
        if pd.isna(row["baseline"]):
            i, j, k = row["d_i"], row["d_j"], row["d_k"]
            assert row["d_partition"] == f"D({int(i)},{int(j)},{int(k)})" and i + j + k == 5
        else:
            assert pd.isna(row["d_i"]) and pd.isna(row["d_partition"])
        assert row["loss"] == "wgan" and row["lr"] == 5e-5  # resolved, not the spec's null
        assert row["trainable_g"] > 0 and row["wall_s"] > 0
    scratch = trials[trials["baseline"] == "scratch"].iloc[0]
    assert (trials["fid_threshold"] == scratch["best_fid"]).all()
    assert scratch["iters_to_threshold"] <= scratch["iterations"]

    metrics = pd.read_parquet(metrics_path)
    lines = state.results()
    assert len(metrics) == len({(r["trial_id"], r["iteration"]) for r in lines})
    assert metrics.groupby("trial_id")["iteration"].max().to_dict() == {
        t: rec["iteration"] for t, rec in state.trials.items()}
    assert (metrics["iteration"] <= MAX_ITERS).all()

    counts = dict(duckdb.sql(f"select status, count(*) from '{trials_path}' group by status")
                  .fetchall())
    assert counts == {s: n for s, n in state.counts().items() if n}
    assert duckdb.sql(f"select count(*) from '{metrics_path}'").fetchall() == [(len(metrics),)]

    before = trials_path.read_bytes(), metrics_path.read_bytes()
    write_tables(load_tables(sweep_dir), tmp_path)
    assert (trials_path.read_bytes(), metrics_path.read_bytes()) == before  # idempotent
    assert not list(tmp_path.glob("*.tmp"))


def test_report_of_a_copied_sweep_in_chromium(tiny_sweep, tmp_path):
    """`gansweep report` on a copy of the sweep (no Ray running), opened in Chromium."""
    playwright = pytest.importorskip("playwright.sync_api")
    assert Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM} (.ci/run installs it)"
    copy = tmp_path / "elsewhere" / "tiny"
    shutil.copytree(tiny_sweep[0], copy)
    out = tmp_path / "report.html"
    code = ("import sys; from sweep.cli import main; "
            f"rc = main(['report', {str(copy)!r}, '--out', {str(out)!r}]); "
            "assert 'ray' not in sys.modules, 'report imported Ray'; sys.exit(rc)")
    hidden = tiny_sweep[0].with_name("hidden")
    tiny_sweep[0].rename(hidden)  # only the copy exists while the report is made
    try:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    finally:
        hidden.rename(tiny_sweep[0])
    assert run.returncode == 0, run.stderr
    assert (copy / "gansweep" / "trials.parquet").is_file()

    shots = Path(os.environ.get("GANSWEEP_TEST_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: errors.append(f"network: {r.url}")
                if not r.url.startswith(("file:", "data:")) else None)
        page.goto(out.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg')"
                               ".length >= 7", timeout=30_000)
        found = page.evaluate("""() => Array.from(document.querySelectorAll('section')).map(
            s => [s.id, s.querySelectorAll('.js-plotly-plot').length,
                  s.querySelectorAll('img').length, s.innerText.length])""")
        best_cell = "document.querySelector('#trials tbody tr td:nth-child(4)').innerText"
        first = page.evaluate(best_cell)
        page.click("#trials th:nth-child(4)")  # best_fid: sorted ascending, then descending
        page.click("#trials th:nth-child(4)")
        top = page.evaluate(best_cell)
        page.screenshot(path=str(shots / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    sections = {name: (plots, images, text) for name, plots, images, text in found}
    assert list(sections) == [key for key, _, _ in SECTIONS]
    for name in ("heatmap", "baselines", "curves", "pareto", "compute", "sensitivity", "asha"):
        assert sections[name][0] == 1, (name, sections[name])
    assert sections["samples"][1] >= 4  # top partitions and the 3 baselines
    assert all(text > 40 for _, _, text in sections.values())
    trials = pd.read_parquet(copy / "gansweep" / "trials.parquet")
    assert first == f"{trials['best_fid'].min():.4g}" and top == f"{trials['best_fid'].max():.4g}"
    assert (shots / "report.png").stat().st_size > 50_000
