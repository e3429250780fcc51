"""Launch and resume sweeps on Ray Tune: the driver.

A launch claims ``STORAGE/NAME``, records the spec, the grid and the trial template
(``GRID_FILE``), makes the references every trial compares against (``sweep.run.references``),
then runs the search (its grid, under the spec's scheduler) and, when the spec asks for one,
the confirmation phase, each a Tune experiment whose trials are ``sweep.run.worker.run_trial``.
The driver records everything as it happens (``sweep.run.recorder``). ``resume`` continues both
phases from what is on the storage.

Layout of a sweep directory (besides Ray Tune's own files): ``gansweep/`` holds our records
(``sweep.record.state``, ``sweep.spec.files.SPEC_FILE``), ``fid-stats/`` the real-data statistics,
``.tune-state/`` the last whole copy of Tune's snapshot (``sweep.run.tune_state``), and each trial
its own folder (its newest checkpoint, samples, metrics and config). Our files live in a
subfolder because Tune's restore copies every top-level .json/.pkl of the experiment folder
to its staging folder and later syncs them back, which would overwrite live files with the
copies taken at restore time.
"""
from __future__ import annotations

import contextlib
import errno
import json
import shutil
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from gansweep.core.errors import GansweepError
from gansweep.core.features import check_weights, resolve_weights
from gansweep.core.lpips import alexnet_weights, resolve_lpips_weights
from gansweep.core.metrics import METRICS
from gansweep.core.models import unit_names
from gansweep.core.trial import Trial, TrialTemplate
from gansweep.sweep.record import layout
from gansweep.sweep.record.state import (
    CONFIRM_FILE,
    EVENTS_FILE,
    GRID_FILE,
    REFERENCES_FILE,
    RUNGS_FILE,
    TRIALS_FILE,
    SweepState,
    atomic_write_text,
    check_storage,
    completed,
    default_storage,
    storage_error,
    where,
)
from gansweep.sweep.record.storage import Mirror, is_uri, join, push_if_mirrored
from gansweep.sweep.run import interrupts, moved, tune_internals, tune_state
from gansweep.sweep.run.ray_connect import check_reachable, init_ray
from gansweep.sweep.run.recorder import Recorder
from gansweep.sweep.run.references import prepare
from gansweep.sweep.run.reporter import SweepReporter
from gansweep.sweep.run.scheduler import RobustASHA
from gansweep.sweep.run.searcher import structured_search
from gansweep.sweep.run.tracking import tune_callbacks
from gansweep.sweep.run.worker import TrialContext, run_trial
from gansweep.sweep.spec.files import SPEC_FILE, dump_spec, load_sweep_spec
from gansweep.sweep.spec.grid import confirmation_trials
from gansweep.sweep.spec.ranking import rank_settings
from gansweep.sweep.spec.schema import SEARCHES, SweepSpec
from gansweep.sweep.spec.trackers import check_trackers
from gansweep.sweep.spec.validate import check_name

# What GRID_FILE records, and so what a resume can continue: 3 = Tune's grid over cells
# "index:label" into the trial list, the trials' config made from the recorded template.
GRID_FORMAT = 3


