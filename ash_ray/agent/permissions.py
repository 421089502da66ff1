"""Permission rules: which tools the model is offered, and which calls may run.

Rules use Claude Code's syntax: ``Tool`` or ``Tool(specifier)``.

* ``Bash(npm test:*)`` prefix of the command (``npm test``, ``npm test -- -x``, not
  ``npm testing``); ``Bash(git status)`` exactly that command; ``Bash(npm run *)``
  a glob; ``Bash`` or ``Bash(*)`` any command. A compound command (``&&``, ``||``,
  ``;``, ``|``, ``&``, newlines, ``$(...)``, backticks) is split and every part is
  checked. This is best effort against a model, not a security boundary: the
  sandbox is the boundary.
* ``Read(./docs/**)``, ``Edit(src/*.py)``, ``Write(out/**)``: a glob over the path
  relative to the workspace (``./x``, ``/x`` and ``x`` are workspace-relative,
  ``//x`` is the absolute path ``/x``, ``~/x`` is under HOME = the workspace; a
  pattern without ``/`` matches at any depth, as in .gitignore). ``Read`` rules
  cover every reading tool (Read, Glob, Grep, LS; Glob and Grep also skip files a
  rule forbids; under ``allow: ["Read(./docs/**)"]`` a Grep of the whole workspace
  runs but only searches docs/), ``Edit`` rules cover Edit and Write, ``Write``
  rules Write only.
* ``Skill(name)``: the skill name; ``Task(name)``: the subagent type.
* ``WebFetch(domain:example.com)``: the URL's host is that domain or under it
  (checked again on every redirect).
* MCP tools: ``mcp__github`` or ``mcp__github__*`` cover every tool of the server
  ``github``, ``mcp__github__create_issue`` one tool.
* Rules for tools we do not have are accepted and ignored.

Decision, since we run headless and nobody can answer a permission prompt:

1. ``deny`` wins: a call matching a deny rule is refused.
2. Tools an ``allow`` rule mentions are restricted to what their allow rules match
   (``allow: ["Bash(npm test:*)"]`` means Bash may run ``npm test`` and nothing
   else). Tools no allow rule mentions stay allowed: the sandbox confines them.
3. Session ``allowed_tools`` (names or rules) limits the tools *offered* to the model
   to those named; its rules with a specifier act as extra allow rules.
   ``disallowed_tools``: a bare name removes the tool, a rule is an extra deny rule.

``mode`` is the session's ``permissionMode``: ``default`` (the rules above),
``acceptEdits`` (edit tools are not restricted by allow rules; deny rules still
apply), ``bypassPermissions`` (no rule applies; only the session's tool lists do:
the sandbox still confines every call) and ``plan`` (read-only tools only, enforced
by the caller, which knows which tools are read-only; the rules apply as in default).

A refused call never runs; the model gets an error tool_result saying why.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ash_ray.agent.pathglob import glob_match
from ash_ray.errors import AgentInvalid

READ_TOOLS = frozenset({"Read", "Glob", "Grep", "LS"})
# Tools that walk a directory: allow rules filter what they return instead of refusing.
WALKERS = frozenset({"Glob", "Grep", "LS"})
EDIT_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})
PATH_INPUT = {
    "Read": "file_path",
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
}
MODES = frozenset({"default", "acceptEdits", "plan", "bypassPermissions"})
_RULE = re.compile(r"^\s*([A-Za-z_][\w.*-]*)\s*(?:\((.*)\))?\s*$", re.S)
_OPERATORS = frozenset({"&&", "||", ";", ";;", "|", "|&", "&", "(", ")"})


@dataclass(frozen=True)
class Rule:
    """One parsed rule: the tool it names and its specifier (None: the whole tool)."""

    tool: str
    specifier: str | None = None

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Parse ``Tool`` or ``Tool(spec)``; raises ValueError on anything else."""
        match = _RULE.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"not a permission rule: {text!r} (want Tool or Tool(spec))")
        spec = match.group(2)
        spec = spec.strip() if spec is not None else None
        return cls(match.group(1), None if spec in (None, "", "*") else spec)

    def covers(self, tool: str) -> bool:
        """True when this rule speaks about ``tool`` (Read rules cover all readers)."""
        if self.tool == tool:
            return True
        if self.tool.startswith("mcp__"):
            # mcp__server and mcp__server__* cover every tool of that server.
            base = self.tool.removesuffix("*").removesuffix("__")
            return tool.startswith(base + "__") and (
                self.tool.endswith("*") or base.count("__") == 1
            )
        return (self.tool == "Read" and tool in READ_TOOLS) or (
            self.tool == "Edit" and tool in EDIT_TOOLS
        )

    def __str__(self) -> str:
        return self.tool if self.specifier is None else f"{self.tool}({self.specifier})"


