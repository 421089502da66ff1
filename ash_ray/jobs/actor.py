"""The jobs actor: a detached named actor for the queue, usage figures and evals.

A sibling of the registry with its own Store connection: it runs the queue worker (a plain
asyncio service, :mod:`ash_ray.jobs.queue_worker`) and answers the ingress's queue,
usage and analytics calls. It reaches sessions only through the registry and session clients, as any
driver does, so every turn it runs is saved like any other.

Its ``owner`` id (fixed when the actor is first created, the same after a Ray restart of
the actor) marks the Store leases it holds: a restarted jobs actor takes back its
items at once, another cluster's jobs actor only once their leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import datetime
from typing import Any, cast

import ray

from ash_ray.actor_api import TurnOutcome
from ash_ray.config import Settings
from ash_ray.handles import RegistryClient
from ash_ray.jobs.evals import EvalRunner
from ash_ray.jobs.queue_worker import QueueWorker
from ash_ray.models import AgentVersionRecord, SessionRecord
from ash_ray.store import open_store
from ash_ray.store._sql import Db
from ash_ray.store.evals import EvalStore
from ash_ray.store.queue import QueueStore
from ash_ray.store.usage import UsageFilter, UsageQueries

logger = logging.getLogger(__name__)

JOBS_NAME = "ash-jobs"


class SessionRunner:
    """The queue worker's and eval runner's way to sessions: the registry's clients."""

    def __init__(self, registry: RegistryClient) -> None:
        self.registry = registry

    async def create_session(self, agent_name: str, tenant: str, **config: Any) -> SessionRecord:
        """A new session of the tenant's agent (the tenant's, like any it creates)."""
        return await self.registry.create_session({"agent": agent_name, **config}, tenant)

    async def version_prompt(self, agent_name: str, number: int, tenant: str) -> str | None:
        """The system prompt of one of Ash's agent versions (NotFound when it is gone)."""
        found = await self.registry.agent_op(
            "versions.get", agent_name, str(number), tenant=tenant
        )
        return cast(AgentVersionRecord, found).system_prompt

    async def get_session(self, session_id: str) -> SessionRecord:
        return await self.registry.get_session(session_id)

    async def ask(
        self, session_id: str, prompt: str, message_id: str | None = None
    ) -> TurnOutcome:
        client = await self.registry.session(session_id)
        return await client.ask(prompt, {"message_id": message_id} if message_id else {})

    async def pause(self, session_id: str) -> None:
        await self.registry.pause(session_id)

    async def end(self, session_id: str) -> None:
        await self.registry.end(session_id)

    async def stop(self, session_id: str) -> None:
        await self.registry.stop(session_id)


class Jobs:
    """See the module docstring. Every method is async and waits for the start."""

    def __init__(self, settings: Settings, owner: str) -> None:
        self.settings = settings
        self.owner = owner
        self._init: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._kick()

    @staticmethod
    def _kick() -> None:
        """Start at once, also when Ray restarts this actor and nobody calls it yet: the
        queue worker must not wait for the next HTTP request to take its items back."""
        if not ray.is_initialized():  # not in a Ray actor (unit tests): asking would start Ray
            return
        with contextlib.suppress(Exception):  # a Ray driver, not an actor
            ray.get_runtime_context().current_actor.ping.remote()

    async def _ready(self) -> None:
        if self._init is None:
            self._init = asyncio.create_task(self._start())
        await asyncio.shield(self._init)

    async def _start(self) -> None:
        store = open_store(self.settings)
        await store.open()
        db = Db(store)
        self.store = store
        self.queue = QueueStore(db)
        self.usage = UsageQueries(db)
        self.evals = EvalStore(db)
        runner = SessionRunner(RegistryClient(self.settings.namespace))
        self.worker = QueueWorker(self.settings, self.queue, runner, self.owner)
        self.eval_runner = EvalRunner(self.settings, self.evals, runner, self.owner)
        for job in (self.worker.run_forever(), self.eval_runner.run_forever()):
            task = asyncio.create_task(job)
            self._tasks.add(task)
            task.add_done_callback(_log_end)
        logger.info("jobs ready: owner=%s store=%s", self.owner, store.kind)

    async def ping(self) -> dict[str, Any]:
        await self._ready()
        return {"ok": True, "owner": self.owner, "running": sorted(self.worker.running),
                "pid_token": f"{os.getpid()}-{id(self)}"}

    # ------------------------------------------------------------------ queue

    async def queue_add(self, body: dict[str, Any], tenant: str = "default") -> dict[str, Any]:
        await self._ready()
        item = await self.queue.add(**body, tenant=tenant)
        self.worker.wake()
        return item

    async def queue_get(self, item_id: str, tenant: str = "default") -> dict[str, Any] | None:
        await self._ready()
        return await self.queue.get(item_id, tenant)

    async def queue_list(
        self, status: str | None, limit: int, tenant: str = "default"
    ) -> list[dict[str, Any]]:
        await self._ready()
        return await self.queue.list(status=status, limit=limit, tenant=tenant)

    async def queue_stats(self, tenant: str = "default") -> dict[str, int]:
        await self._ready()
        return await self.queue.stats(tenant)

    async def queue_cancel(self, item_id: str, tenant: str = "default") -> dict[str, Any] | None:
        await self._ready()
        return await self.queue.cancel(item_id, tenant)

    # ------------------------------------------------------------------ usage

    async def usage_events(self, flt: UsageFilter, limit: int) -> list[dict[str, Any]]:
        await self._ready()
        return await self.usage.events(flt, limit)

    async def usage_stats(self, flt: UsageFilter) -> dict[str, float]:
        await self._ready()
        return await self.usage.stats(flt)

    async def analytics(
        self, after: datetime | None, before: datetime | None, tenant: str = "default"
    ) -> dict[str, Any]:
        await self._ready()
        return await self.usage.analytics(after, before, tenant)

    # ------------------------------------------------------------------ evals

    async def evals_call(self, method: str, *args: Any, tenant: str) -> Any:
        """One :class:`EvalStore` method of the API (the eval routes are many, all thin),
        always of one tenant."""
        await self._ready()
        if method not in EVAL_METHODS:
            raise AttributeError(f"not an eval API method: {method}")
        result = await getattr(self.evals, method)(*args, tenant=tenant)
        if method == "create_run":
            self.eval_runner.wake()
        return result


EVAL_METHODS = frozenset({
    "create_case", "import_cases", "get_case", "list_cases", "update_case", "delete_case",
    "create_run", "get_run", "list_runs", "run_results", "compare", "score", "patch_result",
})


def _log_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("jobs: a background service stopped", exc_info=task.exception())
