"""A second attacker's pass, one regression test (or a few) per finding, each building its
attack here (from opcodes, zip bytes or a real checkpoint changed in one field): every bad
file is refused in one short line, quickly, before anything it claims is allocated. The
memory-bound cases also run in tests/attacks.py's process of their own (test_attacks)."""
from __future__ import annotations

import argparse
import io
import pickle
import struct
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from gansweep.core.errors import GansweepError
from gansweep.core.foreign import examples_dcgan_key, mimicry_sngan_key
from gansweep.core.foreign_ada import _one
from gansweep.core.nvidia_pickle import BEHAVIOURS, Persistent
from gansweep.core.pickle_parts import Behaviour, Limits, Pending, Refused
from gansweep.core.safe_pickle import unpickle
from gansweep.core.torch_files import NAMESPACE, check_torch_file, limits_for
from tests.attacks import (
    M61,
    call,
    glob,
    legacy_storage,
    long1,
    network,
    num,
    proto,
    raw,
    text,
    tup,
)
from tests.helpers import cli_in_process

from .conftest import SHARED
from .test_attacks import _rewritten


def one_line(out, fragment: str, max_line: int = 400) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert fragment in lines[0] and len(lines[0]) < max_line, lines[0][:2000]


def read(data: bytes, behaviours=BEHAVIOURS, limits: Limits | None = None):
    return unpickle(io.BytesIO(data), behaviours, limits or limits_for(len(data)))


