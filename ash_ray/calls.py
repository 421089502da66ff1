"""One actor call as its callers see it: awaitable, blocking or a raw ref, with our errors.

:class:`Call` sends an actor method call when it is awaited (async code) or got
(``.get``, from a Ray driver or task); a worker found gone is re-attached once through its
``refresh``; an error raised inside the actor comes back as our own (:func:`unwrap`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Generic, Protocol, TypeVar

import ray
from ray.actor import ActorHandle

from ash_ray.errors import AshError, WorkerReleasing

T = TypeVar("T")

# The worker process is gone (or going): a fresh worker is one attach away.
STALE = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
# ... or it is releasing its session (a pause or eviction under way): attach again too.
REATTACH = (*STALE, WorkerReleasing)



def unwrap(exc: BaseException) -> BaseException:
    """Our error inside a ``RayTaskError`` (however deeply wrapped), else ``exc`` itself.

    ``RayTaskError`` is already an instance of the cause's class, so ``except
    SessionNotFound`` works either way; the plain error keeps its message and fields.
    """
    inner = exc
    while isinstance(inner, ray.exceptions.RayTaskError):
        cause = getattr(inner, "cause", None)
        if not isinstance(cause, BaseException):
            break
        inner = cause
    return inner if isinstance(inner, AshError) else exc


class _Refresh(Protocol):
    async def again(self) -> None: ...
    def again_sync(self) -> None: ...


class Call(Generic[T]):
    """One actor call: ``await`` it, ``.get()`` it (blocking) or take its ``.ref()``.

    It is sent when awaited or got; a stale worker is re-attached and the call sent once
    more when ``refresh`` is given.
    """

    def __init__(self, submit: Callable[[], Any], refresh: _Refresh | None = None) -> None:
        self._submit = submit
        self._refresh = refresh

    def ref(self) -> ray.ObjectRef:
        """The raw ObjectRef (no retry, Ray's wrapped errors): for ``ray.get``/``ray.wait``."""
        ref: ray.ObjectRef = self._submit()
        return ref

    def __await__(self) -> Generator[Any, None, T]:
        return self._run().__await__()

    async def _run(self) -> T:
        try:
            try:
                result: T = await self._submit()
                return result
            except REATTACH:
                if self._refresh is None:
                    raise
                await self._refresh.again()
                result = await self._submit()
                return result
        except ray.exceptions.RayTaskError as exc:
            raise unwrap(exc) from None

    def get(self, timeout_s: float | None = None) -> T:
        try:
            try:
                result: T = ray.get(self._submit(), timeout=timeout_s)
                return result
            except REATTACH:
                if self._refresh is None:
                    raise
                self._refresh.again_sync()
                result = ray.get(self._submit(), timeout=timeout_s)
                return result
        except ray.exceptions.RayTaskError as exc:
            raise unwrap(exc) from None


def _method(handle: ActorHandle, fn: Callable[..., Any]) -> Any:
    return getattr(handle, fn.__name__)
