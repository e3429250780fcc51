"""Checkpoints of other codebases load into our networks and reproduce the outputs their
own code recorded (../shared/reference, made by running that code) on one CPU thread, as the
fixtures were made: bit for bit on the fixtures' CPU, to float32 rounding on another
(tests.helpers.assert_reproduces); ``gansweep import`` makes transfer sources of them."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gansweep.core.checkpoint import load_checkpoint
from gansweep.core.errors import GansweepError
from gansweep.core.foreign import (
    IMPORTERS,
    examples_dcgan_key,
    load_examples_dcgan,
    load_mimicry_sngan,
    mimicry_sngan_key,
)
from gansweep.core.models import ArchConfig, build_models
from gansweep.core.train import train
from gansweep.core.trial import transfer_config
from tests.helpers import assert_one_clear_line, assert_reproduces, cli_in_process

from .conftest import SHARED

REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def mimicry_sngan48(tmp_path_factory) -> Path:
    """../shared/reference has no 48 px pair: record one the same way, with torch-mimicry's
    own code from its PyPI sdist (tests/make_mimicry_sngan48.py)."""
    where = tmp_path_factory.mktemp("mimicry48")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--no-binary", ":all:", "torch_mimicry==0.1.16", "-d", where], check=True)
    out = where / "mimicry-sngan48.pt"
    subprocess.run([sys.executable, Path(__file__).with_name("make_mimicry_sngan48.py"),
                    where / "torch_mimicry-0.1.16.tar.gz", out], check=True)
    return out


@pytest.mark.parametrize("name", ["mimicry-sngan32", "mimicry-sngan48", "mimicry-sngan64"])
def test_mimicry_sngan_reproduces_its_outputs(name, one_thread, request):
    path = request.getfixturevalue("mimicry_sngan48") if name == "mimicry-sngan48" else \
        REFERENCE / f"{name}.pt"
    fx = torch.load(path, weights_only=True)
    g, d, arch = load_mimicry_sngan(fx["g_state"], fx["d_state"], name)
    assert arch.name == "sngan" and arch.z_dim == fx["config"]["generator_ctor"]["nz"]
    assert arch.resolution == fx["config"]["image_size"]
    with torch.no_grad():
        assert_reproduces(g.eval()(fx["z"]), fx["g_out"], "G eval")
        assert_reproduces(d.eval()(fx["d_in"]), fx["d_out"], "D eval")
        # train mode: batch statistics, one power iteration, both stored as mimicry does
        assert_reproduces(g.train()(fx["z"]), fx["g_out_train"], "G train")
        assert_reproduces(d.train()(fx["d_in"]), fx["d_out_train"], "D train")
    for net, key, state in (("G", "g_buffers_after_train", g.state_dict()),
                            ("D", "d_buffers_after_train", d.state_dict())):
        assert fx[key]
        for theirs, value in fx[key].items():
            assert_reproduces(state[mimicry_sngan_key(net, theirs)], value, theirs)


def test_a_misfit_key_names_it_and_both_shapes():
    fx = torch.load(REFERENCE / "mimicry-sngan32.pt", weights_only=True)
    g_state = dict(fx["g_state"])
    g_state["block2.c1.weight"] = torch.zeros(16, 8, 3, 3)
    with pytest.raises(GansweepError, match=r"x.pt: G key 'block2.c1.weight' has shape "
                                            r"\[16, 8, 3, 3\], ours \[16, 16, 3, 3\]"):
        load_mimicry_sngan(g_state, fx["d_state"], "x.pt")
    with pytest.raises(GansweepError, match="D key 'extra.weight' has no place"):
        load_mimicry_sngan(fx["g_state"], {**fx["d_state"], "extra.weight": torch.zeros(1)},
                           "x.pt")


def test_pytorch_examples_dcgan_reproduces_its_outputs(one_thread):
    """D's output there is the sigmoid of our logit; its final 4 x 4 conv is our fc unit."""
    fx = torch.load(REFERENCE / "dcgan-pytorch-examples-tiny.pt", weights_only=True)
    for mode in ("eval", "train"):
        g, d, arch = load_examples_dcgan(fx["netG"], fx["netD"], "fixture")
        assert (arch.resolution, arch.width, arch.z_dim) == (64, 8, 16)
        g.train(mode == "train")
        d.train(mode == "train")
        with torch.no_grad():
            assert_reproduces(g(fx["z"]), fx[f"g_out_{mode}"], f"G {mode}")
            assert_reproduces(torch.sigmoid(d(fx["d_in"])).view(-1), fx[f"d_out_{mode}"],
                              f"D {mode}")
    for net, module in (("G", g), ("D", d)):  # BN buffers after the train-mode forward
        state = module.state_dict()
        for theirs, value in fx["bn_after_train"][f"net{net}"].items():
            assert_reproduces(state[examples_dcgan_key(net, theirs)], value, theirs)


