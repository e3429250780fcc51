"""Where a sweep keeps each trial's files: its phase's experiment folder, the trial's key
(its record and end marker), its grid cell and folder, and its newest checkpoint. The run
layer writes them (``sweep.run.worker``, ``sweep.run.driver``); ``best``, ``sample`` and the
benchmarks read them; none of it needs Ray.

A trial is keyed by its phase and grid cell (``cell_key``), so that a trial Tune lost and
runs again under another Tune trial id is the same trial. Tune's grid is over cells,
``"index:label"`` strings (``cell``), and a trial's folder is named after its cell
(``cell_dirname``). A sweep made by gansweep 0.3.0 keyed its trials by Tune's trial id and
named their folders after it (``legacy_dirname``); those keep their keys (``trial_key``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gansweep.core.trial import Trial
from gansweep.sweep.record.state import CONFIRM_DIR

ITERATION_FILE = "iteration.txt"  # in each checkpoint folder: the iteration it holds


def experiment_dir(sweep_dir: Path, phase: str) -> Path:
    """Where Tune keeps a phase's experiment: the sweep directory, or SWEEP/confirm."""
    return sweep_dir if phase == "search" else sweep_dir / CONFIRM_DIR


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


def cell(trial: Trial) -> str:
    """A trial's grid cell, as Tune's grid names it: ``"index:label"``."""
    return f"{trial.index}:{trial.label}"


def parse_cell(text: str) -> tuple[int, str]:
    """A cell's grid index and label."""
    index, label = text.split(":", 1)
    return int(index), label


def cell_key(trial: Trial) -> str:
    """A trial's key (its record, its end marker): its phase and grid cell."""
    return f"{trial.phase}-{trial.index}"


def cell_dirname(text: str) -> str:
    """A trial's folder in its phase's experiment, named by its cell in characters every
    filesystem takes."""
    index, label = parse_cell(text)
    return f"{index:04d}_{_safe(label)}"


def legacy_dirname(trial_id: str, label: str) -> str:
    """The folder gansweep 0.3.0 gave a trial: its Tune trial id and its label."""
    return f"{trial_id}_{_safe(label)}"


def trial_key(config: dict[str, Any], trial_id: str, dirname: str) -> str:
    """The key of the trial Tune runs as ``trial_id`` in the folder ``dirname`` with
    ``config``: its cell's, except a trial of a 0.3.0 sweep, which keeps its Tune id
    whether Tune restored it (its folder has its old name) or the searcher handed its cell
    out again (``config["key"]``, sweep.run.searcher)."""
    if config.get("key"):
        return config["key"]
    trial = Trial.from_dict(config["trial"])
    return trial_id if dirname == legacy_dirname(trial_id, trial.label) else cell_key(trial)


def trial_folder(sweep_dir: Path, trial: Trial, dirname: str) -> Path:
    """Where a trial's files live on the storage: its phase's experiment folder, under the
    name Tune gave the trial (``sweep.run.driver``)."""
    return experiment_dir(sweep_dir, trial.phase) / dirname


def newest_checkpoint(trial_dir: Path) -> Path | None:
    """The checkpoint of the highest iteration in a trial's folder (None: none yet)."""
    best: tuple[int, Path] | None = None
    for d in trial_dir.glob("checkpoint_*"):
        try:
            iteration = int((d / ITERATION_FILE).read_text())
        except (OSError, ValueError):
            continue
        if (d / "checkpoint.pt").is_file() and (best is None or iteration > best[0]):
            best = (iteration, d / "checkpoint.pt")
    return None if best is None else best[1]