def launch(spec: SweepSpec, storage: str | None = None, address: str | None = None) -> Path:
    """Start a new sweep under ``STORAGE/NAME``; refuses a name that already holds one.
    What can refuse a launch is checked before the folder is claimed, and a launch refused
    after it (before any trial started) removes it: a refusal leaves nothing behind."""
    if spec.problems:
        raise GansweepError(spec.problems[0])
    check_name(spec.name)
    storage = storage or default_storage()
    mirror = Mirror.of(join(storage, spec.name)) if is_uri(storage) else None
    if mirror is None:
        check_storage(storage)
    sweep_dir = mirror.local if mirror else Path(storage).expanduser().resolve() / spec.name
    shown = mirror.uri if mirror else sweep_dir
    exists = GansweepError(f"sweep {spec.name!r} already exists at {shown}; resume it "
                           f"with 'gansweep resume {shown}' or choose another --name")
    if mirror is not None:
        if mirror.exists():
            raise exists
    if sweep_dir.exists() and any(sweep_dir.iterdir()) and mirror is None:
        if not (sweep_dir / TRIALS_FILE).is_file():
            raise GansweepError(f"{sweep_dir} is in the way: a folder that holds no sweep; "
                                f"remove it or choose another --name")
        raise exists
    _preflight(spec, address)
    if mirror is not None:
        mirror.discard_local()  # a stale copy of a deleted sweep
    existed = sweep_dir.is_dir()
    made = [p for p in (sweep_dir.parent, *sweep_dir.parent.parents) if not p.exists()]
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SPEC_FILE).parent.mkdir()  # atomic: of two racing launches, one wins
    except FileExistsError:
        raise exists from None
    except OSError as e:
        raise GansweepError(f"--storage {storage}: cannot create the sweep folder {sweep_dir}: "
                            f"{e.strerror or e}") from None
    try:
        if mirror is not None:
            mirror.claim()
        with interrupts.catching(sweep_dir, str(shown)):
            trials = spec.trials()
            atomic_write_text(sweep_dir / SPEC_FILE, dump_spec(spec))
            g_units, d_units = unit_names(spec.arch)
            atomic_write_text(sweep_dir / GRID_FILE, json.dumps(
                {"format": GRID_FORMAT, "arch": spec.arch.to_dict(),
                 "units": {"G": g_units, "D": d_units}, "trials": [t.to_dict() for t in trials],
                 "template": spec.template.to_dict()}, indent=1))
            SweepState.create(sweep_dir, spec.name, len(trials), spec.budget.iters).save()
            _start(spec, spec.template, trials, sweep_dir, address)
    except GansweepError:
        if not _any_trial_started(sweep_dir):
            _discard(sweep_dir, mirror, existed, made)
        raise
    return sweep_dir


def _preflight(spec: SweepSpec, address: str | None) -> None:
    """What can refuse a launch, checked before its folder is claimed: the weights files,
    the trackers' packages, the cluster's address, and a Ray whose Tune lacks what
    gansweep uses of it (tune_state's snapshot files, at least, in every sweep)."""
    tune_internals.require()
    check_weights(spec.inception_weights)
    if "intra_lpips" in spec.metrics:
        resolve_lpips_weights(spec.lpips_weights)
    check_trackers(spec.trackers)
    if address and not ray.is_initialized():
        check_reachable(address)


def _any_trial_started(sweep_dir: Path) -> bool:
    return (sweep_dir / EVENTS_FILE).is_file() or tune.Tuner.can_restore(str(sweep_dir))


def _discard(sweep_dir: Path, mirror: Mirror | None, existed: bool, made: list[Path]) -> None:
    """Remove what a refused launch wrote, the storage folders it made included (its bucket
    got nothing: the first push comes after the references are made)."""
    if mirror is not None:
        mirror.discard_local()
        return
    shutil.rmtree(sweep_dir, ignore_errors=True)
    if existed:  # the user's own empty folder stays
        sweep_dir.mkdir(exist_ok=True)
    for folder in made:  # innermost first; one another launch has filled since stays
        with contextlib.suppress(OSError):
            folder.rmdir()


