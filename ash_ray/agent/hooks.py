"""Claude Code hooks from ``.claude/settings.json``: commands run at points of a turn.

Shape (Claude Code's)::

    {"hooks": {"PreToolUse": [{"matcher": "Bash|Write",
                               "hooks": [{"type": "command", "command": "...",
                                          "timeout": 30}]}]}}

Events run here: ``PreToolUse`` and ``PostToolUse`` (matcher against the tool name:
empty or ``*`` matches every tool, ``Edit|Write`` a list of names, anything else is a
regular expression searched in the name, as Claude Code does), ``UserPromptSubmit`` and
``Stop`` (no matcher). Each command runs inside the session's sandbox (same limits and
environment, plus ``CLAUDE_PROJECT_DIR``) with Claude Code's JSON on stdin
(``session_id``, ``transcript_path``, ``cwd``, ``hook_event_name``, ``permission_mode``
and the event's own keys) and a time limit (its ``timeout`` in seconds, else the
setting). Matching commands of one event run concurrently.

Outcome, as Claude Code reads it: exit 2 blocks, with stderr as the reason; exit 0
with a JSON object on stdout is read for ``decision: "block"`` / ``reason``,
``continue: false`` / ``stopReason``, and ``hookSpecificOutput`` (``permissionDecision``
allow / deny / ask with ``permissionDecisionReason``, ``additionalContext``); plain
stdout of a ``UserPromptSubmit`` hook is context for the model. Any other exit code, a
timeout or a hook that cannot start is logged and ignored (a non-blocking error).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ash_ray.errors import AshError

logger = logging.getLogger(__name__)

EVENTS = frozenset(
    {
        "PreToolUse",
        "PostToolUse",
        "UserPromptSubmit",
        "Stop",
        "SubagentStop",
        "Notification",
        "PreCompact",
        "SessionStart",
        "SessionEnd",
    }
)
_NAMES = re.compile(r"^[\w|-]+$")
MAX_REASON_CHARS = 10_000


@dataclass(frozen=True)
class HookCommand:
    """One ``{"type": "command", "command": ..., "timeout": ...}`` entry."""

    command: str
    timeout_s: float | None = None


@dataclass(frozen=True)
class HookMatcher:
    """One matcher group of an event and its commands."""

    matcher: str
    commands: tuple[HookCommand, ...]

    def matches(self, tool_name: str | None) -> bool:
        """Claude Code's matcher syntax (module doc); events without a tool always match."""
        pattern = self.matcher.strip()
        if tool_name is None or pattern in ("", "*"):
            return True
        if _NAMES.match(pattern):
            return tool_name in pattern.split("|")
        try:
            return re.search(pattern, tool_name) is not None
        except re.error:
            return False


def parse_hooks(raw: Any) -> dict[str, tuple[HookMatcher, ...]]:
    """The ``hooks`` object of a settings file; raises ValueError when malformed."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("hooks must be an object of event name -> matcher list")
    out: dict[str, tuple[HookMatcher, ...]] = {}
    for event, groups in raw.items():
        if event not in EVENTS:
            raise ValueError(f"hooks: unknown event {event!r}")
        if not isinstance(groups, list):
            raise ValueError(f"hooks.{event} must be a list")
        matchers = []
        for group in groups:
            if not isinstance(group, dict) or not isinstance(group.get("hooks"), list):
                raise ValueError(f"hooks.{event}: each entry needs a hooks list")
            commands = []
            for hook in group["hooks"]:
                if not isinstance(hook, dict) or not isinstance(hook.get("command"), str):
                    raise ValueError(f"hooks.{event}: each hook needs a command")
                if hook.get("type", "command") != "command":
                    raise ValueError(f"hooks.{event}: only type command is supported")
                timeout = hook.get("timeout")
                commands.append(HookCommand(hook["command"], float(timeout) if timeout else None))
            matchers.append(HookMatcher(str(group.get("matcher") or ""), tuple(commands)))
        out[event] = tuple(matchers)
    return out


@dataclass
class HookOutcome:
    """What the hooks of one event decided (module doc)."""

    blocked: bool = False
    reasons: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)
    allowed: bool = False

    @property
    def reason(self) -> str:
        return "\n".join(r for r in self.reasons if r)[:MAX_REASON_CHARS]

    def block(self, reason: str) -> None:
        self.blocked = True
        self.reasons.append(reason.strip())


def _read_json(outcome: HookOutcome, event: str, stdout: str) -> None:
    text = stdout.strip()
    data: Any = None
    if text.startswith("{"):
        with contextlib.suppress(ValueError):
            data = json.loads(text)
    if not isinstance(data, dict):
        if text and event == "UserPromptSubmit":
            outcome.context.append(text)
        return
    if data.get("continue") is False:
        outcome.block(str(data.get("stopReason") or f"{event} hook stopped the agent"))
    if data.get("decision") == "block":
        outcome.block(str(data.get("reason") or f"blocked by a {event} hook"))
    elif data.get("decision") == "approve":
        outcome.allowed = True
    specific = data.get("hookSpecificOutput")
    if isinstance(specific, dict):
        decision = specific.get("permissionDecision")
        why = str(specific.get("permissionDecisionReason") or "")
        if decision == "deny":
            outcome.block(why or f"denied by a {event} hook")
        elif decision == "ask":
            # Headless: nobody can answer, so asking is refusing.
            outcome.block(why or f"a {event} hook asks for approval, which nobody can give here")
        elif decision == "allow":
            outcome.allowed = True
        if specific.get("additionalContext"):
            outcome.context.append(str(specific["additionalContext"]))


async def _run_one(sandbox: Any, hook: HookCommand, payload: bytes, timeout_s: float) -> Any:
    """(exit code, stdout, stderr) of one hook command, or None when it failed to finish."""
    env = {"CLAUDE_PROJECT_DIR": str(sandbox.workspace)}
    try:
        spawned = await sandbox.spawn(hook.command, env=env)
    except (AshError, OSError) as exc:
        logger.warning("hook %r could not start: %s", hook.command, exc)
        return None
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await spawned.proc.communicate(payload)
    except TimeoutError:
        logger.warning("hook %r timed out after %.0fs", hook.command, timeout_s)
        return None
    except OSError as exc:
        logger.warning("hook %r failed: %s", hook.command, exc)
        return None
    finally:
        await spawned.kill()
    return spawned.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def run_hooks(
    sandbox: Any,
    matchers: tuple[HookMatcher, ...],
    payload: Mapping[str, Any],
    *,
    default_timeout_s: float,
    tool_name: str | None = None,
) -> HookOutcome:
    """Run every command of ``matchers`` that matches ``tool_name``; combine their outcomes."""
    outcome = HookOutcome()
    commands = [c for m in matchers if m.matches(tool_name) for c in m.commands]
    if not commands:
        return outcome
    event = str(payload["hook_event_name"])
    body = json.dumps(payload, default=str).encode()
    results = await asyncio.gather(
        *(_run_one(sandbox, c, body, c.timeout_s or default_timeout_s) for c in commands)
    )
    for command, result in zip(commands, results, strict=True):
        if result is None:
            continue
        code, out, err = result
        if code == 2:
            outcome.block(err or f"blocked by the {event} hook {command.command!r}")
        elif code == 0:
            _read_json(outcome, event, out)
        else:
            logger.info("%s hook %r exited %s: %s", event, command.command, code, err[:500])
    return outcome
