"""The driver's record of a sweep's trials: a Ray Tune callback that writes every start,
result, end and error into the sweep's logs (``sweep.record.state``) as it happens, compacts
``trials.json`` now and then, keeps a whole copy of Tune's own snapshot (``sweep.run.tune_state``)
and pushes to the bucket of a sweep on object storage. ``gansweep status`` and the results
read these records without Ray."""
from __future__ import annotations

import os
import time
from pathlib import Path

from ray import tune

from gansweep.core import faults
from gansweep.sweep.record.layout import trial_key
from gansweep.sweep.record.state import DONE, RESULT_KEYS, SweepState, ran_to_end
from gansweep.sweep.record.storage import Pusher
from gansweep.sweep.run import tune_state


class Recorder(tune.Callback):
    """Records the trials from the driver into the sweep's logs (``sweep.record.state``): starts,
    results, ends, errors; compacts ``trials.json`` now and then and when the phase ends.
    ``gansweep status`` and the results read them without Ray. Also keeps a whole copy of
    Tune's own snapshot of the phase's experiment (``sweep.run.tune_state``)."""

    def __init__(self, sweep_dir: str, max_iters: int, experiment: str):
        self.sweep_dir, self.max_iters, self.experiment = sweep_dir, max_iters, experiment
        self._state: SweepState | None = None
        self._backed_up = 0.0
        self.push = Pusher(Path(sweep_dir))  # to the bucket, for a sweep on object storage
        self._keys: dict[str, str] = {}  # Tune trial id -> record key

    @property
    def state(self) -> SweepState:
        if self._state is None:  # lazily, so a restored (unpickled) recorder reloads
            self._state = SweepState.load(Path(self.sweep_dir))
        return self._state

    def key(self, trial) -> str:
        """The key of a Tune trial's record (``sweep.record.layout.trial_key``: its cell, or for
        a trial of 0.3.0 its Tune id), worked out once per trial."""
        keys = self.__dict__.setdefault("_keys", {})  # a 0.3.0 recorder unpickles without it
        if trial.trial_id not in keys:
            keys[trial.trial_id] = trial_key(trial.config, trial.trial_id, Path(trial.path).name)
        return keys[trial.trial_id]

    def _done(self, trial) -> bool:
        rec = self.state.trials.get(self.key(trial))
        return rec is not None and rec["status"] in DONE and rec["ended"] is not None

    def _repeat(self, trial, result: dict) -> bool:
        """A restarted trial's repeat of its checkpoint's evaluation, already recorded."""
        rec = self.state.trials.get(self.key(trial))
        return rec is not None and rec["reports"] > 0 and \
            result.get("iteration", 0) <= rec["iteration"]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if self._done(trial):  # restarted by a lagging Tune snapshot; returns at once
            return
        self.state.event("start", self.key(trial), config=trial.config["trial"],
                         path=os.path.relpath(trial.path, self.sweep_dir))
        self.state.compact_if_due()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self._done(trial) or self._repeat(trial, result):
            return
        self.state.result(self.key(trial), {k: result.get(k) for k in RESULT_KEYS})
        self.state.compact_if_due()
        faults.point(f"driver.result.{trial.config['trial']['phase']}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self._done(trial):
            return
        rec = self.state.trials[self.key(trial)]
        status = "diverged" if rec["status"] == "diverged" else \
            "finished" if ran_to_end(rec, self.max_iters) else "stopped"
        self.state.event("end", self.key(trial), status=status)
        self.state.mark_done(self.key(trial))
        self.state.compact_if_due()
        self.push(force=True)  # a trial's end reaches the bucket at once
        faults.point(f"driver.end.{trial.config['trial']['phase']}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.state.event("error", self.key(trial), error=_error_text(trial))
        self.state.save()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.state.event("recover", self.key(trial), error=_error_text(trial))
        self.state.compact_if_due()

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.monotonic() - self._backed_up >= tune_state.BACKUP_EVERY_S:
            self._backed_up = time.monotonic()
            tune_state.back_up(Path(self.experiment))
        self.push()

    def on_experiment_end(self, trials, **info) -> None:
        self.state.save()
        self.push(force=True)


def _error_text(trial) -> str | None:
    path = getattr(trial, "error_file", None)
    try:
        return Path(path).read_text()[-4000:] if path else None
    except OSError:
        return None
