"""MCP servers of a session, through the official ``mcp`` SDK's ClientSession.

Servers come from the agent's ``.mcp.json`` and the session's ``mcpServers`` (the
session's entry of the same name wins). An entry with ``command`` (and ``args``,
``env``) is a stdio server: it runs INSIDE the session's sandbox (same limits, the
sandbox's allowlisted environment plus its own ``env``) through
:meth:`Sandbox.spawn`, bridged to the SDK's message streams here because the SDK's
own stdio transport spawns processes outside any sandbox. An entry with ``url`` is
reached from the worker: streamable HTTP, or SSE when ``"type": "sse"``; ``headers``
are sent along.

Servers start lazily, on the first turn, all at once and each within
``mcp_startup_timeout_s``; each lives in a task of its own (the SDK's context managers
must be left by the task that entered them) until :meth:`McpServers.aclose`. Their
tools are offered as ``mcp__<server>__<tool>``, read-only when annotated with
``readOnlyHint``. A server that fails to start, times out or dies is an error tool
result plus an ``mcp_status`` event naming it; never a failed turn. A server that died
after running is started again on the next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ash_ray.agent.file_tools import ToolFailure

# The mcp SDK is imported where a server is used, not here: it costs a session worker
# about 0.6 s of CPU and 30 MiB at start, and most agents have no MCP server.
if TYPE_CHECKING:
    from mcp.client.session import ClientSession

    from ash_ray.agent.tools import Tool, ToolContext

logger = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], None]
_STDERR_TAIL = 2000
_CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ServerConfig:
    """One ``mcpServers`` entry, normalised."""

    name: str
    transport: str  # stdio | http | sse
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, name: str, raw: Any) -> ServerConfig:
        """Read one entry; raises ValueError naming what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError(f"MCP server {name!r} must be an object")
        url = str(raw.get("url") or "")
        guess = (
            "stdio" if raw.get("command") else "sse" if url.rstrip("/").endswith("/sse") else "http"
        )
        kind = str(raw.get("type") or guess)
        kind = "http" if kind == "streamable-http" else kind
        if kind == "stdio":
            if not isinstance(raw.get("command"), str) or not raw["command"]:
                raise ValueError(f"MCP server {name!r}: a stdio server needs a command")
            return cls(
                name,
                "stdio",
                command=raw["command"],
                args=tuple(str(a) for a in raw.get("args") or ()),
                env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
            )
        if kind not in ("http", "sse") or not isinstance(raw.get("url"), str):
            raise ValueError(f"MCP server {name!r}: need a command (stdio) or a url (http, sse)")
        headers = {str(k): str(v) for k, v in (raw.get("headers") or {}).items()}
        return cls(name, kind, url=raw["url"], headers=headers)

    def public(self) -> dict[str, Any]:
        """What an ``mcp_status`` event says about it (no env, no headers: secrets)."""
        where = {"command": self.command} if self.transport == "stdio" else {"url": self.url}
        return {"name": self.name, "transport": self.transport, **where}


def merge_servers(agent: Mapping[str, Any], session: Mapping[str, Any] | None) -> dict[str, Any]:
    """The agent's servers overlaid with the session's (same name: the session's wins)."""
    return {**dict(agent or {}), **dict(session or {})}


