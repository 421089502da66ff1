"""Per-sandbox cgroups: memory and process count for a whole tool process tree.

rlimits are per process; a cgroup caps the tree, and it is the only thing that caps
the number of processes of a root-owned sandbox (the kernel never applies
RLIMIT_NPROC to uid 0). Each sandbox gets a child cgroup ``ash/<sandbox id>`` *under
the server's own cgroup*, so the limits of the container or pod we run in still apply
to it, and a sandbox cannot exceed them by being created beside us.

* cgroup v2: needs a delegated hierarchy whose ``cgroup.controllers`` offers
  ``memory`` and ``pids`` and lets us enable them for our subtree. We never move the
  server's own processes to make that possible; if enabling fails, v2 is unavailable.
* cgroup v1: needs writable ``memory`` and ``pids`` hierarchies.

Discovery reads ``/proc/self/cgroup`` and ``/proc/self/mountinfo``; the result is
cached for the process because probing creates the ``ash`` parent directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PARENT_NAME = "ash"


@dataclass(frozen=True)
class CgroupPlaces:
    """Where sandbox cgroups can be created, per cgroup version (None: unavailable)."""

    v2: Path | None
    v1_memory: Path | None
    v1_pids: Path | None

    @property
    def v1(self) -> bool:
        return self.v1_memory is not None and self.v1_pids is not None


def _own_cgroups() -> dict[str, str]:
    """Map controller name (``""`` for v2) to our cgroup path in that hierarchy."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                out[name] = path
    return out


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount root, mount point, super options) of every cgroup mount."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) < 5 or len(rfields) < 3 or not rfields[0].startswith("cgroup"):
                continue
            found.append((rfields[0], fields[3], fields[4], set(rfields[2].split(","))))
    return found


def _place(mount_root: str, mount_point: str, own: str) -> Path | None:
    # A cgroup namespace or bind mount shows only part of the hierarchy: our path must
    # lie under the mount's root to be reachable through it.
    if not (own + "/").startswith(mount_root.rstrip("/") + "/"):
        return None
    rel = own[len(mount_root.rstrip("/")) :].lstrip("/")
    return Path(mount_point) / rel if rel else Path(mount_point)


def _probe_v1(base: Path, limit_file: str) -> Path | None:
    parent = base / PARENT_NAME
    try:
        parent.mkdir(exist_ok=True)
    except OSError as exc:
        logger.debug("cgroup v1 %s not writable: %s", base, exc)
        return None
    if not (parent / limit_file).exists() or not os.access(parent, os.W_OK):
        return None
    return parent


def _probe_v2(base: Path) -> Path | None:
    try:
        offered = set((base / "cgroup.controllers").read_text().split())
        if not {"memory", "pids"} <= offered:
            return None
        enabled = set((base / "cgroup.subtree_control").read_text().split())
        if not {"memory", "pids"} <= enabled:
            (base / "cgroup.subtree_control").write_text("+memory +pids")
        parent = base / PARENT_NAME
        parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text("+memory +pids")
    except OSError as exc:
        logger.debug("cgroup v2 at %s not delegated: %s", base, exc)
        return None
    return parent


@functools.lru_cache(maxsize=1)
def discover() -> CgroupPlaces:
    """Find writable cgroup parents for sandboxes (cached for the process)."""
    own = _own_cgroups()
    v2 = v1_memory = v1_pids = None
    for fstype, root, point, opts in _mounts():
        if fstype == "cgroup2" and "" in own and v2 is None:
            base = _place(root, point, own[""])
            v2 = _probe_v2(base) if base else None
        elif fstype == "cgroup":
            for name, limit_file in (("memory", "memory.limit_in_bytes"), ("pids", "pids.max")):
                if name in opts and name in own:
                    base = _place(root, point, own[name])
                    found = _probe_v1(base, limit_file) if base else None
                    if name == "memory" and found:
                        v1_memory = found
                    elif name == "pids" and found:
                        v1_pids = found
    places = CgroupPlaces(v2=v2, v1_memory=v1_memory, v1_pids=v1_pids)
    logger.info("cgroup places for sandboxes: %s", places)
    return places


def _parents(places: CgroupPlaces, mode: str) -> list[Path]:
    """The directories a sandbox cgroup of ``mode`` goes under (one a hierarchy); none
    when ``mode`` is not available here."""
    if mode == "cgroup2" and places.v2 is not None:
        return [places.v2]
    if mode == "cgroup1" and places.v1_memory is not None and places.v1_pids is not None:
        return [places.v1_memory, places.v1_pids]
    return []


