"""A worker's bound session, and the one guard every session call waits behind."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ash_ray.errors import Conflict, Unavailable
from ash_ray.models import SessionRecord
from ash_ray.sandbox import Sandbox
from ash_ray.session.events import EventLog

if TYPE_CHECKING:
    from ash_ray.agent import AgentLoop, AgentSpec

# A call may reach a worker while the registry's bind of it still runs (the registry
# answers create and resume without waiting for it): session calls wait this long.
BIND_WAIT_S = 30.0

P = ParamSpec("P")
T = TypeVar("T")
W = TypeVar("W", bound="HasGuard")


@dataclass
class Bound:
    """What a worker holds for its session once bound."""

    record: SessionRecord
    log: EventLog
    spec: AgentSpec
    sandbox: Sandbox
    loop: AgentLoop
    conversation: list[dict[str, Any]] = field(default_factory=list)
    # The workspace's signature at the last snapshot (None: never taken).
    last_signature: tuple | None = None


class BindGuard:
    """Holds every session call until the registry's bind has run (or failed)."""

    def __init__(self, wait_s: float = BIND_WAIT_S) -> None:
        self.wait_s = wait_s
        self._settled = asyncio.Event()
        self.bound: Bound | None = None
        self.error: str | None = None

    def settle(self, bound: Bound | None = None, error: str | None = None) -> None:
        self.bound, self.error = bound or self.bound, error
        self._settled.set()

    async def session(self) -> Bound:
        """The bound session; waits for the bind (up to ``wait_s``)."""
        if not self._settled.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.wait_s):
                    await self._settled.wait()
        if self.error is not None:
            raise Unavailable(f"this session's worker failed to start: {self.error}")
        if self.bound is None:
            raise Conflict("this session worker is not bound to a session")
        return self.bound


class HasGuard:
    guard: BindGuard


def _guarded(call: Any, method: Callable[..., Any]) -> Any:
    """Mark ``call`` and give it ``method``'s signature without the session argument:
    Ray checks a call's arguments against the signature it reads (after
    ``inspect.unwrap``, hence no ``__wrapped__``)."""
    params = list(inspect.signature(method).parameters.values())
    del call.__wrapped__
    call.__signature__ = inspect.Signature([params[0], *params[2:]])
    call.needs_bind = True
    return call


def bound(
    method: Callable[Concatenate[W, Bound, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[W, P], Coroutine[Any, Any, T]]:
    """A worker method that gets the bound session (waiting for the bind) as an argument."""

    @functools.wraps(method)
    async def call(self: W, *args: P.args, **kwargs: P.kwargs) -> T:
        return await method(self, await self.guard.session(), *args, **kwargs)

    return _guarded(call, method)


def bound_stream(
    method: Callable[Concatenate[W, Bound, P], AsyncIterator[T]],
) -> Callable[Concatenate[W, P], AsyncIterator[T]]:
    """:func:`bound` for streaming (async generator) methods."""

    @functools.wraps(method)
    async def call(self: W, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        async for item in method(self, await self.guard.session(), *args, **kwargs):
            yield item

    return _guarded(call, method)
