"""Agents are data: deploy by upload or folder, files, env, config, versions, over HTTP.

Ash's generated client modules (``ash_sdk.api.agents``) drive the routes they cover;
plain httpx the rest (Ash's Python package has no module for them).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from ash_sdk.api.agents import (
    delete_api_agents_name,
    get_api_agents,
    get_api_agents_name,
    get_api_agents_name_files,
    post_api_agents,
)
from ash_sdk.client import AuthenticatedClient
from ash_sdk.models import PostApiAgentsBody, PostApiAgentsBodyFilesItem

from ash_ray.config import Settings
from ash_ray.testing.fake_anthropic import FakeAnthropic
from tests.integration.conftest import API_KEY, Target
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sdk(target: Target) -> AuthenticatedClient:
    return AuthenticatedClient(base_url=str(target.http.base_url).rstrip("/"), token=API_KEY)


def bash(http: httpx.Client, sid: str, command: str) -> str:
    frames = send(http, sid, "TOOL Bash " + json.dumps({"command": command}))
    results = [f[2] for f in frames if f[1] == "tool_result"]
    assert results, frames
    return json.dumps(results[0]["content"])


def last_system(fake: FakeAnthropic) -> str:
    system = fake.message_requests[-1]["system"]
    return system if isinstance(system, str) else " ".join(b["text"] for b in system)


def test_managed_agent_from_uploaded_files_runs_with_its_files_and_env(target: Target) -> None:
    name = unique("managed")
    body = PostApiAgentsBody(
        name=name,
        system_prompt="You are the managed test agent.",
        files=[
            PostApiAgentsBodyFilesItem(path="data/notes.md", content=b64("uploaded notes\n")),
            PostApiAgentsBodyFilesItem(path="run.sh", content=b64("#!/bin/sh\necho ran-it\n")),
        ],
    )
    body.additional_properties["env"] = {"AGENT_TOKEN": "s3cret-value"}
    created = post_api_agents.sync_detailed(client=sdk(target), body=body)
    assert created.status_code == 201, created.content
    agent = json.loads(created.content)["agent"]
    assert agent["version"] == 1 and agent["env"] == {"AGENT_TOKEN": "***"}
    assert "s3cret-value" not in created.content.decode()

    got = get_api_agents_name.sync(name, client=sdk(target))
    assert got is not None and got.agent.name == name
    listed = get_api_agents.sync(client=sdk(target))
    assert listed is not None and name in [a.name for a in listed.agents]
    files = get_api_agents_name_files.sync(name, client=sdk(target))
    assert files is not None
    assert sorted(f.path for f in files.files) == ["CLAUDE.md", "data/notes.md", "run.sh"]

    sid = new_session(target.http, name)
    out = bash(target.http, sid, "cat data/notes.md; ./run.sh; echo token=$AGENT_TOKEN")
    assert "uploaded notes" in out and "ran-it" in out and "token=s3cret-value" in out

    gone = delete_api_agents_name.sync_detailed(name, client=sdk(target))
    assert gone.status_code == 200
    assert target.http.get(f"/api/agents/{name}").status_code == 404


def test_agent_survives_its_folder_and_sessions_keep_their_version(
    target: Target, tmp_path: Path, fake_model: FakeAnthropic
) -> None:
    folder = tmp_path / "folder-agent"
    folder.mkdir()
    (folder / "CLAUDE.md").write_text("PROMPT-ONE\n")
    (folder / "data.txt").write_text("from-the-folder\n")
    (folder / "node_modules").mkdir()
    (folder / "node_modules" / "big.js").write_text("skipped\n")
    name = unique("folder")
    r = target.http.post("/api/agents", json={"name": name, "path": str(folder)})
    assert r.status_code == 201, r.text
    first = new_session(target.http, name)
    send(target.http, first, "hello one")
    assert "PROMPT-ONE" in last_system(fake_model)

    # Nothing after the deploy reads the folder: gone, and sessions still start.
    shutil.rmtree(folder)
    sid = new_session(target.http, name)
    out = bash(target.http, sid, "cat data.txt; ls")
    assert "from-the-folder" in out and "node_modules" not in out

    # A redeploy (by upload) is version 2; the older session keeps version 1 cold.
    two = [{"path": "CLAUDE.md", "content": b64("PROMPT-TWO")}]
    r = target.http.post("/api/agents", json={"name": name, "files": two})
    assert r.status_code == 201 and r.json()["agent"]["version"] == 2
    assert target.http.post(f"/api/sessions/{first}/stop").status_code == 200
    assert target.http.post(f"/api/sessions/{first}/resume").status_code == 200
    send(target.http, first, "hello again")
    assert "PROMPT-ONE" in last_system(fake_model)
    newer = new_session(target.http, name)
    send(target.http, newer, "hello two")
    assert "PROMPT-TWO" in last_system(fake_model)


def test_agent_files_api_versions_every_change_and_refuses_bad_input(target: Target) -> None:
    name = unique("files")
    http = target.http
    assert http.post("/api/agents", json={"name": name, "systemPrompt": "x"}).status_code == 201
    up = http.post(
        f"/api/agents/{name}/files",
        json={"files": [{"path": "docs/a.txt", "content": b64("alpha")},
                        {"path": "bin.dat", "content": b64(b"\xff\x00\xfe")}]},
    )  # fmt: skip
    assert up.status_code == 200 and up.json() == {"written": 2, "version": 2}
    j = http.get(f"/api/agents/{name}/files/docs/a.txt")
    assert j.json() == {"path": "docs/a.txt", "content": "alpha", "size": 5}
    raw = http.get(f"/api/agents/{name}/files/bin.dat", params={"format": "raw"})
    assert raw.content == b"\xff\x00\xfe"
    assert "filename*=UTF-8''bin.dat" in raw.headers["content-disposition"]
    assert raw.headers["x-content-type-options"] == "nosniff"
    gone = http.delete(f"/api/agents/{name}/files/docs/a.txt")
    assert gone.json() == {"deleted": True, "version": 3}
    assert http.get(f"/api/agents/{name}/files/docs/a.txt").status_code == 404
    assert http.get(f"/api/agents/{name}").json()["agent"]["version"] == 3

    def refused(files: list[dict[str, str]], status: int, words: str) -> None:
        r = http.post(f"/api/agents/{name}/files", json={"files": files})
        assert r.status_code == status and words in r.json()["error"], r.text

    refused([{"path": "../escape.txt", "content": b64("x")}], 400, "../escape.txt")
    refused([{"path": "/etc/passwd", "content": b64("x")}], 400, "/etc/passwd")
    refused([{"path": "ok.txt", "content": "not base64!"}], 400, "base64")
    r = http.get(f"/api/agents/{name}/files/a/../../x")
    assert r.status_code in (400, 404)
    r = http.post("/api/agents", json={"name": unique("bad"), "files": [
        {"path": "a/../../out", "content": b64("x")}]})  # fmt: skip
    assert r.status_code == 400 and "a/../../out" in r.json()["error"]
    assert http.get(f"/api/agents/{name}").json()["agent"]["version"] == 3, "no version on refusal"


def test_agent_env_config_and_patch(target: Target) -> None:
    name = unique("cfg")
    http = target.http
    assert http.post("/api/agents", json={"name": name, "systemPrompt": "p"}).status_code == 201
    assert http.get(f"/api/agents/{name}/config").json() == {"config": {}}
    r = http.patch(f"/api/agents/{name}/config", json={"a": 1, "b": {"x": 1}})
    assert r.json() == {"config": {"a": 1, "b": {"x": 1}}}
    r = http.patch(f"/api/agents/{name}/config", json={"b": 2})
    assert r.json() == {"config": {"a": 1, "b": 2}}
    r = http.patch(f"/api/agents/{name}", json={"env": {"K": "v"}, "config": {"c": 3}})
    assert r.status_code == 200 and r.json()["agent"]["env"] == {"K": "***"}
    assert r.json()["agent"]["version"] == 1, "env and config do not make a version"
    assert http.get(f"/api/agents/{name}/config").json()["config"] == {"a": 1, "b": 2, "c": 3}
    r = http.patch(f"/api/agents/{name}", json={"systemPrompt": "new prompt"})
    assert r.json()["agent"]["version"] == 2
    assert http.get(f"/api/agents/{name}/files/CLAUDE.md").json()["content"] == "new prompt"
    assert http.patch("/api/agents/nope-nope/config", json={}).status_code == 404
    bad = http.patch(f"/api/agents/{name}", json={"env": {"1BAD": "x"}})
    assert bad.status_code == 400


def test_agent_versions_and_the_active_prompt(target: Target, fake_model: FakeAnthropic) -> None:
    name = unique("ver")
    http = target.http
    r = http.post("/api/agents", json={"name": name, "systemPrompt": "FROM-CLAUDE-MD"})
    assert r.status_code == 201
    base = f"/api/agents/{name}/versions"
    assert http.get(base).json() == {"versions": []}
    v1 = http.post(base, json={"systemPrompt": "FROM-V1", "knowledgeFiles": ["k.md"]})
    assert v1.status_code == 201
    v1j = v1.json()["version"]
    assert (v1j["versionNumber"], v1j["name"], v1j["isActive"]) == (1, "v1", False)
    v2 = http.post(base, json={"cloneFrom": 1, "name": "second", "releaseNotes": "notes"})
    v2j = v2.json()["version"]
    assert (v2j["systemPrompt"], v2j["knowledgeFiles"]) == ("FROM-V1", ["k.md"])
    assert v2j["name"] == "second"
    assert http.post(base, json={"cloneFrom": 99}).status_code == 400
    assert http.get(f"{base}/{v1j['id']}").json()["version"]["versionNumber"] == 1
    assert http.get(f"{base}/42").status_code == 404
    p = http.patch(f"{base}/2", json={"systemPrompt": "FROM-V2"})
    assert p.json()["version"]["systemPrompt"] == "FROM-V2"

    sid = new_session(http, name)
    send(http, sid, "which prompt")
    assert "FROM-CLAUDE-MD" in last_system(fake_model)
    act = http.post(f"{base}/2/activate")
    assert act.json() == {"activated": True, "versionNumber": 2}
    sid = new_session(http, name)
    send(http, sid, "which prompt now")
    assert "FROM-V2" in last_system(fake_model)
    sid = new_session(http, name, systemPrompt="FROM-REQUEST")
    send(http, sid, "and now")
    assert "FROM-REQUEST" in last_system(fake_model)
    assert [v["isActive"] for v in http.get(base).json()["versions"]] == [False, True]

    assert http.delete(f"{base}/1").status_code == 204
    assert http.delete(f"{base}/1").status_code == 404
    assert http.get("/api/agents/nope-nope/versions").status_code == 404


def test_ash_cli_request_shapes(target: Target, settings: Settings) -> None:
    """What Ash's CLI sends (its npm package is not installable here): ``{name, path}``
    with a path relative to the data dir after copying the folder there, and ``{name,
    files, env}`` without a path."""
    name = unique("ashcli")
    data_dir = settings.data_dir if target.store == "sqlite" else settings.data_dir / "pg-node"
    dest = data_dir / "agents" / name
    dest.mkdir(parents=True)
    (dest / "CLAUDE.md").write_text("ash cli agent\n")
    r = target.http.post("/api/agents", json={"name": name, "path": f"agents/{name}"})
    assert r.status_code == 201, r.text
    r = target.http.post(
        "/api/agents",
        json={"name": name, "files": [{"path": "CLAUDE.md", "content": b64("v2")}],
              "env": {"FROM_DOTENV": "1"}},
    )  # fmt: skip
    assert r.status_code == 201 and r.json()["agent"]["version"] == 2
    assert r.json()["agent"]["env"] == {"FROM_DOTENV": "***"}
    missing = target.http.post("/api/agents", json={"name": name, "path": "agents/none"})
    assert missing.status_code == 400 and "CLAUDE.md" in missing.json()["error"]


def test_ash_ray_deploy_uploads_the_folder(server: str, tmp_path: Path) -> None:
    folder = tmp_path / "cli-upload"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (folder / "CLAUDE.md").write_text("uploaded by ash-ray deploy\n")
    (folder / "tool.py").write_text("print('hi')\n")
    (folder / ".env").write_text("A=from-env\nB=from-env\nC=from-env\n")
    (folder / ".env.local").write_text("B=from-local\nC=from-local\n")
    name = unique("upload")
    run = subprocess.run(
        [sys.executable, "-m", "ash_ray", "--url", server, "--api-key", API_KEY, "deploy",
         str(folder), "-n", name, "-e", "C=from-flag"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"deployed agent {name} v1" in run.stdout
    shutil.rmtree(folder)
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {API_KEY}"},
                      timeout=60) as http:
        files = [f["path"] for f in http.get(f"/api/agents/{name}/files").json()["files"]]
        assert files == ["CLAUDE.md", "tool.py"]
        assert http.get(f"/api/agents/{name}").json()["agent"]["env"] == {
            "A": "***", "B": "***", "C": "***"
        }
        sid = new_session(http, name)
        out = bash(http, sid, "echo $A $B $C; cat tool.py")
        assert "from-env from-local from-flag" in out and "print('hi')" in out
