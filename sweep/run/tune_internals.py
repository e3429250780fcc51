"""The Ray Tune internals gansweep relies on, in one place, each with the check that it is
still there and still what gansweep expects: no other gansweep module imports a private
name of Ray, names one of Tune's private methods or fields, or overrides one
(tests/test_ray_internals.py plants such a module to show the rule is enforced).

What Tune has no public hook for: ASHA's rung decision with a margin and its rungs
persisted (``sweep.run.scheduler``: ``_Bracket``, its ``_rungs``, the scheduler's
``_brackets``, ``_trial_info``, ...), and Tune's snapshot files and its log line on a failed
restore (``sweep.run.tune_state`` and ``sweep.run.searcher``, which reads which trials a
snapshot holds). The structured searcher is a plain ``ray.tune.search.Searcher``, trial
folders are named through ``TuneConfig``'s name creators: both public API. pyproject bounds
``ray[tune]`` to the releases the suite passes on (``RAY_RANGE``); ``problems()`` is what a
Ray outside them changed, one line each (tests/test_ray_internals.py, in seconds, without
starting Ray), and ``require()`` stops a sweep or a replay before it starts on such a Ray
instead of failing mid-sweep.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import io
import json
import textwrap
import tokenize
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

try:
    from ray.tune.schedulers.async_hyperband import _Bracket
except ImportError:  # a Ray without it: problems() says so, and require() stops a sweep
    _Bracket = object

from gansweep.core.errors import GansweepError

RAY_RANGE = ">=2.40,<2.61"  # pyproject.toml's ray[tune]: the releases this adapter is checked on

# Tune's files in an experiment folder (sweep.run.tune_state): its snapshot, and beside it
# its search algorithm's state of the same session (the grid's, the SearchGenerator's, the
# searcher's own). Tune's controller logs RESTORE_FAILED when it gives up on a restore.
SNAPSHOT_PATTERN = "experiment_state-*.json"
SEARCHER_FILES = ("basic-variant-state-{}.json", "search_gen_state-{}.json",
                  "searcher-state-{}.pkl")
RESTORE_LOGGER = "ray.tune.execution.tune_controller"
RESTORE_FAILED = "Failed to restore the run state."
# Loggers of Tune's modules that gansweep quiets: the one that tells an interrupted user to
# resume with Tune's Python API (sweep.run.interrupts says how with ours), and the result
# grid's, which warns once per trial about the per-result files gansweep turns off.
RESUME_HINT_LOGGER = "ray.tune.tune"
ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"


def snapshot_trial_ids(snapshot: Path) -> set[str]:
    """The ids of the trials a snapshot of Tune holds (what Tune restores from it)."""
    return {json.loads(state)["trial_id"]
            for state, _ in json.loads(snapshot.read_bytes())["trial_data"]}


# --- ASHA ---------------------------------------------------------------------------------

class NoisyBracket(_Bracket):
    """Ray's bracket, deciding with a margin: ``on_result`` below is Ray's loop with
    ``cur_rew < cutoff`` replaced by ``cur_rew < cutoff - margin`` (its digest: ``COPIED``)."""

    def on_result(self, trial, cur_iter: int, cur_rew: float | None,
                  margin: float = 0.0) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self._rungs:
            if cur_iter >= milestone and trial.trial_id in recorded and \
                    not self._stop_last_trials:
                break
            if cur_iter < milestone or trial.trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if cutoff is not None and cur_rew is not None and cur_rew < cutoff - margin:
                action = TrialScheduler.STOP
            if cur_rew is not None:
                recorded[trial.trial_id] = cur_rew
            break
        return action


def make_noisy(asha: ASHAScheduler) -> None:
    """Give an ASHA scheduler's brackets the margin (``NoisyBracket``)."""
    for b in asha._brackets:
        b.__class__ = NoisyBracket


def rungs(asha: ASHAScheduler) -> list[list[tuple[int, dict[str, float]]]]:
    """Each bracket's rungs, (milestone, {trial id: score recorded there}), the live ones."""
    return [b._rungs for b in asha._brackets]


def num_stopped(asha: ASHAScheduler) -> int:
    return asha._num_stopped


def set_num_stopped(asha: ASHAScheduler, n: int) -> None:
    asha._num_stopped = n


