"""The import contract (the README's "Architecture"): gansweep's modules form layers, and a
module imports only from its own layer or lower ones, at module level or inside a function.
Ray is imported only by the Ray layer. Every module must be placed in a layer here, so a new
module states where it belongs."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"gansweep": "gansweep", "core": "gansweep.core", "sweep": "gansweep.sweep",
           "results": "gansweep.results", "search_spaces": "gansweep.search_spaces"}

LAYERS = [  # lowest first
    ("core", ["gansweep.core"]),
    ("sweep model", ["gansweep.sweep.fields", "gansweep.sweep.schema", "gansweep.sweep.grid",
                     "gansweep.sweep.validate", "gansweep.sweep.pairs", "gansweep.sweep.specs",
                     "gansweep.sweep.ranking", "gansweep.sweep.replay_options",
                     "gansweep.sweep.verdict", "gansweep.sweep.state", "gansweep.sweep.storage",
                     "gansweep.sweep.trackers", "gansweep.sweep.structure",
                     "gansweep.sweep.search", "gansweep.search_spaces"]),
    ("results", ["gansweep.results"]),
    ("ray", ["gansweep.sweep.driver", "gansweep.sweep.worker", "gansweep.sweep.recorder",
             "gansweep.sweep.references", "gansweep.sweep.scheduler", "gansweep.sweep.reporter",
             "gansweep.sweep.replay", "gansweep.sweep.replay_search",
             "gansweep.sweep.searcher", "gansweep.sweep.tune_state",
             "gansweep.sweep.tune_internals",
             "gansweep.sweep.mlflow_tracker", "gansweep.sweep.tracking",
             "gansweep.sweep.interrupts", "gansweep.sweep.ray_connect",
             "gansweep.sweep.listing"]),
    ("cli", ["gansweep.sweep.cli", "gansweep.sweep.cli_run", "gansweep.sweep.cli_sweep",
             "gansweep.sweep.demo", "gansweep.__main__"]),
]
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


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            out[name] = path
    return out


def imports(path: Path) -> list[tuple[str, int]]:
    """Every module a file imports (absolute names), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.module, node.lineno)]
            out += [(f"{node.module}.{a.name}", node.lineno) for a in node.names
                    if f"{node.module}.{a.name}" in modules()]
    return out


def violations(files: dict[str, Path]) -> list[str]:
    out = []
    for name, path in files.items():
        mine = layer_of(name)
        for target, line in imports(path):
            if target.split(".")[0] == "ray" and LAYERS[mine][0] != "ray":
                out.append(f"{name}:{line} imports Ray, outside the Ray layer")
            theirs = layer_of(target) if target.startswith("gansweep") else None
            if theirs is not None and target not in PACKAGES and theirs > mine:
                out.append(f"{name}:{line} ({LAYERS[mine][0]}) imports {target} "
                           f"({LAYERS[theirs][0]}), a higher layer")
    return out


def test_every_module_is_in_a_layer():
    unplaced = [m for m in modules() if layer_of(m) is None and m not in PACKAGES]
    assert not unplaced, f"place these in a layer of tests/test_layers.py: {unplaced}"


def test_layers_import_one_way():
    found = violations(modules())
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module, line", [
    ("gansweep.core.probe", "from gansweep.sweep.grid import expand"),
    ("gansweep.sweep.grid", "def f():\n    from gansweep.results.tables import load_tables"),
    ("gansweep.results.probe", "import ray"),
    ("gansweep.sweep.state", "from gansweep.sweep.driver import launch"),
])
def test_an_upward_import_is_caught(tmp_path, module, line):
    path = tmp_path / "probe.py"
    path.write_text(line + "\n")
    assert len(violations({module: path})) == 1
