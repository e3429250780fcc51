"""The Tune internals gansweep relies on (``sweep.run.tune_internals``, the one module that
reaches past Tune's public API; Ray ``ray[tune]>=2.40,<2.61``) are there and as it
expects, on the installed Ray: seconds, no Ray started. A Ray outside pyproject's range fails
here in one line per change, naming it, instead of mid-sweep."""
from __future__ import annotations

import ast
import importlib
import re
import textwrap
from pathlib import Path

import pytest

from gansweep.core.errors import GansweepError
from gansweep.sweep.run import tune_internals

ROOT = Path(__file__).resolve().parents[1]


def test_every_tune_internal_is_as_gansweep_expects():
    found = tune_internals.problems()
    assert not found, "\n".join(found)


ADAPTER = ROOT / "sweep" / "run" / "tune_internals.py"
SOURCES = ("core", "sweep", "results", "search_spaces", "gansweep")
# Tune's private methods and classes gansweep once used, by name, public-looking ones too:
# a module other than the adapter naming one is a copy of Tune's code.
NAMED = {"_create_trial_from_spec", "create_trial_if_possible", "_Bracket", "_brackets",
         "_rungs", "_trial_info", "_num_stopped", "_counter", "_parser", "_get_client",
         "_trial_runs"}


def _defined(tree: ast.AST) -> set[str]:
    """The private names a module defines: its functions, classes, fields, attributes."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):  # not +=: that one is used
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for n in ast.walk(t):
                    if isinstance(n, ast.Attribute):
                        out.add(n.attr)
                    elif isinstance(n, ast.Name):
                        out.add(n.id)
    return {n for n in out if n.startswith("_")}


def _ray_bases(tree: ast.AST) -> dict[str, str]:
    """The names a module binds to Ray objects: name -> "module:attr" (or "module")."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray":
            out.update({a.asname or a.name: f"{node.module}:{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            out.update({(a.asname or a.name).split(".")[0]: a.name.split(".")[0]
                        for a in node.names if a.name.split(".")[0] == "ray"})
    return out


def _resolve(path: str):
    module, _, name = path.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, name) if name else obj


