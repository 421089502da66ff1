"""The sandbox seam: what the agent loop may ask of a sandbox, and path confinement.

The agent loop only sees :class:`Sandbox`; :mod:`ash_ray.sandbox.process` holds the one
implementation. :func:`resolve_in_workspace` is shared by every implementation so that
file tools refuse the same paths whatever isolation is in force.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ash_ray.errors import PathOutsideWorkspace


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one command run in a sandbox.

    ``exit_code`` is the shell's status (negative: killed by that signal, as in
    :mod:`subprocess`). ``timed_out`` means the wall-clock limit killed the command;
    ``truncated`` means stdout or stderr exceeded the capture cap and was cut.
    """

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the command finished by itself with status 0."""
        return self.exit_code == 0 and not self.timed_out


@runtime_checkable
class Sandbox(Protocol):
    """Where tool processes of one session run, confined to its workspace."""

    @property
    def sandbox_id(self) -> str:
        """Stable id of this sandbox (names its cgroup)."""
        ...

    @property
    def workspace(self) -> Path:
        """The session workspace, fully resolved."""
        ...

    @property
    def isolation(self) -> str:
        """Filesystem isolation in force: ``"bwrap"`` or ``"none"``."""
        ...

    @property
    def limit_mode(self) -> str:
        """How limits are enforced: ``"cgroup2"``, ``"cgroup1"`` or ``"rlimit"``."""
        ...

    @property
    def network(self) -> bool:
        """False when commands run without network."""
        ...

    async def run(
        self, command: str, *, timeout_s: float | None = None, cwd: str | None = None
    ) -> ExecResult:
        """Run ``bash -c command`` in the workspace under every limit of the sandbox."""
        ...

    def resolve(self, path: str) -> Path:
        """Confine ``path`` to the workspace or raise PathOutsideWorkspace."""
        ...

    async def spawn(self, command: str, *, env: dict[str, str] | None = None) -> Any:
        """Start a long-lived ``bash -c command`` with pipes under the same limits.

        Returns an object with ``proc`` (an asyncio subprocess) and ``async kill()``.
        """
        ...

    async def close(self) -> None:
        """Kill what still runs and release limits (cgroups). Idempotent."""
        ...


def resolve_in_workspace(workspace: Path, path: str) -> Path:
    """Return ``path`` resolved inside ``workspace``, or raise PathOutsideWorkspace.

    Relative paths start at the workspace, ``~`` is the workspace (it is HOME inside
    the sandbox), absolute paths must already lie inside it. Symlinks and ``..`` are
    resolved first (a symlinked parent directory too, and a dangling link by its
    target), so a link that points outside is refused even when the file does not
    exist yet: Write through it would otherwise create the file outside.
    """
    root = workspace.resolve()
    if "\x00" in path:
        raise PathOutsideWorkspace("path contains a NUL byte", path=path)
    raw = path.strip() or "."
    if raw == "~" or raw.startswith("~/"):
        raw = str(root) + raw[1:]
    candidate = Path(raw)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        resolved = Path(os.path.realpath(candidate))
    except (OSError, RuntimeError, ValueError):
        raise PathOutsideWorkspace(
            f"path {path!r} cannot be resolved (symlink loop?)", path=path
        ) from None
    if resolved != root and root not in resolved.parents:
        raise PathOutsideWorkspace(
            f"path {path!r} is outside the workspace; use a path under {root}",
            path=path,
            workspace=str(root),
        )
    return resolved
