"""PyTorch files from outside, checked before anything is allocated.

``torch.load(weights_only=True)`` refuses code, but sizes are the file's word: a storage
claims its element count, a tensor its offset, size and strides. ``load_torch_file`` first
reads the file's own description with core.safe_pickle and checks every size against
what is really there, then lets torch load it:

- the file is at most ``MAX_FILE_BYTES``; its format is decided as torch decides it (by
  its first bytes); a zip archive (``torch.save``'s format) has exactly the layout torch
  writes (core.zip_layout: the checker and torch read the same members), few entries,
  all in its first entry's folder (where torch reads), no two names equal ignoring case
  (torch matches them so), none compressed (torch stores them as they are: a compressed
  entry could inflate), its ``data.pkl`` small;
- every storage it names exists, little-endian, holding exactly the bytes its element
  count says; every tensor has non-negative sizes and strides, its offset plus extent
  inside its storage, and no more elements than its storage (a stride-0 tensor cannot
  make a network of a few bytes), and every tensor's bytes count against the file's
  budget even where tensors share a storage (an importer copies each one);
- the globals are torch's tensor and storage rebuilds and ``OrderedDict`` (plus what the
  caller allows, such as rosinality's ``argparse.Namespace``: public names only, its
  values walked like a dict's), each a behaviour of core.safe_pickle.

torch's legacy format (a stream of pickles and raw storages, what
``torch.storage._load_from_bytes`` reads inside NVIDIA's pickles) is read here entirely,
without torch.load: ``read_legacy``.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import struct
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gansweep.core.errors import GansweepError
from gansweep.core.pickle_parts import (
    Behaviour,
    Budget,
    Limits,
    Malformed,
    Pending,
    Record,
    Refused,
    StateDict,
    behaviour_of,
    first_line,
    plain_key,
    quote,
)
from gansweep.core.safe_pickle import unpickle
from gansweep.core.zip_layout import check_archive

MAX_FILE_BYTES = 16 * 2 ** 30
MAX_ENTRIES = 100_000
MAX_PICKLE_BYTES = 256 * 2 ** 20
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64,
            "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
            "LongStorage": torch.int64, "IntStorage": torch.int32,
            "ShortStorage": torch.int16, "CharStorage": torch.int8,
            "ByteStorage": torch.uint8, "BoolStorage": torch.bool}


@dataclass(frozen=True)
class StorageSpec:
    """A storage as a file describes it, before (or instead of) its bytes are read."""

    dtype: torch.dtype
    numel: int
    key: str


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as a file describes it (what a scan returns in place of the tensor)."""

    dtype: torch.dtype
    shape: tuple[int, ...]


def limits_for(nbytes: int) -> Limits:
    """What a file of ``nbytes`` may create: a few times its own size (each tensor is a
    copy of part of a storage the file holds), as many opcodes as it has bytes, and a
    result of twice as many objects, each counted once per use."""
    ops = min(nbytes + 16, 20_000_000)
    return Limits(max_bytes=4 * nbytes + 2 ** 20, max_ops=ops, max_nodes=2 * ops + 2 ** 16)


def int_tuple(value: Any, what: str) -> tuple[int, ...]:
    """A shape or strides: at most 16 non-negative integers (bools are not integers)."""
    if not isinstance(value, tuple) or len(value) > 16 or \
            not all(type(v) is int and 0 <= v < 2 ** 48 for v in value):
        raise Refused(f"{what}: not a tuple of at most 16 non-negative integers")
    return value


def _empty(value: Any) -> bool:
    """No hooks or metadata: None or an empty dict (never a truth test of a stream value)."""
    return value is None or (isinstance(value, dict) and len(value) == 0)


