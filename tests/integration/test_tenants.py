"""Tenants over HTTP on SQLite and Postgres: keys, the admin route, and isolation.

Two tenants get keys from the admin route, deploy an agent of the same name from
different folders, and each tries every agent, session, key and credential route with
the other's ids: all 404 (or absent from lists), and each session runs its own agent.
So too queue items, attachments, eval cases, usage and analytics.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_for
from tests.integration.conftest import API_KEY, Target
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray


@dataclass
class Tenant:
    name: str
    key_id: str
    http: httpx.Client


@pytest.fixture()
def tenants(target: Target) -> Iterator[tuple[Tenant, Tenant]]:
    """Two fresh tenants (unique names: the database outlives the test), keys minted by
    the admin (ASH_API_KEY)."""
    made: list[Tenant] = []
    for role in ("acme", "globex"):
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        r = target.http.post("/api/admin/api-keys", json={"tenant": name, "label": role})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["tenantId"] == name and body["key"].startswith("ash_")
        client = httpx.Client(
            base_url=str(target.http.base_url),
            headers={"Authorization": f"Bearer {body['key']}"},
            timeout=60,
        )
        made.append(Tenant(name, body["id"], client))
    yield made[0], made[1]
    for t in made:
        t.http.close()


def _agent_folder(root: Path, prompt: str) -> str:
    root.mkdir()
    (root / "CLAUDE.md").write_text(prompt)
    return str(root)


def test_keys_resolve_to_tenants_and_only_the_admin_mints_for_others(
    target: Target, tenants: tuple[Tenant, Tenant]
) -> None:
    acme, globex = tenants
    r = acme.http.post("/api/admin/api-keys", json={"tenant": globex.name})
    assert r.status_code == 403, r.text
    assert acme.http.get("/api/admin/api-keys", params={"tenant": globex.name}).status_code == 403
    # a tenant mints its own keys; lists show its keys only, never a key itself
    own = acme.http.post("/api/api-keys", json={"label": "second"})
    assert own.status_code == 201 and own.json()["tenantId"] == acme.name
    listed = acme.http.get("/api/api-keys").json()
    assert {k["id"] for k in listed} == {acme.key_id, own.json()["id"]}
    assert all(own.json()["key"] not in str(k) for k in listed)
    assert {k["id"] for k in globex.http.get("/api/api-keys").json()} == {globex.key_id}
    assert "env" in {k["id"] for k in target.http.get("/api/api-keys").json()}
    admin_view = target.http.get("/api/admin/api-keys", params={"tenant": acme.name}).json()
    assert {k["id"] for k in admin_view} == {acme.key_id, own.json()["id"]}
    # another tenant's key id is a 404; its owner revokes it, and it stops working
    assert globex.http.delete(f"/api/api-keys/{own.json()['id']}").status_code == 404
    second = httpx.Client(
        base_url=str(target.http.base_url),
        headers={"Authorization": f"Bearer {own.json()['key']}"},
    )
    with second:
        assert second.get("/api/agents").status_code == 200
        assert acme.http.delete(f"/api/api-keys/{own.json()['id']}").status_code == 204
        assert second.get("/api/agents").status_code == 401
    with httpx.Client(base_url=str(target.http.base_url)) as anonymous:
        assert anonymous.get("/api/agents").status_code == 401
        bad = {"Authorization": "Bearer ash_not-a-key"}
        assert anonymous.get("/api/sessions", headers=bad).status_code == 401
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200


def test_same_agent_name_in_two_tenants_never_mixes(
    target: Target, tenants: tuple[Tenant, Tenant], tmp_path: Path, fake_model
) -> None:  # type: ignore[no-untyped-def]
    acme, globex = tenants
    folders = {
        acme.name: _agent_folder(tmp_path / "a", "You are ACME's agent."),
        globex.name: _agent_folder(tmp_path / "g", "You are GLOBEX's agent."),
    }
    for t in tenants:
        r = t.http.post("/api/agents", json={"name": "helper", "path": folders[t.name]})
        assert r.status_code == 201 and r.json()["agent"]["version"] == 1, r.text
        agents = t.http.get("/api/agents").json()["agents"]
        assert [(a["name"], a["path"]) for a in agents] == [("helper", folders[t.name])]
    sid = {t.name: new_session(t.http, "helper") for t in tenants}
    for t in tenants:
        assert send(t.http, sid[t.name], "who are you?")[-1][1] == "done"
        system = str(fake_model.message_requests[-1]["system"])
        assert ("ACME" in system) == (t is acme) and ("GLOBEX" in system) == (t is globex)
        got = t.http.get(f"/api/sessions/{sid[t.name]}").json()["session"]
        assert got["tenantId"] == t.name and got["agentName"] == "helper"
        listed = t.http.get("/api/sessions", params={"agent": "helper"}).json()["sessions"]
        assert [s["id"] for s in listed] == [sid[t.name]]
    # the default tenant (ASH_API_KEY) sees neither session
    default_ids = {s["id"] for s in target.http.get("/api/sessions").json()["sessions"]}
    assert not default_ids & set(sid.values())


def test_every_route_answers_404_for_another_tenants_ids(
    target: Target, tenants: tuple[Tenant, Tenant], tmp_path: Path
) -> None:
    acme, globex = tenants
    folder = _agent_folder(tmp_path / "a", "You are ACME's agent.")
    assert acme.http.post("/api/agents", json={"name": "solo", "path": folder}).status_code == 201
    sid = new_session(acme.http, "solo")
    cred = acme.http.post("/api/credentials", json={"type": "anthropic", "key": "sk-x"})
    assert cred.status_code == 201, cred.text
    cid = cred.json()["credential"]["id"]
    s = f"/api/sessions/{sid}"
    attempts = [
        ("GET", s, None), ("DELETE", s, None), ("POST", f"{s}/pause", None),
        ("POST", f"{s}/stop", None), ("POST", f"{s}/resume", None), ("POST", f"{s}/fork", None),
        ("PATCH", f"{s}/config", {"model": "m"}), ("POST", f"{s}/interrupt", None),
        ("POST", f"{s}/compact", None), ("GET", f"{s}/messages", None),
        ("POST", f"{s}/messages", {"content": "hi"}), ("GET", f"{s}/events", None),
        ("GET", f"{s}/stream", None), ("POST", f"{s}/exec", {"command": "true"}),
        ("GET", "/api/agents/solo", None), ("PATCH", "/api/agents/solo", {}),
        ("DELETE", "/api/agents/solo", None), ("DELETE", f"/api/credentials/{cid}", None),
        ("DELETE", f"/api/api-keys/{acme.key_id}", None),
    ]  # fmt: skip
    for method, path, body in attempts:
        r = globex.http.request(method, path, json=body)
        assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text}"
    # a session naming another tenant's credential is refused
    assert globex.http.post("/api/agents", json={"name": "solo", "path": folder}).status_code == 201
    r = globex.http.post("/api/sessions", json={"agent": "solo", "credentialId": cid})
    assert r.status_code == 400 and cid in r.json()["error"], r.text
    # lists: nothing of acme's
    assert sid not in {x["id"] for x in globex.http.get("/api/sessions").json()["sessions"]}
    assert globex.http.get("/api/credentials").json()["credentials"] == []
    # and acme still has everything
    assert acme.http.get(s).json()["session"]["status"] == "active"
    assert [c["id"] for c in acme.http.get("/api/credentials").json()["credentials"]] == [cid]
    assert acme.http.get("/api/agents/solo").status_code == 200


def test_queue_attachments_evals_and_usage_are_the_tenants(
    target: Target, tenants: tuple[Tenant, Tenant], tmp_path: Path
) -> None:
    acme, globex = tenants
    for t, root in ((acme, "a"), (globex, "g")):  # the same agent name in both tenants
        folder = _agent_folder(tmp_path / root, f"You are {t.name}'s agent.")
        assert t.http.post("/api/agents", json={"name": "jobs", "path": folder}).status_code == 201
    r = acme.http.post("/api/queue", json={"agentName": "jobs", "prompt": "acme's turn"})
    assert r.status_code == 201 and r.json()["item"]["tenantId"] == acme.name, r.text
    qid = r.json()["item"]["id"]

    def done() -> dict[str, object] | None:
        item = acme.http.get(f"/api/queue/{qid}").json()["item"]
        return item if item["status"] in ("completed", "failed") else None

    item = wait_for(done, timeout_s=60, what="acme's queue item")
    assert item["status"] == "completed", item
    sid = str(item["sessionId"])  # the session the worker opened: acme's
    assert acme.http.get(f"/api/sessions/{sid}").json()["session"]["tenantId"] == acme.name
    att = acme.http.post(f"/api/sessions/{sid}/attachments", json={
        "filename": "secret.txt", "content": base64.b64encode(b"acme only").decode()})
    assert att.status_code == 201, att.text
    aid = att.json()["attachment"]["id"]
    case = acme.http.post("/api/agents/jobs/eval-cases", json={"question": "q?"})
    assert case.status_code == 201, case.text
    cid = case.json()["case"]["id"]

    for method, path, body in (
        ("GET", f"/api/queue/{qid}", None), ("DELETE", f"/api/queue/{qid}", None),
        ("GET", f"/api/attachments/{aid}", None), ("DELETE", f"/api/attachments/{aid}", None),
        ("GET", f"/api/agents/jobs/eval-cases/{cid}", None),
        ("PATCH", f"/api/agents/jobs/eval-cases/{cid}", {"question": "mine"}),
        ("DELETE", f"/api/agents/jobs/eval-cases/{cid}", None),
        ("GET", f"/api/sessions/{sid}", None),
        ("POST", "/api/queue", {"agentName": "jobs", "prompt": "x", "sessionId": sid}),
    ):  # fmt: skip
        r = globex.http.request(method, path, json=body)
        assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text}"
        assert r.json()["statusCode"] == 404
    assert globex.http.get("/api/queue").json()["items"] == []
    assert globex.http.get("/api/agents/jobs/eval-cases").json()["cases"] == []
    events = globex.http.get("/api/usage", params={"limit": 1000}).json()["events"]
    assert events == []  # globex ran no turn; acme's are not its
    assert globex.http.get("/api/usage", params={"sessionId": sid}).json()["events"] == []
    assert globex.http.get("/api/usage/stats").json()["stats"]["totalInputTokens"] == 0
    seen = globex.http.get("/api/analytics").json()
    assert seen["agents"]["total"] == 1 and seen["sessions"]["total"] == 0
    assert seen["usage"]["totalMessages"] == 0
    # acme's own view has its turn, its attachment and its case, untouched
    mine = acme.http.get("/api/usage/stats").json()["stats"]
    assert mine["totalMessages"] == 1 and mine["totalInputTokens"] > 0
    assert {e["sessionId"] for e in acme.http.get("/api/usage").json()["events"]} == {sid}
    assert acme.http.get("/api/analytics").json()["sessions"]["total"] == 1
    assert acme.http.get(f"/api/attachments/{aid}").content == b"acme only"
    assert acme.http.get(f"/api/agents/jobs/eval-cases/{cid}").json()["case"]["question"] == "q?"


def test_cli_keys_and_credentials(server: str) -> None:
    def cli(key: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ash_ray", "--url", server, "--api-key", key, *args],
            capture_output=True, text=True, timeout=120, input=stdin,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip

    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    made = cli(API_KEY, "keys", "create", "--tenant", tenant, "--label", "from-cli")
    assert made.returncode == 0 and "not shown again" in made.stdout, made.stderr
    key = next(line for line in made.stdout.splitlines() if line.startswith("ash_"))
    listed = cli(key, "keys", "list")
    assert listed.returncode == 0 and "from-cli" in listed.stdout and key not in listed.stdout
    added = cli(key, "credentials", "add", "anthropic", "--label", "cli", stdin="sk-from-stdin\n")
    assert added.returncode == 0, added.stderr
    cid = added.stdout.strip().splitlines()[-1]
    shown = cli(key, "credentials", "list")
    assert cid[:8] in shown.stdout and "sk-from-stdin" not in shown.stdout
    assert cli(key, "credentials", "delete", cid).returncode == 0
    key_id = next(
        k["id"] for k in httpx.get(
            server + "/api/api-keys", headers={"Authorization": f"Bearer {key}"}
        ).json() if k["label"] == "from-cli"
    )  # fmt: skip
    assert cli(key, "keys", "revoke", key_id).returncode == 0
    assert cli(key, "keys", "list").returncode != 0  # revoked: 401
