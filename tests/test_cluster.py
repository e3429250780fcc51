"""The README's cluster steps, as written: a head and a worker started with `ray start` as
separate processes, with Ray's token authentication (the token made on the head, copied to
the worker and the driver, each with RAY_AUTH_MODE=token and its own HOME, as separate
machines would be), a sweep launched on them with --address, its driver killed, and the
sweep resumed on the same cluster. A driver without the token, and an address where nothing
listens, each stop with one line naming the likely cause."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from gansweep.sweep.record.state import SweepState
from tests.helpers import (
    assert_one_clear_line,
    cli,
    finish,
    gansweep,
    write_spec,
)

pytestmark = pytest.mark.slow
RAY = str(Path(shutil.which("ray") or "ray"))
# Two 1-CPU tasks at once until they run on two nodes (a process of its own: no Ray here).
BOTH_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
@ray.remote(num_cpus=1)
def where():
    time.sleep(0.5)
    return ray.get_runtime_context().get_node_id()
while len(set(ray.get([where.remote(), where.remote()]))) < 2:
    pass
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _machine(tmp_path: Path, name: str, token: Path | None) -> dict[str, str]:
    """The environment of one 'machine': its own HOME, token mode, the token file."""
    home = tmp_path / name
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token"}
    env.pop("RAY_AUTH_TOKEN", None)
    if token is not None:
        env["RAY_AUTH_TOKEN_PATH"] = str(token)
    return env


def _wait_for(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def cluster(tmp_path):
    """A head and a worker node (1 CPU each) started by `ray start`; yields (address,
    token file); both process groups are killed at the end."""
    head = _machine(tmp_path, "head", None)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=head, check=True,
                   capture_output=True)
    token = tmp_path / "auth_token"  # what the user copies to every machine
    shutil.copy(Path(head["HOME"]) / ".ray" / "auth_token", token)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # Ray's session folder holds Unix sockets, whose paths must stay short.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    log = open(tmp_path / "nodes.log", "w")  # noqa: SIM115 -- closed below
    common = ["--block", "--num-cpus=1", "--disable-usage-stats", f"--temp-dir={temp}"]
    nodes = [subprocess.Popen([RAY, "start", "--head", f"--port={port}",
                               "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                               *common], env=head, start_new_session=True, stdout=log,
                              stderr=subprocess.STDOUT)]
    try:
        _wait_for(lambda: _listening(port) or nodes[0].poll() is not None, "the head")
        assert nodes[0].poll() is None, (tmp_path / "nodes.log").read_text()[-3000:]
        nodes.append(subprocess.Popen([RAY, "start", f"--address={address}", *common],
                                      env=_machine(tmp_path, "worker", token),
                                      start_new_session=True, stdout=log,
                                      stderr=subprocess.STDOUT))
        _wait_for(lambda: _idle(address, token) or nodes[1].poll() is not None, "the worker")
        assert all(n.poll() is None for n in nodes), (tmp_path / "nodes.log").read_text()[-3000:]
        # A node counted by `ray status` may not run work yet: wait until both do, or the
        # first trials all land on the head (seen when nothing else delays the launch).
        both = subprocess.run([sys.executable, "-c", BOTH_NODES, address],
                              env=_machine(tmp_path, "probe", token), capture_output=True,
                              text=True, timeout=180)
        assert both.returncode == 0, both.stderr[-3000:]
        yield address, token
    finally:
        for n in nodes:
            try:
                os.killpg(n.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            n.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _idle(address: str, token: Path) -> bool:
    """Both nodes have joined and no CPU is in use (a killed driver's actors are gone)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    status = subprocess.run([RAY, "status", f"--address={address}"], env=env,
                            capture_output=True, text=True)
    return " 0.0/2.0 CPU" in status.stdout


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_a_sweep_on_a_ray_start_cluster_launches_and_resumes(cluster, sources, faces,
                                                              weights, tmp_path):
    address, token = cluster
    driver = _machine(tmp_path, "driver", token)
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights, partitions=[],
                      baselines=["fine-tune", "freeze", "scratch"], scheduler={"type": "none"},
                      budget={"iters": 2, "eval_every": 2, "fid_samples": 8, "batch_size": 8})
    storage = tmp_path / "sweeps"
    sweep_dir = storage / "tiny"

    # The driver's machine dies after the first trial ends (core.faults): the cluster stays.
    launch = gansweep("launch", spec, "--storage", storage, "--address", address,
                      env={**driver, "GANSWEEP_FAULTS": "driver.end.search=1"},
                      start_new_session=True)
    out, _ = launch.communicate(timeout=600)
    assert launch.returncode == -signal.SIGKILL, out[-3000:]
    before = SweepState.load(sweep_dir).trials
    ended = {i for i, t in before.items() if t["status"] == "finished"}
    assert len(ended) == 1

    # Both nodes free (the killed driver's trial actors released), so the two remaining
    # trials run at once, one on each node (1 CPU each).
    _wait_for(lambda: _idle(address, token), "the killed driver's trials to be released")
    out = finish(gansweep("resume", sweep_dir, "--address", address, env=driver))
    after = SweepState.load(sweep_dir).trials
    assert len(after) == 3 and all(t["status"] == "finished" for t in after.values()), out
    assert all(after[i]["starts"] == before[i]["starts"] for i in ended)  # not rerun
    assert len({r["node_id"] for r in SweepState.load(sweep_dir).results()}) == 2
    assert "winner: " in out

    # Without the token (RAY_AUTH_MODE unset, as Ray's default is): one line; Ray itself
    # would retry for 20 s and print a traceback.
    stranger = {**_machine(tmp_path, "stranger", None), "RAY_gcs_server_port_wait_time_s": "2"}
    stranger.pop("RAY_AUTH_MODE")
    (tmp_path / "other.yaml").write_text(spec.read_text().replace("name: tiny", "name: other"))
    refused = cli("launch", tmp_path / "other.yaml", "--storage", storage, "--address", address,
                  env=stranger)
    assert_one_clear_line(refused, "launch", f"--address {address}: the Ray cluster there did "
                                             f"not accept this driver")
    assert "RAY_AUTH_MODE=token (here: unset)" in refused.stderr


