"""The driver at cluster size (GPU/scale issue, item 3). A sweep of every D x G partition of
a 5-unit DCGAN (21 x 21 = 441 pairs) and the 5 baselines, with 3 seeds: 1,338 trials, each
reporting 20 results, on a local Ray. The trials do not train: they report values shaped
like a real trial's (FID, its sd, the score) every ``--interval`` seconds (a real trial
writes its checkpoints itself, outside Tune), so what is measured is the driver: Ray
Tune's loop, our Recorder callback and scheduler, the sweep's logs. The same at 50 trials,
to see whether the cost per result grows with the sweep.

Reports, per size: the driver process's CPU time per result during the Tune run, our
callback's time per result, the wall time against the ideal (trials x reports x interval
/ concurrency), and the time of ``gansweep status`` and ``gansweep report`` on the finished sweep.

    python -m benchmarks.bench_driver [--sizes 50,1338] [--reports 20] [--interval 0.05]
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._common import WEIGHTS, machine, synthetic_source
from gansweep.core.models import ArchConfig
from gansweep.results.report import write_results
from gansweep.sweep.cli.listing import status_text
from gansweep.sweep.run import driver as runner

REPORTS, INTERVAL = 20, 0.05


def reporting_trial(config: dict) -> None:
    """Stands in for runner.run_trial: REPORTS results, INTERVAL seconds apart."""
    from ray import tune

    trial = config["trial"]
    rng = random.Random(f"{trial['label']}/{trial['seed']}")
    level = 250 + 100 * rng.random()
    for k in range(1, REPORTS + 1):
        time.sleep(INTERVAL)
        fid = level - 2 * k + rng.gauss(0, 3)
        tune.report({"iteration": k, "fid": fid, "fid_sd": 3.0, "kid": fid / 1000,
                     "score": fid, "score_sd": 3.0, "images_per_s": 0.0})


FIT, FIT_CPU = runner._fit, [0.0]


def timed_fit(tuner, sweep_dir, phase: str = "search") -> None:
    """runner._fit, measuring the driver's CPU time of the Tune runs only (not Ray's start
    nor the real-data statistics before it)."""
    cpu0 = time.process_time()
    try:
        FIT(tuner, sweep_dir, phase)
    finally:
        FIT_CPU[0] += time.process_time() - cpu0


class TimedRecorder(runner.Recorder):
    """The Recorder, timing its own work per result."""

    spent = 0.0

    def on_trial_result(self, *args, **kw) -> None:
        t0 = time.perf_counter()
        super().on_trial_result(*args, **kw)
        TimedRecorder.spent += time.perf_counter() - t0


def run(root: Path, source: Path, faces: Path, size: int, concurrency: int) -> dict:
    # L = 5 units per net: 21 partitions (i, j, k) each, 441 pairs.
    split = [(i, j, 5 - i - j) for i in range(6) for j in range(6 - i)]
    pairs = [[f"D{d}".replace(" ", ""), f"G{g}".replace(" ", "")] for d in split for g in split]
    seeds = [0, 1, 2] if size > len(pairs) + 5 else [0]
    pairs = pairs[:size // len(seeds) - 5]
    spec = {"name": f"driver-{size}", "source": str(source), "target": str(faces),
            "partitions": pairs, "baselines": ["fine-tune", "freeze", "scale-shift",
                                               "freeze-d", "scratch"],
            "seed": seeds, "budget": {"iters": REPORTS, "eval_every": 1, "fid_samples": 16,
                                      "batch_size": 8},
            "scheduler": {"type": "none"}, "resources": {"cpu": 2 / concurrency},
            "inception_weights": WEIGHTS}
    path = root / f"driver-{size}.yaml"
    path.write_text(yaml.safe_dump(spec))
    from gansweep.sweep.spec.files import load_spec

    parsed = load_spec(path)
    trials = len(parsed.trials())
    TimedRecorder.spent, FIT_CPU[0] = 0.0, 0.0
    t0 = time.time()
    sweep_dir = runner.launch(parsed, str(root / "sweeps"))
    wall, cpu = time.time() - t0, FIT_CPU[0]
    results = trials * REPORTS
    t1 = time.time()
    status_text(sweep_dir)
    status_s = time.time() - t1
    t1 = time.time()
    write_results(sweep_dir)
    report_s = time.time() - t1
    return {"trials": trials, "results": results, "wall": wall,
            "ideal": trials * REPORTS * INTERVAL / concurrency,
            "cpu_per_result_ms": 1000 * cpu / results,
            "recorder_per_result_ms": 1000 * TimedRecorder.spent / results,
            "status_s": status_s, "report_s": report_s}


def main() -> None:
    global REPORTS, INTERVAL
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="50,1338")
    ap.add_argument("--reports", type=int, default=REPORTS)
    ap.add_argument("--interval", type=float, default=INTERVAL)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    REPORTS, INTERVAL = a.reports, a.interval
    runner.run_trial = reporting_trial  # _trainable() reads it at launch
    runner.Recorder = TimedRecorder
    runner._fit = timed_fit
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source, faces = synthetic_source(root, ArchConfig("dcgan", 32, 16, 32, "batch"),
                                         sources=64, targets=16, iters=2, batch_size=8)
        rows = [run(root, source, faces, int(s), a.concurrency) for s in a.sizes.split(",")]
    print(machine())
    print(f"{a.reports} reports per trial, {a.interval} s apart, {a.concurrency} trials at a "
          f"time on ray.init(num_cpus=2)")
    for r in rows:
        print(f"{r['trials']:5d} trials, {r['results']:6d} results: driver CPU "
              f"{r['cpu_per_result_ms']:.2f} ms/result (Recorder "
              f"{r['recorder_per_result_ms']:.2f} ms); wall {r['wall']:.0f} s vs ideal "
              f"{r['ideal']:.0f} s; status {r['status_s']:.1f} s, report {r['report_s']:.1f} s")
    print("FIGURE driver: " + "; ".join(f"{r['trials']} trials {r['cpu_per_result_ms']:.2f} "
                                        f"ms/result" for r in rows))


if __name__ == "__main__":
    main()