def rebuild_tensor(budget: Budget, storage: Any, offset: Any, size: Any, stride: Any,
                   requires_grad: Any = False, hooks: Any = None, metadata: Any = None) -> Any:
    """``torch._utils._rebuild_tensor_v2``: a fresh tensor copied out of ``storage`` (a
    1-D tensor of its dtype), or a ``TensorSpec`` of a ``StorageSpec``; every size checked
    first."""
    where = "torch._utils._rebuild_tensor_v2"
    if not (_empty(hooks) and _empty(metadata) and isinstance(requires_grad, bool)):
        raise Refused(f"{where}: a tensor with hooks or metadata")
    if not isinstance(storage, (torch.Tensor, StorageSpec)):
        raise Refused(f"{where}: its storage is a {type(storage).__name__}")
    size, stride = int_tuple(size, f"{where} size"), int_tuple(stride, f"{where} stride")
    if type(offset) is not int or offset < 0 or len(size) != len(stride):
        raise Refused(f"{where}: offset {quote(offset)}, size {list(size)}, stride "
                      f"{list(stride)}")
    numel = math.prod(size)
    if math.prod(n for n in size if n) > 2 ** 48:  # even a tensor of no elements
        raise Refused(f"{where}: size {list(size)}: too large to lay out")
    capacity = storage.numel if isinstance(storage, StorageSpec) else storage.numel()
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if numel else 0
    if extent > capacity or numel > capacity - min(offset, capacity) or offset > capacity:
        raise Refused(f"{where}: size {list(size)}, stride {list(stride)} and offset "
                      f"{offset} need more than the storage's {capacity:,} elements")
    # a tensor costs its own bytes even where it shares its storage: the importers copy
    # each one into a network
    budget.take(numel * storage.dtype.itemsize, where)
    if isinstance(storage, StorageSpec):
        return TensorSpec(storage.dtype, size)
    return torch.as_strided(storage, size, stride, offset).clone(
        memory_format=torch.contiguous_format)


def rebuild_parameter(budget: Budget, data: Any, requires_grad: Any, hooks: Any) -> Any:
    """``torch._utils._rebuild_parameter``: its tensor (our modules copy it)."""
    if not _empty(hooks) or not isinstance(data, (torch.Tensor, TensorSpec)):
        raise Refused("torch._utils._rebuild_parameter: not a plain tensor")
    return data


def _ordered_dict(budget: Budget, items: Any = ()) -> StateDict:
    """``OrderedDict()``, filled afterwards, or (older pickles) ``OrderedDict([[k, v], ...])``."""
    if not isinstance(items, (list, tuple)) or not all(
            isinstance(kv, (list, tuple)) and len(kv) == 2 for kv in items):
        raise Refused("collections.OrderedDict: built from something other than pairs")
    out = StateDict()
    for k, v in items:
        out[plain_key(k, "collections.OrderedDict")] = v
    return out


class NamespaceRecord(Record):
    """An ``argparse.Namespace`` as the check reads it: its attributes, walked as a dict's
    values are (depth, size); torch.load makes the real one afterwards."""

    def __init__(self, attributes: dict[str, Any]):
        self.attributes = attributes

    def children(self) -> list[Any]:
        return list(self.attributes.values())


class _Namespace(Pending):
    def build(self, state: Any, budget: Budget) -> NamespaceRecord:
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and k.isidentifier() and not k.startswith("_")
                for k in state):
            raise Refused("argparse.Namespace: a state that is not a dict of public names "
                          "(none starting with '_': __class__, __dict__ would rebuild it)")
        return NamespaceRecord(dict(state))


BEHAVIOURS: dict[tuple[str, str], Behaviour] = {
    ("collections", "OrderedDict"): Behaviour("collections.OrderedDict", _ordered_dict),
    ("torch._utils", "_rebuild_tensor_v2"): Behaviour("_rebuild_tensor_v2", rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): Behaviour("_rebuild_parameter", rebuild_parameter),
    **{("torch", name): Behaviour(f"torch.{name}", None) for name in STORAGES},
}
# rosinality's train.py keeps its arguments in the checkpoint
NAMESPACE = {("argparse", "Namespace"): Behaviour("argparse.Namespace",
                                                  lambda budget: _Namespace(), newobj=True)}


