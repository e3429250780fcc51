"""Shared by the benchmarks: the machine they ran on, interleaved timing, summaries.

These machines are noisy, so every comparison runs its variants interleaved (A B A B ...)
in one process and reports medians, the spread (min-max) and ratios of medians."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EMOJI = SHARED / "data" / "emoji"
WEIGHTS = os.environ.get("GANSWEEP_INCEPTION_WEIGHTS",
                         str(SHARED / "fid" / "pt_inception-2015-12-05-fid-pool3.pth"))


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return (f"{date.today()} | {cpu}, {os.cpu_count()} cores, {gpu} | torch {torch.__version__}"
            f", {torch.get_num_threads()} threads | gansweep {commit}")


def interleaved(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each variant ``repeats`` times, interleaved; each call returns its own measure."""
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            out[name].append(fn())
    return out


def summary(values: list[float], unit: str = "") -> str:
    return (f"median {statistics.median(values):.4g}{unit} (min {min(values):.4g}, max "
            f"{max(values):.4g}, n={len(values)})")


class Timer:
    def __enter__(self) -> Timer:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0


def synthetic_source(root: Path, arch, *, sources: int, targets: int, iters: int,
                     batch_size: int) -> tuple[Path, Path]:
    """A synthetic source domain ('blobs'), a target ('faces') and a source GAN pretrained
    on the first for ``iters`` iterations, under ``root``: (source checkpoint, target)."""
    from gansweep.core.checkpoint import snapshot
    from gansweep.core.config import TrainConfig
    from gansweep.core.synthetic import make_domain
    from gansweep.core.train import train

    faces = make_domain(root / "faces", "faces", targets, arch.resolution, seed=1)
    blobs = make_domain(root / "blobs", "blobs", sources, arch.resolution, seed=0)
    source = root / "source.pt"
    snapshot(train(TrainConfig(data=str(blobs), out=str(root / "src"), batch_size=batch_size,
                               arch=arch, iters=iters, metrics=[])), source)
    return source, faces
