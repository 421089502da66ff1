"""An agent's files as data: read from a folder or an upload, packed as one tar.gz.

Deploying stores the archive in the Store (one per agent version); a session worker on
any node unpacks the version it needs (see :mod:`ash_ray.session.agent_cache`), so no
one after the deploy reads the folder the agent came from.

Paths are relative POSIX paths; :func:`clean_path` refuses anything that could leave
the agent folder (``..``, absolute paths, NUL), naming the path in the error.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import stat
import tarfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ash_ray.errors import InvalidInput, PayloadTooLarge

logger = logging.getLogger(__name__)

# Never part of an agent: VCS metadata, dependency folders and caches (Ash's list,
# plus Python's tool caches). A name matches at any depth.
SKIP_DIRS = frozenset({
    "node_modules", ".git", "__pycache__", ".cache", ".npm", ".pnpm-store", ".yarn",
    ".venv", "venv", ".tmp", "tmp", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".tox",
})
SKIP_SUFFIXES = (".sock", ".pid", ".pyc")
SKIP_FILES = frozenset({".DS_Store"})


@dataclass(frozen=True)
class AgentFile:
    """One file of an agent: its bytes, permission bits and modification time."""

    data: bytes
    mode: int = 0o644
    mtime: float = 0.0


Files = dict[str, AgentFile]


def clean_path(raw: str) -> str:
    """``raw`` as a normalized relative path inside the agent; InvalidInput otherwise."""
    if not raw or "\x00" in raw or "\\" in raw:
        raise InvalidInput(f"file path {raw[:200]!r} is not a valid relative path", path=raw)
    if raw.startswith("/"):
        raise InvalidInput(f"file path {raw[:200]!r} is absolute; give it relative to the agent")
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if not parts or ".." in parts:
        raise InvalidInput(f"file path {raw[:200]!r} escapes the agent folder", path=raw)
    return "/".join(parts)


def skipped(rel: str) -> bool:
    """True when a path is one of the folders or files an agent never carries."""
    parts = rel.split("/")
    return (
        any(p in SKIP_DIRS for p in parts[:-1])
        or parts[-1] in SKIP_FILES
        or parts[-1].endswith(SKIP_SUFFIXES)
    )


def walk(folder: Path, exclude: Iterable[str] = ()) -> Iterator[tuple[str, Path]]:
    """(relative path, file) of every regular file to deploy from ``folder``, sorted.

    Skip-listed folders are not entered. A symlink is followed only when its target
    stays inside the folder (its content is deployed); others are left out.
    """
    root = folder.resolve()
    excluded = set(exclude)
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not _outside(root, dirpath, d))
        for name in sorted(names):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel in excluded or skipped(rel):
                continue
            if full.is_symlink() and _outside(root, dirpath, name):
                logger.warning("not deploying %s: the symlink leaves the agent folder", full)
                continue
            if full.is_file():
                yield rel, full


def _outside(root: Path, dirpath: str, name: str) -> bool:
    real = Path(os.path.realpath(os.path.join(dirpath, name)))
    return real != root and root not in real.parents


def read_folder(folder: Path, limits: Limits) -> Files:
    """Every deployable file of ``folder`` (see :func:`walk`), within ``limits``."""
    out: Files = {}
    for rel, full in walk(folder):
        st = full.stat()
        limits.check_file(rel, st.st_size)
        out[rel] = AgentFile(full.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime)
        limits.check_total(out)
    return out


@dataclass(frozen=True)
class Limits:
    """Bounds of one agent: a file, all files together, and how many."""

    max_file_bytes: int
    max_total_bytes: int
    max_files: int

    def check_file(self, path: str, size: int) -> None:
        if size > self.max_file_bytes:
            raise PayloadTooLarge(
                f"file {path!r} is {size} bytes, over the {self.max_file_bytes}-byte limit "
                "of one agent file (ASH_AGENT_MAX_FILE_BYTES)",
                path=path,
            )

    def check_total(self, files: Mapping[str, AgentFile]) -> None:
        if len(files) > self.max_files:
            raise PayloadTooLarge(
                f"the agent has {len(files)} files, over the limit of {self.max_files} "
                "(ASH_AGENT_MAX_FILES)"
            )
        total = sum(len(f.data) for f in files.values())
        if total > self.max_total_bytes:
            raise PayloadTooLarge(
                f"the agent's files add up to {total} bytes, over the "
                f"{self.max_total_bytes}-byte limit (ASH_AGENT_MAX_BYTES)"
            )


def decode_upload(items: Iterable[tuple[str, str]], limits: Limits) -> Files:
    """``(path, base64 content)`` pairs as files; 400 naming a bad path or bad base64."""
    out: Files = {}
    now = time.time()
    for raw_path, content in items:
        path = clean_path(raw_path)
        if len(content) * 3 // 4 > limits.max_file_bytes + 3:
            limits.check_file(path, len(content) * 3 // 4)
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"content of {path!r} is not valid base64", path=path) from None
        limits.check_file(path, len(data))
        out[path] = AgentFile(data, 0o755 if data.startswith(b"#!") else 0o644, now)
    return out


def pack(files: Mapping[str, AgentFile]) -> bytes:
    """The files as a tar.gz, in path order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(files):
            entry = files[path]
            info = tarfile.TarInfo(path)
            info.size = len(entry.data)
            info.mode = entry.mode & 0o777
            info.mtime = int(entry.mtime)
            tar.addfile(info, io.BytesIO(entry.data))
    return buf.getvalue()


def unpack(data: bytes) -> Files:
    """The regular files of an archive made by :func:`pack`."""
    out: Files = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                fh = tar.extractfile(member)
                assert fh is not None
                out[clean_path(member.name)] = AgentFile(fh.read(), member.mode, member.mtime)
    except tarfile.TarError as exc:
        raise InvalidInput(f"agent archive is unreadable: {exc}") from None
    return out


def extract(data: bytes, dest: Path) -> None:
    """Unpack an agent archive into the empty folder ``dest`` (no escapes, no devices)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
