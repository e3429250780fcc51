"""Launch and resume sweeps on Ray Tune. The only module that imports Ray.

Layout of a sweep directory ``STORAGE/NAME`` (besides Ray Tune's own files):
- ``gansweep/sweep.yaml``: the spec as launched, with paths resolved;
- ``gansweep/trials.json``: every trial's status, written by the driver (see ``state``);
- ``gansweep/asha_rungs.json``: ASHA's rung records, so decisions after a resume use the
  results seen before it (Ray forgets them on restore: ray-project/ray#30838);
- ``fid-stats/``: real-data FID statistics, computed once by the driver before trials;
- ``.tune-state/``: the last whole copy of Tune's experiment snapshot (``tune_state``);
- one folder per trial: its newest checkpoint (written by the trial, not Tune), samples,
  metrics and config.
Our files live in a subfolder because Tune's restore copies every top-level .json/.pkl of
the experiment folder to its staging folder and later syncs them back, which would
overwrite live files with the copies taken at restore time.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import ray
import torch
import yaml
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from gansweep.core.checkpoint import load_checkpoint, snapshot
from gansweep.core.config import transfer_config
from gansweep.core.data import load_folder
from gansweep.core.errors import DivergenceError, GansweepError
from gansweep.core.evaluate import (
    grid_path,
    reference_set,
    reference_stats,
    target_classifier,
)
from gansweep.core.losses import LOSSES
from gansweep.core.lpips import resolve_lpips_weights
from gansweep.core.metrics import (
    HIGHER_IS_BETTER,
    FeatureStats,
    fid,
    release_extractors,
    resolve_weights,
    worst_value,
)
from gansweep.core.models import unit_names
from gansweep.core.train import TrainState, final_summary, setup, train
from gansweep.sweep import tune_state
from gansweep.sweep.ranking import ScoreRule, rank_settings, score
from gansweep.sweep.reporter import SweepReporter
from gansweep.sweep.scheduler import RobustASHA
from gansweep.sweep.spec import SweepSpec, Trial, parse_spec, setting_key
from gansweep.sweep.state import (
    CONFIRM_DIR,
    CONFIRM_FILE,
    DONE,
    GRID_FILE,
    REFERENCES_FILE,
    RESULT_KEYS,
    RUNGS_FILE,
    SPEC_FILE,
    SweepState,
    atomic_write_text,
    default_storage,
    done_path,
    done_record,
    storage_error,
)
from gansweep.sweep.storage import Mirror, Pusher, is_uri, join, push_if_mirrored
from gansweep.sweep.trackers import TrialBoard, check_trackers, tune_callbacks

# --- the trial (runs in a Ray worker) ------------------------------------------------------

def _trial_config(config: dict[str, Any], out: str, device: str):
    trial, common = Trial(**config["trial"]), config["common"]
    overrides = {"loss": trial.loss} if trial.loss else {}
    return transfer_config(
        trial.source, trial.target, out, d=trial.d, g=trial.g, baseline=trial.baseline,
        plans=(trial.g_plan, trial.d_plan) if trial.g_plan is not None else None,
        conditional=trial.conditional,
        modulation=trial.modulation, freeze_d_depth=trial.freeze_d_depth,
        g_init=trial.g_init, d_init=trial.d_init, target_size=trial.target_size,
        augment=trial.augment, lr=trial.lr, seed=trial.seed,
        iters=common["iters"], eval_every=common["eval_every"],
        fid_samples=common["fid_samples"], batch_size=common["batch_size"],
        resolution=common["resolution"],
        fid_real=common["fid_real"], eval_at_start=common["eval_at_start"],
        lr_mult=common["lr_mult"], label_smoothing=common["label_smoothing"],
        label_noise=common["label_noise"], r1_gamma=common["r1_gamma"],
        path_length=common["path_length"],
        metrics=common["metrics"], iw_steps=common["iw_steps"],
        classifier_steps=common["classifier_steps"],
        classifier_negatives=common["classifier_negatives"], bn_stats=common["bn_stats"],
        inception_weights=common["inception_weights"], cache_dir=common["cache_dir"],
        lpips_weights=common["lpips_weights"],
        ema_kimg=common["ema_kimg"], ema_rampup=common["ema_rampup"],
        rung_fid_samples=common["rung_fid_samples"], rung_milestones=common["rung_milestones"],
        deterministic=common["deterministic"], device=device, **overrides)


ITERATION_FILE = "iteration.txt"


def _newest_checkpoint(trial_dir: Path) -> Path | None:
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


def trial_dirname(trial_id: str, label: str) -> str:
    """A trial's folder: its id and its label, in characters every filesystem takes."""
    return f"{trial_id}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', label).strip('_')}"


