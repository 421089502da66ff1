"""A session workspace's files: list, read, write, delete, bundle and restore, confined.

Plain functions on a workspace directory, used by a live worker (on its sandbox's
workspace) and by the ingress on a cold session (on its snapshot unpacked into a
temporary directory, :func:`unpacked`), so both answer alike.

Every path is checked twice. First as text: absolute paths, ``..`` and NUL bytes are a
400, as in Ash. Then resolved with symlinks (:func:`resolve_in_workspace`): a path that
lands outside the workspace is a 400 too. The file is then opened one component at a
time with ``O_NOFOLLOW`` beneath the workspace, so a symlink that a tool process swaps in
between the check and the open cannot redirect the read or the write.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from ash_ray.errors import InvalidInput, NotFound, PathOutsideWorkspace, PayloadTooLarge
from ash_ray.sandbox.base import resolve_in_workspace
from ash_ray.session import workspace as snapshots

# Never listed nor bundled (as in Ash's routes/files.ts and bundle.ts).
ALWAYS_SKIP = frozenset({"node_modules", ".git", "__pycache__", ".DS_Store"})
# Also left out of a listing with includeHidden=false: caches and virtualenvs.
HIDDEN_SKIP = frozenset(
    {".cache", ".npm", ".pnpm-store", ".yarn", ".venv", "venv", ".tmp", "tmp"}
)
SKIP_SUFFIXES = (".sock", ".lock", ".pid")
# Secrets stay where they are: a bundle never carries them.
ENV_FILES = frozenset({".env", ".env.local", ".env.production", ".env.development"})
GZIP_MAGIC = b"\x1f\x8b"
# A bundle may unpack to this many times its own (compressed) size limit, no more.
UNPACK_RATIO = 8


class FileInfo(TypedDict):
    path: str
    size: int
    modifiedAt: str


class WriteResult(TypedDict, total=False):
    path: str
    written: bool
    size: int
    error: str


# ---------------------------------------------------------------------- paths


def check_relative(path: str) -> str:
    """``path`` as a clean relative POSIX path, or a 400 naming it."""
    if "\x00" in path:
        raise PathOutsideWorkspace("path contains a NUL byte", path=path)
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise PathOutsideWorkspace(f"path {path!r} is absolute; give it relative to the "
                                   "workspace", path=path)
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathOutsideWorkspace(f"path {path!r} contains '..'", path=path)
    if not parts:
        raise InvalidInput(f"path {path!r} names the workspace itself, not a file", path=path)
    return "/".join(parts)


def _resolve(root: Path, path: str) -> tuple[str, Path]:
    rel = check_relative(path)
    return rel, resolve_in_workspace(root, rel)


@contextlib.contextmanager
def _parent_fd(root: Path, resolved: Path, create: bool = False) -> Iterator[tuple[int, str]]:
    """The directory fd holding ``resolved`` and its name, walked with O_NOFOLLOW."""
    parts = resolved.relative_to(root.resolve()).parts
    if not parts:
        raise InvalidInput("the workspace itself is not a file")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
            except OSError as exc:
                raise _swapped(exc, str(resolved)) from None
            os.close(fd)
            fd = nxt
        yield fd, parts[-1]
    finally:
        os.close(fd)


def _swapped(exc: OSError, path: str) -> Exception:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return PathOutsideWorkspace(f"path {path!r} changed to a symlink while in use", path=path)
    if exc.errno == errno.ENOENT:
        return NotFound(f"file {path!r} does not exist in the workspace", path=path)
    return exc


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


# ---------------------------------------------------------------------- files


def list_files(root: Path, include_hidden: bool = True) -> list[FileInfo]:
    """Regular files under ``root`` (symlinks are not followed nor listed), by path."""
    skip = ALWAYS_SKIP if include_hidden else ALWAYS_SKIP | HIDDEN_SKIP
    out: list[FileInfo] = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in names:
            if name in skip or name.endswith(SKIP_SUFFIXES):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                out.append({"path": rel, "size": st.st_size, "modifiedAt": _iso(st.st_mtime)})
    out.sort(key=lambda f: f["path"])
    return out


def read_file(root: Path, path: str, max_bytes: int) -> tuple[bytes, FileInfo]:
    """A file's bytes (at most ``max_bytes``, else a 400) and its listing entry."""
    rel, resolved = _resolve(root, path)
    with _parent_fd(root, resolved) as (dir_fd, name):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            raise _swapped(exc, rel) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{rel!r} is not a file", path=rel)
        if st.st_size > max_bytes:
            raise InvalidInput(
                f"file {rel!r} is {st.st_size} bytes, over the {max_bytes}-byte limit of this "
                "read", path=rel,
            )
        data = fh.read(max_bytes + 1)
    info: FileInfo = {"path": rel, "size": len(data), "modifiedAt": _iso(st.st_mtime)}
    return data, info


