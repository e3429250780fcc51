"""Experiment trackers a sweep reports to, named in the spec's ``trackers:`` list.

- ``tensorboard``: each trial writes TensorBoard event files into its own folder,
  ``SWEEP/<trial>/tensorboard/``, from the worker that trains it (so sample grids need no
  trip through the driver): every number of each evaluation (FID, KID, IS, their noise,
  losses, throughput) as a scalar at its iteration, and the sample grid as an image.
  ``tensorboard --logdir SWEEP`` shows every trial.
- ``mlflow``: Ray Tune's MLflow callback, one MLflow run per trial, its parameters the
  trial's setting and its metrics every evaluation's numbers at their iteration. The
  tracking URI is MLflow's own ``MLFLOW_TRACKING_URI`` (a server, or ``sqlite:///...``),
  else a file store in ``SWEEP/mlruns``; the experiment is the sweep's name. A resumed
  sweep continues each trial's run.
- ``wandb``: Ray Tune's Weights & Biases callback, one W&B run per trial in the project
  named after the sweep (``WANDB_MODE=offline`` keeps it on disk).
"""
from __future__ import annotations

import importlib.util
import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gansweep.core.errors import GansweepError
from gansweep.core.registry import Registry

if TYPE_CHECKING:
    from ray import tune

# name -> the driver's Tune callback for it (None: the trials write it themselves)
TRACKERS: Registry[Callable[[str, Path], tune.Callback | None]] = Registry("tracker")
PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}


def check_trackers(names: list[str]) -> None:
    """Each name is a tracker whose package is installed; else one error naming it."""
    for name in names:
        TRACKERS.get(name)
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise GansweepError(f"trackers: {name!r} needs the {PACKAGES[name]} package "
                                f"(pip install {PACKAGES[name]})")


def numbers(result: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a result (trackers take no strings, lists or None)."""
    return {k: float(v) for k, v in result.items()
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
            and math.isfinite(v)}


@TRACKERS.register("tensorboard")
def _tensorboard(name: str, sweep_dir: Path) -> None:
    return None  # written by the trials themselves (TrialBoard)


class TrialBoard:
    """A trial's TensorBoard writer: evaluations as scalars, sample grids as images."""

    def __init__(self, folder: Path):
        from tensorboardX import SummaryWriter  # a dependency of ray[tune]

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


@TRACKERS.register("mlflow")
def _mlflow_callback(name: str, sweep_dir: Path) -> tune.Callback:
    from gansweep.sweep.mlflow_tracker import MLflowTracker  # imports mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI") or (sweep_dir / "mlruns").resolve().as_uri()
    return MLflowTracker(tracking_uri=uri, experiment_name=name, tags={"gansweep_sweep": name})


@TRACKERS.register("wandb")
def _wandb_callback(name: str, sweep_dir: Path) -> tune.Callback:
    from ray.air.integrations.wandb import WandbLoggerCallback

    return WandbLoggerCallback(project=name, dir=str(sweep_dir))


def tune_callbacks(trackers: list[str], name: str, sweep_dir: Path) -> list[tune.Callback]:
    """The driver-side Tune callbacks of the spec's trackers."""
    return [cb for t in trackers if (cb := TRACKERS.get(t)(name, sweep_dir)) is not None]
