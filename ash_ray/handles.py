"""Typed clients of ash-ray's two actors: the only code that names their methods.

:class:`RegistryClient` and :class:`SessionClient` wrap the Ray actor handles. Each method
is declared once in :mod:`ash_ray.actor_api` (:class:`RegistryApi` / :class:`WorkerApi`,
which the actors satisfy, checked by mypy) and called through it, so a misspelled method
or a wrong argument is a type error, not an ``AttributeError`` in production. Here, and
only here:

- the registry is resolved by name (:func:`registry_handle`);
- an error raised in an actor comes back as our own exception (:func:`unwrap`);
- a session worker that went away (evicted, swept, node lost) is re-attached through the
  registry and the call is sent once more, whatever the call.

A reply is a :class:`Call`: ``await`` it in async code (the ingress, the registry), or
``.get(timeout_s)`` it from a Ray driver or task (pipelines), or take its ``.ref()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import ray
from ray.actor import ActorHandle

from ash_ray.actor_api import (
    Attached,
    DrainResult,
    Event,
    ExecOutput,
    RegistryApi,
    TurnOutcome,
    WorkerApi,
)
from ash_ray.calls import STALE, Call, _method, _Refresh, unwrap
from ash_ray.errors import Unavailable
from ash_ray.files_api import RegistryFilesCalls, WorkerFilesCalls
from ash_ray.models import (
    DEFAULT_TENANT,
    AgentRecord,
    AgentRef,
    EventRecord,
    MessageRecord,
    QueuedTurn,
    SessionRecord,
    WriteBatch,
    new_id,
)
from ash_ray.names import DEFAULT_NAMESPACE, REGISTRY_NAME
from ash_ray.tenants import ApiKeyRecord, CredentialRecord
from ash_ray.turn_follow import event as _event
from ash_ray.turn_follow import follow

__all__ = [
    "Attached", "Call", "DrainResult", "Event", "ExecOutput", "RegistryApi", "RegistryClient",
    "SessionClient", "Turn", "TurnOutcome", "WorkerApi", "WorkerClient", "registry_handle",
    "unwrap",
]

P = ParamSpec("P")
T = TypeVar("T")

# ---------------------------------------------------------------------- registry


def registry_handle(namespace: str = DEFAULT_NAMESPACE) -> ActorHandle:
    """The running registry actor; :class:`Unavailable` when there is none."""
    try:
        return ray.get_actor(REGISTRY_NAME, namespace=namespace)
    except ValueError:
        raise Unavailable(
            f"no ash-ray registry ({REGISTRY_NAME!r}) in Ray namespace {namespace!r}: "
            "start ash-ray on this cluster (`ash-ray start` or `ash-ray serve`) "
            "or pass the namespace it runs in"
        ) from None


class RegistryClient(RegistryFilesCalls):
    """The registry actor, typed. Method names are the actor's own. Picklable.

    The handle is resolved by name on first use: the registry is detached and restartable
    (``max_restarts=-1``), so one handle stays good for the life of the cluster.
    """

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, handle: ActorHandle | None = None):
        self.namespace = namespace
        self._handle = handle

    @property
    def handle(self) -> ActorHandle:
        if self._handle is None:
            self._handle = registry_handle(self.namespace)
        return self._handle

    def _call(
        self,
        fn: Callable[Concatenate[Any, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Call[T]:
        return Call(lambda: _method(self.handle, fn).remote(*args, **kwargs))

    # agents
    # agents: each call names the tenant (agent names are unique per tenant)
    def deploy_agent(
        self, name: str, path: str, tenant: str = DEFAULT_TENANT
    ) -> Call[AgentRecord]:
        return self._call(RegistryApi.deploy_agent, name, path, tenant)

    def get_agent(self, name: str, tenant: str = DEFAULT_TENANT) -> Call[AgentRecord]:
        return self._call(RegistryApi.get_agent, name, tenant)

    def list_agents(self, tenant: str = DEFAULT_TENANT) -> Call[list[AgentRecord]]:
        return self._call(RegistryApi.list_agents, tenant)

    def agent_op(self, op: str, *args: Any, **kwargs: Any) -> Call[Any]:
        """An agent service operation by name (``AGENT_OPS``), e.g. ``agents.list_files``."""
        return self._call(RegistryApi.agent_op, op, *args, **kwargs)

    def delete_agent(self, name: str, tenant: str = DEFAULT_TENANT) -> Call[AgentRecord]:
        return self._call(RegistryApi.delete_agent, name, tenant)

    # sessions
    def create_session(
        self, body: dict[str, Any], tenant: str = DEFAULT_TENANT
    ) -> Call[SessionRecord]:
        return self._call(RegistryApi.create_session, body, tenant)

    def get_session(self, session_id: str) -> Call[SessionRecord]:
        return self._call(RegistryApi.get_session, session_id)

    def list_sessions(
        self, agent: str | None, status: str | None, limit: int, offset: int,
        tenant: str | None = DEFAULT_TENANT,
    ) -> Call[list[SessionRecord]]:
        return self._call(RegistryApi.list_sessions, agent, status, limit, offset, tenant)

    # api keys (hashes) and credentials (sealed), always of one tenant
    def add_api_key(self, rec: ApiKeyRecord) -> Call[None]:
        return self._call(RegistryApi.add_api_key, rec)

    def find_api_key(self, key_hash: str) -> Call[ApiKeyRecord | None]:
        return self._call(RegistryApi.find_api_key, key_hash)

    def list_api_keys(self, tenant: str) -> Call[list[ApiKeyRecord]]:
        return self._call(RegistryApi.list_api_keys, tenant)

    def delete_api_key(self, key_id: str, tenant: str) -> Call[bool]:
        return self._call(RegistryApi.delete_api_key, key_id, tenant)

    def add_credential(self, rec: CredentialRecord) -> Call[None]:
        return self._call(RegistryApi.add_credential, rec)

    def list_credentials(self, tenant: str) -> Call[list[CredentialRecord]]:
        return self._call(RegistryApi.list_credentials, tenant)

    def delete_credential(self, credential_id: str, tenant: str) -> Call[bool]:
        return self._call(RegistryApi.delete_credential, credential_id, tenant)

    def attach(self, session_id: str) -> Call[Attached]:
        return self._call(RegistryApi.attach, session_id)

    def live_handle(self, session_id: str) -> Call[ActorHandle | None]:
        return self._call(RegistryApi.live_handle, session_id)

    def resume(self, session_id: str, auto: bool = False) -> Call[SessionRecord]:
        return self._call(RegistryApi.resume, session_id, auto)

    def pause(self, session_id: str) -> Call[SessionRecord]:
        return self._call(RegistryApi.pause, session_id)

    def stop(self, session_id: str) -> Call[SessionRecord]:
        return self._call(RegistryApi.stop, session_id)

    def end(self, session_id: str) -> Call[SessionRecord]:
        return self._call(RegistryApi.end, session_id)

    def fork(self, session_id: str) -> Call[SessionRecord]:
        return self._call(RegistryApi.fork, session_id)

    def patch_config(self, session_id: str, patch: dict[str, Any]) -> Call[SessionRecord]:
        return self._call(RegistryApi.patch_config, session_id, patch)

    # from workers and ingresses
    def record(self, batch: WriteBatch, stats: dict[str, Any]) -> Call[None]:
        return self._call(RegistryApi.record, batch, stats)

    def put_snapshot(self, session_id: str, data: bytes) -> Call[None]:
        return self._call(RegistryApi.put_snapshot, session_id, data)

    def put_turn(self, item: QueuedTurn) -> Call[None]:
        return self._call(RegistryApi.put_turn, item)

    def delete_turn(self, session_id: str, message_id: str) -> Call[None]:
        return self._call(RegistryApi.delete_turn, session_id, message_id)

    def list_turns(self, session_id: str) -> Call[list[QueuedTurn]]:
        return self._call(RegistryApi.list_turns, session_id)

    def worker_failed(self, session_id: str, seen_seq: int) -> Call[list[Event]]:
        return self._call(RegistryApi.worker_failed, session_id, seen_seq)

    # reads and operations
    def list_messages(self, session_id: str, after: int, limit: int) -> Call[list[MessageRecord]]:
        return self._call(RegistryApi.list_messages, session_id, after, limit)

    def list_events(
        self, session_id: str, after: int, limit: int | None
    ) -> Call[list[EventRecord]]:
        return self._call(RegistryApi.list_events, session_id, after, limit)

    def ping(self) -> Call[dict[str, Any]]:
        return self._call(RegistryApi.ping)

    def health(self) -> Call[dict[str, Any]]:
        return self._call(RegistryApi.health)

    def metrics_text(self) -> Call[bytes]:
        return self._call(RegistryApi.metrics_text)

    def describe_all(self) -> Call[list[dict[str, Any]]]:
        return self._call(RegistryApi.describe_all)

    def sweep(self, idle_timeout_s: float | None = None) -> Call[int]:
        return self._call(RegistryApi.sweep, idle_timeout_s)

    def drain(
        self, timeout_s: float | None = None, node_id: str | None = None
    ) -> Call[DrainResult]:
        return self._call(RegistryApi.drain, timeout_s, node_id)

    # a session's worker
    async def session(self, session_id: str) -> SessionClient:
        """The live worker of a session, resumed first when it is cold or paused."""
        attached = await self.attach(session_id)
        return SessionClient(self, attached.session, attached.worker)

    def session_sync(self, session_id: str, timeout_s: float | None = None) -> SessionClient:
        attached = self.attach(session_id).get(timeout_s)
        return SessionClient(self, attached.session, attached.worker)


# ---------------------------------------------------------------------- session workers


@dataclass
class Turn:
    """A turn started by :meth:`SessionClient.start_turn`: its first batch and the rest."""

    first: list[Event]
    rest: ray.ObjectRefGenerator


class WorkerClient(WorkerFilesCalls):
    """A session worker, typed, as the registry holds it (no re-attach: it owns workers)."""

    def __init__(self, handle: ActorHandle) -> None:
        self.handle = handle

    def _call(
        self,
        fn: Callable[Concatenate[Any, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Call[T]:
        return Call(lambda: _method(self.handle, fn).remote(*args, **kwargs), self._refresh())

    def _refresh(self) -> _Refresh | None:
        return None

    def _stream(
        self,
        fn: Callable[Concatenate[Any, P], AsyncIterator[Any]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> ray.ObjectRefGenerator:
        method = _method(self.handle, fn).options(num_returns="streaming")
        gen: ray.ObjectRefGenerator = method.remote(*args, **kwargs)
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
            except STALE:
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
        super().__init__(handle)
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
            except STALE:
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