def resume(sweep_dir: Path, address: str | None = None, retry_errored: bool = True) -> Path:
    """Continue a sweep: finished trials stay finished, unfinished ones continue from their
    last checkpoint, errored ones are retried unless ``retry_errored`` is False."""
    tune_internals.require()
    moved.install()  # before anything unpickles Tune's files (tune_state.repair checks them)
    spec = load_sweep_spec(sweep_dir)
    grid = json.loads((sweep_dir / GRID_FILE).read_text())
    if grid.get("format") != GRID_FORMAT:
        raise GansweepError(f"{sweep_dir} was launched by an earlier gansweep (its grid file "
                            f"has format {grid.get('format', 'of 0.1 or 0.2')}, this version "
                            f"resumes {GRID_FORMAT}); resume it with that version, or report "
                            f"what it holds with 'gansweep report'")
    tune_state.repair(sweep_dir)
    template = TrialTemplate.from_dict(grid["template"])
    trials = [Trial.from_dict(t) for t in grid["trials"]]
    with interrupts.catching(sweep_dir, where(sweep_dir)):
        if not tune.Tuner.can_restore(str(sweep_dir)):
            # The launch stopped before Tune started (no trial ran): start it now, on the
            # grid recorded at launch.
            _start(spec, template, trials, sweep_dir, address)
            return sweep_dir
        check_trackers(spec.trackers)
        init_ray(address)
        negatives = json.loads((sweep_dir / REFERENCES_FILE).read_text())[
            "classifier_negatives"]
        template = _for_this_run(spec, template, sweep_dir, negatives)
        _fit(_restore(spec, template, trials, sweep_dir, "search", retry_errored), sweep_dir,
             "search")
        _confirmation(spec, template, sweep_dir, retry_errored)
        push_if_mirrored(sweep_dir)
    return sweep_dir


def _start(spec: SweepSpec, template: TrialTemplate, trials: list[Trial], sweep_dir: Path,
           address: str | None) -> None:
    """Everything of a launch after the sweep directory is claimed and recorded; a launch
    killed in here is started again by ``resume``."""
    resolve_weights(spec.inception_weights)  # before Ray starts: one line if missing
    check_trackers(spec.trackers)
    init_ray(address)
    template = _for_this_run(spec, template, sweep_dir, None)
    negatives = prepare(spec, template, sweep_dir)
    template = template.with_options(classifier_negatives=negatives)
    interrupts.check()
    # The records and the real-data statistics, for trials on other nodes (the bucket's
    # first copy of the sweep).
    push_if_mirrored(sweep_dir)
    _fit(_tuner(spec, template, trials, sweep_dir, "search"), sweep_dir, "search")
    _confirmation(spec, template, sweep_dir, retry_errored=True)
    push_if_mirrored(sweep_dir)


def _for_this_run(spec: SweepSpec, template: TrialTemplate, sweep_dir: Path,
                  negatives: str | None) -> TrialTemplate:
    """The recorded template with what depends on this machine and run: the weights files
    (absolute: trials run in their own folders, and a worker node has no copy of the
    driver's environment), the sweep's cache, the classifier's negatives."""
    return template.with_options(
        inception_weights=resolve_weights(spec.inception_weights),
        # no file: torchvision's AlexNet, fetched into the torch hub cache before any trial
        lpips_weights=(resolve_lpips_weights(spec.lpips_weights) or alexnet_weights())
        if "intra_lpips" in spec.metrics else None,
        cache_dir=str(sweep_dir), classifier_negatives=negatives)


def asha(spec: SweepSpec, rung_file: str | None) -> RobustASHA:
    """The spec's ASHA, deciding on the trials' ``score`` (sweep.spec.ranking)."""
    return RobustASHA(rung_file, noise=spec.scheduler.noise, time_attr="iteration",
                      metric="score", mode=METRICS.get(spec.metric).mode,
                      max_t=spec.budget.iters, grace_period=spec.scheduler.grace_period,
                      reduction_factor=spec.scheduler.reduction_factor)


def _scheduler(spec: SweepSpec, sweep_dir: Path, phase: str) -> TrialScheduler:
    if phase == "confirm" or spec.scheduler.type == "none":
        return FIFOScheduler()
    return asha(spec, str(sweep_dir / RUNGS_FILE))


