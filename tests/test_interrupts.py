"""Interrupts and refused launches: Ctrl-C or SIGTERM stops the phase in progress and
starts no other; a launch refused in one line leaves no sweep behind."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from gansweep.sweep.record.state import SweepState
from tests.helpers import assert_one_clear_line, cli_in_process, gansweep, write_spec
from tests.test_reliability import _paused

slow = pytest.mark.slow


# --- interrupts and refused launches --------------------------------------------------------

@slow
def test_ctrl_c_stops_the_search_and_starts_no_confirmation(sources, faces, weights, tmp_path,
                                                            monkeypatch):
    """A launch refused for a wrong $GANSWEEP_INCEPTION_WEIGHTS leaves no folder; the same
    launch with the path fixed runs, and a SIGINT while the driver records the search's
    first end (core.faults pauses it there) stops the search: exit 130, one line naming
    the resume command, the sweep recorded as interrupted, no confirmation trial selected
    or started, no winner printed."""
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, None, partitions=[],
                      baselines=["fine-tune", "scratch"], scheduler={"type": "none"},
                      max_concurrent=1, confirm={"top": 1, "seeds": [7]},
                      budget={"iters": 2, "eval_every": 2, "fid_samples": 8, "batch_size": 8})
    storage, sweep_dir = tmp_path / "sweeps", tmp_path / "sweeps" / "tiny"
    monkeypatch.setenv("GANSWEEP_INCEPTION_WEIGHTS", str(tmp_path / "nope.pth"))
    assert_one_clear_line(cli_in_process("launch", spec, "--storage", storage), "launch",
                          "nope.pth: no such file")
    assert not sweep_dir.exists()

    monkeypatch.setenv("GANSWEEP_INCEPTION_WEIGHTS", weights)
    marker = tmp_path / "paused"
    proc = gansweep("launch", spec, "--storage", storage,
                    env={"GANSWEEP_FAULTS": f"driver.end.search=1@{marker}"})
    _paused(proc, marker)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the handler runs while the driver is paused
    marker.unlink()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-3000:]
    line = f"gansweep launch: interrupted (SIGINT) during the search; nothing further was " \
           f"started. Continue it with: gansweep resume {sweep_dir}"
    assert line in out.splitlines(), out[-3000:]
    assert "Winner" not in out and "sweep finished" not in out, out[-3000:]
    assert not (sweep_dir / "gansweep" / "confirm.json").exists()
    assert not (sweep_dir / "confirm").exists()
    state = SweepState.load(sweep_dir)
    assert {t["config"]["phase"] for t in state.trials.values()} == {"search"}
    assert sum(t["status"] == "finished" for t in state.trials.values()) == 1
    assert json.loads((sweep_dir / "gansweep" / "interrupted.json").read_text())["phase"] \
        == "search"
    status = cli_in_process("status", "tiny", "--storage", storage)
    assert "interrupted (SIGINT) during the search" in status.stdout, status.stdout
    assert f"continue it with 'gansweep resume {sweep_dir}'" in status.stdout


def _wrong_shape_weights(tmp_path: Path) -> str:
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(3, 3)}, tmp_path / "w.pth")
    return str(tmp_path / "w.pth")


def _refused_after_the_claim(monkeypatch, tmp_path: Path) -> None:
    """A stand-in for a refusal once the folder is claimed (in the references, say)."""
    from gansweep.core.errors import GansweepError
    from gansweep.sweep.run import driver

    def refuse(*args, **kw):
        assert (tmp_path / "sweeps" / "tiny" / "gansweep" / "grid.json").is_file()
        raise GansweepError("target: refused after the claim")
    monkeypatch.setattr(driver, "_start", refuse)


def _tracker_missing(monkeypatch, tmp_path: Path) -> None:
    from gansweep.core import extras

    def check(module, extra, needed_for):
        raise extras.missing(module, extra, needed_for)
    monkeypatch.setattr(extras, "check", check)


# case -> (spec overrides, extra argv, setup (it may return more overrides), what the line says)
REFUSED_LAUNCHES = {
    "no weights at $GANSWEEP_INCEPTION_WEIGHTS": (
        {"inception_weights": None}, [],
        lambda mp, tmp: mp.setenv("GANSWEEP_INCEPTION_WEIGHTS", str(tmp / "nope.pth")),
        "nope.pth: no such file"),
    "weights that are no Inception's": (
        {}, [], lambda mp, tmp: {"inception_weights": _wrong_shape_weights(tmp)},
        "do not fit"),
    "cluster address nobody answers": (
        {}, ["--address", "127.0.0.1:9"], None, "--address 127.0.0.1:9: nothing answers there"),
    "storage that is a file": (
        {}, [], lambda mp, tmp: (tmp / "sweeps").write_text("x") and None,
        "is a file, not a folder of sweeps"),
    "tracker package missing": ({"trackers": ["mlflow"]}, [], _tracker_missing,
                                "needs the 'mlflow' package"),
    "refused after the claim": ({}, [], _refused_after_the_claim, "refused after the claim"),
}


@pytest.mark.parametrize("case", list(REFUSED_LAUNCHES))
def test_a_refused_launch_leaves_no_sweep_behind(sources, faces, weights, tmp_path,
                                                 monkeypatch, case):
    """Each refusal is one line, leaves no sweep folder, and so never says 'resume it'."""
    over, argv, setup, fragment = REFUSED_LAUNCHES[case]
    if setup is not None:
        over = {**over, **(setup(monkeypatch, tmp_path) or {})}
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights, **over)
    out = cli_in_process("launch", spec, "--storage", tmp_path / "sweeps", *argv)
    assert_one_clear_line(out, "launch", fragment)
    assert "resume" not in out.stderr
    assert not (tmp_path / "sweeps" / "tiny").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_phase_it_comes_in_and_starts_no_other(tmp_path, signum):
    """Without Ray: during a phase the first signal goes to Tune's stop handler (here a
    stand-in on SIGUSR1, as Tune installs it for each fit) and the phase runs on to its
    end; the next phase never starts; the sweep is recorded as interrupted and the
    handlers are put back. A second signal stops at once."""
    from gansweep.sweep.run import interrupts

    (tmp_path / "gansweep").mkdir()
    asked = []
    before = signal.getsignal(signum)
    ran = []
    with pytest.raises(interrupts.SweepInterrupted) as stopped:
        with interrupts.catching(tmp_path, "/the/sweep"):
            previous = signal.signal(signal.SIGUSR1, lambda s, f: asked.append(s))
            try:
                with interrupts.phase("search"):
                    os.kill(os.getpid(), signum)
                    time.sleep(0.1)
                    ran.append("search")
                    with pytest.raises(KeyboardInterrupt):
                        os.kill(os.getpid(), signum)
                        time.sleep(0.1)
            finally:
                signal.signal(signal.SIGUSR1, previous)
            with interrupts.phase("confirmation"):
                ran.append("confirmation")
    assert asked == [signum] and ran == ["search"]
    name = signal.Signals(signum).name
    assert str(stopped.value) == (f"interrupted ({name}) during the search; nothing further "
                                  f"was started. Continue it with: gansweep resume /the/sweep")
    assert json.loads((tmp_path / "gansweep" / "interrupted.json").read_text())["signal"] == name
    assert signal.getsignal(signum) is before
    with interrupts.catching(tmp_path, "/the/sweep"):  # a resume: no longer interrupted
        assert not (tmp_path / "gansweep" / "interrupted.json").exists()
