"""The structured search without Ray's cluster: its design covers every partition, the
partition model recovers known effects within their intervals, the search finds the best
pair of a synthetic grid within a stated number of trials, a killed searcher resumes with no
suggestion repeated or lost, replays of it run, and the effects section renders on a
recorded grid."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from gansweep.core.metrics import METRICS
from gansweep.core.treatments import enumerate_partitions
from gansweep.core.trial import Trial
from gansweep.sweep.searchers.model import Observation, Posterior, grid_effects
from gansweep.sweep.searchers.structured import (
    FINISHED,
    StructuredSearch,
    context_key,
    cover_design,
)
from gansweep.sweep.spec.schema import Search

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "benchmarks" / "recordings" / "emoji-study-s0.json.gz"
DS = ["D(0,0,5)", "D(1,0,4)", "D(2,0,3)", "D(3,0,2)", "D(1,2,2)", "D(0,4,1)"]
GS = ["G(0,0,5)", "G(1,0,4)", "G(2,0,3)", "G(3,0,2)", "G(1,2,2)", "G(0,4,1)"]
FID = METRICS.get("fid")


def grid(ds=DS, gs=GS, baselines=("fine-tune", "freeze", "scale-shift", "scratch"),
         seeds=(0,)) -> list[Trial]:
    """A spec's search trials in grid order: pairs, then baselines, each on every seed."""
    settings = [{"label": d + g, "d": d, "g": g} for d in ds for g in gs] + \
        [{"label": b, "baseline": b} for b in baselines]
    trials = [Trial(source="s.pt", target="t", seed=s, **setting)
              for setting in settings for s in seeds]
    return [Trial.from_dict({**t.to_dict(), "index": n}) for n, t in enumerate(trials)]


def additive(rng: np.random.Generator, ds=DS, gs=GS) -> dict[tuple[str, str], float]:
    """Known pair means 300 + a(D) + b(G): effects a few times the noise."""
    a = dict(zip(ds, rng.normal(0, 12, len(ds))))
    b = dict(zip(gs, rng.normal(0, 12, len(gs))))
    return {(d, g): 300 + a[d] + b[g] for d in ds for g in gs}


def pair_of(trial: Trial) -> tuple[str, str] | None:
    if trial.d is not None:
        return trial.d, trial.g
    return {"fine-tune": ("D(0,0,5)", "G(0,0,5)"), "freeze": ("D(3,0,2)", "G(3,0,2)"),
            "scale-shift": ("D(0,5,0)", "G(0,5,0)")}.get(trial.baseline)


# --- the design ---------------------------------------------------------------------------

