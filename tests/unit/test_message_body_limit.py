"""The message route's own body limit (ASH_MESSAGE_BODY_MAX_MB, 32 MiB by default) over
ASGI without Ray: a PDF of some 15 MiB in a content block reaches the session; a bigger
body is a 413 naming the limit, announced or streamed; other routes keep 10 MiB."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ash_ray.api.app import create_api
from ash_ray.config import Settings
from ash_ray.handles import Turn
from tests.unit.test_api_routes import KEY, FakeContext, FakeSession

MIB = 1024 * 1024


class TurnSession(FakeSession):
    """A session whose turn records its prompt and ends at once."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[Any] = []

    async def start_turn(self, prompt: Any, options: dict[str, Any], heartbeat_s: float) -> Turn:
        self.prompts.append(prompt)

        async def rest() -> AsyncIterator[Any]:
            yield _ready([(2, "done", {})])

        return Turn(first=[(1, "session_start", {})], rest=rest())  # type: ignore[arg-type]


async def _ready(value: Any) -> Any:
    return value


@pytest.fixture()
def ctx(tmp_path: Path) -> FakeContext:
    ctx = FakeContext(tmp_path)
    # The shipped limits: 10 MiB in general, 32 MiB for a message.
    ctx.settings = ctx.settings.model_copy(
        update={"max_body_bytes": Settings.model_fields["max_body_bytes"].default}
    )
    ctx.session_client = TurnSession()
    return ctx


@pytest.fixture()
async def client(ctx: FakeContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api(ctx))  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ash", headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    ) as c:
        yield c


async def _session(client: httpx.AsyncClient) -> str:
    r = await client.post("/api/sessions", json={"agent": "a"})
    return str(r.json()["session"]["id"])


def pdf_message(decoded_bytes: int) -> dict[str, Any]:
    pdf = b"%PDF-1.4\n" + b"0" * (decoded_bytes - 9)
    return {"content": [
        {"type": "text", "text": "Summarize this."},
        {"type": "document", "source": {
            "type": "base64", "media_type": "application/pdf",
            "data": base64.b64encode(pdf).decode(),
        }},
    ]}  # fmt: skip


async def test_a_20_mib_message_reaches_the_session_and_40_mib_is_a_413(
    client: httpx.AsyncClient, ctx: FakeContext
) -> None:
    sid = await _session(client)
    body = pdf_message(15 * MIB)  # about 20 MiB of JSON: over the general 10 MiB
    r = await client.post(f"/api/sessions/{sid}/messages", json=body)
    assert r.status_code == 200, r.text[:300]
    assert "event: done" in r.text
    (prompt,) = ctx.session_client.prompts  # type: ignore[attr-defined]
    document = next(b for b in prompt if b["type"] == "document")
    assert base64.b64decode(document["source"]["data"]).startswith(b"%PDF-")
    assert len(document["source"]["data"]) == len(body["content"][1]["source"]["data"])

    r = await client.post(f"/api/sessions/{sid}/messages", json=pdf_message(30 * MIB))
    assert r.status_code == 413
    assert r.json()["error"].endswith(f"over the {32 * MIB}-byte limit")
    assert len(ctx.session_client.prompts) == 1  # type: ignore[attr-defined]


async def test_a_streamed_oversized_message_is_a_413_too(
    client: httpx.AsyncClient, ctx: FakeContext
) -> None:
    sid = await _session(client)
    chunk = b" " * MIB

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"content": "hi"'
        for _ in range(40):
            yield chunk
        yield b"}"

    r = await client.post(
        f"/api/sessions/{sid}/messages", content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert ctx.session_client.prompts == []  # type: ignore[attr-defined]


async def test_other_routes_keep_the_general_limit(client: httpx.AsyncClient) -> None:
    sid = await _session(client)
    big = "x" * (12 * MIB)
    r = await client.post(f"/api/sessions/{sid}/exec", json={"command": big})
    assert r.status_code == 413
    assert r.json()["error"].endswith(f"over the {10 * MIB}-byte limit")
    r = await client.post("/api/queue", json={"agentName": "a", "prompt": big})
    assert r.status_code == 413