def decide(asha: ASHAScheduler, trial, result: dict, margin: float) -> str:
    """ASHA's ``on_trial_result`` with the bracket's margin: CONTINUE or STOP."""
    if asha._time_attr not in result or asha._metric not in result:
        return TrialScheduler.CONTINUE
    if result[asha._time_attr] >= asha._max_t and asha._stop_last_trials:
        action = TrialScheduler.STOP
    else:
        action = asha._trial_info[trial.trial_id].on_result(
            trial, result[asha._time_attr], asha._metric_op * result[asha._metric], margin)
    if action == TrialScheduler.STOP:
        asha._num_stopped += 1
    return action


# --- MLflow's callback (sweep.run.mlflow_tracker) ------------------------------------------

def mlflow_runs(callback) -> dict:
    """Ray's MLflowLoggerCallback's runs by trial (set by its ``setup``)."""
    require("MLflow's callback")
    return callback._trial_runs


def mlflow_client(callback):
    """The MLflow client of Ray's MLflowLoggerCallback."""
    require("MLflow's callback")
    return callback.mlflow_util._get_client()


def _mlflow() -> str | None:
    try:
        from ray.air.integrations.mlflow import MLflowLoggerCallback
    except ImportError:  # no mlflow: the tracker cannot be chosen (sweep.spec.trackers)
        return None
    if "self._trial_runs" not in inspect.getsource(MLflowLoggerCallback):
        return "ray.air.integrations.mlflow:MLflowLoggerCallback keeps no _trial_runs"
    # its mlflow_util, a private class's object, whose methods sweep.run.mlflow_tracker calls
    for method in ("_get_client", "start_run", "log_params", "log_metrics"):
        if not callable(find(f"ray.air._internal.mlflow:_MLflowLoggerUtil.{method}")):
            return f"ray.air._internal.mlflow:_MLflowLoggerUtil.{method} is not a method"
    return None


# --- the checks -----------------------------------------------------------------------------

# Tune's functions gansweep copies with a change (NoisyBracket.on_result): the digest of
# each one's tokens (comments and layout aside) where the copy was made. Another digest:
# Tune changed the original, and the copy must be redone from it.
COPIED = {
    "ray.tune.schedulers.async_hyperband:_Bracket.on_result":
        "6d15c5fe35b68199",
}


def find(path: str) -> Any:
    """``module:Name.attr`` -> the object; GansweepError naming what is missing."""
    module, _, names = path.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise GansweepError(f"{module} cannot be imported ({e})") from None
    for name in names.split("."):
        if not hasattr(obj, name):
            raise GansweepError(f"{path}: {obj.__name__ if hasattr(obj, '__name__') else obj} "
                                f"has no {name!r}")
        obj = getattr(obj, name)
    return obj


def digest(path: str) -> str:
    """The digest of a Tune function's tokens, comments and layout aside (``COPIED``); tokens,
    not ``ast.dump``, whose text differs between Python versions."""
    source = textwrap.dedent(inspect.getsource(find(path)))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    tokens = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in skip]
    return hashlib.sha256("\0".join(tokens).encode()).hexdigest()[:16]


def _params(path: str, names: list[str], var_keyword: bool = False) -> str | None:
    params = inspect.signature(find(path)).parameters
    have = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if have[:len(names)] != names or (
            var_keyword and not any(p.kind == p.VAR_KEYWORD for p in params.values())):
        return f"{path} takes ({', '.join(map(str, params.values()))}), not ({', '.join(names)}" \
               f"{', **kwargs' if var_keyword else ''})"
    return None


def _fields(what: str, obj: Any, names: list[str]) -> str | None:
    missing = [n for n in names if not hasattr(obj, n)]
    return f"{what} has no {', '.join(missing)}" if missing else None


