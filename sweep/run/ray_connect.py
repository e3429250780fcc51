"""The driver's Ray: a local one, or a cluster joined at ``--address``, refused in one line
when it cannot be reached or refuses this driver's token."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator

import ray

from gansweep.core.errors import GansweepError
from gansweep.sweep.run import tune_internals


def init_ray(address: str | None) -> None:
    """Start a local Ray, or join the cluster at ``address``; a cluster that cannot be
    reached or refuses this driver's token is one line naming the likely cause."""
    # The classic progress reporting, which takes our reporter (sweep.run.reporter).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's default per-result loggers (JSON, CSV, TensorBoard files in every trial folder)
    # cost the driver time per result and duplicate our logs (sweep.record.state): off.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # ...which the Tuner's result grid then looks for, warning once per trial: we read
    # ours, not its grid.
    logging.getLogger(tune_internals.ANALYSIS_LOGGER).setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    if not address:
        ray.init(include_dashboard=False)
        return
    check_reachable(address)
    try:
        with _stderr_held():
            ray.init(address=address)
    except (ray.exceptions.AuthenticationError, ConnectionError) as e:
        mode = os.environ.get("RAY_AUTH_MODE", "unset")
        raise GansweepError(
            f"--address {address}: the Ray cluster there did not accept this driver "
            f"({_first(e)}); the likely cause is token authentication: a cluster started with "
            f"a token (Ray does so where ~/.ray/auth_token exists) needs RAY_AUTH_MODE=token "
            f"(here: {mode}) and the head's token on this machine too (~/.ray/auth_token, "
            f"RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN); see the README, 'Running on a "
            f"cluster'") from None


@contextlib.contextmanager
def _stderr_held() -> Iterator[None]:
    """Hold what is written to file descriptor 2 (Ray's C++ logs too) and pass it on only if
    the block succeeds: a refused connection is our one line, not Ray's logged retries."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        os.write(2, held.read())


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A TCP connection to a ``HOST:PORT`` address (Ray itself retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # 'auto', or a scheme Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise GansweepError(f"--address {address}: nothing answers there ({e.strerror or e}); "
                            f"is 'ray start --head --port={port}' running on {host}, and is the "
                            f"port open to this machine?") from None
