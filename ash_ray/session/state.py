"""A worker's bound session, and the one guard every session call waits behind."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from ash_ray.errors import Conflict, Unavailable, WorkerReleasing
from ash_ray.models import SessionRecord
from ash_ray.sandbox import Sandbox
from ash_ray.session.events import EventLog

if TYPE_CHECKING:
    from ash_ray.agent import AgentLoop, AgentSpec

# A call may reach a worker while the registry's bind of it still runs (the registry
# answers create and resume without waiting for it): session calls wait this long.
BIND_WAIT_S = 30.0
# How long a call for a session this worker served before waits for that session's bind
# to start here again before it is refused as stale.
REBIND_WAIT_S = 2.0

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
    """Holds every session call until the registry's bind has run (or failed).

    A worker serves one session at a time, and may serve another after it (the registry
    gives a released worker back to the warm pool): a call that names its session
    (``for_session``) is refused with :class:`WorkerReleasing` unless that session is the
    bound one, so a stale handle re-attaches instead of reaching the next session.
    """

    def __init__(self, wait_s: float = BIND_WAIT_S) -> None:
        self.wait_s = wait_s
        self._settled = asyncio.Event()
        self.bound: Bound | None = None
        self.error: str | None = None
        self.served: set[str] = set()  # sessions this worker served before the bound one
        self.binding: str | None = None  # the session whose bind has started
        self._bind_started = asyncio.Event()
        # Set when the bound session leaves this worker (its death watch ends then).
        self.unbound = asyncio.Event()

    def settle(self, bound: Bound | None = None, error: str | None = None) -> None:
        self.bound, self.error = bound or self.bound, error
        self._settled.set()

    def expect(self, session_id: str) -> None:
        """A bind of ``session_id`` has started (it may have left this worker before)."""
        self.binding = session_id
        self.served.discard(session_id)
        self._bind_started.set()

    def reset(self) -> None:
        """Forget the bound session: the worker waits for its next bind."""
        if self.bound is not None:
            self.served.add(self.bound.record.id)
        self.unbound.set()
        self._settled, self.unbound = asyncio.Event(), asyncio.Event()
        self._bind_started = asyncio.Event()
        self.bound, self.error, self.binding = None, None, None

    def check(self, expected: str | None) -> None:
        """Refuse a call for ``expected`` when another session is bound or it was served
        here before (a bind still under way passes)."""
        if expected is None:
            return
        bound = self.bound
        current = bound.record.id if bound is not None else self.binding
        stale = expected in self.served if current is None else current != expected
        if stale:
            raise _moved(expected)

    async def session(self, expected: str | None = None) -> Bound:
        """The bound session; waits for the bind (up to ``wait_s``). ``expected``: the
        session the caller means; another one (or one served before) is refused."""
        if expected in self.served and self.binding is None:
            # Its bind may come back here, and Ray does not order the registry's bind
            # before this caller's call: wait a moment for a bind to start.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REBIND_WAIT_S):
                    await self._bind_started.wait()
        self.check(expected)
        if not self._settled.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.wait_s):
                    await self._settled.wait()
        if self.error is not None:
            raise Unavailable(f"this session's worker failed to start: {self.error}")
        if self.bound is None:
            raise Conflict("this session worker is not bound to a session")
        self.check(expected)
        return self.bound


def _moved(session_id: str) -> WorkerReleasing:
    return WorkerReleasing(
        f"session {session_id} is no longer on this worker; attach again",
        session_id=session_id,
    )


class HasGuard:
    guard: BindGuard


def _guarded(call: Any, method: Callable[..., Any]) -> Any:
    """Mark ``call`` and give it ``method``'s signature without the session argument and
    with ``for_session``: Ray checks a call's arguments against the signature it reads
    (after ``inspect.unwrap``, hence no ``__wrapped__``)."""
    params = list(inspect.signature(method).parameters.values())
    scope = inspect.Parameter("for_session", inspect.Parameter.KEYWORD_ONLY, default=None)
    del call.__wrapped__
    call.__signature__ = inspect.Signature([params[0], *params[2:], scope])
    call.needs_bind = True
    return call


def bound(
    method: Callable[Concatenate[W, Bound, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[W, P], Coroutine[Any, Any, T]]:
    """A worker method that gets the bound session (waiting for the bind) as an argument;
    called with ``for_session=<id>``, only while that session is the bound one."""

    @functools.wraps(method)
    async def call(self: W, *args: P.args, **kwargs: P.kwargs) -> T:
        expected = cast("str | None", kwargs.pop("for_session", None))
        return await method(self, await self.guard.session(expected), *args, **kwargs)

    return _guarded(call, method)


def bound_stream(
    method: Callable[Concatenate[W, Bound, P], AsyncIterator[T]],
) -> Callable[Concatenate[W, P], AsyncIterator[T]]:
    """:func:`bound` for streaming (async generator) methods."""

    @functools.wraps(method)
    async def call(self: W, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        expected = cast("str | None", kwargs.pop("for_session", None))
        async for item in method(self, await self.guard.session(expected), *args, **kwargs):
            yield item

    return _guarded(call, method)
