"""The import contract (the README's "How the code is laid out"): gansweep's modules form
layers, and a module imports only from its own layer or lower ones, at module level or inside
a function, absolutely or relatively, by statement or by ``importlib``. Ray is imported only by
the run layer (sweep/run/). Layers name whole (sub)packages, and the test walks every folder,
so a new module is placed by where it is put."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"gansweep": "gansweep", "core": "gansweep.core", "sweep": "gansweep.sweep",
           "results": "gansweep.results", "search_spaces": "gansweep.search_spaces"}

LAYERS = [  # lowest first; each names whole (sub)packages, so a new module is placed already
    ("core", ["gansweep.core"]),
    ("spec", ["gansweep.sweep.spec", "gansweep.search_spaces"]),
    ("searchers", ["gansweep.sweep.searchers"]),
    ("record", ["gansweep.sweep.record"]),
    ("results", ["gansweep.results"]),
    ("run", ["gansweep.sweep.run"]),
    ("replays", ["gansweep.sweep.replays"]),
    ("cli", ["gansweep.sweep.cli", "gansweep.__main__"]),
]
RAY_LAYER = "run"  # the only one that imports Ray
PACKAGES = {"gansweep", "gansweep.core", "gansweep.sweep", "gansweep.results",
            "gansweep.search_spaces"}  # their __init__ modules import nothing of ours


def layer_of(module: str) -> int | None:
    """The layer of a module (or a package's __init__), by its longest listed prefix."""
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and \
                    (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    return None if best is None else best[0]


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package, in every subfolder (gansweep/ itself: only its own)."""
    out = {}
    for folder, package in FOLDERS.items():
        paths = (ROOT / folder).glob("*.py") if folder == "gansweep" else \
            (ROOT / folder).rglob("*.py")
        for path in sorted(paths):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            out[".".join((package, *parts))] = path
    return out


def imports(path: Path, name: str) -> list[tuple[str, int]]:
    """Every module the file of module ``name`` imports (relative imports resolved, and
    ``importlib.import_module``/``__import__`` of a literal name), with its line."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from .x / from ..x: relative to the module's package
                parent = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            out += [(base, node.lineno)]
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names
                    if f"{base}.{a.name}" in modules()]
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                and ast.unparse(node.func) in ("importlib.import_module", "import_module",
                                               "__import__"):
            out += [(node.args[0].value, node.lineno)]
    return out


def violations(files: dict[str, Path]) -> list[str]:
    out = []
    for name, path in files.items():
        mine = layer_of(name)
        where = "no layer" if mine is None else LAYERS[mine][0]
        for target, line in imports(path, name):
            if target.split(".")[0] == "ray" and where != RAY_LAYER:
                out.append(f"{name}:{line} ({where}) imports Ray, outside the Ray layer")
            if not target.startswith("gansweep"):
                continue
            if name in PACKAGES and target != name:
                out.append(f"{name}:{line} imports {target}: a package's __init__ imports "
                           f"nothing of ours")
            theirs = layer_of(target)
            if theirs is not None and target not in PACKAGES and (mine is None or
                                                                   theirs > mine):
                out.append(f"{name}:{line} ({where}) imports {target} "
                           f"({LAYERS[theirs][0]}), a higher layer")
    return out


def test_every_subpackage_says_what_it_owns_and_may_import():
    for name, path in modules().items():
        if path.name == "__init__.py" and name != "gansweep":
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "Imports:" in doc, f"{path}: its docstring must say what it may import"


def test_every_module_is_in_a_layer():
    unplaced = [m for m in modules() if layer_of(m) is None and m not in PACKAGES]
    assert not unplaced, f"place these in a layer of tests/test_layers.py: {unplaced}"


def test_layers_import_one_way():
    found = violations(modules())
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module, line", [
    ("gansweep.core.probe", "from gansweep.sweep.spec.grid import expand"),
    ("gansweep.sweep.spec.grid", "def f():\n    from gansweep.results.tables import load_tables"),
    ("gansweep.results.probe", "import ray"),
    ("gansweep.sweep.record.state", "from gansweep.sweep.run.driver import launch"),
    ("gansweep.sweep.record.state", "from ..run.driver import launch"),
    ("gansweep.sweep.record.state", "from ..run import driver"),
    ("gansweep.sweep.spec.probe", "import importlib\nimportlib.import_module('ray.tune')"),
    ("gansweep.sweep.spec.probe", "__import__('ray')"),
    ("gansweep.sweep.probe", "import ray"),  # a module in no layer
    ("gansweep.results", "from gansweep.results.report import write_results"),
])
def test_an_upward_import_is_caught(tmp_path, module, line):
    path = tmp_path / "probe.py"
    path.write_text(line + "\n")
    assert violations({module: path})
