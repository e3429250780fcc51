"""The ``mlflow`` tracker's Tune callback (sweep.spec.trackers); its own module because importing
Ray's MLflow integration imports mlflow, which only sweeps that track to MLflow should pay."""
from __future__ import annotations

import os
from pathlib import Path

from ray.air.integrations.mlflow import MLflowLoggerCallback

from gansweep.core import extras
from gansweep.sweep.record.layout import trial_key
from gansweep.sweep.run import tune_internals
from gansweep.sweep.spec.trackers import numbers


class MLflowTracker(MLflowLoggerCallback):
    """Tune's MLflow callback, with a run's parameters the trial's setting (not Tune's whole
    config), its steps our iterations, and a resumed trial's run continued."""

    def setup(self, *args, **kwargs) -> None:
        if self.tracking_uri.startswith("file:"):
            # MLflow 3 keeps its file store in maintenance and refuses it unless asked; our
            # default store is one (a server or a database is the user's to name).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial) -> None:
        if trial in tune_internals.mlflow_runs(self):
            return
        key = trial_key(trial.config, trial.trial_id, Path(trial.path).name)
        run_id = self._continue(key)
        if run_id is None:
            setting = trial.config["trial"]
            run = self.mlflow_util.start_run(
                tags={**self.tags, "gansweep_trial_id": key, "trial_name": str(trial)},
                run_name=f"{setting['label']} seed {setting['seed']}")
            run_id = run.info.run_id
            self.mlflow_util.log_params(run_id=run_id, params_to_log={
                k: "" if v is None else v for k, v in setting.items()})
        tune_internals.mlflow_runs(self)[trial] = run_id

    def _continue(self, key: str) -> str | None:
        """The run of a resumed trial (its key: ``sweep.record.layout.trial_key``, the same
        under whichever Tune trial id runs it), marked running again; None if there is none,
        or if the store lost part of it (a file store copied from a bucket mid-write)."""
        errors = extras.require("mlflow.exceptions", "trackers", "tracker 'mlflow'")
        client = tune_internals.mlflow_client(self)
        try:
            found = client.search_runs(
                [self.mlflow_util.experiment_id], max_results=1,
                filter_string=f"tags.gansweep_trial_id = '{key}'")
            if found:
                client.update_run(found[0].info.run_id, status="RUNNING")
                return found[0].info.run_id
        except errors.MlflowException:
            pass
        return None

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        self.mlflow_util.log_metrics(run_id=tune_internals.mlflow_runs(self)[trial],
                                     metrics_to_log=numbers(result),
                                     step=int(result["iteration"]))
