"""A sweep made by gansweep 0.3.0 (flat sweep/, trials keyed by Ray Tune's trial ids) resumes
with this version: Tune unpickles its tuner.pkl through the old module paths
(``sweep.run.moved``), its trials keep their folders and end markers, new ones are keyed by
their cells. The 0.3.0 sweep is made here by 0.3.0's code (tag v0.3.0), in place (a sweep folder
cannot be moved: Tune's state holds its absolute paths)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gansweep.sweep.record.state import DONE, SweepState
from tests.helpers import finish, gansweep, results, write_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# The last commit of 0.3.0's flat layout (tagged v0.3.0): named by its hash, which every
# clone with the history has, where a tag is not always fetched.
COMMIT = "0406aa9bb04a35f2ceaa23bc1f94fa8c4b2633be"
PACKAGES = ("core", "sweep", "results", "search_spaces")


def old_code(into: Path) -> Path:
    """0.3.0's package (``COMMIT``), importable as ``gansweep`` with ``PYTHONPATH=into``."""
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{COMMIT}^{{commit}}"],
                           capture_output=True, text=True)
    if known.returncode != 0:
        pytest.fail(f"this checkout lacks commit {COMMIT[:12]} (v0.3.0; a shallow clone?): "
                    f"'git fetch --unshallow' it; the test of resuming a 0.3.0 sweep makes that "
                    f"sweep with 0.3.0's code")
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", COMMIT, *PACKAGES, "gansweep"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    for name in PACKAGES:  # the repository maps these folders into the package (package-dir)
        (into / "gansweep" / name).symlink_to(into / name, target_is_directory=True)
    return into


def test_a_sweep_of_0_3_0_resumes(sources, faces, weights, tmp_path):
    """0.3.0 launches a structured search with a confirmation and is killed at its 4th
    result; this version resumes it: nothing finished is rerun, every cell runs once, the
    trials 0.3.0 started keep their Tune-id keys and folders, the confirmation's are keyed
    by their cells, and the verdict is printed."""
    old = old_code(tmp_path / "old")
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights, name="old",
                      partitions={"d": ["D(0,0,5)", "D(3,0,2)"], "g": ["G(0,0,5)", "G(3,0,2)"]},
                      baselines=["scratch"], scheduler={"type": "none"},
                      resources={"cpu": 2}, search={"type": "structured", "max_pairs": 2},
                      confirm={"top": 1, "seeds": [7]},
                      budget={"iters": 4, "eval_every": 2, "fid_samples": 8, "batch_size": 8})
    storage = tmp_path / "sweeps"
    env = {**os.environ, "PYTHONPATH": str(old), "PYTHONUNBUFFERED": "1",
           "GANSWEEP_FAULTS": "driver.result.search=4"}
    launched = subprocess.run([sys.executable, "-m", "gansweep", "launch", str(spec),
                               "--storage", str(storage)], cwd=old, env=env,
                              capture_output=True, text=True, timeout=600,
                              start_new_session=True)
    assert launched.returncode == -signal.SIGKILL, launched.stdout[-3000:] + launched.stderr
    sweep_dir = storage / "old"
    assert (sweep_dir / "gansweep" / "search.json").is_file(), "not a 0.3.0 sweep"
    before = SweepState.load(sweep_dir).trials
    assert before and all(re.fullmatch(r"[0-9a-f]{8}", key) for key in before), before.keys()
    ended = {k: t for k, t in before.items() if t["status"] in DONE}
    assert ended, "the kill must come after a trial ended to test anything"
    reported = {k: len(results(sweep_dir, k)) for k in ended}

    out = finish(gansweep("resume", sweep_dir))

    after = SweepState.load(sweep_dir).trials
    for key, t in ended.items():  # finished before the kill: not started or reported again
        assert after[key]["starts"] == t["starts"], f"{t['label']} was started again"
        assert len(results(sweep_dir, key)) == reported[key]
    for key, t in before.items():  # 0.3.0's trials keep their keys and folders
        assert after[key]["path"] == t["path"] and t["path"].startswith(f"{key}_")
    cells = [(t["config"]["phase"], t["config"]["index"]) for t in after.values()]
    assert len(cells) == len(set(cells)), "a cell ran under two keys"
    assert all(t["status"] in DONE for t in after.values()), \
        {k: t["status"] for k, t in after.items()}
    confirm = {k: t for k, t in after.items() if t["config"]["phase"] == "confirm"}
    assert confirm and all(k == f"confirm-{t['config']['index']}" and
                           t["path"].startswith(f"confirm/{t['config']['index']:04d}_")
                           for k, t in confirm.items()), confirm.keys()
    assert all((sweep_dir / "gansweep" / "done" / f"{k}.json").is_file() for k in after)
    assert (sweep_dir / "gansweep" / "search.jsonl").is_file()  # the search state, migrated
    assert "winner:" in out and "winner: none yet" not in out, out[-3000:]
