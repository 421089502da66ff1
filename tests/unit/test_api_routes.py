"""The HTTP edge without Ray: routes, validation, limits and /openapi.json over ASGI.

A fake registry stands in for the actor (the one double here); what a route passes to it
and what the client gets back are what a user of the API would notice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ash_ray.api.app import create_api
from ash_ray.config import load_settings
from ash_ray.errors import AgentInvalid, AgentNotFound, SessionNotFound
from ash_ray.models import MAX_INT64, REFUSED_UNTIL_IMPLEMENTED, EventRecord, SessionRecord

KEY = "unit-key"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeRegistry:
    """The typed registry client's methods, answered from memory; every call recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.sessions: dict[str, SessionRecord] = {}

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("do_"):
            raise AttributeError(name)

        async def call(*args: Any) -> Any:
            self.calls.append((name, args))
            return getattr(self, "do_" + name)(*args)

        return call

    def do_create_session(self, body: dict[str, Any], tenant: str) -> SessionRecord:
        sid = str(uuid.uuid4())
        self.sessions[sid] = SessionRecord(
            id=sid, agent_name=body["agent"], tenant_id=tenant, sandbox_id=sid,
            status="active", created_at=NOW, last_active_at=NOW,
        )  # fmt: skip
        return self.sessions[sid]

    def do_get_session(self, sid: str) -> SessionRecord:
        if sid not in self.sessions:
            raise SessionNotFound(f"session {sid} does not exist")
        return self.sessions[sid]

    def do_list_sessions(self, *args: Any) -> list[SessionRecord]:
        return list(self.sessions.values())

    def do_list_agents(self, tenant: str) -> list[Any]:
        return []

    def do_get_agent(self, name: str, tenant: str) -> dict[str, Any]:
        raise AgentNotFound(f"agent {name!r} is not deployed")

    def do_deploy_agent(self, name: str, path: str, tenant: str) -> dict[str, Any]:
        raise AgentInvalid(f"{path} has no CLAUDE.md")

    do_delete_agent = do_get_agent

    def do_end(self, sid: str) -> SessionRecord:
        return self.do_get_session(sid)

    do_pause = do_stop = do_resume = do_fork = do_end

    def do_metrics_text(self) -> bytes:
        return b"ash_up 1.0\n"

    def do_list_events(self, sid: str, after: int, limit: int | None) -> list[EventRecord]:
        self.do_get_session(sid)
        data = {"sessionId": sid}
        return [EventRecord(session_id=sid, seq=after + 1, type="done", data=data, created_at=NOW)]

    def do_list_messages(self, sid: str, after: int, limit: int) -> list[Any]:
        self.do_get_session(sid)
        return []

    def do_patch_config(self, sid: str, patch: dict[str, Any]) -> SessionRecord:
        return self.do_get_session(sid)

    def do_health(self) -> dict[str, Any]:
        pool = dict.fromkeys(
            (
                "total",
                "cold",
                "warming",
                "warm",
                "waiting",
                "running",
                "maxCapacity",
                "resumeWarmHits",
                "resumeColdHits",
                "preWarmHits",
            ),
            0,
        )
        return {
            "activeSessions": 0,
            "activeSandboxes": 0,
            "pool": pool,
            "poolReady": 0,
            "store": "sqlite",
            "accepting": True,
        }

    def do_live_handle(self, sid: str) -> None:
        self.do_get_session(sid)


