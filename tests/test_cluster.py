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
import time
from pathlib import Path

import pytest

from gansweep.sweep.state import SweepState
from tests.helpers import assert_one_clear_line, cli, finish, gansweep, write_spec

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
