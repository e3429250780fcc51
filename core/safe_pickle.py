"""A pickle reader for files from outside: an allow-list of behaviours, not of names.

Python's unpickler resolves a global by importing it and then calls it, sets state on
whatever object the stream built (``BUILD``), and grows its memo to any index it is given;
an allow-list of names on top of it still lets a file reach code through the allowed
objects (a numpy dtype whose state claims it holds no objects reads attacker bytes as a
pointer). This one is a small stack machine of its own over ``pickletools.genops`` (the
standard library's opcode parser, which only parses):

- a global is a ``Behaviour`` of ours, looked up by name and never imported; only its
  ``call`` runs, on arguments it validates, and it returns a fresh object of ours;
- ``BUILD`` applies only to a ``Pending`` record one of those calls made and has not yet
  built (never to a class, function, module or container of the stream's choosing);
- containers hold only what the machine made; dict and set keys are plain values;
- every string, bytes object, container and array counts against ``Limits.max_bytes``,
  every opcode against ``max_ops`` (one budget for a file and the pickles nested in it),
  and every container insertion against ``max_depth``, while reading;
  the result is walked once more for depth and for records used before they were built;
- any other opcode (``INST``, ``OBJ``, ``EXT*``, out-of-band buffers, ...) and any
  persistent id the caller does not read is refused.

A refusal is a ``Refused`` error: one line naming the opcode or global and what was wrong.
"""
from __future__ import annotations

import collections
import io
import pickletools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gansweep.core.errors import GansweepError

