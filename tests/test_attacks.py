"""Files from outside under attack (core.safe_pickle, core.torch_files, core.nvidia_pickle):
every crafted file of tests/attacks.py, built from opcodes, is refused in one line with exit
2, writes nothing, runs nothing and stays within a memory bound, in a process that survives
them all; the bounded fuzzer finds nothing it cannot refuse cleanly."""
from __future__ import annotations

import builtins
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gansweep.core.checkpoint import load_checkpoint
from tests.attacks import attack_pickles, zip_attacks
from tests.helpers import cli_in_process

from .test_foreign_ada import PKL, nvidia_persistence

ROOT = Path(__file__).resolve().parents[1]
# beyond the reference import's own peak, for all the crafted files together (every bomb
# asks for gigabytes; they take under 30 MiB), and for the fuzzer's 60 imports of mutated
# references (each a few times the 2.4 MB file, plus the allocator's high-water mark)
ATTACKS_BOUND_KIB, FUZZ_BOUND_KIB = 128 * 1024, 1024 * 1024
# the classes of attack, each with at least one case
CLASSES = {"code execution through numpy": ["object_dtype_scalar", "object_dtype_flags"],
           "memory bombs": ["object_array_bomb", "numeric_array_bomb", "stride_zero_width",
                            "storage_claims_more", "memo_bomb", "deep_nesting", "many_containers",
                            "shared_storage", "tensor_reused", "storage_reread", "shared_list",
                            "exponential_text", "zero_size_huge_dims",
                            "bytes_past_the_end", "zip_storage_claims_more", "memo_flood",
                            "mark_flood", "dup_flood", "module_dag"],
           "hash collisions": ["hash_flood_dict", "hash_flood_set", "hash_flood_memo"],
           "uninitialised memory": ["tensor_past_its_storage", "zip_tensor_past_storage",
                                    "legacy_then_archive", "archive_elsewhere"],
           "process-wide mutation": ["build_on_a_class", "build_on_a_function"],
           "globals and opcodes": ["os_system", "nested_os_system", "instance_opcode",
                                   "stack_underflow", "hooks_a_tensor"]}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("attacks")
    out = subprocess.run([sys.executable, "-m", "tests.attacks", str(tmp)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"the interpreter died ({out.returncode}): {out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_class_of_attack_has_cases(tmp_path):
    names = set(attack_pickles(tmp_path / "m")) | set(zip_attacks(tmp_path))
    listed = {n for cases in CLASSES.values() for n in cases}
    assert names == listed, (names - listed, listed - names)


@pytest.mark.parametrize("name", [n for cases in CLASSES.values() for n in cases])
def test_a_crafted_file_is_refused_in_one_line(report, name):
    case = report["cases"][name]
    assert case["rc"] == 2 and len(case["stderr"]) == 1, case
    assert case["stderr"][0].startswith("gansweep import: error:"), case
    assert case["fragment"] in case["stderr"][0], case
    assert not case["written"], case


def test_nothing_ran_nothing_was_rewritten_and_memory_stayed_bounded(report):
    assert not report["marker"], "a marker of the file's code having run exists"
    assert report["mutated"] == [], f"process-wide state rewritten: {report['mutated']}"
    rss = report["rss_kib"]
    assert rss["after_attacks"] - rss["after_reference_import"] < ATTACKS_BOUND_KIB, rss
    assert rss["peak"] - rss["after_attacks"] < FUZZ_BOUND_KIB, rss


def test_the_fuzzer_finds_nothing_it_cannot_refuse(report):
    fuzz = report["fuzz"]
    assert fuzz["bad"] == [], fuzz["bad"]
    assert fuzz["cases"] >= 2000 and fuzz["seconds"] < 60, fuzz
    assert fuzz["imported"] > 0 and fuzz["refused"] > 0, fuzz  # it reached both ends


def test_module_source_is_never_executed(tmp_path, monkeypatch):
    """The reference pickle with every module_src replaced by code that writes a marker
    imports (a valid network goes all the way), and neither exec, eval nor compile is
    called while it does: the source is text, never code."""
    marker = tmp_path / "ran"
    src = f"open({str(marker)!r}, 'w').write('ran')\n"
    seen = []

    def replace(meta):
        meta["module_src"] = src
        seen.append(meta["class_name"])

    path = _rewritten(tmp_path, monkeypatch, replace)
    assert "Generator" in seen and "Discriminator" in seen
    calls = []
    for name in ("exec", "eval", "compile"):
        real = getattr(builtins, name)
        monkeypatch.setattr(builtins, name, lambda *a, _real=real, _n=name, **k:
                            (calls.append((_n, str(a[0])[:80])), _real(*a, **k))[1])
    out = cli_in_process("import", "stylegan2-ada", path, "--out", tmp_path / "src.pt")
    monkeypatch.undo()
    assert out.returncode == 0, out.stderr
    assert not marker.exists()
    assert not [c for c in calls if str(marker) in c[1]], calls
    assert load_checkpoint(tmp_path / "src.pt")["arch"]["resolution"] == 32


def test_torch_is_at_least_the_release_without_weights_only_advisories():
    """pyproject's floor, and the torch this suite runs on, are >= 2.10 (README, Security:
    CVE-2025-32434, CVE-2026-24747)."""
    floor = re.search(r'"torch>=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert floor and (int(floor[1]), int(floor[2])) >= (2, 10), floor
    assert tuple(map(int, torch.__version__.split(".")[:2])) >= (2, 10), torch.__version__


def _saved(path, obj):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("case", ["mimicry_1d", "dcgan_1d", "dcgan_empty_fc", "rosinality_list",
                                  "rosinality_value"])
def test_an_importer_given_well_formed_nonsense_refuses_in_one_line(tmp_path, case):
    """Files torch would load, holding what no importer expects: one line each."""
    vec = torch.zeros(3)
    ref = torch.load(ROOT.parent / "shared" / "reference" / "netD_epoch_0.pth",
                     weights_only=True)
    if case == "mimicry_1d":
        f = _saved(tmp_path / "g.pt", {"l1.weight": vec})
        argv, fragment = ("mimicry", f, _saved(tmp_path / "d.pt", {"l5.weight_orig": vec})), \
            "'l1.weight' is missing or not a 2-d tensor"
    elif case == "dcgan_1d":
        f = _saved(tmp_path / "g.pth", {"main.0.weight": vec})
        argv, fragment = ("pytorch-examples-dcgan", f, f), "not a 4-d tensor"
    elif case == "dcgan_empty_fc":
        d = _saved(tmp_path / "d.pth", {**ref, "main.11.weight": torch.zeros(0, 5)})
        argv, fragment = ("pytorch-examples-dcgan",
                          ROOT.parent / "shared" / "reference" / "netG_epoch_0.pth", d), \
            "has shape [0]"
    elif case == "rosinality_list":
        argv, fragment = ("rosinality", _saved(tmp_path / "r.pt", {"g_ema": [1], "d": {}})), \
            "its G: not a state dict of tensors"
    else:
        argv, fragment = ("rosinality", _saved(tmp_path / "r.pt", {"g_ema": {"x": "y"},
                                                                  "d": {}})), \
            "not a state dict of tensors"
    out = cli_in_process("import", *argv, "--out", tmp_path / "x.pt")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert fragment in out.stderr and not (tmp_path / "x.pt").exists(), out.stderr


def _rewritten(tmp_path, monkeypatch, change) -> Path:
    """The reference pickle, its networks' states changed by ``change(meta)``."""
    import pickle
    with nvidia_persistence(monkeypatch):
        data = pickle.loads(PKL.read_bytes())

        def walk(obj):
            meta = getattr(obj, "meta", None)
            if isinstance(meta, dict) and "state" in meta:
                change(meta)
                for v in meta["state"].get("_modules", {}).values():
                    walk(v)

        for v in data.values():
            walk(v)
        path = tmp_path / "net.pkl"
        path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def test_networks_kept_in_ordered_dicts_import_the_same(tmp_path, monkeypatch):
    """torch < 2.0 (NVIDIA's published pickles) kept _parameters, _buffers and _modules in
    OrderedDicts: read as the same network, tensor for tensor."""
    import collections

    def ordered(meta):
        for k in ("_parameters", "_buffers", "_modules"):
            if k in meta["state"]:
                meta["state"][k] = collections.OrderedDict(meta["state"][k])

    path = _rewritten(tmp_path, monkeypatch, ordered)
    for pkl, out in ((PKL, "a.pt"), (path, "b.pt")):
        res = cli_in_process("import", "stylegan2-ada", pkl, "--out", tmp_path / out)
        assert res.returncode == 0, res.stderr
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for net in ("G", "D"):
        assert a[net].keys() == b[net].keys()
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])


@pytest.mark.parametrize("change, fragment", [
    (lambda m: m["state"].get("_parameters", {}).update({7: torch.zeros(1)}),
     "not a dict by names"),
    (lambda m: m["state"].get("_modules", {}).update(  # a copy: one module used twice is
        {"b0": copy.deepcopy(m["state"]["_modules"]["b4"])}  # refused as such
        if "b4" in m["state"].get("_modules", {}) else {}), "has no place in our network"),
    (lambda m: m["state"].get("_modules", {}).update(
        {"b0": m["state"]["_modules"].get("b4")} if "b4" in m["state"].get("_modules", {})
        else {}), "met a second time"),
])
def test_a_network_with_odd_names_refuses_in_one_line(tmp_path, monkeypatch, change, fragment):
    path = _rewritten(tmp_path, monkeypatch, change)
    out = cli_in_process("import", "stylegan2-ada", path, "--out", tmp_path / "x.pt")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert fragment in out.stderr, out.stderr


def test_sample_of_an_imported_source_is_one_line(tmp_path):
    """An imported checkpoint holds no run to rebuild: `sample` says so, writes nothing."""
    assert cli_in_process("import", "stylegan2-ada", PKL, "--out", tmp_path / "src.pt"
                          ).returncode == 0
    out = cli_in_process("sample", tmp_path / "src.pt", "--out", tmp_path / "s.png")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "an imported source" in out.stderr and not (tmp_path / "s.png").exists()
