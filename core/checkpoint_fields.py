"""What resumes a run, checked before any of it is used (core.checkpoint).

A checkpoint from outside holds whatever ``torch.load(weights_only=True)`` allows; each
field ``restore`` and ``snapshot`` use is checked first, so a wrong one is one line, not a
traceback from deep in torch or a run that goes on with nonsense:

- on reading (``check_run_fields``, the file's path in its message): the types and sizes
  of the iteration, training time, history (a list of records of numbers by name), last
  losses, loss state, numerics, lean source, EMA generator, optimiser states and RNG
  states, none larger than a run writes;
- on resuming (``load_net``, ``load_optimizer``, ``load_rng``), against the run's own
  networks, optimisers and sampler: every tensor by name, shape, dtype and finite values,
  every optimiser group's settings and every parameter's state (what one real step of the
  same optimiser keeps), sampler indices inside the training set; torch's own load is then
  run with any error it still raises turned into one line.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from gansweep.core.errors import GansweepError
from gansweep.core.pickle_parts import first_line, quote

MAX_HISTORY, MAX_NAMES, MAX_CUDA_DEVICES, MAX_CUDA_STATE = 1_000_000, 4096, 64, 1 << 16
SHA256 = re.compile(r"[0-9a-f]{64}")


def number(value: Any) -> bool:
    """An int or float (not a flag, not a tensor)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: Any) -> bool:
    """A number that is not inf or NaN (an int always is: it may not fit a float)."""
    return number(value) and (isinstance(value, int) or math.isfinite(value))


def _setting(saved: Any, ours: Any) -> bool:
    """An optimiser setting as ours: a finite number of our type where ours is a number
    (lr, betas, ...), else equal (flags such as capturable must stay the run's)."""
    if number(ours):
        return type(saved) is type(ours) and finite(saved)
    if isinstance(ours, tuple):
        return isinstance(saved, tuple) and len(saved) == len(ours) and \
            all(_setting(s, o) for s, o in zip(saved, ours))
    return type(saved) is type(ours) and saved == ours


def _names(value: Any, ok: Callable[[Any], bool]) -> bool:
    """A dict of at most ``MAX_NAMES`` text keys whose values pass ``ok``."""
    return isinstance(value, dict) and len(value) <= MAX_NAMES and \
        all(isinstance(k, str) and ok(v) for k, v in value.items())


def _metric(value: Any) -> bool:
    return value is None or number(value)


def _record(value: Any) -> bool:
    """An evaluation record: numbers (or None) by name, per-class values by class name."""
    return _names(value, lambda v: _metric(v) or _names(v, _metric))


def _bytes_tensor(value: Any, numel: int | None = None) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and \
        value.dim() == 1 and (value.numel() == numel if numel is not None else
                              value.numel() <= MAX_CUDA_STATE)


def state_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in value.items())


def _optimizer_state(value: Any) -> bool:
    """torch's ``Optimizer.state_dict()``: {state: {index: {name: tensor or number}},
    param_groups: [{setting: value, params: [index, ...]}]} (checked against the run's
    optimiser on resume)."""
    if not (isinstance(value, dict) and set(value) == {"state", "param_groups"}):
        return False
    groups, states = value["param_groups"], value["state"]
    return isinstance(groups, list) and all(
        isinstance(g, dict) and all(isinstance(k, str) for k in g) and
        isinstance(g.get("params"), list) and all(type(i) is int for i in g["params"])
        for g in groups) and isinstance(states, dict) and all(
        type(i) is int and _names(s, lambda v: isinstance(v, torch.Tensor) or number(v))
        for i, s in states.items())


