"""Sessions from any Ray driver or task: find the registry, create or attach, call with ray.get.

The handle returned here is thin on purpose: ``session.ask`` and ``session.ask_stream`` are
the session worker's own actor methods (with the turn options checked on the way), so a
pipeline talks to the worker directly, exactly as the HTTP ingress does, and the registry
stays the only creator and killer of workers. Both go through the typed clients of
:mod:`ash_ray.handles`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ray
from pydantic import BaseModel, ValidationError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from ash_ray import cluster_file
from ash_ray.errors import (
    AtCapacity,
    InvalidInput,
    NotFound,
    SessionEnded,
    SessionNotFound,
    Unavailable,
)
from ash_ray.handles import Call, Event, RegistryClient, SessionClient, TurnOutcome, unwrap
from ash_ray.models import (
    DEFAULT_TENANT,
    MessageCreate,
    SessionCreate,
    SessionRecord,
    new_id,
    parse_uuid,
)
from ash_ray.names import DEFAULT_NAMESPACE

__all__ = [
    "DEFAULT_NAMESPACE", "AgentSession", "AshRay", "Event", "ask", "connect", "get",
    "session_body", "turn_options",
]

# Registry calls are quick; a create may wait for a slot (ASH_CAPACITY_WAIT_S, max 600 s).
REGISTRY_TIMEOUT_S = 660.0


def get(ref: Any, timeout_s: float | None = REGISTRY_TIMEOUT_S) -> Any:
    """``ray.get`` of an ObjectRef (or a typed :class:`Call`) that raises our own exception.

    ``ray.get`` raises a ``RayTaskError`` that *is an instance of* the cause's class, so
    ``except SessionNotFound`` works either way; here the caller gets the plain error.
    """
    if isinstance(ref, Call):
        return ref.get(timeout_s)
    try:
        return ray.get(ref, timeout=timeout_s)
    except ray.exceptions.RayTaskError as exc:
        raise unwrap(exc) from None


def capacity_retry(wait_s: float, poll_s: float = 1.0) -> Retrying:
    """Retry on :class:`AtCapacity` for up to ``wait_s`` (the registry's 503)."""
    return Retrying(
        stop=stop_after_delay(wait_s),
        wait=wait_exponential(multiplier=0.05, max=poll_s),
        retry=retry_if_exception_type(AtCapacity),
        reraise=True,
    )

def _check_keys(model: type[BaseModel], given: dict[str, Any], what: str) -> None:
    known = set(model.model_fields)
    known |= {f.alias for f in model.model_fields.values() if f.alias}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidInput(
            f"unknown {what}: {', '.join(unknown)}; known: {', '.join(sorted(model.model_fields))}"
        )


def turn_options(prompt: str, options: dict[str, Any]) -> dict[str, Any]:
    """Turn options as the worker takes them (snake_case), from snake or camelCase names.

    A message sent while the session runs a turn waits for its turn (``if_busy="queue"``)
    unless told otherwise.
    """
    if not isinstance(prompt, str):
        raise InvalidInput(f"a prompt must be a string, got {type(prompt).__name__}")
    _check_keys(MessageCreate, options, "turn option")
    if "ifBusy" not in options:
        options = {"if_busy": "queue", **options}
    try:
        body = MessageCreate.model_validate({"content": prompt, **options})
    except ValidationError as exc:
        raise InvalidInput(f"invalid turn options: {exc.errors()[0]['msg']}") from None
    return body.model_dump(exclude={"content"}, exclude_none=True)


def _one_call(prompt: str, options: dict[str, Any]) -> dict[str, Any]:
    """:func:`turn_options` with a ``message_id`` of its own: a call re-sent after its
    worker was lost finds its turn (continued or queued) instead of starting another."""
    return {**turn_options(prompt, options), "message_id": new_id()}


def session_body(agent: str, config: dict[str, Any]) -> dict[str, Any]:
    """The registry's create body, validated like ``POST /api/sessions``."""
    _check_keys(SessionCreate, config, "session setting")
    try:
        body = SessionCreate.model_validate({**config, "agent": agent})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"invalid session setting {where}: {err['msg']}") from None
    return body.model_dump(exclude_none=True)


class _Method:
    """``.remote(prompt, **options)`` on a worker method, with the options checked."""

    def __init__(self, session: AgentSession, streaming: bool = False) -> None:
        self._session = session
        self._streaming = streaming

    def remote(self, prompt: str, **options: Any) -> Any:
        """An ObjectRef of the turn outcome (``ask``) or an ObjectRefGenerator of events."""
        worker = self._session.worker
        opts = _one_call(prompt, options)
        if self._streaming:
            return worker.ask_stream(prompt, opts)
        return worker.ask(prompt, opts).ref()


