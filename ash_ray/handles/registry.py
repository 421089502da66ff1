"""The registry's typed client (see :mod:`ash_ray.handles`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import ray
from ray.actor import ActorHandle

from ash_ray.actor_api import (
    Attached,
    DrainResult,
    Event,
    RegistryApi,
)
from ash_ray.calls import Call, _method
from ash_ray.errors import Unavailable
from ash_ray.files_api import RegistryFilesCalls
from ash_ray.handles.workers import SessionClient
from ash_ray.models import (
    DEFAULT_TENANT,
    AgentRecord,
    EventRecord,
    MessageRecord,
    QueuedTurn,
    SessionRecord,
    WriteBatch,
)
from ash_ray.names import DEFAULT_NAMESPACE, REGISTRY_NAME
from ash_ray.tenants import ApiKeyRecord, CredentialRecord

P = ParamSpec("P")
T = TypeVar("T")

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
