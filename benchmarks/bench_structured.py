"""Which pairs are worth starting: the structured search (``sweep.searchers.structured``,
with its confirmation, ``sweep.searchers.confirm``) replayed on the recorded emoji grids
(benchmarks/recordings, 6 x 6 D x G pairs + 5 baselines, seeds 0-2) beside its peers driven
through the same replay: random pairs, Optuna's TPESampler and GPSampler
(``benchmarks.peers``, the ``bench`` extra), and the grid under ASHA.

Each replay searches one seed's trials; the same baselines run first; each budget counts the
pairs a searcher chose; compute counts every trial started (the structured search's
confirmation trials included) against one seed's whole grid. Regret is judged twice: against
each setting's final FID averaged over the 3 seeds, and against the one seed the replay
neither searched nor confirmed on (held-out). ``--orders`` draws (designs, sampler seeds, a
grid's trial orders) at each concurrency and search seed.

    python -m benchmarks.bench_structured [--orders 100] [--concurrency 1,4,16]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from benchmarks._common import machine
from benchmarks.bench_search import RECORDINGS, combined
from gansweep.sweep.replays.options import parse_variant
from gansweep.sweep.replays.schedulers import load_recording, replay_many
from gansweep.sweep.replays.searchers import parse_searcher, replay_budgets
from gansweep.sweep.replays.summary import Summary

ASHA = "grace20-rf4:grace=20,rf=4,score=last,rung=0"  # the cheapest ASHA of section 4d
ASHA_LATE = "grace40-rf4:grace=40,rf=4,score=last,rung=0"  # its best at p90
BUDGETS = [4, 5, 6, 8, 10, 12, 14, 16, 18]
# name -> (searcher, Optuna sampler or None)
SEARCHERS = {"structured + confirm top 2": ("structured", None),
             "structured, no confirmation": ("structured:confirm_top=0", None),
             "random": ("random", None), "Optuna TPE": ("random", "tpe"),
             "Optuna GP": ("random", "gp")}


def row(name: str, s: Summary) -> str:
    """One markdown row of the table."""
    c, r, h = (100 * np.array(x) for x in (s.compute, s.regret, s.held))
    f = 100 * np.array(s.found) if s.found else None
    found = f"{np.median(f):.2f}% / {np.percentile(f, 90):.2f}%" if f is not None else "-"
    return (f"| {name} | {np.median(c):.1f}% ({c.min():.1f}-{c.max():.1f}) | "
            f"{np.median(r):.2f}% | {np.percentile(r, 90):.2f}% | {100 * np.mean(s.hit):.0f}% | "
            f"{found} | {np.median(h):.2f}% | {np.percentile(h, 90):.2f}% |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=100)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--only", help="run only the searchers whose name contains this text")
    a = ap.parse_args()
    print(machine())
    rec = combined([load_recording(RECORDINGS / f"emoji-study-s{s}.json.gz") for s in (0, 1, 2)])
    concurrency = [int(c) for c in a.concurrency.split(",")]
    print(f"{len(rec.trials)} trials, seeds {rec.seeds}; {a.orders} orders x concurrency "
          f"{concurrency} per seed; budgets {BUDGETS} pairs")
    print("| searcher, pairs | compute, median (range) | regret median | regret p90 | best "
          "picked | best run: median / p90 | held-out median | held-out p90 |")
    print("|---|---|---|---|---|---|---|---|")
    none = parse_variant("none", rec.scheduler)
    results: dict[str, dict] = {}
    for name, (text, sampler) in SEARCHERS.items():
        if a.only and a.only not in name:
            continue
        policy = None
        if sampler is not None:
            from benchmarks.peers import optuna_policy  # the bench extra
            policy = optuna_policy(sampler)
        start = time.perf_counter()
        searcher = parse_searcher(text)
        searcher = replace(searcher, settings=replace(searcher.settings, seed=0))
        results[name] = replay_budgets(rec, searcher, none, a.orders, concurrency,
                                       budgets=BUDGETS, policy=policy)
        for b in BUDGETS:
            print(row(f"{name}, {b}", results[name][b]), flush=True)
        print(f"<!-- {name}: {time.perf_counter() - start:.0f} s -->", flush=True)
    if not a.only:
        for v in (ASHA, ASHA_LATE):
            s = replay_many(rec, parse_variant(v, rec.scheduler), a.orders, concurrency)
            print(row(f"grid + ASHA {v.split(':')[0]}", s), flush=True)
    if "structured + confirm top 2" in results:  # the acceptance test, in one line each
        ours = results["structured + confirm top 2"]
        for b in BUDGETS:
            p90 = {n: np.percentile(r[b].regret, 90) for n, r in results.items()}
            worse = [n for n in ("random", "Optuna TPE", "Optuna GP")
                     if n in p90 and p90["structured + confirm top 2"] > p90[n] + 1e-12]
            print(f"budget {b}: structured p90 {100 * p90['structured + confirm top 2']:.2f}%"
                  f", compute {100 * np.median(ours[b].compute):.1f}%; worse than: "
                  f"{', '.join(worse) or 'none'}")


if __name__ == "__main__":
    main()
