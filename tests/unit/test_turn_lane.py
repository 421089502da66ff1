"""The ingress's lane for messages (ash_ray.api.lane) over ASGI without Ray: a message it
takes streams as the route streams it; every request it cannot answer exactly as the
route does gets the route's own answer, compared with an app that has no lane."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ash_ray.api.app import create_api
from ash_ray.api.lane import TurnLane
from ash_ray.errors import SessionBusy
from ash_ray.handles import Turn
from ash_ray.models import SessionRecord
from tests.unit.test_api_routes import KEY, NOW, FakeContext, FakeRegistry
from tests.unit.test_message_body_limit import TurnSession


class BusySession(TurnSession):
    async def start_turn(self, prompt: Any, options: dict[str, Any], heartbeat_s: float) -> Turn:
        raise SessionBusy("session is running a turn; wait for it", session_id="s")


def _without_lane(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not TurnLane]
    return app


def _lane(app: FastAPI) -> TurnLane:
    node: Any = app.middleware_stack
    while node is not None and not isinstance(node, TurnLane):
        node = getattr(node, "app", None)
    assert node is not None, "the app has no lane"
    return node


class Registry(FakeRegistry):
    def do_find_api_key(self, *args: Any) -> None:
        return None  # no stored keys: any key but ASH_API_KEY is a 401


@pytest.fixture()
def ctx(tmp_path: Path) -> FakeContext:
    ctx = FakeContext(tmp_path)
    ctx.registry = Registry()
    ctx.session_client = TurnSession()
    return ctx


Apps = tuple[httpx.AsyncClient, httpx.AsyncClient, FastAPI]


@pytest.fixture()
async def apps(ctx: FakeContext) -> AsyncIterator[Apps]:
    """Clients of two apps on one context, with the lane and without it; the first app."""
    with_lane = create_api(ctx)  # type: ignore[arg-type]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://ash", headers={"Authorization": f"Bearer {KEY}"},
        )
        for app in (with_lane, _without_lane(create_api(ctx)))  # type: ignore[arg-type]
    ]
    yield clients[0], clients[1], with_lane
    for client in clients:
        await client.aclose()


async def _session(client: httpx.AsyncClient) -> str:
    return str((await client.post("/api/sessions", json={"agent": "a"})).json()["session"]["id"])


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _answer(r: httpx.Response) -> tuple[int, str, bytes]:
    return r.status_code, r.headers.get("content-type", ""), r.content


async def test_a_message_takes_the_lane_and_streams_what_the_route_streams(
    apps: Apps, ctx: FakeContext
) -> None:
    lane, plain, app = apps
    sid = await _session(lane)
    body = {"content": "hello", "includePartialMessages": True, "maxTurns": 3}
    via_lane = await lane.post(f"/api/sessions/{sid}/messages", json=body)
    via_route = await plain.post(f"/api/sessions/{sid}/messages", json=body)
    assert _answer(via_lane) == _answer(via_route)
    assert via_lane.status_code == 200 and b"event: session_start" in via_lane.content
    assert _lane(app).served == 1
    # The same prompt and options reached the session both ways.
    assert ctx.session_client.prompts == ["hello", "hello"]  # type: ignore[attr-defined]


def _other_tenants(ctx: FakeContext) -> str:
    sid = str(uuid.uuid4())
    ctx.registry.sessions[sid] = SessionRecord(
        id=sid, agent_name="a", tenant_id="other", sandbox_id=sid,
        status="active", created_at=NOW, last_active_at=NOW,
    )  # fmt: skip
    return sid


CASES: dict[str, dict[str, Any]] = {
    "not JSON": {"content": b"{nope", "headers": {"content-type": "application/json"}},
    "empty content": {"json": {"content": ""}},
    "no content": {"json": {"maxTurns": 2}},
    "out-of-range option": {"json": {"content": "hi", "maxTurns": 0}},
    "not a JSON content type": {"content": b'{"content": "hi"}',
                                "headers": {"content-type": "text/plain"}},
    "no key": {"json": {"content": "hi"}, "headers": {"authorization": ""}},
    "a wrong key": {"json": {"content": "hi"}, "headers": {"authorization": "Bearer nope"}},
    "another scheme": {"json": {"content": "hi"}, "headers": {"authorization": f"Basic {KEY}"}},
    "another tenant's session": {"json": {"content": "hi"}, "sid": _other_tenants},
    "an unknown session": {"json": {"content": "hi"}, "sid": lambda _: str(uuid.uuid4())},
    "an upper-case id": {"json": {"content": "hi"}, "upper": True},
    "a chunked body": {"chunked": True, "headers": {"content-type": "application/json"}},
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
async def test_what_the_lane_cannot_take_gets_the_routes_answer(
    apps: Apps, ctx: FakeContext, case: str
) -> None:
    lane, plain, app = apps
    spec = dict(CASES[case])
    make_sid = spec.pop("sid", None)
    sid = make_sid(ctx) if make_sid else await _session(lane)
    if spec.pop("upper", False):
        sid = sid.upper()
    chunked = spec.pop("chunked", False)
    answers = []
    for client in (lane, plain):
        if chunked:  # sent without a length
            spec["content"] = _chunks(b'{"content": ', b'"hi"}')
        answers.append(_answer(await client.post(f"/api/sessions/{sid}/messages", **spec)))
    assert answers[0] == answers[1]
    assert _lane(app).served == 0


async def test_a_refusal_after_the_checks_is_answered_as_the_route_answers_it(
    apps: Apps, ctx: FakeContext
) -> None:
    lane, plain, app = apps
    sid = await _session(lane)
    ctx.session_client = BusySession()
    via_lane = await lane.post(f"/api/sessions/{sid}/messages", json={"content": "hi"})
    via_route = await plain.post(f"/api/sessions/{sid}/messages", json={"content": "hi"})
    assert _answer(via_lane) == _answer(via_route)
    assert via_lane.status_code == 409 and "running a turn" in via_lane.json()["error"]
    assert _lane(app).served == 1
