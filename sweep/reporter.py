"""The sweep's progress on the driver's console: a compact table every ``every`` seconds and at
the end, instead of Ray Tune's full status block (resources, paths and up to 20 trial rows
per print)."""
from __future__ import annotations

import math
import sys
import time
from collections import Counter
from typing import IO

from ray import tune


class SweepReporter(tune.ProgressReporter):
    """One line for the sweep (trials done / running / pending / failed, the best so far by
    the ranked metric) and one per running trial (setting, seed, iteration, its metric)."""

    def __init__(self, name: str, metric: str, higher_is_better: bool, every: float = 30.0,
                 stream: IO[str] | None = None):
        self.name, self.metric, self.sign = name, metric, -1 if higher_is_better else 1
        self.every, self.stream = every, stream
        self.start = self.last = time.monotonic()

    def should_report(self, trials: list, done: bool = False) -> bool:
        return done or time.monotonic() - self.last >= self.every

    def _value(self, trial) -> float | None:
        value = (trial.last_result or {}).get(self.metric)
        return value if isinstance(value, (int, float)) and math.isfinite(value) else None

    def report(self, trials: list, done: bool, *sys_info: str) -> None:
        self.last = time.monotonic()
        states = Counter(t.status for t in trials)
        minutes = (self.last - self.start) / 60
        line = (f"[gansweep {self.name}] {minutes:.1f} min: {states['TERMINATED']}/{len(trials)} "
                f"done, {states['RUNNING']} running, {states['PENDING'] + states['PAUSED']} "
                f"pending, {states['ERROR']} failed")
        scored = [(v, t) for t in trials if (v := self._value(t)) is not None]
        if scored:
            value, best = min(scored, key=lambda x: self.sign * x[0])
            setting = best.config["trial"]
            line += f"; best {self.metric} {value:.4g}: {setting['label']} (seed {setting['seed']})"
        rows = [line]
        for t in trials:
            if t.status == "RUNNING":
                setting, result = t.config["trial"], t.last_result or {}
                value = self._value(t)
                rows.append(f"    {setting['label']:<32} seed {setting['seed']:<3} iteration "
                            f"{result.get('iteration', 0):<6} {self.metric} "
                            f"{'-' if value is None else f'{value:.4g}'}")
        print("\n".join(rows), file=self.stream or sys.stdout, flush=True)
