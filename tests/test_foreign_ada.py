"""NVIDIA's stylegan2-ada-pytorch network pickles (core.nvidia_pickle, core.foreign_ada): read
without NVIDIA's code (``torch_utils`` and ``dnnlib`` cannot be imported in these tests) and
without running the module source they carry, they reproduce the outputs NVIDIA's own code
recorded (../shared/reference, section 4); a pickle naming any other global is refused
before anything of it runs; what our architecture cannot compute is refused in one line."""
from __future__ import annotations

import contextlib
import copy
import math
import os
import pickle
import pickletools
import sys
import types
from dataclasses import replace

import pytest
import torch

from gansweep.core.checkpoint import load_checkpoint
from gansweep.core.errors import GansweepError
from gansweep.core.foreign_ada import load_ada, read_ada
from gansweep.core.models import ArchConfig, build_models
from gansweep.core.stylegan2_layers import SQRT2, FusedLeakyReLU, ToRGB
from tests.helpers import assert_one_clear_line, assert_reproduces, cli_in_process

from .conftest import SHARED

PKL = SHARED / "reference" / "stylegan2-ada-tiny32.pkl"
OUTPUTS = SHARED / "reference" / "stylegan2-ada-tiny32.outputs.pt"
NVIDIA_CODE = ("torch_utils", "dnnlib")


@pytest.fixture
def without_nvidia_code(monkeypatch):
    """NVIDIA's packages cannot be imported: an import of either fails (None in sys.modules)."""
    for name in NVIDIA_CODE:
        assert name not in sys.modules, f"{name} was imported before the test"
        monkeypatch.setitem(sys.modules, name, None)
    yield
    for name in NVIDIA_CODE:
        assert sys.modules[name] is None
        with pytest.raises(ImportError):
            __import__(name)


def imported(path, *options) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """``gansweep import stylegan2-ada PKL --out path``; the source's G and D in eval mode."""
    out = cli_in_process("import", "stylegan2-ada", PKL, "--out", path, *options)
    assert out.returncode == 0, out.stderr
    ckpt = load_checkpoint(path)
    g, d = build_models(ArchConfig(**ckpt["arch"]))
    g.load_state_dict(ckpt["G"])
    d.load_state_dict(ckpt["D"])
    return g.eval(), d.eval(), ckpt


def test_import_reproduces_nvidias_outputs(tmp_path, one_thread, without_nvidia_code):
    """G_ema with its stored noise (noise_const x noise_strength), its W (ws), truncation at
    psi 0.7 around mapping.w_avg, the non-EMA G on request, and D."""
    fx = torch.load(OUTPUTS, weights_only=True)
    g, d, ckpt = imported(tmp_path / "src.pt")
    assert ckpt["config"]["loss"] == "stylegan2" and ckpt["origin"]["generator"] == "G_ema"
    assert ckpt["arch"] == {**ckpt["arch"], "resolution": 32, "width": 64, "z_dim": 32,
                            "mapping_layers": 2, "channel_base": 512, "conv_clamp": 256.0,
                            "mbstd_group": 4, "mbstd_channels": 1, "w_avg": True}
    with torch.no_grad():
        image, ws = g(fx["z"], return_latents=True)
        assert_reproduces(image, fx["g_ema_const"], "G_ema")
        assert_reproduces(ws, fx["ws"], "ws")
        assert_reproduces(g(fx["z"], truncation=0.7), fx["g_ema_trunc07"], "G_ema psi 0.7")
        assert_reproduces(d(fx["d_in"]), fx["d_out"], "D")
    g, _, ckpt = imported(tmp_path / "src_g.pt", "--generator", "G")
    assert ckpt["origin"]["generator"] == "G"
    with torch.no_grad():
        assert_reproduces(g(fx["z"]), fx["g_const"], "G")


def test_a_global_outside_the_allow_list_is_refused_and_never_runs(tmp_path,
                                                                  without_nvidia_code):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Exploit(), "D": None}))
    out = cli_in_process("import", "stylegan2-ada", path, "--out", tmp_path / "x.pt")
    assert not marker.exists(), "the pickle's os.system ran"
    assert_one_clear_line(out, "import", f"refuses the global '{os.system.__module__}.system'")
    assert not (tmp_path / "x.pt").exists()


class PersistentObj:
    """Pickled as NVIDIA's persistence pickles a network: a call of
    ``torch_utils.persistence._reconstruct_persistent_obj(meta)``."""

    def __init__(self, meta: dict):
        self.meta = meta

    def __reduce__(self):
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,)


@contextlib.contextmanager
def nvidia_persistence(monkeypatch):
    """Stand-ins for ``torch_utils.persistence`` while pickles are written (its
    ``_reconstruct_persistent_obj`` makes a ``PersistentObj``); afterwards ``torch_utils``
    cannot be imported again."""
    package, persistence = types.ModuleType("torch_utils"), types.ModuleType("persistence")

    def _reconstruct_persistent_obj(meta):
        return PersistentObj(meta)

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", persistence)
    yield
    monkeypatch.setitem(sys.modules, "torch_utils", None)
    monkeypatch.delitem(sys.modules, "torch_utils.persistence")