@pytest.mark.parametrize("ds, gs, known, missing", [
    (DS, GS, set(), set()),
    (DS, GS, {("D(0,0,5)", "G(0,0,5)"), ("D(3,0,2)", "G(3,0,2)")}, set()),
    (DS[:3], GS, set(), set()),  # 3 x 6: every G once, some D twice
    (DS, GS, set(), {(d, GS[0]) for d in DS[1:]}),  # G(0,0,5) only with D(0,0,5)
    ([str(p) for p in enumerate_partitions("D", 5)], [str(p) for p in enumerate_partitions("G", 5)],
     set(), set()),  # 21 x 21
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_design_covers_every_partition(ds, gs, known, missing, seed):
    pairs = [(d, g) for d in ds for g in gs if (d, g) not in missing]
    design = cover_design(pairs, known, seed)
    covered = [*design, *known]
    assert {d for d, _ in covered} == set(ds) and {g for _, g in covered} == set(gs)
    assert set(design) <= set(pairs) and not set(design) & known
    assert len(set(design)) == len(design)
    need = max(len(set(ds) - {d for d, _ in known}), len(set(gs) - {g for _, g in known}))
    if not missing:
        assert len(design) == need  # no more pairs than the cover needs


def test_search_runs_baselines_then_the_design():
    trials = grid(seeds=(0, 1))
    search = StructuredSearch(trials, Search("structured", max_pairs=8), FID.loss)
    baselines = [n for n, t in enumerate(trials) if t.baseline]
    first = [search.next() for _ in range(len(baselines))]
    assert first == baselines
    chosen = []
    while (n := search.next()) not in (None, FINISHED):
        chosen.append(n)
    context = search.contexts[next(iter(search.contexts))]
    design = context.design
    # every design pair on both seeds, nothing else before results come in
    assert [pair_of(trials[n]) for n in chosen] == [p for p in design for _ in (0, 1)]
    assert {p[0] for p in design} | {"D(0,0,5)", "D(3,0,2)"} == set(DS)
    assert not search.done(context) and len(search.chosen(context)) == len(design) < 8


def test_a_result_in_another_context_does_not_refit_a_context():
    """The model of a context is refitted when its own observations change, not when a
    trial of another context (another target) ends."""
    one = grid()
    two = [Trial.from_dict({**t.to_dict(), "target": "t2"}) for t in grid()]
    trials = [Trial.from_dict({**t.to_dict(), "index": n}) for n, t in enumerate(one + two)]
    search = StructuredSearch(trials, Search("structured", max_pairs=8), FID.loss)
    mine = search.contexts[context_key(trials[0])]
    for n in range(4):  # pairs of the first context
        search.observe(n, 300.0 + n)
    fit = search.posterior(mine)
    search.observe(len(one), 310.0)  # a pair of the other context
    assert search.posterior(mine) is fit
    search.observe(4, 290.0)
    assert search.posterior(mine) is not fit


# --- the model ----------------------------------------------------------------------------

def test_model_recovers_additive_effects_within_their_intervals():
    """Known main effects + noise (sd 3) on 3 seeds: every effect's 95 % interval holds the
    truth (11 of 12 at least), the noise is estimated, the interaction is small, and the
    predicted best pair is the true one."""
    rng = np.random.default_rng(7)
    truth = additive(rng)
    obs = [Observation(d, g, truth[d, g] + rng.normal(0, 3)) for (d, g) in truth
           for _ in range(3)]
    e = grid_effects(Posterior(obs), DS, GS)
    mean = np.mean(list(truth.values()))
    true_d = {d: np.mean([truth[d, g] for g in GS]) - mean for d in DS}
    true_g = {g: np.mean([truth[d, g] for d in DS]) - mean for g in GS}
    inside = [e.d[d].low <= true_d[d] <= e.d[d].high for d in DS] + \
        [e.g[g].low <= true_g[g] <= e.g[g].high for g in GS]
    assert sum(inside) >= 11, (e.d, true_d, e.g, true_g)
    assert all(e.d[d].high - e.d[d].low < 8 for d in DS)  # informative, not just wide
    assert 1.5 < e.noise_sd < 6
    assert e.interaction_share.mean < 0.2
    assert e.best == min(truth, key=truth.get)


def test_model_sees_an_interaction():
    """A grid that is all interaction (a checkerboard) is not called additive."""
    rng = np.random.default_rng(3)
    obs = [Observation(d, g, 300 + 20 * (-1) ** (i + j) + rng.normal(0, 2))
           for i, d in enumerate(DS) for j, g in enumerate(GS) for _ in range(2)]
    assert grid_effects(Posterior(obs), DS, GS).interaction_share.mean > 0.5


MEDIAN_WITHIN, ALL_WITHIN = 10, 24  # pairs of the 6 x 6 grid; random order: 18.5 on average


def test_search_finds_the_best_pair_within_a_stated_number_of_trials():
    """One trial at a time on 10 synthetic additive grids with noise (sd 3, one seed): the
    true best pair is found within MEDIAN_WITHIN pairs in the median grid and within
    ALL_WITHIN in every one (the baselines besides)."""
    found = []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        truth = additive(rng)
        trials = grid()
        search = StructuredSearch(trials, Search("structured", max_pairs=36, seed=seed),
                                  FID.loss)
        best = min(truth, key=truth.get)
        pairs = []
        while best not in pairs and (n := search.next()) not in (None, FINISHED):
            pair = pair_of(trials[n])
            search.observe(n, None if pair is None else truth.get(pair, 310.0) +
                           rng.normal(0, 3))
            if trials[n].d is not None:
                pairs.append(pair)
        found.append(len(pairs))
    assert np.median(found) <= MEDIAN_WITHIN and max(found) <= ALL_WITHIN, found


# --- replay ---------------------------------------------------------------------------------

def test_replay_of_searchers_on_a_recorded_grid():
    """`gansweep replay FILE --searcher ...`: one line per searcher and scheduler, the
    structured search spending less than the grid; a bad searcher is one clear line."""
    from tests.helpers import assert_one_clear_line, cli_in_process

    # one recorded seed: nothing to confirm on (test_search_confirm has the 3-seed replay)
    out = cli_in_process("replay", RECORDING, "--searcher", "structured:max_pairs=6,confirm_top=0",
                         "--searcher", "random:max_pairs=6", "--searcher", "grid",
                         "--scheduler", "none", "--orders", "3", "--concurrency", "1,4")
    assert out.returncode == 0, out.stderr
    lines = {line.split(" + ")[0]: line for line in out.stdout.splitlines() if " + " in line}
    assert set(lines) == {"structured:max_pairs=6,confirm_top=0", "random:max_pairs=6", "grid"}
    compute = {k.split(",")[0]: float(v.split("compute ")[1].split("%")[0])
               for k, v in lines.items()}
    assert compute["grid"] == 100.0
    # 4 baselines + 4 design pairs + 2 more of 41 trials: a quarter of the grid, give or take
    assert 15 < compute["structured:max_pairs=6"] < 40
    assert "of 6 replays" in lines["grid"] and "90th percentile" in lines["grid"]
    bad = cli_in_process("replay", RECORDING, "--searcher", "structured:budget=3")
    assert_one_clear_line(bad, "replay", "unknown key 'budget'; valid: max_pairs")


# --- effects ------------------------------------------------------------------------------

def sweep_of_recording(path: Path, root: Path, keep=None) -> Path:
    """A sweep directory holding a recorded grid (``gansweep replay --export``'s file), as
    the driver would have recorded it, with only the trials ``keep`` accepts (a structured
    search's part of the grid)."""
    from gansweep.sweep.record.state import GRID_FILE, SweepState

    data = json.loads(gzip.decompress(path.read_bytes()))
    trials = [Trial.from_dict({**json.loads(t["setting"]), "seed": t["seed"], "index": n})
              for n, t in enumerate(data["trials"])]
    sweep_dir = root / data["name"]
    state = SweepState.create(sweep_dir, data["name"], len(trials), data["max_iters"])
    state.save()
    (sweep_dir / GRID_FILE).write_text(json.dumps(
        {"format": 3, "trials": [t.to_dict() for t in trials], "units": None}))
    for trial, rec in zip(trials, data["trials"]):
        if keep is not None and not keep(trial):
            continue
        state.event("start", rec["trial_id"], config=trial.to_dict(), path=None)
        for result in rec["evaluations"]:
            state.result(rec["trial_id"], result)
        state.event("end", rec["trial_id"], status="finished")
    state.save()
    return sweep_dir


def test_effects_on_a_full_and_a_partial_recorded_grid(tmp_path):
    """The effects table of the recorded emoji grid (seed 0): every partition of each
    network with an interval, the interaction's share, the best pair; on a partial grid
    (a third of the pairs, as a structured search leaves it) the same rows, the pairs run
    counted and the intervals wider."""
    from gansweep.results.effects import EFFECT_SCHEMA, effects_table
    from gansweep.results.tables import load_tables

    full = effects_table(load_tables(sweep_of_recording(RECORDING, tmp_path / "full")))
    assert list(full.columns) == EFFECT_SCHEMA.names
    assert sorted(full.loc[full["term"] == "D", "level"]) == sorted(DS)
    assert sorted(full.loc[full["term"] == "G", "level"]) == sorted(GS)
    sides = full[full["term"].isin(["D", "G"])]
    assert ((sides["low"] < sides["mean"]) & (sides["mean"] < sides["high"])).all()
    assert abs(sides.groupby("term")["mean"].sum()).max() < 1e-6  # effects sum to zero
    share = full[full["term"] == "interaction"].iloc[0]
    assert 0 < share["low"] < share["mean"] < share["high"] < 1
    best = full[full["term"] == "best"].iloc[0]
    assert best["level"].startswith("D(") and 0 < best["probability"] <= 1
    assert full["pairs_run"].iloc[0] == 36 and full["pairs"].iloc[0] == 36

    rng = np.random.default_rng(0)
    kept = {(d, g) for d, g in [(DS[i], GS[j]) for i, j in
                                zip(rng.permutation(6), rng.permutation(6))]}
    kept |= {(DS[i], GS[j]) for i, j in zip(rng.integers(6, size=8), rng.integers(6, size=8))}
    part = effects_table(load_tables(sweep_of_recording(
        RECORDING, tmp_path / "part", keep=lambda t: t.d is None or (t.d, t.g) in kept)))
    baselines = {("D(0,0,5)", "G(0,0,5)"), ("D(3,0,2)", "G(3,0,2)"), ("D(3,0,2)", "G(0,0,5)")}
    assert part["pairs_run"].iloc[0] == len(kept | baselines) < 36  # baselines are pairs too
    width = {n: (f["high"] - f["low"])[f["term"] == "D"].mean() for n, f in
             (("full", full), ("part", part))}
    assert width["part"] > width["full"]


@pytest.mark.slow
def test_effects_section_renders_in_chromium(tmp_path):
    """The report of the recorded grid has the effects section: two plots with error bars
    and the sentences, no JavaScript error; effects.parquet is written beside the tables."""
    pytest.importorskip("playwright.sync_api")
    import pyarrow.parquet as pq

    from tests.helpers import finish, gansweep
    from tests.test_results import open_in_chromium

    sweep_dir = sweep_of_recording(RECORDING, tmp_path)
    out = tmp_path / "report.html"
    finish(gansweep("report", sweep_dir, "--out", out))
    table = pq.read_table(sweep_dir / "gansweep" / "effects.parquet").to_pandas()
    assert set(table["term"]) == {"D", "G", "interaction", "best", "noise"}
    text = out.read_text()
    assert "Which network's layers matter" in text and "Predicted best pair" in text
    shots = Path(os.environ.get("GANSWEEP_TEST_ARTIFACTS", tmp_path))
    errors, sections, _ = open_in_chromium(out, shots / "report_effects.png")
    assert errors == []
    plots, _, chars = sections["effects"]
    assert plots == 1 and chars > 300