def _asha() -> str | None:
    from_bracket = find("ray.tune.schedulers.async_hyperband:_Bracket")
    asha = ASHAScheduler(time_attr="iteration", metric="score", mode="min", max_t=8,
                         grace_period=1, reduction_factor=2)
    problem = _fields("ray.tune.schedulers.ASHAScheduler()", asha,
                      ["_brackets", "_num_stopped", "_time_attr", "_metric", "_metric_op",
                       "_max_t", "_stop_last_trials", "_trial_info"])
    if problem:
        return problem
    if not asha._brackets or not all(type(b) is from_bracket for b in asha._brackets):
        return "ASHAScheduler()._brackets is not a list of async_hyperband._Bracket"
    bracket = asha._brackets[0]
    problem = _fields("async_hyperband._Bracket()", bracket,
                      ["_rungs", "_stop_last_trials", "cutoff"])
    if problem:
        return problem
    rungs = bracket._rungs
    if not (isinstance(rungs, list) and all(
            isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], dict) for r in rungs)):
        return f"_Bracket()._rungs is {rungs!r}, not a list of (milestone, {{trial id: score}})"
    if sorted(m for m, _ in rungs) != [1, 2, 4, 8]:
        return f"_Bracket()._rungs are at {[m for m, _ in rungs]} for grace 1, rf 2, max_t 8, " \
               f"not 1, 2, 4, 8"
    return None


def _files() -> str | None:
    names = {"ray.tune.execution.tune_controller:TuneController.CKPT_FILE_TMPL":
             SNAPSHOT_PATTERN.replace("*", "{}"),
             **{path: name for path, name in zip(
                 ("ray.tune.search:BasicVariantGenerator.CKPT_FILE_TMPL",
                  "ray.tune.search:SearchGenerator.CKPT_FILE_TMPL",
                  "ray.tune.search:Searcher.CKPT_FILE_TMPL"), SEARCHER_FILES)}}
    for path, want in names.items():
        if find(path) != want:
            return f"{path} is {find(path)!r}, not {want!r}"
    controller = importlib.import_module(RESTORE_LOGGER)
    source = inspect.getsource(controller)
    if '"trial_data"' not in source:
        return f"{RESTORE_LOGGER} no longer writes a snapshot's \"trial_data\""
    if repr(RESTORE_FAILED) not in source.replace('"', "'"):
        return f"{RESTORE_LOGGER} no longer logs {RESTORE_FAILED!r} on a failed restore " \
               f"(sweep.run.tune_state.no_fresh_start waits for it)"
    for logger in (RESUME_HINT_LOGGER, ANALYSIS_LOGGER):
        if importlib.util.find_spec(logger) is None:
            return f"{logger} is gone: the logger gansweep quiets has moved"
    return None


# What gansweep uses of Tune beyond its public API, each with its check (None: as expected).
INTERNALS: dict[str, Callable[[], str | None]] = {
    "ASHA's brackets and rungs": lambda: _params(
        "ray.tune.schedulers.async_hyperband:_Bracket.on_result",
        ["self", "trial", "cur_iter", "cur_rew"]) or _asha(),
    "Tune's snapshot files, restore log and loggers": _files,
    "MLflow's callback": _mlflow,
}


# Checked by require() only where used: importing Ray's MLflow integration imports mlflow.
ON_USE = ("MLflow's callback",)


def problems(copies: bool = True, on_use: bool = True) -> list[str]:
    """What this Ray changed of ``INTERNALS`` (and, with ``copies``, of the functions
    gansweep copies: ``COPIED``; with ``on_use``, of those checked where used: ``ON_USE``),
    one line each; empty when all is as gansweep expects."""
    out = []
    for what, check in INTERNALS.items():
        if what in ON_USE and not on_use:
            continue
        try:
            problem = check()
        except GansweepError as e:
            problem = str(e)
        if problem:
            out.append(f"{what}: {problem}")
    for path, want in COPIED.items() if copies else ():
        try:
            have = digest(path)
        except GansweepError as e:
            out.append(f"copied code: {e}")
            continue
        if have != want:
            out.append(f"copied code: {path} changed (digest {have}, not {want}): redo "
                       f"gansweep's copy from it")
    return out


@functools.cache
def _missing(what: str | None = None) -> tuple[str, ...]:
    if what is not None:
        problem = INTERNALS[what]()
        return (f"{what}: {problem}",) if problem else ()
    return tuple(problems(copies=False, on_use=False))


def require(what: str | None = None) -> None:
    """One line, before anything starts, when this Ray lacks what gansweep uses of Tune (or,
    with ``what``, that one of ``ON_USE``); checked once per process: a replay makes a
    scheduler per replay."""
    found = _missing(what)
    if found:
        import ray

        raise GansweepError(f"Ray {ray.__version__} is outside the range gansweep is tested "
                            f"on (pyproject.toml's ray[tune]{RAY_RANGE}): {found[0]}")
