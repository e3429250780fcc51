"""StyleGAN2 in rosinality's layout: its fixtures load and reproduce their recorded outputs,
the FFHQ-256 configuration has exactly rosinality's keys and shapes, and the transfer units
cover the networks. (The treatments are tested over every architecture in test_treatments.)"""
import json

import pytest
import torch

from gansweep.core.models import ArchConfig, build_models
from tests.helpers import assert_reproduces

from .conftest import SHARED

REFERENCE = SHARED / "reference"


def fixture_arch(fx: dict) -> ArchConfig:
    g = fx["config"]["generator_ctor"]
    return ArchConfig("stylegan2", g["size"], width=fx["config"]["channels"][4],
                      z_dim=g["style_dim"], mapping_layers=g["n_mlp"])


@pytest.mark.parametrize("name", ["tiny32", "tiny128"])
def test_rosinality_fixtures_reproduce(name):
    fx = torch.load(REFERENCE / f"stylegan2-rosinality-{name}.pt", weights_only=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the fixtures were made
    try:
        g, d = build_models(fixture_arch(fx))
        assert list(g.state_dict()) == list(fx["g_state"])  # key order too
        assert list(d.state_dict()) == list(fx["d_state"])
        g.load_state_dict(fx["g_state"])
        d.load_state_dict(fx["d_state"])
        g.eval()  # eval mode: the stored noise buffers (rosinality's randomize_noise=False)
        with torch.no_grad():
            image, latent = g(fx["z"], return_latents=True)
            assert_reproduces(image, fx["g_out"], "G")
            assert torch.equal(latent, fx["g_latent"])
            assert_reproduces(g(fx["z"], truncation=fx["truncation"],
                                truncation_latent=fx["truncation_latent"]),
                              fx["g_out_trunc"], "G truncated")
            assert_reproduces(g([fx["z"], fx["z2"]], inject_index=fx["inject_index"]),
                              fx["g_out_mix"], "G mixed")
            assert_reproduces(d(fx["d_in"]), fx["d_out"], "D")
            torch.manual_seed(fx["config"]["seed"] + 2)
            assert torch.equal(g.mean_latent(1000), fx["truncation_latent"])
    finally:
        torch.set_num_threads(threads)
    g.train()  # train mode draws fresh noise: the same latents give another image
    with torch.no_grad():
        assert not torch.equal(g(fx["z"]), fx["g_out"])


def test_ffhq256_has_rosinality_keys_and_shapes():
    listing = json.loads((REFERENCE / "stylegan2-rosinality-ffhq256-keys.json").read_text())
    with torch.device("meta"):
        g, d = build_models(ArchConfig("stylegan2", 256, width=512, z_dim=512))
    for net, ours in (("G", g), ("D", d)):
        assert [(k, list(v.shape)) for k, v in ours.state_dict().items()] == \
            [(k, list(v)) for k, v in listing[net].items()]
    assert sum(v.numel() for v in g.state_dict().values()) == 30_209_266
    assert sum(v.numel() for v in d.state_dict().values()) == 28_864_321


def test_units_partition_the_networks():
    """Every parameter belongs to exactly one unit; L_G = L_D = log2(size) - 1."""
    with torch.device("meta"):
        g, d = build_models(ArchConfig("stylegan2", 256, width=512, z_dim=512))
    assert [n for n, _ in g.transfer_units] == ["mapping", "b4", "b8", "b16", "b32", "b64",
                                                "b128", "b256"]
    assert [n for n, _ in d.transfer_units] == ["rgb", "b256", "b128", "b64", "b32", "b16",
                                                "b8", "b4"]
    for net in (g, d):
        owned = [id(p) for _, unit in net.transfer_units for p in unit.parameters()]
        assert sorted(owned) == sorted(id(p) for p in net.parameters())
