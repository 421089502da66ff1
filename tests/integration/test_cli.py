"""The ash-ray CLI against a real server: deploy, sessions, streaming send, health."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import API_KEY

pytestmark = pytest.mark.ray


def cli(server: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ash_ray", "--url", server, "--api-key", API_KEY, *args],
        capture_output=True, text=True, timeout=120,
    )


def test_cli_session_workflow(server: str, agent_dir: Path) -> None:
    deployed = cli(server, "deploy", str(agent_dir), "--name", "cli-agent")
    assert deployed.returncode == 0 and "deployed agent cli-agent" in deployed.stdout
    assert "cli-agent" in cli(server, "agent", "list").stdout
    created = cli(server, "session", "create", "cli-agent")
    sid = created.stdout.strip()
    assert created.returncode == 0 and len(sid) == 36
    sent = cli(server, "session", "send", sid, "hello from the cli")
    assert sent.returncode == 0 and sent.stdout.strip() == "echo: hello from the cli"
    tool = cli(server, "session", "send", sid, 'TOOL Bash {"command": "echo via-bash"}')
    assert "[tool Bash]" in tool.stderr and "tool said:" in tool.stdout
    listed = cli(server, "session", "list", "--agent", "cli-agent")
    assert sid in listed.stdout and "active" in listed.stdout
    assert "paused" in cli(server, "session", "pause", sid).stdout
    assert "active" in cli(server, "session", "resume", sid).stdout
    assert "ended" in cli(server, "session", "end", sid).stdout
    health = json.loads(cli(server, "health").stdout)
    assert health["status"] == "ok"


def test_cli_errors_are_clear(server: str) -> None:
    missing = cli(server, "session", "create", "no-such-agent")
    assert missing.returncode != 0 and "404" in missing.stderr and "not deployed" in missing.stderr
    bad = cli(server, "deploy", "/nonexistent/dir")
    assert bad.returncode != 0 and "CLAUDE.md" in bad.stderr
    down = subprocess.run(
        [sys.executable, "-m", "ash_ray", "--url", "http://127.0.0.1:9", "health"],
        capture_output=True, text=True, timeout=60,
    )
    assert down.returncode != 0 and "cannot reach" in down.stderr
