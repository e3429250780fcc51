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
import yaml

from gansweep.core.trial import Trial
from gansweep.results.report import SECTIONS
from gansweep.results.tables import METRIC_SCHEMA, TRIAL_SCHEMA, load_tables, write_tables
from gansweep.sweep.record.state import SweepState
from gansweep.sweep.record.verdict import verdict
from gansweep.sweep.spec.files import SPEC_FILE
from tests.helpers import (
    MAX_ITERS,
    assert_one_clear_line,
    cli_in_process,
    finish,
    gansweep,
    tune_trial_count,
)

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("GANSWEEP_CHROMIUM", "/usr/bin/chromium")


def test_tables_match_the_sweep(tiny_sweep, tmp_path):
    sweep_dir, _ = tiny_sweep
    state = SweepState.load(sweep_dir)
    trials_path, metrics_path = write_tables(load_tables(sweep_dir), tmp_path)

    trials = pd.read_parquet(trials_path)
    assert len(trials) == len(state.trials) == tune_trial_count(sweep_dir) == 11
    assert set(trials["trial_id"]) == set(state.trials)
    assert pq.read_schema(trials_path).remove_metadata() == TRIAL_SCHEMA
    assert pq.read_schema(metrics_path).remove_metadata() == METRIC_SCHEMA
    meta = pq.read_schema(trials_path).metadata
    assert b"gansweep.spec" in meta and b"partitions" in meta[b"gansweep.spec"]

    for _, row in trials.iterrows():
        rec = state.trials[row["trial_id"]]
        assert row["status"] == rec["status"] and row["iterations"] == rec["iteration"]
        assert row["best_fid"] == rec["best"]["fid"]
        if not pd.isna(row["family"]):
            n = int(row["family_n"])
            assert row["label"] == f"G forward {n} freeze"
            assert row["g_plan"].split(",")[:n] == ["freeze"] * n
            assert row["d_plan"] == ",".join(["reinit"] * 5) and pd.isna(row["d_partition"])
        elif pd.isna(row["baseline"]):
            i, j, k = row["d_i"], row["d_j"], row["d_k"]
            assert row["d_partition"] == f"D({int(i)},{int(j)},{int(k)})" and i + j + k == 5
        else:
            assert pd.isna(row["d_i"]) and pd.isna(row["d_partition"])
        assert row["loss"] == "wgan" and row["lr"] == 5e-5  # resolved, not the spec's null
        assert row["lr_mult"] == '{"adafm": 1.0, "finetune": 1.0}'  # the spec's training
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


