"""Reliability: bad inputs give one clear line and leave nothing half-written; faults
(diverging or raising trials, storage going read-only or full, a kill during aggregation,
two launches of one name) lose nothing and rerun nothing. Driver kills and node loss are
in test_sweep.py."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image

from gansweep.core.data import MAX_PIXELS
from gansweep.core.fileio import atomic_write
from gansweep.sweep.record.state import SweepState
from tests.helpers import (
    assert_one_clear_line,
    cli,
    cli_in_process,
    finish,
    gansweep,
    results,
    write_spec,
)

# --- image folders ---------------------------------------------------------------------------

def _folder(root: Path, name: str, images: dict[str, Image.Image] | None = None,
            files: dict[str, bytes] | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for fname, im in (images or {}).items():
        im.save(d / fname)
    for fname, data in (files or {}).items():
        (d / fname).write_bytes(data)
    return d


def _rgb(n: int) -> dict[str, Image.Image]:
    return {f"ok{i}.png": Image.new("RGB", (32, 32), (i * 20, 90, 200)) for i in range(n)}


BAD_FOLDERS = {  # case -> (folder maker, what the one line must say)
    "empty": (lambda r: _folder(r, "empty"), "no images found"),
    "only non-image files": (lambda r: _folder(r, "txt", files={"a.txt": b"x", "b.csv": b"1"}),
                             "no images found"),
    "truncated png": (lambda r: _folder(r, "cut", _rgb(8), {"cut.png": b"\x89PNG\r\n\x1a\nxx"}),
                      "cut.png: cannot read image"),
    "zero-byte file": (lambda r: _folder(r, "zero", _rgb(8), {"zero.png": b""}),
                       "zero.png: cannot read image"),
    "enormous image": (lambda r: _folder(r, "huge", {**_rgb(8), "huge.png": Image.new(
        "L", (8200, 8200))}), f"huge.png: image of 8200x8200 pixels is too large (limit "
                              f"{MAX_PIXELS} pixels)"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_bad_image_folder(sources, tmp_path, case):
    """Refused before any output exists; the error names the file or folder."""
    make, fragment = BAD_FOLDERS[case]
    folder = make(tmp_path / "data")
    out_dir = tmp_path / "run"
    result = cli_in_process("transfer", "--source", sources["dcgan"], "--data", folder,
                            "--baseline", "fine-tune", "--iters", "1", "--batch-size", "8",
                            "--metrics", "none", "--out", out_dir)
    assert_one_clear_line(result, "transfer", fragment)
    assert not out_dir.exists()


def test_odd_image_modes_are_accepted(sources, tmp_path):
    """16-bit, CMYK, grayscale and palette-with-transparency images train like RGB ones
    (converted to RGB; transparency composited onto white)."""
    deep = Image.fromarray(np.full((32, 32), 65535, dtype=np.uint16))
    pal = Image.new("P", (32, 32), 1)
    pal.putpalette([0, 0, 0, 9, 99, 199] + [0] * 762)
    folder = _folder(tmp_path, "modes", {"d16.png": deep, "gray.png": Image.new("L", (32, 32), 7),
                                         **_rgb(5)})
    Image.new("CMYK", (32, 32), (0, 255, 0, 0)).save(folder / "cmyk.jpg")
    pal.save(folder / "pal.png", transparency=1)
    result = cli("transfer", "--source", sources["dcgan"], "--data", folder, "--baseline",
                 "fine-tune", "--iters", "1", "--batch-size", "8", "--metrics", "none",
                 "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    from gansweep.core.data import load_folder

    images = load_folder(folder, 32)
    pixel = {Path(p).name: tuple(images.images[i, :, 5, 5].tolist()) for i, p in
             enumerate(images.paths)}
    assert pixel["d16.png"] == (255, 255, 255) and pixel["gray.png"] == (7, 7, 7)
    assert pixel["pal.png"] == (255, 255, 255)
    assert pixel["cmyk.jpg"][1] < 30 and pixel["cmyk.jpg"][0] > 200  # magenta


# --- specs -----------------------------------------------------------------------------------

def _spec(tmp_path: Path, sources, faces, weights, **over) -> Path:
    source = over.pop("source", sources["dcgan"])
    return write_spec(tmp_path / "spec.yaml", source, faces, weights, **over)


BAD_SPECS = {  # case -> (overrides, what the one line must say)
    "unknown key": ({"baselnes": ["freeze"]}, "unknown key 'baselnes' (did you mean "
                                              "'baselines'?)"),
    "wrong type": ({"budget": {"iters": "many", "eval_every": 2}},
                   "budget.iters: 'many' is not an integer"),
    "partition with the wrong sum": ({"partitions": [["D(1,2,3)", "G(1,2,2)"]]},
                                     "'D(1,2,3)' sums to 6, but the network has L = 5"),
    "unknown baseline": ({"baselines": ["freez"]}, "unknown baseline 'freez' (did you mean "
                                                   "'freeze'?)"),
    "missing source checkpoint": ({"source": "/nonexistent/source.pt"},
                                  "source: '/nonexistent/source.pt' does not exist"),
    "source of another architecture": ({"source": "RESNET"},
                                       "has arch.name = 'resnet', but the spec requires "
                                       "'dcgan'"),
    # (a lower resolution than the source's is a cross-resolution transfer, not an error)
    "source of a lower resolution": ({"source": "DCGAN", "resolution": 64},
                                     "has arch.resolution = 32, but the spec requires 64"),
    "duplicate axis values": ({"seed": [0, 1, 0]}, "seed: duplicate value 0"),
    "ranking metric not measured": ({"metric": "iw"}, "metric: 'iw' (what the scheduler "
                                                      "ranks by) is not among metrics"),
    "unknown class head": ({"conditional": ["concat"]}, "conditional: 'concat' is not null "
                                                        "or one of"),
    "conditional target without class folders": ({"conditional": ["ac"]},
                                                 "one sub-folder per class"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec(sources, faces, weights, tmp_path, case):
    over, fragment = dict(BAD_SPECS[case][0]), BAD_SPECS[case][1]
    if over.get("source") in ("RESNET", "DCGAN"):
        resolution = over.pop("resolution", 32)
        over = {**over, "source": str(sources[over["source"].lower()]),
                "arch": {"name": "dcgan", "resolution": resolution}}
    spec = _spec(tmp_path, sources, faces, weights, **over)
    assert_one_clear_line(cli_in_process("launch", spec, "--storage", tmp_path / "sweeps"),
                          "launch", fragment)
    assert not (tmp_path / "sweeps").exists()


# --- checkpoints and FID weights ------------------------------------------------------------

def _bad_checkpoint(sources, tmp_path: Path, case: str) -> Path:
    path = tmp_path / f"{case.replace(' ', '_')}.pt"
    good = sources["dcgan"].read_bytes()
    if case == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif case == "not a checkpoint":
        torch.save({"hello": torch.zeros(2)}, path)
    else:
        ckpt = torch.load(sources["dcgan"], weights_only=True)
        del ckpt["D"]
        torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("case, fragment", [
    ("truncated", "not a readable gansweep checkpoint"),
    ("not a checkpoint", "not a gansweep checkpoint"),
    ("missing D", "missing the discriminator D")])
def test_bad_checkpoint(sources, faces, tmp_path, case, fragment):
    bad = _bad_checkpoint(sources, tmp_path, case)
    result = cli("transfer", "--source", bad, "--data", faces, "--baseline", "fine-tune",
                 "--iters", "1", "--batch-size", "8", "--metrics", "none",
                 "--out", tmp_path / "run")
    assert_one_clear_line(result, "transfer", fragment)
    assert bad.name in result.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("case, fragment", [("missing", "no such file"),
                                            ("wrong shape", "do not fit")])
def test_bad_fid_weights(faces, tmp_path, case, fragment):
    path = tmp_path / "w.pth"
    if case == "wrong shape":
        torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(3, 3)}, path)
    assert_one_clear_line(cli("fid", faces, faces, "--inception-weights", path), "fid", fragment)


# --- faults in sweeps ------------------------------------------------------------------------

slow = pytest.mark.slow


@slow
def test_kill_during_aggregation_leaves_readable_files(tiny_sweep, tmp_path):
    """SIGKILL `gansweep report` while each of its files is being written (core.faults: at
    the k-th atomic write, its temporary file whole, the rename not done): every Parquet file
    and the report are then either absent or whole, and the next report succeeds."""
    sweep = tmp_path / "tiny"
    shutil.copytree(tiny_sweep[0], sweep)
    outputs = [sweep / "gansweep" / f"{name}.parquet" for name in ("trials", "metrics",
                                                                    "effects")]
    for path in [*outputs, sweep / "report.html"]:
        path.unlink()
    for k in (1, 2, 3, 4):  # trials, metrics and effects.parquet, report.html
        run = subprocess.run([sys.executable, "-m", "gansweep", "report", sweep, "--quiet"],
                             env={**os.environ, "GANSWEEP_FAULTS": f"write.rename={k}"},
                             capture_output=True, text=True)
        assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
        left = [*sweep.glob("*.tmp"), *(sweep / "gansweep").glob("*.tmp")]
        assert len(left) == 1, left  # killed mid-write: the temporary file of the k-th output
        assert left[0].name.startswith([*(p.name for p in outputs), "report.html"][k - 1])
        left[0].unlink()
        for path in outputs[:k - 1]:
            assert pq.read_table(path).num_rows > 0
        for path in [*outputs[k - 1:], sweep / "report.html"]:
            assert not path.exists()
    finish(gansweep("report", sweep))
    assert len(pd.read_parquet(outputs[0])) == 11
    assert (sweep / "report.html").read_text().rstrip().endswith("</html>")


@slow
def test_diverged_and_errored_trials(sources, faces, weights, tmp_path):
    """An absurd learning rate diverges (recorded, FID = inf, the sweep goes on); a source
    checkpoint corrupted mid-sweep makes its trials error with the message kept; a second
    launch of the same name refuses; `resume --skip-errored` leaves errored trials alone
    and `resume` retries them."""
    bad_source = tmp_path / "second.pt"
    shutil.copy(sources["dcgan"], bad_source)
    spec = write_spec(tmp_path / "spec.yaml", [str(sources["dcgan"]), str(bad_source)], faces,
                      weights, partitions=[],
                      baselines=["fine-tune"], lr=[None, 1e30], scheduler={"type": "none"},
                      budget={"iters": 4, "eval_every": 2, "fid_samples": 8, "batch_size": 8},
                      max_concurrent=1, max_failures=0)
    sweep_dir = tmp_path / "sweeps" / "tiny"
    proc = gansweep("launch", spec, "--storage", tmp_path / "sweeps")
    deadline = time.time() + 300
    while not (sweep_dir / "gansweep" / "trials.json").is_file() or not any(
            t["status"] == "running" for t in SweepState.load(sweep_dir).trials.values()):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    good = bad_source.read_bytes()
    bad_source.write_bytes(good[:1000])  # trials run in order: the good source's first
    # The same name again (a spec without the now corrupt source, which it would refuse).
    again = write_spec(tmp_path / "again.yaml", [str(sources["dcgan"])], faces, weights,
                       partitions=[], baselines=["fine-tune"])
    assert_one_clear_line(cli_in_process("launch", again, "--storage", tmp_path / "sweeps"),
                          "launch", "already exists")
    finish(proc)

    state = SweepState.load(sweep_dir)
    by = {(t["config"]["source"], t["config"]["lr"]): t for t in state.trials.values()}
    assert len(by) == 4
    ok, diverged = by[(str(sources["dcgan"]), None)], by[(str(sources["dcgan"]), 1e30)]
    assert ok["status"] == "finished" and ok["iteration"] == 4
    assert diverged["status"] == "diverged" and diverged["best"]["fid"] == float("inf")
    assert "diverged at iteration" in diverged["error"]
    errored = [by[(str(bad_source), lr)] for lr in (None, 1e30)]
    for t in errored:
        assert t["status"] == "errored" and "not a readable gansweep checkpoint" in t["error"]
        assert str(bad_source) in t["error"]
    table = pd.read_parquet(sweep_dir / "gansweep" / "trials.parquet")
    assert sorted(table["status"]) == ["diverged", "errored", "errored", "finished"]
    assert table[table["status"] == "diverged"]["best_fid"].tolist() == [float("inf")]
    report = (sweep_dir / "report.html").read_text()
    assert "<tr class='diverged'>" in report and ">inf<" in report

    starts = {i: t["starts"] for i, t in state.trials.items()}
    finish(gansweep("resume", sweep_dir, "--skip-errored"))
    assert {i: t["starts"] for i, t in SweepState.load(sweep_dir).trials.items()} == starts

    bad_source.write_bytes(good)
    finish(gansweep("resume", sweep_dir))
    after = SweepState.load(sweep_dir).trials
    for i, t in state.trials.items():
        if t["status"] != "errored":
            assert after[i]["starts"] == starts[i]  # not rerun
    retried = {(after[t["trial_id"]]["config"]["lr"], after[t["trial_id"]]["status"])
               for t in errored}
    assert retried == {(None, "finished"), (1e30, "diverged")}
    assert all(len(after[t["trial_id"]]["starts"]) == 2 for t in errored)


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small filesystem of our own that can be made read-only or full (needs root)."""
    path.mkdir(parents=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _paused(proc: subprocess.Popen, marker: Path) -> None:
    """Wait until the driver pauses at its fault point (core.faults: it made ``marker``)."""
    deadline = time.time() + 300
    while not marker.exists():
        assert time.time() < deadline and proc.poll() is None, "the driver never paused"
        time.sleep(0.1)


def _check_intact(sweep_dir: Path, tmp_path: Path, finished: int) -> None:
    state = SweepState.load(sweep_dir)  # valid JSON: no half-written state
    assert sum(t["status"] == "finished" for t in state.trials.values()) >= finished
    assert all(r["trial_id"] in state.trials for r in state.results())
    status = cli_in_process("status", sweep_dir)
    assert status.returncode == 0 and "finished" in status.stdout
    report = cli_in_process("report", sweep_dir, "--out", tmp_path / "elsewhere.html")
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "elsewhere.html").stat().st_size > 100_000


