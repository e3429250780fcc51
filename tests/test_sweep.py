"""Real sweeps on Ray Tune: ASHA stops trials, a killed driver resumes without rerunning
anything, and a two-node cluster survives losing a node."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sweep.state import SweepState
from tests.helpers import MAX_ITERS, finish, gansweep, results, tune_trial_count, write_spec

pytestmark = pytest.mark.slow

def test_tiny_sweep_asha_stops_some(tiny_sweep):
    sweep_dir, out = tiny_sweep
    state = SweepState.load(sweep_dir)
    trials = list(state.trials.values())
    assert len(trials) == state.data["expected"] == 9
    stopped = [t for t in trials if t["status"] == "stopped"]
    finished = [t for t in trials if t["status"] == "finished"]
    assert stopped and finished and len(stopped) + len(finished) == 9, state.counts()
    for t in stopped:
        assert t["iteration"] < MAX_ITERS
        assert results(sweep_dir, t["trial_id"])[-1]["iteration"] < MAX_ITERS
    for t in finished:
        assert t["iteration"] == MAX_ITERS
        assert results(sweep_dir, t["trial_id"])[-1]["iteration"] == MAX_ITERS
    rungs = json.loads((sweep_dir / "gansweep" / "asha_rungs.json").read_text())
    assert len(rungs["brackets"][0][-1][1]) == 9  # every trial recorded at the grace rung
    assert "best fid" in out and "report: " in out
    assert (sweep_dir / "report.html").is_file()  # written when the sweep ends
    status = subprocess.run([sys.executable, "-m", "sweep.cli", "status", sweep_dir],
                            capture_output=True, text=True)
    assert status.returncode == 0 and f"{len(stopped)} stopped" in status.stdout


def test_killed_driver_resumes_without_rerunning(sources, faces, weights, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights,
                      budget={"iters": 8, "eval_every": 2, "fid_samples": 16, "batch_size": 8})
    sweep_dir = tmp_path / "sweeps" / "tiny"
    proc = gansweep("launch", spec, "--storage", tmp_path / "sweeps", start_new_session=True)
    deadline = time.time() + 480
    while True:
        assert time.time() < deadline and proc.poll() is None, "sweep ended before the kill"
        try:
            trials = SweepState.load(sweep_dir).trials
        except Exception:
            trials = {}
        done = [t for t in trials.values() if t["status"] in ("finished", "stopped")]
        if len(done) >= 2 and any(t["status"] == "running" and t["reports"] for t in
                                  trials.values()):
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, like a crashed head
    proc.wait()
    before = SweepState.load(sweep_dir).trials
    rungs_before = json.loads((sweep_dir / "gansweep" / "asha_rungs.json").read_text())
    done_before = {i: t for i, t in before.items() if t["status"] in ("finished", "stopped")}
    lines_before = {i: len(results(sweep_dir, i)) for i in done_before}
    check_partial_results(sweep_dir, before)

    finish(gansweep("resume", sweep_dir))
    after = SweepState.load(sweep_dir)
    assert len(after.trials) == after.data["expected"] == 9
    assert all(t["status"] in ("finished", "stopped") for t in after.trials.values())
    for i, t in done_before.items():
        assert after.trials[i]["starts"] == t["starts"], "a finished trial was started again"
        assert len(results(sweep_dir, i)) == lines_before[i], "a finished trial reported again"
        assert after.trials[i]["iteration"] == t["iteration"]
    resumed = [i for i, t in before.items() if t["status"] == "running" and t["reports"]]
    assert resumed
    for i in resumed:  # continued from its newest checkpoint: no iteration reported twice
        assert len(after.trials[i]["starts"]) == 2
        iters = [r["iteration"] for r in results(sweep_dir, i)]
        assert iters == sorted(set(iters)), iters  # from 0 again, it would repeat 2
        assert len(iters) > before[i]["reports"]
    rungs_after = json.loads((sweep_dir / "gansweep" / "asha_rungs.json").read_text())
    for (m, rec), (m2, rec2) in zip(rungs_before["brackets"][0], rungs_after["brackets"][0]):
        assert m == m2 and all(rec2.get(k) == v for k, v in rec.items())


def check_partial_results(sweep_dir: Path, records: dict) -> None:
    """Tables and report of a sweep interrupted mid-way: every grid trial has a row, the
    ones Tune created carry its ids, unfinished ones say so."""
    from results.report import render
    from results.tables import load_tables, write_tables

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


def test_two_node_cluster_survives_node_loss(sources, faces, weights, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from sweep.runner import launch
    from sweep.spec import load_spec

    spec = load_spec(write_spec(
        tmp_path / "spec.yaml", sources["dcgan"], faces, weights, partitions=[],
        baselines=["fine-tune", "freeze", "scale-shift"], scheduler={"type": "none"},
        budget={"iters": 16, "eval_every": 2, "fid_samples": 8, "batch_size": 8},
        max_failures=3))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    sweep_dir = tmp_path / "sweeps" / "tiny"
    removed: dict = {}

    def kill_worker_mid_trial():
        deadline = time.time() + 400
        while time.time() < deadline:
            try:
                trials = SweepState.load(sweep_dir).trials
            except Exception:
                trials = {}
            for t in trials.values():
                if (t["status"] == "running" and t["last"].get("node_id") == worker.node_id
                        and 2 <= t["iteration"] < 12):
                    removed.update(trial=t["trial_id"], iteration=t["iteration"])
                    cluster.remove_node(worker)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_worker_mid_trial, daemon=True)
    try:
        killer.start()
        launch(spec, str(tmp_path / "sweeps"), address=cluster.address)
        killer.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    state = SweepState.load(sweep_dir)
    assert removed, "no trial ran on the worker node"
    seen_nodes = {r["node_id"] for r in state.results()}
    assert len(seen_nodes) == 2 and worker.node_id in seen_nodes, seen_nodes
    assert all(t["status"] == "finished" for t in state.trials.values()), state.counts()
    victim = state.trials[removed["trial"]]
    assert victim["failures"] >= 1 and len(victim["starts"]) >= 2
    assert victim["starts"][-1]["iteration"] >= 2  # restarted from a checkpoint, not from 0
    iters = [r["iteration"] for r in results(sweep_dir, victim["trial_id"])]
    assert iters[-1] == 16 and iters == sorted(set(iters)), iters
