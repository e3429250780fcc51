"""Checkpoints of other codebases load into our networks and reproduce the outputs their
own code recorded (../shared/reference, made by running that code), bit for bit on one
CPU thread, as the fixtures were made."""
import pytest
import torch

from gansweep.core.errors import GansweepError
from gansweep.core.foreign import load_mimicry_sngan, mimicry_sngan_key

from .conftest import SHARED

REFERENCE = SHARED / "reference"


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["mimicry-sngan32", "mimicry-sngan64"])
def test_mimicry_sngan_reproduces_its_outputs(name, one_thread):
    fx = torch.load(REFERENCE / f"{name}.pt", weights_only=True)
    g, d, arch = load_mimicry_sngan(fx["g_state"], fx["d_state"], name)
    assert arch.name == "sngan" and arch.z_dim == fx["config"]["generator_ctor"]["nz"]
    assert arch.resolution == fx["config"]["image_size"]
    with torch.no_grad():
        assert torch.equal(g.eval()(fx["z"]), fx["g_out"])
        assert torch.equal(d.eval()(fx["d_in"]), fx["d_out"])
        # train mode: batch statistics, one power iteration, both stored as mimicry does
        assert torch.equal(g.train()(fx["z"]), fx["g_out_train"])
        assert torch.equal(d.train()(fx["d_in"]), fx["d_out_train"])
    for net, key, state in (("G", "g_buffers_after_train", g.state_dict()),
                            ("D", "d_buffers_after_train", d.state_dict())):
        assert fx[key]
        for theirs, value in fx[key].items():
            assert torch.equal(state[mimicry_sngan_key(net, theirs)], value), theirs


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
