"""The jobs actor, typed, as the ingress and the CLI call it; and its creation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import ray
from ray.actor import ActorHandle

from ash_ray.calls import Call, _method
from ash_ray.config import Settings
from ash_ray.errors import Unavailable
from ash_ray.jobs.actor import JOBS_NAME, Jobs
from ash_ray.models import new_id
from ash_ray.store.usage import UsageFilter

P = ParamSpec("P")
T = TypeVar("T")


def ensure_jobs(settings: Settings) -> JobsClient:
    """The detached jobs actor, created on the head node if it is not running yet.

    Not at server start: the ingress creates it on the first queue, usage or evals call,
    and the registry when the Store holds unfinished work (:mod:`ash_ray.registry.jobs_watch`).

    The owner id is chosen here, once: Ray restarts the actor with the same arguments,
    so a restarted jobs actor knows the queue leases of its previous life.
    """
    jobs_cls: Any = ray.remote(Jobs)
    handle = jobs_cls.options(
        name=JOBS_NAME,
        namespace=settings.namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        max_concurrency=1000,
        num_cpus=0,
        resources={"node:__internal_head__": 0.001},
    ).remote(settings, f"jobs-{new_id()}")
    return JobsClient(settings.namespace, handle)


class JobsClient:
    """Picklable; resolves the named actor on first use, and creates it then when given
    the settings (the ingress) and it is not running yet."""

    def __init__(
        self, namespace: str, handle: ActorHandle | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.namespace = namespace
        self._handle = handle
        self.settings = settings

    @property
    def handle(self) -> ActorHandle:
        if self._handle is None:
            try:
                self._handle = ray.get_actor(JOBS_NAME, namespace=self.namespace)
            except ValueError:
                if self.settings is None:
                    raise Unavailable(
                        f"no ash-ray jobs actor ({JOBS_NAME!r}) in namespace {self.namespace!r}"
                    ) from None
                self._handle = ensure_jobs(self.settings).handle
        return self._handle

    def _call(
        self, fn: Callable[Concatenate[Any, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> Call[T]:
        refresh = self if self.settings is not None else None
        return Call(lambda: _method(self.handle, fn).remote(*args, **kwargs), refresh)

    async def again(self) -> None:
        """The actor went away for good: find or create it again (the call is re-sent)."""
        self._handle = None
        await asyncio.to_thread(lambda: self.handle)

    def again_sync(self) -> None:
        self._handle = None
        _ = self.handle

    def ping(self) -> Call[dict[str, Any]]:
        return self._call(Jobs.ping)

    def queue_add(self, body: dict[str, Any], tenant: str = "default") -> Call[dict[str, Any]]:
        return self._call(Jobs.queue_add, body, tenant)

    def queue_get(self, item_id: str, tenant: str = "default") -> Call[dict[str, Any] | None]:
        return self._call(Jobs.queue_get, item_id, tenant)

    def queue_list(
        self, status: str | None, limit: int, tenant: str = "default"
    ) -> Call[list[dict[str, Any]]]:
        return self._call(Jobs.queue_list, status, limit, tenant)

    def queue_stats(self, tenant: str = "default") -> Call[dict[str, int]]:
        return self._call(Jobs.queue_stats, tenant)

    def queue_cancel(self, item_id: str, tenant: str = "default") -> Call[dict[str, Any] | None]:
        return self._call(Jobs.queue_cancel, item_id, tenant)

    def usage_events(self, flt: UsageFilter, limit: int) -> Call[list[dict[str, Any]]]:
        return self._call(Jobs.usage_events, flt, limit)

    def usage_stats(self, flt: UsageFilter) -> Call[dict[str, float]]:
        return self._call(Jobs.usage_stats, flt)

    def analytics(
        self, after: datetime | None, before: datetime | None, tenant: str = "default"
    ) -> Call[dict[str, Any]]:
        return self._call(Jobs.analytics, after, before, tenant)

    def evals(self, method: str, *args: Any, tenant: str) -> Call[Any]:
        """An eval store method by name (see ``EVAL_METHODS`` of the actor), of ``tenant``."""
        return self._call(Jobs.evals_call, method, *args, tenant=tenant)
