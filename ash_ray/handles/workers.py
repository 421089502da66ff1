"""Session workers' typed clients (see :mod:`ash_ray.handles`): as the registry holds
them, and as callers see one session's, re-attached when its worker went away."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import ray
from ray.actor import ActorHandle

from ash_ray.actor_api import (
    Event,
    ExecOutput,
    TurnOutcome,
    WorkerApi,
)
from ash_ray.calls import REATTACH, STALE, Call, _method, _Refresh, unwrap
from ash_ray.files_api import WorkerFilesCalls
from ash_ray.models import (
    AgentRef,
    SessionRecord,
    new_id,
)
from ash_ray.tenants import CredentialRecord
from ash_ray.turn_follow import event as _event
from ash_ray.turn_follow import follow

if TYPE_CHECKING:  # the registry client makes these; nothing here imports it
    from ash_ray.handles.registry import RegistryClient

P = ParamSpec("P")
T = TypeVar("T")

@dataclass
class Turn:
    """A turn started by :meth:`SessionClient.start_turn`: its first batch and the rest."""

    first: list[Event]
    rest: ray.ObjectRefGenerator


# The worker's calls that are not about a session: they never name one.
_UNSCOPED = frozenset({"ready", "bind", "watch", "unbind"})


class WorkerClient(WorkerFilesCalls):
    """A session worker, typed, as the registry holds it (no re-attach: it owns workers).

    ``session_id``: the session the caller means. Every session call then names it, and
    the worker refuses it (:class:`WorkerReleasing`) once it serves another session: a
    released worker goes back to the warm pool, so a handle may outlive its session there.
    """

    def __init__(self, handle: ActorHandle, session_id: str | None = None) -> None:
        self.handle = handle
        self.session_id = session_id

    def scoped(self, session_id: str) -> WorkerClient:
        """This worker, as the caller of ``session_id``'s calls."""
        return WorkerClient(self.handle, session_id)

    def _scope(self, fn: Callable[..., Any]) -> dict[str, Any]:
        if self.session_id is None or fn.__name__ in _UNSCOPED:
            return {}
        return {"for_session": self.session_id}

    def _call(
        self,
        fn: Callable[Concatenate[Any, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Call[T]:
        scope = self._scope(fn)
        return Call(
            lambda: _method(self.handle, fn).remote(*args, **kwargs, **scope), self._refresh()
        )

    def _refresh(self) -> _Refresh | None:
        return None

    def _stream(
        self,
        fn: Callable[Concatenate[Any, P], AsyncIterator[Any]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> ray.ObjectRefGenerator:
        method = _method(self.handle, fn).options(num_returns="streaming")
        gen: ray.ObjectRefGenerator = method.remote(*args, **kwargs, **self._scope(fn))
        return gen

    def ready(self) -> Call[dict[str, Any]]:
        return self._call(WorkerApi.ready)

    def bind(
        self, record: SessionRecord, agent: AgentRef, conversation: list[dict[str, Any]],
        snapshot: bytes | None, credential: CredentialRecord | None = None,
    ) -> Call[str]:
        return self._call(WorkerApi.bind, record, agent, conversation, snapshot, credential)

    def watch(self) -> Call[None]:
        return self._call(WorkerApi.watch)

    def unbind(self, session_id: str) -> Call[bool]:
        return self._call(WorkerApi.unbind, session_id)

    def set_status(
        self, status: str, wait: bool = True, event: dict[str, Any] | None = None
    ) -> Call[SessionRecord]:
        return self._call(WorkerApi.set_status, status, wait, event)

    def update_config(self, config: dict[str, Any]) -> Call[SessionRecord]:
        return self._call(WorkerApi.update_config, config)

    def describe(self) -> Call[dict[str, Any]]:
        return self._call(WorkerApi.describe)

    def snapshot(self, force: bool = False) -> Call[bytes | None]:
        return self._call(WorkerApi.snapshot, force)

    def release(self, status: str) -> Call[SessionRecord]:
        return self._call(WorkerApi.release, status)

    def release_idle(self, status: str) -> Call[SessionRecord | None]:
        """:meth:`release` unless a turn runs or waits there (None: nothing changed)."""
        return self._call(WorkerApi.release_idle, status)

    def send(self, prompt: str, options: dict[str, Any]) -> Call[int]:
        return self._call(WorkerApi.send, prompt, options)

    def ask(self, prompt: str, options: dict[str, Any] | None = None) -> Call[TurnOutcome]:
        return self._call(WorkerApi.ask, prompt, options)

    def interrupt(self) -> Call[bool]:
        return self._call(WorkerApi.interrupt)

    def compact(self) -> Call[dict[str, Any] | None]:
        return self._call(WorkerApi.compact)

    def oldest_seq(self) -> Call[int]:
        return self._call(WorkerApi.oldest_seq)

    def exec(self, command: str, timeout_s: float | None) -> Call[ExecOutput]:
        return self._call(WorkerApi.exec, command, timeout_s)

    def workspace_path(self) -> Call[str]:
        return self._call(WorkerApi.workspace_path)

    async def start_turn(
        self, prompt: Any, options: dict[str, Any], heartbeat_s: float
    ) -> Turn:
        """Start a turn: one streaming call that runs it and pushes its event batches.

        Awaits the first batch (``session_start``), so a refusal such as a busy session
        raises here, before any response is sent. The message gets its id here, once: the
        call re-sent to a new worker finds the message the lost one queued or was running
        (kept in the store) instead of queueing it a second time.
        """
        options = {**options, "message_id": options.get("message_id") or new_id()}
        for attempt in (1, 2):
            rest = self._stream(WorkerApi.run_turn, prompt, options, heartbeat_s)
            try:
                first: list[Event] = await (await rest.__anext__())
                return Turn(first, rest)
            except REATTACH:
                refresh = self._refresh()
                if attempt == 2 or refresh is None:
                    raise
                await refresh.again()
            except ray.exceptions.RayTaskError as exc:
                raise unwrap(exc) from None
        raise AssertionError("unreachable")

    def ask_stream(
        self, prompt: str, options: dict[str, Any] | None = None
    ) -> ray.ObjectRefGenerator:
        """Refs of the turn's events ``(seq, type, data)``, pushed as they happen."""
        return self._stream(WorkerApi.ask_stream, prompt, options)

    async def stream_events(self, after: int, heartbeat_s: float) -> AsyncIterator[list[Event]]:
        """Batches of events with seq > after until ``done`` (``[]`` = heartbeat)."""
        async for ref in self._stream(WorkerApi.stream_events, after, heartbeat_s):
            try:
                batch: list[Event] = await ref
            except ray.exceptions.RayTaskError as exc:
                raise unwrap(exc) from None
            yield batch


class SessionClient(WorkerClient):
    """The worker of one session as its callers see it: a worker that went away is
    re-attached through the registry (which resumes the session) and the call re-sent once.
    """

    def __init__(self, registry: RegistryClient, session: SessionRecord, handle: ActorHandle):
        super().__init__(handle, session.id)
        self.registry = registry
        self.session = session

    @property
    def id(self) -> str:
        return self.session.id

    def _refresh(self) -> _Refresh:
        return self

    async def again(self) -> None:
        attached = await self.registry.attach(self.session.id)
        self.session, self.handle = attached.session, attached.worker

    def again_sync(self) -> None:
        attached = self.registry.attach(self.session.id).get()
        self.session, self.handle = attached.session, attached.worker

    def event_batches(
        self, after: int, heartbeat_s: float, timeout_s: float | None = None
    ) -> Iterator[list[Event]]:
        """Blocking :meth:`stream_events` (for drivers): batches until ``done``."""
        for ref in self._stream(WorkerApi.stream_events, after, heartbeat_s):
            try:
                batch: list[Event] = ray.get(ref, timeout=timeout_s)
            except ray.exceptions.RayTaskError as exc:
                raise unwrap(exc) from None
            yield batch

    def ask_events(
        self, prompt: str, options: dict[str, Any], timeout_s: float | None = None
    ) -> Iterator[Event]:
        """Blocking: the turn's events as they happen (for drivers); ends after ``done``.

        A worker found gone before the first event is re-attached and the turn sent again;
        one lost during the turn is followed to the worker the turn continues on
        (:mod:`ash_ray.turn_follow`), or the stream ends with the turn's ``error``.
        """
        for attempt in (1, 2):
            refs = self.ask_stream(prompt, options)
            try:
                first = _event(ray.get(next(refs), timeout=timeout_s))
                break
            except REATTACH:
                if attempt == 2:
                    raise
                self.again_sync()
            except ray.exceptions.RayTaskError as exc:
                raise unwrap(exc) from None
        yield first
        last = first
        try:
            for ref in refs:
                last = _event(ray.get(ref, timeout=timeout_s))
                yield last
        except STALE:
            if last[1] != "done":
                yield from follow(self, last[0], timeout_s)
        except ray.exceptions.RayTaskError as exc:
            raise unwrap(exc) from None
