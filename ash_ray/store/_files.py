"""Snapshot and attachment files of the SQLite store: safe names, atomic writes, digests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ash_ray.errors import StoreError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


def sha256(data: bytes) -> str:
    """Hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def snapshot_name(session_id: str) -> str:
    """A file name for the session's archive that cannot leave its directory."""
    stem = session_id if _SAFE_NAME.match(session_id) else sha256(session_id.encode())
    return f"{stem}.tar.gz"


def write_atomically(target: Path, data: bytes) -> str:
    """Write ``data`` to ``target`` via a synced temp file and rename; return its sha256.

    Readers see the old file or the new one, never a torn one, even across a crash.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return sha256(data)


async def read_verified(path: Path, digest: str, what: str, **fields: Any) -> bytes | None:
    """``path``'s bytes, None when the file is missing; a StoreError naming ``what`` (with
    ``fields``) when they do not match ``digest``: a torn or tampered file is never served."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        return None
    if sha256(data) != digest:
        raise StoreError(
            f"{what} {path} does not match its recorded sha256; the file was changed or "
            "truncated outside ash-ray",
            **fields,
        )
    return data
