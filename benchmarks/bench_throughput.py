"""Figure 1: images/s of gansweep's training loop for one trial vs a minimal hand-written
PyTorch loop of the same model, batch, loss and update schedule.

- ``--arch dcgan`` (default): 32 px DCGAN, WGAN (RMSprop 5e-5, clipping 0.01), n_critic 5.
- ``--arch stylegan2``: 32 px StyleGAN2 with reduced channels (width 32, z_dim 64, a 2-layer
  mapping network, as ``search_spaces/stylegan2_cpu.yaml``), the non-saturating logistic
  loss with lazy R1 every 16 iterations (gamma 10), Adam 0.002 with the lazy-regularisation
  correction, and an EMA of G updated after every G step (on in sweeps; rosinality's
  ``accumulate`` in the plain loop).

    python -m benchmarks.bench_throughput [--arch dcgan|stylegan2] [--width 32] [--batch 64]
        [--iters 20] [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from benchmarks._common import Timer, interleaved, machine, summary
from gansweep.core.config import TrainConfig
from gansweep.core.models import ArchConfig, build_models
from gansweep.core.synthetic import make_domain
from gansweep.core.train import setup, train_step

EMA_KIMG = 10.0


def _real(data: torch.Tensor, batch: int) -> torch.Tensor:
    idx = torch.randint(0, data.shape[0], (batch,), device=data.device)
    return data[idx].float().div(127.5).sub(1.0)


def plain_wgan(data: torch.Tensor, arch: ArchConfig, batch: int) -> Callable[[], None]:
    """What one would write by hand for WGAN (Arjovsky et al.), no framework."""
    torch.manual_seed(0)
    G, D = (net.to(data.device).train() for net in build_models(arch))
    opt_g = torch.optim.RMSprop(G.parameters(), lr=5e-5)
    opt_d = torch.optim.RMSprop(D.parameters(), lr=5e-5)

    def step() -> None:
        for _ in range(5):
            real = _real(data, batch)
            with torch.no_grad():
                fake = G(torch.randn(batch, arch.z_dim, device=data.device))
            loss = D(fake).mean() - D(real).mean()
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
            for p in D.parameters():
                p.data.clamp_(-0.01, 0.01)
        D.requires_grad_(False)
        g_loss = -D(G(torch.randn(batch, arch.z_dim, device=data.device))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)
    return step


def plain_stylegan2(data: torch.Tensor, arch: ArchConfig, batch: int) -> Callable[[], None]:
    """StyleGAN2's loop as rosinality's train.py writes it: D step, lazy R1 every 16, G
    step, EMA accumulate (half-life EMA_KIMG thousand images, no ramp-up)."""
    torch.manual_seed(0)
    G, D = (net.to(data.device).train() for net in build_models(arch))
    g_ema = build_models(arch)[0].to(data.device).eval().requires_grad_(False)
    g_ema.load_state_dict(G.state_dict())
    r1_every, gamma = 16, 10.0
    ratio = r1_every / (r1_every + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=0.002 * ratio, betas=(0.0, 0.99 ** ratio))
    decay = 0.5 ** (batch / (EMA_KIMG * 1000))
    iteration = [0]

    def step() -> None:
        iteration[0] += 1
        real = _real(data, batch)
        with torch.no_grad():
            fake = G(torch.randn(batch, arch.z_dim, device=data.device))
        loss = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        if iteration[0] % r1_every == 0:
            real = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
            r1 = gamma / 2 * grad.pow(2).flatten(1).sum(1).mean() * r1_every
            opt_d.zero_grad(set_to_none=True)
            r1.backward()
            opt_d.step()
        D.requires_grad_(False)
        g_loss = F.softplus(-D(G(torch.randn(batch, arch.z_dim, device=data.device)))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)
        with torch.no_grad():
            for avg, p in zip(g_ema.parameters(), G.parameters()):
                avg.lerp_(p, 1.0 - decay)
            for avg, b in zip(g_ema.buffers(), G.buffers()):
                avg.copy_(b)
    return step


SETUPS = {  # arch -> (ArchConfig from width, gansweep loss, n_critic, EMA, the plain loop)
    "dcgan": (lambda w: ArchConfig("dcgan", 32, w, 100, "batch"), "wgan", 5, None, plain_wgan),
    "stylegan2": (lambda w: ArchConfig("stylegan2", 32, w, 64, mapping_layers=2), "stylegan2",
                  1, EMA_KIMG, plain_stylegan2),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=sorted(SETUPS), default="dcgan")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=20, help="generator iterations per timing")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    make_arch, loss, n_critic, ema_kimg, plain_loop = SETUPS[a.arch]
    arch = make_arch(a.width)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_domain(Path(tmp) / "faces", "faces", 256, 32, seed=0)
        cfg = TrainConfig(data=str(folder), out=str(Path(tmp) / "run"), arch=arch, loss=loss,
                          batch_size=a.batch, iters=10**6, metrics=[], device=str(device),
                          ema_kimg=ema_kimg, ema_rampup=None)
        state = setup(cfg)
        plain = plain_loop(state.data, arch, a.batch)

        def timed(step) -> float:
            with Timer() as t:
                for _ in range(a.iters):
                    step()
            return a.iters * n_critic * a.batch / t.seconds  # real images through D per second

        timed(lambda: train_step(state)), timed(plain)  # warm-up
        runs = interleaved({"gansweep": lambda: timed(lambda: train_step(state)),
                            "plain": lambda: timed(plain)}, a.repeats)
    ratios = [g / p for g, p in zip(runs["gansweep"], runs["plain"])]
    print(machine())
    print(f"{a.arch} 32px width {a.width}, loss {loss}, n_critic {n_critic}, batch {a.batch}, "
          f"{a.iters} iterations per timing, device {device}")
    for name, values in runs.items():
        print(f"{name:9s} images/s: {summary(values)}")
    print(f"per-pair ratio gansweep/plain: {summary(ratios)}")
    ratio = statistics.median(runs["gansweep"]) / statistics.median(runs["plain"])
    print(f"FIGURE 1: gansweep loop = {ratio:.3f}x the plain loop's images/s (goal >= 0.95)")


if __name__ == "__main__":
    main()