def trial_folder(sweep_dir: Path, trial_id: str, trial: Trial) -> Path:
    """Where a trial's files live on the storage (its phase's experiment folder)."""
    return _experiment(sweep_dir, trial.phase) / trial_dirname(trial_id, trial.label)


def trial_device() -> tuple[str, list[str]]:
    """What Ray gave this trial: its GPU if it holds one (Ray has set CUDA_VISIBLE_DEVICES
    to it), else the CPU; never a GPU Ray did not assign."""
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    return ("cuda" if gpu_ids and torch.cuda.is_available() else "cpu"), gpu_ids


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one transfer trial, reporting (with a lean checkpoint)
    at every evaluation. It writes its samples, config and metrics straight into its folder
    on the storage, once each. A diverged run reports FID = KID = inf and ends normally."""
    worker_start = time.time()
    trial_id = tune.get_context().get_trial_id()
    common = config["common"]
    sweep_dir = Path(common["sweep_dir"])
    folder = trial_folder(sweep_dir, trial_id, Trial(**config["trial"]))
    rel = folder.relative_to(sweep_dir).as_posix()
    mirror = Mirror(common["mirror"], sweep_dir) if common["mirror"] else None
    if mirror is not None:  # this node's copy of what the trial reads, from the bucket
        for shared in (done_path(trial_id), rel, "fid-stats", "classifiers"):
            mirror.pull(shared)
    done = done_record(sweep_dir, trial_id)
    if done is not None:
        # Tune's experiment snapshot can lag our record: after a driver crash it may
        # restart a trial that had already finished or been stopped. It stays done; its
        # last result is repeated because Tune requires the metric in a final result.
        tune.report({**done["last"], "iteration": done["iteration"], "already_done": 1})
        return
    torch.set_num_threads(max(1, int(common["cpus"])))
    device, gpu_ids = trial_device()
    cfg = _trial_config(config, str(folder), device)
    folder.mkdir(parents=True, exist_ok=True)
    state = setup(cfg, resume=_newest_checkpoint(folder))

    node_id = ray.get_runtime_context().get_node_id()
    metric, rule = common["metric"], ScoreRule(**common["score_rule"])
    # Costs outside training, for the Tune-overhead benchmark: when the worker began,
    # how long setup took, and the time spent in reports (checkpoint + tune.report).
    fixed = {"loss": cfg.loss, "lr": cfg.lr or LOSSES.get(cfg.loss).lr, "gpu_ids": gpu_ids,
             "lr_mult": json.dumps(cfg.lr_mult, sort_keys=True) if cfg.lr_mult else None,
             "label_smoothing": cfg.label_smoothing, "label_noise": cfg.label_noise,
             "new_units": ",".join(cfg.new_units) or None,
             **state.numerics, "worker_start": worker_start,
             "setup_s": time.time() - worker_start}
    report_s = 0.0
    board = TrialBoard(folder) if "tensorboard" in common["trackers"] else None

    def report(s: TrainState, record: dict[str, float]) -> None:
        nonlocal report_s
        t0 = time.perf_counter()
        if board is not None:
            board.add(record, grid_path(folder, s.iteration))
        value, sd = score(s.history, metric, rule)
        metrics = {**final_summary(s), **record, **fixed, "diverged": 0, "node_id": node_id,
                   "report_s": report_s, "score": value, "score_sd": sd}
        _save_checkpoint(s, folder)
        if mirror is not None:
            mirror.push(rel, prune="checkpoint_")
        tune.report(metrics)
        report_s += time.perf_counter() - t0

    try:
        train(cfg, callback=report, state=state, save=False)
    except DivergenceError as e:
        tune.report({**final_summary(state), **fixed, "iteration": e.iteration,
                     **{m: worst_value(m) for m in ("fid", "kid", *cfg.metrics)},
                     "score": worst_value(metric), "score_sd": None,
                     "diverged": 1, "error": str(e)})
    if board is not None:
        board.close()
    if mirror is not None:  # what the run wrote after its last report
        mirror.push(rel, prune="checkpoint_")



class Recorder(tune.Callback):
    """Records the trials from the driver into the sweep's logs (``sweep.state``): starts,
    results, ends, errors; compacts ``trials.json`` now and then and when the phase ends.
    ``gansweep status`` and the results read them without Ray. Also keeps a whole copy of
    Tune's own snapshot of the phase's experiment (``sweep.tune_state``)."""

    def __init__(self, sweep_dir: str, max_iters: int, experiment: str):
        self.sweep_dir, self.max_iters, self.experiment = sweep_dir, max_iters, experiment
        self._state: SweepState | None = None
        self._backed_up = 0.0
        self.push = Pusher(Path(sweep_dir))  # to the bucket, for a sweep on object storage

    @property
    def state(self) -> SweepState:
        if self._state is None:  # lazily, so a restored (unpickled) recorder reloads
            self._state = SweepState.load(Path(self.sweep_dir))
        return self._state

    def _done(self, trial) -> bool:
        rec = self.state.trials.get(trial.trial_id)
        return rec is not None and rec["status"] in DONE and rec["ended"] is not None

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if self._done(trial):  # restarted by a lagging Tune snapshot; returns at once
            return
        self.state.event("start", trial.trial_id, config=trial.config["trial"],
                         path=os.path.relpath(trial.path, self.sweep_dir))
        self.state.compact_if_due()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self._done(trial):  # the repeat of a done trial's result: not a new one
            return
        self.state.result(trial.trial_id, {k: result.get(k) for k in RESULT_KEYS})
        self.state.compact_if_due()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self._done(trial):
            return
        rec = self.state.trials[trial.trial_id]
        status = "diverged" if rec["status"] == "diverged" else \
            "finished" if rec["iteration"] >= self.max_iters else "stopped"
        self.state.event("end", trial.trial_id, status=status)
        self.state.mark_done(trial.trial_id)
        self.state.compact_if_due()
        self.push(force=True)  # a trial's end reaches the bucket at once

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.state.event("error", trial.trial_id, error=_error_text(trial))
        self.state.save()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.state.event("recover", trial.trial_id, error=_error_text(trial))
        self.state.compact_if_due()

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.monotonic() - self._backed_up >= tune_state.BACKUP_EVERY_S:
            self._backed_up = time.monotonic()
            tune_state.back_up(Path(self.experiment))
        self.push()

    def on_experiment_end(self, trials, **info) -> None:
        self.state.save()
        self.push(force=True)


def _error_text(trial) -> str | None:
    path = getattr(trial, "error_file", None)
    try:
        return Path(path).read_text()[-4000:] if path else None
    except OSError:
        return None


# --- launch / resume -------------------------------------------------------------------------

def _source_data(source: str) -> str | None:
    """The folder a source checkpoint was trained on, as its config recorded it (made
    absolute here: trials run in their own folders); None for an imported source."""
    data = load_checkpoint(source)["config"]["data"]
    return None if data is None else str(Path(data).resolve())


def _prepare(spec: SweepSpec, sweep_dir: Path) -> dict[str, Any]:
    """What every trial shares, made once before any trial starts, in the cache the trials
    read (their cache_dir is the sweep directory): each target's real-data statistics and,
    if asked for, its classifier. With several sources, also the FID between each source's
    training data and each target (Wang et al. Table 4). All recorded in
    ``REFERENCES_FILE``; returns the settings trials need.

    Where the trials use GPUs it runs as a Ray task holding a trial's resources (Ray
    accounts for the GPU it uses, and frees it); else in the driver, on the CPU. Either
    way nothing stays loaded afterwards: the driver must not hold Inception for the whole
    sweep, nor touch a GPU outside Ray's accounting."""
    if spec.resources.gpu > 0:
        task = ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)(
            _prepare_here)
        return ray.get(task.remote(spec, sweep_dir))
    return _prepare_here(spec, sweep_dir)


