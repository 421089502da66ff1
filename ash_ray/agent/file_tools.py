"""The file tools (Read, Write, Edit, Glob, Grep, LS) as plain blocking functions.

They run in a worker thread (see :mod:`ash_ray.agent.tools`). Every path goes through
``sandbox.resolve`` first, so ``..`` and symlinks cannot leave the workspace; walks
never follow directory symlinks, and a file reached through a symlink is re-resolved
before it is read. Failures raise :class:`ToolFailure`, which becomes an error
tool_result for the model.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ash_ray.agent.pathglob import compile_glob
from ash_ray.agent.permissions import PermissionPolicy
from ash_ray.content import IMAGE_MAX_BYTES, PDF_MAX_BYTES, sniff
from ash_ray.errors import PathOutsideWorkspace
from ash_ray.sandbox import Sandbox

DEFAULT_READ_LINES = 2000
MAX_LINE_CHARS = 2000
MAX_RESULTS = 100
MAX_GREP_LINES = 500
MAX_SEARCH_FILE_BYTES = 10 * 1024 * 1024
SKIP_DIRS = frozenset({".git"})


class ToolFailure(Exception):
    """A tool could not do what was asked; the message is shown to the model."""


@dataclass(frozen=True)
class FileContext:
    """What the file tools need: the sandbox (for paths) and the turn's policy."""

    sandbox: Sandbox
    policy: PermissionPolicy
    max_write_bytes: int


def _is_binary(path: Path) -> bool:
    with path.open("rb") as fh:
        return b"\x00" in fh.read(8192)


def _rel(ctx: FileContext, path: Path) -> str:
    return path.relative_to(ctx.sandbox.workspace).as_posix() or "."


def _media_block(path: Path) -> list[dict[str, Any]] | None:
    """An image or PDF as the content block the model reads it from, as Claude Code does."""
    with path.open("rb") as fh:
        media_type = sniff(fh.read(16))
    if media_type is None:
        return None
    size = path.stat().st_size
    limit = PDF_MAX_BYTES if media_type == "application/pdf" else IMAGE_MAX_BYTES
    if size > limit:
        raise ToolFailure(
            f"{path.name} is a {media_type} of {size} bytes, over the {limit}-byte limit "
            "the model reads"
        )
    source = {
        "type": "base64",
        "media_type": media_type,
        "data": base64.b64encode(path.read_bytes()).decode("ascii"),
    }
    kind = "document" if media_type == "application/pdf" else "image"
    return [{"type": kind, "source": source}]


def read(ctx: FileContext, args: dict[str, Any]) -> str | list[dict[str, Any]]:
    """Lines of a file numbered like ``cat -n``, from ``offset`` (1-based) for ``limit``;
    an image (JPEG, PNG, GIF, WebP) or a PDF comes back as an image or document block."""
    path = ctx.sandbox.resolve(args["file_path"])
    if not path.exists():
        raise ToolFailure(f"File does not exist: {args['file_path']}")
    if path.is_dir():
        raise ToolFailure(f"{args['file_path']} is a directory; use LS to list it")
    if (blocks := _media_block(path)) is not None:
        return blocks
    if _is_binary(path):
        return f"(binary file, {path.stat().st_size} bytes, not shown)"
    start = max(int(args.get("offset") or 1), 1)
    limit = max(int(args.get("limit") or DEFAULT_READ_LINES), 1)
    out: list[str] = []
    total = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            total = number
            if start <= number < start + limit:
                text = line.rstrip("\r\n")
                if len(text) > MAX_LINE_CHARS:
                    text = text[:MAX_LINE_CHARS] + "... (line truncated)"
                out.append(f"{number:>6}\t{text}")
    if total == 0:
        return "(the file exists but is empty)"
    if not out:
        return f"(the file has {total} lines; offset {start} is past the end)"
    if start + limit - 1 < total:
        out.append(f"... ({total - (start + limit - 1)} more lines; use offset to read on)")
    return "\n".join(out)


def write(ctx: FileContext, args: dict[str, Any]) -> str:
    """Create or overwrite a file (parent directories are created)."""
    path = ctx.sandbox.resolve(args["file_path"])
    content = str(args["content"])
    if len(content.encode()) > ctx.max_write_bytes:
        raise ToolFailure(f"content exceeds the file size limit of {ctx.max_write_bytes} bytes")
    if path.is_dir():
        raise ToolFailure(f"{args['file_path']} is a directory")
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return f"The file {path} has been {'updated' if existed else 'created'}."


