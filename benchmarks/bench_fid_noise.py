"""What limits ASHA on the emoji study: how much FID moves when only the generated sample
changes. Takes each given trial's newest checkpoint and evaluates FID with its sweep's
fid_samples on several noise seeds (the generator fixed), and once with many more samples.

    python -m benchmarks.bench_fid_noise [--sweep runs/sweeps/emoji-study] [--trials 3]
                                         [--seeds 8]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from benchmarks._common import ROOT, machine
from gansweep.core import metrics
from gansweep.core.config import TrainConfig
from gansweep.core.evaluate import generate
from gansweep.core.features import FeatureStats, get_extractor, resolve_weights
from gansweep.core.train import TrainState, setup
from gansweep.results.tables import load_tables
from gansweep.sweep.record.layout import newest_checkpoint


def fid(s: TrainState, n: int, seed: int) -> float:
    extractor = get_extractor(resolve_weights(s.cfg.inception_weights), s.device)
    fake = FeatureStats(extractor(generate(s, n, seed)))
    return metrics.fid(s.real, fake)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", default=str(ROOT / "runs" / "sweeps" / "emoji-study"))
    ap.add_argument("--trials", type=int, default=3, help="the best N finished trials")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--large", type=int, default=1024, help="samples for the reference FID")
    a = ap.parse_args()
    tables = load_tables(a.sweep)
    picked = tables.trials[tables.trials["status"] == "finished"].nsmallest(a.trials, "best_fid")
    print(machine())
    spreads = []
    for _, trial in picked.iterrows():
        trial_dir = Path(a.sweep) / trial["trial_dir"]
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig.from_dict({**json.loads((trial_dir / "config.json").read_text()),
                                         "out": tmp})
            s = setup(cfg, resume=newest_checkpoint(trial_dir))
        values = [fid(s, cfg.fid_samples, 10_000 + k) for k in range(a.seeds)]
        large = fid(s, a.large, 99)
        spread = statistics.stdev(values)
        spreads.append(spread / statistics.mean(values))
        print(f"{trial['label']} at iteration {s.iteration}: FID over {a.seeds} sample seeds "
              f"with {cfg.fid_samples} samples: mean {statistics.mean(values):.2f}, sd "
              f"{spread:.2f} (min {min(values):.2f}, max {max(values):.2f}); with {a.large} "
              f"samples: {large:.2f}")
    print(f"FIGURE 4b: FID's sampling sd at the study's fid_samples = "
          f"{100 * statistics.median(spreads):.1f}% of FID (median over {len(spreads)} trials)")


if __name__ == "__main__":
    main()