class SandboxCgroup:
    """One sandbox's cgroup (one directory per hierarchy), created and removed by us."""

    def __init__(self, mode: str, dirs: list[Path]) -> None:
        self.mode = mode
        self.dirs = dirs

    @classmethod
    def create(
        cls, places: CgroupPlaces, mode: str, name: str, *, memory_bytes: int, max_procs: int
    ) -> SandboxCgroup:
        """Make the directories and write the limits; raises OSError when refused."""
        parents = _parents(places, mode)
        if not parents:
            raise OSError(f"cgroup mode {mode} is not available here")
        cg = cls(mode, [parent / name for parent in parents])
        try:
            for path in cg.dirs:
                path.mkdir(exist_ok=True)
            if mode == "cgroup2":
                cg._write(0, "memory.max", str(memory_bytes))
                # Without a swap cap the memory limit only moves pages to swap.
                cg._write(0, "memory.swap.max", "0", optional=True)
                cg._write(0, "pids.max", str(max_procs))
            else:
                cg._write(0, "memory.limit_in_bytes", str(memory_bytes))
                # memsw must be >= the memory limit; it exists only with swap accounting.
                cg._write(0, "memory.memsw.limit_in_bytes", str(memory_bytes), optional=True)
                cg._write(1, "pids.max", str(max_procs))
        except OSError:
            for path in cg.dirs:
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
        return cg

    def _write(self, index: int, file: str, value: str, *, optional: bool = False) -> None:
        try:
            (self.dirs[index] / file).write_text(value)
        except OSError:
            if not optional:
                raise

    @property
    def join_files(self) -> tuple[str, ...]:
        """Files a child writes its pid to, to enter this cgroup before it execs."""
        return tuple(str(d / "cgroup.procs") for d in self.dirs)

    def pids(self) -> list[int]:
        """Processes currently in the cgroup."""
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return sorted(found)

    def oom_killed(self) -> bool:
        """True if the kernel OOM-killed something in this cgroup."""
        try:
            if self.mode == "cgroup2":
                events = (self.dirs[0] / "memory.events").read_text().split()
                return int(events[events.index("oom_kill") + 1]) > 0
            fields = (self.dirs[0] / "memory.oom_control").read_text().split()
            return int(fields[fields.index("oom_kill") + 1]) > 0
        except (OSError, ValueError, IndexError):
            return False

    async def kill(self, deadline_s: float = 5.0) -> None:
        """SIGKILL everything inside, until empty (a fork bomb races us; pids.max bounds it)."""
        if self.mode == "cgroup2" and (self.dirs[0] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.dirs[0] / "cgroup.kill").write_text("1")
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while pids := self.pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if loop.time() > end:
                logger.warning("cgroup %s still has processes %s", self.dirs[0], pids[:10])
                return
            await asyncio.sleep(0.01)

    async def remove(self) -> None:
        """Kill what is left and remove the directories (children first)."""
        await self.kill()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # A killed task leaves the cgroup a moment after it dies.
                    await asyncio.sleep(0.02)
            else:
                logger.warning("could not remove cgroup %s", d)


# Sandbox cgroups are named ``pid<owner pid>-<sandbox id>`` (owned_name).
_OWNER = "pid"


def owned_name(sandbox_id: str) -> str:
    """The cgroup name of a sandbox of this process: ``pid<pid>-<sandbox id>``. The pid
    says whose it is, so a sweep knows one left by a process that is gone."""
    return f"{_OWNER}{os.getpid()}-{sandbox_id}"


def _owner_gone(name: str) -> bool:
    owner, sep, _ = name.removeprefix(_OWNER).partition("-")
    if not name.startswith(_OWNER) or not sep or not owner.isdigit():
        return False  # not named by owned_name: not ours to judge
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, someone else's
    return False


async def sweep_orphans(places: CgroupPlaces, mode: str) -> int:
    """Kill what is left in the sandbox cgroups of processes that are gone and remove
    them; returns how many. A session worker lost while its tool ran, or inside
    bubblewrap's own set-up (whose inner process then waits forever), leaves one."""
    parents = _parents(places, mode)
    names: set[str] = set()
    for parent in parents:
        with contextlib.suppress(OSError):
            names.update(d.name for d in parent.iterdir() if d.is_dir())
    orphans = sorted(name for name in names if _owner_gone(name))
    for name in orphans:
        logger.info("removing the sandbox cgroup %s: its worker process is gone", name)
        await SandboxCgroup(mode, [parent / name for parent in parents]).remove()
    return len(orphans)


_swept: set[str] = set()


async def sweep_orphans_once(mode: str) -> None:
    """:func:`sweep_orphans` the first time this process makes a cgroup of ``mode``
    (each new session worker sweeps its node once; workers replace lost ones)."""
    if mode in _swept or mode == "rlimit":
        return
    _swept.add(mode)
    try:
        await sweep_orphans(discover(), mode)
    except OSError:
        logger.warning("the sweep of orphaned sandbox cgroups failed", exc_info=True)
