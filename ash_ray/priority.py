"""CPU priority of ash-ray's processes: the control plane before the session workers.

Ray starts every worker process at nice 15 (its ``worker_niceness``), the registry and
the ingress replica too, so a burst of session workers starting (seconds of CPU each:
Python, Ray, the ``anthropic`` SDK) took the CPU from the processes that answer creates,
resumes and health probes. Here:

- a session worker moves to nice 19 as soon as its actor class is loaded, before its
  heavy imports (:func:`yield_if_session_worker`, called from ``ash_ray.session``), and
  stays there while it starts and while it waits in the warm pool;
- from its bind until its session's release (once the last turn has stopped) it runs
  at nice 10 (:func:`serving`), its agent loop and sandboxed tools ahead of the workers
  starting beside it: in a burst of creates on 2 cores, the sessions already up
  answered in 43-65 ms (p50) instead of 165-173 ms while 22 workers started. The rest
  of a release (snapshot, cleanup) and the wait in the pool are at 19 again. Raising a
  process needs root or ``CAP_SYS_NICE`` (the chart's default, privileged, has it);
  without it, 19 throughout;
- the registry and the ingress replica ask for nice 0 (:func:`favour_control_plane`),
  which needs root or ``CAP_SYS_NICE``; without it they stay at Ray's 15, still ahead of
  the session workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from ash_ray.names import SESSION_PREFIX

logger = logging.getLogger(__name__)

SESSION_NICE = 19
SERVING_NICE = 10
CONTROL_NICE = 0


def _set_nice(value: int) -> bool:
    """Every thread of this process to ``value`` (Linux keeps a nice value per thread:
    Ray's threads are already running, and later threads inherit their creator's)."""
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    try:
        for tid in threads:
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.setpriority(os.PRIO_PROCESS, tid, value)
    except OSError:
        return False
    return True


def yield_if_session_worker() -> None:
    """Lower this process to :data:`SESSION_NICE` when it is a session worker actor.

    Runs when ``ash_ray.session`` is first imported: in a session worker that is while
    Ray loads the actor class, before the SDK's imports. Other processes (the registry
    imports the class too, the CLI, drivers) are left alone.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    name = ray.get_runtime_context().get_actor_name() or ""
    if name.startswith(SESSION_PREFIX) and os.getpriority(os.PRIO_PROCESS, 0) < SESSION_NICE:
        _set_nice(SESSION_NICE)


def serving(on: bool) -> None:
    """This session worker to :data:`SERVING_NICE` while bound (``on``), else back to
    :data:`SESSION_NICE`; without the right to raise it, it stays where it is."""
    value = SERVING_NICE if on else SESSION_NICE
    if os.getpriority(os.PRIO_PROCESS, 0) != value and not _set_nice(value):
        logger.debug("session worker stays at nice %d (no CAP_SYS_NICE)",
                     os.getpriority(os.PRIO_PROCESS, 0))


def favour_control_plane(role: str) -> None:
    """Raise this process to :data:`CONTROL_NICE` where the OS allows it."""
    if os.getpriority(os.PRIO_PROCESS, 0) <= CONTROL_NICE:
        return
    if _set_nice(CONTROL_NICE):
        logger.info("%s runs at nice %d, ahead of the session workers", role, CONTROL_NICE)
    else:
        logger.info(
            "%s stays at nice %d (no CAP_SYS_NICE); session workers run at %d",
            role, os.getpriority(os.PRIO_PROCESS, 0), SESSION_NICE,
        )