def write_files(root: Path, files: list[tuple[str, bytes]], target: str = ".") -> list[WriteResult]:
    """Write each ``(path, data)`` under ``target``; one result per file.

    Every path is checked before anything is written: one bad path refuses the batch.
    """
    base = "" if target.strip() in ("", ".", "./") else check_relative(target)
    planned = []
    for path, data in files:
        rel, resolved = _resolve(root, posixpath.join(base, check_relative(path)))
        planned.append((rel, resolved, data))
    results: list[WriteResult] = []
    for rel, resolved, data in planned:
        if resolved.name == ".DS_Store":
            results.append({"path": rel, "written": False, "error": "skipped (.DS_Store)"})
            continue
        try:
            _write(root, resolved, data)
            results.append({"path": rel, "written": True, "size": len(data)})
        except (OSError, PathOutsideWorkspace) as exc:
            results.append({"path": rel, "written": False, "error": str(exc)})
    return results


def _write(root: Path, resolved: Path, data: bytes) -> None:
    with _parent_fd(root, resolved, create=True) as (dir_fd, name):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
        except OSError as exc:
            raise _swapped(exc, str(resolved)) from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def delete_file(root: Path, path: str) -> str:
    """Remove one file (not a directory); returns its relative path."""
    rel, resolved = _resolve(root, path)
    with _parent_fd(root, resolved) as (dir_fd, name):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            raise _swapped(exc, rel) from None
        if stat.S_ISDIR(st.st_mode):
            raise InvalidInput(f"{rel!r} is a directory, not a file", path=rel)
        os.unlink(name, dir_fd=dir_fd)
    return rel


# ---------------------------------------------------------------------- bundles


def bundle(root: Path, max_bytes: int) -> bytes:
    """The workspace as tar.gz without caches, VCS data, ``.env`` files and links that
    point outside it (symlinks are kept as links, never followed)."""
    real_root = root.resolve()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for dirpath, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in ALWAYS_SKIP)
            for name in [*dirs, *sorted(names)]:
                if name in ALWAYS_SKIP or name in ENV_FILES:
                    continue
                full = os.path.join(dirpath, name)
                if os.path.islink(full) and not _inside(real_root, full):
                    continue
                arcname = os.path.relpath(full, root)
                tar.add(full, arcname=arcname, recursive=False)
            if buf.tell() > max_bytes:
                raise PayloadTooLarge(f"the workspace bundle is over the {max_bytes}-byte limit")
    data = buf.getvalue()
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the workspace bundle is over the {max_bytes}-byte limit")
    return data


def _inside(real_root: Path, link: str) -> bool:
    target = Path(os.path.realpath(link))
    return target == real_root or real_root in target.parents


def restore(root: Path, data: bytes, max_bytes: int) -> int:
    """Unpack a tar.gz bundle over the workspace; returns the number of entries.

    Refused (400) before anything is written: an empty bundle, one that is not gzip,
    not a tar, or has an entry that the ``data`` filter of :mod:`tarfile` rejects
    (absolute, ``..``, a link leading outside, a device). Over the size limits: 413.
    """
    if not data:
        raise InvalidInput("bundle is empty")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"bundle of {len(data)} bytes is over the {max_bytes}-byte limit")
    if not data.startswith(GZIP_MAGIC):
        raise InvalidInput("bundle is not gzip data: send a base64-encoded .tar.gz")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = tar.getmembers()
            _check_members(root, members, max_bytes * UNPACK_RATIO)
            tar.extractall(root, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise PathOutsideWorkspace(f"bundle rejected: {exc}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidInput(f"bundle is not a readable tar.gz: {exc}") from None
    return len(members)


def _check_members(root: Path, members: list[tarfile.TarInfo], max_unpacked: int) -> None:
    total = 0
    for member in members:
        # The data filter would strip the leading "/" and unpack it inside; a bundle
        # that names absolute paths was not made from a workspace: refuse it.
        if member.name.startswith("/"):
            raise PathOutsideWorkspace(f"bundle rejected: entry {member.name!r} is absolute")
        tarfile.data_filter(member, str(root))  # raises FilterError naming the entry
        total += member.size
        if total > max_unpacked:
            raise PayloadTooLarge(f"bundle unpacks to more than {max_unpacked} bytes")


# ---------------------------------------------------------------------- snapshots


@contextlib.contextmanager
def unpacked(snapshot: bytes) -> Iterator[Path]:
    """A cold session's snapshot as a temporary workspace (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="ash-ws-") as tmp:
        root = Path(tmp) / "workspace"
        root.mkdir()
        snapshots.extract(root, snapshot)
        yield root


def repack(root: Path) -> bytes:
    """The temporary workspace as a snapshot archive again."""
    return snapshots.archive(root)


def on_snapshot(
    snapshot: bytes, op: Any, *args: Any, mutates: bool = False
) -> tuple[Any, bytes | None]:
    """Run ``op(root, *args)`` on the snapshot; returns its result and the new snapshot
    (None when ``op`` does not change the workspace)."""
    with unpacked(snapshot) as root:
        result = op(root, *args)
        return result, repack(root) if mutates else None