PLAIN = (type(None), bool, int, float, str, bytes)


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
    with nothing but torch's ``_metadata`` (its modules' versions)."""

    def build(self, state: Any) -> None:
        if getattr(self, "_metadata", None) is not None or not isinstance(state, dict) or \
                set(state) - {"_metadata"} or not isinstance(state.get("_metadata", {}), dict):
            raise Refused("BUILD on an OrderedDict with a state other than torch's _metadata")
        self._metadata = state.get("_metadata", {})


class _Global:
    """A looked-up global on the stack: a behaviour, never the object itself."""

    def __init__(self, behaviour: Behaviour):
        self.behaviour = behaviour


CONTAINER_BYTES = 128  # what an empty container costs here, counted against the budget
_IGNORED = {"PROTO", "FRAME"}  # framing only: genops reads through frames
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
            "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
_NUMBERS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT",
            "BINFLOAT"}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def brief(value: Any) -> str:
    """A stream value in a message: short, and never a walk of a structure (whose text
    could be exponential in its size)."""
    if isinstance(value, (str, bytes)):
        return repr(value[:40])
    if isinstance(value, (type(None), bool, int, float)):
        return repr(value)[:40]
    return describe(value)


def plain_key(value: Any, where: str) -> Any:
    """A dict key or set item: a plain value or a tuple of them (hashing runs no code)."""
    if isinstance(value, PLAIN) or (isinstance(value, tuple) and
                                    all(isinstance(v, PLAIN) for v in value)):
        return value
    raise Refused(f"{where}: a key of type {type(value).__name__} (only plain values)")


def describe(value: Any) -> str:
    return value.behaviour.name if isinstance(value, _Global) else type(value).__name__


def behaviour_of(value: Any) -> Behaviour | None:
    """The behaviour a global argument stands for (None: not a global)."""
    return value.behaviour if isinstance(value, _Global) else None


class Machine:
    """One stream's reader; ``load`` returns its object."""

    def __init__(self, behaviours: Mapping[tuple[str, str], Behaviour], limits: Limits,
                 persistent_load: Callable[[Any], Any] | None = None,
                 budget: Budget | None = None):
        self.behaviours, self.limits = behaviours, limits
        self.persistent_load = persistent_load
        self.budget = budget or Budget(limits)
        self.depth: dict[int, int] = {}  # id(container) -> nesting depth seen so far
        self.keep: list[Any] = []  # the containers depth knows of, so their ids stay theirs

    # --- the stack's containers -------------------------------------------------------
    def _container(self, obj: Any) -> Any:
        self.budget.take(CONTAINER_BYTES, "a container")  # its memory, beyond its byte
        self.depth[id(obj)] = 1
        self.keep.append(obj)
        return obj

    def _nest(self, container: Any, items: list[Any], op: str) -> None:
        deepest = max((self.depth.get(id(v), 0) for v in items), default=0) + 1
        if deepest > self.depth.get(id(container), 1):
            if deepest > self.limits.max_depth:
                raise Refused(f"{op}: nesting deeper than {self.limits.max_depth}")
            self.depth[id(container)] = deepest

    def _tuple(self, items: list[Any], op: str) -> tuple:
        t = self._container(tuple(items))
        self._nest(t, items, op)
        return t

    def _call(self, g: Any, args: Any, op: str) -> Any:
        if not isinstance(g, _Global):
            raise Refused(f"{op} on a {describe(g)}, not an allowed global")
        b = g.behaviour
        if b.call is None or (op == "NEWOBJ" and not b.newobj):
            raise Refused(f"{op} of {b.name}: not something it may do")
        if not isinstance(args, tuple):
            raise Refused(f"{op} of {b.name}: its arguments are a {describe(args)}, "
                          f"not a tuple")
        for a in args:
            if isinstance(a, Pending):
                raise Refused(f"{op} of {b.name}: an argument used before it was built")
        try:
            return b.call(self.budget, *args)
        except GansweepError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, OverflowError,
                RuntimeError) as e:  # a wrong argument count, or one no check foresaw
            raise Refused(f"{op} of {b.name}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:100] if str(e) else ''}") from None

    # --- the machine ------------------------------------------------------------------
    def load(self, stream: io.BytesIO) -> Any:
        stack: list[Any] = []
        marks: list[int] = []
        memo: dict[int, Any] = {}
        pending_memo: dict[int, list[int]] = {}  # id(Pending) -> its memo slots

        def pop_mark(op: str) -> list[Any]:
            if not marks:
                raise Refused(f"{op} without a MARK")
            at = marks.pop()
            items = stack[at:]
            del stack[at:]
            return items

        def top(op: str) -> Any:
            if not stack or (marks and len(stack) <= marks[-1]):
                raise Refused(f"{op} on an empty stack")
            return stack[-1]

        def pop(op: str) -> Any:
            value = top(op)
            stack.pop()
            return value

        budget = self.budget
        for opcode, arg, _ in pickletools.genops(stream):
            op = opcode.name
            budget.ops += 1
            if budget.ops > self.limits.max_ops:
                raise Refused(f"more than {self.limits.max_ops:,} opcodes")
            if op in _STRINGS:
                self.budget.take(len(arg), op)
                stack.append(arg)
            elif op in _NUMBERS:
                if isinstance(arg, int) and arg.bit_length() > 128:
                    raise Refused(f"{op}: an integer of {arg.bit_length()} bits")
                stack.append(arg)
            elif op in _CONSTANTS:
                stack.append(_CONSTANTS[op])
            elif op == "MARK":
                marks.append(len(stack))
            elif op in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                key = len(memo) if op == "MEMOIZE" else arg
                value = top(op)
                memo[key] = value
                if isinstance(value, Pending):
                    pending_memo.setdefault(id(value), []).append(key)
            elif op in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise Refused(f"{op} {arg}: nothing memoized there")
                stack.append(memo[arg])
            elif op in _IGNORED:
                pass
            elif op == "STOP":
                result = pop(op)
                if stack or marks:
                    raise Refused("STOP with more than one object left")
                return self.finish(result)
            elif op == "POP":
                pop(op)
            elif op == "POP_MARK":
                pop_mark(op)
            elif op == "DUP":
                stack.append(top(op))
            elif op in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
                stack.append(self._container({"EMPTY_LIST": list, "EMPTY_DICT": dict,
                                              "EMPTY_SET": set}[op]()))
            elif op == "EMPTY_TUPLE":
                stack.append(())
            elif op in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(op[-1])
                items = [pop(op) for _ in range(n)][::-1]
                stack.append(self._tuple(items, op))
            elif op == "TUPLE":
                stack.append(self._tuple(pop_mark(op), op))
            elif op == "LIST":
                stack.append(self._container(pop_mark(op)))
                self._nest(stack[-1], stack[-1], op)
            elif op in ("APPEND", "APPENDS"):
                items = [pop(op)] if op == "APPEND" else pop_mark(op)
                target = top(op)
                if type(target) is not list:
                    raise Refused(f"{op} to a {describe(target)}, not a list")
                self._nest(target, items, op)
                target.extend(items)
            elif op in ("DICT", "SETITEM", "SETITEMS"):
                items = [pop(op), pop(op)][::-1] if op == "SETITEM" else pop_mark(op)
                if len(items) % 2:
                    raise Refused(f"{op}: an odd number of keys and values")
                target = self._container({}) if op == "DICT" else top(op)
                if not isinstance(target, dict):
                    raise Refused(f"{op} on a {describe(target)}, not a dict")
                self._nest(target, items[1::2], op)
                for k, v in zip(items[::2], items[1::2]):
                    target[plain_key(k, op)] = v  # a dict of ours: no code of the file's
                if op == "DICT":
                    stack.append(target)
            elif op in ("ADDITEMS", "FROZENSET"):
                items = [plain_key(v, op) for v in pop_mark(op)]
                if op == "FROZENSET":
                    stack.append(frozenset(items))
                else:
                    target = top(op)
                    if type(target) is not set:
                        raise Refused(f"{op} to a {describe(target)}, not a set")
                    target.update(items)
            elif op in ("GLOBAL", "STACK_GLOBAL"):
                if op == "GLOBAL":
                    module, _, name = arg.partition(" ")
                else:
                    name, module = pop(op), pop(op)
                    if not (isinstance(module, str) and isinstance(name, str)):
                        raise Refused(f"{op}: a name that is not text")
                behaviour = self.behaviours.get((module, name))
                if behaviour is None:
                    raise Refused(f"refuses the global {module[:60]}.{name[:60]}: not one "
                                  f"this file type may hold (nothing was imported or run)")
                stack.append(_Global(behaviour))
            elif op in ("REDUCE", "NEWOBJ"):
                args = pop(op)
                stack.append(self._call(pop(op), args, op))
            elif op == "BUILD":
                state = pop(op)
                target = top(op)
                if isinstance(target, StateDict):
                    target.build(state)
                    continue
                if not isinstance(target, Pending):
                    raise Refused(f"BUILD on a {describe(target)}: only the records this "
                                  f"reader makes may be built")
                value = target.build(state, self.budget)
                stack[-1] = value
                for key in pending_memo.pop(id(target), []):
                    memo[key] = value
            elif op in ("PERSID", "BINPERSID") and self.persistent_load is not None:
                stack.append(self.persistent_load(pop(op)))
            else:
                raise Refused(f"refuses the opcode {op}: not one a file of tensors and "
                              f"plain data needs (nothing was run)")
        raise Malformed("the pickle ends before its STOP")

    def finish(self, result: Any) -> Any:
        """The stream's object, walked once: no record left unbuilt, no cycle, the depth
        within bound (insertion order can hide depth from the running count)."""
        done: dict[int, int] = {}
        on_path: set[int] = set()
        work: list[tuple[Any, bool]] = [(result, False)]
        while work:
            obj, leaving = work.pop()
            if isinstance(obj, Pending):
                raise Refused("a record used before its BUILD")
            if not leaving and id(obj) in done:
                continue
            children = list(obj.values()) if isinstance(obj, dict) else \
                list(obj) if isinstance(obj, (list, tuple)) else \
                obj.children() if isinstance(obj, Record) else ()
            if leaving:
                on_path.discard(id(obj))
                depth = 1 + max((done.get(id(c), 0) for c in children), default=0)
                if depth > self.limits.max_depth:
                    raise Refused(f"nesting deeper than {self.limits.max_depth}")
                done[id(obj)] = depth
                continue
            if not children:
                continue
            if id(obj) in on_path:
                raise Refused("a container that holds itself")
            on_path.add(id(obj))
            work.append((obj, True))
            work.extend((c, False) for c in children)
        return result


def unpickle(stream: io.BytesIO, behaviours: Mapping[tuple[str, str], Behaviour],
             limits: Limits, persistent_load: Callable[[Any], Any] | None = None,
             budget: Budget | None = None) -> Any:
    """One pickle from ``stream`` (which is left just after its STOP). Anything the
    reader will not build is a ``Refused`` error; a malformed stream one too."""
    try:
        return Machine(behaviours, limits, persistent_load, budget).load(stream)
    except GansweepError:
        raise
    except RecursionError:
        raise Refused("nesting too deep to read") from None
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        # genops: a truncated stream, an unknown opcode, a malformed argument
        first = str(e).splitlines()[0][:100] if str(e) else ""
        raise Malformed(f"not a well-formed pickle ({type(e).__name__}: {first})") from None
