"""Child processes of a sandbox: capped output capture, exit waits, group kills."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

_READ_CHUNK = 64 * 1024


class Capture:
    """Collects one output stream up to a cap, then keeps draining so the child never blocks."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(_READ_CHUNK):
            room = self.cap - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if len(chunk) > room:
                self.truncated = True

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")



async def exited_within(proc: asyncio.subprocess.Process, limit_s: float) -> bool:
    """Wait for the shell itself to exit; False on timeout.

    ``proc.wait()`` cannot be used: asyncio also waits for the pipes to close, which a
    background child holding stdout delays until it ends (``sleep 100 &``).
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    pause = 0.002
    while proc.returncode is None:
        remaining = end - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.05)
    return True


def killpg(proc: asyncio.subprocess.Process) -> None:
    # start_new_session made the child a group leader: its pid is the group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def start(*argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec`` that a cancellation cannot hang.

    Cancelled while it connects the pipes, asyncio kills only the direct child and then
    waits for every pipe to close, which a grandchild holding stdout (the sandboxed
    command under bwrap) delays forever. So the start runs to its end (milliseconds),
    and a cancellation that came meanwhile kills the whole group before it propagates.
    """
    starting = asyncio.ensure_future(asyncio.create_subprocess_exec(*argv, **kwargs))
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            killpg(await starting)
        raise
