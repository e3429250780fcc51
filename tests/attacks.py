"""Crafted files, built from opcodes as an attacker builds them, and a bounded fuzzer, run
in a process of their own (``python -m tests.attacks DIR``) so that a crash, a hang or a
memory bomb shows as that process's exit status and peak memory, not as a dead test run.
It prints one JSON object: each case's exit code, stderr lines and files written, whether
a marker of code having run appeared, and the process's peak resident memory."""
from __future__ import annotations

import contextlib
import io
import json
import pickle
import pickletools
import random
import resource
import struct
import sys
import time
import zipfile
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
M61 = 2 ** 61 - 1  # k * M61 hashes to 0 for every k
# streams of one opcode again and again: their mutants would add time to the fuzzer, not cases
FLOODS = {"hash_flood_dict", "hash_flood_set", "hash_flood_memo", "memo_flood", "mark_flood",
          "dup_flood"}
PKL = SHARED / "reference" / "stylegan2-ada-tiny32.pkl"
MULTIARRAY = "numpy.core.multiarray"


# --- opcodes --------------------------------------------------------------------------
def glob(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def text(s: str) -> bytes:
    data = s.encode()
    return b"\x8c" + bytes([len(data)]) + data if len(data) < 256 else \
        b"X" + struct.pack("<I", len(data)) + data


def raw(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def num(n: int) -> bytes:
    if -2 ** 31 <= n < 2 ** 31:
        return b"J" + struct.pack("<i", n)
    return b"\x8a\x08" + struct.pack("<q", n)  # LONG1 of 8 bytes


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(fn: bytes, *args: bytes) -> bytes:
    return fn + tup(*args) + b"R"


def build(obj: bytes, state: bytes) -> bytes:
    return obj + state + b"b"


def proto(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


NONE, TRUE, FALSE, EMPTY_DICT = b"N", b"\x88", b"\x89", b"}"


def dtype(code: str, state: bytes | None = None) -> bytes:
    made = call(glob("numpy", "dtype"), text(code), FALSE, TRUE)
    return build(made, state if state is not None else
                 tup(num(3), text("|"), NONE, NONE, NONE, num(-1), num(-1), num(0)))


def legacy_storage(floats: int, global_name: tuple[str, str] = ("torch", "FloatStorage"),
                   claimed: int | None = None, padding: int = 0) -> bytes:
    """torch's legacy format of one float storage (what ``_load_from_bytes`` reads);
    ``padding`` NONE-POP pairs in its system pickle."""
    claimed = floats if claimed is None else claimed
    head = pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(1001, 2) + \
        proto(b"N0" * padding + b"}" + text("little_endian") + TRUE + b"s")
    pid = tup(text("storage"), glob(*global_name), text("k"), text("cpu"), num(claimed), NONE)
    obj = b"\x80\x02" + pid + b"Q."
    keys = pickle.dumps(["k"], 2)
    return head + obj + keys + struct.pack("<q", floats) + b"\x00" * (4 * floats)


def tensor(storage: bytes, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    return call(glob("torch._utils", "_rebuild_tensor_v2"),
                call(glob("torch.storage", "_load_from_bytes"), raw(storage)), num(0),
                tup(*map(num, size)), tup(*map(num, stride)), FALSE,
                call(glob("collections", "OrderedDict")))


def legacy_file(listed: list[str]) -> bytes:
    """A torch file in the legacy format holding {'w': a 4-float tensor}, its storage
    key list ``listed`` (torch.load leaves a storage it does not list unfilled)."""
    head = pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(1001, 2) + \
        pickle.dumps({"protocol_version": 1001, "little_endian": True,
                      "type_sizes": {"short": 2, "int": 4, "long": 4}}, 2)
    pid = tup(text("storage"), glob("torch", "FloatStorage"), text("0"), text("cpu"), num(4),
              NONE) + b"Q"
    obj = proto(b"}" + text("w") + call(glob("torch._utils", "_rebuild_tensor_v2"), pid,
                                        num(0), tup(num(4)), tup(num(1)), FALSE,
                                        call(glob("collections", "OrderedDict"))) + b"s")
    return head + obj + pickle.dumps(listed, 2) + struct.pack("<q", 4) * bool(listed) + \
        b"\x00" * 16 * bool(listed)


def network(g: bytes) -> bytes:
    """A top-level dict whose G_ema and D are ``g``."""
    return proto(b"}(" + text("G_ema") + g + text("D") + g + b"u")


def long1(n: int) -> bytes:
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def module_dag(fan: int, depth: int) -> bytes:
    """NVIDIA's persistent modules M_i, each holding ``fan`` references to one memoized
    M_(i-1): a DAG of ``depth`` levels, ``fan ** depth`` paths."""
    out = b""
    for i in range(depth):
        modules = b"}(" + b"".join(text(str(j)) + b"h" + bytes([i - 1])
                                   for j in range(fan)) + b"u" if i else b"}"
        state = b"}(" + text("_parameters") + b"}" + text("_buffers") + b"}" + \
            text("_modules") + modules + b"u"
        meta = b"}(" + text("type") + text("class") + text("class_name") + text("M") + \
            text("version") + num(0) + text("module_src") + text("") + text("state") + \
            state + b"u"
        out += call(glob("torch_utils.persistence", "_reconstruct_persistent_obj"), meta) + \
            b"q" + bytes([i]) + (b"0" if i < depth - 1 else b"")
    return out


def attack_pickles(marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (file, a fragment its refusal names)."""
    deep = b"]" * 2_000 + b"a" * 1_999
    return {
        # a dtype of kind O whose state says it holds no objects, then 8 bytes as a PyObject*
        "object_dtype_scalar": (proto(call(call(glob(MULTIARRAY, "scalar"), dtype("O8"),
                                                raw(b"A" * 8)))), "numpy.dtype 'O8'"),
        "object_dtype_flags": (proto(dtype("f8", tup(num(3), text("|"), NONE, NONE, NONE,
                                                     num(-1), num(-1), num(63)))),
                               "a state other than a plain numeric dtype's"),
        "object_array_bomb": (proto(build(call(glob(MULTIARRAY, "_reconstruct"),
                                               glob("numpy", "ndarray"), tup(num(0)),
                                               b"C\x01b"),
                                          tup(num(1), tup(num(250_000_000)), dtype("O8"),
                                              FALSE, b"]"))), "numpy.dtype 'O8'"),
        "numeric_array_bomb": (proto(build(call(glob(MULTIARRAY, "_reconstruct"),
                                                glob("numpy", "ndarray"), tup(num(0)),
                                                b"C\x01b"),
                                           tup(num(1), tup(num(250_000_000)), dtype("f8"),
                                               FALSE, b"C\x00"))),
                               "numpy array of shape [250000000]: 0 bytes"),
        "tensor_past_its_storage": (network(tensor(legacy_storage(4), (262_144,), (1,))),
                                    "need more than the storage's 4 elements"),
        "stride_zero_width": (network(tensor(legacy_storage(1), (65_536, 65_536), (0, 0))),
                              "need more than the storage's 1 elements"),
        "storage_claims_more": (network(tensor(legacy_storage(4, claimed=1 << 40), (4,),
                                               (1,))), "its bytes are not the"),
        "build_on_a_class": (proto(build(glob("dnnlib.util", "EasyDict"),
                                         b"}" + text("__doc__") + text("pwned") + b"s")),
                             "BUILD on a dnnlib.util.EasyDict"),
        "build_on_a_function": (proto(build(glob("torch.storage", "_load_from_bytes"),
                                            tup(NONE, b"}" + text("__defaults__") +
                                                tup(num(1)) + b"s"))),
                                "BUILD on a torch.storage._load_from_bytes"),
        "os_system": (proto(call(glob("os", "system"), text(f"touch {marker}"))),
                      "refuses the global 'os.system'"),
        "nested_os_system": (network(call(glob("torch.storage", "_load_from_bytes"),
                                          raw(legacy_storage(1, ("posix", "system"))))),
                             "refuses the global 'posix.system'"),
        "memo_bomb": (proto(NONE + b"r\xff\xff\xff\xff" + b"0" + NONE), "holds a NoneType"),
        "deep_nesting": (proto(deep), "nesting deeper than 64"),
        # each byte a list: ~200 bytes of memory per byte of file
        "many_containers": (proto(b"(" + b"]" * 4_000_000 + b"l"), "takes the data past"),
        "bytes_past_the_end": (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"x", "bytes"),
        "instance_opcode": (proto(b"(i" + b"os\nsystem\n"), "refuses the opcode INST"),
        # one stored storage read again and again (a fresh opcode count each time, once)
        "storage_reread": (proto(glob("torch.storage", "_load_from_bytes") + b"\x94" +
                                 raw(legacy_storage(0, padding=20_000)) + b"\x94" +
                                 b"(h\x00h\x01\x85R0" * 20_000 + b"N"),
                           "more than"),
        # a list of Nones referenced many times: the final walk once was K x M; its size as
        # a tree (10 ** 10 objects) is over the bound
        "shared_list": (proto(b"(" + b"N" * 100_000 + b"l\x940(" + b"h\x00" * 100_000 + b"l"),
                        "where each use of a shared one counts"),
        # x[i+1] = [x[i], x[i]]: its text once was 2**48 characters, in an error message
        "exponential_text": (proto(call(glob("torch_utils.persistence",
                                             "_reconstruct_persistent_obj"),
                                        b"}" + text("type") + b"]\x94" + b"".join(
                                            b"0(h" + bytes([i]) + b"h" + bytes([i]) + b"l\x94"
                                            for i in range(48)) + b"s")),
                             "not a class instance (type list)"),
        "hooks_a_tensor": (network(call(glob("torch._utils", "_rebuild_tensor_v2"),
                                        call(glob("torch.storage", "_load_from_bytes"),
                                             raw(legacy_storage(2))), num(0), tup(num(2)),
                                        tup(num(1)), FALSE, tensor(legacy_storage(2), (2,),
                                                                   (1,)))),
                           "a tensor with hooks or metadata"),
        "zero_size_huge_dims": (network(tensor(legacy_storage(1), (0, 2 ** 47, 2 ** 47),
                                               (1, 1, 1))), "too large to lay out"),
        "stack_underflow": (proto(b"a"), "empty stack"),
        # keys k * (2**61 - 1) all hash alike: each insertion once scanned all before it
        "hash_flood_dict": (proto(b"}(" + b"".join(long1(k * M61) + b"N"
                                                   for k in range(1, 20_001)) + b"u"),
                            f"a key {M61} of type int"),
        "hash_flood_set": (proto(b"\x8f(" + b"".join(long1(k * M61) for k in range(1, 20_001))
                                 + b"\x90"), f"a key {M61} of type int"),
        "hash_flood_memo": (proto(b"N" + b"".join(b"p%d\n" % (k * M61)
                                                  for k in range(1, 20_001))),
                            "not a memo index below 2**32"),
        # one byte each, tens of bytes of memory each: uncharged, 20 MB once took 1.2 GB
        "memo_flood": (proto(b"N" + b"\x94" * 2_000_000), "MEMOIZE takes the data past"),
        "mark_flood": (proto(b"(" + b"N" * 300 + b"(" * 2_000_000), "MARK: more than 128 open"),
        "dup_flood": (proto(b"N" + b"2" * 400_000), "DUP takes the data past"),
        # 10 ** 12 paths through 12 modules (a walk of its tensors once named each)
        "module_dag": (network(module_dag(10, 12)), "where each use of a shared one counts"),
    }


def zip_attacks(tmp: Path) -> dict[str, tuple[Path, str]]:
    """torch.save archives whose data.pkl lies about a storage's size or a tensor's extent."""
    good = tmp / "good.pt"
    torch.save({"w": torch.zeros(4)}, good)
    out = {}
    for name, old, new, fragment in [
            ("zip_storage_claims_more", b"K\x04", b"J" + struct.pack("<i", 1 << 30),
             "claims 1,073,741,824 elements"),
            ("zip_tensor_past_storage", b"K\x04\x85", b"J\x00\x00\x04\x00\x85",
             "need more than the storage's 4 elements")]:
        path = tmp / f"{name}.pt"
        with zipfile.ZipFile(good) as z, zipfile.ZipFile(path, "w") as w:
            for info in z.infolist():
                data = z.read(info)
                if info.filename.endswith("data.pkl"):
                    assert old in data, (name, data)
                    data = data.replace(old, new, 1)
                w.writestr(info, data)
        out[name] = path, fragment
    # a legacy file that lists no storage, an archive appended (torch reads the legacy
    # stream: by its first bytes; the archive's directory is at the end)
    appended = tmp / "legacy_then_archive.pt"
    appended.write_bytes(legacy_file([]) + good.read_bytes())
    out["legacy_then_archive"] = appended, "its list of storages differs"
    # the archive's records under another folder than its first entry's (torch reads those)
    moved = tmp / "archive_elsewhere.pt"
    with zipfile.ZipFile(good) as z, zipfile.ZipFile(moved, "w") as w:
        for info in z.infolist():
            w.writestr("x/y/" + info.filename.split("/", 1)[1], z.read(info))
    out["archive_elsewhere"] = moved, "no 'x/data.pkl' in the archive"
    # one storage standing for many tensors: a network far larger than the file
    shared = tmp / "shared_storage.pt"
    big = torch.zeros(1 << 16)
    torch.save({f"w{i}": big.view(-1) for i in range(64)}, shared)
    out["shared_storage"] = shared, "takes the data past"
    # one tensor object for every key of its shape: our network would copy it each time
    ref = torch.load(SHARED / "reference" / "mimicry-sngan32.pt", weights_only=True)
    reused = {}
    for net in ("g_state", "d_state"):
        first: dict = {}
        reused[net] = {k: first.setdefault(tuple(v.shape), v) for k, v in ref[net].items()}
        torch.save(reused[net], tmp / f"reused_{net[0]}.pt")
    out["tensor_reused"] = tmp / "reused_g.pt", "shares its bytes with"
    return out


# --- running ----------------------------------------------------------------------------
def run_cli(*argv: object) -> dict:
    from gansweep.sweep.cli.main import main
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    return {"rc": code, "stderr": err.getvalue().strip().splitlines()}


def mutants(data: bytes, rng: random.Random, n: int, positions: list[int]) -> list[bytes]:
    """Byte flips, opcode swaps, insertions, deletions and truncations at opcode starts."""
    opcodes = bytes(sorted({o.code.encode("latin-1")[0] for o in pickletools.opcodes}))
    out = []
    for _ in range(n):
        at = rng.choice(positions) + rng.choice((0, 0, 1, 2, 4))
        kind = rng.randrange(5)
        if kind == 0:
            out.append(data[:at] + bytes([rng.randrange(256)]) + data[at + 1:])
        elif kind == 1:
            out.append(data[:at] + bytes([rng.choice(opcodes)]) + data[at + 1:])
        elif kind == 2:
            out.append(data[:at] + bytes(rng.choice(opcodes) for _ in range(rng.randint(1, 6)))
                       + data[at:])
        elif kind == 3:
            out.append(data[:at] + data[at + rng.randint(1, 64):])
        else:
            out.append(data[:at])
    return out


def fuzz(tmp: Path, seed: int, budget_s: float) -> dict:
    """Mutated network pickles (the reference, its storages, hand-made streams) through the
    unpickler and the importer: each must import or be refused in one line."""
    from gansweep.core.errors import GansweepError
    from gansweep.core.foreign_ada import load_ada
    from gansweep.core.nvidia_pickle import BEHAVIOURS, read_network_pickle
    from gansweep.core.safe_pickle import unpickle
    from gansweep.core.torch_files import limits_for
    rng = random.Random(seed)
    ref = PKL.read_bytes()
    ops = list(pickletools.genops(ref))
    structure = [pos for op, _, pos in ops if op.name not in ("BINBYTES", "SHORT_BINBYTES")]
    blob = next(arg for op, arg, _ in ops if op.name == "BINBYTES")
    blob_ops = [pos for _, _, pos in pickletools.genops(blob)]
    hand = [attack for name, (attack, _) in attack_pickles(tmp / "marker").items()
            if name not in FLOODS] + [network(tensor(legacy_storage(8), (2, 4), (4, 1)))]
    cases = [("reference", m) for m in mutants(ref, rng, 60, structure)] + \
        [("storage", network(call(glob("torch.storage", "_load_from_bytes"), raw(m))))
         for m in mutants(blob, rng, 1000, blob_ops)] + \
        [("stream", m) for h in hand for m in mutants(h, rng, 60, list(range(len(h))))]
    counts = {"imported": 0, "refused": 0}
    bad, start, path = [], time.perf_counter(), tmp / "fuzz.pkl"
    for kind, data in cases:
        if time.perf_counter() - start > budget_s:
            bad.append(f"time: over {budget_s} s after {sum(counts.values())} cases")
            break
        try:
            if kind == "reference":
                path.write_bytes(data)
                obj = read_network_pickle(path)
                load_ada(obj["G_ema"], obj["D"], "fuzz.pkl")
            else:
                unpickle(io.BytesIO(data), BEHAVIOURS, limits_for(len(data)))
            counts["imported"] += 1
        except GansweepError as e:
            counts["refused"] += 1
            if "\n" in str(e) or len(str(e)) > 400:
                bad.append(f"{kind}: a refusal of {len(str(e))} chars or several lines")
        except Exception as e:  # noqa: BLE001 -- exactly what the fuzzer looks for
            bad.append(f"{kind}: {type(e).__name__}: {str(e)[:200]}")
    return {**counts, "cases": sum(counts.values()), "seconds": time.perf_counter() - start,
            "bad": bad[:20]}


def watched() -> dict[str, object]:
    """What a BUILD on an allowed class or function would rewrite for the whole process."""
    from gansweep.core import nvidia_pickle, torch_files
    return {"EasyDict.__doc__": nvidia_pickle.EasyDict.__doc__,
            "EasyDict.__dict__": sorted(vars(nvidia_pickle.EasyDict)),
            "_load_storage.__defaults__": nvidia_pickle._load_storage.__defaults__,
            "_load_storage.__dict__": dict(vars(nvidia_pickle._load_storage)),
            "rebuild_tensor.__defaults__": torch_files.rebuild_tensor.__defaults__}


def main(tmp: Path) -> None:
    marker = tmp / "marker"
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run_cli("import", "stylegan2-ada", PKL, "--out", tmp / "warm.pt")  # imports and caches
    warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report: dict = {"cases": {}}
    before = watched()
    files = {name: (tmp / f"{name}.pkl", fragment)
             for name, (data, fragment) in attack_pickles(marker).items()}
    for path, (data, _) in zip((p for p, _ in files.values()), attack_pickles(marker).values()):
        path.write_bytes(data)
    for name, (path, fragment) in files.items():
        out = tmp / f"{name}.out.pt"
        report["cases"][name] = {**run_cli("import", "stylegan2-ada", path, "--out", out),
                                 "fragment": fragment, "written": out.exists()}
    for name, (path, fragment) in zip_attacks(tmp).items():
        out = tmp / f"{name}.out.pt"
        d = tmp / "reused_d.pt" if name == "tensor_reused" else path
        report["cases"][name] = {**run_cli("import", "mimicry", path, d, "--out", out),
                                 "fragment": fragment, "written": out.exists()}
    report["mutated"] = [name for name, value in watched().items() if value != before[name]]
    after_attacks = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report["fuzz"] = fuzz(tmp, seed=int(sys.argv[2]) if len(sys.argv) > 2 else 0,
                          budget_s=90)
    report["marker"] = marker.exists()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report["rss_kib"] = {"baseline": baseline, "after_reference_import": warm,
                         "after_attacks": after_attacks, "peak": peak}
    print(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
