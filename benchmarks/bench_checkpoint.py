"""Bytes a trial writes in checkpoints (GPU/scale issue, item 2): a 64 x 64 DCGAN (width 64,
L = 5 units per net), fine-tune vs AdaFM-heavy trials, before and after lean checkpoints.

Before (gansweep 0.2.0): every report wrote the full state (G, D, both optimisers) and Tune
kept every checkpoint. After: the EMA generator is added (the ranking issue), frozen tensors
are left out of G, D and the EMA (a transfer's frozen weights are its source's), and Tune
keeps one. "Full + EMA" is today's state written whole: lean against full on the same
content. All are measured by writing the checkpoint of a real run after a few steps.

    python -m benchmarks.bench_checkpoint [--reports 10]
"""
from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import torch

from benchmarks._common import machine, synthetic_source
from gansweep.core.checkpoint import checkpoint_state
from gansweep.core.models import ArchConfig
from gansweep.core.train import setup, train_step
from gansweep.core.trial import transfer_config

ARCH = ArchConfig("dcgan", 64, 64, 100, "batch")
TRIALS = {"fine-tune": {"baseline": "fine-tune"},
          "scale-shift (all AdaFM)": {"baseline": "scale-shift"},
          "D(1,3,1)G(1,3,1) (AdaFM-heavy)": {"d": "D(1,3,1)", "g": "G(1,3,1)"}}


def nbytes(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=10, help="reports (checkpoints) per trial")
    a = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source, faces = synthetic_source(root, ARCH, sources=32, targets=16, iters=1,
                                         batch_size=8)
        for name, how in TRIALS.items():
            sizes = {}
            for when, ema, lean in (("before", None, False), ("lean", None, True),
                                    ("full", 10.0, False), ("after", 10.0, True)):
                cfg = transfer_config(str(source), str(faces), str(root / name), batch_size=8,
                                      iters=2, metrics=[], ema_kimg=ema, **how)
                s = setup(cfg)
                for _ in range(2):  # optimiser states exist from the first step on
                    train_step(s)
                    s.iteration += 1
                sizes[when] = nbytes(checkpoint_state(s, lean=lean))
            rows.append((name, sizes["before"], sizes["lean"], sizes["full"], sizes["after"]))
    print(machine())
    print(f"dcgan 64 px, width 64; {a.reports} reports per trial")
    mib = 2 ** 20
    print("| trial | checkpoint before | lean, no EMA | full + EMA | lean + EMA (after) | "
          "written per trial before / after | less written | kept on disk before / after |")
    print("|---|---|---|---|---|---|---|---|")
    for name, before, lean, full, after in rows:
        print(f"| {name} | {before / mib:.2f} MiB | {lean / mib:.2f} MiB ({before / lean:.2f}x) "
              f"| {full / mib:.2f} MiB | {after / mib:.2f} MiB ({full / after:.2f}x) | "
              f"{a.reports * before / mib:.0f} / {a.reports * after / mib:.0f} MiB | "
              f"{before / after:.2f}x | {a.reports * before / mib:.0f} / {after / mib:.1f} MiB |")
    print("FIGURE checkpoint: " + "; ".join(
        f"{n} {b / a:.2f}x less written than 0.2.0 ({b / le:.2f}x without the EMA; lean vs "
        f"full, both with the EMA: {f / a:.2f}x)" for n, b, le, f, a in rows))


if __name__ == "__main__":
    main()
