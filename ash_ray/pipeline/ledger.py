"""The ledger of one pipeline: it opens the pipeline's sessions and ends them all at the end.

Sessions are created *by the ledger* (a small async actor), not by the map workers, so
that no session escapes: Ray Data kills its map workers when a pipeline finishes or fails,
possibly while one waits for a create, and the registry finishes a create whose caller
died. Here the create is the ledger's own task, its id is written down when it returns,
and :meth:`SessionLedger.close` waits for creates in flight before ending everything.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray

from ash_ray.errors import AtCapacity, Conflict, NotFound, SessionEnded, Unavailable
from ash_ray.pipeline.client import plain, registry_handle

CAPACITY_RETRY_S = 0.5
CONFLICT_RETRY_S = 10.0


class SessionLedger:
    """Opens, tracks and finally ends one pipeline's sessions (a Ray actor, no CPU)."""

    def __init__(self, namespace: str, pipeline_id: str) -> None:
        self.registry = registry_handle(namespace)
        self.pipeline_id = pipeline_id
        self.open: set[str] = set()
        self.created = 0
        self.closed = False
        self.pending: set[asyncio.Future[str]] = set()

    async def create(self, body: dict[str, Any], wait_s: float) -> str:
        """Create a session (retrying ``AtCapacity`` for up to ``wait_s``); its id."""
        if self.closed:
            raise Unavailable(f"pipeline {self.pipeline_id} has finished; it opens no sessions")
        task = asyncio.ensure_future(self._create(body, wait_s))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        # Shielded: if the calling worker is killed, the create still completes and is noted.
        return await asyncio.shield(task)

    async def _create(self, body: dict[str, Any], wait_s: float) -> str:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                info = await self.registry.create_session.remote(body)
                break
            except AtCapacity as exc:
                if self.closed or time.monotonic() >= deadline:
                    raise plain(exc) from None
                await asyncio.sleep(CAPACITY_RETRY_S)
            except ray.exceptions.RayTaskError as exc:
                raise plain(exc) from None
        sid = str(info["id"])
        self.open.add(sid)
        self.created += 1
        return sid

    async def end(self, session_id: str) -> None:
        """End one session now (a worker done with it); unknown or ended ids are fine."""
        deadline = time.monotonic() + CONFLICT_RETRY_S
        while True:
            try:
                await self.registry.end.remote(session_id)
            except (NotFound, SessionEnded):
                pass
            except Conflict as exc:  # another call is changing its state right now
                if time.monotonic() >= deadline:
                    raise plain(exc) from None
                await asyncio.sleep(0.1)
                continue
            self.open.discard(session_id)
            return

    async def opened(self) -> list[str]:
        """Ids of the sessions open right now."""
        return sorted(self.open)

    async def close(self) -> dict[str, Any]:
        """Refuse new sessions, let creates in flight land, end every open session."""
        self.closed = True
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)
        ids = sorted(self.open)
        results = await asyncio.gather(*(self.end(sid) for sid in ids), return_exceptions=True)
        failed = [
            f"{sid}: {type(r).__name__}: {r}"
            for sid, r in zip(ids, results, strict=True)
            if isinstance(r, BaseException)
        ]
        return {"created": self.created, "ended": len(ids) - len(failed), "failed": failed}
