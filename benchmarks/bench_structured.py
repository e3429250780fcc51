"""Which pairs are worth starting: the structured search (``sweep.search``) replayed on the
recorded emoji grids (benchmarks/recordings, 6 x 6 D x G pairs + 5 baselines, seeds 0-2),
alone and with ASHA, against ASHA alone and against random pairs of the same number.

Each replay searches one seed's trials (the truth: each setting's final FID averaged over
the 3 seeds), ``--orders`` design draws (a grid's: trial orders) at each concurrency. Compute
counts every trial started, baselines included, against the whole grid's trial-seconds.

    python -m benchmarks.bench_structured [--orders 100] [--concurrency 1,4,16]
"""
from __future__ import annotations

import argparse
import time

from benchmarks._common import machine
from benchmarks.bench_search import RECORDINGS, combined
from gansweep.sweep.replay import load_recording, parse_variant
from gansweep.sweep.replay_search import parse_searcher, replay_searcher

ASHA = "grace20-rf4:grace=20,rf=4,score=last,rung=0"  # the cheapest ASHA of section 4d
ASHA_LATE = "grace40-rf4:grace=40,rf=4,score=last,rung=0"  # its best at p90
# (searcher, scheduler): every trial to the end is scheduler 'none'
RUNS = [
    ("grid", ASHA), ("grid", ASHA_LATE),
    *[(f"{kind}:max_pairs={n}", "none") for n in (4, 6, 8, 12)
      for kind in ("structured", "random")],
    *[(f"{kind}:max_pairs={n}", ASHA_LATE) for n in (12, 16, 20)
      for kind in ("structured", "random")],
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=100)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--only", help="run only the runs whose searcher contains this text")
    a = ap.parse_args()
    print(machine())
    rec = combined([load_recording(RECORDINGS / f"emoji-study-s{s}.json.gz") for s in (0, 1, 2)])
    concurrency = [int(c) for c in a.concurrency.split(",")]
    print(f"{len(rec.trials)} trials, seeds {rec.seeds}; {a.orders} orders x concurrency "
          f"{concurrency} per seed")
    for searcher, variant in RUNS:
        if a.only and a.only not in searcher:
            continue
        start = time.perf_counter()
        line = replay_searcher(rec, parse_searcher(searcher), parse_variant(variant,
                               rec.scheduler), a.orders, concurrency).line()
        print(f"{line} [{time.perf_counter() - start:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
