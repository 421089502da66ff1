"""The queue worker: claims items from the Store and runs each as a session turn.

Plain asyncio; the jobs actor (:mod:`ash_ray.jobs.actor`) hosts it. At most
``queue_concurrency`` items run at once. Each claimed item holds a lease in the Store
(:mod:`ash_ray.store.queue`), renewed while its turn runs; a worker that dies leaves a
lease that expires, and whoever claims the item next carries on where it stopped:

- the item's session is recorded (with its turn count before the item's turn) before
  the turn is sent, so a new attempt reuses that session instead of opening another;
- when that session already counts more turns, the item's turn ran to its end: the
  item completes without running the prompt again;
- a session busy with a turn (the item's own, still running after a restart) is
  waited for, not sent the prompt a second time.

The turn runs in the session worker like any other turn: its messages, events, usage
and workspace are saved as always. A failed attempt goes back to ``pending`` after an
exponential backoff (``queue_retry_base_s`` doubling, at most ``queue_retry_max_s``)
until ``maxRetries`` retries are spent, then the item is ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import datetime, timedelta
from typing import Any, Protocol

from ash_ray.actor_api import TurnOutcome
from ash_ray.config import Settings
from ash_ray.errors import SessionBusy, TurnFailed
from ash_ray.models import SessionRecord, utcnow
from ash_ray.store.queue import QueueStore

logger = logging.getLogger(__name__)


class Runner(Protocol):
    """How the worker reaches sessions (the registry and session clients in the actor)."""

    async def create_session(self, agent_name: str) -> SessionRecord: ...
    async def get_session(self, session_id: str) -> SessionRecord: ...
    async def ask(self, session_id: str, prompt: str) -> TurnOutcome: ...


def retry_delay_s(settings: Settings, retry: int) -> float:
    """Delay before retry number ``retry`` (1, 2, ...): base x 2^(retry-1), capped."""
    return float(min(settings.queue_retry_max_s, settings.queue_retry_base_s * 2 ** (retry - 1)))


class QueueWorker:
    def __init__(self, settings: Settings, queue: QueueStore, runner: Runner, owner: str) -> None:
        self.settings = settings
        self.queue = queue
        self.runner = runner
        self.owner = owner
        self.running: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for items now (a new item was added here)."""
        self._wake.set()

    async def run_forever(self) -> None:
        limit = self.settings.queue_concurrency
        if limit == 0:
            return
        # Only one jobs actor per cluster has this owner id: leases of its past life are void.
        reclaimed = await self.queue.expire_leases(self.owner)
        if reclaimed:
            logger.info("queue: %d item(s) of a past life are claimable again", reclaimed)
        slots = asyncio.Semaphore(limit)
        while True:
            await slots.acquire()
            try:
                item = await self.queue.claim(self.owner, self.settings.queue_lease_s)
            except Exception:
                logger.exception("queue: claim failed; retrying")
                item = None
            if item is None:
                slots.release()
                await self._idle()
                continue
            task = asyncio.create_task(self._run(item))
            self.running[item["id"]] = task
            task.add_done_callback(functools.partial(self._done, item["id"], slots))

    def _done(self, item_id: str, slots: asyncio.Semaphore, _task: object) -> None:
        self.running.pop(item_id, None)
        slots.release()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.settings.queue_poll_s)
        self._wake.clear()

    async def _run(self, item: dict[str, Any]) -> None:
        keeper = asyncio.create_task(self._keep_lease(item["id"]))
        try:
            result = await self._attempt(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(item, exc)
        else:
            if not await self.queue.complete(item["id"], self.owner, result):
                logger.warning("queue: item %s finished after its lease was lost", item["id"])
        finally:
            keeper.cancel()

    async def _failed(self, item: dict[str, Any], exc: BaseException) -> None:
        retry = item["retry_count"] + 1
        retry_at: datetime | None = None
        if retry <= item["max_retries"]:
            retry_at = utcnow() + timedelta(seconds=retry_delay_s(self.settings, retry))
        message = str(exc) or type(exc).__name__
        logger.info("queue: item %s attempt failed (%s); retry at %s", item["id"], message,
                    retry_at)
        await self.queue.fail(item["id"], self.owner, message, retry_at)

    async def _keep_lease(self, item_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.queue_lease_s / 3)
            try:
                if not await self.queue.renew(item_id, self.owner, self.settings.queue_lease_s):
                    return
            except Exception:
                logger.exception("queue: lease renewal of %s failed", item_id)

    async def _attempt(self, item: dict[str, Any]) -> str | None:
        session_id, base = item["session_id"], item["turn_base"]
        if session_id is None:
            record = await self.runner.create_session(item["agent_name"])
            session_id, base = record.id, record.num_turns
            await self.queue.set_session(item["id"], self.owner, session_id, base)
        elif base is None:
            base = (await self.runner.get_session(session_id)).num_turns
            await self.queue.set_session(item["id"], self.owner, session_id, base)
        return await self._turn(item["id"], session_id, int(base), item["prompt"])

    async def _turn(self, item_id: str, session_id: str, base: int, prompt: str) -> str | None:
        busy = False
        while True:
            record = await self.runner.get_session(session_id)
            if record.num_turns > base:
                return None  # the item's turn ended before a restart; never run it twice
            if busy:
                # Most likely the item's own turn, still running after a restart: wait for
                # it to be counted rather than queue the prompt behind it.
                await asyncio.sleep(self.settings.queue_poll_s)
                busy = False
                continue
            try:
                outcome = await self.runner.ask(session_id, prompt)
            except SessionBusy:
                busy = True
                continue
            if outcome.get("error") or outcome.get("isError"):
                # The failed turn is counted too: the next attempt needs a new baseline.
                turns = (await self.runner.get_session(session_id)).num_turns
                await self.queue.set_session(item_id, self.owner, session_id, turns)
                raise TurnFailed(str(outcome.get("error") or outcome.get("result")),
                                 session_id=session_id)
            result = outcome.get("result")
            return None if result is None else str(result)
