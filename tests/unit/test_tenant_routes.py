"""Tenant routes without Ray: what the ingress answers before it reaches the registry."""

from __future__ import annotations

from pathlib import Path

import httpx

from ash_ray.api.app import create_api
from ash_ray.config import load_settings
from tests.unit.test_api_routes import KEY, FakeContext


async def _post(ctx: FakeContext, path: str, body: dict[str, object], key: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_api(ctx))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://ash") as c:
        return await c.post(path, json=body, headers={"Authorization": f"Bearer {key}"})


async def test_no_credential_key_is_a_clear_500(tmp_path: Path) -> None:
    ctx = FakeContext(tmp_path)  # ASH_API_KEY set, ASH_CREDENTIAL_KEY not
    r = await _post(ctx, "/api/credentials", {"type": "anthropic", "key": "k"}, KEY)
    assert r.status_code == 500 and "ASH_CREDENTIAL_KEY is not set" in r.json()["error"]


async def test_without_ash_api_key_there_is_no_admin(tmp_path: Path) -> None:
    ctx = FakeContext(tmp_path)
    ctx.settings = load_settings(data_dir=tmp_path)  # auth off
    r = await _post(ctx, "/api/admin/api-keys", {"tenant": "acme"}, "")
    assert r.status_code == 403 and "set ASH_API_KEY" in r.json()["error"]
