"""The Ray Tune internals gansweep relies on, in one place, each with the check that it is
still there and still what gansweep expects.

Tune has no public hook for what ``sweep.searcher`` (a trial id chosen by the searcher:
``SearchGenerator``'s ``_counter``, ``_parser``, ``_finished``, ``_create_trial_from_spec``),
``sweep.scheduler`` (a margin in ASHA's rung decision, rungs persisted: ``_Bracket``,
``_rungs``, ``_brackets``, ...) and ``sweep.tune_state`` (Tune's snapshot files, its log line
on a failed restore) need. pyproject bounds ``ray[tune]`` to the releases the suite passes
on; ``problems()`` is what a Ray outside them changed, one line each
(tests/test_ray_internals.py, in seconds, without starting Ray), and ``require()`` stops a
sweep or a replay before it starts on such a Ray instead of failing mid-sweep.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import io
import textwrap
import tokenize
from collections.abc import Callable
from typing import Any

from gansweep.core.errors import GansweepError
from gansweep.sweep import tune_state

# Tune's functions gansweep copies with a change (sweep.scheduler._NoisyBracket.on_result,
# sweep.searcher.StructuredGenerator.create_trial_if_possible): the digest of each one's
# tokens (comments and layout aside) where the copy was made. Another digest: Tune
# changed the original, and the copy must be redone from it.
COPIED = {
    "ray.tune.schedulers.async_hyperband:_Bracket.on_result":
        "6d15c5fe35b68199",
    "ray.tune.search.search_generator:SearchGenerator.create_trial_if_possible":
        "81aaf8c2f28e915e",
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


def _searcher() -> str | None:
    from ray.tune.search import Searcher, SearchGenerator

    generator = SearchGenerator(Searcher())
    return (_fields("ray.tune.search.SearchGenerator()", generator,
                    ["searcher", "_counter", "_parser", "_finished"])
            or (None if isinstance(generator._counter, int) else
                f"SearchGenerator()._counter is {type(generator._counter).__name__}, not int"))


def _asha() -> str | None:
    from ray.tune.schedulers import ASHAScheduler

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
             tune_state.PATTERN.replace("*", "{}"),
             **{path: name for path, name in zip(
                 ("ray.tune.search:BasicVariantGenerator.CKPT_FILE_TMPL",
                  "ray.tune.search:SearchGenerator.CKPT_FILE_TMPL",
                  "ray.tune.search:Searcher.CKPT_FILE_TMPL"), tune_state.SEARCHER_FILES)}}
    for path, want in names.items():
        if find(path) != want:
            return f"{path} is {find(path)!r}, not {want!r} (sweep.tune_state)"
    controller = importlib.import_module(tune_state.RESTORE_LOGGER)
    source = inspect.getsource(controller)
    if '"trial_data"' not in source:
        return f"{tune_state.RESTORE_LOGGER} no longer writes a snapshot's \"trial_data\""
    if repr(tune_state.RESTORE_FAILED) not in source.replace('"', "'"):
        return f"{tune_state.RESTORE_LOGGER} no longer logs {tune_state.RESTORE_FAILED!r} on " \
               f"a failed restore (sweep.tune_state.no_fresh_start waits for it)"
    return None


# What gansweep uses of Tune beyond its public API, each with its check (None: as expected).
INTERNALS: dict[str, Callable[[], str | None]] = {
    "the searcher's trial hook": lambda: _params(
        "ray.tune.experiment.config_parser:_create_trial_from_spec", ["spec", "parser"], True)
    or _params("ray.tune.search:SearchGenerator.create_trial_if_possible",
               ["self", "experiment_spec"]) or _searcher(),
    "the helpers the hook calls": lambda: next(
        (f"{p} is gone" for p in ("ray.tune.search.variant_generator:format_vars",
                                  "ray.tune.utils.util:flatten_dict",
                                  "ray.tune.utils.util:merge_dicts",
                                  "ray.tune.experiment:Trial.generate_id") if not find(p)),
        None),
    "ASHA's brackets and rungs": lambda: _params(
        "ray.tune.schedulers.async_hyperband:_Bracket.on_result",
        ["self", "trial", "cur_iter", "cur_rew"]) or _asha(),
    "Tune's snapshot files and restore log": _files,
}


def problems(copies: bool = True) -> list[str]:
    """What this Ray changed of ``INTERNALS`` (and, with ``copies``, of the functions
    gansweep copies: ``COPIED``), one line each; empty when all is as gansweep expects."""
    out = []
    for what, check in INTERNALS.items():
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
def _missing() -> tuple[str, ...]:
    return tuple(problems(copies=False))


def require() -> None:
    """One line, before anything starts, when this Ray lacks what gansweep uses of Tune
    (checked once per process: a replay makes a scheduler per replay)."""
    found = _missing()
    if found:
        import ray

        raise GansweepError(f"Ray {ray.__version__} is outside the range gansweep is tested "
                            f"on (pyproject.toml's ray[tune]): {found[0]}")
