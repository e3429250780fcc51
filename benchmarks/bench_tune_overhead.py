"""Figure 5: Tune overhead. For each trial of a small real sweep (local Ray, CPU): the time
from Tune starting the trial to the worker running our code, our setup until the first
training step, and the time spent per report (checkpoint + tune.report), as fractions of
the trial's wall time.

    python -m benchmarks.bench_tune_overhead [--out DIR] [--no-reuse]

``--no-reuse`` runs the same sweep with a new worker process per trial (Tune's
``reuse_actors=False``, what gansweep did before it reused them), for the idle slot time
before and after.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._common import WEIGHTS, machine, summary, synthetic_source
from gansweep.core.models import ArchConfig
from gansweep.sweep.record.state import SweepState
from gansweep.sweep.run import driver as runner
from gansweep.sweep.run.driver import launch
from gansweep.sweep.spec.files import load_spec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="keep the sweep here (default: a temporary folder)")
    ap.add_argument("--no-reuse", action="store_true", help="a new worker per trial")
    a = ap.parse_args()
    if a.no_reuse:
        tune = runner.tune

        class NoReuse:  # the runner's `tune`, with reuse_actors forced off
            def __getattr__(self, name):
                return getattr(tune, name)

            @staticmethod
            def TuneConfig(**kw):  # noqa: N802 (tune's name)
                return tune.TuneConfig(**{**kw, "reuse_actors": False})

        runner.tune = NoReuse()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.out or tmp).resolve()
        source, faces = synthetic_source(root, ArchConfig("dcgan", 32, 16, 32, "batch"),
                                         sources=200, targets=64, iters=50, batch_size=32)
        spec = {"name": "overhead", "source": str(source), "target": str(faces),
                "partitions": [["D(1,2,2)", "G(1,2,2)"], ["D(3,0,2)", "G(3,0,2)"]],
                "baselines": ["fine-tune", "freeze", "scale-shift", "freeze-d"],
                "budget": {"iters": 150, "eval_every": 50, "fid_samples": 48,
                           "batch_size": 32},
                "scheduler": {"type": "none"}, "resources": {"cpu": 1},
                "inception_weights": WEIGHTS}
        (root / "spec.yaml").write_text(yaml.safe_dump(spec))
        t0 = time.time()
        sweep_dir = launch(load_spec(root / "spec.yaml"), str(root / "sweeps"))
        launch_s = time.time() - t0
        state = SweepState.load(sweep_dir)
        rows = []
        for tid, t in state.trials.items():
            reports = [r for r in state.results() if r["trial_id"] == tid]
            wall = t["ended"] - t["starts"][0]["time"]
            to_worker = reports[0]["worker_start"] - t["starts"][0]["time"]
            setup = reports[0]["setup_s"]
            report_s = reports[-1]["report_s"]  # the reports before the last one
            rows.append({"wall": wall, "to_worker": to_worker, "setup": setup,
                         "per_report": report_s / (len(reports) - 1),
                         "reports_frac": report_s * len(reports) / (len(reports) - 1) / wall,
                         "start_frac": (to_worker + setup) / wall})
    print(machine())
    print(f"{len(rows)} trials of 150 iterations (3 reports each), dcgan 32px width 16, "
          f"batch 32, 1 CPU each, 2 at a time; actors {'not ' if a.no_reuse else ''}reused")
    for key, unit in (("wall", " s"), ("to_worker", " s"), ("setup", " s"),
                      ("per_report", " s")):
        print(f"{key:11s} {summary([r[key] for r in rows], unit)}")
    trials = state.trials.values()
    span = max(t["ended"] for t in trials) - min(t["starts"][0]["time"] for t in trials)
    busy = sum(r["wall"] for r in rows)
    print(f"launch() {launch_s:.1f} s in all (Ray start, real-data statistics, trials); from "
          f"the first trial start to the last trial end {span:.1f} s; the 2 trial slots were "
          f"busy {100 * busy / (2 * span):.1f}% of that span")
    start = statistics.median(r["start_frac"] for r in rows)
    reports = statistics.median(r["reports_frac"] for r in rows)
    print(f"FIGURE 5: trial start to first training step = {100 * start:.1f}% of trial time "
          f"(median {statistics.median(r['to_worker'] + r['setup'] for r in rows):.2f} s); "
          f"reports = {100 * reports:.1f}% (median "
          f"{statistics.median(r['per_report'] for r in rows):.3f} s per report); trial slots "
          f"idle between trials = {100 * (1 - busy / (2 * span)):.1f}% of the sweep's span "
          f"({(2 * span - busy) / len(rows):.1f} s per trial)")


if __name__ == "__main__":
    main()
