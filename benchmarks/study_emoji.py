"""Figure 6, the emoji transfer study: after the grid sweep (bench_asha.py runs it), rerun
the five baselines and the three best partitions with two more seeds, then print the
table (best FID mean ± sd over 3 seeds, KID, trainable parameters, iterations to reach the
scratch baseline's FID) and how it compares with the dissertation and Wang et al.

    python benchmarks/study_emoji.py [--grid runs/sweeps/emoji-study] [--storage runs/sweeps]

It writes search_spaces/emoji_study_seeds.yaml (the seeds sweep's spec) and launches it,
or reuses/resumes it when it is already in the storage.
"""
from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import pandas as pd
import yaml

from benchmarks._common import ROOT, machine
from benchmarks.bench_asha import run
from gansweep.results.tables import load_tables

ORDER = ["combination", "fine-tune", "freeze", "scale-shift"]  # the dissertation's, best first


def markdown(frame: pd.DataFrame) -> str:
    def cell(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", default=str(ROOT / "runs" / "sweeps" / "emoji-study"))
    ap.add_argument("--storage", default=str(ROOT / "runs" / "sweeps"))
    ap.add_argument("--top", type=int, default=3)
    a = ap.parse_args()
    grid = load_tables(a.grid)
    spec = yaml.safe_load((Path(a.grid) / "gansweep" / "sweep.yaml").read_text())
    pairs = grid.trials[grid.trials["d_partition"].notna()].nsmallest(a.top, "best_fid")
    seeds_spec = {**spec, "name": f"{spec['name']}-seeds", "seed": [1, 2],
                  "partitions": [[d, g] for d, g in zip(pairs["d_partition"],
                                                        pairs["g_partition"])]}
    seeds_spec.pop("arch", None)
    path = ROOT / "search_spaces" / "emoji_study_seeds.yaml"
    for key in ("source", "target"):  # relative to the spec, like the shipped specs
        seeds_spec[key] = os.path.relpath(seeds_spec[key], path.parent)
    path.write_text("# Written by benchmarks/study_emoji.py: the emoji study's baselines and "
                    "top partitions with two more seeds.\n" + yaml.safe_dump(seeds_spec,
                                                                              sort_keys=False))
    seeds = load_tables(run(path, seeds_spec, Path(a.storage)))

    labels = [*spec["baselines"], *pairs["label"]]
    trials = pd.concat([grid.trials, seeds.trials])
    scratch = trials[trials["label"] == "scratch"]["best_fid"].mean()
    # Both sweeps again, with one threshold: scratch's mean best FID over all its seeds.
    trials = pd.concat([load_tables(s.sweep_dir, scratch).trials for s in (grid, seeds)])
    trials = trials[trials["label"].isin(labels)]
    rows = []
    for label in labels:
        t = trials[trials["label"] == label]
        reached = t["iters_to_threshold"].dropna().tolist()
        rows.append({"setting": label, "seeds": len(t),
                     "FID mean": t["best_fid"].mean(), "FID sd": t["best_fid"].std(ddof=1),
                     "KID mean": t["best_kid"].mean(),
                     "trainable G+D": int((t["trainable_g"] + t["trainable_d"]).iloc[0]),
                     "iters to scratch FID": f"{statistics.median(reached):.0f} "
                                             f"({len(reached)}/{len(t)})" if reached else
                                             f"never (0/{len(t)})"})
    table = pd.DataFrame(rows).sort_values("FID mean")
    print(machine())
    print(f"grid: {grid.sweep_dir} ({len(grid.trials)} trials); seeds: {seeds.sweep_dir}")
    print(f"threshold for 'iters to scratch FID': scratch's mean best FID {scratch:.2f}")
    print(markdown(table))
    fid = dict(zip(table["setting"], table["FID mean"]))
    fid["combination"] = min(fid[x] for x in pairs["label"])
    observed = sorted(ORDER, key=fid.get)
    print(f"dissertation's order {' < '.join(ORDER)}: observed {' < '.join(observed)} -> "
          f"{'agrees' if observed == ORDER else 'disagrees'}")
    print(f"Wang et al. (pretrained beats scratch on a small target): fine-tune "
          f"{fid['fine-tune']:.2f} vs scratch {fid['scratch']:.2f} -> "
          f"{'agrees' if fid['fine-tune'] < fid['scratch'] else 'disagrees'}")
    print("FIGURE 6: " + "; ".join(f"{r['setting']} {r['FID mean']:.1f}±{r['FID sd']:.1f}"
                                   for r in table.to_dict("records")))


if __name__ == "__main__":
    main()
