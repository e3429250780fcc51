"""The EMA generator: stylegan2-ada's average, of exactly the trainable tensors, and what
evaluation samples from."""
import pytest
import torch
from torch import nn

from gansweep.core.ema import EMA
from gansweep.core.evaluate import generate
from gansweep.core.train import setup, train_step
from gansweep.core.trial import transfer_config


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.trained = nn.Linear(3, 2)
        self.frozen = nn.Linear(2, 2).requires_grad_(False)
        self.norm = nn.BatchNorm1d(2)


def test_ema_equals_the_closed_form_average():
    torch.manual_seed(0)
    net = Toy()
    ema = EMA(net, kimg=0.004, rampup=None, batch_size=2)  # half-life 4 images: 2 steps
    beta = ema.beta(10**6)
    assert beta == pytest.approx(0.5 ** 0.5)
    start = net.trained.weight.detach().clone()
    frozen = ema.net.frozen.weight.clone()
    values = [torch.randn(2, 3) for _ in range(5)]
    for t, v in enumerate(values, start=1):
        with torch.no_grad():
            net.trained.weight.copy_(v)
            net.norm.running_mean.fill_(float(t))
        ema.update(images_seen=2 * t)
    # ema_T = beta^T w_0 + sum_t (1 - beta) beta^(T - t) w_t
    T = len(values)
    expected = beta ** T * start + sum((1 - beta) * beta ** (T - t) * v
                                       for t, v in enumerate(values, start=1))
    assert torch.allclose(ema.net.trained.weight, expected, atol=1e-6)
    assert torch.equal(ema.net.frozen.weight, frozen)  # constant: not averaged
    assert torch.equal(ema.net.norm.running_mean, net.norm.running_mean)  # buffers copied
    assert not any(p.requires_grad for p in ema.net.parameters())
    assert len(ema._targets) == 2 + 2  # trained.{weight,bias} and norm.{weight,bias}


def test_ema_rampup_caps_the_half_life():
    ema = EMA(Toy(), kimg=10, rampup=0.05, batch_size=32)
    # 320 images seen: half-life min(10000, 16) = 16 images, so beta = 0.5 ** (32 / 16)
    assert ema.beta(320) == pytest.approx(0.25)
    assert ema.beta(10**7) == pytest.approx(0.5 ** (32 / 10000))


def test_evaluation_samples_the_ema_generator(sources, faces, tmp_path):
    cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path), d="D(1,2,2)",
                          g="G(1,2,2)", iters=3, batch_size=8, metrics=[], ema_kimg=0.05,
                          ema_rampup=None)
    s = setup(cfg)
    for _ in range(3):
        train_step(s)
    averaged = generate(s, 8, seed=1)
    ema, s.ema = s.ema, None
    plain = generate(s, 8, seed=1)
    assert not torch.equal(averaged, plain)
    s.ema = ema
    assert torch.equal(generate(s, 8, seed=1), averaged)
    # Only G's trainable tensors are averaged: modulated units' gamma/beta, fine-tuned units.
    trainable = {n for n, p in s.G.named_parameters() if p.requires_grad}
    changed = {n for (n, p), (_, q) in zip(s.G.named_parameters(), s.ema.net.named_parameters())
               if not torch.equal(p, q)}
    assert changed and changed <= trainable
