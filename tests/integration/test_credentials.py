"""Stored credentials over HTTP on SQLite and Postgres, with Ash's own client.

A credential's key is sealed at rest (neither the SQLite file nor the Postgres rows hold
it), never answered back, used for the session's model calls (the fake model sees it in
its key header; a ``custom`` one also moves the endpoint), and never visible in the
session's sandbox.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from ash_sdk import AuthenticatedClient
from ash_sdk.api.credentials import (
    delete_api_credentials_id,
    get_api_credentials,
    post_api_credentials,
)
from ash_sdk.models import PostApiCredentialsBody

from ash_ray.config import Settings
from ash_ray.testing.fake_anthropic import FakeAnthropic
from tests.integration.conftest import API_KEY, MODEL_KEY, Target
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray


@pytest.fixture()
def sdk(target: Target) -> Iterator[AuthenticatedClient]:
    with AuthenticatedClient(base_url=str(target.http.base_url), token=API_KEY) as client:
        yield client


@pytest.fixture()
def custom_model() -> Iterator[tuple[FakeAnthropic, str]]:
    """A second model endpoint that accepts only its own key."""
    key = f"sk-custom-{uuid.uuid4().hex}"
    fake = FakeAnthropic(port=0, api_key=key)
    fake.start()
    yield fake, key
    fake.stop()


def _add(sdk: AuthenticatedClient, type_: str, key: str, **extra: Any) -> dict[str, Any]:
    body = PostApiCredentialsBody(type_=type_, key=key, label=f"{type_} test")  # type: ignore[arg-type]
    for name, value in extra.items():
        body[name] = value
    r = post_api_credentials.sync_detailed(client=sdk, body=body)
    assert r.status_code == 201, r.content
    assert key.encode() not in r.content
    out: dict[str, Any] = r.parsed.to_dict()["credential"]  # type: ignore[union-attr]
    return out


def _keys_sent(fake: FakeAnthropic) -> list[str | None]:
    """The model key of each Messages call (the SDK sends x-api-key or a Bearer token)."""
    return [
        r.headers.get("x-api-key") or r.headers.get("authorization", "").removeprefix("Bearer ")
        for r in fake.requests
        if r.path == "/v1/messages"
    ]


def _listed(sdk: AuthenticatedClient) -> dict[str, dict[str, Any]]:
    found = get_api_credentials.sync(client=sdk)
    assert found is not None
    return {c["id"]: c for c in found.to_dict()["credentials"]}


def _stored_text(target: Target, settings: Settings, request: pytest.FixtureRequest) -> bytes:
    """Everything the database holds, as bytes (SQLite: the files; Postgres: all rows)."""
    if target.store == "sqlite":
        return b"".join(p.read_bytes() for p in settings.data_dir.glob("ash.db*"))
    url = request.getfixturevalue("postgres_url")

    async def dump() -> bytes:
        conn = await asyncpg.connect(url)
        try:
            rows = []
            for table in ("credentials", "sessions", "events", "messages", "api_keys"):
                rows += await conn.fetch(f"SELECT row_to_json(t)::text AS j FROM {table} t")
            return "".join(r["j"] for r in rows).encode()
        finally:
            await conn.close()

    return asyncio.run(dump())


def test_credential_key_drives_the_model_and_nothing_else_sees_it(
    target: Target, sdk: AuthenticatedClient, custom_model: tuple[FakeAnthropic, str],
    settings: Settings, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    fake, key = custom_model
    cred = _add(sdk, "custom", key, baseUrl=fake.url)
    assert _listed(sdk)[cred["id"]]["lastUsedAt"] is None
    sid = new_session(target.http, target.agent, credentialId=cred["id"])
    assert _listed(sdk)[cred["id"]]["lastUsedAt"] is not None
    frames = send(target.http, sid, "hello with my own key")
    assert frames[-1][1] == "done" and "echo: hello with my own key" in str(frames)
    seen = _keys_sent(fake)
    assert seen and set(seen) == {key}
    # the sandbox has neither the credential nor the server's keys, in its env or any
    # process environment it can read
    probe = "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'"
    r = target.http.post(f"/api/sessions/{sid}/exec", json={"command": probe})
    assert r.status_code == 200 and "PATH=" in r.json()["stdout"], r.text
    for secret in (key, MODEL_KEY, API_KEY, settings.credential_key.get_secret_value()):  # type: ignore[union-attr]
        assert secret not in r.text
    # nor does the database, and the API never answers it back
    stored = _stored_text(target, settings, request)
    assert key.encode() not in stored
    assert key not in target.http.get("/api/credentials").text
    assert target.http.delete(f"/api/sessions/{sid}").status_code == 200


def test_anthropic_credential_key_is_sent_to_the_server_endpoint(
    target: Target, sdk: AuthenticatedClient, fake_model: FakeAnthropic
) -> None:
    key = f"sk-ant-stored-{uuid.uuid4().hex}"
    cred = _add(sdk, "anthropic", key)
    sid = new_session(target.http, target.agent, credentialId=cred["id"])
    frames = send(target.http, sid, "hi")
    # The run's fake accepts only the server's key: the stored one is refused there,
    # which shows it (not ANTHROPIC_API_KEY) is what the session sent.
    assert frames[-1][1] == "done" and any(f[1] == "error" for f in frames)
    seen = _keys_sent(fake_model)
    assert seen and set(seen) == {key}


def test_credential_routes_and_refusals(target: Target, sdk: AuthenticatedClient) -> None:
    aws = '{"accessKeyId": "AK", "secretAccessKey": "SK", "region": "us-east-1"}'
    bedrock = _add(sdk, "bedrock", aws)
    openai = _add(sdk, "openai", "sk-openai")
    assert {bedrock["id"], openai["id"]} <= set(_listed(sdk))
    bad = target.http.post("/api/credentials", json={"type": "bedrock", "key": "not json"})
    assert bad.status_code == 400 and "bedrock" in bad.text
    assert target.http.post("/api/credentials", json={"type": "x", "key": "k"}).status_code == 400
    assert target.http.post("/api/credentials", json={"type": "anthropic"}).status_code == 400
    # openai keys are stored but cannot drive the Messages API loop
    with_openai = {"agent": target.agent, "credentialId": openai["id"]}
    r = target.http.post("/api/sessions", json=with_openai)
    assert r.status_code == 400 and "openai" in r.json()["error"]
    # deleted: 204, then 404, gone from the list, and refused by session create
    for cid in (bedrock["id"], openai["id"]):
        assert delete_api_credentials_id.sync_detailed(cid, client=sdk).status_code == 204
        assert delete_api_credentials_id.sync_detailed(cid, client=sdk).status_code == 404
        assert cid not in _listed(sdk)
    r = target.http.post("/api/sessions", json=with_openai)
    assert r.status_code == 400 and "does not exist" in r.json()["error"]
