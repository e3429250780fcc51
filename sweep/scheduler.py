"""ASHA as gansweep runs it: Ray Tune's AsyncHyperBandScheduler with two changes.

- **Noise-aware stopping.** Ray stops a trial at a rung when its score is worse than the
  rung's cutoff (the 1 - 1/rf quantile of the scores recorded there). A GAN's score is noisy
  (``sweep.ranking``), so with ``noise`` = k > 0 a trial is stopped only when it is worse
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
from ray.tune.schedulers.async_hyperband import _Bracket

from gansweep.core.errors import GansweepError
from gansweep.sweep import tune_internals
from gansweep.sweep.state import atomic_write_text

SD_KEY = "score_sd"


class _NoisyBracket(_Bracket):
    """Ray's bracket, deciding with a margin: ``on_result`` below is Ray's loop with
    ``cur_rew < cutoff`` replaced by ``cur_rew < cutoff - margin``."""

    def on_result(self, trial, cur_iter: int, cur_rew: float | None,
                  margin: float = 0.0) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self._rungs:
            if cur_iter >= milestone and trial.trial_id in recorded and \
                    not self._stop_last_trials:
                break
            if cur_iter < milestone or trial.trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if cutoff is not None and cur_rew is not None and cur_rew < cutoff - margin:
                action = TrialScheduler.STOP
            if cur_rew is not None:
                recorded[trial.trial_id] = cur_rew
            break
        return action


class RobustASHA(ASHAScheduler):
    """ASHA with the noise rule (``noise``: k) and rung records persisted to ``rung_file``
    (None: not persisted, as in a replay)."""

    def __init__(self, rung_file: str | None, noise: float = 0.0, **kwargs: Any):
        tune_internals.require()  # the bracket fields below are Tune's internals
        super().__init__(**kwargs)
        for b in self._brackets:
            b.__class__ = _NoisyBracket
        self.noise = noise
        self._rung_file = rung_file
        self._loaded = rung_file is None
        self._saved: tuple[int, int] | None = None

    def _load(self) -> None:
        self._loaded = True
        path = Path(self._rung_file)
        if not path.is_file():
            return
        saved = json.loads(path.read_text())
        for bracket, rungs in zip(self._brackets, saved["brackets"]):
            for (milestone, recorded), (saved_milestone, saved_recorded) in zip(bracket._rungs,
                                                                                rungs):
                if milestone != saved_milestone:
                    raise GansweepError(f"{path}: its ASHA rungs are at other iterations "
                                        f"({saved_milestone}, not {milestone}): the sweep's "
                                        f"scheduler changed since it was launched")
                recorded.update(saved_recorded)
        self._num_stopped = saved["num_stopped"]
        self._saved = (self._num_stopped, sum(len(rec) for b in self._brackets
                                              for _, rec in b._rungs))

    def _save(self) -> None:
        """Write the rung records when they changed (a result at a rung, a stop): not at
        every result, whose driver cost must not grow with the sweep."""
        if self._rung_file is None:
            return
        signature = (self._num_stopped, sum(len(rec) for b in self._brackets
                                            for _, rec in b._rungs))
        if signature == self._saved:
            return
        self._saved = signature
        data = {"brackets": [[[m, rec] for m, rec in b._rungs] for b in self._brackets],
                "num_stopped": self._num_stopped}
        atomic_write_text(Path(self._rung_file), json.dumps(data))

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self._loaded:  # first call after construction or unpickling on restore
            self._load()
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            action = TrialScheduler.STOP
        else:
            sd = result.get(SD_KEY)
            margin = self.noise * sd if sd is not None else 0.0
            action = self._trial_info[trial.trial_id].on_result(
                trial, result[self._time_attr], self._metric_op * result[self._metric], margin)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._save()