class TrialList:
    """The grid's trials. Tune's grid is over their cells, ``"index:label"`` strings, and
    each trial's settings are looked up here: Tune deep-copies its search space once per
    trial it generates, so a grid over the settings themselves cost O(trials) per trial,
    O(trials^2) per sweep (14 s of the driver's time at 1,338 trials; 0.3 s this way), and
    strings are not copied. Tune resolves ``trial`` (a ``sample_from``) when it adds the
    trial, after naming its folder from the cell."""

    def __init__(self, trials: list[dict[str, Any]]):
        self.trials = trials

    def __deepcopy__(self, memo: dict) -> TrialList:
        return self  # shared by every generated trial, never copied

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        return self.trials[layout.parse_cell(config["cell"])[0]]


def _trial_dirname(trial) -> str:
    """A trial's name and folder: its cell (a lost trial run again under a new id finds its
    files), or a 0.3.0 cell's old one (``key``). Tune pickles it into every trial's state."""
    key = trial.config.get("key")
    if key:
        return layout.legacy_dirname(key, layout.parse_cell(trial.config["cell"])[1])
    return layout.cell_dirname(trial.config["cell"])


def _param_space(spec: SweepSpec, template: TrialTemplate, trials: list[Trial],
                 sweep_dir: Path, phase: str) -> dict[str, Any]:
    """A phase's search space: its grid of cells into a TrialList, and what every trial
    shares (the template; the confirmation measures no rung FID). Tune keeps no copy of the
    TrialList it can restore from (it saves a placeholder), so a restore is given the same
    space again (``_restore``)."""
    if phase == "confirm":
        template = template.with_options(rung_fid_samples=None, rung_milestones=[])
    mirror = Mirror.of_local(sweep_dir)
    context = TrialContext(str(sweep_dir), None if mirror is None else mirror.uri, spec.metric,
                           spec.scheduler.rule, tuple(spec.trackers), spec.resources.cpu)
    shared = {"template": template.to_dict(), "context": context.to_dict()}
    if _structured(spec, phase):  # the searcher gives each trial's cell and settings
        return shared
    return {"cell": tune.grid_search([layout.cell(t) for t in trials]),
            "trial": tune.sample_from(TrialList([t.to_dict() for t in trials])), **shared}


def _structured(spec: SweepSpec, phase: str) -> bool:
    """Whether the phase's trials are chosen by the structured search (``sweep.run.searcher``)
    rather than Tune's grid; the confirmation always runs its whole list."""
    return phase == "search" and SEARCHES.get(spec.search.type).chooses


def _search_options(spec: SweepSpec, trials: list[Trial], sweep_dir: Path,
                    phase: str) -> dict[str, Any]:
    """The TuneConfig fields that say which trials run: Tune's grid (every one, at most
    ``max_concurrent`` at a time), or the structured searcher (capping them itself)."""
    if not _structured(spec, phase):
        return {"max_concurrent_trials": spec.max_concurrent or None}
    return {"search_alg": structured_search(sweep_dir, trials, spec.search, spec.metric,
                                            spec.budget.iters, spec.max_concurrent),
            "num_samples": -1}


