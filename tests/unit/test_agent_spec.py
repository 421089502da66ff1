"""Reading an agent folder: CLAUDE.md, settings, skills, MCP servers."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from ash_ray.agent import AgentSpec, Rule, load_agent
from ash_ray.errors import AgentInvalid


def make(root: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return root


def test_full_agent_folder(tmp_path: Path) -> None:
    settings = {
        "permissions": {"allow": ["Bash(npm test:*)", "Read(./docs/**)"], "deny": ["Bash(rm:*)"]},
        "env": {"MODE": "test", "LEVEL": 3},
        "model": "claude-haiku-4-5",
    }
    mcp = {"mcpServers": {"files": {"command": "npx", "args": ["server"]}}}
    skill = "---\nname: deploy\ndescription: Ship it: carefully\n---\n\nStep 1: build.\n"
    root = make(
        tmp_path / "my-agent",
        {
            "CLAUDE.md": "You help.",
            ".claude/settings.json": json.dumps(settings),
            ".claude/settings.local.json": json.dumps({"permissions": {"deny": ["Edit(.env)"]}}),
            ".claude/skills/deploy/SKILL.md": skill,
            ".claude/skills/plain/SKILL.md": "No front matter here.",
            ".mcp.json": json.dumps(mcp),
        },
    )
    spec = load_agent(root)
    assert isinstance(spec, AgentSpec)
    assert spec.name == "my-agent" and spec.path == root.resolve()
    assert spec.system_prompt == "You help."
    assert spec.permissions.allow == (Rule("Bash", "npm test:*"), Rule("Read", "./docs/**"))
    assert spec.permissions.deny == (Rule("Bash", "rm:*"), Rule("Edit", ".env"))
    assert spec.env == {"MODE": "test", "LEVEL": "3"}
    assert spec.model == "claude-haiku-4-5"
    assert spec.mcp_servers == mcp["mcpServers"]
    deploy = spec.skill("deploy")
    assert deploy is not None
    assert deploy.description == "Ship it: carefully" and deploy.body == "Step 1: build.\n"
    plain = spec.skill("plain")
    assert plain is not None and plain.body == "No front matter here." and plain.description == ""
    # Specs travel to Ray actors.
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_minimal_folder(tmp_path: Path) -> None:
    spec = load_agent(make(tmp_path / "a", {"CLAUDE.md": "hi"}))
    assert spec.permissions.allow == () and spec.skills == () and spec.mcp_servers == {}
    assert spec.model is None and spec.env == {}


def test_missing_claude_md_names_the_path(tmp_path: Path) -> None:
    root = make(tmp_path / "empty", {"README.md": "x"})
    with pytest.raises(AgentInvalid) as info:
        load_agent(root)
    assert str(root) in str(info.value) and "CLAUDE.md" in str(info.value)
    assert info.value.http_status == 400


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(AgentInvalid):
        load_agent(tmp_path / "nope")


@pytest.mark.parametrize(
    ("name", "body"),
    [
        (".claude/settings.json", "{not json"),
        (".claude/settings.json", "[1, 2]"),
        (".claude/settings.json", json.dumps({"permissions": {"allow": "Bash"}})),
        (".claude/settings.json", json.dumps({"permissions": {"deny": ["Bash(unclosed"]}})),
        (".claude/settings.json", json.dumps({"permissions": {"deny": [42]}})),
        (".claude/settings.json", json.dumps({"env": ["A=1"]})),
        (".mcp.json", "{"),
        (".mcp.json", json.dumps({"mcpServers": []})),
        (".mcp.json", json.dumps({"mcpServers": {"x": {"args": ["no command"]}}})),
        (".claude/settings.json", json.dumps({"hooks": {"PreToolUse": [{"hooks": [{}]}]}})),
        (".claude/settings.json", json.dumps({"hooks": {"OnCoffee": []}})),
        (".claude/skills/x/SKILL.md", "---\nname: x\n"),
        (".claude/skills/x/SKILL.md", "---\n: [bad\n---\nbody"),
    ],
)
def test_malformed_files_raise_agent_invalid(tmp_path: Path, name: str, body: str) -> None:
    root = make(tmp_path / "a", {"CLAUDE.md": "hi", name: body})
    with pytest.raises(AgentInvalid) as info:
        load_agent(root)
    assert name.split("/")[-1] in str(info.value)


def test_hooks_subagents_and_default_mode_are_read(tmp_path: Path) -> None:
    hooks = {"PreToolUse": [{"matcher": "Edit|Write", "hooks": [{"command": "x", "timeout": 5}]}]}
    local = {"hooks": {"PreToolUse": [{"hooks": [{"type": "command", "command": "y"}]}]}}
    root = make(
        tmp_path / "a",
        {
            "CLAUDE.md": "hi",
            ".claude/settings.json": json.dumps(
                {"hooks": hooks, "permissions": {"defaultMode": "plan"}}
            ),
            ".claude/settings.local.json": json.dumps(local),
            ".claude/agents/rev.md": "---\nname: reviewer\ndescription: Reviews\n"
            "tools: Read, Grep\nmodel: opus\n---\nYou review.\n",
            ".claude/agents/plain.md": "Just a prompt.\n",
        },
    )
    spec = load_agent(root)
    first, second = spec.hooks["PreToolUse"]
    assert first.matches("Write") and not first.matches("Bash") and second.matches("Bash")
    assert first.commands[0].timeout_s == 5
    assert spec.permission_mode == "plan"
    plain, rev = spec.subagents
    assert (rev.name, rev.tools, rev.model, rev.prompt) == (
        "reviewer",
        ("Read", "Grep"),
        "opus",
        "You review.",
    )
    assert (plain.name, plain.tools, plain.prompt) == ("plain", None, "Just a prompt.")
