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
- containers hold only what the machine made; dict and set keys are text or integers
  below 2**31 (whose hashes all differ: no file can make a dict's lookups collide);
- every string, bytes object, container, array, memo entry and stack copy counts
  against ``Limits.max_bytes``, every opcode against ``max_ops`` (one budget for a file
  and the pickles nested in it), every container insertion and open MARK against
  ``max_depth``, while reading; the result is walked once more for depth, for records
  used before they were built, and for its size as a tree (``max_nodes``: an object used
  twice counts twice, so shared parts cannot make a later walk of it exponential);
- any other opcode (``INST``, ``OBJ``, ``EXT*``, out-of-band buffers, ...) and any
  persistent id the caller does not read is refused.

A refusal is a ``Refused`` error: one line naming the opcode or global and what was wrong
(any error an object's construction raises included); file content in it is ``quote``d.
The machine's vocabulary (limits, budget, behaviours, records, ``plain_key``, ``quote``)
is core.pickle_parts.
"""
from __future__ import annotations

import io
import pickletools
from collections.abc import Callable, Mapping
from typing import Any

from gansweep.core.errors import GansweepError
from gansweep.core.pickle_parts import (
    Behaviour,
    Budget,
    Global,
    Limits,
    Malformed,
    Pending,
    Record,
    Refused,
    StateDict,
    describe,
    first_line,
    plain_key,
    quote,
)

CONTAINER_BYTES = 128  # what an empty container costs here, counted against the budget
# what the machine's own bookkeeping costs: a memo entry (its key object and dict slot), a
# stack slot (DUP); marks are freed as they are used: at most as many open as the nesting
MEMO_BYTES, SLOT_BYTES = 64, 8
CALL_BYTES = 512  # what a call's result costs at least (a tensor object, a dict), besides data
MAX_MEMO_KEY = 2 ** 32  # LONG_BINPUT's range: PUT's decimal text may say anything
_IGNORED = {"PROTO", "FRAME"}  # framing only: genops reads through frames
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
            "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
_NUMBERS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT",
            "BINFLOAT"}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


class Machine:
    """One stream's reader; ``load`` returns its object."""

    def __init__(self, behaviours: Mapping[tuple[str, str], Behaviour], limits: Limits,
                 persistent_load: Callable[[Any], Any] | None = None,
                 budget: Budget | None = None):
        self.behaviours, self.limits = behaviours, limits
        self.persistent_load = persistent_load
        self.budget = budget or Budget(limits)
        self.op = "PROTO"  # the opcode being read (what an unforeseen error names)
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

    def _made(self, value: Any, op: str) -> Any:
        """A call's or BUILD's result: a record joins the depth count with its children."""
        if isinstance(value, Record):
            self._container(value)
            self._nest(value, value.children(), op)
        return value

    def _guarded(self, what: str, make: Callable[..., Any], *args: Any) -> Any:
        """``make(*args)``, any error it raises one refusal naming ``what``: a wrong
        argument count, a name ``argparse.Namespace`` cannot set, one no check foresaw."""
        try:
            return make(*args)
        except GansweepError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError,
                RuntimeError) as e:
            raise Refused(f"{what}: {type(e).__name__}: {first_line(e)}") from None

    def _call(self, g: Any, args: Any, op: str) -> Any:
        if not isinstance(g, Global):
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
        # every result costs memory whatever it reports itself (an empty tensor ~430 bytes)
        self.budget.take(CALL_BYTES, op)
        value = self._guarded(f"{op} of {b.name}", b.call, self.budget, *args)
        if isinstance(value, Pending):
            value.made_by = b.name  # what its BUILD's refusals name
        return self._made(value, op)

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
            op = self.op = opcode.name
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
                if len(marks) >= 2 * self.limits.max_depth:  # a pickler opens one a level
                    raise Refused(f"MARK: more than {2 * self.limits.max_depth} open at once")
                marks.append(len(stack))
            elif op in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                key = len(memo) if op == "MEMOIZE" else arg
                if type(key) is not int or not 0 <= key < MAX_MEMO_KEY:
                    raise Refused(f"{op} {quote(key)}: not a memo index below 2**32")
                value = top(op)
                if key not in memo:
                    budget.take(MEMO_BYTES, op)
                memo[key] = value
                if isinstance(value, Pending):
                    pending_memo.setdefault(id(value), []).append(key)
            elif op in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise Refused(f"{op} {quote(arg)}: nothing memoized there")
                budget.take(SLOT_BYTES, op)
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
                budget.take(SLOT_BYTES, op)
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
                    raise Refused(f"refuses the global {quote(f'{module}.{name}')}: not one "
                                  f"this file type may hold (nothing was imported or run)")
                stack.append(Global(behaviour))
            elif op in ("REDUCE", "NEWOBJ"):
                args = pop(op)
                stack.append(self._call(pop(op), args, op))
            elif op == "BUILD":
                state = pop(op)
                target = top(op)
                if isinstance(target, StateDict):
                    self._guarded("BUILD of collections.OrderedDict", target.build, state)
                    continue
                if not isinstance(target, Pending):
                    raise Refused(f"BUILD on a {describe(target)}: only the records this "
                                  f"reader makes may be built")
                value = self._made(self._guarded(
                    f"BUILD of {getattr(target, 'made_by', describe(target))}", target.build,
                    state, self.budget), op)
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
        within bound (insertion order can hide depth from the running count), and its size
        as a tree, an object counted once per use: shared parts (a memoized list in ten
        places, ten levels deep) would make any later walk of it exponential."""
        done: dict[int, tuple[int, int]] = {}  # id -> (depth, size as a tree)
        on_path: set[int] = set()
        work: list[tuple[Any, bool]] = [(result, False)]
        limits = self.limits
        while work:
            obj, leaving = work.pop()
            if isinstance(obj, Pending):
                raise Refused("a record used before its BUILD")
            if not leaving and id(obj) in done:
                continue
            children = list(obj.values()) if isinstance(obj, dict) else \
                list(obj) if isinstance(obj, (list, tuple)) else \
                obj.children() if isinstance(obj, Record) else []
            if isinstance(obj, StateDict) and getattr(obj, "_metadata", None) is not None:
                children.append(obj._metadata)
            if leaving:
                on_path.discard(id(obj))
                depth, size = 1, 1
                for c in children:  # a leaf (never in done): depth 0, one object
                    d, n = done.get(id(c), (0, 1))
                    depth, size = max(depth, d + 1), size + n
                if depth > limits.max_depth:
                    raise Refused(f"nesting deeper than {limits.max_depth}")
                if size > limits.max_nodes:
                    raise Refused(f"more than {limits.max_nodes:,} objects where each use "
                                  f"of a shared one counts (the bound for this file)")
                done[id(obj)] = depth, size
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
    machine = Machine(behaviours, limits, persistent_load, budget)
    try:
        return machine.load(stream)
    except GansweepError:
        raise
    except RecursionError:
        raise Refused("nesting too deep to read") from None
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        # genops: a truncated stream, an unknown opcode, a malformed argument
        raise Malformed(f"not a well-formed pickle ({type(e).__name__}: "
                        f"{first_line(e)})") from None
    except (TypeError, KeyError, IndexError, AttributeError, RuntimeError) as e:
        # one no check foresaw: still one line, naming the opcode
        raise Refused(f"{machine.op}: {type(e).__name__}: {first_line(e)}") from None