def edit(ctx: FileContext, args: dict[str, Any]) -> str:
    """Replace ``old_string`` by ``new_string``: once (it must be unique) or everywhere."""
    path = ctx.sandbox.resolve(args["file_path"])
    old, new = str(args["old_string"]), str(args["new_string"])
    if old == new:
        raise ToolFailure("old_string and new_string are the same; nothing to change")
    if not path.is_file():
        if old == "":
            return write(ctx, {"file_path": args["file_path"], "content": new})
        raise ToolFailure(f"File does not exist: {args['file_path']}")
    text = path.read_text(encoding="utf-8")
    if old == "":
        raise ToolFailure("old_string is empty; use Write to replace a whole file")
    count = text.count(old)
    if count == 0:
        raise ToolFailure(f"old_string was not found in {args['file_path']}")
    if count > 1 and not args.get("replace_all"):
        raise ToolFailure(
            f"old_string occurs {count} times in {args['file_path']}; add surrounding "
            "context to make it unique, or set replace_all to change every occurrence"
        )
    updated = text.replace(old, new) if args.get("replace_all") else text.replace(old, new, 1)
    if len(updated.encode()) > ctx.max_write_bytes:
        raise ToolFailure(f"the result exceeds the file size limit of {ctx.max_write_bytes} bytes")
    path.write_text(updated, encoding="utf-8")
    first = updated[: text.index(old)].count("\n")
    lines = updated.splitlines()
    snippet = "\n".join(
        f"{n + 1:>6}\t{lines[n]}" for n in range(max(first - 2, 0), min(first + 4, len(lines)))
    )
    replaced = count if args.get("replace_all") else 1
    return f"The file {path} has been updated ({replaced} replacement(s)):\n{snippet}"


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root``, never following directory symlinks, skipping .git."""
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            yield Path(current) / name


def _base_dir(ctx: FileContext, args: dict[str, Any]) -> Path:
    base = ctx.sandbox.resolve(str(args.get("path") or "."))
    if not base.exists():
        raise ToolFailure(f"Path does not exist: {args.get('path')}")
    return base


def glob(ctx: FileContext, args: dict[str, Any]) -> str:
    """Files under ``path`` matching ``pattern``, newest first."""
    base = _base_dir(ctx, args)
    if not base.is_dir():
        raise ToolFailure(f"{args.get('path')} is not a directory")
    pattern = str(args["pattern"])
    if pattern.startswith("/"):
        prefix = str(base) + "/"
        if not pattern.startswith(prefix):
            raise PathOutsideWorkspace(f"pattern {pattern!r} is outside {base}", path=pattern)
        pattern = pattern[len(prefix) :]
    if ".." in pattern.split("/"):
        raise PathOutsideWorkspace(f"pattern {pattern!r} may not contain '..'", path=pattern)
    regex = compile_glob(pattern)
    found = [
        p
        for p in _walk(base)
        if regex.match(p.relative_to(base).as_posix())
        and ctx.policy.path_allowed("Glob", _rel(ctx, p))
    ]
    if not found:
        return "No files found"

    def mtime(p: Path) -> float:
        try:
            return p.lstat().st_mtime
        except OSError:
            return 0.0

    found.sort(key=mtime, reverse=True)
    lines = [str(p) for p in found[:MAX_RESULTS]]
    if len(found) > MAX_RESULTS:
        lines.append(f"... ({len(found) - MAX_RESULTS} more; narrow the pattern)")
    return "\n".join(lines)


def _searchable(ctx: FileContext, path: Path) -> Path | None:
    """The real file behind ``path`` if Grep may read it, else None."""
    try:
        real = ctx.sandbox.resolve(str(path))
        if not real.is_file() or real.stat().st_size > MAX_SEARCH_FILE_BYTES or _is_binary(real):
            return None
    except (PathOutsideWorkspace, OSError):
        return None
    if not ctx.policy.path_allowed("Grep", _rel(ctx, path)):
        return None
    return real


def grep(ctx: FileContext, args: dict[str, Any]) -> str:
    """Search file contents with a Python regular expression."""
    try:
        regex = re.compile(str(args["pattern"]), re.IGNORECASE if args.get("-i") else 0)
    except re.error as exc:
        raise ToolFailure(f"invalid regular expression: {exc}") from None
    base = _base_dir(ctx, args)
    mode = args.get("output_mode") or "files_with_matches"
    if mode not in ("content", "files_with_matches", "count"):
        raise ToolFailure("output_mode must be content, files_with_matches or count")
    file_glob = args.get("glob")
    limit = int(args.get("head_limit") or MAX_GREP_LINES)
    candidates = [base] if base.is_file() else list(_walk(base))
    out: list[str] = []
    for path in candidates:
        if file_glob:
            target = path.name if "/" not in file_glob else path.relative_to(base).as_posix()
            if not compile_glob(str(file_glob)).match(target):
                continue
        real = _searchable(ctx, path)
        if real is None:
            continue
        hits = 0
        with real.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, start=1):
                if regex.search(line):
                    hits += 1
                    if mode == "content":
                        out.append(f"{path}:{number}:{line.rstrip()[:MAX_LINE_CHARS]}")
                    elif mode == "files_with_matches":
                        out.append(str(path))
                        break
        if hits and mode == "count":
            out.append(f"{path}:{hits}")
        if len(out) >= limit:
            out = [*out[:limit], f"... (stopped after {limit} results)"]
            break
    return "\n".join(out) if out else "No matches found"


def ls(ctx: FileContext, args: dict[str, Any]) -> str:
    """Entries of a directory, directories marked with a trailing ``/``."""
    base = _base_dir(ctx, args)
    if not base.is_dir():
        raise ToolFailure(f"{args.get('path')} is not a directory")
    ignore = [str(p) for p in args.get("ignore") or []]
    lines = [f"{base}/"]
    for entry in sorted(base.iterdir(), key=lambda p: p.name):
        if any(compile_glob(p).match(entry.name) for p in ignore):
            continue
        if not ctx.policy.path_allowed("LS", _rel(ctx, entry)):
            continue
        suffix = "/" if entry.is_dir() and not entry.is_symlink() else ""
        suffix = " -> (symlink)" if entry.is_symlink() else suffix
        lines.append(f"  - {entry.name}{suffix}")
    return "\n".join(lines) if len(lines) > 1 else f"{base}/ (empty)"
