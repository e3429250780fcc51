"""ASHA as gansweep runs it: Ray Tune's AsyncHyperBandScheduler with two changes.

- **Noise-aware stopping.** Ray stops a trial at a rung when its score is worse than the
  rung's cutoff (the 1 - 1/rf quantile of the scores recorded there). A GAN's score is noisy
  (``sweep.spec.ranking``), so with ``noise`` = k > 0 a trial is stopped only when it is worse
  than the cutoff by more than k times its score's sampling sd (``score_sd``), as soft
  rankings do (Syne Tune's PASHA, Optuna's Wilcoxon pruner). With k = 0 the decisions are
  Ray's own.
- **Persisted rungs.** The rung records are written to the sweep directory after every
  decision and read back after a restore, so a resumed sweep still compares against every
  result recorded before the driver died (Ray forgets them: ray-project/ray#30838).

``gansweep replay`` drives this same class with recorded results.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from gansweep.core.errors import GansweepError
from gansweep.sweep.record.state import atomic_write_text
from gansweep.sweep.run import tune_internals
from gansweep.sweep.run.tune_internals import NoisyBracket

STOP = TrialScheduler.STOP  # the decision a replay honours (sweep.replays), without Ray's import

SD_KEY = "score_sd"

# 0.3.0 defined the bracket here, and its sweeps' tuner.pkl names it by this path.
_NoisyBracket = NoisyBracket


class RobustASHA(ASHAScheduler):
    """ASHA with the noise rule (``noise``: k) and rung records persisted to ``rung_file``
    (None: not persisted, as in a replay). What it touches of ASHA's internals goes through
    ``sweep.run.tune_internals``."""

    def __init__(self, rung_file: str | None, noise: float = 0.0, **kwargs: Any):
        tune_internals.require()
        super().__init__(**kwargs)
        tune_internals.make_noisy(self)
        self.noise = noise
        self._rung_file = rung_file
        self._loaded = rung_file is None
        self._saved: tuple[int, int] | None = None

    def _signature(self) -> tuple[int, int]:
        return (tune_internals.num_stopped(self),
                sum(len(rec) for bracket in tune_internals.rungs(self) for _, rec in bracket))

    def _load(self) -> None:
        self._loaded = True
        path = Path(self._rung_file)
        if not path.is_file():
            return
        saved = json.loads(path.read_text())
        for bracket, rungs in zip(tune_internals.rungs(self), saved["brackets"]):
            for (milestone, recorded), (saved_milestone, saved_recorded) in zip(bracket, rungs):
                if milestone != saved_milestone:
                    raise GansweepError(f"{path}: its ASHA rungs are at other iterations "
                                        f"({saved_milestone}, not {milestone}): the sweep's "
                                        f"scheduler changed since it was launched")
                recorded.update(saved_recorded)
        tune_internals.set_num_stopped(self, saved["num_stopped"])
        self._saved = self._signature()

    def _save(self) -> None:
        """Write the rung records when they changed (a result at a rung, a stop): not at
        every result, whose driver cost must not grow with the sweep."""
        if self._rung_file is None:
            return
        signature = self._signature()
        if signature == self._saved:
            return
        self._saved = signature
        data = {"brackets": [[[m, rec] for m, rec in b] for b in tune_internals.rungs(self)],
                "num_stopped": signature[0]}
        atomic_write_text(Path(self._rung_file), json.dumps(data))

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self._loaded:  # first call after construction or unpickling on restore
            self._load()
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        sd = result.get(SD_KEY)
        action = tune_internals.decide(self, trial, result,
                                       self.noise * sd if sd is not None else 0.0)
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._save()