def _prepare_here(spec: SweepSpec, sweep_dir: Path) -> dict[str, Any]:
    device = torch.device(trial_device()[0] if ray.is_initialized() else "cpu")
    try:
        return _make_references(spec, sweep_dir, device)
    finally:
        release_extractors()


def _make_references(spec: SweepSpec, sweep_dir: Path, device: torch.device) -> dict[str, Any]:
    sources = [s for s in spec.sources if s is not None]
    negatives = spec.classifier_negatives
    if "classifier" in spec.metrics and negatives is None:
        negatives = _source_data(sources[0]) if sources else None
        if negatives is None:
            raise GansweepError("classifier_negatives: needed by the 'classifier' metric when "
                                "no source gives its training data")
    # Each source's data statistics once, whatever the number of targets.
    source_stats = {s: _source_stats(spec, sweep_dir, s, device) for s in sources} \
        if len(sources) > 1 else {}
    classifiers, gaps = [], []
    for target in spec.targets:
        images = load_folder(target, spec.arch.resolution, labelled=None)
        ref = reference_set(images, spec.budget.fid_real)
        real = reference_stats(ref, spec.inception_weights, str(sweep_dir), device,
                               spec.metrics)
        if negatives is not None:
            classifier = target_classifier(images, negatives, spec.classifier_steps,
                                           str(sweep_dir), device)
            classifiers.append({"target": target, "classes": classifier.classes,
                                "balanced_accuracy": classifier.accuracy})
        for source, (data, stats) in source_stats.items():
            row = {"source": source, "source_data": data, "target": target,
                   "source_target_fid": None if stats is None else fid(real, stats)}
            if stats is None:
                row["error"] = "the source records no training data (imported)" \
                    if data is None else \
                    f"the source's training data {data} is not on this machine"
            gaps.append(row)
    atomic_write_text(sweep_dir / REFERENCES_FILE, json.dumps(
        {"classifier_negatives": negatives, "classifiers": classifiers, "sources": gaps},
        indent=1))
    return {"classifier_negatives": negatives}


