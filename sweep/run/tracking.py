"""What writes to the trackers a spec names (``sweep.spec.trackers``): each trial's TensorBoard
writer, and the driver's Ray Tune callbacks for MLflow and W&B."""
from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune

from gansweep.sweep.spec.trackers import TRACKERS, numbers


class TrialBoard:
    """A trial's TensorBoard writer: evaluations as scalars, sample grids as images."""

    def __init__(self, folder: Path):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(folder / "tensorboard"))

    def add(self, record: dict[str, Any], grid_png: Path | None) -> None:
        step = int(record["iteration"])
        for key, value in numbers(record).items():
            if key != "iteration":
                self.writer.add_scalar(key, value, step)
        if grid_png is not None and grid_png.is_file():
            from PIL import Image

            image = np.asarray(Image.open(io.BytesIO(grid_png.read_bytes())).convert("RGB"))
            self.writer.add_image("samples", image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _mlflow(name: str, sweep_dir: Path) -> tune.Callback:
    from gansweep.sweep.run.mlflow_tracker import MLflowTracker  # imports mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI") or (sweep_dir / "mlruns").resolve().as_uri()
    return MLflowTracker(tracking_uri=uri, experiment_name=name, tags={"gansweep_sweep": name})


def _wandb(name: str, sweep_dir: Path) -> tune.Callback:
    from ray.air.integrations.wandb import WandbLoggerCallback

    return WandbLoggerCallback(project=name, dir=str(sweep_dir))


# The driver's callback of each tracker the trials do not write themselves.
DRIVER_CALLBACKS: dict[str, Callable[[str, Path], tune.Callback]] = {
    "mlflow": _mlflow, "wandb": _wandb}


def tune_callbacks(trackers: list[str], name: str, sweep_dir: Path) -> list[tune.Callback]:
    """The driver-side Tune callbacks of the spec's trackers."""
    return [DRIVER_CALLBACKS[t](name, sweep_dir) for t in trackers
            if not TRACKERS.get(t).in_trial]