def test_an_address_where_nothing_listens_is_one_line(sources, faces, weights, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights)
    address = f"127.0.0.1:{_free_port()}"
    out = cli("launch", spec, "--storage", tmp_path / "sweeps", "--address", address)
    assert_one_clear_line(out, "launch", f"--address {address}: nothing answers there")


def max_sharing(records: list[dict]) -> dict[tuple[str, str], int]:
    """For each (node, GPU id), the most trials that reported on it at once: a trial holds
    its GPU from its first to its last result on that node."""
    spans: dict[tuple[str, str, str], list[float]] = {}
    for r in records:
        for gpu in r["gpu_ids"]:
            span = spans.setdefault((r["node_id"], gpu, r["trial_id"]), [r["time"], r["time"]])
            span[1] = max(span[1], r["time"])
    most: dict[tuple[str, str], int] = {}
    for (node, gpu, _), (a, _) in spans.items():
        at_once = sum(1 for (n, g, _), (c, d) in spans.items() if (n, g) == (node, gpu)
                      and c <= a <= d)
        most[(node, gpu)] = max(most.get((node, gpu), 0), at_once)
    return most


def test_two_node_cluster_with_fake_gpus_survives_node_loss(sources, faces, weights,
                                                            tmp_path):
    """Two nodes, each declaring one (fake) GPU; trials of gpu: 0.25. Ray packs at most four
    trials on a GPU, each records the GPU ids and CUDA_VISIBLE_DEVICES Ray gave it (and
    trains on the CPU: there is no real GPU). The worker node is removed mid-trial: that
    trial continues on the head from its newest checkpoint. A gpu: 0 trial records cpu."""
    import ray
    from ray.cluster_utils import Cluster

    from gansweep.sweep.run.driver import launch
    from gansweep.sweep.spec.files import load_spec

    spec = load_spec(write_spec(
        tmp_path / "spec.yaml", sources["dcgan"], faces, weights, partitions=[],
        baselines=["fine-tune", "freeze", "scale-shift", "freeze-d", "scratch"],
        scheduler={"type": "none"}, resources={"cpu": 0.25, "gpu": 0.25},
        budget={"iters": 16, "eval_every": 4, "fid_samples": 8, "batch_size": 8},
        max_failures=3))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    worker = cluster.add_node(num_cpus=1, num_gpus=1)
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
                        and 4 <= t["iteration"] < 12):
                    removed.update(trial=t["trial_id"], time=time.time())
                    cluster.remove_node(worker)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_worker_mid_trial, daemon=True)
    try:
        killer.start()
        launch(spec, str(tmp_path / "sweeps"), address=cluster.address)
        killer.join(timeout=5)
        cpu_only = load_spec(write_spec(
            tmp_path / "cpu.yaml", sources["dcgan"], faces, weights, name="cpu-only",
            partitions=[], baselines=["fine-tune"], scheduler={"type": "none"},
            resources={"cpu": 0.25, "gpu": 0},
            budget={"iters": 2, "eval_every": 2, "fid_samples": 8, "batch_size": 8}))
        launch(cpu_only, str(tmp_path / "sweeps"), address=cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
    state = SweepState.load(sweep_dir)
    records = state.results()
    assert removed, "no trial ran on the worker node"
    assert {r["node_id"] for r in records} >= {worker.node_id}
    assert all(t["status"] == "finished" for t in state.trials.values()), state.counts()
    for r in records:  # what Ray gave each trial, and the CPU it trained on
        assert len(r["gpu_ids"]) == 1 and r["cuda_visible_devices"] == r["gpu_ids"][0], r
        assert r["device"] == "cpu"
    sharing = max_sharing(records)
    assert max(sharing.values()) <= 4 and max(sharing.values()) >= 2, sharing
    victim = state.trials[removed["trial"]]
    assert victim["failures"] >= 1 and len(victim["starts"]) >= 2
    mine = [r for r in records if r["trial_id"] == victim["trial_id"]]
    before = [r["iteration"] for r in mine if r["time"] < removed["time"]]
    after = [r["iteration"] for r in mine if r["time"] > removed["time"]]
    # It continued from its newest checkpoint: the next evaluation after the last one seen
    # before the node went (from 0 it would report 4 again; from an older one, a repeat).
    assert after[0] == before[-1] + 4, (before, after)
    assert after[-1] == 16 and [*before, *after] == sorted(set(before + after))
    cpu_trial = SweepState.load(tmp_path / "sweeps" / "cpu-only").results()[-1]
    assert cpu_trial["gpu_ids"] == [] and cpu_trial["device"] == "cpu"
