"""Session files, workspace bundles, attachments and logs over HTTP, live and cold,
through Ash's own generated client modules where they cover the route."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import uuid
from collections.abc import Iterator

import httpx
import pytest
from ash_sdk.api.attachments import delete_api_attachments_id, get_api_attachments_id
from ash_sdk.api.sessions import (
    get_api_sessions_id_attachments,
    get_api_sessions_id_files,
    get_api_sessions_id_logs,
    get_api_sessions_id_workspace,
    post_api_sessions_id_attachments,
    post_api_sessions_id_files,
    post_api_sessions_id_workspace,
)
from ash_sdk.client import AuthenticatedClient
from ash_sdk.models import (
    PostApiSessionsIdAttachmentsBody,
    PostApiSessionsIdFilesBody,
    PostApiSessionsIdWorkspaceBody,
)

from tests.integration.conftest import API_KEY, Target

MiB = 1024 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def sdk(target: Target) -> Iterator[AuthenticatedClient]:
    with AuthenticatedClient(
        base_url=str(target.http.base_url).rstrip("/"), token=API_KEY,
        timeout=httpx.Timeout(120),  # binary 200s are "unexpected" to the generated modules
    ) as client:
        yield client


@pytest.fixture
def sid(target: Target) -> Iterator[str]:
    r = target.http.post("/api/sessions", json={"agent": target.agent})
    assert r.status_code == 201, r.text
    session_id: str = r.json()["session"]["id"]
    yield session_id
    target.http.delete(f"/api/sessions/{session_id}")


def upload(sdk: AuthenticatedClient, sid: str, files: dict[str, bytes], target: str = ".") -> dict:
    body = PostApiSessionsIdFilesBody.from_dict({
        "files": [{"path": p, "content": b64(d)} for p, d in files.items()],
        "targetPath": target,
    })
    r = post_api_sessions_id_files.sync_detailed(uuid.UUID(sid), client=sdk, body=body)
    assert r.status_code == 200, r.content
    out: dict = json.loads(r.content)
    return out


def listing(sdk: AuthenticatedClient, sid: str) -> tuple[set[str], str]:
    got = get_api_sessions_id_files.sync(uuid.UUID(sid), client=sdk)
    assert got is not None and not hasattr(got, "error"), got
    return {f.path for f in got.files}, str(got.source)


def test_files_live_then_cold_then_live(target: Target, sdk: AuthenticatedClient, sid: str) -> None:
    http = target.http
    # live: write, list, read raw and as JSON
    first = {"résumé.txt": b"caf\xc3\xa9\n", "nested/b.bin": bytes(range(256))}
    out = upload(sdk, sid, first, "out")
    assert out["source"] == "sandbox"
    assert [f["written"] for f in out["files"]] == [True, True]
    paths, source = listing(sdk, sid)
    assert source == "sandbox" and {"out/résumé.txt", "out/nested/b.bin", "notes.txt"} <= paths
    r = http.get(f"/api/sessions/{sid}/files/out/résumé.txt")
    assert r.status_code == 200 and r.content == b"caf\xc3\xa9\n"
    assert r.headers["content-length"] == "6" and r.headers["x-ash-source"] == "sandbox"
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9.txt" in r.headers["content-disposition"]
    j = http.get(f"/api/sessions/{sid}/files/out/nested/b.bin", params={"format": "json"}).json()
    assert j["size"] == 256 and j["source"] == "sandbox"

    # tool output shows in the log, live
    r = http.post(f"/api/sessions/{sid}/exec", json={"command": "echo from-tool; echo oops >&2"})
    assert r.status_code == 200, r.text
    logs = get_api_sessions_id_logs.sync(uuid.UUID(sid), client=sdk)
    assert logs is not None and not hasattr(logs, "error"), logs
    texts = [(str(ln.level), ln.text) for ln in logs.logs]
    assert ("stdout", "from-tool") in texts and ("stderr", "oops") in texts
    assert any(level == "system" and text.startswith("$ echo") for level, text in texts)

    # cold: the snapshot answers, and takes writes and deletes
    assert http.post(f"/api/sessions/{sid}/stop").status_code == 200
    paths, source = listing(sdk, sid)
    assert source == "snapshot" and "out/résumé.txt" in paths
    r = http.get(f"/api/sessions/{sid}/files/out/nested/b.bin")
    assert r.content == bytes(range(256)) and r.headers["x-ash-source"] == "snapshot"
    assert upload(sdk, sid, {"cold.txt": b"written cold"})["source"] == "snapshot"
    r = http.delete(f"/api/sessions/{sid}/files/out/nested/b.bin")
    assert r.json() == {"path": "out/nested/b.bin", "deleted": True, "source": "snapshot"}
    cold_logs = http.get(f"/api/sessions/{sid}/logs", params={"after": -1}).json()["logs"]
    assert [ln["text"] for ln in cold_logs] == [ln.text for ln in logs.logs]
    after = cold_logs[1]["index"]
    assert http.get(f"/api/sessions/{sid}/logs", params={"after": after}).json()["logs"] == (
        cold_logs[2:]
    )

    # live again: the cold changes are in the resumed workspace
    assert http.post(f"/api/sessions/{sid}/resume").status_code == 200
    r = http.post(f"/api/sessions/{sid}/exec", json={"command": "cat cold.txt; ls out/nested"})
    assert r.json()["stdout"] == "written cold"  # out/nested: empty
    assert listing(sdk, sid)[1] == "sandbox"
    indexes = [ln["index"] for ln in http.get(f"/api/sessions/{sid}/logs").json()["logs"]]
    assert indexes == list(range(indexes[0], indexes[0] + len(indexes)))  # continued, no gaps

    # ended: still readable from its snapshot
    assert http.delete(f"/api/sessions/{sid}").status_code == 200
    assert listing(sdk, sid) == ({"notes.txt", "CLAUDE.md", "out/résumé.txt", "cold.txt"},
                                 "snapshot")


def _bundle(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_workspace_bundles_both_ways(target: Target, sdk: AuthenticatedClient, sid: str) -> None:
    upload(sdk, sid, {".env": b"SECRET=1\n", "keep.txt": b"kept"})
    r = get_api_sessions_id_workspace.sync_detailed(uuid.UUID(sid), client=sdk)
    assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert {"keep.txt", "notes.txt"} <= names and ".env" not in names

    def restore(entries: dict[str, bytes]) -> dict:
        body = PostApiSessionsIdWorkspaceBody(bundle=b64(_bundle(entries)))
        r = post_api_sessions_id_workspace.sync_detailed(uuid.UUID(sid), client=sdk, body=body)
        assert r.status_code == 200, r.content
        return r.parsed.to_dict()  # type: ignore[union-attr]

    assert restore({"restored/live.txt": b"L"})["message"] == "Workspace restored to live sandbox"
    assert target.http.get(f"/api/sessions/{sid}/files/restored/live.txt").content == b"L"
    assert target.http.post(f"/api/sessions/{sid}/stop").status_code == 200
    assert restore({"restored/cold.txt": b"C"})["message"] == "Workspace saved as snapshot"
    r = get_api_sessions_id_workspace.sync_detailed(uuid.UUID(sid), client=sdk)
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        assert {"restored/live.txt", "restored/cold.txt"} <= set(tar.getnames())
    assert r.headers["x-ash-source"] == "snapshot"


def test_attachments(target: Target, sdk: AuthenticatedClient, sid: str) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(1000)
    body = PostApiSessionsIdAttachmentsBody.from_dict(
        {"filename": "../../pic.png", "content": b64(png), "mimeType": "image/png"}
    )
    made = post_api_sessions_id_attachments.sync(uuid.UUID(sid), client=sdk, body=body)
    att = made.attachment  # type: ignore[union-attr]
    assert (att.filename, att.size, att.message_id) == ("pic.png", len(png), "unlinked")
    listed = get_api_sessions_id_attachments.sync(uuid.UUID(sid), client=sdk)
    assert [a.id for a in listed.attachments] == [att.id]  # type: ignore[union-attr]
    r = get_api_attachments_id.sync_detailed(uuid.UUID(str(att.id)), client=sdk)
    assert r.status_code == 200 and r.content == png
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"] == "image/png"
    # copied into the workspace, where the agent's tools find it
    assert target.http.get(f"/api/sessions/{sid}/files/attachments/pic.png").content == png

    # the attachment limit (10 MiB by default) is reachable through the body limit
    big = bytes(10 * MiB)
    r = target.http.post(f"/api/sessions/{sid}/attachments",
                         json={"filename": "big.bin", "content": b64(big)})
    assert r.status_code == 201, r.text[:300]
    r = target.http.post(f"/api/sessions/{sid}/attachments",
                         json={"filename": "big.bin", "content": b64(big + b"x")})
    assert r.status_code == 413 and "content" in r.json()["error"]

    # durable: still there when the session is cold; deleted on request
    assert target.http.post(f"/api/sessions/{sid}/stop").status_code == 200
    assert get_api_attachments_id.sync_detailed(uuid.UUID(str(att.id)), client=sdk).content == png
    r = delete_api_attachments_id.sync_detailed(uuid.UUID(str(att.id)), client=sdk)
    assert r.status_code == 204
    r = target.http.get(f"/api/attachments/{att.id}")
    assert r.status_code == 404 and r.json()["statusCode"] == 404


def test_refused_inputs(target: Target, sid: str) -> None:
    http = target.http

    def refused(r: httpx.Response, status: int, words: str) -> None:
        assert r.status_code == status, r.text
        assert words in r.json()["error"], r.json()

    # traversal and absolute paths, on read, write and delete
    refused(http.get(f"/api/sessions/{sid}/files/..%2F..%2Fetc%2Fpasswd"), 400, "'..'")
    refused(http.get(f"/api/sessions/{sid}/files/%2Fetc%2Fpasswd"), 400, "absolute")
    refused(http.delete(f"/api/sessions/{sid}/files/..%2Fnotes.txt"), 400, "'..'")
    refused(http.post(f"/api/sessions/{sid}/files",
                      json={"files": [{"path": "../x", "content": b64(b"x")}]}), 400, "'..'")
    refused(http.post(f"/api/sessions/{sid}/files", json={
        "files": [{"path": "x", "content": b64(b"x")}], "targetPath": "/tmp"}), 400, "absolute")
    # symlinks a tool made that lead outside
    r = http.post(f"/api/sessions/{sid}/exec",
                  json={"command": "ln -s /etc/passwd leak && ln -s /tmp outdir"})
    assert r.status_code == 200, r.text
    refused(http.get(f"/api/sessions/{sid}/files/leak"), 400, "outside the workspace")
    refused(http.post(f"/api/sessions/{sid}/files",
                      json={"files": [{"path": "outdir/planted", "content": b64(b"x")}]}),
            400, "outside the workspace")
    # bad payloads
    refused(http.post(f"/api/sessions/{sid}/files",
                      json={"files": [{"path": "a.txt", "content": "not base64!"}]}),
            400, "files[0].content ('a.txt') is not valid base64")
    refused(http.post(f"/api/sessions/{sid}/workspace", json={"bundle": b64(b"PK\x03\x04zip")}),
            400, "not gzip")
    refused(http.post(f"/api/sessions/{sid}/workspace", json={"bundle": ""}), 400, "empty")
    escaping = _bundle({"ok.txt": b"1", "../../escaped.txt": b"2"})
    refused(http.post(f"/api/sessions/{sid}/workspace", json={"bundle": b64(escaping)}),
            400, "bundle rejected")
    refused(http.get(f"/api/sessions/{sid}/files/ok.txt"), 404, "does not exist")
    link = io.BytesIO()
    with tarfile.open(fileobj=link, mode="w:gz") as tar:
        info = tarfile.TarInfo("evil")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../etc"
        tar.addfile(info)
    refused(http.post(f"/api/sessions/{sid}/workspace", json={"bundle": b64(link.getvalue())}),
            400, "bundle rejected")
    refused(http.post(f"/api/sessions/{sid}/attachments",
                      json={"filename": "a", "content": ""}), 400, "empty")
    refused(http.post(f"/api/sessions/{sid}/attachments",
                      json={"filename": "..", "content": b64(b"x")}), 400, "file name")
    refused(http.get(f"/api/sessions/{uuid.uuid4()}/files"), 404, "does not exist")
    refused(http.get(f"/api/sessions/{sid}/files/nope.txt"), 404, "does not exist")
