"""Figure 3: FID cost. Feature-extraction throughput of gansweep's FID path vs pytorch-fid's
own ``get_activations`` on the same PNG files, the FID difference between them, and the
fast paths (channels_last, larger batches, bf16 autocast), each kept only if its FID
differs from float32 by <= 0.1% relative.

    python benchmarks/bench_fid.py [--n 118] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance, get_activations

from benchmarks._common import EMOJI, WEIGHTS, Timer, interleaved, machine, summary
from gansweep.core.data import list_images, load_folder
from gansweep.core.features import FeatureStats, InceptionFeatures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=118, help="images per set")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    files = {"target": list_images(EMOJI / "twemoji-faces")[: a.n],
             "source": list_images(EMOJI / "noto-emoji")[: a.n]}
    # pytorch-fid reads the files with convert('RGB'): our loader's alpha='drop' is the same.
    images = {k: load_folder(EMOJI / ("twemoji-faces" if k == "target" else "noto-emoji"),
                             None, "drop").images[: a.n] for k in files}
    variants = {
        "gansweep f32 b50": InceptionFeatures(WEIGHTS, device),
        "gansweep f32 b100": InceptionFeatures(WEIGHTS, device, batch_size=100),
        "gansweep channels_last": InceptionFeatures(WEIGHTS, device, channels_last=True),
        "gansweep bf16 autocast": InceptionFeatures(WEIGHTS, device, bf16=True),
    }
    peer_model = InceptionFeatures(WEIGHTS, device).model
    feats: dict[str, dict[str, np.ndarray]] = {}

    def run(name: str) -> float:
        with Timer() as t:
            if name == "pytorch-fid get_activations":
                out = {k: get_activations([str(f) for f in files[k]], peer_model, 50, 2048,
                                          device, num_workers=0) for k in files}
            else:
                out = {k: variants[name](images[k]) for k in files}
        feats[name] = out
        return 2 * a.n / t.seconds

    names = ["pytorch-fid get_activations", *variants]
    runs = interleaved({n: (lambda n=n: run(n)) for n in names}, a.repeats)
    fid = {}
    for name in names:
        s, t = FeatureStats(feats[name]["source"]), FeatureStats(feats[name]["target"])
        fid[name] = calculate_frechet_distance(s.mu, s.sigma, t.mu, t.sigma)
    ref = fid["gansweep f32 b50"]
    print(machine())
    print(f"{a.n} twemoji-faces vs {a.n} noto-emoji PNGs, device {device}")
    lines = []
    for name in names:
        speed = statistics.median(runs[name]) / statistics.median(runs["gansweep f32 b50"])
        rel = abs(fid[name] - ref) / ref
        keep = "ok" if rel <= 1e-3 else "REJECTED (> 0.1%)"
        print(f"{name:28s} images/s {summary(runs[name])}; {speed:.2f}x; FID {fid[name]:.6f} "
              f"(rel. diff {rel:.2e}, {keep})")
        lines.append(f"{name} {speed:.2f}x ({rel:.1e})")
    print("FIGURE 3: feature throughput relative to gansweep's float32 default (FID rel. "
          "diff): " + "; ".join(lines))


if __name__ == "__main__":
    main()
