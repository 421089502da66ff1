"""Session workspaces on disk: seeded from the agent folder, archived as snapshots."""

from __future__ import annotations

import io
import logging
import os
import shutil
import tarfile
from pathlib import Path

from ash_ray.errors import InvalidInput

logger = logging.getLogger(__name__)

# Never copied from an agent folder into a session: VCS metadata and caches.
_SKIP = shutil.ignore_patterns(".git", "__pycache__", "node_modules", ".venv")


def seed(workspace: Path, agent_path: Path) -> None:
    """Make ``workspace`` a fresh copy of the agent folder."""
    if workspace.exists():
        shutil.rmtree(workspace)
    shutil.copytree(agent_path, workspace, ignore=_SKIP, symlinks=True)


def prepare(workspace: Path, agent_path: Path, snapshot: bytes | None) -> tuple:
    """A session's workspace before its first turn here; returns its signature.

    From the snapshot when there is one, else the copy already on this node, else a
    fresh copy of the agent folder.
    """
    if snapshot is not None:
        restore(workspace, snapshot)
    elif not workspace.exists():
        seed(workspace, agent_path)
    return signature(workspace)


def signature(workspace: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector: (path, size, mtime_ns) of every file."""
    out = []
    for root, _dirs, files in os.walk(workspace):
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            out.append((os.path.relpath(full, workspace), st.st_size, st.st_mtime_ns))
    out.sort()
    return tuple(out)


def archive(workspace: Path) -> bytes:
    """The workspace as tar.gz bytes (symlinks kept as links, never followed)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        tar.add(workspace, arcname=".")
    return buf.getvalue()


def restore(workspace: Path, data: bytes) -> None:
    """Replace ``workspace`` with the archive's content; refuses members that escape it."""
    if workspace.exists():
        shutil.rmtree(workspace)
    workspace.mkdir(parents=True)
    extract(workspace, data)


def extract(workspace: Path, data: bytes) -> None:
    """Unpack a tar.gz into ``workspace`` with the 'data' filter (no escapes, no devices).

    A symlink that points outside (a tool may make one: ``ln -s /etc/passwd x``) is left
    out rather than failing the whole restore: the session would never resume otherwise.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            tar.extractall(workspace, filter=_without_escaping_links)
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"workspace archive rejected: {exc}") from None


def _without_escaping_links(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    try:
        return tarfile.data_filter(member, dest)
    except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError):
        logger.warning("snapshot: leaving out symlink %s -> %s", member.name, member.linkname)
        return None
