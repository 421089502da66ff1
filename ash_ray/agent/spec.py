"""An agent folder, read once: prompt, permissions, skills, MCP servers.

Layout (Claude Code's)::

    CLAUDE.md                       system prompt (required)
    .claude/settings.json           {"permissions": {"allow": [...], "deny": [...],
                                     "defaultMode": "..."}, "env": {...},
                                     "model": "...", "hooks": {...}}
    .claude/settings.local.json     same keys; its rules and hooks are added
    .claude/skills/<name>/SKILL.md  front matter (name, description) + skill text
    .claude/agents/<name>.md        subagent: front matter (name, description, tools,
                                     model) + its system prompt
    .mcp.json                       {"mcpServers": {...}} (see :mod:`.mcp`)

Anything unusable raises AgentInvalid naming the file, so a broken agent fails at
deploy time rather than in the middle of a session.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ash_ray.agent.hooks import HookMatcher, parse_hooks
from ash_ray.agent.mcp import ServerConfig
from ash_ray.agent.permissions import PermissionRules
from ash_ray.errors import AgentInvalid

_KEY_LINE = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$")


@dataclass(frozen=True)
class Skill:
    """One skill: ``.claude/skills/<dir>/SKILL.md``."""

    name: str
    description: str
    body: str
    path: Path


@dataclass(frozen=True)
class SubagentDef:
    """One subagent: ``.claude/agents/<name>.md`` or an entry of the session's subagents.

    ``tools`` None means every tool of the parent but Task; ``model`` None or
    ``inherit`` means the parent's model; ``thinking`` and ``effort`` None mean the
    parent's (the session's ``subagents`` may set them; the Messages API's forms).
    """

    name: str
    description: str
    prompt: str
    tools: tuple[str, ...] | None = None
    model: str | None = None
    disallowed_tools: tuple[str, ...] = ()
    thinking: dict[str, Any] | None = None
    effort: str | None = None


def tool_list(raw: Any) -> tuple[str, ...] | None:
    """A subagent's ``tools``: "Read, Grep" or a list; absent or empty means all."""
    if raw is None or raw == "" or raw == []:
        return None
    items = raw.split(",") if isinstance(raw, str) else [str(x) for x in raw]
    names = tuple(x.strip() for x in items if x.strip())
    return names or None


