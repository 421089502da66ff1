"""Agent versions unpacked on this node, fetched from the Store once per archive.

A session worker gets an :class:`~ash_ray.models.AgentRef` (name, version, sha256) and
asks for the folder here: a hit is a directory lookup; a miss fetches the archive
through the registry (so any node can run any agent, whatever folder it was deployed
from), checks its digest and unpacks it beside the cache, then renames it into place so
racing workers never see half a folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from ash_ray.agent import bundle
from ash_ray.errors import StoreError
from ash_ray.models import AgentRef


def folder_of(cache_dir: Path, ref: AgentRef) -> Path:
    """Where ``ref`` lives unpacked (its last component is the agent's name)."""
    return cache_dir / f"{ref.name}-v{ref.version}-{ref.sha256[:16]}" / ref.name


async def materialize(
    cache_dir: Path, ref: AgentRef, fetch: Callable[[], Awaitable[bytes]]
) -> Path:
    """The agent folder of ``ref`` on this node, unpacked from the archive when missing."""
    folder = folder_of(cache_dir, ref)
    if folder.is_dir():
        return folder
    data = await fetch()
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise StoreError(
            f"archive of agent {ref.name} v{ref.version} does not match its sha256 {ref.sha256}"
        )
    await asyncio.to_thread(_install, data, folder)
    return folder


def _install(data: bytes, folder: Path) -> None:
    key_dir = folder.parent
    key_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=key_dir.parent, prefix=f".{key_dir.name}."))
    try:
        bundle.extract(data, tmp / folder.name)
        try:
            os.rename(tmp, key_dir)
        except OSError:
            if not folder.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