def test_a_pickle_of_protocol_3_imports_the_same(tmp_path, monkeypatch):
    """Python 3.7 (NVIDIA's supported version) pickles with protocol 3, where every set (each
    module's ``_non_persistent_buffers_set``) is a call of ``builtins.set``: the fixture
    written again that way gives the same source."""
    with nvidia_persistence(monkeypatch):
        with open(PKL, "rb") as f:  # our own fixture: unpickled with torch's usual functions
            data = pickle.load(f)
        old = tmp_path / "protocol3.pkl"
        old.write_bytes(pickle.dumps(data, protocol=3))
    calls = {arg for op, arg, _ in pickletools.genops(old.read_bytes()) if op.name == "GLOBAL"}
    assert "builtins set" in calls and "torch_utils.persistence _reconstruct_persistent_obj" \
        in calls, calls
    sources = []
    for pkl in (PKL, old):
        out = cli_in_process("import", "stylegan2-ada", pkl, "--out", tmp_path / "src.pt")
        assert out.returncode == 0, out.stderr
        sources.append(load_checkpoint(tmp_path / "src.pt"))
    assert sources[0]["arch"] == sources[1]["arch"]
    for net in ("G", "D"):
        assert sources[0][net].keys() == sources[1][net].keys()
        assert all(torch.equal(v, sources[1][net][k]) for k, v in sources[0][net].items())


@pytest.fixture(scope="module")
def records():
    return read_ada(PKL, None, False, "G_ema")


def _set(records, net: str, path: str, value):
    g, d = copy.deepcopy(records)
    rec = g if net == "G_ema" else d
    *modules, name = path.split(".")
    for m in modules:
        rec = rec.module(m)
    rec.state[name] = value
    return g, d


@pytest.mark.parametrize("net, path, value, fragment", [
    ("G_ema", "c_dim", 10, "G_ema.c_dim = 10: class-conditional networks cannot be represented"),
    ("D", "c_dim", 10, "D.c_dim = 10: class-conditional"),
    ("G_ema", "synthesis.b16.architecture", "resnet",
     "G_ema.synthesis.b16.architecture = 'resnet': our stylegan2 builds G's 'skip'"),
    ("D", "b8.architecture", "skip", "D.b8.architecture = 'skip': our stylegan2 builds D's "
     "'resnet'"),
    ("G_ema", "mapping.fc1.bias_gain", 1, "G_ema.mapping.fc1.bias_gain = 1: ours learns the "
     "mapping at lr x 0.01"),
    ("D", "b16.conv0.conv_clamp", None, "conv_clamp differs between layers"),
    ("D", "b4.mbstd.group_size", None, "D.b4.mbstd.group_size = None"),
    ("G_ema", "z_dim", 16, "G_ema.z_dim = 16: ours maps Z to W of the same size"),
])
def test_what_our_architecture_cannot_compute_is_refused(records, net, path, value, fragment):
    with pytest.raises(GansweepError) as e:
        load_ada(*_set(records, net, path, value), "net.pkl")
    assert str(e.value).startswith(f"net.pkl: {fragment}"), str(e.value)
    assert "\n" not in str(e.value)


def test_a_resample_filter_other_than_ours_is_refused(records):
    g, d = copy.deepcopy(records)
    d.module("b16").state["_buffers"]["resample_filter"] = torch.ones(4, 4) / 16
    with pytest.raises(GansweepError, match=r"D key 'b16.resample_filter' is not the "
                                            r"\[1, 3, 3, 1\] resample filter"):
        load_ada(g, d, "net.pkl")


def test_conv_clamp_is_nvidias(records, one_thread):
    """NVIDIA's bias_act: bias, leaky ReLU, gain sqrt(2), then the clamp; toRGB outputs
    clamped too; D's residual blocks clamp the conv path at clamp / sqrt(2) after folding
    the 1 / sqrt(2) into their gains. The fixture never reaches 256, so clamp at 2 here."""
    g0, d0, arch, _ = load_ada(*records, "net.pkl")
    g, d = build_models(replace(arch, conv_clamp=2.0))
    g.load_state_dict(g0.state_dict())
    d.load_state_dict(d0.state_dict())
    seen = {}
    for net in (g, d):
        for name, m in net.named_modules():
            if isinstance(m, (FusedLeakyReLU, ToRGB)) and getattr(m, "clamp", None):
                m.register_forward_hook(lambda m, i, o, name=name: seen.update(
                    {name: o.abs().max().item() if isinstance(m, FusedLeakyReLU) else
                     (o - m.upsample(i[2]) if len(i) > 2 else o).abs().max().item()}))
    fx = torch.load(OUTPUTS, weights_only=True)
    with torch.no_grad():
        image = g.eval()(fx["z"])
        assert not torch.allclose(image, g0.eval()(fx["z"]))
        assert 2.0 - 1e-5 <= max(seen.values()) <= 2.0 + 1e-5
        # D's first residual block against NVIDIA's arrangement of the same layers
        x = d.convs[0](fx["d_in"])
        block = d.convs[1]
        conv1, conv2, skip = block.conv1, block.conv2, block.skip
        h = conv1(x)
        pre = conv2[1](conv2[0](h)) + conv2[2].bias.view(1, -1, 1, 1)
        nvidia = torch.nn.functional.leaky_relu(pre, 0.2) * (SQRT2 * math.sqrt(0.5))
        nvidia = nvidia.clamp(-2 * math.sqrt(0.5), 2 * math.sqrt(0.5))
        nvidia = skip(x) * math.sqrt(0.5) + nvidia
        assert_reproduces(block(x), nvidia, "D block, clamped")
        assert not torch.allclose(block(x), d0.convs[1](x))