def check_run_fields(ckpt: dict[str, Any], bad: Callable[[str], GansweepError]) -> None:
    """The fields of a run's checkpoint that ``restore`` and ``snapshot`` use, of the types
    and sizes a run writes (``bad(what)``: the error naming the file)."""
    for key in ("iteration", "train_seconds", "history", "last_losses", "rng"):
        if key not in ckpt:
            raise bad(f"missing {key!r} (a run's checkpoint holds it)")
    iteration, seconds = ckpt["iteration"], ckpt["train_seconds"]
    if type(iteration) is not int or not 0 <= iteration < 2 ** 53:
        raise bad(f"its iteration {quote(iteration)} is not a count")
    if not finite(seconds) or not 0 <= seconds < 2 ** 53:
        raise bad(f"its train_seconds {quote(seconds)} is not a time")
    history = ckpt["history"]
    if not isinstance(history, list) or len(history) > MAX_HISTORY or \
            not all(_record(r) for r in history):
        raise bad(f"its history is not a list of at most {MAX_HISTORY:,} records of numbers "
                  f"by name")
    if not _names(ckpt["last_losses"], number) or not _names(ckpt.get("loss", {}), finite):
        raise bad("its last_losses or loss state is not numbers by name")
    numerics = ckpt.get("numerics", {})
    if not _names(numerics, lambda v: v is None or isinstance(v, (bool, str))) or any(
            isinstance(v, str) and len(v) > 200 for v in numerics.values()):
        raise bad("its numerics are not a record of short names and flags")
    try:
        torch.device(numerics.get("device", "cpu"))
    except (RuntimeError, TypeError) as e:
        raise bad(f"its numerics name no device ({first_line(e)})") from None
    source = ckpt.get("source")
    if type(ckpt.get("lean", False)) is not bool or (ckpt.get("lean") or source is not None) \
            and not (isinstance(source, dict) and isinstance(source.get("path"), str) and
                     isinstance(source.get("sha256"), str) and
                     SHA256.fullmatch(source["sha256"])):
        raise bad("its lean flag or source (a path and its sha256) is malformed")
    if ckpt.get("G_ema") is not None and not state_dict(ckpt["G_ema"]):
        raise bad("its G_ema is not a state dict of tensors")
    for key in ("opt_g", "opt_d"):
        if ckpt.get(key) is not None and not _optimizer_state(ckpt[key]):
            raise bad(f"its {key} is not an optimiser's state")
    rng = ckpt["rng"]
    sampler = rng.get("sampler") if isinstance(rng, dict) else None
    if not (isinstance(rng, dict) and _bytes_tensor(rng.get("torch"),
                                                    torch.get_rng_state().numel()) and
            isinstance(rng.get("cuda"), list) and len(rng["cuda"]) <= MAX_CUDA_DEVICES and
            all(_bytes_tensor(t) for t in rng["cuda"]) and isinstance(sampler, dict) and
            set(sampler) == {"generator", "perm", "pos"} and
            _bytes_tensor(sampler["generator"], torch.Generator().get_state().numel()) and
            isinstance(sampler["perm"], torch.Tensor) and sampler["perm"].dim() == 1 and
            sampler["perm"].dtype == torch.long and type(sampler["pos"]) is int and
            0 <= sampler["pos"] <= sampler["perm"].numel()):
        raise bad("its rng is not the torch, CUDA and sampler states a run writes")


def _fail(what: str) -> GansweepError:
    return GansweepError(f"checkpoint: {what}")


