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
  waited for, not sent the prompt a second time. (On a session shared with other
  prompts, another turn ending during that wait is taken for the item's: the price of
  not marking turns with item ids.)

The turn runs in the session worker like any other turn: its messages, events, usage
and workspace are saved as always. A failed attempt goes back to ``pending`` after an
exponential backoff (``queue_retry_base_s`` doubling, at most ``queue_retry_max_s``)
until ``maxRetries`` retries are spent, then the item is ``failed``.

A session the worker opened for an item is *stopped* once the item is done (completed,
or failed for good), before the item says so: its worker and sandbox go back to the
cluster instead of piling up until capacity blocks new items; it stays readable, and a
later message resumes it. A session the item named (a user's) is never stopped.

An item runs as its tenant: a session opened for it is created for the item's tenant, and
a session it names (checked at POST) must still be that tenant's, else the attempt fails.

The worker is woken by every item added through its actor; ``queue_poll_s`` only paces
the look for retries coming due and for items another cluster added.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from ash_ray.actor_api import TurnOutcome
from ash_ray.config import Settings
from ash_ray.errors import AshError, SessionBusy, SessionNotFound, TurnFailed
from ash_ray.models import SessionRecord, utcnow
from ash_ray.store.queue import QueueStore

logger = logging.getLogger(__name__)

# How long a finished item's stop may wait for its session's lock (the turn's last writes).
RELEASE_WAIT_S = 10.0


class Runner(Protocol):
    """How the worker reaches sessions (the registry and session clients in the actor)."""

    async def create_session(self, agent_name: str, tenant: str) -> SessionRecord: ...
    async def get_session(self, session_id: str) -> SessionRecord: ...
    async def ask(
        self, session_id: str, prompt: str, message_id: str | None = None
    ) -> TurnOutcome: ...
    async def stop(self, session_id: str) -> None: ...


def attempt_message_id(item_id: str, base: int) -> str:
    """The message id of an item's attempt on its session (``base``: the session's turns
    before it). A queue worker that asks again after a restart sends the same id, so the
    session worker joins the turn still running (or replays the one it just ended)
    instead of queueing the prompt a second time; a retry after a failed turn has a new
    baseline, so a new id, and runs again."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ash-queue:{item_id}:{base}"))


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
            async with asyncio.timeout(self.settings.queue_poll_s):
                await self._wake.wait()
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
            await self._release(item)
            if not await self.queue.complete(item["id"], self.owner, result):
                logger.warning("queue: item %s finished after its lease was lost", item["id"])
        finally:
            keeper.cancel()

    async def _failed(self, item: dict[str, Any], exc: BaseException) -> None:
        retry = item["retry_count"] + 1
        retry_at: datetime | None = None
        if retry <= item["max_retries"]:
            retry_at = utcnow() + timedelta(seconds=retry_delay_s(self.settings, retry))
        else:
            await self._release(item)  # failed for good: no attempt will use the session
        message = str(exc) or type(exc).__name__
        logger.info("queue: item %s attempt failed (%s); retry at %s", item["id"], message,
                    retry_at)
        await self.queue.fail(item["id"], self.owner, message, retry_at)

    async def _release(self, item: dict[str, Any]) -> None:
        """Stop the session the worker opened for the item (not a user's); never raises.

        Read back from the Store: the session may have been opened by an attempt before a
        restart. A stop can meet the session lock still held by the turn's last writes,
        hence the short retry on busy; a session already cold needs nothing.
        """
        try:
            row = await self.queue.get(item["id"], item["tenant_id"])
            if row is None or not row["own_session"] or row["lease_owner"] != self.owner:
                return
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(RELEASE_WAIT_S), wait=wait_fixed(0.05),
                retry=retry_if_exception_type(SessionBusy), reraise=True,
            ):
                with attempt:
                    await self.runner.stop(row["session_id"])
        except AshError as exc:  # already stopped or ended, or still busy: idle eviction
            logger.info("queue: session of item %s not stopped: %s", item["id"], exc)
        except Exception:
            logger.exception("queue: stopping the session of item %s failed", item["id"])

    async def _keep_lease(self, item_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.queue_lease_s / 3)
            try:
                if not await self.queue.renew(item_id, self.owner, self.settings.queue_lease_s):
                    return
            except Exception:
                logger.exception("queue: lease renewal of %s failed", item_id)

    async def _attempt(self, item: dict[str, Any]) -> str | None:
        session_id, base, tenant = item["session_id"], item["turn_base"], item["tenant_id"]
        if session_id is not None and base is not None:
            # An earlier attempt got as far as its turn (its worker died): the turn may
            # have ended, may still run, or may never have started.
            return await self._resume(item["id"], session_id, int(base), item["prompt"])
        own = session_id is None
        if session_id is None:
            session_id = (await self.runner.create_session(item["agent_name"], tenant)).id
        while True:
            session = await self.runner.get_session(session_id)
            if session.tenant_id != tenant:  # never run a prompt in another tenant's session
                raise SessionNotFound(f"session {session_id} not found", session_id=session_id)
            base = session.num_turns
            await self.queue.set_session(item["id"], self.owner, session_id, base, own)
            try:
                return await self._ask(item["id"], session_id, item["prompt"], base)
            except SessionBusy:  # another turn on a given session: wait for it
                await asyncio.sleep(self.settings.queue_poll_s)

    async def _resume(self, item_id: str, session_id: str, base: int, prompt: str
                      ) -> str | None:
        while True:
            if (await self.runner.get_session(session_id)).num_turns > base:
                return None  # the item's turn ended before the restart: never run it twice
            try:  # the same message id: a turn of it still running is joined, not re-run
                return await self._ask(item_id, session_id, prompt, base)
            except SessionBusy:  # another message's turn
                await asyncio.sleep(self.settings.queue_poll_s)

    async def _ask(self, item_id: str, session_id: str, prompt: str, base: int) -> str | None:
        outcome = await self.runner.ask(session_id, prompt, attempt_message_id(item_id, base))
        if outcome.get("error") or outcome.get("isError"):
            # The failed turn is counted too: the next attempt needs a new baseline.
            turns = (await self.runner.get_session(session_id)).num_turns
            await self.queue.set_session(item_id, self.owner, session_id, turns)
            raise TurnFailed(str(outcome.get("error") or outcome.get("result")),
                             session_id=session_id)
        result = outcome.get("result")
        return None if result is None else str(result)
