"""Figure 6, the emoji transfer study, from the grid benchmarks/bench_search.py records (the
6 x 6 partitions and the 5 baselines, every trial to the end, one sweep per seed): the
table of the baselines and the best partitions (best FID mean +- sd over the seeds, KID,
trainable parameters, iterations to reach the scratch baseline's FID) and how it compares
with the dissertation and Wang et al.

    python -m benchmarks.study_emoji [--grids 'runs/sweeps/emoji-study-s*']
"""
from __future__ import annotations

import argparse
import glob
import statistics
from pathlib import Path

import pandas as pd

from benchmarks._common import ROOT, machine
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
    ap.add_argument("--grids", default=str(ROOT / "runs" / "sweeps" / "emoji-study-s*"))
    ap.add_argument("--top", type=int, default=3)
    a = ap.parse_args()
    dirs = [Path(d) for d in sorted(glob.glob(a.grids))]
    trials = pd.concat([load_tables(d).trials for d in dirs])
    pairs = trials[trials["d_partition"].notna()].groupby("label")["best_fid"].mean()
    top = list(pairs.nsmallest(a.top).index)
    baselines = list(trials[trials["baseline"].notna()]["label"].unique())
    scratch = trials[trials["label"] == "scratch"]["best_fid"].mean()
    # Again, with one threshold: scratch's mean best FID over all its seeds.
    trials = pd.concat([load_tables(d, scratch).trials for d in dirs])
    labels = [*baselines, *top]
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
    print(f"grids: {', '.join(map(str, dirs))} ({len(trials)} trials)")
    print(f"threshold for 'iters to scratch FID': scratch's mean best FID {scratch:.2f}")
    print(markdown(table))
    fid = dict(zip(table["setting"], table["FID mean"]))
    fid["combination"] = min(fid[x] for x in top)
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
