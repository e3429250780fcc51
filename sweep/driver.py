"""Launch and resume sweeps on Ray Tune: the driver.

A launch claims ``STORAGE/NAME``, records the spec, the grid and the trial template
(``GRID_FILE``), makes the references every trial compares against (``sweep.references``),
then runs the search (its grid, under the spec's scheduler) and, when the spec asks for one,
the confirmation phase, each a Tune experiment whose trials are ``sweep.worker.run_trial``.
The driver records everything as it happens (``sweep.recorder``). ``resume`` continues both
phases from what is on the storage.

Layout of a sweep directory (besides Ray Tune's own files): ``gansweep/`` holds our records
(``sweep.state``, ``sweep.specs.SPEC_FILE``), ``fid-stats/`` the real-data statistics,
``.tune-state/`` the last whole copy of Tune's snapshot (``sweep.tune_state``), and each trial
its own folder (its newest checkpoint, samples, metrics and config). Our files live in a
subfolder because Tune's restore copies every top-level .json/.pkl of the experiment folder
to its staging folder and later syncs them back, which would overwrite live files with the
copies taken at restore time.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from gansweep.core.errors import GansweepError
from gansweep.core.features import resolve_weights
from gansweep.core.lpips import alexnet_weights, resolve_lpips_weights
from gansweep.core.metrics import METRICS
from gansweep.core.models import unit_names
from gansweep.core.trial import Trial, TrialTemplate
from gansweep.sweep import tune_state
from gansweep.sweep.grid import confirmation_trials
from gansweep.sweep.ranking import rank_settings
from gansweep.sweep.recorder import Recorder
from gansweep.sweep.references import prepare
from gansweep.sweep.reporter import SweepReporter
from gansweep.sweep.scheduler import RobustASHA
from gansweep.sweep.schema import SEARCHES, SweepSpec
from gansweep.sweep.searcher import cell, structured_search
from gansweep.sweep.specs import SPEC_FILE, dump_spec, load_sweep_spec
from gansweep.sweep.state import (
    CONFIRM_FILE,
    GRID_FILE,
    REFERENCES_FILE,
    RUNGS_FILE,
    SweepState,
    atomic_write_text,
    default_storage,
    storage_error,
)
from gansweep.sweep.storage import Mirror, is_uri, join, push_if_mirrored
from gansweep.sweep.trackers import check_trackers
from gansweep.sweep.tracking import tune_callbacks
from gansweep.sweep.validate import check_name
from gansweep.sweep.worker import TrialContext, experiment_dir, run_trial, trial_dirname

# What GRID_FILE records, and so what a resume can continue: 3 = Tune's grid over cells
# "index:label" into the trial list, the trials' config made from the recorded template.
GRID_FORMAT = 3


def launch(spec: SweepSpec, storage: str | None = None, address: str | None = None) -> Path:
    """Start a new sweep under ``STORAGE/NAME``; refuses a name that already holds one."""
    if spec.problems:
        raise GansweepError(spec.problems[0])
    check_name(spec.name)
    storage = storage or default_storage()
    mirror = Mirror.of(join(storage, spec.name)) if is_uri(storage) else None
    sweep_dir = mirror.local if mirror else Path(storage).expanduser().resolve() / spec.name
    where = mirror.uri if mirror else sweep_dir
    exists = GansweepError(f"sweep {spec.name!r} already exists at {where}; resume it "
                           f"with 'gansweep resume {where}' or choose another --name")
    if mirror is not None:
        if mirror.exists():
            raise exists
        mirror.discard_local()  # a stale copy of a deleted sweep
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
    atomic_write_text(sweep_dir / SPEC_FILE, dump_spec(spec))
    g_units, d_units = unit_names(spec.arch)
    atomic_write_text(sweep_dir / GRID_FILE, json.dumps(
        {"format": GRID_FORMAT, "arch": spec.arch.to_dict(), "units": {"G": g_units, "D": d_units},
         "trials": [t.to_dict() for t in trials], "template": spec.template.to_dict()},
        indent=1))
    SweepState.create(sweep_dir, spec.name, len(trials), spec.budget.iters).save()
    push_if_mirrored(sweep_dir)
    _start(spec, spec.template, trials, sweep_dir, address)
    return sweep_dir


def resume(sweep_dir: Path, address: str | None = None, retry_errored: bool = True) -> Path:
    """Continue a sweep: finished trials stay finished, unfinished ones continue from their
    last checkpoint, errored ones are retried unless ``retry_errored`` is False."""
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
    if not tune.Tuner.can_restore(str(sweep_dir)):
        # The launch stopped before Tune started (no trial ran): start it now, on the grid
        # recorded at launch.
        _start(spec, template, trials, sweep_dir, address)
        return sweep_dir
    check_trackers(spec.trackers)
    _init_ray(address)
    negatives = json.loads((sweep_dir / REFERENCES_FILE).read_text())["classifier_negatives"]
    template = _for_this_run(spec, template, sweep_dir, negatives)
    _fit(_restore(spec, template, trials, sweep_dir, "search", retry_errored), sweep_dir)
    _confirmation(spec, template, sweep_dir, retry_errored)
    push_if_mirrored(sweep_dir)
    return sweep_dir


def _start(spec: SweepSpec, template: TrialTemplate, trials: list[Trial], sweep_dir: Path,
           address: str | None) -> None:
    """Everything of a launch after the sweep directory is claimed and recorded; a launch
    that failed in here (no Inception weights, say) is started again by ``resume``."""
    resolve_weights(spec.inception_weights)  # before Ray starts: one line if missing
    check_trackers(spec.trackers)
    _init_ray(address)
    template = _for_this_run(spec, template, sweep_dir, None)
    negatives = prepare(spec, template, sweep_dir)
    template = template.with_options(classifier_negatives=negatives)
    push_if_mirrored(sweep_dir)  # the real-data statistics, for trials on other nodes
    _fit(_tuner(spec, template, trials, sweep_dir, "search"), sweep_dir)
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


# --- Ray ---------------------------------------------------------------------------------------

def _init_ray(address: str | None) -> None:
    """Start a local Ray, or join the cluster at ``address``; a cluster that cannot be
    reached or refuses this driver's token is one line naming the likely cause."""
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
    if not address:
        ray.init(include_dashboard=False)
        return
    _check_reachable(address)
    try:
        with _stderr_held():
            ray.init(address=address)
    except (ray.exceptions.AuthenticationError, ConnectionError) as e:
        mode = os.environ.get("RAY_AUTH_MODE", "unset")
        raise GansweepError(
            f"--address {address}: the Ray cluster there did not accept this driver "
            f"({_first(e)}); the likely cause is token authentication: a cluster started with "
            f"a token (Ray does so where ~/.ray/auth_token exists) needs RAY_AUTH_MODE=token "
            f"(here: {mode}) and the head's token on this machine too (~/.ray/auth_token, "
            f"RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN); see the README, 'Running on a "
            f"cluster'") from None


