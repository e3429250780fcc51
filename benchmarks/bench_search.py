"""Figure 4: can early stopping be trusted? The emoji study's grid (6 x 6 partitions + the 5
baselines, search_spaces/emoji_study.yaml) recorded to the end with 3 seeds and EMA
evaluation, and its seed-0 twin without EMA; then ``gansweep replay`` of schedulers on the
recordings.

Reports (a) Spearman rho between the rung score at each iteration and the final FID, with
and without EMA, and (b) for each scheduler setting, over >= 100 random trial orders per seed
and several concurrency levels: the compute spent as a fraction of the grid, the median and
90th-percentile regret of the pick against the grid's best setting (seed means), and how
often the best was picked.

    python -m benchmarks.bench_search [--storage runs/sweeps] [--orders 100] [--seeds 0,1,2]

Each seed of the EMA grid is its own sweep (``emoji-study-s<seed>``), so the recording can
be made one seed at a time; the replays read the seeds recorded so far as one grid. A
finished grid is saved to benchmarks/recordings/<name>.json.gz (``gansweep replay --export``'s
format) and read from there afterwards; interrupted grids in the storage are resumed. One
seed's grid takes 1-2 hours on 2 CPU cores, the seed-0 grid without EMA a little less; the
replays take a minute.
"""
from __future__ import annotations

import argparse
import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from benchmarks._common import ROOT, machine
from gansweep.results.report import write_results
from gansweep.sweep.record.state import SweepState
from gansweep.sweep.replays.options import parse_variant
from gansweep.sweep.replays.schedulers import Recording, load_recording, replay_many
from gansweep.sweep.spec.files import find_spec
from gansweep.sweep.spec.ranking import ScoreRule, score
from gansweep.sweep.spec.validate import parse_spec

RECORDINGS = ROOT / "benchmarks" / "recordings"  # finished grids, kept in the repository

# Scheduler settings compared on the recordings (NAME:key=value over the spec's scheduler).
VARIANTS = [
    "today",
    "last-noise1:score=last,noise=1,rung=0",
    "last-noise2:score=last,noise=2,rung=0",
    "mean2:score=mean,window=2,rung=0",
    "mean3:score=mean,window=3,rung=0",
    "mean3-noise1:score=mean,window=3,noise=1,rung=0",
    "best:score=best,rung=0",
    "rung128:score=last,rung=1",
    "rung128-noise1:score=last,rung=1,noise=1",
    "noise1-rf8:score=last,rf=8,noise=1,rung=0",
    "grace40-rf3:grace=40,rf=3,score=last,rung=0",
    "grace40-rf4:grace=40,rf=4,score=last,rung=0",
    "grace60-rf3:grace=60,rf=3,score=last,rung=0",
    "grace100-rf2:grace=100,rf=2,score=last,rung=0",
    "grace100-rf2-mean3-noise1:grace=100,rf=2,score=mean,window=3,noise=1,rung=0",
    "grace120-rf2:grace=120,rf=2,score=last,rung=0",
    "grace140-rf2:grace=140,rf=2,score=last,rung=0",
    "grace140-rf2-mean2:grace=140,rf=2,score=mean,window=2,rung=0",
]


def record(spec_path: Path, data: dict, storage: Path) -> Recording:
    """The grid's recording: read from benchmarks/recordings/ when it was recorded before,
    else recorded (launched, or resumed if it exists and is unfinished) and saved there."""
    saved = RECORDINGS / f"{data['name']}.json.gz"
    if saved.is_file():
        return load_recording(saved)
    # Ray only to record: the replays (and bench_structured, which imports this) need none
    from gansweep.sweep.run.driver import launch, resume

    spec = parse_spec(data, Path.cwd(), str(spec_path))
    sweep_dir = storage.resolve() / spec.name
    if (sweep_dir / "gansweep" / "trials.json").is_file():
        counts = SweepState.load(sweep_dir).counts()
        if counts["pending"] or counts["running"] or counts["errored"]:
            resume(sweep_dir)
    else:
        launch(spec, str(storage))
    write_results(sweep_dir)
    recording = load_recording(sweep_dir)
    recording.save(saved)
    return recording


def combined(recordings: list[Recording]) -> Recording:
    """Per-seed grids of one spec read as one grid with several seeds."""
    return replace(recordings[0], trials=[t for r in recordings for t in r.trials])


def rank_correlations(rec: Recording, rule: ScoreRule) -> dict[int, float]:
    """rho(score at iteration t, final FID) over the grid's trials of each seed, averaged
    over seeds, per evaluated iteration t."""
    out: dict[int, list[float]] = {}
    for s in rec.seeds:
        trials = [t for t in rec.trials if t.seed == s]
        final = np.array([t.evaluations[-1][rec.metric] for t in trials])
        for k, e in enumerate(trials[0].evaluations[:-1]):
            early = np.array([score([{n: v for n, v in x.items() if n != "fid_rung"}
                                     for x in t.evaluations[:k + 1]], rec.metric, rule)[0]
                              for t in trials])
            rho = np.corrcoef(np.argsort(np.argsort(early)), np.argsort(np.argsort(final)))[0, 1]
            out.setdefault(e["iteration"], []).append(rho)
    return {it: float(np.mean(v)) for it, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", default=str(ROOT / "runs" / "sweeps"))
    ap.add_argument("--orders", type=int, default=100)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--record-only", action="store_true")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the EMA grid to record")
    ap.add_argument("--no-twin", action="store_true", help="skip the grid without EMA")
    a = ap.parse_args()
    spec_path, _ = find_spec("emoji_study")
    grid = yaml.safe_load(spec_path.read_text())
    storage = Path(a.storage)
    seeds = [int(s) for s in a.seeds.split(",")]
    ema = [record(spec_path, {**grid, "name": f"{grid['name']}-s{s}", "seed": [s]}, storage)
           for s in seeds]
    grids = {f"EMA, seeds {a.seeds}": ema}
    if not a.no_twin:
        plain = copy.deepcopy(grid)
        plain.update(name=f"{grid['name']}-noema", seed=[0], ema_kimg="off")
        plain["scheduler"] = {k: v for k, v in grid["scheduler"].items()
                              if k != "rung_fid_samples"}
        grids["no EMA, seed 0"] = [record(spec_path, plain, storage)]
    if a.record_only:
        return
    print(machine())
    recordings = {k: combined(rs) for k, rs in grids.items()}
    concurrency = [int(c) for c in a.concurrency.split(",")]
    for name, rec in recordings.items():
        rhos = rank_correlations(rec, ScoreRule())
        print(f"rho(FID_t, final FID), {name}: " + ", ".join(f"t={t}: {r:.2f}"
                                                            for t, r in rhos.items()))
        names = VARIANTS if name.startswith("EMA") else ["today"]
        for v in names:
            print(f"  [{name}] " + replay_many(rec, parse_variant(v, rec.scheduler), a.orders,
                                                concurrency).line(), flush=True)


if __name__ == "__main__":
    main()
