"""Upload routes over ASGI without Ray: body limits per route, base64 and size refusals,
and the cold path on a real snapshot archive (the registry is the in-memory fake)."""

from __future__ import annotations

import base64
import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ash_ray.api.app import create_api
from ash_ray.session import workspace as snapshots
from tests.unit.test_api_routes import KEY, FakeContext


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture()
def cold(tmp_path: Path) -> FakeContext:
    ctx = FakeContext(tmp_path)
    ctx.settings = ctx.settings.model_copy(update={
        "max_body_bytes": 4096, "max_attachment_size": 20_000,
        "max_upload_file_bytes": 3000, "max_upload_batch_bytes": 5000,
    })
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("seed")
    reg: Any = ctx.registry
    reg.snapshot = snapshots.archive(ws)
    reg.attachments = []
    reg.do_get_snapshot = lambda sid: (reg.do_get_session(sid), reg.snapshot)[1]
    reg.do_replace_snapshot = lambda sid, data: setattr(reg, "snapshot", data)
    reg.do_put_attachment = lambda record, data: reg.attachments.append((record, data))
    return ctx


@pytest.fixture()
async def client(cold: FakeContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api(cold))  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ash", headers={"Authorization": f"Bearer {KEY}"}
    ) as c:
        yield c


async def _session(client: httpx.AsyncClient) -> str:
    r = await client.post("/api/sessions", json={"agent": "a"})
    return str(r.json()["session"]["id"])


async def test_attachment_body_limit_follows_the_attachment_size(
    client: httpx.AsyncClient, cold: FakeContext
) -> None:
    sid = await _session(client)
    data = bytes(range(256)) * 70  # 17,920 bytes: a body far over ASH_MAX_BODY_BYTES (4096)
    r = await client.post(f"/api/sessions/{sid}/attachments",
                          json={"filename": "x.bin", "content": b64(data)})
    assert r.status_code == 201, r.text
    stored = cold.registry.attachments  # type: ignore[attr-defined]
    assert stored[0][1] == data
    # and the copy in the (cold) workspace
    r = await client.get(f"/api/sessions/{sid}/files/attachments/x.bin")
    assert r.content == data and r.headers["x-ash-source"] == "snapshot"
    r = await client.post(f"/api/sessions/{sid}/attachments",
                          json={"filename": "x.bin", "content": b64(data * 2)})
    assert r.status_code == 413
    r = await client.post(f"/api/sessions/{sid}/exec", json={"command": "x" * 6000})
    assert r.status_code == 413  # other routes keep the general limit


async def test_file_and_batch_limits(client: httpx.AsyncClient) -> None:
    sid = await _session(client)
    url = f"/api/sessions/{sid}/files"
    r = await client.post(url, json={"files": [{"path": "big", "content": b64(bytes(3001))}]})
    assert r.status_code == 413 and "files[0].content ('big')" in r.json()["error"]
    two = [{"path": f"f{i}", "content": b64(bytes(2900))} for i in range(2)]
    r = await client.post(url, json={"files": two})
    assert r.status_code == 413 and "batch" in r.json()["error"]
    r = await client.post(url, json={"files": []})
    assert r.status_code == 400
    r = await client.post(url, json={"files": [{"path": "ok", "content": "@@@"}]})
    assert r.status_code == 400 and "not valid base64" in r.json()["error"]
    listed = (await client.get(url)).json()
    assert listed == {"files": [{"path": "notes.txt", "size": 4,
                                 "modifiedAt": listed["files"][0]["modifiedAt"]}],
                      "source": "snapshot"}  # nothing of the refused batches was written


async def test_cold_bundle_restore_updates_the_snapshot(
    client: httpx.AsyncClient, cold: FakeContext
) -> None:
    sid = await _session(client)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("restored.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    r = await client.post(f"/api/sessions/{sid}/workspace", json={"bundle": b64(buf.getvalue())})
    assert r.json()["message"] == "Workspace saved as snapshot"
    r = await client.get(f"/api/sessions/{sid}/files/restored.txt", params={"format": "json"})
    assert r.json() == {"path": "restored.txt", "content": "hi", "size": 2, "source": "snapshot"}
