"""Reading a spec's YAML values: each checked for its type, each error naming the field and
the value, an unknown key answered with the closest valid one."""
from __future__ import annotations

import difflib
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from gansweep.core.errors import GansweepError


def suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(where: str, data: dict, valid: list[str]) -> None:
    for key in data:
        if key not in valid:
            raise GansweepError(f"{where}: unknown key {key!r}{suggest(str(key), valid)}; "
                                f"valid: {', '.join(valid)}")


def typed(where: str, value: Any, types: tuple[type, ...], what: str) -> Any:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise GansweepError(f"{where}: {value!r} is not {what}")
    return value


def as_list(where: str, value: Any) -> list:
    values = value if isinstance(value, list) else [value]
    seen = []
    for v in values:
        if v in seen:
            raise GansweepError(f"{where}: duplicate value {v!r}")
        seen.append(v)
    if not values:
        raise GansweepError(f"{where}: empty list")
    return values


def path(base: Path, where: str, value: Any, problems: list[str]) -> str:
    """An absolute path (relative to ``base``); a missing file is added to ``problems``."""
    typed(where, value, (str,), "a path")
    p = Path(value).expanduser()
    p = p if p.is_absolute() else (base / p)
    p = Path(str(p.resolve()))
    if not p.exists():
        problems.append(f"{where}: {value!r} does not exist ({p})")
    return str(p)


def section(where: str, data: Any, cls: type) -> Any:
    """A mapping read into the dataclass ``cls``, each field checked for its declared type."""
    if data is None:
        data = {}
    typed(where, data, (dict,), "a mapping")
    names = [f.name for f in fields(cls)]
    check_keys(where, data, names)
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.type in ("int", "int | None"):
            if value is None and "None" in f.type:
                kwargs[f.name] = None
                continue
            typed(f"{where}.{f.name}", value, (int,), "an integer")
            low = 0 if f.name == "eval_every" else 1
            if value < low:
                raise GansweepError(f"{where}.{f.name}: {value!r} must be an integer >= {low}")
        elif f.type == "float":
            typed(f"{where}.{f.name}", value, (int, float), "a number")
            value = float(value)
        elif f.type == "str":
            typed(f"{where}.{f.name}", value, (str,), "a string")
        elif f.type == "bool":
            typed(f"{where}.{f.name}", value, (bool,), "true or false")
        elif f.type == "dict":
            typed(f"{where}.{f.name}", value, (dict,), "a mapping")
        kwargs[f.name] = value
    required = [f.name for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING and f.name not in data]
    if required:
        raise GansweepError(f"{where}: missing required key {required[0]!r}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise GansweepError(f"{where}: {e}") from None
