"""The sweep's progress on the driver's console: a compact table every ``every`` seconds and at
the end, instead of Ray Tune's full status block (resources, paths and up to 20 trial rows
per print). It names the sweep's winner as ``sweep.record.verdict`` decides it, from the trials
Tune holds, once a trial has run to the end."""
from __future__ import annotations

import math
import sys
import time
from collections import Counter
from typing import IO, Any

from ray import tune

from gansweep.sweep.record.state import ran_to_end
from gansweep.sweep.record.verdict import verdict
from gansweep.sweep.spec.schema import SweepSpec


class SweepReporter(tune.ProgressReporter):
    """One line for the sweep (trials done / running / pending / failed, the winner so far)
    and one per running trial (setting, seed, iteration, its score)."""

    def __init__(self, spec: SweepSpec, every: float = 30.0, stream: IO[str] | None = None):
        self.spec, self.every, self.stream = spec, every, stream
        self.start = self.last = time.monotonic()

    def should_report(self, trials: list, done: bool = False) -> bool:
        return done or time.monotonic() - self.last >= self.every

    def _record(self, trial) -> dict[str, Any]:
        """What ``verdict`` reads of a trial, from Tune's view of it."""
        result = trial.last_result or {}
        finished = trial.status == "TERMINATED" and ran_to_end(result, self.spec.budget.iters)
        return {"config": trial.config["trial"], "last": {"score": result.get("score")},
                "status": "finished" if finished else "running"}

    def report(self, trials: list, done: bool, *sys_info: str) -> None:
        self.last = time.monotonic()
        states = Counter(t.status for t in trials)
        minutes = (self.last - self.start) / 60
        line = (f"[gansweep {self.spec.name}] {minutes:.1f} min: {states['TERMINATED']}/"
                f"{len(trials)} done, {states['RUNNING']} running, "
                f"{states['PENDING'] + states['PAUSED']} pending, {states['ERROR']} failed")
        found = verdict(self.spec, [self._record(t) for t in trials])
        if found is not None:
            line += f"; winner so far: {found.headline()}"
        rows = [line]
        for t in trials:
            if t.status == "RUNNING":
                setting, result = t.config["trial"], t.last_result or {}
                value = result.get("score")
                shown = f"{value:.4g}" if isinstance(value, (int, float)) and \
                    math.isfinite(value) else "-"
                rows.append(f"    {setting['label']:<32} seed {setting['seed']:<3} iteration "
                            f"{result.get('iteration', 0):<6} score ({self.spec.metric}) {shown}")
        print("\n".join(rows), file=self.stream or sys.stdout, flush=True)
