"""Sessions from any Ray driver or task: find the registry, create or attach, call with ray.get.

The handle returned here is thin on purpose: ``session.ask`` and ``session.ask_stream`` are
the session worker's own actor methods (with the turn options checked on the way), so a
pipeline talks to the worker directly, exactly as the HTTP ingress does, and the registry
stays the only creator and killer of workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import ray
from pydantic import BaseModel, ValidationError

from ash_ray import cluster_file
from ash_ray.errors import AshError, AtCapacity, InvalidInput, NotFound, SessionEnded, Unavailable
from ash_ray.models import MessageCreate, SessionCreate, parse_uuid
from ash_ray.names import REGISTRY_NAME

DEFAULT_NAMESPACE = "ash"
# Registry calls are quick; a create may wait for a slot (ASH_CAPACITY_WAIT_S, max 600 s).
REGISTRY_TIMEOUT_S = 660.0

Event = tuple[int, str, dict[str, Any]]


def get(ref: Any, timeout_s: float | None = REGISTRY_TIMEOUT_S) -> Any:
    """``ray.get`` that raises our own exception (the cause) rather than Ray's wrapper.

    ``ray.get`` already raises a ``RayTaskError`` that *is an instance of* the cause's class,
    so ``except SessionNotFound`` works either way; here the caller gets the plain error,
    with its message and fields, and a lost registry becomes :class:`Unavailable`.
    """
    try:
        return ray.get(ref, timeout=timeout_s)
    except ray.exceptions.RayTaskError as exc:
        raise plain(exc) from None


def plain(exc: BaseException) -> BaseException:
    """Our error inside a ``RayTaskError`` (however deeply wrapped), else ``exc`` itself."""
    while isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, BaseException):
        if not isinstance(exc.cause, AshError):
            return exc
        exc = exc.cause
    return exc


def _check_keys(model: type[BaseModel], given: dict[str, Any], what: str) -> None:
    known = set(model.model_fields)
    known |= {f.alias for f in model.model_fields.values() if f.alias}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidInput(
            f"unknown {what}: {', '.join(unknown)}; known: {', '.join(sorted(model.model_fields))}"
        )


def turn_options(prompt: str, options: dict[str, Any]) -> dict[str, Any]:
    """Turn options as the worker takes them (snake_case), from snake or camelCase names."""
    if not isinstance(prompt, str):
        raise InvalidInput(f"a prompt must be a string, got {type(prompt).__name__}")
    _check_keys(MessageCreate, options, "turn option")
    try:
        body = MessageCreate.model_validate({"content": prompt, **options})
    except ValidationError as exc:
        raise InvalidInput(f"invalid turn options: {exc.errors()[0]['msg']}") from None
    return body.model_dump(exclude={"content"}, exclude_none=True)


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

    def __init__(self, session: AgentSession, name: str, streaming: bool = False) -> None:
        self._session = session
        self._name = name
        self._streaming = streaming

    def remote(self, prompt: str, **options: Any) -> Any:
        """An ObjectRef of the turn outcome (``ask``) or an ObjectRefGenerator of events."""
        method = getattr(self._session.handle, self._name)
        if self._streaming:
            method = method.options(num_returns="streaming")
        return method.remote(prompt, turn_options(prompt, options))


class AgentSession:
    """One live session: call it with ``ray.get(session.ask.remote("..."))``.

    ``ask`` resolves to ``{sessionId, result, structuredOutput, usage, numTurns, subtype,
    isError, error}``; ``ask_stream`` yields refs of ``(seq, type, data)``, the events of
    the SSE stream. Picklable: pass it to Ray tasks. As a context manager it ends the
    session on exit.
    """

    def __init__(self, registry: Any, info: dict[str, Any], handle: Any) -> None:
        self.registry = registry
        self.info = info
        self.handle = handle
        self.ask = _Method(self, "ask")
        self.ask_stream = _Method(self, "ask_stream", streaming=True)

    @property
    def id(self) -> str:
        """The session id (the same one the HTTP API uses)."""
        return str(self.info["id"])

    @property
    def agent(self) -> str:
        """Name of the agent the session runs."""
        return str(self.info["agentName"])

    def __repr__(self) -> str:
        return f"AgentSession(id={self.id!r}, agent={self.agent!r})"

    def refresh(self) -> AgentSession:
        """Re-attach after the worker went away (evicted, swept, node lost): resumes it."""
        self.info, self.handle = get(self.registry.attach.remote(self.id))
        return self

    def run(self, prompt: str, *, timeout_s: float | None = None, **options: Any) -> dict[str, Any]:
        """Blocking ``ask``: our errors unwrapped; a vanished worker is resumed once.

        The retry covers a worker lost *between* turns (evicted, swept); a worker that dies
        during the turn fails the same way, and its session is then in ``error`` state.
        """
        try:
            return dict(get(self.ask.remote(prompt, **options), timeout_s))
        except ray.exceptions.RayActorError:
            self.refresh()
            return dict(get(self.ask.remote(prompt, **options), timeout_s))

    def stream(self, prompt: str, **options: Any) -> Iterator[Event]:
        """The turn's events, ``(seq, type, data)``, as they happen; ends after ``done``."""
        for ref in self.ask_stream.remote(prompt, **options):
            seq, type_, data = get(ref, None)
            yield int(seq), str(type_), dict(data)

    def describe(self) -> dict[str, Any]:
        """The worker's own view: status, turn running, idle seconds, usage, node."""
        return dict(get(self.handle.describe.remote(), 30))

    def end(self) -> dict[str, Any]:
        """End the session (terminal; its worker is released). Ending twice is harmless."""
        try:
            self.info = get(self.registry.end.remote(self.id))
        except SessionEnded:
            self.info = get(self.registry.get_session.remote(self.id))
        except NotFound:
            pass
        return self.info

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()


