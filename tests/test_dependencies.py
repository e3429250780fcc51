"""Every third-party package gansweep imports is declared: what a module imports when it is
imported is in ``[project] dependencies``; an optional package (an extra) is imported only
inside a function, through ``gansweep.core.extras.require`` or ``check``, which name the extra
when it is missing. Read from the source (AST), so a module nobody imports in the tests is
checked too."""
from __future__ import annotations

import ast
import functools
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("gansweep", "core", "sweep", "results", "search_spaces")
FIRST_PARTY = {"gansweep"}
OPTIONAL_CALLS = {"require", "check"}  # gansweep.core.extras: (module, extra, needed_for)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(text: str) -> str:
    return _normalise(re.split(r"[\s\[<>=!~;]", text.strip(), maxsplit=1)[0])


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """pyproject.toml's dependencies and its extras, as normalised distribution names."""
    if sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        deps = project["dependencies"]
        extras = project.get("optional-dependencies", {})
    else:  # the installed metadata (a reinstall picks up an edited pyproject.toml)
        from importlib.metadata import requires

        deps, extras = [], {}
        for req in requires("gansweep") or []:
            m = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
            (extras.setdefault(m.group(1), []) if m else deps).append(req.split(";")[0])
    return ({_requirement_name(r) for r in deps},
            {e: {_requirement_name(r) for r in reqs} for e, reqs in extras.items()})


@functools.cache
def _installed() -> dict[str, list[str]]:
    return packages_distributions()


def distributions(module: str) -> set[str]:
    """The installed distributions that provide a top-level module."""
    return {_normalise(d) for d in _installed().get(module.split(".")[0], [])}


class Imports(ast.NodeVisitor):
    """A module's imports: (top-level module, line, at module level), skipping what only a
    type checker runs; and the optional imports made through extras.require/check."""

    def __init__(self) -> None:
        self.found: list[tuple[str, int, bool]] = []
        self.optional: list[tuple[str, str, int]] = []
        self._depth = 0

    def _scope(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scope

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name.split(".")[0], node.lineno, self._depth == 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.found.append((node.module.split(".")[0], node.lineno, self._depth == 0))

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else \
            node.func.id if isinstance(node.func, ast.Name) else None
        args = node.args[:2]
        if name in OPTIONAL_CALLS and len(args) == 2 and \
                all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
            self.optional.append((args[0].value, args[1].value, node.lineno))
        self.generic_visit(node)


def package_modules() -> list[Path]:
    return sorted(p for folder in PACKAGE_FOLDERS for p in (ROOT / folder).glob("*.py"))


def problems(files: list[Path]) -> list[str]:
    """Every import of the files that breaks the rules, one line each."""
    deps, extras = declared()
    out = []
    for path in files:
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        visitor = Imports()
        visitor.visit(ast.parse(path.read_text(), str(path)))
        for module, line, top in visitor.found:
            if module in sys.stdlib_module_names or module in FIRST_PARTY:
                continue
            dists = distributions(module)
            if not dists:
                out.append(f"{where}:{line}: {module!r} is not installed, so not declared")
            elif not dists & deps:
                how = "at module level" if top else \
                    "outside gansweep.core.extras.require (no one-line error when missing)"
                out.append(f"{where}:{line}: {module!r} (distribution {sorted(dists)}) is "
                           f"imported {how} but is not in [project] dependencies")
        for module, extra, line in visitor.optional:
            dists = distributions(module) or {_normalise(module.split(".")[0])}
            if extra not in extras or not dists & extras[extra]:
                out.append(f"{where}:{line}: optional {module!r} names the extra {extra!r}, "
                           f"which does not provide it")
    return out


def test_every_import_is_declared():
    assert package_modules(), "no package modules found"
    found = problems(package_modules())
    assert not found, "\n".join(found)


@pytest.mark.parametrize("code, fragment", [
    ("import duckdb\n", "imported at module level"),
    ("def f():\n    import duckdb\n", "outside gansweep.core.extras.require"),
    ("import not_a_package_anywhere\n", "not installed"),
    ("from gansweep.core import extras\n"
     "def f():\n    extras.require('numpy', 'trackers', 'x')\n", "does not provide it"),
])
def test_an_undeclared_import_is_caught(tmp_path, code, fragment):
    # duckdb: installed by the dev extra (the tests' own tools), not a dependency.
    path = tmp_path / "probe.py"
    path.write_text(code)
    found = problems([path])
    assert len(found) == 1 and fragment in found[0], found


def test_declared_and_optional_imports_pass(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("import numpy\nfrom gansweep.core import extras\n"
                    "if TYPE_CHECKING:\n    import duckdb\n"
                    "def f():\n    import yaml\n"
                    "    return extras.require('wandb', 'trackers', 'x')\n")
    assert problems([path]) == []