@dataclass(frozen=True)
class AgentSpec:
    """Everything the loop needs to know about an agent folder."""

    name: str
    path: Path
    system_prompt: str
    permissions: PermissionRules = field(default_factory=PermissionRules)
    skills: tuple[Skill, ...] = ()
    mcp_servers: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    hooks: dict[str, tuple[HookMatcher, ...]] = field(default_factory=dict)
    subagents: tuple[SubagentDef, ...] = ()
    permission_mode: str | None = None

    def skill(self, name: str) -> Skill | None:
        """The skill called ``name``, if the agent has it."""
        return next((s for s in self.skills if s.name == name), None)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentInvalid(f"cannot read {path}: {exc}", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise AgentInvalid(f"{path} is not valid JSON: {exc}", path=str(path)) from None
    if not isinstance(data, dict):
        raise AgentInvalid(f"{path} must hold a JSON object", path=str(path))
    return data


@dataclass
class _Settings:
    permissions: PermissionRules
    env: dict[str, str]
    model: str | None
    hooks: dict[str, tuple[HookMatcher, ...]]
    mode: str | None


def _settings(folder: Path) -> _Settings:
    allow: list[Any] = []
    deny: list[Any] = []
    env: dict[str, str] = {}
    model: str | None = None
    mode: str | None = None
    hooks: dict[str, tuple[HookMatcher, ...]] = {}
    for name in ("settings.json", "settings.local.json"):
        path = folder / ".claude" / name
        if not path.is_file():
            continue
        data = _read_json(path)
        permissions = data.get("permissions") or {}
        if not isinstance(permissions, dict):
            raise AgentInvalid(f"{path}: permissions must be an object", path=str(path))
        try:
            rules = PermissionRules.from_settings(permissions)
        except AgentInvalid as exc:
            raise AgentInvalid(f"{path}: {exc}", path=str(path)) from None
        allow += rules.allow
        deny += rules.deny
        raw_env = data.get("env") or {}
        if not isinstance(raw_env, dict):
            raise AgentInvalid(f"{path}: env must be an object", path=str(path))
        env.update({str(k): str(v) for k, v in raw_env.items()})
        if isinstance(data.get("model"), str):
            model = data["model"]
        if isinstance(permissions.get("defaultMode"), str):
            mode = permissions["defaultMode"]
        try:
            for event, matchers in parse_hooks(data.get("hooks")).items():
                hooks[event] = hooks.get(event, ()) + matchers
        except ValueError as exc:
            raise AgentInvalid(f"{path}: {exc}", path=str(path)) from None
    rules = PermissionRules(allow=tuple(allow), deny=tuple(deny))
    return _Settings(rules, env, model, hooks, mode)


def _split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    if not text.startswith("---"):
        return {}, text
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            header, body = "".join(lines[1:i]), "".join(lines[i + 1 :])
            break
    else:
        raise AgentInvalid(f"{path}: front matter has no closing ---", path=str(path))
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError:
        # Skill descriptions often hold an unquoted ": " that strict YAML rejects.
        meta = _simple_front_matter(header, path)
    if not isinstance(meta, dict):
        raise AgentInvalid(f"{path}: front matter must be key: value lines", path=str(path))
    return meta, body.lstrip("\n")


def _simple_front_matter(header: str, path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for line in header.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _KEY_LINE.match(line)
        if match is None:
            raise AgentInvalid(f"{path}: bad front matter line {line!r}", path=str(path))
        meta[match.group(1)] = match.group(2).strip().strip("\"'")
    return meta


def _skills(folder: Path) -> tuple[Skill, ...]:
    root = folder / ".claude" / "skills"
    if not root.is_dir():
        return ()
    skills = []
    for skill_file in sorted(root.glob("*/SKILL.md")):
        try:
            text = skill_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentInvalid(f"cannot read {skill_file}: {exc}", path=str(skill_file)) from None
        meta, body = _split_front_matter(text, skill_file)
        skills.append(
            Skill(
                name=str(meta.get("name") or skill_file.parent.name),
                description=str(meta.get("description") or "").strip(),
                body=body,
                path=skill_file.parent,
            )
        )
    return tuple(skills)


def _subagents(folder: Path) -> tuple[SubagentDef, ...]:
    root = folder / ".claude" / "agents"
    if not root.is_dir():
        return ()
    found = []
    for md in sorted(root.glob("*.md")):
        try:
            text = md.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentInvalid(f"cannot read {md}: {exc}", path=str(md)) from None
        meta, body = _split_front_matter(text, md)
        model = meta.get("model")
        found.append(
            SubagentDef(
                name=str(meta.get("name") or md.stem),
                description=str(meta.get("description") or "").strip(),
                prompt=body.strip(),
                tools=tool_list(meta.get("tools")),
                model=str(model) if model else None,
            )
        )
    return tuple(found)


def load_agent(path: Path) -> AgentSpec:
    """Read the agent folder at ``path``; raises AgentInvalid when it is unusable."""
    folder = Path(path)
    if not folder.is_dir():
        raise AgentInvalid(f"agent path {folder} is not a directory", path=str(folder))
    prompt_file = folder / "CLAUDE.md"
    if not prompt_file.is_file():
        raise AgentInvalid(
            f"no CLAUDE.md in {folder}: an agent folder needs one (its system prompt)",
            path=str(folder),
        )
    try:
        system_prompt = prompt_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentInvalid(f"cannot read {prompt_file}: {exc}", path=str(folder)) from None
    settings = _settings(folder)
    mcp_servers: dict[str, Any] = {}
    mcp_file = folder / ".mcp.json"
    if mcp_file.is_file():
        servers = _read_json(mcp_file).get("mcpServers", {})
        if not isinstance(servers, dict):
            raise AgentInvalid(f"{mcp_file}: mcpServers must be an object", path=str(mcp_file))
        for name, entry in servers.items():
            try:
                ServerConfig.parse(str(name), entry)
            except ValueError as exc:
                raise AgentInvalid(f"{mcp_file}: {exc}", path=str(mcp_file)) from None
        mcp_servers = servers
    return AgentSpec(
        name=folder.resolve().name,
        path=folder.resolve(),
        system_prompt=system_prompt,
        permissions=settings.permissions,
        skills=_skills(folder),
        mcp_servers=mcp_servers,
        env=settings.env,
        model=settings.model,
        hooks=settings.hooks,
        subagents=_subagents(folder),
        permission_mode=settings.mode,
    )


def agent_network(spec: AgentSpec) -> bool | None:
    """False when the agent cuts its tools' network (``ASH_SANDBOX_NETWORK=false`` in the
    ``env`` of its ``.claude/settings.json``); None follows the server's setting. An agent
    can only close the network, never open it where the server has cut it."""
    value = spec.env.get("ASH_SANDBOX_NETWORK", "").strip().lower()
    return False if value in ("false", "0", "no", "off") else None
