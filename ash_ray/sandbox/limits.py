"""Resource limits of a sandboxed command: which mode is in force, and the rlimits.

Three modes, strongest first:

* ``cgroup2`` / ``cgroup1``: a per-sandbox cgroup caps memory and the number of
  processes of the whole tree (see :mod:`ash_ray.sandbox.cgroups`), plus the rlimits.
* ``rlimit``: per-process rlimits only.

rlimits are always set in the child before it execs: ``RLIMIT_AS`` (address space,
from ``sandbox_memory_mb``), ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE`` and
``RLIMIT_CORE`` = 0 (no core files in the workspace).

``RLIMIT_NPROC`` is special. The kernel counts it per real uid across the whole
machine and never enforces it for uid 0. So:

* as root it would do nothing, and we do not set it: the pids cgroup is the process
  limit, and without one a root sandbox has no process limit (only the wall-clock
  timeout, which kills the whole tree);
* as another user in ``rlimit`` mode it is set to "tasks this uid runs now +
  ``sandbox_max_procs``", because the server's own processes and threads (Ray's
  workers have many) count against it too; a plain ``sandbox_max_procs`` would make
  every fork fail on a busy node. In cgroup modes it is left alone.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from pathlib import Path

from ash_ray.config import Settings
from ash_ray.errors import SandboxError
from ash_ray.sandbox.cgroups import CgroupPlaces, discover

_PR_SET_PDEATHSIG = 1
# Looked up here, in the worker: a child between fork and exec only calls it.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl

LIMIT_MODES: tuple[str, ...] = ("cgroup2", "cgroup1", "rlimit")


def available_limit_modes(places: CgroupPlaces | None = None) -> list[str]:
    """Modes usable on this machine, strongest first (``rlimit`` is always there)."""
    places = discover() if places is None else places
    modes = []
    if places.v2 is not None:
        modes.append("cgroup2")
    if places.v1:
        modes.append("cgroup1")
    modes.append("rlimit")
    return modes


def detect_limit_mode(settings: Settings) -> str:
    """The limit mode sandboxes use under ``settings`` (for /health and sandbox creation).

    ``sandbox_limits=auto`` picks the strongest available mode. An explicit mode that
    this machine cannot provide raises SandboxError naming what is missing.
    """
    available = available_limit_modes()
    wanted = settings.sandbox_limits
    if wanted == "auto":
        return available[0]
    if wanted not in available:
        raise SandboxError(
            f"ASH_SANDBOX_LIMITS={wanted} but this machine offers only {available}: "
            "grant a writable cgroup (privileged pod / delegated cgroup) or use auto",
            limit_mode=wanted,
        )
    return wanted


def _uid_task_count(uid: int) -> int:
    """Processes and threads owned by ``uid``: what RLIMIT_NPROC counts."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        try:
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields.get("Threads", "1").strip())
        except (KeyError, ValueError, IndexError):
            continue
    return total


def build_rlimits(settings: Settings, mode: str) -> tuple[tuple[int, int], ...]:
    """(resource, value) pairs the child sets as soft and hard limit before exec.

    Values are clamped to our own hard limits: a non-root parent cannot raise them.
    """
    mib = 1024 * 1024
    wanted = [
        (resource.RLIMIT_AS, settings.sandbox_memory_mb * mib),
        (resource.RLIMIT_CPU, settings.sandbox_cpu_s),
        (resource.RLIMIT_FSIZE, settings.sandbox_file_size_mb * mib),
        (resource.RLIMIT_NOFILE, settings.sandbox_open_files),
        (resource.RLIMIT_CORE, 0),
    ]
    uid = os.getuid()
    if uid != 0 and mode == "rlimit":
        wanted.append((resource.RLIMIT_NPROC, _uid_task_count(uid) + settings.sandbox_max_procs))
    out = []
    for res, value in wanted:
        _, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        out.append((res, value))
    return tuple(out)


def child_setup(
    rlimits: tuple[tuple[int, int], ...],
    join_files: tuple[str, ...],
    keep: tuple[int, ...] = (),
    parent: int | None = None,
) -> None:
    """Run in the forked child before exec: die with ``parent``, seal the worker's
    descriptors, enter the cgroup, then lower the limits.

    Entering the cgroup here, before exec, means no descendant can be forked outside
    it. Kept to raw syscalls because it runs between fork and exec.
    """
    if parent is not None:
        die_with(parent)
    seal_descriptors(keep)
    pid = str(os.getpid()).encode()
    for path in join_files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
    for res, value in rlimits:
        resource.setrlimit(res, (value, value))


def die_with(parent: int) -> None:
    """SIGKILL this process when the worker that forks it dies (``PR_SET_PDEATHSIG``,
    kept across exec). bubblewrap's ``--die-with-parent`` sets the same, but only once
    it runs: a worker killed in between left a sandbox behind that nothing would end.
    Exits at once when the worker is already gone."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(125)


def seal_descriptors(keep: tuple[int, ...]) -> None:
    """Mark every descriptor from 3 up, but ``keep``, close-on-exec.

    Inside a Ray worker, ``close_fds`` does not keep the worker's descriptors from the
    child (measured: the core worker's log files, the raylet's event log and its pipes
    reached a sandboxed ``ls /proc/self/fd``), and bubblewrap hands every descriptor it
    gets to the command. Close-on-exec, not close: Python's own error pipe must last
    until the exec.
    """
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the directory listing's own descriptor, closed by now