@slow
def test_storage_read_only_then_full(sources, faces, weights, tmp_path):
    """The storage turns read-only mid-sweep, later fills up: each time the driver stops
    with one clear line, what was written stays readable, and resume completes. The storage
    changes while the driver is paused at its record of a trial's end (core.faults), so the
    driver's next write is the first to meet it: no race with its writes."""
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights, partitions=[],
                      baselines=["fine-tune", "freeze", "scale-shift"],
                      scheduler={"type": "none"}, max_concurrent=1,
                      budget={"iters": 4, "eval_every": 2, "fid_samples": 8, "batch_size": 8})
    marker = tmp_path / "paused"
    pause = {"GANSWEEP_FAULTS": f"driver.end.search=1@{marker}"}
    with tmpfs(tmp_path / "store", "64m") as store:
        sweep_dir = store / "tiny"
        proc = gansweep("launch", spec, "--storage", store, env=pause)
        _paused(proc, marker)
        subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)
        marker.unlink()
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 2, out[-3000:]
        assert ("gansweep launch: error: cannot write to the sweep directory "
                f"{sweep_dir}: Read-only file system") in out, out[-3000:]
        assert f"run 'gansweep resume {sweep_dir}'" in out
        _check_intact(sweep_dir, tmp_path, 1)

        subprocess.run(["mount", "-o", "remount,rw", str(store)], check=True)
        proc = gansweep("resume", sweep_dir, env=pause)
        _paused(proc, marker)
        with open(store / "filler", "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * (1 << 20))
        marker.unlink()
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 2, out[-3000:]
        assert "cannot write to the sweep directory" in out and "No space left" in out, \
            out[-3000:]
        (store / "filler").unlink()
        _check_intact(sweep_dir, tmp_path, 2)

        out = finish(gansweep("resume", sweep_dir))
        state = SweepState.load(sweep_dir)
        seen = {i: (t["config"]["label"], t["status"], len(t["starts"]))
                for i, t in state.trials.items()}
        files = sorted(p.name for p in sweep_dir.iterdir())
        assert [t["status"] for t in state.trials.values()] == ["finished"] * 3, \
            f"{seen}\n{files}\n{out[-6000:]}"
        for t in state.trials.values():
            iters = [r["iteration"] for r in results(sweep_dir, t["trial_id"])]
            assert iters == sorted(set(iters)) and iters[-1] == 4
        assert yaml.safe_load((sweep_dir / "gansweep" / "sweep.yaml").read_text())["name"] \
            == "tiny"
        assert json.loads((sweep_dir / "gansweep" / "grid.json").read_text())["trials"]


def test_atomic_writes_are_readable_by_the_team(tmp_path):
    """Results written through a temporary file get the process's umask permissions, not
    the 0600 of the temporary file: a shared sweep directory stays readable to its group."""
    atomic_write(tmp_path / "x.json", lambda f: f.write(b"{}"))
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask  # 0644 under 022
