"""Helpers for tests that run real sweeps through the CLI."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from gansweep.sweep.record.state import SweepState
from gansweep.sweep.run import tune_state

MAX_ITERS = 6


def write_spec(path: Path, source: Path | list[str], target: Path, weights: str, **over) -> Path:
    data = {"name": "tiny", "source": source if isinstance(source, list) else str(source),
            "target": str(target),
            "partitions": {"d": ["D(0,0,5)", "D(1,2,2)", "D(3,0,2)"],
                           "g": ["G(0,0,5)", "G(3,0,2)"]},
            "baselines": ["fine-tune", "scale-shift", "scratch"],
            "budget": {"iters": MAX_ITERS, "eval_every": 2, "fid_samples": 8, "batch_size": 8},
            "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 3},
            "metric": "fid", "resources": {"cpu": 1}, "max_failures": 2,
            "inception_weights": weights}
    data.update(over)
    path.write_text(yaml.safe_dump(data))
    return path


# The fixtures of ../shared/reference were recorded on one CPU: there our networks give
# their outputs bit for bit. Another CPU's float32 kernels round differently in the last bits
# (the reference code itself, run on this 2-core AMD EPYC machine, differs from its recordings
# by up to 3e-6 of a tensor's largest value, as ours do, bit for bit the same as it); a wrong
# layer or layout differs by orders of magnitude more.
FIXTURE_RTOL = 1e-5


def assert_reproduces(actual, expected, what: str = "") -> None:
    """``actual`` equals a recorded fixture output, up to another CPU's float32 rounding."""
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    if torch.equal(actual, expected):
        return
    diff = (actual.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item()
    assert diff <= FIXTURE_RTOL * scale, \
        f"{what}: max |difference| {diff:.3g} on values up to {scale:.3g}"


def installed_trackers() -> list[str]:
    """The registered trackers whose packages are installed here."""
    import importlib.util

    from gansweep.sweep.spec.trackers import TRACKERS

    return [t for t in TRACKERS
            if importlib.util.find_spec(TRACKERS.get(t).package) is not None]


def tensorboard_events(folder: Path) -> list:
    """Every event of the TensorBoard files in ``folder`` (TFRecord framing: length, its
    CRC, the serialised Event, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            n = int.from_bytes(data[at:at + 8], "little")
            events.append(Event.FromString(data[at + 12:at + 12 + n]))
            at += 12 + n + 4
    return events


def cli(*args, cwd: Path | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    """Run the CLI to completion, capturing its output (``env``: its whole environment)."""
    return subprocess.run([sys.executable, "-m", "gansweep", *map(str, args)],
                          capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def cli_in_process(*args) -> subprocess.CompletedProcess:
    """The CLI's ``main`` run in this process, its output captured: the same handling of a
    refused input as ``cli`` without an interpreter start-up per case."""
    from gansweep.sweep.cli.main import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def assert_one_clear_line(out: subprocess.CompletedProcess, command: str, fragment: str):
    """A refused input: exit 2 and one line on stderr naming the command and the problem."""
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"gansweep {command}: error:") and fragment in lines[0], lines[0]


def gansweep(*args, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    """The CLI in a subprocess, its output captured; ``env`` adds to the environment (a
    fault to inject: core.faults)."""
    # W&B (the tiny sweep's tracker) writes its runs to disk and talks to no server.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0",
           "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "gansweep", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, **kw)


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def results(sweep_dir: Path, trial_id: str) -> list[dict]:
    return [r for r in SweepState.load(sweep_dir).results() if r["trial_id"] == trial_id]


def tune_trial_count(sweep_dir: Path) -> int:
    """How many trials Ray Tune's own newest experiment snapshot holds, as a resume reads it
    (a snapshot cut short by the kill replaced by the driver's backup)."""
    tune_state.repair(sweep_dir)
    return len(json.loads(tune_state.newest(sweep_dir).read_text())["trial_data"])