class FakeSession:
    """A session client: exec recorded and answered."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def exec(self, *args: Any) -> dict[str, Any]:
        self.calls.append(("exec", args))
        return {"exitCode": 0, "stdout": "ok\n", "stderr": ""}


class FakeContext:
    def __init__(self, tmp: Path) -> None:
        self.settings = load_settings(data_dir=tmp, api_key=KEY, max_body_bytes=64 * 1024)
        self.registry = FakeRegistry()
        self.session_client = FakeSession()

    async def session(self, session_id: str) -> FakeSession:
        self.registry.do_get_session(session_id)
        return self.session_client

    async def live_session(self, session_id: str) -> None:
        self.registry.do_get_session(session_id)

    def forget(self, session_id: str) -> None:
        pass

    def uptime_s(self) -> float:
        return 1.0


@pytest.fixture()
def ctx(tmp_path: Path) -> FakeContext:
    return FakeContext(tmp_path)


@pytest.fixture()
async def client(ctx: FakeContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api(ctx)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ash", headers={"Authorization": f"Bearer {KEY}"}
    ) as c:
        yield c


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["statusCode"] == status
    return str(body["error"])


async def _session(client: httpx.AsyncClient) -> str:
    r = await client.post("/api/sessions", json={"agent": "helper"})
    assert r.status_code == 201, r.text
    return str(r.json()["session"]["id"])


async def test_bad_session_id_is_the_same_400_as_before(client: httpx.AsyncClient) -> None:
    for path in ("/api/sessions/not-a-uuid", "/api/sessions/not-a-uuid/events"):
        msg = _error(await client.get(path), 400)
        assert msg == "session id must be a UUID, got 'not-a-uuid'"
    sid = str(uuid.uuid4())
    assert "does not exist" in _error(await client.get(f"/api/sessions/{sid}"), 404)
    # Any spelling uuid.UUID accepts reaches the registry in canonical form.
    await client.get(f"/api/sessions/{sid.replace('-', '').upper()}")
    assert client._transport.app.state.ctx.registry.calls[-1] == ("get_session", (sid,))  # type: ignore[attr-defined]


async def test_status_filter_names_its_values(client: httpx.AsyncClient) -> None:
    msg = _error(await client.get("/api/sessions", params={"status": "zombie"}), 400)
    assert msg.startswith("status must be one of starting, active, paused")


async def test_integers_past_64_bits_are_400(client: httpx.AsyncClient, ctx: FakeContext) -> None:
    sid = await _session(client)
    huge = str(2**64)
    for path, params in (
        ("/api/sessions", {"offset": huge}),
        (f"/api/sessions/{sid}/events", {"after": huge}),
        (f"/api/sessions/{sid}/messages", {"after": huge}),
        (f"/api/sessions/{sid}/stream", {"after": huge}),
        (f"/api/sessions/{sid}/events", {"limit": "-1"}),
    ):
        assert _error(await client.get(path, params=params), 400)
    for value in (huge, "-1", "12abc", "9" * 40):
        r = await client.get(f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": value})
        assert "Last-Event-ID" in _error(r, 400) or "last-event-id" in _error(r, 400)
    ok = await client.get(f"/api/sessions/{sid}/events", params={"after": str(MAX_INT64 - 1)})
    assert ok.status_code == 200


async def test_thinking_and_effort_reach_the_worker(
    client: httpx.AsyncClient, ctx: FakeContext
) -> None:
    body = {
        "agent": "helper",
        "thinking": {"type": "enabled", "budgetTokens": 2048},
        "effort": "high",
        "permissionMode": "plan",
        "betas": ["context-1m-2025-08-07"],
        "mcpServers": {"docs": {"url": "http://127.0.0.1:9/mcp"}, "fs": {"command": "srv"}},
        "subagents": {
            "reviewer": {
                "description": "reviews", "prompt": "Review.", "tools": ["Read"],
                "effort": "low", "thinking": {"type": "enabled", "budgetTokens": 1024},
            }
        },
        "initialAgent": "reviewer",
    }
    assert (await client.post("/api/sessions", json=body)).status_code == 201
    name, (sent, _tenant) = ctx.registry.calls[-1]
    assert name == "create_session"
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["effort"] == "high"
    assert sent["permission_mode"] == "plan"
    assert sent["betas"] == ["context-1m-2025-08-07"]
    assert sent["mcp_servers"] == {
        "docs": {"url": "http://127.0.0.1:9/mcp"},
        "fs": {"command": "srv"},
    }
    assert sent["subagents"]["reviewer"] == {
        "description": "reviews",
        "prompt": "Review.",
        "tools": ["Read"],
        "effort": "low",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    assert sent["initial_agent"] == "reviewer"


async def test_refused_fields_are_named(client: httpx.AsyncClient) -> None:
    # credentialId and initialAgent are both implemented: nothing is refused any more.
    assert REFUSED_UNTIL_IMPLEMENTED == ()
    for bad in (
        {"permissionMode": "yolo"},
        {"effort": "extreme"},
        {"thinking": {"type": "enabled", "budgetTokens": 10}},
        {"mcpServers": {"x": {"url": "http://a", "command": "b"}}},
        {"extraEnv": {"A": "x\x00y"}},
    ):
        assert _error(await client.post("/api/sessions", json={"agent": "helper", **bad}), 400)


async def test_patch_null_env_stores_an_empty_env(
    client: httpx.AsyncClient, ctx: FakeContext
) -> None:
    sid = await _session(client)
    r = await client.patch(f"/api/sessions/{sid}/config", json={"extraEnv": None, "effort": "low"})
    assert r.status_code == 200, r.text
    assert ctx.registry.calls[-1] == ("patch_config", (sid, {"extra_env": {}, "effort": "low"}))


async def test_exec_command_limit_and_timeout(client: httpx.AsyncClient, ctx: FakeContext) -> None:
    sid = await _session(client)
    # 300 KB would pass the body limit of a default server; here the body limit is 64 KiB,
    # so the command limit is checked with a raised one.
    ctx.settings = ctx.settings.model_copy(update={"max_body_bytes": 10 * 1024 * 1024})
    app = create_api(ctx)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://ash",
        headers={"Authorization": f"Bearer {KEY}"},
    ) as big:
        r = await big.post(f"/api/sessions/{sid}/exec", json={"command": "x" * 300_000})
        assert "byte limit" in _error(r, 400) or "at most" in _error(r, 400)
        r = await big.post(f"/api/sessions/{sid}/exec", json={"command": "é" * 60_000})
        assert "102400-byte limit" in _error(r, 400)
    r = await client.post(
        f"/api/sessions/{sid}/exec", json={"command": "echo ok", "timeout": 120000}
    )
    assert r.json() == {"exitCode": 0, "stdout": "ok\n", "stderr": ""}
    assert ctx.session_client.calls[-1] == ("exec", ("echo ok", 120.0))
    assert _error(await client.post(f"/api/sessions/{sid}/exec", json={"command": "a\x00b"}), 400)


async def test_long_paths_and_names_are_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/agents", json={"name": "a", "path": "/" + "x" * 5000})
    assert "path" in _error(r, 400)
    assert _error(await client.get("/api/agents/" + "a" * 300), 400)
    assert _error(await client.post("/api/sessions", json={"agent": "a" * 300}), 400)


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 4096  # 400 KiB in all, no Content-Length

    r = await client.post(
        "/api/sessions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "limit" in _error(r, 413)
    r = await client.post("/api/sessions", content=b"x" * (65 * 1024))
    assert "limit" in _error(r, 413)


async def test_malformed_bodies_are_400(client: httpx.AsyncClient) -> None:
    h = {"Content-Type": "application/json"}
    assert "not valid JSON" in _error(
        await client.post("/api/sessions", content=b"{x", headers=h), 400
    )
    deep = b"[" * 30_000 + b"]" * 30_000
    assert _error(await client.post("/api/sessions", content=deep, headers=h), 400)
    assert _error(await client.post("/api/sessions", content=b"NaN", headers=h), 400)
    r = await client.post("/api/sessions", json={"agent": "h", "extraEnv": {"1BAD": "x"}})
    assert "extraEnv" in _error(r, 400)


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
    ]


async def test_openapi_describes_every_response(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in json.dumps(doc)
    sse_routes = {
        ("/api/sessions/{session_id}/messages", "post"),
        ("/api/sessions/{session_id}/stream", "get"),
    }
    binary_routes = {  # downloads: raw bytes or tar.gz
        ("/api/sessions/{session_id}/files/{path}", "get"),
        ("/api/sessions/{session_id}/workspace", "get"),
        ("/api/attachments/{attachment_id}", "get"),
    }
    for path, method, op in _operations(doc):
        where = f"{method.upper()} {path}"
        assert "422" not in op["responses"], where
        ok = next(code for code in op["responses"] if code.startswith("2"))
        if ok == "204":  # No Content: nothing to describe
            continue
        content = op["responses"][ok].get("content", {})
        # 204 has no content by definition (DELETE of an agent version, as Ash answers).
        assert content or ok == "204", f"{where} has no response schema"
        for media in content.values():
            assert media.get("schema"), f"{where} has an empty response schema"
        if (path, method) in sse_routes:
            assert list(content) == ["text/event-stream"], where
            assert "x-sse-events" in content["text/event-stream"]["schema"]
        elif (path, method) in binary_routes:
            assert any(m.get("schema", {}).get("format") == "binary" for m in content.values())
        elif path != "/metrics" and ok != "204":
            assert list(content) == ["application/json"], where
        if path.startswith("/api/"):
            for code in (
                ("400", "401", "503") if op.get("parameters") or op.get("requestBody") else ("401",)
            ):
                assert code in op["responses"], f"{where} lacks {code}"
            for code, answer in op["responses"].items():
                if code.startswith("4"):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorOut"), where
    assert set(doc["components"]["schemas"]["ErrorOut"]["properties"]) == {"error", "statusCode"}
    assert "SseEvent" in doc["components"]["schemas"]