def tool_name(server: str, tool: str) -> str:
    """``mcp__<server>__<tool>`` with characters the API refuses replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"mcp__{server}__{tool}")[:128]


@contextlib.asynccontextmanager
async def sandbox_stdio(
    sandbox: Any, config: ServerConfig, stderr: bytearray, closed: asyncio.Event
) -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's stdio transport, but the server process runs in ``sandbox``."""
    import mcp_types as mtypes
    from mcp.shared.message import SessionMessage

    command = "exec " + shlex.join([config.command, *config.args])
    spawned = await sandbox.spawn(command, env=dict(config.env))
    proc = spawned.proc
    read_w, read_r = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_w, write_r = anyio.create_memory_object_stream[SessionMessage](0)

    async def reader() -> None:
        async with read_w:
            while line := await proc.stdout.readline():
                if not line.strip():
                    continue
                try:
                    message = mtypes.jsonrpc_message_adapter.validate_json(line, by_name=False)
                    item: SessionMessage | Exception = SessionMessage(message)
                except ValueError as exc:
                    item = exc
                await read_w.send(item)
        closed.set()  # stdout ended: the server exited (or closed it, which is as bad)

    async def writer() -> None:
        try:
            async with write_r:
                async for message in write_r:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    proc.stdin.write(data.encode() + b"\n")
                    await proc.stdin.drain()
        except (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError):
            await read_w.aclose()

    async def drain_stderr() -> None:
        while chunk := await proc.stderr.read(4096):
            stderr.extend(chunk)
            del stderr[:-_STDERR_TAIL]

    async with anyio.create_task_group() as group:
        group.start_soon(reader)
        group.start_soon(writer)
        group.start_soon(drain_stderr)
        try:
            yield read_r, write_w
        finally:
            with anyio.CancelScope(shield=True):
                await spawned.kill()
            group.cancel_scope.cancel()


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}".strip()


def _blocks(result: Any) -> list[dict[str, Any]]:
    """An MCP CallToolResult as tool_result content blocks."""
    import mcp_types as mtypes

    out: list[dict[str, Any]] = []
    for item in result.content or []:
        if isinstance(item, mtypes.TextContent):
            out.append({"type": "text", "text": item.text})
        elif isinstance(item, mtypes.ImageContent):
            source = {"type": "base64", "media_type": item.mime_type, "data": item.data}
            out.append({"type": "image", "source": source})
        elif isinstance(item, mtypes.EmbeddedResource):
            text = getattr(item.resource, "text", None)
            out.append({"type": "text", "text": text or f"[binary resource {item.resource.uri}]"})
        elif isinstance(item, mtypes.ResourceLink):
            out.append({"type": "text", "text": f"[resource {item.uri}]"})
        else:
            out.append({"type": "text", "text": f"[{getattr(item, 'type', 'content')} omitted]"})
    if not out and result.structured_content is not None:
        out.append({"type": "text", "text": str(result.structured_content)})
    return out or [{"type": "text", "text": "(no output)"}]


class _Server:
    """One connection, owned by its own task (see module doc)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.session: ClientSession | None = None
        self.tools: list[Any] = []
        self.error: str | None = None
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()
        self.stderr = bytearray()
        self.closed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        alive = self.task is not None and not self.task.done() and not self.closed.is_set()
        return self.session is not None and alive

    def _transport(self, sandbox: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        from mcp.client.sse import sse_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        if self.config.transport == "stdio":
            return sandbox_stdio(sandbox, self.config, self.stderr, self.closed)
        if self.config.transport == "sse":
            return sse_client(self.config.url, headers=dict(self.config.headers))
        client = create_mcp_http_client(headers=dict(self.config.headers))
        return streamable_http_client(self.config.url, http_client=client)

    async def run(self, sandbox: Any) -> None:
        import mcp_types as mtypes
        from mcp.client.session import ClientSession

        try:
            async with self._transport(sandbox) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await session.initialize()
                    cursor: str | None = None
                    while True:
                        page = mtypes.PaginatedRequestParams(cursor=cursor) if cursor else None
                        listed = await session.list_tools(params=page)
                        self.tools.extend(listed.tools)
                        cursor = listed.next_cursor
                        if not cursor:
                            break
                    self.session = session
                    self.ready.set()
                    await _either(self.stop, self.closed)
                    if self.closed.is_set() and not self.stop.is_set():
                        self.error = "the server exited"
        except Exception as exc:
            self.error = _describe(exc)
        finally:
            self.session = None
            if self.error is None and not self.stop.is_set():
                self.error = "the server closed the connection"
            self.ready.set()

    def why_down(self) -> str:
        tail = self.stderr.decode(errors="replace").strip()
        reason = self.error or "the server is not running"
        return f"{reason}; stderr: {tail[-500:]}" if tail else reason


async def _unless(server: _Server, session: ClientSession, tool: str, args: Any) -> Any:
    """``call_tool``, abandoned the moment the server's process exits."""
    call = asyncio.ensure_future(session.call_tool(tool, args))
    try:
        await _either_future(call, server.closed)
        if not call.done():
            raise ConnectionError("the server exited during the call")
        return call.result()
    finally:
        call.cancel()