def _source_stats(spec: SweepSpec, sweep_dir: Path, source: str,
                  device: torch.device) -> tuple[str, FeatureStats | None]:
    """A source's training-data folder and its real-data statistics (None: not here)."""
    data = _source_data(source)
    if data is None or not Path(data).is_dir():
        return data, None
    ref = reference_set(load_folder(data, spec.arch.resolution), spec.budget.fid_real)
    return data, reference_stats(ref, spec.inception_weights, str(sweep_dir), device)


def _common(spec: SweepSpec, sweep_dir: Path, prepared: dict[str, Any],
            phase: str = "search") -> dict[str, Any]:
    mirror = Mirror.of_local(sweep_dir)
    rung = spec.scheduler.rung_fid_samples if phase == "search" else None
    return {**asdict(spec.budget), **asdict(spec.training), **prepared,
            "bn_stats": spec.bn_stats,
            "resolution": spec.arch.resolution if spec.arch else None,
            "metric": spec.metric, "score_rule": asdict(spec.scheduler.rule),
            "ema_kimg": spec.ema_kimg, "ema_rampup": spec.ema_rampup,
            "rung_fid_samples": rung,
            "rung_milestones": spec.scheduler.milestones(spec.budget.iters) if rung else [],
            "deterministic": spec.deterministic, "trackers": spec.trackers,
            "mirror": None if mirror is None else mirror.uri,
            "cpus": spec.resources.cpu, "metrics": spec.metrics, "iw_steps": spec.iw_steps,
            "classifier_steps": spec.classifier_steps,
            "inception_weights": resolve_weights(spec.inception_weights),
            "lpips_weights": resolve_lpips_weights(spec.lpips_weights)
            if "intra_lpips" in spec.metrics else None,
            "cache_dir": str(sweep_dir),  # trials read sweep_dir/fid-stats
            "sweep_dir": str(sweep_dir)}