@contextlib.contextmanager
def _stderr_held() -> Iterator[None]:
    """Hold what is written to file descriptor 2 (Ray's C++ logs too) and pass it on only if
    the block succeeds: a refused connection is our one line, not Ray's logged retries."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        os.write(2, held.read())


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A TCP connection to a ``HOST:PORT`` address (Ray itself retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # 'auto', or a scheme Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise GansweepError(f"--address {address}: nothing answers there ({e.strerror or e}); "
                            f"is 'ray start --head --port={port}' running on {host}, and is the "
                            f"port open to this machine?") from None


def asha(spec: SweepSpec, rung_file: str | None) -> RobustASHA:
    """The spec's ASHA, deciding on the trials' ``score`` (sweep.ranking)."""
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
        return self.trials[int(config["cell"].split(":", 1)[0])]


def _trial_dirname(trial) -> str:
    # A plain function of the trial: Tune pickles it into every trial's saved state.
    return trial_dirname(trial.trial_id, trial.config["cell"].split(":", 1)[1])


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
    return {"cell": tune.grid_search([cell(t) for t in trials]),
            "trial": tune.sample_from(TrialList([t.to_dict() for t in trials])), **shared}


def _structured(spec: SweepSpec, phase: str) -> bool:
    """Whether the phase's trials are chosen by the structured search (``sweep.searcher``)
    rather than Tune's grid; the confirmation always runs its whole list."""
    return phase == "search" and SEARCHES.get(spec.search.type).chooses


