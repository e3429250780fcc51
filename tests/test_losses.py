"""Every registered loss equals its closed form on fixed critic outputs; bce's label
smoothing and noise draw from their configured ranges."""
import re

import numpy as np
import pytest
import torch

from gansweep.core.config import TrainConfig
from gansweep.core.errors import GansweepError
from gansweep.core.losses import BCE, LOSSES, get_loss

REAL = torch.tensor([2.0, -0.5, 0.3, 1.5])
FAKE = torch.tensor([-1.0, 0.7, -2.5, 0.1])
W = torch.tensor([0.6, -0.8, 1.2])  # a linear critic's weights: |grad| = |W| = 1.562...


def softplus(x):
    return np.log1p(np.exp(x))


r, f = REAL.numpy().astype(np.float64), FAKE.numpy().astype(np.float64)
CLOSED_FORMS = {  # name -> (D's loss, G's loss) on critic outputs r (real), f (fake)
    "wgan": (f.mean() - r.mean(), -f.mean()),
    "wgan-gp": (f.mean() - r.mean() + 10 * (np.linalg.norm(W.numpy()) - 1) ** 2, -f.mean()),
    "hinge": (np.maximum(0, 1 - r).mean() + np.maximum(0, 1 + f).mean(), -f.mean()),
    "bce": (softplus(-r).mean() + softplus(f).mean(), softplus(-f).mean()),
    "stylegan2": (softplus(-r).mean() + softplus(f).mean(), softplus(-f).mean()),
}


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_equals_its_closed_form(name):
    """The critic is linear in its input (x . W): its outputs on the chosen inputs are REAL
    and FAKE, and its input gradient has norm |W| everywhere (WGAN-GP's penalty term)."""
    assert name in CLOSED_FORMS, f"loss {name!r} has no closed form in this test"
    def inputs(out):  # images x (N x 3 x 1 x 1) with x . W = out
        return (out[:, None] * W / W.dot(W))[:, :, None, None]
    critic = lambda x: x.flatten(1) @ W  # noqa: E731
    loss = get_loss(name)
    d = loss.d_loss(critic, inputs(REAL), inputs(FAKE)).item()
    g = loss.g_loss(critic, inputs(FAKE)).item()
    assert d == pytest.approx(CLOSED_FORMS[name][0], rel=1e-5)
    assert g == pytest.approx(CLOSED_FORMS[name][1], rel=1e-5)


def test_label_smoothing_and_noise_draw_from_their_ranges():
    torch.manual_seed(0)
    n = 20_000
    smooth = BCE(label_smoothing=0.2)
    real, fake = smooth.targets(n, True, "cpu"), smooth.targets(n, False, "cpu")
    assert 0.8 <= real.min() < 0.81 and 1.19 < real.max() <= 1.2  # Price: 0.8 - 1.2 for 1
    assert -0.2 <= fake.min() < -0.19 and 0.19 < fake.max() <= 0.2  # and -0.2 - 0.2 for 0
    noisy = BCE(label_noise=0.1).targets(n, True, "cpu")
    assert set(noisy.unique().tolist()) == {0.0, 1.0}
    assert abs((noisy == 0).float().mean().item() - 0.1) < 0.01  # 4.7 sd of a binomial
    both = BCE(label_smoothing=0.2, label_noise=0.1).targets(n, False, "cpu")
    assert abs((both > 0.5).float().mean().item() - 0.1) < 0.01
    assert ((both.abs() <= 0.2) | ((both - 1).abs() <= 0.2)).all()
    assert BCE().targets(4, True, "cpu").tolist() == [1.0] * 4  # off by default


def test_stylegan2_lazy_r1_and_adam_settings():
    """R1 = gamma/2 E|grad D(real)|^2, applied every 16th D step and scaled by 16; Adam's lr
    and beta2 corrected by 16/17 for D only (Karras et al. 2020, appendix B)."""
    loss = get_loss("stylegan2", r1_gamma=4.0)
    critic = lambda x: x.flatten(1) @ W  # noqa: E731  (input gradient W for every sample)
    real = torch.randn(4, 3, 1, 1)
    penalties = {i: loss.d_penalty(critic, real, i) for i in range(33)}
    assert {i for i, p in penalties.items() if p is not None} == {0, 16, 32}
    assert penalties[16].item() == pytest.approx(4.0 / 2 * W.dot(W).item() * 16, rel=1e-6)
    assert get_loss("stylegan2").r1_gamma == 10.0
    w = torch.nn.Parameter(torch.zeros(2))
    d_opt = loss.optimizer([{"params": [w], "lr": 0.002}], 0.002, "D").param_groups[0]
    g_opt = loss.optimizer([w], 0.002, "G").param_groups[0]
    assert d_opt["lr"] == pytest.approx(0.002 * 16 / 17)
    assert d_opt["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert g_opt["lr"] == 0.002 and g_opt["betas"] == (0.0, 0.99)


def test_stylegan2_path_length_regularisation():
    """Every 4th G step on half the batch: 4 x weight x E(|J^T y| - a)^2 with a the running
    mean of the lengths (decay 0.01), which the checkpoint keeps; G's Adam corrected by 4/5."""
    from gansweep.core.models import ArchConfig, build_models

    torch.manual_seed(0)
    g, _ = build_models(ArchConfig("stylegan2", 32, 8, 16, mapping_layers=2))
    loss = get_loss("stylegan2", path_length=2.0)
    drawn = []

    def noise(n):
        drawn.append(n)
        return torch.randn(n, 16)
    assert [i for i in range(9) if loss.g_penalty(g, noise, 8, i) is not None] == [0, 4, 8]
    assert drawn == [4, 4, 4]  # half the batch, and no draws at the other steps
    assert 0 < loss.state_dict()["mean_path_length"]
    fresh = get_loss("stylegan2", path_length=2.0)
    fresh.load_state_dict(loss.state_dict())
    assert fresh.mean_path_length == loss.mean_path_length
    g_opt = fresh.optimizer([torch.nn.Parameter(torch.zeros(1))], 0.002, "G").param_groups[0]
    assert g_opt["lr"] == pytest.approx(0.002 * 4 / 5)
    assert g_opt["betas"] == pytest.approx((0.0, 0.99 ** (4 / 5)))


@pytest.mark.parametrize("over, fragment", [
    ({"loss": "wgan", "r1_gamma": 5.0}, "r1_gamma: 5.0 needs loss 'stylegan2'"),
    ({"loss": "stylegan2", "path_length": 2.0}, "path_length: 2.0 needs loss and architecture"),
    ({"loss": "wgan", "label_smoothing": 0.2}, "label_smoothing: 0.2 needs loss 'bce'"),
    ({"loss": "bce", "label_noise": 1.5}, "label_noise: 1.5 must be a number in [0, 1)"),
])
def test_bad_label_options(over, fragment):
    with pytest.raises(GansweepError, match=re.escape(fragment)):
        TrainConfig(data="x", out="y", **over)