def _storage_id(pid: Any, fields: int) -> StorageSpec:
    """A persistent id ('storage', storage type, key, location, numel[, view])."""
    if not (isinstance(pid, tuple) and len(pid) == fields and pid[0] == "storage"):
        raise Refused(f"a persistent id that is not a storage (a {quote(pid)})")
    kind = behaviour_of(pid[1])
    dtype = STORAGES.get(kind.name.removeprefix("torch.")) if kind else None
    key, location, numel = pid[2], pid[3], pid[4]
    if dtype is None or not isinstance(key, str) or not isinstance(location, str) or \
            type(numel) is not int or not 0 <= numel < 2 ** 48 or any(pid[5:]):
        raise Refused(f"a storage id of {quote(pid[1])}, key {quote(key)}: not a plain "
                      f"storage of a known type")
    return StorageSpec(dtype, numel, key)


def read_legacy(data: bytes, budget: Budget, limits: Limits,
                behaviours: Mapping[tuple[str, str], Behaviour] = BEHAVIOURS,
                storages: bool = True) -> tuple[Any, dict[str, torch.Tensor]]:
    """A file in torch's legacy format, read entirely here: its magic number, protocol
    and system pickles, its object's pickle (storages as persistent ids, tensors as
    ``TensorSpec``), its storage keys, then each storage's element count and bytes, all
    checked. Returns the object and (``storages``) each storage as a fresh 1-D tensor."""
    f = io.BytesIO(data)
    try:
        magic = unpickle(f, {}, limits, budget=budget)
    except Refused:
        magic = None
    if magic != LEGACY_MAGIC or unpickle(f, {}, limits, budget=budget) != LEGACY_PROTOCOL:
        raise Malformed("neither torch.save's archive nor its legacy format")
    info = unpickle(f, {}, limits, budget=budget)
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise Refused("a big-endian or unlabelled legacy torch file")
    specs: dict[str, StorageSpec] = {}

    def storage(pid: Any) -> StorageSpec:
        spec = _storage_id(pid, 6)
        if specs.setdefault(spec.key, spec) != spec:
            raise Refused(f"storage {quote(spec.key)} is named twice with different sizes")
        return spec

    obj = unpickle(f, behaviours, limits, storage, budget)
    keys = unpickle(f, {}, limits, budget=budget)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or \
            sorted(keys) != sorted(specs):
        raise Refused("its list of storages differs from the storages it uses")
    tensors = {}
    for key in keys:
        spec = specs[key]
        head = f.read(8)
        size = spec.numel * spec.dtype.itemsize
        if len(head) < 8 or struct.unpack("<q", head)[0] != spec.numel or \
                len(data) - f.tell() < size:
            raise Refused(f"storage {quote(key)}: its bytes are not the {spec.numel:,} elements "
                          f"its id says")
        if storages:
            budget.take(size, f"storage {quote(key)}")
            tensors[key] = torch.frombuffer(bytearray(f.read(size)), dtype=spec.dtype) \
                if size else torch.empty(0, dtype=spec.dtype)
        else:
            f.seek(size, io.SEEK_CUR)
    if f.read(1):
        raise Refused("bytes after its last storage")
    return obj, tensors