def _trainable(spec: SweepSpec):
    return tune.with_resources(run_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def _scheduler(spec: SweepSpec, sweep_dir: Path) -> TrialScheduler:
    if spec.scheduler.type == "none":
        return FIFOScheduler()
    return asha(spec, str(sweep_dir / RUNGS_FILE))


def asha(spec: SweepSpec, rung_file: str | None) -> RobustASHA:
    """The spec's ASHA, deciding on the trials' ``score`` (sweep.ranking)."""
    return RobustASHA(rung_file, noise=spec.scheduler.noise, time_attr="iteration",
                      metric="score", mode="max" if spec.metric in HIGHER_IS_BETTER else "min",
                      max_t=spec.budget.iters, grace_period=spec.scheduler.grace_period,
                      reduction_factor=spec.scheduler.reduction_factor)


def _init_ray(address: str | None) -> None:
    # The classic progress reporting, which takes our reporter (sweep.reporter).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's default per-result loggers (JSON, CSV, TensorBoard files in every trial folder)
    # cost the driver time per result and duplicate our logs (sweep.state): off.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # ...which the Tuner's result grid then looks for, warning once per trial: we read
    # ours, not its grid.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
    else:
        ray.init(include_dashboard=False)


def launch(spec: SweepSpec, storage: str | None = None, address: str | None = None) -> Path:
    """Start a new sweep under ``STORAGE/NAME``; refuses a name that already holds one."""
    if spec.problems:
        raise GansweepError(spec.problems[0])
    storage = storage or default_storage()
    mirror = Mirror.of(join(storage, spec.name)) if is_uri(storage) else None
    sweep_dir = mirror.local if mirror else Path(storage).expanduser().resolve() / spec.name
    where = mirror.uri if mirror else sweep_dir
    exists = GansweepError(f"sweep {spec.name!r} already exists at {where}; resume it "
                           f"with 'gansweep resume {where}' or choose another --name")
    if mirror is not None:
        if mirror.exists():
            raise exists
        shutil.rmtree(sweep_dir, ignore_errors=True)  # a stale copy of a deleted sweep
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise exists
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SPEC_FILE).parent.mkdir()  # atomic: of two racing launches, one wins
    except FileExistsError:
        raise exists from None
    except OSError as e:
        raise storage_error(sweep_dir, e) from None
    if mirror is not None:
        mirror.claim()
    trials = spec.trials()
    atomic_write_text(sweep_dir / SPEC_FILE, yaml.safe_dump(spec.raw, sort_keys=False))
    g_units, d_units = unit_names(spec.arch)
    atomic_write_text(sweep_dir / GRID_FILE, json.dumps(
        {"arch": asdict(spec.arch), "units": {"G": g_units, "D": d_units},
         "trials": [t.to_dict() for t in trials], "tune_grid": TUNE_GRID}, indent=1))
    SweepState.create(sweep_dir, spec.name, len(trials), spec.budget.iters).save()
    push_if_mirrored(sweep_dir)
    _start(spec, trials, sweep_dir, address)
    return sweep_dir


def _start(spec: SweepSpec, trials: list[Trial], sweep_dir: Path, address: str | None) -> None:
    """Everything of a launch after the sweep directory is claimed and recorded; a launch
    that failed in here (no Inception weights, say) is started again by ``resume``."""
    resolve_weights(spec.inception_weights)  # before Ray starts: one line if missing
    check_trackers(spec.trackers)
    _init_ray(address)
    prepared = _prepare(spec, sweep_dir)
    push_if_mirrored(sweep_dir)  # the real-data statistics, for trials on other nodes
    _fit(_tuner(spec, trials, sweep_dir, prepared, "search"), sweep_dir)
    _confirmation(spec, sweep_dir, prepared, retry_errored=True)
    push_if_mirrored(sweep_dir)


TUNE_GRID = "index"  # recorded in GRID_FILE: what Tune's grid is over (see TrialList)


class TrialList:
    """The grid's trial settings. Tune's grid is over their indices and each trial's setting
    is looked up here: Tune deep-copies its search space once per trial it generates, so a
    grid over the settings themselves cost O(trials) per trial, O(trials^2) per sweep
    (14 s of the driver's time at 1,338 trials; 0.3 s this way). Tune resolves ``trial``
    (a ``sample_from``) when it adds the trial, after naming its directory."""

    def __init__(self, trials: list[dict[str, Any]]):
        self.trials = trials

    def __deepcopy__(self, memo: dict) -> TrialList:
        return self  # shared by every generated trial, never copied

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        return self.trials[config["index"]]


