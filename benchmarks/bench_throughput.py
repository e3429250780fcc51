"""Figure 1: images/s of gansweep's training loop for one trial vs a minimal hand-written
PyTorch loop of the same model, batch, loss (WGAN, RMSprop, clipping) and n_critic.

    python benchmarks/bench_throughput.py [--width 32] [--batch 64] [--iters 20] [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks._common import Timer, interleaved, machine, summary
from gansweep.core.config import TrainConfig
from gansweep.core.models import ArchConfig, build_models
from gansweep.core.synthetic import make_domain
from gansweep.core.train import setup, train_step


def plain_loop(data: torch.Tensor, arch: ArchConfig, batch: int, device: torch.device):
    """The peer: what one would write by hand for WGAN (Arjovsky et al.), no framework."""
    torch.manual_seed(0)
    G, D = build_models(arch)
    G, D = G.to(device).train(), D.to(device).train()
    opt_g = torch.optim.RMSprop(G.parameters(), lr=5e-5)
    opt_d = torch.optim.RMSprop(D.parameters(), lr=5e-5)
    data = data.to(device)

    def step() -> None:
        for _ in range(5):
            idx = torch.randint(0, data.shape[0], (batch,), device=device)
            real = data[idx].float().div(127.5).sub(1.0)
            with torch.no_grad():
                fake = G(torch.randn(batch, arch.z_dim, device=device))
            loss = D(fake).mean() - D(real).mean()
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
            for p in D.parameters():
                p.data.clamp_(-0.01, 0.01)
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss = -D(G(torch.randn(batch, arch.z_dim, device=device))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)
    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=20, help="generator iterations per timing")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    arch = ArchConfig("dcgan", 32, a.width, 100, "batch")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_domain(Path(tmp) / "faces", "faces", 256, 32, seed=0)
        cfg = TrainConfig(data=str(folder), out=str(Path(tmp) / "run"), arch=arch, loss="wgan",
                          batch_size=a.batch, iters=10**6, metrics=[], device=str(device))
        state = setup(cfg)
        plain = plain_loop(state.data, arch, a.batch, device)

        def timed(step) -> float:
            with Timer() as t:
                for _ in range(a.iters):
                    step()
            return a.iters * 5 * a.batch / t.seconds  # real images through D per second

        timed(lambda: train_step(state)), timed(plain)  # warm-up
        runs = interleaved({"gansweep": lambda: timed(lambda: train_step(state)),
                            "plain": lambda: timed(plain)}, a.repeats)
    ratios = [g / p for g, p in zip(runs["gansweep"], runs["plain"])]
    print(machine())
    print(f"dcgan 32px width {a.width}, WGAN n_critic 5, batch {a.batch}, {a.iters} "
          f"iterations per timing, device {device}")
    for name, values in runs.items():
        print(f"{name:9s} images/s: {summary(values)}")
    print(f"per-pair ratio gansweep/plain: {summary(ratios)}")
    ratio = statistics.median(runs["gansweep"]) / statistics.median(runs["plain"])
    print(f"FIGURE 1: gansweep loop = {ratio:.3f}x the plain loop's images/s (goal >= 0.95)")


if __name__ == "__main__":
    main()