class AgentSession:
    """One live session: call it with ``ray.get(session.ask.remote("..."))``.

    ``ask`` resolves to ``{sessionId, result, structuredOutput, usage, numTurns, subtype,
    isError, error}``; ``ask_stream`` yields refs of ``(seq, type, data)``, the events of
    the SSE stream. Picklable: pass it to Ray tasks. As a context manager it ends the
    session on exit.
    """

    def __init__(self, worker: SessionClient) -> None:
        self.worker = worker
        self.ask = _Method(self)
        self.ask_stream = _Method(self, streaming=True)

    @property
    def registry(self) -> RegistryClient:
        return self.worker.registry

    @property
    def info(self) -> dict[str, Any]:
        """The session as ``GET /api/sessions/{id}`` shows it (as of the last call)."""
        return self.worker.session.public()

    @property
    def id(self) -> str:
        """The session id (the same one the HTTP API uses)."""
        return self.worker.id

    @property
    def agent(self) -> str:
        """Name of the agent the session runs."""
        return self.worker.session.agent_name

    def __repr__(self) -> str:
        return f"AgentSession(id={self.id!r}, agent={self.agent!r})"

    def refresh(self) -> AgentSession:
        """Re-attach after the worker went away (evicted, swept, node lost): resumes it."""
        self.worker.again_sync()
        return self

    def run(self, prompt: str, *, timeout_s: float | None = None, **options: Any) -> TurnOutcome:
        """Blocking ``ask``: our errors unwrapped; a vanished worker is resumed once.

        The retry covers a worker lost *between* turns (evicted, swept); a worker that dies
        during the turn fails the same way, and its session is then ``paused``.
        """
        return self.worker.ask(prompt, _one_call(prompt, options)).get(timeout_s)

    def stream(self, prompt: str, **options: Any) -> Iterator[Event]:
        """The turn's events, ``(seq, type, data)``, as they happen; ends after ``done``."""
        return self.worker.ask_events(prompt, _one_call(prompt, options))

    def describe(self) -> dict[str, Any]:
        """The worker's own view: status, turn running, idle seconds, usage, node."""
        return self.worker.describe().get(30)

    def end(self) -> dict[str, Any]:
        """End the session (terminal; its worker is released). Ending twice is harmless."""
        try:
            self.worker.session = self.registry.end(self.id).get(REGISTRY_TIMEOUT_S)
        except SessionEnded:
            self.worker.session = self.registry.get_session(self.id).get(REGISTRY_TIMEOUT_S)
        except NotFound:
            pass
        return self.info

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()


class AshRay:
    """The ash-ray cluster seen from a Ray driver: sessions by agent name or session id.

    Everything is of one tenant (``default`` unless given), as over HTTP with that
    tenant's key: its agents, its sessions; another tenant's session id is not found.
    A Ray driver is inside the cluster's trust boundary: the tenant is a scope, not a
    credential.
    """

    def __init__(self, registry: RegistryClient, tenant: str = DEFAULT_TENANT) -> None:
        self.registry = registry
        self.tenant = tenant

    @property
    def namespace(self) -> str:
        return self.registry.namespace

    def session(self, agent: str, *, wait_s: float = 0.0, **config: Any) -> AgentSession:
        """Create a session on a deployed agent.

        ``config`` takes the fields of ``POST /api/sessions`` (``model``, ``system_prompt``,
        ``extra_env``, ``allowed_tools``, ...; snake or camelCase). Capacity is the
        registry's, as over HTTP: :class:`AtCapacity` when every slot runs a turn, unless
        ``wait_s`` > 0, in which case the create is retried until then.
        """
        body = session_body(agent, config)
        created = capacity_retry(wait_s)(
            lambda: self.registry.create_session(body, self.tenant).get(REGISTRY_TIMEOUT_S)
        )
        return self.attach(created.id)

    def _own(self, session_id: str) -> SessionRecord:
        """The session if it is this tenant's; SessionNotFound otherwise."""
        rec = self.registry.get_session(parse_uuid(session_id)).get(REGISTRY_TIMEOUT_S)
        if rec.tenant_id != self.tenant:
            raise SessionNotFound(f"session {session_id} not found", session_id=session_id)
        return rec

    def attach(self, session_id: str) -> AgentSession:
        """A handle on an existing session (resumed first when paused or cold)."""
        rec = self._own(session_id)
        return AgentSession(self.registry.session_sync(rec.id, REGISTRY_TIMEOUT_S))

    def get_session(self, session_id: str) -> dict[str, Any]:
        """The session as ``GET /api/sessions/{id}`` shows it."""
        return self._own(session_id).public()

    def end(self, session_id: str) -> dict[str, Any]:
        """End a session by id."""
        rec = self._own(session_id)
        return self.registry.end(rec.id).get(REGISTRY_TIMEOUT_S).public()

    def list_sessions(
        self, agent: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Sessions as ``GET /api/sessions`` lists them."""
        rows = self.registry.list_sessions(agent, status, limit, 0, self.tenant).get(
            REGISTRY_TIMEOUT_S
        )
        return [r.public() for r in rows]

    def live(self) -> list[dict[str, Any]]:
        """Every live worker's ``describe()`` (what ``ash-ray ps`` shows)."""
        return self.registry.describe_all().get(REGISTRY_TIMEOUT_S)


def connect(
    namespace: str = DEFAULT_NAMESPACE, address: str | None = None, tenant: str = DEFAULT_TENANT
) -> AshRay:
    """Find ash-ray on the Ray cluster, joining it at ``address`` if Ray is not initialised.

    ``tenant`` scopes every call (its agents and sessions; ``default`` owns ASH_API_KEY's).

    Without ``address``: ``ASH_RAY_ADDRESS``, ``RAY_ADDRESS``, a local ``ash-ray start``
    (its ``ray-cluster.json``, token included), else ``"auto"`` (see ``cluster_file``).
    """
    if not ray.is_initialized():
        address = cluster_file.prepare_driver(address)
        try:
            ray.init(address=address, namespace=namespace, log_to_driver=False)
        except ConnectionError as exc:
            raise Unavailable(f"no Ray cluster at {address!r}: {exc}") from None
    registry = RegistryClient(namespace)
    _ = registry.handle  # Unavailable now, not at the first call
    return AshRay(registry, tenant)


def ask(
    agent: str, prompt: str, *, namespace: str = DEFAULT_NAMESPACE,
    tenant: str = DEFAULT_TENANT, **options: Any,
) -> TurnOutcome:
    """One prompt in a fresh session that is ended afterwards; returns the turn outcome."""
    with connect(namespace, tenant=tenant).session(agent) as session:
        return session.run(prompt, **options)
