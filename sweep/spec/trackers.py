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

This module holds each tracker's facts (a spec's validation reads them); what writes to
them, Ray Tune's callbacks and the trials' TensorBoard writer, is ``sweep.run.tracking``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gansweep.core import extras
from gansweep.core.registry import Registry


@dataclass(frozen=True)
class Tracker:
    """A tracker: the package it needs, the extra that installs it (None: a declared
    dependency), and whether the trials write it themselves (else a driver's Tune callback,
    ``sweep.run.tracking``)."""

    name: str
    package: str
    extra: str | None
    in_trial: bool = False


TRACKERS: Registry[Tracker] = Registry("tracker")
for _tracker in (Tracker("tensorboard", "tensorboardX", None, in_trial=True),
                 Tracker("mlflow", "mlflow", "trackers"), Tracker("wandb", "wandb", "trackers")):
    TRACKERS.register(_tracker.name)(_tracker)


def check_trackers(names: list[str]) -> None:
    """Each name is a tracker whose package is installed; else one error naming it."""
    for name in names:
        tracker = TRACKERS.get(name)
        if tracker.extra is not None:
            extras.check(tracker.package, tracker.extra, f"tracker {name!r}")


def numbers(result: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a result (trackers take no strings, lists or None)."""
    return {k: float(v) for k, v in result.items()
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
            and math.isfinite(v)}
