"""NVIDIA's stylegan2-ada-pytorch network pickles, read without running their code.

Such a pickle (``network-snapshot-*.pkl``, the published FFHQ/AFHQ/MetFaces models) holds
every network as a call of ``torch_utils.persistence._reconstruct_persistent_obj(meta)``,
``meta`` = {type: 'class', version, module_src, class_name, state}; NVIDIA's loader rebuilds
the class by executing ``module_src``, the Python source stored in the file, so loading a
downloaded pickle runs whatever code it holds. ``read_network_pickle`` unpickles with an
allow-list instead:

- the tensor and storage rebuild functions (``torch._utils._rebuild_tensor_v2``,
  ``_rebuild_parameter``; ``torch.storage._load_from_bytes``, whose torch version unpickles
  the storage's bytes with ``weights_only=False``, is replaced by a ``weights_only=True``
  load of the same bytes), ``collections.OrderedDict``, ``set`` and ``frozenset`` (globals
  below pickle protocol 4), numpy's scalar, dtype and array reconstructors (``AugmentPipe``
  holds numpy values), and ``dnnlib.util.EasyDict`` as a plain dict;
- a persistent object becomes a ``Persistent`` record of its class name and state (its
  ``_parameters``, ``_buffers``, ``_modules``, ``_init_args``/``_init_kwargs``, ...);
  ``module_src`` is kept as text and never executed;
- any other global, and any persistent id, is refused in one line naming it, before it is
  looked up: nothing of the file's choosing is imported or called.

Neither ``torch_utils`` nor ``dnnlib`` is needed.
"""
from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gansweep.core.errors import GansweepError

PERSISTENT = ("torch_utils.persistence", "_reconstruct_persistent_obj")


class EasyDict(dict):
    """What ``dnnlib.util.EasyDict`` (a dict with attribute access) is read as: a dict."""


@dataclass(frozen=True)
class Persistent:
    """An inert record of one of NVIDIA's persistent network objects: its class name and
    its pickled ``__dict__`` (``state``). Its ``module_src`` is kept as text only."""

    class_name: str
    version: int
    state: dict[str, Any] = field(repr=False)
    module_src: str = field(repr=False)

    def field(self, name: str) -> Any:
        """One entry of the object's state; a missing one is one line naming it."""
        if name not in self.state:
            raise GansweepError(f"{self.class_name} has no {name!r}: not a network of "
                                f"stylegan2-ada-pytorch")
        return self.state[name]

    def module(self, name: str) -> Persistent | None:
        """A sub-module by attribute name (None where the network has none)."""
        sub = self.field("_modules").get(name)  # None: no such sub-module
        if sub is not None and not isinstance(sub, Persistent):
            raise GansweepError(f"{self.class_name}.{name}: a {type(sub).__name__}, not one "
                                f"of NVIDIA's persistent network modules")
        return sub

    def tensors(self, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
        """Every parameter and buffer, by its state-dict name (``mapping.fc0.weight``):
        parameters, then buffers, then the sub-modules', as ``nn.Module.state_dict`` orders
        them. A layer NVIDIA froze (Freeze-D) holds its weight as a buffer; both count."""
        for group in ("_parameters", "_buffers"):
            for name, value in self.field(group).items():
                if value is None:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise GansweepError(f"{prefix}{name}: a {type(value).__name__}, not a "
                                        f"tensor")
                yield prefix + name, value
        for name in self.field("_modules"):
            sub = self.module(name)
            if sub is not None:
                yield from sub.tensors(f"{prefix}{name}.")


def _persistent(meta: Any) -> Persistent:
    if not isinstance(meta, dict) or meta.get("type") != "class" or \
            not isinstance(meta.get("state"), dict):
        raise GansweepError(f"a persistent object that is not a class instance "
                            f"(type {meta.get('type') if isinstance(meta, dict) else meta!r})")
    return Persistent(str(meta.get("class_name")), meta.get("version"), meta["state"],
                      str(meta.get("module_src", "")))


def _load_storage(data: bytes) -> torch.TypedStorage:
    """A storage pickled by ``torch.save`` in its legacy format, as
    ``torch.storage._load_from_bytes`` reads it, but with ``weights_only=True``."""
    if not isinstance(data, bytes):
        raise GansweepError("torch.storage._load_from_bytes: its argument is not bytes")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.TypedStorage):
        raise GansweepError(f"torch.storage._load_from_bytes: a {type(storage).__name__}, "
                            f"not a storage")
    return storage


