"""The module paths of gansweep 0.3.0, whose sweep/ was flat, and where each module lives now.

Ray Tune pickles references to gansweep's classes and functions into a sweep's folder
(``tuner.pkl``: the param space, the callbacks, the reporter, the search algorithm). A sweep
launched by 0.3.0 names them by their old paths, so before a resume unpickles them
``install`` lets ``gansweep.sweep.worker`` (say) import as ``gansweep.sweep.run.worker``:
the same module object under both names, so nothing is loaded twice. What a new sweep
pickles names the new paths. (0.3.0's ``sweep.cli`` is now a package; nothing pickled it.)
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {  # gansweep.sweep.<old> -> gansweep.sweep.<new>
    "fields": "spec.fields",
    "schema": "spec.schema",
    "grid": "spec.grid",
    "pairs": "spec.pairs",
    "validate": "spec.validate",
    "specs": "spec.files",
    "trackers": "spec.trackers",
    "ranking": "spec.ranking",
    "structure": "searchers.model",
    "search": "searchers.structured",
    "state": "record.state",
    "storage": "record.storage",
    "verdict": "record.verdict",
    "driver": "run.driver",
    "worker": "run.worker",
    "recorder": "run.recorder",
    "references": "run.references",
    "scheduler": "run.scheduler",
    "reporter": "run.reporter",
    "tune_state": "run.tune_state",
    "tune_internals": "run.tune_internals",
    "tracking": "run.tracking",
    "mlflow_tracker": "run.mlflow_tracker",
    "searcher": "run.searcher",
    "interrupts": "run.interrupts",
    "ray_connect": "run.ray_connect",
    "replay": "replays.schedulers",
    "replay_search": "replays.searchers",
    "replay_options": "replays.options",
    "cli_run": "cli.train",
    "cli_sweep": "cli.sweep",
    "demo": "cli.demo",
    "listing": "cli.listing",
}


class _Aliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the module now at its new one."""

    def find_spec(self, name, path=None, target=None):
        old = name.removeprefix("gansweep.sweep.")
        if old != name and old in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        old = spec.name.removeprefix("gansweep.sweep.")
        module = importlib.import_module(f"gansweep.sweep.{MOVED[old]}")
        self._own = module.__spec__  # importlib sets the alias's spec on it next
        return module

    def exec_module(self, module) -> None:
        """Already executed under its new name: it keeps its own spec."""
        module.__spec__ = self._own


def install() -> None:
    """Make 0.3.0's module paths importable (once per process)."""
    if not any(isinstance(f, _Aliases) for f in sys.meta_path):
        sys.meta_path.append(_Aliases())