def _search_options(spec: SweepSpec, trials: list[Trial], sweep_dir: Path,
                    phase: str) -> dict[str, Any]:
    """The TuneConfig fields that say which trials run: Tune's grid (every one, at most
    ``max_concurrent`` at a time), or the structured searcher, which caps them itself."""
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
    experiment = experiment_dir(sweep_dir, phase)
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
            # (sweep.worker): Tune tracks and syncs none of them.
            sync_config=tune.SyncConfig(sync_artifacts=False),
            progress_reporter=SweepReporter(spec),
            verbose=1,
            callbacks=[Recorder(str(sweep_dir), spec.budget.iters, str(experiment)),
                       *tune_callbacks(spec.trackers, spec.name, sweep_dir)]))


def _restore(spec: SweepSpec, template: TrialTemplate, trials: list[Trial], sweep_dir: Path,
             phase: str, retry_errored: bool) -> tune.Tuner:
    """The Tuner of an interrupted phase: finished trials stay finished, unfinished ones
    continue from their last checkpoint, errored ones are retried if ``retry_errored``."""
    return tune.Tuner.restore(
        str(experiment_dir(sweep_dir, phase)), trainable=_trainable(spec),
        param_space=_param_space(spec, template, trials, sweep_dir, phase),
        resume_unfinished=True, resume_errored=retry_errored, restart_errored=False)


def _confirmation(spec: SweepSpec, template: TrialTemplate, sweep_dir: Path,
                  retry_errored: bool) -> None:
    """Run (or continue) the confirmation phase once the search has ended. The selection is
    written to CONFIRM_FILE before any confirmation trial starts, so a resume reruns the
    same settings."""
    if spec.confirm is None:
        return
    experiment = experiment_dir(sweep_dir, "confirm")
    tune_state.repair(experiment)
    path = sweep_dir / CONFIRM_FILE
    if path.is_file():
        trials = [Trial.from_dict(t) for t in json.loads(path.read_text())["trials"]]
    else:
        search = [r for r in SweepState.load(sweep_dir).trials.values()
                  if r["config"]["phase"] == "search"]
        ranked = [key for key, _, _ in rank_settings(search, spec.metric)]
        names, trials = confirmation_trials(spec, ranked)
        atomic_write_text(path, json.dumps({"settings": names,
                                            "trials": [t.to_dict() for t in trials]}, indent=1))
    if tune.Tuner.can_restore(str(experiment)):
        tuner = _restore(spec, template, trials, sweep_dir, "confirm", retry_errored)
    else:
        tuner = _tuner(spec, template, trials, sweep_dir, "confirm")
    _fit(tuner, sweep_dir)


STORAGE_ERRNOS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.ENOENT)


def _fit(tuner: tune.Tuner, sweep_dir: Path) -> None:
    """Run the Tuner; a storage failure (ours or Tune's) or a state Tune cannot restore
    (``sweep.tune_state.no_fresh_start``) becomes one clear error."""
    try:
        with tune_state.no_fresh_start(sweep_dir):
            tuner.fit()
    except OSError as e:
        if e.errno in STORAGE_ERRNOS and str(sweep_dir) in str(e.filename or ""):
            raise storage_error(sweep_dir, e) from None
        raise
