"""What core.safe_pickle's machine works with: its refusals, its limits and the budget a
file spends against them, the behaviours that stand for allowed globals, the records they
make, and how file content may appear in a dict's keys (``plain_key``) and in a message
(``quote``)."""
from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gansweep.core.errors import GansweepError


class Refused(GansweepError):
    """A stream the reader will not build: one line naming what was wrong."""


class Malformed(Refused):
    """A stream that is not a pickle at all (truncated, an unknown opcode, ...)."""


@dataclass(frozen=True)
class Limits:
    """What one stream may create (checked while reading)."""

    max_bytes: int  # strings, bytes and arrays together
    max_ops: int = 2_000_000
    max_depth: int = 64
    max_nodes: int = 4_000_000  # the result's objects, each counted once per use


class Budget:
    """What a file has created so far (bytes, opcodes), against its limits: one budget for
    the file and every pickle nested in it."""

    def __init__(self, limits: Limits):
        self.limits, self.used, self.ops = limits, 0, 0

    def take(self, nbytes: int, what: str) -> None:
        self.used += nbytes
        if self.used > self.limits.max_bytes:
            raise Refused(f"{what} takes the data past {self.limits.max_bytes:,} bytes "
                          f"(the bound for this file)")


@dataclass(frozen=True)
class Behaviour:
    """What an allowed global may do. ``call(budget, *args)`` returns a fresh object of
    ours (REDUCE; NEWOBJ where ``newobj``); None: the global may only be passed as an
    argument (a marker such as numpy's ``ndarray`` for ``_reconstruct``)."""

    name: str
    call: Callable[..., Any] | None
    newobj: bool = False


class Record:
    """A finished object of ours that holds stream data (walked by the final check)."""

    def children(self) -> list[Any]:
        raise NotImplementedError


class Pending:
    """An object a call made that the stream must complete with one ``BUILD``: ``build``
    validates the state and returns the finished value."""

    def build(self, state: Any, budget: Budget) -> Any:
        raise NotImplementedError


class StateDict(collections.OrderedDict):
    """``collections.OrderedDict`` as read: the one dict ``BUILD`` may complete, once,
    with nothing but torch's ``_metadata`` (its modules' versions, which
    ``load_state_dict`` compares with integers)."""

    def build(self, state: Any) -> None:
        meta = state.get("_metadata", {}) if isinstance(state, dict) else None
        if getattr(self, "_metadata", None) is not None or not isinstance(meta, dict) or \
                set(state) - {"_metadata"} or not _versions(meta):
            raise Refused("BUILD on an OrderedDict with a state other than torch's _metadata")
        self._metadata = meta


def _versions(meta: dict) -> bool:
    """{module: {"version": 1, hook: {"weight.version": 1}}}: text keys, integers or None."""
    seen: set[tuple[int, bool]] = set()

    def entries(d: Any, nested: bool) -> bool:
        if not isinstance(d, dict) or (id(d), nested) in seen:
            return isinstance(d, dict)
        seen.add((id(d), nested))
        return all(isinstance(k, str) and (v is None or type(v) is int or
                                           (nested and entries(v, False)))
                   for k, v in d.items())

    return all(isinstance(k, str) and entries(v, True) for k, v in meta.items())


class Global:
    """A looked-up global on the stack: a behaviour, never the object itself."""

    def __init__(self, behaviour: Behaviour):
        self.behaviour = behaviour


MAX_KEY = 2 ** 31  # integer dict keys and set items: every hash distinct
QUOTE_CHARS = 80  # a long state-dict key whole; a crafted 5 MB one cut


def quote(value: Any) -> str:
    """File content (a name, a key, a value) in a message: at most ``QUOTE_CHARS``
    characters of its text and '…' where there is more; a structure only by its type (its
    text could be exponential in its size)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length():,} bits"
    if isinstance(value, (str, bytes)):
        return repr(value[:QUOTE_CHARS]) + ("…" if len(value) > QUOTE_CHARS else "")
    if isinstance(value, (type(None), bool, int, float)):
        text = repr(value)
        return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"
    return describe(value)


def first_line(error: BaseException, chars: int = 100) -> str:
    """An exception's message in a refusal: its first line, at most ``chars`` long."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= chars else line[:chars] + "…"


def plain_key(value: Any, where: str) -> Any:
    """A dict key or set item: text (its hash is randomised), an integer below 2**31 in
    magnitude (their hashes all differ), True, False or None: nothing whose hashes a file
    could make collide (``k * (2**61 - 1)`` all hash alike: each insertion a scan)."""
    if isinstance(value, str) or value is None or isinstance(value, bool) or \
            (type(value) is int and -MAX_KEY < value < MAX_KEY):
        return value
    shown = f" {quote(value)}" if isinstance(value, (int, float, str, bytes)) else ""
    raise Refused(f"{where}: a key{shown} of type {type(value).__name__} (only text or an "
                  f"integer below 2**31)")


def describe(value: Any) -> str:
    return value.behaviour.name if isinstance(value, Global) else type(value).__name__


def behaviour_of(value: Any) -> Behaviour | None:
    """The behaviour a global argument stands for (None: not a global)."""
    return value.behaviour if isinstance(value, Global) else None
