"""Figure 8: the 'mild' augmentation, batched vs one image at a time (gansweep 0.2.0's
loop, torchvision's transforms per image), on a 64-image batch of 64 x 64 emoji.

    python -m benchmarks.bench_augment [--repeats 30]
"""
from __future__ import annotations

import argparse
import statistics

import torch
from torchvision.transforms import v2

from benchmarks._common import EMOJI, Timer, interleaved, machine, summary
from gansweep.core.augment import mild
from gansweep.core.data import load_folder

PER_IMAGE = v2.Compose([v2.RandomHorizontalFlip(0.5), v2.RandomRotation(10, fill=255),
                        v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    images = load_folder(EMOJI / "twemoji-faces", 64).images[:64]
    print(machine())

    def timed(fn):
        def run() -> float:
            with Timer() as t:
                fn(images)
            return t.seconds
        return run

    times = interleaved({"per image": timed(lambda x: torch.stack([PER_IMAGE(i) for i in x])),
                         "batched": timed(mild)}, a.repeats)
    for name, values in times.items():
        print(f"{name}: {summary([1000 * v for v in values], ' ms')}")
    ratio = statistics.median(times["per image"]) / statistics.median(times["batched"])
    print(f"FIGURE 8: batched 'mild' is {ratio:.1f}x the per-image loop on a 64 x 3 x 64 x 64 "
          f"batch ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
