"""A session's tool log: the stdout/stderr of its tool processes and system lines.

:class:`LogBook` keeps the newest lines in a ring buffer (``ASH_SESSION_LOG_LINES``) and
saves them through the registry in the background, so ``GET .../logs`` still answers
after the session went cold, or on another node. Line indexes continue across resumes:
the first line of a worker's life asks the Store where the session's log ended.
:class:`LoggedSandbox` is the sandbox as the agent loop sees it, writing every command's
output into the book.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ash_ray.records import LogLevel, LogLine
from ash_ray.sandbox import Sandbox
from ash_ray.sandbox.base import ExecResult

logger = logging.getLogger(__name__)

# Long lines (minified files, base64) are cut: the log is for people, not for data.
MAX_LINE_CHARS = 4000
COMMAND_CHARS = 500

Save = Callable[[list[LogLine]], Awaitable[None]]
LastIndex = Callable[[], Awaitable[int]]
Fetch = Callable[[int, int], Awaitable[list[LogLine]]]


class LogBook:
    """The ring buffer of one session's log lines, saved behind its back."""

    def __init__(self, keep: int, save: Save, last_index: LastIndex, fetch: Fetch) -> None:
        self.keep = keep
        self.lines: deque[LogLine] = deque(maxlen=keep)
        self._save = save
        self._last_index = last_index
        self._fetch = fetch
        self._next: int | None = None
        self._lock = asyncio.Lock()
        self._pending: list[LogLine] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, level: LogLevel, text: str) -> None:
        """Append ``text`` (one line per line of it) and schedule the save."""
        async with self._lock:
            if self._next is None:
                self._next = await self._last_index() + 1
            ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            for raw in text.splitlines() or [""]:
                line: LogLine = {
                    "index": self._next, "level": level, "text": raw[:MAX_LINE_CHARS], "ts": ts,
                }
                self._next += 1
                self.lines.append(line)
                self._pending.append(line)
            # Never more unsaved lines than the buffer keeps: older ones are gone anyway.
            del self._pending[: -self.keep]
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())

    async def since(self, after: int, limit: int) -> list[LogLine]:
        """Lines with ``index > after``: older ones from the Store, then the buffer's."""
        mine = [ln for ln in self.lines if ln["index"] > after]
        oldest = self.lines[0]["index"] if self.lines else None
        older: list[LogLine] = []
        if oldest is None or after + 1 < oldest:
            older = [
                ln for ln in await self._fetch(after, limit)
                if oldest is None or ln["index"] < oldest
            ]
        return (older + mine)[:limit]

    async def flush(self) -> None:
        """Wait for the lines added so far to be saved."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._save(batch)
            except Exception:
                # The buffer still serves them live; a cold read will miss them.
                logger.warning("could not save %d log lines", len(batch), exc_info=True)


class LoggedSandbox:
    """A :class:`~ash_ray.sandbox.Sandbox` whose commands write their output into a book."""

    def __init__(self, inner: Sandbox, book: LogBook) -> None:
        self.inner = inner
        self.book = book

    @property
    def sandbox_id(self) -> str:
        return self.inner.sandbox_id

    @property
    def workspace(self) -> Path:
        return self.inner.workspace

    @property
    def isolation(self) -> str:
        return self.inner.isolation

    @property
    def limit_mode(self) -> str:
        return self.inner.limit_mode

    @property
    def network(self) -> bool:
        return self.inner.network

    @property
    def network_mode(self) -> str:
        return self.inner.network_mode

    async def run(
        self, command: str, *, timeout_s: float | None = None, cwd: str | None = None
    ) -> ExecResult:
        await self.book.add("system", f"$ {command[:COMMAND_CHARS]}")
        try:
            result = await self.inner.run(command, timeout_s=timeout_s, cwd=cwd)
        except Exception as exc:
            await self.book.add("system", f"command could not start: {exc}")
            raise
        if result.stdout:
            await self.book.add("stdout", result.stdout)
        if result.stderr:
            await self.book.add("stderr", result.stderr)
        end = "timed out" if result.timed_out else f"exit {result.exit_code}"
        await self.book.add("system", end + (" (output truncated)" if result.truncated else ""))
        return result

    def resolve(self, path: str) -> Path:
        return self.inner.resolve(path)

    async def spawn(self, command: str, *, env: dict[str, str] | None = None) -> Any:
        return await self.inner.spawn(command, env=env)

    async def close(self) -> None:
        await self.inner.close()