def _trainable(spec: SweepSpec):
    return tune.with_resources(run_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def _tuner(spec: SweepSpec, template: TrialTemplate, trials: list[Trial], sweep_dir: Path,
           phase: str) -> tune.Tuner:
    """The Tuner of one phase: the search (the grid, under the spec's scheduler, in the
    sweep directory itself) or the confirmation (every trial to the end, in SWEEP/confirm)."""
    experiment = layout.experiment_dir(sweep_dir, phase)
    return tune.Tuner(
        _trainable(spec),
        param_space=_param_space(spec, template, trials, sweep_dir, phase),
        tune_config=tune.TuneConfig(
            scheduler=_scheduler(spec, sweep_dir, phase),
            **_search_options(spec, trials, sweep_dir, phase),
            # A finished trial's worker runs the next one: no new process, imports, CUDA
            # context or Inception load per trial (benchmarks/RESULTS.md section 5).
            reuse_actors=True,
            trial_name_creator=_trial_dirname, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=experiment.name, storage_path=str(experiment.parent),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            # Checkpoints, samples and metrics go straight to the trial's folder
            # (sweep.run.worker): Tune tracks and syncs none of them.
            sync_config=tune.SyncConfig(sync_artifacts=False),
            progress_reporter=SweepReporter(spec),
            verbose=1,
            callbacks=[Recorder(str(sweep_dir), spec.budget.iters, str(experiment)),
                       *tune_callbacks(spec.trackers, spec.name, sweep_dir)]))


def _restore(spec: SweepSpec, template: TrialTemplate, trials: list[Trial], sweep_dir: Path,
             phase: str, retry_errored: bool) -> tune.Tuner:
    """The Tuner of an interrupted phase: finished trials stay finished, unfinished ones
    continue from their last checkpoint, errored ones are retried if ``retry_errored``."""
    moved.install()  # a sweep of 0.3.0 pickled its objects under their old module paths
    return tune.Tuner.restore(
        str(layout.experiment_dir(sweep_dir, phase)), trainable=_trainable(spec),
        param_space=_param_space(spec, template, trials, sweep_dir, phase),
        resume_unfinished=True, resume_errored=retry_errored, restart_errored=False)


def _confirmation(spec: SweepSpec, template: TrialTemplate, sweep_dir: Path,
                  retry_errored: bool) -> None:
    """Run (or continue) the confirmation phase once the search has ended. The selection is
    written to CONFIRM_FILE before any confirmation trial starts, so a resume reruns the
    same settings."""
    from gansweep.sweep.searchers.confirm import to_confirm

    if not spec.confirms:
        return
    experiment = layout.experiment_dir(sweep_dir, "confirm")
    tune_state.repair(experiment)
    path = sweep_dir / CONFIRM_FILE
    if path.is_file():
        trials = [Trial.from_dict(t) for t in json.loads(path.read_text())["trials"]]
    else:
        search = [r for r in SweepState.load(sweep_dir).trials.values()
                  if r["config"]["phase"] == "search"]
        if spec.confirm is None:  # the structured search's own: its candidates, its rule
            grid = [Trial.from_dict(t) for t in
                    json.loads((sweep_dir / GRID_FILE).read_text())["trials"]]
            ranked = to_confirm(grid, spec.search, METRICS.get(spec.metric).loss, {
                r["config"]["index"]: r["last"]["score"] if completed(r, spec.budget.iters)
                else None for r in search})
            if not ranked:  # no search trial ran to the end: nothing to confirm
                return
        else:
            ranked = [key for key, _, _ in rank_settings(search, spec.metric)]
        names, trials = confirmation_trials(spec, ranked)
        atomic_write_text(path, json.dumps({"settings": names,
                                            "trials": [t.to_dict() for t in trials]}, indent=1))
    if tune.Tuner.can_restore(str(experiment)):
        tuner = _restore(spec, template, trials, sweep_dir, "confirm", retry_errored)
    else:
        tuner = _tuner(spec, template, trials, sweep_dir, "confirm")
    _fit(tuner, sweep_dir, "confirmation")


STORAGE_ERRNOS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.ENOENT)


def _fit(tuner: tune.Tuner, sweep_dir: Path, phase: str = "search") -> None:
    """Run the Tuner of a phase; a storage failure (ours or Tune's) or a state Tune cannot
    restore (``sweep.run.tune_state.no_fresh_start``) becomes one clear error, a signal ends the
    phase and starts no other (``sweep.run.interrupts``)."""
    try:
        with tune_state.no_fresh_start(sweep_dir), interrupts.phase(phase):
            tuner.fit()
    except OSError as e:
        if e.errno in STORAGE_ERRNOS and str(sweep_dir) in str(e.filename or ""):
            raise storage_error(sweep_dir, e) from None
        raise