# --- zip bytes ---------------------------------------------------------------------------
def entries_of(obj) -> list[tuple[str, bytes]]:
    """The records torch.save writes for ``obj``, in order."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(buf) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def local(name: bytes, data: bytes, stored: int | None = None) -> bytes:
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(data),
                       len(data), len(data), len(name), 0) + name + data[:stored]


def central(name: bytes, data: bytes, at: int, extra: bytes = b"") -> bytes:
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, zlib.crc32(data),
                       len(data), len(data), len(name), len(extra), 0, 0, 0, 0, at) + name + \
        extra


def ends(count: int, cd_size: int, cd_at: int, zip64: bool = True, comment: bytes = b"",
         locator_at: int | None = None) -> bytes:
    """The end records: torch writes the zip64 record and its locator before the plain one."""
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_at,
                       len(comment)) + comment
    if not zip64:
        return eocd
    at = cd_at + cd_size if locator_at is None else locator_at
    return struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, cd_size,
                       cd_at) + struct.pack("<IIQI", 0x07064B50, 0, at, 1) + eocd


def archive(entries, count: int | None = None, local_names: dict | None = None,
            stored: dict | None = None, **end) -> bytes:
    """A stored archive of ``entries``; a local header may name another entry, store fewer
    bytes than its directory entry says, the end records count otherwise."""
    out, cd = b"", b""
    for name, data in entries:
        cd += central(name.encode(), data, len(out))
        out += local((local_names or {}).get(name, name).encode(), data,
                     (stored or {}).get(name))
    return out + cd + ends(len(entries) if count is None else count, len(cd), len(out), **end)


def two_faced(evil, benign) -> bytes:
    """Directory A (``evil``, at the end record's offset: what torch's miniz reads), then
    directory B (``benign``) just before the end record: Python's zipfile takes A's offset
    as "data prepended to the archive" and reads B."""
    out, at_evil = b"", []
    for name, data in evil:
        at_evil.append(len(out))
        out += local(name.encode(), data)
    cd_evil = len(out)
    directory = b"".join(central(n.encode(), d, a) for (n, d), a in zip(evil, at_evil))
    out += directory
    at_benign = []
    for name, data in benign:
        at_benign.append(len(out))
        out += local(name.encode(), data)
    concat = len(out) - cd_evil
    cd_b = b"".join(central(n.encode(), d, a - concat) for (n, d), a in zip(benign, at_benign))
    assert len(cd_b) == len(directory)  # miniz reads the size B has from A's offset
    return out + cd_b + ends(len(benign), len(cd_b), cd_evil, zip64=False)


def saved(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- 1: a two-faced archive ---------------------------------------------------------------
def test_a_two_faced_archive_is_refused(tmp_path):
    """torch reads directory A (666), zipfile directory B (1): the check once read B."""
    evil, benign = entries_of({"w": torch.full((4,), 666.0)}), entries_of({"w": torch.ones(4)})
    path = saved(tmp_path / "g.pt", two_faced(evil, benign))
    assert torch.load(path, weights_only=True)["w"][0] == 666  # what torch reads
    with zipfile.ZipFile(path) as z:  # and what zipfile reads
        assert torch.frombuffer(bytearray(z.read("archive/data/0")), dtype=torch.float32)[0] == 1
    with pytest.raises(Refused, match="does not end where its end records start"):
        check_torch_file(path)
    one_line(cli_in_process("import", "mimicry", path, path, "--out", tmp_path / "x.pt"),
             "does not end where its end records start")
    assert not (tmp_path / "x.pt").exists()


GOOD = {"w": torch.arange(4.0), "v": torch.ones(2)}


@pytest.mark.parametrize("case, fragment", [
    ("comment", "not its last 22 bytes"),
    ("prepended", "does not end where its end records start"),
    ("count", "its end record counts"),
    ("local_name", "its local header names another entry"),
    ("short_data", "overlaps another's"),
    ("nul_name", "a NUL"),
    ("locator_elsewhere", "zip64 end record is not just before its locator"),
    ("plain_then_zip64_lie", "zip64 end record disagrees"),
])
def test_an_archive_laid_out_otherwise_than_torch_writes_is_refused(tmp_path, case, fragment):
    entries = entries_of(GOOD)
    data = {"comment": lambda: archive(entries, comment=b"hi"),
            "prepended": lambda: b"PK\x03\x04" + archive(entries, zip64=False),
            "count": lambda: archive(entries, count=len(entries) - 1),
            "local_name": lambda: archive(entries, local_names={
                "archive/data/0": "archive/data/1", "archive/data/1": "archive/data/0"}),
            "short_data": lambda: archive(entries, stored={"archive/data/0": 8}),
            # zipfile cuts a name at a NUL: 'archive/data/0' to it, not to torch
            "nul_name": lambda: archive([(n + "\0x" if n.endswith("data/0") else n, d)
                                         for n, d in entries],
                                        local_names={"archive/data/0\0x": "archive/data/0"}),
            "locator_elsewhere": lambda: archive(entries, locator_at=0),
            "plain_then_zip64_lie": lambda: archive(entries)[:-14] + struct.pack("<HH", 1, 1)
            + archive(entries)[-10:],
            }[case]()
    path = saved(tmp_path / "a.pt", data)
    with pytest.raises(Refused, match=fragment):
        check_torch_file(path)


@pytest.mark.parametrize("name", ["plain.pt", "two words.pth", "模型.tar", "noext"])
def test_what_torch_save_writes_passes_the_layout_check(tmp_path, name):
    objs = [GOOD, {}, {i: torch.zeros(1) for i in range(300)},
            {"nested": {"list": [torch.ones(3), 1, "x"]}, "t": torch.zeros(2, 3).t()}]
    for obj in objs:
        torch.save(obj, tmp_path / name)
        check_torch_file(tmp_path / name)
    check_torch_file(saved(tmp_path / "rewritten.pt", archive(entries_of(GOOD))))
    for ref in sorted((SHARED / "reference").rglob("*.pt*")):
        check_torch_file(ref, [NAMESPACE])


# --- 2: shared sub-objects ----------------------------------------------------------------
def test_a_structure_is_bounded_as_a_tree(tmp_path):
    """x[i+1] = [x[i]] * 10: each list visited once, but any walk of it (a tensor listing,
    json.dumps of a history) visits 10 ** 12 paths."""
    stream = b"]\x94" + b"".join(b"0(" + (b"h" + bytes([i])) * 10 + b"l\x94"
                                 for i in range(12))
    with pytest.raises(Refused, match="where each use of a shared one counts"):
        read(proto(stream))
    x: list = []
    for _ in range(40):
        x = [x, x]
    torch.save({"history": [{"iteration": 1, "blowup": x}]}, tmp_path / "h.pt")
    with pytest.raises(Refused, match="where each use of a shared one counts"):
        check_torch_file(tmp_path / "h.pt")


def test_a_module_met_twice_is_refused(tmp_path):
    module = None
    for _ in range(16):  # 2 ** 16 paths to one weight
        modules = {} if module is None else {"a": module, "b": module}
        module = Persistent("M", 0, {"_parameters": {"w": torch.zeros(1)}, "_buffers": {},
                                     "_modules": modules}, "")
    with pytest.raises(GansweepError, match="met a second time"):
        dict(module.tensors())


# --- 3: keys whose hashes collide ---------------------------------------------------------
KEYS = range(1, 20_001)


@pytest.mark.parametrize("stream", [
    b"}(" + b"".join(long1(k * M61) + b"N" for k in KEYS) + b"u",
    b"\x8f(" + b"".join(long1(k * M61) for k in KEYS) + b"\x90",
    b"(" + b"".join(long1(k * M61) for k in KEYS) + b"\x91",
    call(glob("builtins", "set"), b"(" + b"".join(long1(k * M61) for k in KEYS) + b"l"),
    call(glob("collections", "OrderedDict"),  # pairs: fewer, or the budget stops them first
         b"(" + b"".join(tup(long1(k * M61), b"N") for k in KEYS[:2000]) + b"l"),
    b"N" + b"".join(b"p%d\n" % (k * M61) for k in KEYS),
], ids=["dict", "set", "frozenset", "builtins.set", "OrderedDict", "memo"])
def test_keys_whose_hashes_collide_are_refused_at_once(stream):
    start = time.perf_counter()
    with pytest.raises(Refused, match=f"a key {M61} of type int|not a memo index"):
        read(proto(stream))
    assert time.perf_counter() - start < 1


def test_keys_real_files_use_still_read():
    state = {"state": {i: {"step": 1.0} for i in range(3000)}, "names": {"a": 1, None: 2},
             "flags": {True: 1}, "neg": {-5: 1}}
    assert read(pickle.dumps(state, 2)) == state
    for key in (1.5, (1, 2), 2 ** 31, b"k"):
        with pytest.raises(Refused, match="a key"):
            read(pickle.dumps({key: 1}, 4))


# --- 4: the machine's own bookkeeping -----------------------------------------------------
@pytest.mark.parametrize("body, fragment", [
    (b"N" + b"\x94" * 1_000_000, "MEMOIZE takes the data past"),
    (b"N" + b"".join(b"r" + struct.pack("<I", i) for i in range(200_000)),
     "LONG_BINPUT takes the data past"),
    (b"(" + b"N" * 300 + b"(" * 1_000_000, "MARK: more than 128 open"),
    (b"N" + b"2" * 1_000_000, "DUP takes the data past"),
], ids=["memoize", "put", "mark", "dup"])
def test_memo_marks_and_copies_count_against_the_budget(body, fragment):
    with pytest.raises(Refused, match=fragment):
        read(proto(body))


# --- 5, 6: argparse.Namespace --------------------------------------------------------------
def namespace_file(tmp_path: Path, args: bytes) -> Path:
    """A rosinality checkpoint {'g_ema': {}, 'd': {}, 'args': ...}: torch.save's archive,
    its data.pkl ours."""
    pkl = proto(b"}(" + text("g_ema") + b"}" + text("d") + b"}" + text("args") + args + b"u")
    entries = [(n, pkl if n.endswith("data.pkl") else d)
               for n, d in entries_of({"g_ema": {}, "d": {}})]
    return saved(tmp_path / "r.pt", archive(entries))


def namespace(state: bytes) -> bytes:
    return glob("argparse", "Namespace") + b")\x81" + state + b"b"


@pytest.mark.parametrize("name", ["__class__", "__dict__", "_private"])
def test_a_namespace_of_private_names_is_refused(tmp_path, name):
    path = namespace_file(tmp_path, namespace(b"}" + text(name) + num(1) + b"s"))
    one_line(cli_in_process("import", "rosinality", path, "--out", tmp_path / "x.pt"),
             "a dict of public names")


def test_an_error_building_an_object_is_a_refusal_naming_it():
    class Broken(Pending):
        def build(self, state, budget):
            return argparse.Namespace(**state)

    behaviours = {("m", "Broken"): Behaviour("m.Broken", lambda budget: Broken())}
    with pytest.raises(Refused, match="BUILD of m.Broken: TypeError"):
        read(proto(call(glob("m", "Broken")) + b"}" + text("__class__") + num(1) + b"sb"),
             behaviours)


def test_namespaces_count_towards_the_nesting_depth(tmp_path):
    chain = namespace(b"}" + text("a") + b"N" + b"s")
    for _ in range(100):
        chain = namespace(b"}" + text("a") + chain + b"s")
    with pytest.raises(Refused, match="nesting deeper than 64"):
        check_torch_file(namespace_file(tmp_path, chain), [NAMESPACE])


# --- 8: messages quote file content briefly -----------------------------------------------
LONG = "K" * 100_000


@pytest.mark.parametrize("make", [
    lambda: _one({"a": LONG, "b": 1.0}, "conv_clamp"),
    lambda: mimicry_sngan_key("G", LONG),
    lambda: examples_dcgan_key("G", LONG),
    lambda: dict(Persistent("M", 0, {"_parameters": {LONG: "x"}, "_buffers": {},
                                     "_modules": {}}, "").tensors()),
    lambda: read(network(call(glob("torch._utils", "_rebuild_tensor_v2"),
                              call(glob("torch.storage", "_load_from_bytes"),
                                   raw(legacy_storage(1))), text(LONG), b")", b")"))),
], ids=["one_value", "mimicry_key", "dcgan_key", "tensor_name", "tensor_offset"])
def test_a_refusal_quotes_file_content_briefly(make):
    with pytest.raises(GansweepError) as e:
        make()
    assert len(str(e.value)) < 300 and "\n" not in str(e.value), str(e.value)[:1000]


def test_a_network_pickle_with_a_long_key_is_one_short_line(tmp_path):
    path = saved(tmp_path / "n.pkl", proto(b"}" + text(LONG) + b"Ns"))
    one_line(cli_in_process("import", "stylegan2-ada", path, "--out", tmp_path / "x.pt"),
             "holds no network 'G_ema'")


# --- 9: an architecture our networks cannot be built in names the file ----------------------
def test_an_unbuildable_architecture_names_the_file(tmp_path, monkeypatch):
    """G's 8 px bias of 3 channels: a channel_base that leaves none at 32 px, found while
    our networks are built on the meta device (once outside the message naming the file)."""
    def three_channels(meta):
        if meta["class_name"] == "Generator":
            conv1 = meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["b8"] \
                .meta["state"]["_modules"]["conv1"].meta["state"]["_parameters"]
            conv1["bias"] = conv1["bias"][:3].clone()

    path = _rewritten(tmp_path, monkeypatch, three_channels)
    one_line(cli_in_process("import", "stylegan2-ada", path, "--out", tmp_path / "x.pt"),
             f"{path.name}: arch.channel_base")


# --- 7: a run's checkpoint, one field wrong -----------------------------------------------
def _without_step(c):
    return [state.pop("step") for state in c["opt_g"]["state"].values()]


def _first(net: str, change):
    def apply(c):
        key = next(iter(c[net]))
        c[net][key] = change(c[net][key])
    return apply


CHECKPOINT_CASES = {
    "numerics_list": (lambda c: c.update(numerics=[]), "its numerics"),
    "numerics_device": (lambda c: c["numerics"].update(device="warp-drive"), "no device"),
    "no_train_seconds": (lambda c: c.pop("train_seconds"), "missing 'train_seconds'"),
    "seconds_nan": (lambda c: c.update(train_seconds=float("nan")), "is not a time"),
    "iteration_str": (lambda c: c.update(iteration="x"), "its iteration 'x'"),
    "rng_float": (lambda c: c["rng"].update(torch=torch.zeros(3)), "its rng"),
    "rng_missing": (lambda c: c.pop("rng"), "missing 'rng'"),
    "sampler_junk": (lambda c: c["rng"].update(sampler={"x": 1}), "its rng"),
    "sampler_outside": (lambda c: c["rng"]["sampler"]["perm"].fill_(10 ** 6),
                        "draws images outside"),
    "last_losses_int": (lambda c: c.update(last_losses=5), "last_losses"),
    "history_int": (lambda c: c.update(history=5), "its history"),
    "history_text": (lambda c: c.update(history=[{"fid": "x"}]), "its history"),
    "loss_str": (lambda c: c.update(loss="x"), "loss state"),
    "lean_no_source": (lambda c: c.update(lean=True), "lean flag or source"),
    "opt_g_empty": (lambda c: c.update(opt_g={}), "its opt_g is not"),
    "opt_g_none": (lambda c: c.update(opt_g=None), "no optimiser state for G"),
    "opt_no_step": (_without_step, "a step keeps"),
    "opt_lr_text": (lambda c: c["opt_g"]["param_groups"][0].update(lr="x"), "settings"),
    "opt_state_shape": (lambda c: c["opt_g"]["state"][0].update(square_avg=torch.zeros(1)),
                        "is not what a step keeps"),
    "g_missing": (lambda c: c["G"].popitem(), "does not fit this run's network"),
    "g_extra": (lambda c: c["G"].update(extra=torch.zeros(1)), "does not fit this run's"),
    "g_shape": (_first("G", lambda t: torch.zeros(1)), "this run's is torch.float32"),
    "g_dtype": (_first("G", lambda t: t.double()), "this run's is torch.float32"),
    "g_nan": (_first("G", lambda t: torch.full_like(t, float("nan"))), "non-finite"),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_a_checkpoint_with_a_field_wrong_is_one_line(sources, tmp_path, case):
    ckpt = torch.load(sources["dcgan"], weights_only=True)
    change, fragment = CHECKPOINT_CASES[case]
    change(ckpt)
    torch.save(ckpt, tmp_path / "bad.pt")
    out = cli_in_process("sample", tmp_path / "bad.pt", "--out", tmp_path / "s.png", "--n", "1",
                         "--device", "cpu")
    one_line(out, fragment)
    assert not (tmp_path / "s.png").exists()


def test_resuming_an_optimiser_state_without_its_step_is_one_line(sources, blobs, tmp_path):
    """Only a training step reads it: a KeyError mid-run, once."""
    ckpt = torch.load(sources["dcgan"], weights_only=True)
    _without_step(ckpt)
    torch.save(ckpt, tmp_path / "bad.pt")
    out = cli_in_process("pretrain", "--data", blobs, "--out", tmp_path / "p.pt", "--arch",
                         "dcgan", "--resolution", "32", "--width", "8", "--z-dim", "16",
                         "--iters", "3", "--batch-size", "8", "--metrics", "none", "--resume",
                         tmp_path / "bad.pt")
    one_line(out, "a step keeps")
