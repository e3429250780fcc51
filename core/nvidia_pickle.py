"""NVIDIA's stylegan2-ada-pytorch network pickles, read without running their code.

Such a pickle (``network-snapshot-*.pkl``, the published FFHQ/AFHQ/MetFaces models) holds
every network as a call of ``torch_utils.persistence._reconstruct_persistent_obj(meta)``,
``meta`` = {type: 'class', version, module_src, class_name, state}; NVIDIA's loader rebuilds
the class by executing ``module_src``, the Python source stored in the file, so loading a
downloaded pickle runs whatever code it holds. ``read_network_pickle`` reads it with
core.safe_pickle instead, whose globals are behaviours of ours (``BEHAVIOURS``), each
validating its arguments and returning a fresh object:

- tensors: ``torch.storage._load_from_bytes`` (a storage in torch's legacy format, read by
  core.torch_files without torch.load), ``torch._utils._rebuild_tensor_v2`` and
  ``_rebuild_parameter`` (sizes, strides and offset inside the storage);
- plain data: ``collections.OrderedDict``, ``set`` and ``frozenset`` (globals below pickle
  protocol 4), ``dnnlib.util.EasyDict`` as a plain dict;
- numpy (``AugmentPipe`` holds numpy values): dtypes only of booleans and numbers, named by
  a short string, with the state a plain numeric dtype has (no objects, fields, subarrays
  or flags); arrays and scalars of those, their bytes exactly their size;
- a persistent object becomes a ``Persistent`` record of its class name and state (its
  ``_parameters``, ``_buffers``, ``_modules``, ``_init_args``/``_init_kwargs``, ...);
  ``module_src`` is kept as text and never executed.

Anything else (another global, a persistent id, ``BUILD`` on anything but a numpy record,
more data than the file could hold) is refused in one line, before it is looked up or
allocated. Neither ``torch_utils`` nor ``dnnlib`` is needed.
"""
from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gansweep.core.errors import GansweepError
from gansweep.core.pickle_parts import (
    Behaviour,
    Budget,
    Pending,
    Record,
    Refused,
    behaviour_of,
    plain_key,
    quote,
)
from gansweep.core.safe_pickle import unpickle
from gansweep.core.torch_files import BEHAVIOURS as TORCH_BEHAVIOURS
from gansweep.core.torch_files import (
    MAX_FILE_BYTES,
    StorageSpec,
    int_tuple,
    limits_for,
    read_legacy,
)

PERSISTENT = ("torch_utils.persistence", "_reconstruct_persistent_obj")


class EasyDict(dict):
    """What ``dnnlib.util.EasyDict`` (a dict with attribute access) is read as: a dict."""


@dataclass(frozen=True)
class Persistent(Record):
    """An inert record of one of NVIDIA's persistent network objects: its class name and
    its pickled ``__dict__`` (``state``). Its ``module_src`` is kept as text only."""

    class_name: str
    version: int
    state: dict[str, Any] = field(repr=False)
    module_src: str = field(repr=False)

    def children(self) -> list[Any]:
        return [self.state]

    def field(self, name: str) -> Any:
        """One entry of the object's state; a missing one is one line naming it."""
        if name not in self.state:
            raise GansweepError(f"{self.class_name} has no {name!r}: not a network of "
                                f"stylegan2-ada-pytorch")
        return self.state[name]

    def mapping(self, name: str) -> dict[str, Any]:
        """A dict entry of the object's state (``_modules``, ``_parameters``, ...)."""
        value = self.field(name)
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise GansweepError(f"{self.class_name}.{name}: a {type(value).__name__}, not a "
                                f"dict by names")
        return value

    def module(self, name: str) -> Persistent | None:
        """A sub-module by attribute name (None where the network has none)."""
        sub = self.mapping("_modules").get(name)  # None: no such sub-module
        if sub is not None and not isinstance(sub, Persistent):
            raise GansweepError(f"{self.class_name}.{quote(name)}: a {type(sub).__name__}, "
                                f"not one of NVIDIA's persistent network modules")
        return sub

    def tensors(self, prefix: str = "", seen: set[int] | None = None
                ) -> Iterator[tuple[str, torch.Tensor]]:
        """Every parameter and buffer, by its state-dict name (``mapping.fc0.weight``):
        parameters, then buffers, then the sub-modules', as ``nn.Module.state_dict`` orders
        them. A layer NVIDIA froze (Freeze-D) holds its weight as a buffer; both count. A
        module met twice is refused (``nn.Module`` would name its tensors once; a file
        could make the names exponentially many)."""
        seen = set() if seen is None else seen
        if id(self) in seen:
            raise GansweepError(f"{quote(prefix[:-1])}: a {self.class_name} met a second time "
                                f"(a module may be used once in a network)")
        seen.add(id(self))
        for group in ("_parameters", "_buffers"):
            for name, value in self.mapping(group).items():
                if value is None:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise GansweepError(f"{quote(prefix + name)}: a {type(value).__name__}, "
                                        f"not a tensor")
                yield prefix + name, value
        for name in self.mapping("_modules"):
            sub = self.module(name)
            if sub is not None:
                yield from sub.tensors(f"{prefix}{name}.", seen)