@dataclass(frozen=True)
class PermissionRules:
    """The ``permissions`` of an agent's ``.claude/settings.json``."""

    allow: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()

    @classmethod
    def from_settings(cls, permissions: Mapping[str, Any] | None) -> PermissionRules:
        """Build from the parsed ``permissions`` object; raises AgentInvalid if malformed."""
        permissions = permissions or {}
        out: dict[str, tuple[Rule, ...]] = {}
        for key in ("allow", "deny"):
            items = permissions.get(key) or []
            if not isinstance(items, list):
                raise AgentInvalid(f"permissions.{key} must be a list of rules")
            try:
                out[key] = tuple(Rule.parse(item) for item in items)
            except ValueError as exc:
                raise AgentInvalid(f"permissions.{key}: {exc}") from None
        return cls(allow=out["allow"], deny=out["deny"])


def bash_segments(command: str) -> list[str]:
    """Split a shell command into the simple commands a rule must be checked against."""
    # Backticks and newlines separate commands; shlex would glue them into one word.
    prepared = command.replace("`", " ; ").replace("\n", " ; ").replace("$(", "$ ( ")
    try:
        lexer = shlex.shlex(prepared, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return [command.strip()]
    segments: list[str] = []
    current: list[str] = []
    for token in tokens:
        if token in _OPERATORS:
            if current:
                segments.append(" ".join(current))
            current = []
        else:
            current.append(token)
    if current:
        segments.append(" ".join(current))
    return segments or [command.strip()]


def _bash_matches(spec: str, segment: str) -> bool:
    if spec.endswith(":*"):
        prefix = spec[:-2].strip()
        return segment == prefix or segment.startswith(prefix + " ")
    if "*" in spec:
        return re.fullmatch(".*".join(re.escape(p) for p in spec.split("*")), segment) is not None
    return segment == spec


def _path_pattern(spec: str) -> str:
    if spec.startswith("//"):
        return spec[1:]
    for prefix in ("~/", "./", "/"):
        if spec.startswith(prefix):
            return spec[len(prefix) :]
    return spec if "/" in spec else "**/" + spec


def relative_target(workspace: Path, path: str) -> str:
    """The workspace-relative POSIX form of a tool's path argument (absolute if outside).

    Lexical only: the file tools resolve symlinks themselves and refuse escapes.
    """
    raw = path or "."
    if raw == "~" or raw.startswith("~/"):
        raw = "." + raw[1:]
    joined = os.path.normpath(os.path.join(workspace, raw))
    root = os.path.normpath(workspace)
    if joined == root:
        return "."
    if joined.startswith(root + os.sep):
        return joined[len(root) + 1 :]
    return joined


def domain_matches(domain: str, url: str) -> bool:
    """True when ``url``'s host is ``domain`` or a subdomain (``*.x`` also means under x)."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    want = domain.strip().lower().removeprefix("*.").rstrip(".")
    return bool(want) and (host == want or host.endswith("." + want))


class PermissionPolicy:
    """The rules of one turn: agent settings plus the session's tool lists (module doc)."""

    def __init__(
        self,
        rules: PermissionRules,
        *,
        allowed_tools: Sequence[str] | None = None,
        disallowed_tools: Sequence[str] | None = None,
        mode: str | None = None,
    ) -> None:
        allow, deny = list(rules.allow), list(rules.deny)
        self.mode = mode if mode in MODES else "default"
        self._offered: list[Rule] | None = None
        self._removed: list[Rule] = []
        for text in allowed_tools or ():
            rule = Rule.parse(text)
            self._offered = [*(self._offered or []), Rule(rule.tool)]
            if rule.specifier is not None:
                allow.append(rule)
        for text in disallowed_tools or ():
            rule = Rule.parse(text)
            if rule.specifier is None:
                self._removed.append(rule)
            else:
                deny.append(rule)
        self.allow: tuple[Rule, ...] = tuple(allow)
        self.deny: tuple[Rule, ...] = tuple(deny)

    @staticmethod
    def _names(rules: Iterable[Rule], name: str) -> bool:
        # A bare name removes or offers that tool only (Read does not mean Grep here),
        # except MCP server rules, which name a group of tools.
        return any(r.tool == name or (r.tool.startswith("mcp__") and r.covers(name)) for r in rules)

    def offered(self, names: Iterable[str]) -> list[str]:
        """The subset of tool ``names`` the model may see, in the given order."""
        return [
            name
            for name in names
            if not self._names(self._removed, name)
            and (self._offered is None or self._names(self._offered, name))
        ]

    def check(self, tool: str, tool_input: Mapping[str, Any], workspace: Path) -> str | None:
        """None when the call may run, else the reason it may not (for the model)."""
        if tool not in self.offered([tool]):
            return f"Permission denied: the {tool} tool is not available in this session."
        if self.mode == "bypassPermissions":
            return None
        for rule in self.deny:
            if rule.covers(tool) and self._matches(rule, tool, tool_input, workspace):
                return f"Permission to use {tool} has been denied by the rule {rule}."
        allows = [rule for rule in self.allow if rule.covers(tool) and tool not in WALKERS]
        if self.mode == "acceptEdits" and tool in EDIT_TOOLS:
            allows = []
        if allows and not self._allowed(allows, tool, tool_input, workspace):
            listed = ", ".join(str(r) for r in allows)
            return f"Permission denied: this {tool} call matches none of the rules ({listed})."
        return None

    def _allowed(
        self, allows: list[Rule], tool: str, tool_input: Mapping[str, Any], workspace: Path
    ) -> bool:
        if tool == "Bash":
            # Every part of a compound command must be allowed, each by any rule.
            segments = bash_segments(str(tool_input.get("command", "")))
            return all(
                any(r.specifier is None or _bash_matches(r.specifier, seg) for r in allows)
                for seg in segments
            )
        return any(self._matches(rule, tool, tool_input, workspace) for rule in allows)

    def path_allowed(self, tool: str, relative: str) -> bool:
        """Whether ``tool`` may touch the workspace-relative path (filters Glob/Grep/LS)."""
        for rule in self.deny:
            if rule.covers(tool) and self._path_rule(rule, relative):
                return False
        allows = [rule for rule in self.allow if rule.covers(tool)]
        return not allows or any(self._path_rule(rule, relative) for rule in allows)

    def _matches(
        self,
        rule: Rule,
        tool: str,
        tool_input: Mapping[str, Any],
        workspace: Path,
    ) -> bool:
        spec = rule.specifier
        if spec is None:
            return True
        if tool == "Bash":
            # One matching part is enough: a deny rule denies the whole command.
            segments = bash_segments(str(tool_input.get("command", "")))
            return any(_bash_matches(spec, segment) for segment in segments)
        if tool in READ_TOOLS or tool in EDIT_TOOLS:
            key = PATH_INPUT.get(tool, "path")
            return self._path_rule(
                rule, relative_target(workspace, str(tool_input.get(key) or "."))
            )
        if tool == "Skill":
            return str(tool_input.get("skill", "")) == spec
        if tool == "Task":
            return str(tool_input.get("subagent_type", "")) == spec
        if tool == "WebFetch" and spec.startswith("domain:"):
            return domain_matches(spec.removeprefix("domain:"), str(tool_input.get("url", "")))
        return False

    @staticmethod
    def _path_rule(rule: Rule, relative: str) -> bool:
        if rule.specifier is None:
            return True
        return glob_match(_path_pattern(rule.specifier), relative)
