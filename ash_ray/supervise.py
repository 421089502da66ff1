"""Shutdown of `ash-ray start` / `ash-ray serve`: drain, then exit within the grace period.

systemd and many supervisors send SIGTERM to the whole process group, not only to the
main process. Ray's daemons used to share that group, so they died at once while the
CLI began to drain through them, and the drain hung. Two things make shutdown hold:

* :func:`isolate_ray_processes` starts every Ray process this one spawns in a session of
  its own, so a signal to our group reaches only us. Ray still ties them to this process
  (``PR_SET_PDEATHSIG``), so they die with it, even after a kill -9.
* :class:`Shutdown` latches SIGTERM/SIGINT and, once signalled, arms a watchdog that
  ends the process when ``ASH_DRAIN_TIMEOUT_S`` has passed, whatever still hangs. A
  second signal ends it at once (an impatient Ctrl-C).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

# Of the grace period, what is kept back after the drain for stopping Serve and Ray.
SHUTDOWN_RESERVE = 0.25
SHUTDOWN_RESERVE_MAX_S = 8.0


def isolate_ray_processes() -> None:
    """Start the Ray processes that ``ray.init(address="local")`` spawns in own sessions.

    Ray offers no option for it: every daemon goes through ``services.ConsolePopen``, so
    that class gets ``start_new_session=True``. If a Ray upgrade renames it, this logs a
    warning and changes nothing (the group-SIGTERM chaos test then fails loudly).
    """
    try:
        from ray._private import services
    except ImportError:  # pragma: no cover - Ray is a dependency
        return
    base: Any = getattr(services, "ConsolePopen", None)
    if base is None:
        logger.warning("Ray has no services.ConsolePopen; its processes share our group")
        return
    if getattr(base, "ash_own_session", False):
        return

    class OwnSession(base):  # type: ignore[misc, valid-type]
        ash_own_session = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)

    setattr(services, "ConsolePopen", OwnSession)  # noqa: B010 - mypy: a class


class Shutdown(threading.Event):
    """SIGTERM/SIGINT latch with a deadline: ``wait()``, drain, then exit in time.

    A :class:`threading.Event` (set by the first signal), so it goes wherever one does.

    Must be created on the main thread (signal handlers can only be set there), and
    :meth:`install` called again once Ray is initialized.
    """

    def __init__(self, grace_s: float) -> None:
        super().__init__()
        self.grace_s = grace_s
        self.signalled_at: float | None = None
        self.drained = False
        self.install()

    def install(self) -> None:
        """(Re)take SIGTERM and SIGINT. Call again after ``ray.init``: Ray's core worker
        installs a failure handler that turns SIGTERM into an abort (exit -6, no drain)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.signalled_at is not None:
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            _exit(130 if signum == signal.SIGINT else 143)
        self.signalled_at = time.monotonic()
        threading.Thread(target=self._watchdog, name="ash-shutdown", daemon=True).start()
        self.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a signal came (True) or ``timeout`` seconds passed (False)."""
        # Short waits: the main thread must return to Python to run the signal handler.
        deadline = None if timeout is None else time.monotonic() + timeout
        while not super().wait(0.5):
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def drain_budget(self) -> float:
        """Seconds the drain may take, leaving a reserve to stop Serve and Ray."""
        reserve = min(SHUTDOWN_RESERVE_MAX_S, self.grace_s * SHUTDOWN_RESERVE)
        return max(0.0, self.grace_s - reserve - self._elapsed())

    def _elapsed(self) -> float:
        return 0.0 if self.signalled_at is None else time.monotonic() - self.signalled_at

    def _watchdog(self) -> None:
        time.sleep(max(0.0, self.grace_s - self._elapsed()))
        logger.error(
            "shutdown still running after ASH_DRAIN_TIMEOUT_S=%.0fs (%s); exiting now",
            self.grace_s,
            "sessions were drained" if self.drained else "the drain did not finish",
        )
        _exit(0 if self.drained else 1)


def _exit(code: int) -> None:
    # os._exit skips the cleanup that hangs; Ray's processes follow us (PDEATHSIG).
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