def _persistent(budget: Budget, meta: Any) -> Persistent:
    if not isinstance(meta, dict) or meta.get("type") != "class" or \
            not isinstance(meta.get("state"), dict):
        raise Refused(f"{PERSISTENT_NAME}: an object that is not a class instance "
                      f"(type {quote(meta.get('type') if isinstance(meta, dict) else meta)})")
    name, version, src = meta.get("class_name"), meta.get("version"), meta.get("module_src", "")
    if not isinstance(name, str) or not name.isidentifier() or len(name) > 100 or \
            not isinstance(src, str) or not (version is None or type(version) is int):
        raise Refused(f"{PERSISTENT_NAME}: a class name, version or source of the wrong type")
    return Persistent(name, version, meta["state"], src)


def _load_storage(budget: Budget, data: Any) -> torch.Tensor:
    """``torch.storage._load_from_bytes``: a storage in torch's legacy format, as a fresh
    1-D tensor (torch would unpickle these bytes with ``weights_only=False``)."""
    if not isinstance(data, bytes):
        raise Refused("torch.storage._load_from_bytes: its argument is not bytes")
    obj, storages = read_legacy(data, budget, budget.limits)
    if not isinstance(obj, StorageSpec):
        raise Refused(f"torch.storage._load_from_bytes: a {type(obj).__name__}, not a storage")
    return storages[obj.key]


_DTYPE = re.compile(r"[<>|=]?(?:[biufc][1-9]\d?|\?)")
# numpy's state of a plain dtype: (version, byte order, subarray, names, fields, itemsize,
# alignment, flags); itemsize and alignment are -1 where the type fixes them
_PLAIN_DTYPE_STATE = (None, None, None, -1, -1, 0)


def _numeric_dtype(text: Any) -> np.dtype:
    if not isinstance(text, str) or not _DTYPE.fullmatch(text):
        raise Refused(f"numpy.dtype {quote(text)}: not a boolean or numeric dtype")
    dtype = np.dtype(text)
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise Refused(f"numpy.dtype {text!r}: not a boolean or numeric dtype")
    return dtype


def _brief_tuple(state: Any) -> str:
    items = state if isinstance(state, tuple) else (state,)
    return ", ".join(quote(v) for v in items[:8])


class _Dtype(Pending):
    def __init__(self, text: Any):
        self.dtype = _numeric_dtype(text)

    def build(self, state: Any, budget: Budget) -> np.dtype:
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and
                state[1] in ("<", ">", "|", "=") and state[2:] == _PLAIN_DTYPE_STATE):
            raise Refused(f"numpy.dtype {self.dtype.str}: a state other than a plain "
                          f"numeric dtype's ({_brief_tuple(state)})")
        return self.dtype.newbyteorder(state[1]) if state[1] in "<>" else self.dtype


class _Array(Pending):
    def build(self, state: Any, budget: Budget) -> np.ndarray:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and
                isinstance(state[2], np.dtype) and isinstance(state[3], bool) and
                isinstance(state[4], bytes)):
            raise Refused("numpy array: a state other than (1, shape, dtype, fortran, bytes)")
        _, shape, dtype, fortran, raw = state
        shape = int_tuple(shape, "numpy array shape")
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise Refused(f"numpy array of shape {list(shape)}: {len(raw):,} bytes")
        budget.take(len(raw), "numpy array")
        return np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C").copy()