def load_net(net: nn.Module, state: dict[str, torch.Tensor], trainable: set[str] | None,
             what: str) -> None:
    """``state`` into ``net``: exactly its tensors by name (a lean checkpoint's only the
    ``trainable`` tensors and buffers: the frozen ones hold their source values already),
    each of our shape and dtype, finite."""
    ours = net.state_dict()
    expected = set(ours) if trainable is None else set(ours) & trainable
    if set(state) != expected:
        differ = ", ".join(quote(k) for k in sorted(set(state) ^ expected)[:3])
        raise _fail(f"a lean checkpoint must hold exactly the run's trainable tensors and "
                    f"buffers; these differ: {differ}" if trainable is not None else
                    f"its {what} does not fit this run's network (these differ: {differ})")
    for key, value in state.items():
        mine = ours[key]
        if value.shape != mine.shape or value.dtype != mine.dtype:
            raise _fail(f"its {what} {quote(key)} is {value.dtype} {list(value.shape)}; "
                        f"this run's is {mine.dtype} {list(mine.shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise _fail(f"its {what} {quote(key)} holds non-finite values")
    try:
        net.load_state_dict(state, strict=False)
    except (RuntimeError, ValueError, TypeError) as e:
        raise _fail(f"its {what} does not load ({first_line(e)})") from None


def _step_template(opt: torch.optim.Optimizer, group: Mapping[str, Any]) -> dict[str, Any]:
    """What one step of ``opt``'s kind, with ``group``'s settings, keeps per parameter."""
    p = nn.Parameter(torch.zeros(1))
    scratch = type(opt)([p], **{k: group[k] for k in opt.defaults if k in group})
    p.grad = torch.zeros(1)
    scratch.step()
    return dict(scratch.state[p])


def load_optimizer(opt: torch.optim.Optimizer, saved: dict[str, Any], what: str) -> None:
    """A saved optimiser state into the run's ``opt``: its groups of our sizes and setting
    types, each parameter's state what a step of ours keeps (a missing ``step`` would be a
    KeyError mid-run), of the parameter's shape, finite."""
    ours = opt.state_dict()["param_groups"]
    groups = saved["param_groups"]
    if len(groups) != len(ours) or any(
            set(g) != set(o) or len(g["params"]) != len(o["params"]) or
            len(set(g["params"])) != len(g["params"]) or
            not all(_setting(g[k], o[k]) for k in o if k != "params")
            for g, o in zip(groups, ours)):
        raise _fail(f"its {what} optimiser has other parameter groups or settings than "
                    f"this run's")
    params = {i: (p, o) for g, o, live in zip(groups, ours, opt.param_groups)
              for i, p in zip(g["params"], live["params"])}
    templates: dict[int, dict[str, Any]] = {}
    for i, state in saved["state"].items():
        if i not in params:
            raise _fail(f"its {what} optimiser holds state for no parameter ({i})")
        p, group = params[i]
        if id(group) not in templates:
            templates[id(group)] = _step_template(opt, group)
        template = templates[id(group)]
        if set(state) != set(template):
            raise _fail(f"its {what} optimiser state names {sorted(map(quote, state))[:4]}; "
                        f"a step keeps {sorted(template)}")
        for key, value in state.items():
            want = template[key]
            shape = p.shape if isinstance(want, torch.Tensor) and want.dim() else \
                getattr(want, "shape", None)
            if isinstance(want, torch.Tensor) != isinstance(value, torch.Tensor) or (
                    isinstance(value, torch.Tensor) and (
                        value.shape != shape or not value.is_floating_point() or
                        not bool(torch.isfinite(value).all()))) or (
                    not isinstance(value, torch.Tensor) and not finite(value)):
                raise _fail(f"its {what} optimiser's {quote(key)} of parameter {i} is not "
                            f"what a step keeps")
    try:
        opt.load_state_dict(saved)
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        raise _fail(f"its {what} optimiser does not load ({first_line(e)})") from None


def load_rng(rng: dict[str, Any], sampler: Any, cuda: bool) -> None:
    """The RNG states (checked for type and size on reading), the sampler's indices inside
    the run's training set."""
    perm = rng["sampler"]["perm"]
    if perm.numel() and not (0 <= int(perm.min()) and int(perm.max()) < sampler.n):
        raise _fail(f"its sampler draws images outside this run's {sampler.n}")
    try:
        torch.set_rng_state(rng["torch"])
        if cuda and rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        sampler.load_state_dict(rng["sampler"])
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        raise _fail(f"its random number generator states do not load "
                    f"({first_line(e)})") from None