def open_in_chromium(report: Path, screenshot: Path, sort: bool = False):
    """Open a report in headless Chromium: JavaScript errors and any network request, each
    section's (plots, images, text length), and (with ``sort``) the best_fid column's first
    cell after one click on its header (ascending) and after a second (descending); writes a
    full-page screenshot."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM} (.ci/run installs it)"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: errors.append(f"network: {r.url}")
                if not r.url.startswith(("file:", "data:")) else None)
        page.goto(report.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg')"
                               ".length >= 5", timeout=30_000)
        found = page.evaluate("""() => Array.from(document.querySelectorAll('section')).map(
            s => [s.id, s.querySelectorAll('.js-plotly-plot').length,
                  s.querySelectorAll('img').length, s.innerText.length])""")
        cells = None
        if sort:
            column = page.evaluate("Array.from(document.querySelectorAll('#trials th'))"
                                   ".map(th => th.innerText).indexOf('best_fid')") + 1
            best_cell = (f"document.querySelector('#trials tbody tr td:nth-child({column})')"
                         ".innerText")
            page.click(f"#trials th:nth-child({column})")  # ascending, then descending
            first = page.evaluate(best_cell)
            page.click(f"#trials th:nth-child({column})")
            cells = first, page.evaluate(best_cell)
        page.screenshot(path=str(screenshot), full_page=True)
        for name, *_ in found:  # and one per section, beside it
            page.locator(f"section#{name}").screenshot(
                path=str(screenshot.with_name(f"{screenshot.stem}-{name}.png")))
        browser.close()
    return errors, {name: (plots, images, text) for name, plots, images, text in found}, cells


def test_report_of_a_copied_sweep_in_chromium(tiny_sweep, tmp_path):
    """`gansweep report` on a copy of the sweep (no Ray running), opened in Chromium."""
    pytest.importorskip("playwright.sync_api")
    copy = tmp_path / "elsewhere" / "tiny"
    shutil.copytree(tiny_sweep[0], copy)
    out = tmp_path / "report.html"
    code = ("import sys; from gansweep.sweep.cli.main import main; "
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
    errors, sections, (first, top) = open_in_chromium(out, shots / "report.png", sort=True)
    assert errors == []
    folded = {"init", "sources", "conditional", "metrics"}  # not in this sweep: one line
    assert list(sections) == [key for key, _, _ in SECTIONS if key not in folded] + ["not-here"]
    for name in ("heatmap", "baselines", "curves", "pareto", "compute", "sensitivity", "asha"):
        assert sections[name][0] == 1, (name, sections[name])
    assert sections["families"][0] == 2  # the metric over training, and against n
    assert sections["samples"][1] >= 4  # top partitions and the 3 baselines
    assert all(text > 40 for _, _, text in sections.values())
    text = out.read_text()
    assert text.count("How to read: ") == sum(plots for plots, _, _ in sections.values())
    assert "Not in this sweep: <b>G/D initialisation and target size</b>" in text
    assert all((shots / f"report-{name}.png").is_file() for name in sections)
    trials = pd.read_parquet(copy / "gansweep" / "trials.parquet")
    assert first == f"{trials['best_fid'].min():.4g}" and top == f"{trials['best_fid'].max():.4g}"
    assert (shots / "report.png").stat().st_size > 50_000


def recorded_sweep(root: Path) -> Path:
    """A sweep directory as the driver records it, written through the driver's own log API
    without training: fine-tune with G/D each pretrained or scratch at two target sizes,
    plus a diverged and an errored trial."""
    sweep_dir = root / "init"
    state = SweepState.create(sweep_dir, "init", 10, 4)
    state.save()
    n = 0
    for g_init in ("pretrained", "scratch"):
        for d_init in ("pretrained", "scratch"):
            for size in (16, 32):
                n += 1
                trial = Trial("fine-tune", "/src.pt", "/target", None, None, "fine-tune",
                              "adafm", None, size, "none", None, None, g_init, d_init, 0)
                state.event("start", f"t{n:02d}", config=trial.to_dict(), path=None)
                for it, fid in zip((2, 4), (300 - 10 * n, 280 - 9 * n)):
                    state.result(f"t{n:02d}", {"iteration": it, "fid": fid, "kid": fid / 1000,
                                               "score": fid, "time_total_s": it * 1.5,
                                               "trainable_g": 1000, "trainable_d": 500})
                state.event("end", f"t{n:02d}", status="finished")
    for tid, status in (("t09", "diverged"), ("t10", "errored")):
        trial = Trial("D(1,2,2)G(1,2,2)", "/src.pt", "/target", "D(1,2,2)", "G(1,2,2)", None,
                      "adafm", None, None, "none", None, 1e30 if status == "diverged" else None,
                      "pretrained", "pretrained", int(tid[1:]))
        state.event("start", tid, config=trial.to_dict(), path=None)
        if status == "diverged":
            state.result(tid, {"iteration": 2, "fid": float("inf"), "diverged": 1,
                               "error": "diverged: made up for the test"})
            state.event("end", tid, status="diverged")
        else:
            state.event("error", tid, error="errored: made up for the test")
    state.save()
    return sweep_dir


def test_report_sections_of_other_studies_in_chromium(tmp_path):
    """The G/D-initialisation section (2 x 2 table, FID vs target size) and diverged and
    errored trials render; sections without data say so instead of failing."""
    pytest.importorskip("playwright.sync_api")
    sweep_dir = recorded_sweep(tmp_path)
    out = tmp_path / "init.html"
    finish(gansweep("report", sweep_dir, "--out", out))
    tables = load_tables(sweep_dir)
    assert sorted(tables.trials["status"].unique()) == ["diverged", "errored", "finished"]
    assert tables.trials.loc[tables.trials["status"] == "diverged", "best_fid"].item() == \
        float("inf")
    text = out.read_text()
    for cell in ("G pretrained", "D scratch", "(n = 2)"):
        assert cell in text
    assert "<tr class='diverged'>" in text and "<tr class='errored'>" in text
    shots = Path(os.environ.get("GANSWEEP_TEST_ARTIFACTS", tmp_path))
    errors, sections, _ = open_in_chromium(out, shots / "report_init.png")
    assert errors == []
    assert sections["init"][0] == 1 and "families" not in sections and "not-here" in sections


def test_sweep_of_the_other_studies_in_chromium(sources, faces, blobs, weights, tmp_path,
                                                monkeypatch):
    """A real sweep of issue 7's studies: two sources (source choice), unconditional and
    AC-conditional transfer to a target of two class folders, and the IW and classifier
    metrics. Their tables and report sections render. The launch first stops before Tune
    starts (no Inception weights: one clear line), and `resume` then starts the grid."""
    pytest.importorskip("playwright.sync_api")
    from tests.conftest import TINY, make_source
    from tests.helpers import write_spec
    target = tmp_path / "target"
    target.mkdir()
    (target / "faces").symlink_to(faces)
    (target / "blobs").symlink_to(blobs)
    other = make_source(tmp_path / "faces_source.pt", faces, TINY["dcgan"])
    spec = write_spec(tmp_path / "studies.yaml", [str(sources["dcgan"]), str(other)], target,
                      None, name="studies", partitions=[], baselines=["fine-tune"],
                      conditional=[None, "ac"], metrics=["fid", "kid", "iw", "classifier"],
                      iw_steps=20, classifier_steps=30, scheduler={"type": "none"},
                      budget={"iters": 4, "eval_every": 2, "fid_samples": 8, "batch_size": 8})
    monkeypatch.setenv("GANSWEEP_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    assert_one_clear_line(cli_in_process("launch", spec, "--storage", tmp_path / "sweeps"),
                          "launch", "missing.pth: no such file")
    sweep_dir = tmp_path / "sweeps" / "studies"
    assert not sweep_dir.exists()  # a refused launch leaves nothing to resume
    monkeypatch.setenv("GANSWEEP_INCEPTION_WEIGHTS", weights)
    finish(gansweep("launch", spec, "--storage", tmp_path / "sweeps"))
    tables = load_tables(sweep_dir)
    trials, metrics = tables.trials, tables.metrics
    assert len(trials) == 4 and set(trials["status"]) == {"finished"}  # 2 sources x 2 heads
    gaps = trials.groupby("source")["source_target_fid"].first()
    assert len(gaps) == 2 and (gaps > 0).all() and gaps.nunique() == 2
    assert metrics["iw"].notna().all() and metrics["classifier"].between(0, 1).all()
    conditional = metrics["trial_id"].isin(trials.loc[trials["conditional"] == "ac", "trial_id"])
    assert metrics.loc[conditional, "class_fid"].map(
        lambda v: sorted(k for k, _ in v)).tolist() == [["blobs", "faces"]] * conditional.sum()
    assert metrics.loc[~conditional, "class_fid"].isna().all()
    # Unconditional and conditional transfer of one source are two settings: in the Parquet
    # and in the verdict's ranking, named apart.
    assert trials.groupby("source")["setting"].nunique().tolist() == [2, 2]
    names = [name for name, _ in verdict(tables.spec, tables.records).ranking]
    assert len(names) == 4 and sum("conditional=ac" in n for n in names) == 2, names
    (classifier,) = tables.references["classifiers"]
    assert classifier["classes"] == ["blobs", "faces"] and classifier["balanced_accuracy"] > 0.5
    assert tables.references["classifier_negatives"] == str(blobs)  # the first source's data

    out = tmp_path / "studies.html"
    assert cli_in_process("report", sweep_dir, "--out", out).returncode == 0
    shots = Path(os.environ.get("GANSWEEP_TEST_ARTIFACTS", tmp_path))
    errors, sections, _ = open_in_chromium(out, shots / "report_studies.png")
    assert errors == []
    for name, plots in (("sources", 1), ("conditional", 1), ("metrics", 2)):
        assert sections[name][0] == plots, (name, sections[name])
    text = out.read_text()
    assert "Spearman ρ" in text and "balanced accuracy" in text and "<th>faces</th>" in text


def test_denton_quantities_on_the_inception_score(tmp_path):
    """A sweep ranked by IS (higher is better) with plan families and iteration 0 evaluated:
    the families section reports IS at iteration 0, the best IS per family and n, and the
    iterations each needs to reach the scratch baseline's best IS."""
    from gansweep.results.study_sections import section_families

    sweep_dir = tmp_path / "denton"
    state = SweepState.create(sweep_dir, "denton", 3, 4)
    state.save()
    (sweep_dir / SPEC_FILE).write_text(yaml.safe_dump({  # as a launch records it
        "name": "denton", "source": "/src.pt", "target": "/target",
        "arch": {"name": "dcgan", "resolution": 32}, "baselines": ["scratch"],
        "plans": [{"family": "forward", "mode": "freeze", "n": [1, 2]}],
        "budget": {"iters": 4, "eval_every": 2}, "metric": "is", "metrics": ["fid", "is"]}))
    curves = {"scratch": [1.0, 1.5, 2.0], "fwd1": [1.8, 2.1, 2.6], "fwd2": [1.9, 1.9, 1.95]}
    for n, (tid, values) in enumerate(curves.items()):
        family = {} if tid == "scratch" else {"family": "forward", "family_mode": "freeze",
                                               "family_n": n, "g_plan": [], "d_plan": []}
        trial = Trial(tid, "/src.pt", "/target", None, None, "scratch" if n == 0 else None,
                      "adafm", None, None, "none", None, None, "pretrained", "pretrained", 0,
                      **family)
        state.event("start", tid, config=trial.to_dict(), path=None)
        for it, value in zip((0, 2, 4), values):
            state.result(tid, {"iteration": it, "is": value, "is_sd": 0.1, "score": value})
        state.event("end", tid, status="finished")
    state.save()
    html_text = section_families(load_tables(sweep_dir))
    assert "Ranked metric: <b>is</b>" in html_text and "is ≥ 2" in html_text
    assert "<td>forward</td><td>freeze</td><td>1</td><td>2.6</td><td>1.8</td><td>2</td>" \
        in html_text  # best 2.6; 1.8 at iteration 0; reaches scratch's best 2.0 at 2
    assert "<td>2</td><td>1.95</td><td>1.9</td><td>never</td>" in html_text