def _zip_scan(path: Path, z: zipfile.ZipFile, behaviours: Mapping, limits: Limits) -> None:
    infos = z.infolist()
    if len(infos) > MAX_ENTRIES:
        raise Refused(f"{len(infos):,} entries in the archive")
    # torch reads the records of the folder its first entry is in, its names matched
    # ignoring case: the same names, exactly, are what is checked here
    if not infos or "/" not in infos[0].filename:
        raise Refused("an archive whose first entry is in no folder: not a torch.save file")
    prefix = infos[0].filename.split("/", 1)[0] + "/"
    by_name = {i.filename: i for i in infos}
    folded = {name.lower() for name in by_name}
    if len(folded) < len(infos) or any(not n.startswith(prefix) for n in by_name):
        raise Refused(f"entries named twice (ignoring case) or outside {quote(prefix)}")
    pickles = [by_name[prefix + "data.pkl"]] if prefix + "data.pkl" in by_name else []
    if not pickles:
        raise Refused(f"no {quote(prefix + 'data.pkl')} in the archive: not a torch.save file")
    for i in infos:
        if i.compress_type != zipfile.ZIP_STORED:
            raise Refused(f"{quote(i.filename)}: a compressed entry (torch stores them raw)")
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise Refused(f"its data.pkl is {pickles[0].file_size:,} bytes")
    check_archive(path, z, prefix)  # what torch will read is what is read here
    order = by_name.get(prefix + "byteorder")
    if order is not None and z.read(order) != b"little":
        raise Refused("a big-endian torch file")

    def storage(pid: Any) -> StorageSpec:
        spec = _storage_id(pid, 5)
        entry = by_name.get(f"{prefix}data/{spec.key}")
        if entry is None or entry.file_size != spec.numel * spec.dtype.itemsize:
            raise Refused(f"storage {quote(spec.key)} claims {spec.numel:,} elements; the archive "
                          f"holds {'none' if entry is None else f'{entry.file_size:,} bytes'}")
        return spec

    unpickle(io.BytesIO(z.read(pickles[0])), behaviours, limits, storage)


def is_archive(path: Path) -> bool:
    """Whether torch reads ``path`` as its zip archive: by its first four bytes, as torch
    decides (a legacy file with an archive appended is a legacy file)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def check_torch_file(path: Path, allow: Iterable[Mapping] = ()) -> None:
    """Refuse, in one ``Refused`` line, a torch file whose description does not match what
    it holds (sizes, storages, globals); see the module's docstring."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise Refused(f"{size:,} bytes, more than the {MAX_FILE_BYTES:,} a file may have")
    behaviours = dict(BEHAVIOURS)
    for extra in allow:
        behaviours.update(extra)
    limits = limits_for(size)
    if is_archive(path):
        try:
            with zipfile.ZipFile(path) as z:
                _zip_scan(path, z, behaviours, limits)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise Malformed(f"a damaged archive ({type(e).__name__})") from None
    else:
        read_legacy(path.read_bytes(), Budget(limits), limits, behaviours, storages=False)


def check_file(path: str | os.PathLike, what: str, allow: Iterable[Mapping] = ()) -> None:
    """``check_torch_file`` without loading anything: one line naming ``what`` and the path
    for a file that is missing or would be refused (an option checked before a run)."""
    path = Path(path)
    if not path.is_file():
        raise GansweepError(f"{what} {path}: no such file")
    try:
        check_torch_file(path, allow)
    except Malformed as e:
        raise GansweepError(f"{path}: not a readable {what} ({e})") from None
    except Refused as e:
        raise GansweepError(f"{what} {path}: refused: {e}") from None


def load_torch_file(path: str | os.PathLike, what: str, allow: Iterable[Mapping] = (),
                    mmap: bool = False) -> Any:
    """A torch file from outside: checked (``check_torch_file``), then loaded with
    ``weights_only=True`` (``allow``'s globals too); any failure one line naming ``what``
    and the path."""
    path, allow = Path(path), list(allow)
    check_file(path, what, allow)
    classes = [argparse.Namespace] if any(NAMESPACE.keys() & a.keys() for a in allow) else []
    try:
        with torch.serialization.safe_globals(classes):
            return torch.load(path, map_location="cpu", weights_only=True,
                              mmap=mmap and is_archive(path))
    except Exception as e:  # noqa: BLE001 -- torch's own refusal, a truncated entry, ...
        raise GansweepError(f"{path}: not a readable {what} ({type(e).__name__}: "
                            f"{first_line(e, 200)})") from None
