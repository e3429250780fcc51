"""Failures at named points, for the tests that need one at an exact moment instead of a
kill raced against a running process.

``GANSWEEP_FAULTS="point=n,..."`` kills this process with SIGKILL the n-th time it passes
``point``: for a point named ``driver.*`` its whole process group (the driver and the local
Ray it started, as when a head node dies), otherwise the process itself. ``point=n@FILE``
pauses there instead: it creates FILE and waits until the test deletes it (to change the
world, say make the storage read-only, at that exact moment). Unset, as always outside the
tests, a point costs a dict lookup. The points:

- ``driver.result.<phase>``: the driver has recorded a trial's evaluation (sweep.run.recorder);
- ``driver.end.<phase>``: the driver has recorded a trial's end and its end marker;
- ``worker.checkpoint``: a trial has written its checkpoint, before reporting it to Tune;
- ``write.rename``: an atomic write has its whole temporary file, before the rename.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "GANSWEEP_FAULTS"
_plan: dict[str, tuple[int, str | None]] | None = None
_passed: dict[str, int] = {}


def _planned() -> dict[str, tuple[int, str | None]]:
    global _plan
    if _plan is None:
        _plan = {}
        for item in filter(None, os.environ.get(ENV, "").split(",")):
            name, _, when = item.partition("=")
            n, _, pause = when.partition("@")
            _plan[name.strip()] = (int(n), pause or None)
    return _plan


def point(name: str) -> None:
    """A named point a test may fail (or pause) this process at."""
    plan = _planned()
    if name not in plan:
        return
    _passed[name] = _passed.get(name, 0) + 1
    n, pause = plan[name]
    if _passed[name] != n:
        return
    if pause is not None:
        Path(pause).touch()
        while Path(pause).exists():
            time.sleep(0.05)
        return
    if name.startswith("driver."):
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
