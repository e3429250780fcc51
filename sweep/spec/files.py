"""Where specs come from: a YAML file, a shipped spec by name (``gansweep specs`` lists
them), or the spec a sweep recorded when it was launched. Each is validated by
``sweep.spec.validate.parse_spec``; this is the only module that reads a spec's YAML."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from gansweep.core.errors import GansweepError
from gansweep.sweep.spec.schema import SweepSpec
from gansweep.sweep.spec.validate import parse_spec

SHIPPED = "gansweep.search_spaces"  # the package whose *.yaml files are the shipped specs
SPEC_FILE = "gansweep/sweep.yaml"  # in a sweep directory: the spec as launched


def shipped_dir() -> Path:
    """The folder of the shipped specs (inside the installed package)."""
    return Path(str(resources.files(SHIPPED)))


def shipped_specs() -> dict[str, str]:
    """Shipped spec name -> its one-line ``description``."""
    out = {}
    for path in sorted(shipped_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        out[path.stem] = str(data.get("description", "")) if isinstance(data, dict) else ""
    return out


def find_spec(name_or_path: str | Path) -> tuple[Path, Path]:
    """A spec file given as a path or as the name of a shipped spec, and the folder its
    relative paths are relative to: the spec's own folder, except for a shipped spec,
    whose folder is inside the installed package: its paths are relative to the current
    directory."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_dir() / f"{path.name.removesuffix('.yaml')}.yaml"
        if path.parent != Path(".") or not shipped.is_file():
            names = ", ".join(shipped_specs())
            raise GansweepError(f"spec {name_or_path}: no such file, nor a shipped spec "
                                f"(shipped: {names})")
        path = shipped
    path = path.resolve()
    return path, Path.cwd() if path.parent == shipped_dir().resolve() else path.parent


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last
    silently, so the first would look set and be ignored)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read(path: Path) -> object:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except UnicodeDecodeError as e:
        raise GansweepError(f"spec {path}: not a text file (UTF-8): byte {e.start} cannot be "
                            f"read") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(e.problem or e.context or e).split())
        raise GansweepError(f"spec {path}: not valid YAML{at}: {what}") from None
    except yaml.YAMLError as e:
        raise GansweepError(f"spec {path}: not valid YAML ({str(e).splitlines()[0]})") from None


def load_spec(name_or_path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec (see ``find_spec`` for what relative paths mean).
    Missing files are collected in ``problems``."""
    path, base = find_spec(name_or_path)
    return parse_spec(_read(path), base, str(path))


def load_sweep_spec(sweep_dir: Path) -> SweepSpec:
    """The spec a sweep recorded at launch (its paths absolute), without reading its source
    checkpoints again: the status, the results and a resume read it this way."""
    path = Path(sweep_dir) / SPEC_FILE
    if not path.is_file():
        raise GansweepError(f"{sweep_dir}: not a gansweep sweep directory (no {SPEC_FILE})")
    return parse_spec(_read(path), Path(sweep_dir), str(path), read_sources=False)


def dump_spec(spec: SweepSpec) -> str:
    """The YAML a sweep records as its spec."""
    return yaml.safe_dump(spec.raw, sort_keys=False)
