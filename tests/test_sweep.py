"""Real sweeps on Ray Tune: ASHA stops trials, a killed driver resumes without rerunning
anything, and a two-node cluster survives losing a node."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from gansweep.core.metrics import METRICS
from gansweep.core.trial import Trial
from gansweep.sweep.record.state import GRID_FILE, SEARCH_LOG, SweepState, completed, read_log
from gansweep.sweep.record.verdict import verdict
from gansweep.sweep.replays.options import parse_variant
from gansweep.sweep.replays.schedulers import load_recording, replay_sequence
from gansweep.sweep.run import tune_state
from gansweep.sweep.run.tune_internals import snapshot_trial_ids
from gansweep.sweep.searchers.confirm import candidates, pick
from gansweep.sweep.searchers.structured import StructuredSearch
from gansweep.sweep.spec.files import load_sweep_spec
from gansweep.sweep.spec.grid import setting_names
from gansweep.sweep.spec.schema import Search
from tests.helpers import (
    MAX_ITERS,
    assert_one_clear_line,
    cli_in_process,
    finish,
    gansweep,
    installed_trackers,
    results,
    tensorboard_events,
    tune_trial_count,
    write_spec,
)

pytestmark = pytest.mark.slow
FID = METRICS.get("fid")

def test_tiny_sweep_asha_stops_some(tiny_sweep):
    sweep_dir, out = tiny_sweep
    state = SweepState.load(sweep_dir)
    trials = list(state.trials.values())
    assert len(trials) == state.data["expected"] == 11
    stopped = [t for t in trials if t["status"] == "stopped"]
    finished = [t for t in trials if t["status"] == "finished"]
    assert stopped and finished and len(stopped) + len(finished) == 11, state.counts()
    for t in stopped:
        assert t["iteration"] < MAX_ITERS
        assert results(sweep_dir, t["trial_id"])[-1]["iteration"] < MAX_ITERS
    for t in finished:
        assert t["iteration"] == MAX_ITERS
        assert results(sweep_dir, t["trial_id"])[-1]["iteration"] == MAX_ITERS
    rungs = json.loads((sweep_dir / "gansweep" / "asha_rungs.json").read_text())
    assert len(rungs["brackets"][0][-1][1]) == 11  # every trial recorded at the grace rung
    # One "best": the verdict's winner; a raw extreme evaluation is labelled as that.
    assert "winner: " in out and "lowest single evaluation: fid " in out and "best fid" not in out
    assert "verdict: Best setting of the search: " in out and "report: " in out
    assert "[gansweep tiny] " in out and "== Status ==" not in out  # the compact table
    assert (sweep_dir / "report.html").is_file()  # written when the sweep ends
    status = subprocess.run([sys.executable, "-m", "gansweep", "status", sweep_dir],
                            capture_output=True, text=True)
    assert status.returncode == 0 and f"{len(stopped)} stopped" in status.stdout


def test_replay_reproduces_the_live_stop_decisions(tiny_sweep):
    """Replaying the tiny ASHA sweep's recorded results in the order its scheduler received
    them gives every trial the stop its live run had; as a grid it is refused in one line."""
    sweep_dir, _ = tiny_sweep
    state = SweepState.load(sweep_dir)
    recording = load_recording(sweep_dir, grid=False)
    sequence = [(r["trial_id"], r["iteration"]) for r in state.results()]
    assert recording.scheduler == load_sweep_spec(sweep_dir).scheduler
    spec = parse_variant("spec", recording.scheduler)
    stops = replay_sequence(recording, spec, sequence)
    assert stops == {i: t["iteration"] for i, t in state.trials.items()}
    assert any(it < MAX_ITERS for it in stops.values())
    assert_one_clear_line(cli_in_process("replay", sweep_dir), "replay",
                          "were stopped early (it ran with a scheduler)")


@pytest.mark.parametrize("earlier", [{"tune_grid": "index"}, {}])  # 0.2; 0.1 and before
def test_a_sweep_of_an_earlier_grid_layout_is_refused_by_resume(tiny_sweep, tmp_path, earlier):
    """A sweep launched by an earlier gansweep (its grid file without this version's format:
    its trials' configs and Tune's pickled objects are another layout) cannot be restored:
    one line, before Ray starts; its status and report still read."""
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_sweep[0], copy)
    grid = json.loads((copy / "gansweep" / "grid.json").read_text())
    assert grid.pop("format") == 3 and grid.pop("template")
    (copy / "gansweep" / "grid.json").write_text(json.dumps({**grid, **earlier}))
    assert_one_clear_line(cli_in_process("resume", copy), "resume",
                          "was launched by an earlier gansweep")
    assert cli_in_process("status", copy).returncode == 0


def test_trackers_hold_every_trial(tiny_sweep, monkeypatch):
    """The tiny sweep reported to every installed tracker: TensorBoard files in each trial's
    folder with its metrics and sample grids at every evaluation, one MLflow run per trial with
    its setting and FID history, one offline W&B run per trial."""
    sweep_dir, _ = tiny_sweep
    state = SweepState.load(sweep_dir)
    trackers = installed_trackers()
    assert "tensorboard" in trackers and "mlflow" in trackers
    fid = {tid: {r["iteration"]: r["fid"] for r in state.results() if r["trial_id"] == tid}
           for tid in state.trials}
    for tid, rec in state.trials.items():
        events = tensorboard_events(sweep_dir / rec["path"] / "tensorboard")
        values = [(e.step, v) for e in events for v in e.summary.value]
        logged = {step: v.simple_value for step, v in values if v.tag == "fid"}
        assert logged == pytest.approx(fid[tid], rel=1e-6)
        assert {step for step, v in values if v.tag == "kid"} == set(fid[tid])
        images = {step: v.image for step, v in values if v.tag == "samples"}
        assert set(images) == set(fid[tid])
        assert all(im.width == im.height > 8 * 32 and im.encoded_image_string[1:4] == b"PNG"
                   for im in images.values())

    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as sweep.run.mlflow_tracker does
    client = mlflow.MlflowClient((sweep_dir / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    by_name = {Path(rec["path"]).name: key for key, rec in state.trials.items()}
    assert sorted(by_name[r.data.tags["trial_name"]] for r in runs) == sorted(state.trials)
    for run in runs:
        tid = by_name[run.data.tags["trial_name"]]
        config = state.trials[tid]["config"]
        assert run.data.params["label"] == config["label"]
        assert run.data.params["seed"] == str(config["seed"])
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "fid")}
        assert history == pytest.approx(fid[tid], rel=1e-6)
        assert run.info.status == "FINISHED"
    if "wandb" in trackers:
        offline = list((sweep_dir / "wandb").glob("offline-run-*"))
        assert len(offline) == len(state.trials)
        assert all(list(d.glob("*.wandb")) for d in offline)


def killed_at(fault: str, sweep_dir: Path, *args) -> dict:
    """Run ``gansweep ARGS`` with the driver killed at a fault point (core.faults: it kills
    its whole process group, driver and local Ray, like a crashed head node); returns the
    trial records it left."""
    proc = gansweep(*args, env={"GANSWEEP_FAULTS": fault}, start_new_session=True)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    return SweepState.load(sweep_dir).trials


def done(trials: dict) -> dict:
    return {i: t for i, t in trials.items() if t["status"] in ("finished", "stopped")}


def running_with_report(trials: dict) -> bool:
    return any(t["status"] == "running" and t["reports"] for t in trials.values())


def check_resumed(sweep_dir: Path, before: dict, lines_before: dict) -> None:
    """Done trials were not started or reported again; interrupted ones continued from
    their newest checkpoint (no iteration reported twice)."""
    after = SweepState.load(sweep_dir).trials
    for i, t in done(before).items():
        assert after[i]["starts"] == t["starts"], "a finished trial was started again"
        assert len(results(sweep_dir, i)) == lines_before[i], "a finished trial reported again"
        assert after[i]["iteration"] == t["iteration"]
    for i, t in before.items():
        if t["status"] == "running" and t["reports"] and after[i]["status"] != "running":
            assert len(after[i]["starts"]) > len(t["starts"])
            iters = [r["iteration"] for r in results(sweep_dir, i)]
            assert iters == sorted(set(iters)), iters  # from 0 again, it would repeat 2
            assert len(iters) > t["reports"]


def check_partial_results(sweep_dir: Path, records: dict) -> None:
    """Tables and report of a sweep interrupted mid-way: every grid trial has a row, the
    ones Tune created carry its ids, unfinished ones say so."""
    from gansweep.results.report import render
    from gansweep.results.tables import load_tables, write_tables

    tables = load_tables(sweep_dir)
    assert len(tables.trials) == 9
    known = tables.trials.dropna(subset=["trial_id"])
    assert set(known["trial_id"]) == set(records)
    assert len(known) <= tune_trial_count(sweep_dir)
    assert tables.missing == 9 - sum(t["status"] in ("finished", "stopped")
                                     for t in records.values()) > 0
    assert (tables.trials["status"] == "running").any()
    write_tables(tables)
    assert "Partial sweep" in render(tables)
    assert_one_clear_line(cli_in_process("replay", sweep_dir), "replay",
                          "replay needs a")  # a finished grid; this one stopped mid-way


def test_sweep_on_object_storage(sources, faces, weights, tmp_path, s3):
    """A sweep stored in an S3 bucket: the driver is killed mid-sweep, the machine's copy is
    lost, and `resume URI` continues from the bucket alone (done trials not rerun, the
    interrupted one from its checkpoint there); status and report work on the URI and the
    report ends up in the bucket."""
    from pyarrow import fs

    from gansweep.sweep.record.storage import Mirror

    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights,
                      partitions={"d": ["D(0,0,5)"], "g": ["G(0,0,5)", "G(3,0,2)"]},
                      baselines=["scratch"], scheduler={"type": "none"},
                      resources={"cpu": 2})  # one trial at a time
    mirror = Mirror.of(f"{s3}/tiny")
    # one trial at a time, each reporting at 2, 4, 6: the 4th result is the second trial's first
    killed_at("driver.result.search=4", mirror.local, "launch", spec, "--storage", s3)

    shutil.rmtree(mirror.local)  # what the bucket holds, as a new machine would see it
    mirror.claim()
    mirror.pull(checkpoints=False)
    before = SweepState.load(mirror.local).trials
    lines = {i: len(results(mirror.local, i)) for i in done(before)}
    assert done(before) and len(done(before)) < 3
    shutil.rmtree(Path(os.environ["GANSWEEP_CACHE"]))

    out = finish(gansweep("resume", f"{s3}/tiny"))
    assert f"sweep finished: {s3}/tiny" in out
    assert "in the bucket: s3://lab/sweeps/tiny/report.html" in out
    check_resumed(mirror.local, before, lines)
    after = SweepState.load(mirror.local).trials
    assert len(after) == 3 and all(t["status"] == "finished" for t in after.values())

    shutil.rmtree(Path(os.environ["GANSWEEP_CACHE"]))
    status = cli_in_process("status", "tiny", "--storage", s3)
    assert status.returncode == 0 and "3 finished" in status.stdout, status.stdout + status.stderr
    report = cli_in_process("report", f"{s3}/tiny", "--quiet")
    assert report.returncode == 0, report.stderr
    bucket, _ = fs.FileSystem.from_uri(s3)
    listing = [i.path for i in bucket.get_file_info(fs.FileSelector("lab/sweeps/tiny",
                                                                     recursive=True))]
    assert "lab/sweeps/tiny/report.html" in listing
    assert "lab/sweeps/tiny/gansweep/trials.parquet" in listing
    for rec in after.values():  # each trial's newest checkpoint only, and its samples
        kept = {p for p in listing if p.startswith(f"lab/sweeps/tiny/{rec['path']}/checkpoint_")
                and p.endswith("checkpoint.pt")}
        assert kept == {f"lab/sweeps/tiny/{rec['path']}/checkpoint_{MAX_ITERS:06d}/checkpoint.pt"}
    with bucket.open_input_stream("lab/sweeps/tiny/report.html") as f:
        assert b"D(0,0,5)G(3,0,2)" in f.read()


def test_killed_driver_resumes_without_rerunning(sources, faces, weights, tmp_path):
    """Killed after the first evaluation (no trial finished), resumed, killed again at the
    first evaluation of the confirmation phase, resumed: the sweep completes with exactly
    the grid's trials and the confirmation's, nothing done twice, each trial marked with its
    phase. (A kill just after a trial's end: the structured sweep's test and test_cluster.)"""
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights,
                      confirm={"top": 1, "seeds": [5]})
    sweep_dir = tmp_path / "sweeps" / "tiny"
    first = killed_at("driver.result.search=1", sweep_dir, "launch", spec, "--storage",
                      tmp_path / "sweeps")
    assert running_with_report(first) and not any(r["status"] == "finished"
                                                  for r in first.values())
    check_partial_results(sweep_dir, first)
    rungs_before = json.loads((sweep_dir / "gansweep" / "asha_rungs.json").read_text())
    lines = {i: len(results(sweep_dir, i)) for i in done(first)}

    second = killed_at("driver.result.confirm=1", sweep_dir, "resume", sweep_dir)
    assert any(t["config"]["phase"] == "confirm" and t["status"] == "running" and t["reports"]
               for t in second.values())
    check_resumed(sweep_dir, first, lines)
    lines = {i: len(results(sweep_dir, i)) for i in done(second)}
    selection = json.loads((sweep_dir / "gansweep" / "confirm.json").read_text())

    out = finish(gansweep("resume", sweep_dir))
    check_resumed(sweep_dir, second, lines)
    after = SweepState.load(sweep_dir)
    search = {i: t for i, t in after.trials.items() if t["config"]["phase"] == "search"}
    confirm = {i: t for i, t in after.trials.items() if t["config"]["phase"] == "confirm"}
    assert len(search) == tune_trial_count(sweep_dir) == 9
    assert len(confirm) == len(selection["trials"]) == tune_trial_count(sweep_dir / "confirm")
    assert len(after.trials) == after.expected
    # The top setting of the search and every baseline, on the fresh seed, to the end.
    assert set(selection["settings"]) >= {"fine-tune", "scale-shift", "scratch"}
    assert len(selection["settings"]) in (3, 4)
    assert all(t["config"]["seed"] == 5 and t["status"] == "finished"
               and t["iteration"] == MAX_ITERS for t in confirm.values())
    assert all(t["status"] in ("finished", "stopped") for t in search.values())
    assert sum(len(t["starts"]) for t in after.trials.values()) > len(after.trials)
    rungs_after = json.loads((sweep_dir / "gansweep" / "asha_rungs.json").read_text())
    for (m, rec), (m2, rec2) in zip(rungs_before["brackets"][0], rungs_after["brackets"][0]):
        assert m == m2 and all(rec2.get(k) == v for k, v in rec.items())
    # The Parquet written when the resumed sweep ended agrees with Tune's and our state.
    assert "report: " in out and "verdict: Winner on the confirmation seeds" in out
    table = pd.read_parquet(sweep_dir / "gansweep" / "trials.parquet")
    assert len(table) == len(after.trials) and table["trial_id"].notna().all()
    assert dict(zip(table["trial_id"], table["phase"])) == {
        i: t["config"]["phase"] for i, t in after.trials.items()}
    assert dict(zip(table["trial_id"], table["status"])) == {
        i: t["status"] for i, t in after.trials.items()}
    assert dict(zip(table["trial_id"], table["starts"])) == {
        i: len(t["starts"]) for i, t in after.trials.items()}


def test_killed_structured_sweep_resumes_and_confirms_as_the_replay_would(
        sources, faces, weights, tmp_path):
    """search: structured on a 2 x 2 grid with fine-tune (a pair of it) and a budget of 2
    pairs: the design pair, then one more, then its top 2 candidates rerun on seed 1; the
    driver killed when the 2nd trial ended and resumed: every trial the searcher handed out
    ran once, under one trial id, to the end; the budget was spent exactly; Tune holds none
    but those; status and the report count the trials the search planned, not the grid's;
    the confirmation's candidates and the verdict's pick are those the replay's functions
    choose from the same recorded results, and the verdict names the pick with its interval
    over the 2 seeds. (The in-process test of sweep.run.searcher in test_search.py makes
    Tune lose a suggestion for certain.)"""
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights,
                      partitions={"d": ["D(0,0,5)", "D(3,0,2)"], "g": ["G(0,0,5)", "G(3,0,2)"]},
                      baselines=["fine-tune"], scheduler={"type": "none"},
                      budget={"iters": 4, "eval_every": 2, "fid_samples": 8, "batch_size": 8},
                      search={"type": "structured", "max_pairs": 2})
    sweep_dir = tmp_path / "sweeps" / "tiny"
    killed_at("driver.end.search=2", sweep_dir, "launch", spec, "--storage", tmp_path / "sweeps")
    out = finish(gansweep("resume", sweep_dir))
    state = SweepState.load(sweep_dir)
    log = read_log(sweep_dir / SEARCH_LOG)[0]  # the searcher's log, appended
    given = [line["index"] for line in log if "index" in line]
    by_index = {}
    for key, rec in state.trials.items():
        if rec["config"]["phase"] != "search":
            continue
        assert rec["config"]["index"] not in by_index, "a suggestion ran twice"
        by_index[rec["config"]["index"]] = key
        assert rec["status"] == "finished" and rec["iteration"] == 4
    assert sorted(by_index) == sorted(given) and [x for x in log if "planned" in x][-1]["finished"]
    # records, folders and end markers are the cells'
    assert sorted(by_index.values()) == sorted(f"search-{n}" for n in given)
    assert all((sweep_dir / "gansweep" / "done" / f"{key}.json").is_file()
               for key in by_index.values())
    labels = sorted(state.trials[key]["label"] for key in by_index.values())
    assert {"D(3,0,2)G(3,0,2)", "fine-tune"} <= set(labels)  # the design pair, the baseline
    assert sum(label.startswith("D(") for label in labels) == 2  # the budget, none lost
    # Tune holds only trials the searcher handed out; a finished one its snapshot lagged
    # behind is not run again to be known to it (our records hold it)
    tune_state.repair(sweep_dir)
    held = snapshot_trial_ids(tune_state.newest(sweep_dir))
    assert held and held <= {line["id"] for line in log if "id" in line}, held
    assert len(by_index) == 3 and state.expected == 5  # + the 2 confirmation trials
    assert "<b>5</b> trials of <b>5</b> expected" in (sweep_dir / "report.html").read_text()
    assert "5 expected; 5 finished" in out

    records = list(state.trials.values())
    confirm = [r for r in records if r["config"]["phase"] == "confirm"]
    assert len(confirm) == 2 and {r["config"]["seed"] for r in confirm} == {1}
    assert all(r["status"] == "finished" for r in confirm)
    # the replay's side: the same policy and rule, fed the recorded results
    trials = [Trial.from_dict(t) for t in json.loads((sweep_dir / GRID_FILE).read_text())["trials"]]
    search = StructuredSearch(trials, Search("structured", max_pairs=2), FID.loss)
    for r in records:
        if r["config"]["phase"] == "search":
            search.observe(r["config"]["index"], r["last"]["score"] if completed(r, 4) else None)
    top = candidates(search, 2)
    keys = {trials[k[0]].setting_key: k for k in top}
    assert {Trial.from_dict(r["config"]).setting_key for r in confirm} == set(keys)
    confirmed = {keys[Trial.from_dict(r["config"]).setting_key]: [FID.loss(r["last"]["score"])]
                 for r in confirm}
    chosen = pick(search, top, confirmed)
    v = verdict(load_sweep_spec(sweep_dir), records)
    assert v.confirmed and v.within_search and v.pending == 0
    assert trials[chosen[0]].setting_key in v.settings[v.winner]
    assert v.ranking[0][1].n == 2  # the interval is over the search seed and seed 1
    assert v.winner in v.text() and str(v.ranking[0][1]) in v.text()
    assert setting_names(trials)[trials[chosen[0]].setting_key] in v.winner


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trials_train_on_the_gpu_ray_gave_them(sources, faces, weights, tmp_path):
    """On a machine with a real GPU: gpu: 0.5 trials train on CUDA, on the GPU Ray assigned
    (its id in CUDA_VISIBLE_DEVICES, the first CUDA device inside the trial); gpu: 0 trials
    on the same machine train on the CPU, though a GPU is visible to the driver."""
    import ray

    from gansweep.sweep.run.driver import launch
    from gansweep.sweep.spec.files import load_spec

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
    try:
        for name, gpu in (("on-gpu", 0.5), ("on-cpu", 0)):
            launch(load_spec(write_spec(
                tmp_path / f"{name}.yaml", sources["dcgan"], faces, weights, name=name,
                partitions=[], baselines=["fine-tune", "scale-shift"],
                scheduler={"type": "none"}, resources={"cpu": 1, "gpu": gpu},
                budget={"iters": 2, "eval_every": 2, "fid_samples": 8, "batch_size": 8})),
                str(tmp_path / "sweeps"))
    finally:
        ray.shutdown()
    on_gpu = SweepState.load(tmp_path / "sweeps" / "on-gpu").results()
    assert len({r["trial_id"] for r in on_gpu}) == 2
    for r in on_gpu:
        assert r["device"].startswith("cuda") and r["device_name"] != "cpu", r
        assert len(r["gpu_ids"]) == 1 and r["cuda_visible_devices"] == r["gpu_ids"][0], r
    on_cpu = SweepState.load(tmp_path / "sweeps" / "on-cpu").results()
    assert on_cpu and all(r["device"] == "cpu" and r["gpu_ids"] == [] for r in on_cpu)