class AshRay:
    """The ash-ray cluster seen from a Ray driver: sessions by agent name or session id."""

    def __init__(self, registry: Any, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.registry = registry
        self.namespace = namespace

    def session(self, agent: str, *, wait_s: float = 0.0, **config: Any) -> AgentSession:
        """Create a session on a deployed agent.

        ``config`` takes the fields of ``POST /api/sessions`` (``model``, ``system_prompt``,
        ``extra_env``, ``allowed_tools``, ...; snake or camelCase). Capacity is the
        registry's, as over HTTP: :class:`AtCapacity` when every slot runs a turn, unless
        ``wait_s`` > 0, in which case the create is retried until then.
        """
        body = session_body(agent, config)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                info = get(self.registry.create_session.remote(body))
                break
            except AtCapacity:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        return self.attach(info["id"])

    def attach(self, session_id: str) -> AgentSession:
        """A handle on an existing session (resumed first when paused or cold)."""
        sid = parse_uuid(session_id)
        info, handle = get(self.registry.attach.remote(sid))
        return AgentSession(self.registry, info, handle)

    def get_session(self, session_id: str) -> dict[str, Any]:
        """The session as ``GET /api/sessions/{id}`` shows it."""
        return dict(get(self.registry.get_session.remote(parse_uuid(session_id))))

    def end(self, session_id: str) -> dict[str, Any]:
        """End a session by id."""
        return dict(get(self.registry.end.remote(parse_uuid(session_id))))

    def list_sessions(
        self, agent: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Sessions as ``GET /api/sessions`` lists them."""
        return list(get(self.registry.list_sessions.remote(agent, status, limit, 0)))

    def live(self) -> list[dict[str, Any]]:
        """Every live worker's ``describe()`` (what ``ash-ray ps`` shows)."""
        return list(get(self.registry.describe_all.remote()))


def registry_handle(namespace: str = DEFAULT_NAMESPACE) -> Any:
    """The running registry actor; :class:`Unavailable` when there is none."""
    try:
        return ray.get_actor(REGISTRY_NAME, namespace=namespace)
    except ValueError:
        raise Unavailable(
            f"no ash-ray registry ({REGISTRY_NAME!r}) in Ray namespace {namespace!r}: "
            "start ash-ray on this cluster (`ash-ray start` or `ash-ray serve`) "
            "or pass the namespace it runs in"
        ) from None


def connect(namespace: str = DEFAULT_NAMESPACE, address: str | None = None) -> AshRay:
    """Find ash-ray on the Ray cluster, joining it at ``address`` if Ray is not initialised.

    Without ``address``: ``ASH_RAY_ADDRESS``, ``RAY_ADDRESS``, a local ``ash-ray start``
    (its ``ray-cluster.json``, token included), else ``"auto"`` (see ``cluster_file``).
    """
    if not ray.is_initialized():
        address = cluster_file.prepare_driver(address)
        try:
            ray.init(address=address, namespace=namespace, log_to_driver=False)
        except ConnectionError as exc:
            raise Unavailable(f"no Ray cluster at {address!r}: {exc}") from None
    return AshRay(registry_handle(namespace), namespace)


def ask(
    agent: str, prompt: str, *, namespace: str = DEFAULT_NAMESPACE, **options: Any
) -> dict[str, Any]:
    """One prompt in a fresh session that is ended afterwards; returns the turn outcome."""
    with connect(namespace).session(agent) as session:
        return session.run(prompt, **options)