async def _either_future(call: asyncio.Future[Any], event: asyncio.Event) -> None:
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([call, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


class McpServers:
    """The MCP servers of one session (module doc)."""

    def __init__(self, configs: Mapping[str, Any], settings: Any) -> None:
        self.configs = {name: ServerConfig.parse(name, raw) for name, raw in configs.items()}
        self.settings = settings
        self._servers: dict[str, _Server] = {}
        self._announced = False

    async def start(self, sandbox: Any, emit: Emit) -> None:
        """Start the servers not running yet (first turn, or after one died)."""
        if not self.configs:
            return
        if not self._announced:
            self._announced = True
            servers = [c.public() for c in self.configs.values()]
            emit("mcp_status", {"action": "configured", "servers": servers})
        # New servers, and those that died after running; one that never started stays down.
        todo = [
            name
            for name, old in ((n, self._servers.get(n)) for n in self.configs)
            if old is None or (old.tools and not old.running)
        ]
        await asyncio.gather(*(self._start_one(name, sandbox, emit) for name in todo))

    async def _start_one(self, name: str, sandbox: Any, emit: Emit) -> None:
        old = self._servers.pop(name, None)
        if old is not None:
            await self._stop(old)
        server = _Server(self.configs[name])
        self._servers[name] = server
        server.task = asyncio.create_task(server.run(sandbox), name=f"mcp-{name}")
        timeout = self.settings.mcp_startup_timeout_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await server.ready.wait()
        if server.running:
            names = [tool_name(name, t.name) for t in server.tools]
            emit("mcp_status", {"action": "connected", "server": name, "tools": names})
            return
        if not server.ready.is_set():
            server.error = f"did not start within {timeout:g}s"
        await self._stop(server)
        emit("mcp_status", {"action": "error", "server": name, "error": server.why_down()})

    async def _stop(self, server: _Server) -> None:
        server.stop.set()
        if server.task is not None and not server.task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await asyncio.shield(server.task)
            if not server.task.done():
                server.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await server.task

    def tools(self) -> list[Tool]:
        """Tool definitions of every running server."""
        from ash_ray.agent.tools import Tool

        out = []
        for name, server in self._servers.items():
            if not server.running:
                continue
            for mcp_tool in server.tools:
                schema = dict(mcp_tool.input_schema or {})
                schema.setdefault("type", "object")
                hint = getattr(mcp_tool.annotations, "read_only_hint", None)
                out.append(
                    Tool(
                        tool_name(name, mcp_tool.name),
                        (mcp_tool.description or mcp_tool.name)[:2000],
                        schema,
                        self._handler(name, mcp_tool.name),
                        read_only=bool(hint),
                    )
                )
        return out

    def _handler(self, server_name: str, tool: str) -> Any:
        async def call(ctx: ToolContext, args: dict[str, Any]) -> list[dict[str, Any]]:
            server = self._servers.get(server_name)
            if server is None or server.session is None or not server.running:
                why = server.why_down() if server else "not started"
                if ctx.emit:
                    ctx.emit("mcp_status", {"action": "error", "server": server_name, "error": why})
                raise ToolFailure(f"MCP server {server_name!r} is not available: {why}")
            limit = self.settings.mcp_call_timeout_s
            try:
                async with asyncio.timeout(limit):
                    result = await _unless(server, server.session, tool, args)
            except Exception as exc:
                why = (
                    f"did not answer within {limit:g}s"
                    if isinstance(exc, TimeoutError)
                    else (server.why_down() if not server.running else _describe(exc))
                )
                if ctx.emit:
                    ctx.emit("mcp_status", {"action": "error", "server": server_name, "error": why})
                raise ToolFailure(f"MCP tool {tool} of {server_name!r} failed: {why}") from None
            blocks = _blocks(result)
            if result.is_error:
                raise ToolFailure("\n".join(b.get("text", "") for b in blocks))
            return blocks

        return call

    async def aclose(self) -> None:
        """Stop every server (pause, stop, end of the session). Idempotent."""
        servers, self._servers = list(self._servers.values()), {}
        await asyncio.gather(*(self._stop(s) for s in servers))
