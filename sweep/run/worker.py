"""A sweep's trial, as it runs in a Ray worker: ``run_trial`` (Ray Tune's function
trainable) makes the trial's config with ``core.trial.trial_config``, trains with the one
training loop, and at every evaluation writes its own checkpoint into its folder on the
storage and reports to Tune.

What Tune passes each trial (``TrialContext`` and the driver's param space, sweep.run.driver):
the trial's grid cell, its ``Trial``, the sweep's ``TrialTemplate`` and the context below.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from gansweep.core import faults
from gansweep.core.checkpoint import snapshot
from gansweep.core.errors import DivergenceError
from gansweep.core.evaluate import grid_path
from gansweep.core.losses import LOSSES
from gansweep.core.metrics import METRICS
from gansweep.core.train import TrainState, final_summary, setup, train
from gansweep.core.trial import Trial, TrialTemplate, trial_config
from gansweep.sweep.record.layout import (
    ITERATION_FILE,
    newest_checkpoint,
    trial_folder,
    trial_key,
)
from gansweep.sweep.record.state import done_path, done_record
from gansweep.sweep.record.storage import Mirror
from gansweep.sweep.run.tracking import TrialBoard
from gansweep.sweep.spec.ranking import ScoreRule, score


@dataclass(frozen=True)
class TrialContext:
    """What a trial needs of its sweep besides its config."""

    sweep_dir: str
    mirror: str | None  # the bucket URI of a sweep on object storage
    metric: str  # what the scheduler ranks by
    score_rule: ScoreRule
    trackers: tuple[str, ...]
    cpus: float  # the trial's CPU share: its torch threads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialContext:
        return cls(**{**d, "score_rule": ScoreRule(**d["score_rule"]),
                      "trackers": tuple(d["trackers"])})


def _save_checkpoint(s: TrainState, trial_dir: Path) -> None:
    """The trial's checkpoints are its own, not Tune's: each is written into a temporary
    folder beside the others and renamed into place (a reader never sees half of one),
    then the older ones are deleted. Tune holds none, so its experiment snapshot (which can
    lag, and which Tune would rewrite after every checkpoint to track them, a cost that grows
    with the number of trials: benchmarks/RESULTS.md section 8c) never points at a deleted
    one; a restarted trial resumes from the newest one here, on the shared storage."""
    final = trial_dir / f"checkpoint_{s.iteration:06d}"
    tmp = Path(tempfile.mkdtemp(dir=trial_dir, prefix=".checkpoint-"))
    try:
        snapshot(s, tmp / "checkpoint.pt", lean=True)
        (tmp / ITERATION_FILE).write_text(str(s.iteration))
        shutil.rmtree(final, ignore_errors=True)  # a repeat after a restart
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for d in trial_dir.glob("checkpoint_*"):
        if d != final:
            shutil.rmtree(d, ignore_errors=True)


def trial_device() -> tuple[str, list[str]]:
    """What Ray gave this trial: its GPU if it holds one (Ray has set CUDA_VISIBLE_DEVICES
    to it), else the CPU; never a GPU Ray did not assign."""
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    return ("cuda" if gpu_ids and torch.cuda.is_available() else "cpu"), gpu_ids


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one trial, reporting (with a lean checkpoint) at every
    evaluation. It writes its samples, config and metrics straight into its folder on the
    storage, once each. A diverged run reports FID = KID = inf and ends normally."""
    worker_start = time.time()
    context = tune.get_context()
    trial, ctx = Trial.from_dict(config["trial"]), TrialContext.from_dict(config["context"])
    sweep_dir = Path(ctx.sweep_dir)
    # Tune names the trial as it names its folder: by the cell, or 0.3.0's old name.
    name = context.get_trial_name()
    key = trial_key(config, context.get_trial_id(), name)
    folder = trial_folder(sweep_dir, trial, name)
    rel = folder.relative_to(sweep_dir).as_posix()
    mirror = Mirror(ctx.mirror, sweep_dir) if ctx.mirror else None
    if mirror is not None:  # this node's copy of what the trial reads, from the bucket
        for shared in (done_path(key), rel, "fid-stats", "classifiers"):
            mirror.pull(shared)
    done = done_record(sweep_dir, key)
    if done is not None:
        # Tune's experiment snapshot can lag our record: after a driver crash it may
        # restart a trial that had already finished or been stopped. It stays done; its
        # last result is repeated because Tune requires the metric in a final result.
        tune.report({**done["last"], "iteration": done["iteration"], "already_done": 1})
        return
    torch.set_num_threads(max(1, int(ctx.cpus)))
    device, gpu_ids = trial_device()
    cfg = trial_config(TrialTemplate.from_dict(config["template"]), trial, str(folder), device)
    folder.mkdir(parents=True, exist_ok=True)
    state = setup(cfg, resume=newest_checkpoint(folder))

    node_id = ray.get_runtime_context().get_node_id()
    # Costs outside training, for the Tune-overhead benchmark: when the worker began,
    # how long setup took, and the time spent in reports (checkpoint + tune.report).
    fixed = {"loss": cfg.loss, "lr": cfg.lr or LOSSES.get(cfg.loss).lr, "gpu_ids": gpu_ids,
             "lr_mult": json.dumps(cfg.lr_mult, sort_keys=True) if cfg.lr_mult else None,
             "label_smoothing": cfg.label_smoothing, "label_noise": cfg.label_noise,
             "new_units": ",".join(cfg.new_units) or None,
             **state.numerics, "worker_start": worker_start,
             "setup_s": time.time() - worker_start}
    report_s = 0.0
    board = TrialBoard(folder) if "tensorboard" in ctx.trackers else None

    def report(s: TrainState, record: dict[str, float]) -> None:
        nonlocal report_s
        t0 = time.perf_counter()
        if board is not None:
            board.add(record, grid_path(folder, s.iteration))
        value, sd = score(s.history, ctx.metric, ctx.score_rule)
        metrics = {**final_summary(s), **record, **fixed, "diverged": 0, "node_id": node_id,
                   "report_s": report_s, "score": value, "score_sd": sd}
        _save_checkpoint(s, folder)
        faults.point("worker.checkpoint")
        if mirror is not None:
            mirror.push(rel, prune="checkpoint_")
        tune.report(metrics)
        report_s += time.perf_counter() - t0

    if state.history:
        # A restart: the driver may have been killed before this checkpoint's evaluation
        # reached it (at the end, nothing else would report it). The recorder drops it if
        # it has it.
        report(state, state.history[-1])
    try:
        train(cfg, callback=report, state=state, save=False)
    except DivergenceError as e:
        tune.report({**final_summary(state), **fixed, "iteration": e.iteration,
                     **{m: METRICS.get(m).worst for m in ("fid", "kid", *cfg.metrics)},
                     "score": METRICS.get(ctx.metric).worst, "score_sd": None,
                     "diverged": 1, "error": str(e)})
    if board is not None:
        board.close()
    if mirror is not None:  # what the run wrote after its last report
        mirror.push(rel, prune="checkpoint_")