def _tensor(storage, offset, size, stride, requires_grad, hooks, metadata=None) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2``: a plain tensor, without hooks or metadata."""
    if hooks or metadata:
        raise GansweepError("torch._utils._rebuild_tensor_v2: a tensor with hooks or "
                            "metadata")
    if not isinstance(storage, torch.TypedStorage):
        raise GansweepError("torch._utils._rebuild_tensor_v2: its storage is not a storage")
    return torch._utils._rebuild_tensor(storage, offset, size, stride)


def _parameter(data, requires_grad, hooks) -> torch.Tensor:
    """``torch._utils._rebuild_parameter``: its tensor (parameters are copied into our
    modules, so the wrapper is not needed)."""
    if hooks or not isinstance(data, torch.Tensor):
        raise GansweepError("torch._utils._rebuild_parameter: not a plain tensor")
    return data


def _numpy(name: str) -> Callable:
    """numpy's pickle reconstructors, under numpy 1's and numpy 2's module names."""
    core = getattr(np, "_core", None) or np.core
    return getattr(core.multiarray, name)


ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    # below pickle protocol 4 (Python 3.7's default, NVIDIA's supported version) a set is a
    # call of builtins.set: every nn.Module holds one (_non_persistent_buffers_set)
    ("builtins", "set"): lambda: set,
    ("builtins", "frozenset"): lambda: frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: _tensor,
    ("torch._utils", "_rebuild_parameter"): lambda: _parameter,
    ("torch.storage", "_load_from_bytes"): lambda: _load_storage,
    ("dnnlib.util", "EasyDict"): lambda: EasyDict,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy", "ndarray"): lambda: np.ndarray,
    **{(m, n): (lambda n=n: _numpy(n)) for m in ("numpy.core.multiarray",
                                                 "numpy._core.multiarray")
       for n in ("scalar", "_reconstruct")},
    PERSISTENT: lambda: _persistent,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the ``ALLOWED`` globals (every callable a pickle can
    reach comes through ``find_class``) and no persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        make = ALLOWED.get((module, name))
        if make is None:
            raise GansweepError(f"refuses the global {module}.{name}: not a tensor, storage "
                                f"or plain-data constructor of a network pickle (nothing was "
                                f"run)")
        return make()

    def persistent_load(self, pid: Any) -> Any:
        raise GansweepError(f"refuses the persistent id {str(pid)[:60]!r}: not a network "
                            f"pickle of stylegan2-ada-pytorch")


def read_network_pickle(path: str | Path) -> dict[str, Any]:
    """The top-level dict of a stylegan2-ada-pytorch network pickle (``G``, ``D``, ``G_ema``,
    ``augment_pipe``, ``training_set_kwargs``), its networks as ``Persistent`` records."""
    path = Path(path)
    if not path.is_file():
        raise GansweepError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except GansweepError as e:
        raise GansweepError(f"{path.name}: {e}") from None
    except Exception as e:  # noqa: BLE001 -- truncated, not a pickle, a malformed opcode, ...
        raise GansweepError(f"{path.name}: not a readable network pickle ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if not isinstance(data, dict):
        raise GansweepError(f"{path.name}: holds a {type(data).__name__}, not the dict of "
                            f"networks a stylegan2-ada-pytorch snapshot is")
    return data
