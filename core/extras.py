"""Optional packages. Each is imported only where it is used, through ``require``, which turns
a missing one into one line naming the extra that installs it (``pip install
'gansweep[EXTRA]'``). Everything imported at module level is a declared dependency
(tests/test_dependencies.py checks both rules against pyproject.toml)."""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from gansweep.core.errors import GansweepError


def missing(module: str, extra: str, needed_for: str) -> GansweepError:
    return GansweepError(f"{needed_for} needs the {module!r} package, which is not installed: "
                         f"pip install 'gansweep[{extra}]'")


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import an optional package, or raise one line naming the extra that provides it."""
    if importlib.util.find_spec(module) is None:
        raise missing(module, extra, needed_for)
    return importlib.import_module(module)


def check(module: str, extra: str, needed_for: str) -> None:
    """Fail early, without importing it, when an optional package is missing."""
    if importlib.util.find_spec(module) is None:
        raise missing(module, extra, needed_for)
