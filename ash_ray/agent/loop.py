"""The agent loop: stream a model reply, run its tool calls, feed results back, repeat.

One :meth:`AgentLoop.run_turn` is one user prompt. It appends to the caller's
``conversation`` (Messages-API form, JSON-serialisable) as it goes and yields
:class:`AgentEvent` s shaped like the Claude Agent SDK's messages. The turn stops on:

* a reply without tool calls (``success``),
* ``max_turns`` model calls (``error_max_turns``),
* the estimated cost reaching ``max_budget_usd`` (``error_max_budget_usd``),
* the ``interrupt`` event (``interrupted``), noticed while the model streams, before
  each tool and during a tool (which is cancelled; Bash kills its process tree).

The conversation stays valid for the API on every stop: a reply cut off by an
interrupt keeps only its finished text blocks, and every tool_use gets a tool_result
("interrupted" when it did not run). A stop after tool results leaves a trailing
user message, which the API merges with the next prompt. Anthropic API errors
propagate after the SDK's own retries (``max_retries`` of the client given), except
"prompt is too long", which compacts the conversation and retries once.

Cost and length (see :mod:`.cache` and :mod:`.compact`): every request carries prompt
cache breakpoints, so each call reads the earlier prefix from the cache; when a call's
input would pass ``compact_threshold`` of ``context_window_tokens``, the older turns are
summarized first (a ``compact`` event). Several read-only tool calls of one reply run
concurrently (:func:`.tool_calls.run_tools`); each goes through :meth:`ToolTurn.call`.

Tools, modes and hooks (see :mod:`.toolbox`): the turn's tool set (built-ins, Skill,
Task, MCP tools started lazily), ``permissionMode``, and the ``UserPromptSubmit``,
``PreToolUse``, ``PostToolUse`` and ``Stop`` hooks come from :class:`AgentTools`, which
lives as long as the loop (a subagent's loop shares its parent's).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic

from ash_ray.agent import cache, subagents
from ash_ray.agent.compact import CompactResult, ContextSize, compact, context_of
from ash_ray.agent.messages import (
    AgentEvent,
    TurnOptions,
    assistant_message,
    result_message,
    system_prompt,
    text_of,
    tool_result_message,
    usage_of,
    user_message,
)
from ash_ray.agent.permissions import PermissionPolicy
from ash_ray.agent.pricing import cost_usd
from ash_ray.agent.spec import AgentSpec
from ash_ray.agent.stream import Reply, stream_reply
from ash_ray.agent.todo import todos_note
from ash_ray.agent.tool_calls import run_tools
from ash_ray.agent.toolbox import AgentTools, ToolTurn
from ash_ray.agent.tools import Tool, ToolContext
from ash_ray.config import Settings
from ash_ray.content import Prompt, prompt_text, with_text
from ash_ray.models import Usage
from ash_ray.sandbox import Sandbox

_TOO_LONG = "prompt is too long"


@dataclass
class _Turn:
    """What one turn fixed at its start, and what it spent so far."""

    model: str
    tools: dict[str, Tool]
    policy: PermissionPolicy
    ctx: ToolContext
    params: dict[str, Any]
    include_partial: bool
    calls: ToolTurn  # agenttools: the tool path (modes, hooks, MCP) and queued events
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0

    def spend(self, used: Usage) -> None:
        self.usage, self.cost = self.usage.add(used), self.cost + cost_usd(self.model, used)


@dataclass
class _Progress:
    """Where a turn stands between its model calls."""

    calls: int = 0
    api_s: float = 0.0
    final_text: str = ""
    subtype: str = "success"
    stop_hook_active: bool = False
    finished: bool = False


class AgentLoop:
    """Runs turns of one agent in one sandbox (see module doc).

    ``sandbox`` may be replaced between turns (the session does so when its env
    changes). ``model`` and ``last_usage`` describe the last turn. ``extra_tools`` are
    offered besides the built-ins (MCP tools, for instance), under the same rules.
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        spec: AgentSpec,
        sandbox: Sandbox,
        settings: Settings,
        *,
        session_id: str | None = None,
        extra_tools: Sequence[Tool] = (),
        tools: AgentTools | None = None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.sandbox = sandbox
        self.settings = settings
        self.session_id = session_id
        self.extra_tools = list(extra_tools)
        self.model: str = spec.model or settings.default_model
        self.last_usage = Usage()
        self.last_cost_usd = 0.0
        self.size = ContextSize(settings.compact_threshold * settings.context_window_tokens)
        # agenttools: MCP, hooks, modes, todos, subagents; a subagent's loop shares its parent's.
        self.tools = tools or AgentTools(client, spec, settings, session_id)

    async def aclose(self) -> None:
        """Stop what the session keeps between turns (MCP servers): pause, stop, end."""
        await self.tools.aclose()

    def _tag(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.session_id:
            data["session_id"] = self.session_id
        return data

    def _tagged(self, event: AgentEvent) -> AgentEvent:
        if event.type == "message":
            self._tag(event.data)
        return event

    async def _start(self, options: TurnOptions) -> _Turn:
        main = self.tools.main_agent(options)  # initialAgent: the main thread as a subagent
        if main is not None:
            agent_model = self.spec.model or self.settings.default_model
            options = subagents.main_thread(options, main, agent_model)
        model = options.model or self.spec.model or self.settings.default_model
        self.model = model
        # agenttools: the turn's tools (MCP started lazily), mode and hooks
        calls = await self.tools.begin_turn(
            self.sandbox, options, model, self._tag({}), self.extra_tools
        )
        policy, tools, ctx = calls.policy, calls.tools, calls.ctx
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": self.settings.max_tokens,
            "system": cache.mark_system(
                *system_prompt(self.spec, options, "Skill" in tools, self.sandbox.workspace)
            ),
        }
        if tools or calls.server_tools():
            definitions = [t.api() for t in tools.values()] + calls.server_tools()
            params["tools"] = cache.mark_tools(definitions)
        if options.thinking:
            params["thinking"] = options.thinking
        if options.effort:
            params["output_config"] = {"effort": options.effort}
        if options.betas:
            params["betas"] = list(options.betas)
        self.size.turn_fixed(params.get("system"), params.get("tools"))
        return _Turn(model, tools, policy, ctx, params, options.include_partial, calls)

    async def run_turn(
        self,
        conversation: list[dict[str, Any]],
        prompt: Prompt | None,
        options: TurnOptions,
        interrupt: asyncio.Event,
    ) -> AsyncIterator[AgentEvent]:
        """Run one prompt to the end of the turn, yielding events (see module doc).

        ``conversation`` is the full history; a compaction appends a boundary message
        to it (:mod:`.compact`), it never removes any. ``prompt=None`` continues a turn
        whose worker was lost: the conversation already ends with the user's side (the
        prompt or tool results), and the model is called again from there.
        """
        started = time.monotonic()
        self.tools.restore(conversation)  # a cold resume: the todo list of the history
        turn = await self._start(options)
        # agenttools: mcp_status events of the start; UserPromptSubmit hooks
        for event in turn.calls.drain():
            yield event
        blocked: str | None = None
        if prompt is not None:
            blocked, context = await turn.calls.prompt_hooks(prompt_text(prompt))
            asked = with_text(prompt, "\n".join(context)) if context else prompt
            conversation.append({"role": "user", "content": asked})
            # After the append: whoever sees this event finds the prompt in the history.
            yield AgentEvent("message", self._tag(user_message(prompt)))
        p = _Progress()
        self.last_usage, self.last_cost_usd = turn.usage, turn.cost
        while blocked is None and not p.finished:
            if (limit := self._limit(turn, options, interrupt, p.calls)) is not None:
                p.subtype = limit
                break
            async for event in self._step(turn, conversation, interrupt, p):
                yield event
        if blocked is not None:
            # agenttools: a UserPromptSubmit hook refused the prompt; no model call.
            conversation.pop()
            p.subtype, p.final_text = "error_during_execution", f"UserPromptSubmit hook: {blocked}"
        result = result_message(
            p.subtype,
            p.calls,
            p.final_text,
            turn.usage,
            turn.cost,
            options.output_format,
            duration_ms=int((time.monotonic() - started) * 1000),
            duration_api_ms=int(p.api_s * 1000),
        )
        yield AgentEvent("message", self._tag(result))
        yield AgentEvent("turn_complete", {"numTurns": p.calls, "result": p.final_text})

    def _limit(
        self, turn: _Turn, options: TurnOptions, interrupt: asyncio.Event, calls: int
    ) -> str | None:
        """Why the turn must stop before its next model call (a result subtype), if so."""
        if interrupt.is_set():
            return "interrupted"
        if calls >= (options.max_turns or self.settings.max_turns):
            return "error_max_turns"
        if options.max_budget_usd is not None and turn.cost >= options.max_budget_usd:
            return "error_max_budget_usd"
        return None

    async def _step(
        self,
        turn: _Turn,
        conversation: list[dict[str, Any]],
        interrupt: asyncio.Event,
        p: _Progress,
    ) -> AsyncIterator[AgentEvent]:
        """One model call and the tools it asks for; ``p.finished`` once the turn is over."""
        p.calls += 1
        if self.size.over_threshold(conversation):
            async for event in self._compact_event(turn, conversation, "auto"):
                yield event
        reply = Reply()
        call_started = time.monotonic()
        async for event in self._call(turn, conversation, interrupt, reply):
            yield event
        p.api_s += time.monotonic() - call_started
        message = reply.message
        if message is not None:
            used = usage_of(message.usage)
            turn.spend(used)
            self.size.measured(len(conversation), used)
            self.last_usage, self.last_cost_usd = turn.usage, turn.cost
        blocks = reply.kept_blocks()
        if blocks:
            conversation.append({"role": "assistant", "content": blocks})
            p.final_text = text_of(blocks) or p.final_text
            body = assistant_message(message, blocks, turn.model, reply.interrupted)
            yield AgentEvent(
                "message",
                self._tag({"type": "assistant", "message": body, "parent_tool_use_id": None}),
            )
        if reply.interrupted:
            p.subtype, p.finished = "interrupted", True
            return
        tool_uses = [b for b in blocks if b["type"] == "tool_use"]
        if not tool_uses:
            # agenttools: a Stop hook may send the model back to work, with its reason.
            if (keep_going := await turn.calls.stop_hooks(p.stop_hook_active)) is None:
                p.finished = True
                return
            p.stop_hook_active = True
            conversation.append({"role": "user", "content": f"Stop hook: {keep_going}"})
            return
        results: list[dict[str, Any]] = []
        async for event in run_tools(turn.calls, turn.tools, tool_uses, interrupt, results):
            yield event
        # agenttools: subagents' usage counts in this turn's
        sub_usage, sub_cost = turn.calls.take_usage()
        turn.usage, turn.cost = turn.usage.add(sub_usage), turn.cost + sub_cost
        self.last_usage, self.last_cost_usd = turn.usage, turn.cost
        conversation.append({"role": "user", "content": results})
        names = {b["id"]: b["name"] for b in tool_uses}
        for block in results:  # one SDK user message per result, as the Agent SDK sends
            message = tool_result_message(block, names.get(block["tool_use_id"], ""))
            yield AgentEvent("message", self._tag(message))

    # ------------------------------------------------------------ model calls

    def _request(self, turn: _Turn, conversation: list[dict[str, Any]]) -> dict[str, Any]:
        """This call's request: the compacted context with cache breakpoints."""
        view, _ = context_of(conversation)
        fixed = 1 + (1 if "tools" in turn.params else 0)  # system, tools
        messages = cache.mark_messages(view, budget=cache.MAX_BREAKPOINTS - fixed)
        return {**turn.params, "messages": messages}

    async def _call(
        self,
        turn: _Turn,
        conversation: list[dict[str, Any]],
        interrupt: asyncio.Event,
        reply: Reply,
    ) -> AsyncIterator[AgentEvent]:
        """One model call; "prompt is too long" compacts and retries once."""
        request = self._request(turn, conversation)
        try:
            async for event in stream_reply(
                self.client, request, turn.include_partial, interrupt, reply
            ):
                yield self._tagged(event)
            return
        except anthropic.BadRequestError as exc:
            if _TOO_LONG not in str(exc):
                raise
            compacted = False
            async for event in self._compact_event(turn, conversation, "prompt_too_long"):
                compacted = True
                yield event
            if not compacted:
                raise
        request = self._request(turn, conversation)
        async for event in stream_reply(
            self.client, request, turn.include_partial, interrupt, reply
        ):
            yield self._tagged(event)

    async def compact(
        self,
        conversation: list[dict[str, Any]],
        trigger: str = "manual",
        betas: Sequence[str] | None = None,
    ) -> CompactResult | None:
        """Summarize the older turns of ``conversation`` now (None: nothing to summarize).

        Appends the boundary message to ``conversation``; the caller persists it like
        any other message. The summary call's usage is in the result.
        """
        self.tools.restore(conversation)
        window = self.settings.context_window_tokens
        keep = int(window * self.settings.compact_threshold / 2) - self.size.fixed_tokens()
        result = await compact(
            self.client,
            self.model,
            conversation,
            trigger=trigger,
            keep_turns=self.settings.compact_keep_turns,
            keep_tokens=max(0, keep),
            max_chars=window * 2,  # half the window, at about 4 characters a token
            max_tokens=self.settings.max_tokens,
            overhead_tokens=self.size.fixed_tokens(),
            betas=list(betas) if betas else None,
            note=todos_note(self.tools.todos),
        )
        if result is not None:
            self.size.compacted(len(conversation))
        return result

    async def _compact_event(
        self, turn: _Turn, conversation: list[dict[str, Any]], trigger: str
    ) -> AsyncIterator[AgentEvent]:
        """Compact within a turn: its usage counts, and a ``compact`` event tells."""
        result = await self.compact(conversation, trigger, turn.params.get("betas"))
        if result is None:
            return
        turn.spend(result.usage)
        self.last_usage, self.last_cost_usd = turn.usage, turn.cost
        yield AgentEvent("compact", self._tag(result.event()))
        yield AgentEvent("message", self._tag(result.boundary_message()))

    # ------------------------------------------------------------ tools