def _base_of(node: ast.expr, ray: dict[str, str]):
    """The Ray class a class statement's base names, or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in ray:
        return None
    obj = _resolve(ray[node.id])
    for part in parts:
        obj = getattr(obj, part)
    return obj


def private_ray_uses(path: Path, defined: set[str]) -> list[str]:
    """Where a module uses Ray Tune beyond its public API: imports a ``_`` name (or module) of
    Ray, uses a private attribute that gansweep does not define itself (``defined``), names
    one of ``NAMED``, or overrides a private method of a Ray class it subclasses. (Private
    attributes count in a module that imports Ray, or the run layer's Ray objects from
    ``gansweep.sweep.run``: torch's and argparse's are not Tune's.)"""
    tree = ast.parse(path.read_text())
    ray, out = _ray_bases(tree), []
    holds_ray = bool(ray) or any(
        isinstance(n, ast.ImportFrom) and (n.module or "").startswith("gansweep.sweep.run")
        for n in ast.walk(tree))
    for node in ast.walk(tree):
        line = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:" \
               f"{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray":
            private = [n for n in node.module.split(".") if n.startswith("_")] + \
                [a.name for a in node.names if a.name.startswith("_")]
            out += [f"{line} imports {n} from {node.module}" for n in private]
        elif isinstance(node, ast.Import):
            out += [f"{line} imports {a.name}" for a in node.names
                    if a.name.split(".")[0] == "ray" and
                    any(p.startswith("_") for p in a.name.split("."))]
        elif isinstance(node, ast.Attribute) and holds_ray and node.attr.startswith("_") and \
                not node.attr.startswith("__") and node.attr not in defined:
            out.append(f"{line} uses .{node.attr}")
        names = {node.id} if isinstance(node, ast.Name) else {node.attr} \
            if isinstance(node, ast.Attribute) else {node.name} if isinstance(
                node, (ast.FunctionDef, ast.ClassDef)) else set()
        out += [f"{line} names {n}" for n in names & NAMED]
        if isinstance(node, ast.ClassDef):
            for base in filter(None, (_base_of(b, ray) for b in node.bases)):
                out += [f"{line} {node.name} overrides {base.__name__}.{f.name}"
                        for f in node.body if isinstance(f, ast.FunctionDef) and
                        f.name.startswith("_") and not f.name.startswith("__") and
                        hasattr(base, f.name)]
    return sorted(set(out))


def _modules() -> list[Path]:
    return [p for folder in SOURCES for p in sorted((ROOT / folder).rglob("*.py"))]


def _all_defined() -> set[str]:
    """Every private name gansweep's own modules define (the adapter's aside)."""
    return set().union(*(_defined(ast.parse(p.read_text())) for p in _modules()
                         if p != ADAPTER))


def test_no_module_but_the_adapter_uses_a_private_tune_name():
    """Acceptance: no gansweep module calls or overrides a private Ray Tune method except
    through sweep/run/tune_internals.py."""
    defined = _all_defined()
    found = [use for p in _modules() if p != ADAPTER for use in private_ray_uses(p, defined)]
    assert not found, "private Ray use outside sweep/run/tune_internals.py:\n" + \
        "\n".join(found)
    assert private_ray_uses(ADAPTER, defined), "the adapter is where they are: the check sees them"


def test_a_planted_private_use_is_found(tmp_path):
    """Each way of reaching into Tune, planted in a module, is named with its line."""
    planted = tmp_path / "planted.py"
    planted.write_text(textwrap.dedent("""\
        from ray.tune.schedulers.async_hyperband import _Bracket
        from ray.tune.experiment.config_parser import _create_trial_from_spec
        from ray.tune.search import Searcher, SearchGenerator
        from ray.tune.schedulers import HyperBandScheduler
        import ray.tune.execution._internal


        class Generator(SearchGenerator):
            def create_trial_if_possible(self, spec):
                self._counter += 1


        class Bands(HyperBandScheduler):
            def _own_helper(self):  # gansweep's own: fine
                return self._own

            def _process_bracket(self, *args):
                return self._brackets[0]._rungs


        class Plain(Searcher):
            def __init__(self):
                self._own = 1

            def suggest(self, trial_id):
                return {"x": self._own}
    """))
    defined = _defined(ast.parse(planted.read_text()))
    found = "\n".join(private_ray_uses(planted, defined))
    for expected in ("planted.py:1 imports _Bracket from ray.tune.schedulers.async_hyperband",
                     "planted.py:2 imports _create_trial_from_spec",
                     "planted.py:5 imports ray.tune.execution._internal",
                     "planted.py:9 names create_trial_if_possible",
                     "planted.py:10 uses ._counter",
                     "planted.py:13 Bands overrides HyperBandScheduler._process_bracket",
                     "planted.py:18 uses ._brackets", "planted.py:18 uses ._rungs"):
        assert expected in found, f"{expected!r} not in:\n{found}"
    assert "_own" not in found and "suggest" not in found, found
    clean = tmp_path / "clean.py"
    clean.write_text("from ray.tune.search import Searcher\n\n\nclass S(Searcher):\n"
                     "    def suggest(self, trial_id):\n        return None\n")
    assert private_ray_uses(clean, set()) == []
    # a module without Ray that drives the run layer's Ray objects (as the replay does ASHA)
    driven = tmp_path / "driven.py"
    driven.write_text("from gansweep.sweep.run.scheduler import RobustASHA\n\n"
                      "def f(s: RobustASHA):\n    return s._stop_last_trials\n")
    assert private_ray_uses(driven, set()) == ["driven.py:4 uses ._stop_last_trials"]


def test_the_adapter_names_the_pinned_range_of_pyproject_and_the_readme():
    """The adapter's fast test names the Ray versions it is checked on: pyproject's pin,
    the README's, and the installed Ray within it."""
    import ray
    from packaging.specifiers import SpecifierSet

    pyproject = (ROOT / "pyproject.toml").read_text()
    spec = re.search(r'"ray\[tune\]([^"]*)"', pyproject).group(1)
    assert "<" in spec, f"ray[tune]{spec} has no upper bound"
    assert spec == tune_internals.RAY_RANGE == ">=2.40,<2.61"
    assert f"ray[tune]{spec}" in (ROOT / "README.md").read_text()
    assert ray.__version__ in SpecifierSet(spec), f"Ray {ray.__version__} outside {spec}"


@pytest.mark.parametrize("change", ["a renamed field", "a copied function changed",
                                    "a renamed snapshot"])
def test_a_changed_internal_is_one_line_naming_it(monkeypatch, change):
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.schedulers.async_hyperband import _Bracket

    if change == "a renamed field":
        original = _Bracket.__init__

        def renamed(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self.rungs = self.__dict__.pop("_rungs")
        monkeypatch.setattr(_Bracket, "__init__", renamed)
        fragment = "ASHA's brackets and rungs: async_hyperband._Bracket() has no _rungs"
    elif change == "a copied function changed":
        monkeypatch.setitem(tune_internals.COPIED, next(iter(tune_internals.COPIED)), "0" * 16)
        fragment = "copied code: ray.tune.schedulers.async_hyperband:_Bracket.on_result changed"
    else:
        monkeypatch.setattr(TuneController, "CKPT_FILE_TMPL", "run_state-{}.json")
        fragment = "TuneController.CKPT_FILE_TMPL is 'run_state-{}.json', not " \
                   "'experiment_state-{}.json'"
    found = tune_internals.problems()
    assert len(found) == 1 and fragment in found[0] and "\n" not in found[0], found
    if change != "a copied function changed":  # a sweep refuses to start on it
        tune_internals._missing.cache_clear()
        monkeypatch.setattr(tune_internals, "_missing", tune_internals._missing.__wrapped__)
        with pytest.raises(GansweepError, match="outside the range gansweep is tested on"):
            tune_internals.require()
