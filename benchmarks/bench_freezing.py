"""Figure 2: what freezing saves. Seconds per training iteration of a mostly frozen
partition and of an AdaFM-heavy one vs full fine-tuning, through gansweep's loop.

    python benchmarks/bench_freezing.py [--width 32] [--batch 64] [--iters 10] [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks._common import Timer, interleaved, machine, summary
from gansweep.core.checkpoint import snapshot
from gansweep.core.config import TrainConfig
from gansweep.core.models import ArchConfig
from gansweep.core.synthetic import make_domain
from gansweep.core.train import setup, train_step
from gansweep.core.treatments import count_trainable
from gansweep.core.trial import transfer_config

SETTINGS = {"fine-tune D(0,0,5)G(0,0,5)": ("D(0,0,5)", "G(0,0,5)"),
            "mostly frozen D(3,0,2)G(3,0,2)": ("D(3,0,2)", "G(3,0,2)"),
            "AdaFM-heavy D(0,4,1)G(0,4,1)": ("D(0,4,1)", "G(0,4,1)"),
            "frozen + AdaFM D(3,2,0)G(3,2,0)": ("D(3,2,0)", "G(3,2,0)")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    arch = ArchConfig("dcgan", 32, a.width, 100, "batch")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_domain(Path(tmp) / "faces", "faces", 256, 32, seed=0)
        source = Path(tmp) / "source.pt"
        snapshot(setup(TrainConfig(data=str(folder), out=str(Path(tmp) / "s"), arch=arch,
                                   metrics=[], device=device)), source)
        states = {name: setup(transfer_config(str(source), str(folder), str(Path(tmp) / name),
                                              d=d, g=g, batch_size=a.batch, metrics=[],
                                              device=device))
                  for name, (d, g) in SETTINGS.items()}

        def timed(state) -> float:
            with Timer() as t:
                for _ in range(a.iters):
                    train_step(state)
            return t.seconds / a.iters

        for s in states.values():
            timed(s)  # warm-up
        runs = interleaved({n: (lambda s=s: timed(s)) for n, s in states.items()}, a.repeats)
    print(machine())
    print(f"dcgan 32px width {a.width}, WGAN n_critic 5, batch {a.batch}, device {device}")
    base = statistics.median(runs["fine-tune D(0,0,5)G(0,0,5)"])
    lines = []
    for name, values in runs.items():
        s = states[name]
        print(f"{name:34s} s/iter {summary(values)}; trainable G {count_trainable(s.G):,} "
              f"D {count_trainable(s.D):,}")
        lines.append(f"{name} {statistics.median(values) / base:.2f}x")
    print("FIGURE 2: iteration time relative to full fine-tuning: " + "; ".join(lines))


if __name__ == "__main__":
    main()
