"""Ctrl-C (SIGINT) and SIGTERM during a sweep: the first one stops the phase in progress the
way Ray Tune stops an experiment (its state saved, its trials stopped), starts no further
phase, and records the sweep as interrupted (``INTERRUPTED_FILE``); the command then prints
how to resume it and exits 130. A second one stops at once (KeyboardInterrupt).

Tune's own SIGINT handler is turned off (``TUNE_DISABLE_SIGINT_HANDLER``): it would stop the
phase, but ``Tuner.fit`` then returns as if the phase had ended and the driver would go on to
the next one. Ours asks Tune to stop through the SIGUSR1 handler Tune installs for every
``fit``, and remembers that it did.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from gansweep.sweep.record.state import INTERRUPTED_FILE, atomic_write_text
from gansweep.sweep.run import tune_internals

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


class SweepInterrupted(Exception):
    """The sweep stopped on a signal; ``resume`` continues it. Not a GansweepError: the
    command exits 130, not 2."""

    def __init__(self, sweep_dir: Path, where: str, phase: str, signame: str):
        self.sweep_dir, self.where, self.phase, self.signame = sweep_dir, where, phase, signame
        super().__init__(f"interrupted ({signame}) during the {phase}; nothing further was "
                         f"started. Continue it with: gansweep resume {where}")


class _Catcher:
    def __init__(self) -> None:
        self.signum: int | None = None
        self.fitting = False
        self.phase = "preparation"

    def handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # the second one: stop now
        self.signum = signum
        if not self.fitting:
            raise _Stop
        # Tune's own lines would say to resume with its Python API: ours says how.
        logging.getLogger(tune_internals.RESUME_HINT_LOGGER).setLevel(logging.CRITICAL)
        tune_stop = signal.getsignal(signal.SIGUSR1)  # Tune's, installed for this fit
        if callable(tune_stop):
            tune_stop(signum, frame)


class _Stop(Exception):
    """Raised outside a Tune phase (by the handler, or between phases), to unwind to
    ``catching``."""


_active: _Catcher | None = None


@contextlib.contextmanager
def catching(sweep_dir: Path, where: str) -> Iterator[None]:
    """Around everything a launch or resume runs after claiming its sweep (``where``: how
    the resume line names it): the first signal ends it with SweepInterrupted, recorded in
    the sweep; the previous handlers are restored after."""
    global _active
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can take signals (Tune then installs no handler either)
        return
    catcher = _Catcher()
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    saved_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    for s in SIGNALS:
        signal.signal(s, catcher.handle)
    _active = catcher
    try:
        with contextlib.suppress(FileNotFoundError):
            (Path(sweep_dir) / INTERRUPTED_FILE).unlink()  # resumed: no longer interrupted
        try:
            yield
        except _Stop:
            pass
        if catcher.signum is not None:
            name = signal.Signals(catcher.signum).name
            atomic_write_text(Path(sweep_dir) / INTERRUPTED_FILE, json.dumps(
                {"time": time.time(), "signal": name, "phase": catcher.phase}))
            raise SweepInterrupted(Path(sweep_dir), where, catcher.phase, name) from None
    finally:
        _active = None
        for s, handler in saved.items():
            signal.signal(s, handler)
        if saved_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = saved_env


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Around one ``Tuner.fit``: a signal asks Tune to stop the phase; none starts after
    a signal."""
    catcher = _active
    if catcher is None:
        yield
        return
    check()
    catcher.phase, catcher.fitting = name, True
    try:
        yield
    finally:
        catcher.fitting = False
    check()


def check() -> None:
    """Stop here if a signal came (between the steps of a launch)."""
    if _active is not None and _active.signum is not None:
        raise _Stop