FILES = {"pytorch-examples-dcgan": ("netG_epoch_0.pth", "netD_epoch_0.pth"),
         "mimicry": ("mimicry-sngan32-checkpoints/netG/netG_100_steps.pth",
                     "mimicry-sngan32-checkpoints/netD/netD_100_steps.pth"),
         "rosinality": ("stylegan2-rosinality-train-ckpt.pt",),  # G and D in one file
         "stylegan2-ada": ("stylegan2-ada-tiny32.pkl",)}


@pytest.mark.parametrize("fmt", IMPORTERS.names())
def test_imported_checkpoint_is_a_transfer_source(fmt, faces, tmp_path):
    assert fmt in FILES, f"import format {fmt!r} has no files in this test"
    files = [REFERENCE / f for f in FILES[fmt]]
    out = cli_in_process("import", fmt, *files, "--out", tmp_path / "src.pt")
    assert out.returncode == 0, out.stderr
    ckpt = load_checkpoint(tmp_path / "src.pt")
    assert ckpt["origin"]["format"] == fmt and ckpt["config"]["data"] is None
    assert ckpt["origin"]["files"]["G"]["path"] == str(files[0].resolve())  # links resolved
    cfg = transfer_config(str(tmp_path / "src.pt"), str(faces), str(tmp_path / "run"),
                          baseline="fine-tune", iters=1, batch_size=8, metrics=[])
    assert cfg.loss == IMPORTERS.get(fmt).loss
    assert train(cfg).iteration == 1


def test_import_refuses_pickled_objects_unless_trusted(tmp_path):
    fx = torch.load(REFERENCE / "dcgan-pytorch-examples-tiny.pt", weights_only=True)
    g_file = tmp_path / "netG.pth"  # a state dict beside an arbitrary object
    torch.save({"model_state_dict": fx["netG"], "args": argparse.Namespace(nz=16)}, g_file)
    d_file = REFERENCE / "netD_epoch_0.pth"
    assert_one_clear_line(cli_in_process("import", "pytorch-examples-dcgan", g_file, d_file,
                                         "--out", tmp_path / "x.pt"),
                          "import", "if you trust the file, pass --trust-pickle")
    out = cli_in_process("import", "pytorch-examples-dcgan", g_file, d_file, "--out",
                         tmp_path / "x.pt", "--trust-pickle")
    assert out.returncode == 0, out.stderr


def test_import_misfit_names_the_key_and_both_shapes(tmp_path):
    state = torch.load(REFERENCE / "netG_epoch_0.pth", weights_only=True)
    state["main.4.weight"] = torch.ones(5)
    torch.save(state, tmp_path / "netG.pth")
    assert_one_clear_line(cli_in_process("import", "pytorch-examples-dcgan",
                                         tmp_path / "netG.pth", REFERENCE / "netD_epoch_0.pth",
                                         "--out", tmp_path / "x.pt"),
                          "import", "G key 'main.4.weight' has shape [5], ours [32]")


def test_rosinality_checkpoint_imports_g_ema_and_d(tmp_path, one_thread):
    """train.py's checkpoint (its ``args`` an argparse.Namespace, allowed without
    --trust-pickle) becomes a source whose G is g_ema: it reproduces the tiny32 fixture's
    outputs, whose weights that checkpoint holds. One without D is refused in one line."""
    path = REFERENCE / "stylegan2-rosinality-train-ckpt.pt"
    out = cli_in_process("import", "rosinality", path, "--out", tmp_path / "src.pt")
    assert out.returncode == 0, out.stderr
    ckpt = load_checkpoint(tmp_path / "src.pt")
    fx = torch.load(REFERENCE / "stylegan2-rosinality-tiny32.pt", weights_only=True)
    g, d = build_models(ArchConfig(**ckpt["arch"]))
    g.load_state_dict(ckpt["G"])
    d.load_state_dict(ckpt["D"])
    with torch.no_grad():
        assert_reproduces(g.eval()(fx["z"]), fx["g_out"], "G")
        assert_reproduces(d(fx["d_in"]), fx["d_out"], "D")
    with torch.serialization.safe_globals([argparse.Namespace]):
        train_ckpt = torch.load(path, weights_only=True)
    torch.save({"g_ema": train_ckpt["g_ema"], "latent_avg": torch.zeros(64)},
               tmp_path / "converted.pt")  # what convert_weight.py writes without --disc
    assert_one_clear_line(cli_in_process("import", "rosinality", tmp_path / "converted.pt",
                                         "--out", tmp_path / "x.pt"),
                          "import", "holds no discriminator 'd'")
    assert_one_clear_line(cli_in_process("import", "rosinality", path, path,
                                         "--out", tmp_path / "x.pt"),
                          "import", "G and D are in one file")