# The labels of the phase being run, for naming trial folders. Tune stores the naming
# function in every trial's saved state, so it must be a plain function, not one that
# carries the grid.
_labels: list[str] = []


def _trial_dirname(trial) -> str:
    return trial_dirname(trial.trial_id, _labels[trial.config["index"]])


def _experiment(sweep_dir: Path, phase: str) -> Path:
    """Where Tune keeps a phase's experiment: the sweep directory, or SWEEP/confirm."""
    return sweep_dir if phase == "search" else sweep_dir / CONFIRM_DIR


def _param_space(spec: SweepSpec, trials: list[Trial], sweep_dir: Path,
                 prepared: dict[str, Any], phase: str) -> dict[str, Any]:
    """A phase's search space: its grid as indices into a TrialList, and the settings every
    trial shares. Tune keeps no copy of the TrialList it can restore from (it saves a
    placeholder in its place), so a restore is given the same space again (``_restore``)."""
    _labels[:] = [t.label for t in trials]
    return {"index": tune.grid_search(list(range(len(trials)))),
            "trial": tune.sample_from(TrialList([t.to_dict() for t in trials])),
            "common": _common(spec, sweep_dir, prepared, phase)}


def _restore(spec: SweepSpec, trials: list[Trial], sweep_dir: Path, prepared: dict[str, Any],
             phase: str, retry_errored: bool) -> tune.Tuner:
    """The Tuner of an interrupted phase: finished trials stay finished, unfinished ones
    continue from their last checkpoint, errored ones are retried if ``retry_errored``."""
    return tune.Tuner.restore(str(_experiment(sweep_dir, phase)), trainable=_trainable(spec),
                              param_space=_param_space(spec, trials, sweep_dir, prepared, phase),
                              resume_unfinished=True, resume_errored=retry_errored,
                              restart_errored=False)


def _tuner(spec: SweepSpec, trials: list[Trial], sweep_dir: Path, prepared: dict[str, Any],
           phase: str) -> tune.Tuner:
    """The Tuner of one phase: the search (the grid, under the spec's scheduler, in the
    sweep directory itself) or the confirmation (every trial to the end, in SWEEP/confirm)."""
    experiment = _experiment(sweep_dir, phase)
    return tune.Tuner(
        _trainable(spec),
        param_space=_param_space(spec, trials, sweep_dir, prepared, phase),
        tune_config=tune.TuneConfig(
            scheduler=_scheduler(spec, sweep_dir) if phase == "search" else FIFOScheduler(),
            max_concurrent_trials=spec.max_concurrent or None,
            # A finished trial's worker runs the next one: no new process, imports, CUDA
            # context or Inception load per trial (benchmarks/RESULTS.md section 5).
            reuse_actors=True,
            trial_name_creator=_trial_dirname, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=experiment.name, storage_path=str(experiment.parent),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            # Checkpoints, samples and metrics go straight to the trial's folder
            # (_save_checkpoint): Tune tracks and syncs none of them.
            sync_config=tune.SyncConfig(sync_artifacts=False),
            progress_reporter=SweepReporter(spec.name, spec.metric,
                                            spec.metric in HIGHER_IS_BETTER),
            verbose=1,
            callbacks=[Recorder(str(sweep_dir), spec.budget.iters, str(experiment)),
                       *tune_callbacks(spec.trackers, spec.name, sweep_dir)]))


def confirmation_trials(spec: SweepSpec, state: SweepState) -> tuple[list[str], list[Trial]]:
    """The settings the confirmation phase reruns: the ``confirm.top`` best of the search
    (sweep.ranking.rank_settings) and every baseline; and their trials on the fresh seeds."""
    search = [r for r in state.trials.values() if r["config"].get("phase", "search") == "search"]
    ranked = [key for key, _, _ in rank_settings(search, spec.metric, setting_key)]
    settings = {setting_key(t.to_dict()): t for t in spec.trials()}
    chosen = ranked[:spec.confirm.top]
    chosen += [k for k, t in settings.items() if t.baseline is not None and k not in chosen]
    trials = [replace(settings[k], seed=seed, phase="confirm")
              for k in chosen for seed in spec.confirm.seeds]
    return [settings[k].label for k in chosen], trials


