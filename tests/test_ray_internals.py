"""The Tune internals gansweep relies on (``sweep.tune_internals``) are there and as it
expects, on the installed Ray: seconds, no Ray started. A Ray outside pyproject's range fails
here in one line per change, naming it, instead of mid-sweep."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gansweep.core.errors import GansweepError
from gansweep.sweep import tune_internals

ROOT = Path(__file__).resolve().parents[1]


def test_every_tune_internal_is_as_gansweep_expects():
    found = tune_internals.problems()
    assert not found, "\n".join(found)


def _private_names(path: Path) -> tuple[set[str], set[str]]:
    """The private names a module uses (``x._name``, ``from ray... import _name``) and those
    it defines itself (its functions, its classes' ``__init__`` fields)."""
    used, own = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                not node.attr.startswith("__"):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ray"):
            used |= {a.name for a in node.names if a.name.startswith("_")}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_"):
            own.add(node.name)
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            own |= {t.attr for n in ast.walk(node) if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                    if isinstance(t, ast.Attribute)}
    return used, own


def test_the_list_names_every_private_tune_name_the_sweep_modules_use():
    """Every private name the Tune-facing modules use that they do not define is Tune's, and
    must be in sweep/tune_internals.py, so the check above covers it."""
    listed = (ROOT / "sweep" / "tune_internals.py").read_text()
    missing = {}
    for module in ("scheduler", "searcher", "tune_state"):
        used, own = _private_names(ROOT / "sweep" / f"{module}.py")
        missing.update({n: module for n in used - own if not re.search(rf"\b{n}\b", listed)})
    assert not missing, f"Tune internals used in sweep/ but not in tune_internals: {missing}"


def test_the_pinned_range_is_the_one_the_readme_states():
    pyproject = (ROOT / "pyproject.toml").read_text()
    spec = re.search(r'"ray\[tune\]([^"]*)"', pyproject).group(1)
    assert "<" in spec, f"ray[tune]{spec} has no upper bound"
    assert f"ray[tune]{spec}" in (ROOT / "README.md").read_text()


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