def _dtype(budget: Budget, text: Any, align: Any = False, copy: Any = True) -> _Dtype:
    if align is not False or copy is not True:
        raise Refused("numpy.dtype: aligned or uncopied")
    return _Dtype(text)


def _reconstruct(budget: Budget, cls: Any, shape: Any, typecode: Any) -> _Array:
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``, completed by its BUILD."""
    if behaviour_of(cls) is not BEHAVIOURS[("numpy", "ndarray")] or shape != (0,) or \
            typecode != b"b":
        raise Refused("numpy _reconstruct: not of a plain ndarray")
    return _Array()


def _scalar(budget: Budget, dtype: Any, data: Any) -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or \
            not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise Refused("numpy scalar: not the bytes of one number of a numeric dtype")
    return np.frombuffer(data, dtype, count=1)[0].copy()


def _collection(kind: type) -> Callable[..., Any]:
    def make(budget: Budget, items: Any = ()) -> Any:
        if not isinstance(items, (list, tuple)):
            raise Refused(f"builtins.{kind.__name__}: built from a {type(items).__name__}")
        return kind(plain_key(v, f"builtins.{kind.__name__}") for v in items)
    return make


def _easydict(budget: Budget, *args: Any) -> EasyDict:
    if args:
        raise Refused("dnnlib.util.EasyDict: built with arguments (only empty, then filled)")
    return EasyDict()


PERSISTENT_NAME = "torch_utils.persistence._reconstruct_persistent_obj"
BEHAVIOURS: dict[tuple[str, str], Behaviour] = {
    ("collections", "OrderedDict"): TORCH_BEHAVIOURS[("collections", "OrderedDict")],
    # below pickle protocol 4 (Python 3.7's default, NVIDIA's supported version) a set is a
    # call of builtins.set: every nn.Module holds one (_non_persistent_buffers_set)
    ("builtins", "set"): Behaviour("builtins.set", _collection(set)),
    ("builtins", "frozenset"): Behaviour("builtins.frozenset", _collection(frozenset)),
    ("torch._utils", "_rebuild_tensor_v2"): TORCH_BEHAVIOURS[("torch._utils",
                                                              "_rebuild_tensor_v2")],
    ("torch._utils", "_rebuild_parameter"): TORCH_BEHAVIOURS[("torch._utils",
                                                              "_rebuild_parameter")],
    ("torch.storage", "_load_from_bytes"): Behaviour("torch.storage._load_from_bytes",
                                                     _load_storage),
    ("dnnlib.util", "EasyDict"): Behaviour("dnnlib.util.EasyDict", _easydict, newobj=True),
    ("numpy", "dtype"): Behaviour("numpy.dtype", _dtype),
    ("numpy", "ndarray"): Behaviour("numpy.ndarray", None),  # _reconstruct's argument only
    **{(m, n): Behaviour(f"numpy {n}", call) for m in ("numpy.core.multiarray",
                                                       "numpy._core.multiarray")
       for n, call in (("scalar", _scalar), ("_reconstruct", _reconstruct))},
    PERSISTENT: Behaviour(PERSISTENT_NAME, _persistent),
}


def read_network_pickle(path: str | Path) -> dict[str, Any]:
    """The top-level dict of a stylegan2-ada-pytorch network pickle (``G``, ``D``, ``G_ema``,
    ``augment_pipe``, ``training_set_kwargs``), its networks as ``Persistent`` records; a
    file the reader will not build is one line naming what was wrong."""
    path = Path(path)
    if not path.is_file():
        raise GansweepError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise GansweepError(f"{path.name}: {size:,} bytes, more than the {MAX_FILE_BYTES:,} "
                            f"a network pickle may have")
    data = path.read_bytes()
    try:
        obj = unpickle(io.BytesIO(data), BEHAVIOURS, limits_for(size))
    except Refused as e:
        raise GansweepError(f"{path.name}: refused: {e}") from None
    if not isinstance(obj, dict):
        raise GansweepError(f"{path.name}: holds a {type(obj).__name__}, not the dict of "
                            f"networks a stylegan2-ada-pytorch snapshot is")
    return obj