def _confirmation(spec: SweepSpec, sweep_dir: Path, prepared: dict[str, Any],
                  retry_errored: bool) -> None:
    """Run (or continue) the confirmation phase once the search has ended. The selection is
    written to CONFIRM_FILE before any confirmation trial starts, so a resume reruns the
    same settings."""
    if spec.confirm is None:
        return
    experiment = _experiment(sweep_dir, "confirm")
    tune_state.repair(experiment)
    path = sweep_dir / CONFIRM_FILE
    if path.is_file():
        trials = [Trial(**t) for t in json.loads(path.read_text())["trials"]]
    else:
        labels, trials = confirmation_trials(spec, SweepState.load(sweep_dir))
        atomic_write_text(path, json.dumps({"settings": labels,
                                            "trials": [t.to_dict() for t in trials]}, indent=1))
    if tune.Tuner.can_restore(str(experiment)):
        tuner = _restore(spec, trials, sweep_dir, prepared, "confirm", retry_errored)
    else:
        tuner = _tuner(spec, trials, sweep_dir, prepared, "confirm")
    _fit(tuner, sweep_dir)


STORAGE_ERRNOS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.ENOENT)


def _fit(tuner: tune.Tuner, sweep_dir: Path) -> None:
    """Run the Tuner; a storage failure (ours or Tune's) becomes one clear error."""
    try:
        tuner.fit()
    except OSError as e:
        if e.errno in STORAGE_ERRNOS and str(sweep_dir) in str(e.filename or ""):
            raise storage_error(sweep_dir, e) from None
        raise


def load_sweep_spec(sweep_dir: Path) -> SweepSpec:
    path = sweep_dir / SPEC_FILE
    if not path.is_file():
        raise GansweepError(f"{sweep_dir}: not a gansweep sweep directory (no {SPEC_FILE})")
    return parse_spec(yaml.safe_load(path.read_text()), sweep_dir, str(path),
                      read_sources=False)


def resume(sweep_dir: Path, address: str | None = None, retry_errored: bool = True) -> Path:
    """Continue a sweep: finished trials stay finished, unfinished ones continue from their
    last checkpoint, errored ones are retried unless ``retry_errored`` is False."""
    spec = load_sweep_spec(sweep_dir)
    tune_state.repair(sweep_dir)
    grid = json.loads((sweep_dir / GRID_FILE).read_text())
    trials = [Trial(**t) for t in grid["trials"]]
    if not tune.Tuner.can_restore(str(sweep_dir)):
        # The launch stopped before Tune started (no trial ran): start it now, on the grid
        # recorded at launch.
        _start(spec, trials, sweep_dir, address)
        return sweep_dir
    if grid.get("tune_grid") != TUNE_GRID:  # absent: launched before TrialList
        raise GansweepError(f"{sweep_dir} was launched by an earlier gansweep (its Tune grid is "
                            f"over the settings, not indices); resume it with that version, or "
                            f"report what it holds with 'gansweep report'")
    check_trackers(spec.trackers)
    _init_ray(address)
    references = json.loads((sweep_dir / REFERENCES_FILE).read_text())
    prepared = {"classifier_negatives": references["classifier_negatives"]}
    try:
        tuner = _restore(spec, trials, sweep_dir, prepared, "search", retry_errored)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("core", "sweep", "results"):
            raise
        # Tune pickled our scheduler and callbacks under gansweep 0.1's module names.
        raise GansweepError(f"{sweep_dir} was launched by gansweep 0.1 (modules 'core', "
                            f"'sweep', 'results'); resume it with gansweep 0.1, or report "
                            f"what it holds with 'gansweep report'") from None
    _fit(tuner, sweep_dir)
    _confirmation(spec, sweep_dir, prepared, retry_errored)
    push_if_mirrored(sweep_dir)
    return sweep_dir
