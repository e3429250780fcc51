"""One installed package: the wheel and the sdist hold gansweep.* and the shipped specs and no
top-level core/sweep/results; a user's own core/ or results/ cannot shadow our modules."""
import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from gansweep.sweep.spec.files import find_spec, load_spec, shipped_dir, shipped_specs
from tests.helpers import cli_in_process

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"core": "core", "sweep": "sweep", "results": "results",
               "search_spaces": "search_spaces"}


def _tracked_tree(dest: Path) -> Path:
    """A copy of the files git tracks (a clean checkout, without build leftovers)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return dest


def _build(tree: Path, hook: str, out: Path) -> Path:
    """Run setuptools' PEP 517 hook in ``tree``: what pip and `python -m build` do, without
    network or an isolated environment."""
    out.mkdir(exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def _expected_modules() -> set[str]:
    out = {"gansweep/__init__.py", "gansweep/__main__.py"}
    for package, folder in SUBPACKAGES.items():
        out |= {f"gansweep/{package}/{p.relative_to(ROOT / folder).as_posix()}"
                for p in (ROOT / folder).rglob("*.py")}  # subpackages too (sweep/run/...)
    return out


def _check_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert _expected_modules() <= names, _expected_modules() - names
    specs = {f"gansweep/search_spaces/{p.name}" for p in (ROOT / "search_spaces").glob("*.yaml")}
    assert specs and specs <= names, specs - names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"gansweep", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                    + ".dist-info"}, tops
    entry = zipfile.ZipFile(wheel).read(next(n for n in names
                                             if n.endswith("entry_points.txt"))).decode()
    assert "gansweep = gansweep.sweep.cli.main:main" in entry


@pytest.mark.slow
def test_wheel_and_sdist_hold_one_gansweep_package(tmp_path):
    tree = _tracked_tree(tmp_path / "src")
    _check_wheel(_build(tree, "build_wheel", tmp_path / "dist"))

    sdist = _build(tree, "build_sdist", tmp_path / "dist")
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
        tar.extractall(tmp_path / "unpacked", filter="data")
    for folder in SUBPACKAGES.values():
        for p in (ROOT / folder).rglob("*.py"):
            assert p.relative_to(ROOT).as_posix() in members
    for p in (ROOT / "search_spaces").glob("*.yaml"):
        assert f"search_spaces/{p.name}" in members
    # The sdist is complete: a wheel built from it alone holds everything too.
    unpacked = next((tmp_path / "unpacked").iterdir())
    _check_wheel(_build(unpacked, "build_wheel", tmp_path / "dist2"))


def _python(code: str, cwd: Path, pythonpath: Path | None = None) -> str:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


IMPORT_ALL = """
import importlib, pkgutil, sys
import gansweep
for m in ("gansweep.core", "gansweep.sweep", "gansweep.results", "gansweep.search_spaces"):
    mod = importlib.import_module(m)
    for sub in pkgutil.walk_packages(mod.__path__, m + "."):
        importlib.import_module(sub.name)  # every module but gansweep.__main__ (it runs)
bare = sorted(n for n in sys.modules if n.split(".")[0] in
              ("core", "sweep", "results", "search_spaces"))
print("BARE", bare)
import gansweep.core.registry as registry, gansweep.core.errors as errors
assert registry.GansweepError is errors.GansweepError
print("FILE", errors.__file__)
"""


def test_user_folders_named_core_and_results_do_not_shadow_ours(tmp_path):
    user = tmp_path / "project"
    (user / "core").mkdir(parents=True)
    (user / "core" / "__init__.py").write_text("MINE = True\n")
    (user / "core" / "errors.py").write_text("class GansweepError(Exception):\n    pass\n")
    (user / "results").mkdir()
    (user / "results" / "report.py").write_text("raise RuntimeError('the user report')\n")
    out = _python(IMPORT_ALL + "import core, core.errors; assert core.MINE\n"
                  "print('USER', core.errors.__file__)", cwd=user, pythonpath=user)
    assert "BARE []" in out
    assert f"FILE {ROOT / 'core' / 'errors.py'}" in out
    assert f"USER {user / 'core' / 'errors.py'}" in out
    cli = subprocess.run([sys.executable, "-m", "gansweep", "partitions", "--units", "2"],
                         cwd=user, env={**os.environ, "PYTHONPATH": str(user)},
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and "# 6 D partitions for L = 2" in cli.stdout, cli.stderr


def test_repository_root_on_sys_path_loads_no_second_copy():
    out = _python(IMPORT_ALL, cwd=ROOT, pythonpath=ROOT)
    assert "BARE []" in out


def test_shipped_specs_by_name(tmp_path, monkeypatch):
    specs = shipped_specs()
    assert set(specs) == {p.stem for p in (ROOT / "search_spaces").glob("*.yaml")}
    assert all(specs.values()), "every shipped spec has a one-line description"
    listing = cli_in_process("specs")
    assert listing.returncode == 0 and all(n in listing.stdout for n in specs)
    # By name, or by its file in the package: relative paths from the current directory.
    monkeypatch.chdir(tmp_path)
    for given in ("emoji_study", "emoji_study.yaml", shipped_dir() / "emoji_study.yaml"):
        path, base = find_spec(given)
        assert path == shipped_dir().resolve() / "emoji_study.yaml" and base == tmp_path
    spec = load_spec("emoji_study")
    assert spec.targets == [str((tmp_path / "../shared/data/emoji/twemoji-faces").resolve())]
    own = tmp_path / "mine" / "s.yaml"
    own.parent.mkdir()
    shutil.copy(shipped_dir() / "emoji_study.yaml", own)
    assert find_spec(own)[1] == own.parent.resolve()  # a user's spec: its own folder
    dry = cli_in_process("launch", "emoji_study", "--dry-run")
    assert dry.returncode == 0 and "# 123 trials" in dry.stdout, dry.stderr
    bad = cli_in_process("launch", "no_such_spec")
    assert bad.returncode == 2 and "shipped: demo, " in bad.stderr


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py")
                                        if p.stem != "__init__"))
def test_every_benchmark_imports(name):
    """A benchmark is run by hand, so nothing else notices when a refactor breaks it (two
    imported ``gansweep.sweep.runner`` for months after it was split)."""
    importlib.import_module(f"benchmarks.{name}")
