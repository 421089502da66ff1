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
propagate after the SDK's own retries (``max_retries`` of the client given).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic

from ash_ray.agent.messages import (
    NO_JSON,
    AgentEvent,
    TurnOptions,
    api_block,
    json_schema_of,
    parse_json_answer,
    text_of,
    usage_of,
)
from ash_ray.agent.pricing import cost_usd
from ash_ray.agent.spec import AgentSpec
from ash_ray.agent.toolbox import AgentTools, ToolTurn
from ash_ray.agent.tools import Tool, ToolResult
from ash_ray.config import Settings
from ash_ray.models import Usage
from ash_ray.sandbox import Sandbox


@dataclass
class _Reply:
    """What one streamed model call produced (filled by the pump task)."""

    snapshot: Any = None
    final: Any = None
    stopped: set[int] = field(default_factory=set)
    interrupted: bool = False


async def _first(task: asyncio.Future[Any], interrupt: asyncio.Event) -> bool:
    """Wait for ``task`` or ``interrupt``; True when the task finished (it wins a tie)."""
    if interrupt.is_set():
        return False
    waiter = asyncio.ensure_future(interrupt.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return task.done()


class AgentLoop:
    """Runs turns of one agent in one sandbox (see module doc).

    ``sandbox`` may be replaced between turns (the session does so when its env
    changes). ``model`` and ``last_usage`` describe the last turn.
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        spec: AgentSpec,
        sandbox: Sandbox,
        settings: Settings,
        *,
        session_id: str | None = None,
        tools: AgentTools | None = None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.sandbox = sandbox
        self.settings = settings
        self.session_id = session_id
        self.model: str = spec.model or settings.default_model
        self.last_usage = Usage()
        self.last_cost_usd = 0.0
        # agenttools: MCP, hooks, modes, todos, subagents; a subagent's loop shares its parent's.
        self.tools = tools or AgentTools(client, spec, settings, session_id)

    async def aclose(self) -> None:
        """Stop what the session keeps between turns (MCP servers): pause, stop, end."""
        await self.tools.aclose()

    def _tag(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.session_id:
            data["session_id"] = self.session_id
        return data

    def _system(self, options: TurnOptions, tools: dict[str, Tool]) -> str:
        parts = [options.system_prompt or self.spec.system_prompt]
        if "Skill" in tools and self.spec.skills:
            listed = "\n".join(f"- {s.name}: {s.description}" for s in self.spec.skills)
            parts.append(f"# Skills\nLoad one with the Skill tool when it fits the task:\n{listed}")
        parts.append(
            f"# Environment\nWorking directory: {self.sandbox.workspace}\n"
            "File tools take paths relative to it or absolute paths inside it."
        )
        schema = json_schema_of(options.output_format)
        if schema is not None:
            parts.append(
                "# Output format\nYour final answer must be only a JSON document (no prose, "
                f"no code fence) valid against this JSON schema:\n{json.dumps(schema)}"
            )
        return "\n\n".join(parts)

    async def run_turn(
        self,
        conversation: list[dict[str, Any]],
        prompt: str,
        options: TurnOptions,
        interrupt: asyncio.Event,
    ) -> AsyncIterator[AgentEvent]:
        """Run one prompt to the end of the turn, yielding events (see module doc)."""
        started = time.monotonic()
        model = options.model or self.spec.model or self.settings.default_model
        self.model = model
        max_turns = options.max_turns or self.settings.max_turns
        # --- agenttools: the turn's tools (MCP started lazily), mode and hooks
        turn = await self.tools.begin_turn(self.sandbox, options, model, self._tag({}))
        tools = turn.tools
        for event in turn.drain():
            yield event
        blocked, context = await turn.prompt_hooks(prompt)
        if context:
            prompt = prompt + "\n\n" + "\n".join(context)
        # --- end agenttools
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": self.settings.max_tokens,
            "system": [
                {
                    "type": "text",
                    "text": self._system(options, tools),
                    # The system prompt and tools repeat on every call of the loop.
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        }
        if tools or turn.server_tools():
            params["tools"] = [t.api() for t in tools.values()] + turn.server_tools()
        if options.thinking:
            params["thinking"] = options.thinking

        conversation.append({"role": "user", "content": prompt})
        usage, cost, turns, api_s = Usage(), 0.0, 0, 0.0
        final_text, subtype = "", "success"
        self.last_usage, self.last_cost_usd = usage, cost
        stop_hook_active = False
        while blocked is None:
            if interrupt.is_set():
                subtype = "interrupted"
                break
            if turns >= max_turns:
                subtype = "error_max_turns"
                break
            if options.max_budget_usd is not None and cost >= options.max_budget_usd:
                subtype = "error_max_budget_usd"
                break
            turns += 1
            reply = _Reply()
            call_started = time.monotonic()
            async for event in self._stream(params, conversation, options, interrupt, reply):
                yield event
            api_s += time.monotonic() - call_started
            message = reply.final if reply.final is not None else reply.snapshot
            if message is not None:
                used = usage_of(message.usage)
                usage, cost = usage.add(used), cost + cost_usd(model, used)
                self.last_usage, self.last_cost_usd = usage, cost
            blocks = self._kept_blocks(reply)
            if blocks:
                conversation.append({"role": "assistant", "content": blocks})
                final_text = text_of(blocks) or final_text
                yield AgentEvent("message", self._assistant_event(message, blocks, model, reply))
            if reply.interrupted:
                subtype = "interrupted"
                break
            tool_uses = [b for b in blocks if b["type"] == "tool_use"]
            if not tool_uses:
                # agenttools: a Stop hook may send the model back to work, with its reason.
                if (keep_going := await turn.stop_hooks(stop_hook_active)) is None:
                    break
                stop_hook_active = True
                conversation.append({"role": "user", "content": f"Stop hook: {keep_going}"})
                continue
            results: list[dict[str, Any]] = []
            async for event in self._run_tools(turn, tool_uses, interrupt, results):
                yield event
            # agenttools: subagents' usage counts in this turn's
            sub_usage, sub_cost = turn.take_usage()
            usage, cost = usage.add(sub_usage), cost + sub_cost
            self.last_usage, self.last_cost_usd = usage, cost
            conversation.append({"role": "user", "content": results})
            user_message = {"role": "user", "content": results}
            yield AgentEvent(
                "message",
                self._tag({"type": "user", "message": user_message, "parent_tool_use_id": None}),
            )

        if blocked is not None:
            # agenttools: a UserPromptSubmit hook refused the prompt; no model call.
            conversation.pop()
            subtype, final_text = "error_during_execution", f"UserPromptSubmit hook: {blocked}"
        result: dict[str, Any] = {
            "type": "result",
            "subtype": subtype,
            "is_error": subtype != "success",
            "num_turns": turns,
            "result": final_text,
            "usage": usage.model_dump(),
            "total_cost_usd": round(cost, 6),
            "duration_ms": int((time.monotonic() - started) * 1000),
            "duration_api_ms": int(api_s * 1000),
        }
        if subtype == "success" and json_schema_of(options.output_format) is not None:
            parsed = parse_json_answer(final_text)
            if parsed is not NO_JSON:
                result["structured_output"] = parsed
        yield AgentEvent("message", self._tag(result))
        yield AgentEvent("turn_complete", {"numTurns": turns, "result": final_text})

    def _kept_blocks(self, reply: _Reply) -> list[dict[str, Any]]:
        if reply.final is not None:
            return [api_block(b) for b in reply.final.content]
        if reply.snapshot is None:
            return []
        # Cut off mid-stream: only finished text survives; a half tool call cannot run.
        return [
            api_block(b)
            for i, b in enumerate(reply.snapshot.content)
            if i in reply.stopped and b.type == "text" and b.text
        ]

    def _assistant_event(
        self, message: Any, blocks: list[dict[str, Any]], model: str, reply: _Reply
    ) -> dict[str, Any]:
        body = {
            "id": getattr(message, "id", None),
            "type": "message",
            "role": "assistant",
            "model": getattr(message, "model", None) or model,
            "content": blocks,
            "stop_reason": None if reply.interrupted else getattr(message, "stop_reason", None),
            "stop_sequence": getattr(message, "stop_sequence", None),
            "usage": usage_of(getattr(message, "usage", None)).model_dump(),
        }
        return self._tag({"type": "assistant", "message": body, "parent_tool_use_id": None})

    async def _stream(
        self,
        params: dict[str, Any],
        conversation: list[dict[str, Any]],
        options: TurnOptions,
        interrupt: asyncio.Event,
        reply: _Reply,
    ) -> AsyncIterator[AgentEvent]:
        """Stream one model call into ``reply``, yielding deltas; stops on interrupt."""
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        async def pump() -> None:
            # A separate task so an interrupt can abandon the stream between any two
            # events (cancelling it closes the HTTP response).
            try:
                async with self.client.messages.stream(
                    **params,
                    messages=list(conversation),  # type: ignore[arg-type]
                ) as stream:
                    async for event in stream:
                        reply.snapshot = stream.current_message_snapshot
                        if event.type == "content_block_stop":
                            reply.stopped.add(event.index)
                        await queue.put(("event", event))
                    await queue.put(("final", await stream.get_final_message()))
            except Exception as exc:
                await queue.put(("error", exc))

        task = asyncio.create_task(pump())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                if not await _first(getter, interrupt):
                    getter.cancel()
                    reply.interrupted = True
                    return
                kind, item = getter.result()
                if kind == "error":
                    raise item
                if kind == "final":
                    reply.final = item
                    return
                if options.include_partial:
                    if item.type == "text":
                        yield AgentEvent("text_delta", {"delta": item.text})
                    elif item.type == "thinking":
                        yield AgentEvent("thinking_delta", {"delta": item.thinking})
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run_tools(
        self,
        turn: ToolTurn,
        tool_uses: list[dict[str, Any]],
        interrupt: asyncio.Event,
        results: list[dict[str, Any]],
    ) -> AsyncIterator[AgentEvent]:
        """Run tool calls in order, appending tool_result blocks to ``results``."""
        for block in tool_uses:
            name, args = block["name"], block["input"]
            yield AgentEvent("tool_use", {"id": block["id"], "name": name, "input": args})
            if interrupt.is_set():
                outcome = ToolResult("Interrupted by the user before the tool ran.", True)
            else:
                # agenttools: unknown tool, plan mode, hooks, rules, then the tool; its
                # events (todo, mcp_status, a subagent's messages) stream while it runs
                work = asyncio.ensure_future(self._run_interruptible(turn, block, interrupt))
                async for event in turn.stream_until(work):
                    yield event
                outcome = work.result()
            item = {
                "type": "tool_result",
                "tool_use_id": block["id"],
                "content": outcome.content,
                "is_error": outcome.is_error,
            }
            results.append(item)
            yield AgentEvent(
                "tool_result",
                {
                    "tool_use_id": block["id"],
                    "content": outcome.content,
                    "is_error": outcome.is_error,
                },
            )

    async def _run_interruptible(
        self, turn: ToolTurn, block: dict[str, Any], interrupt: asyncio.Event
    ) -> ToolResult:
        task = asyncio.ensure_future(turn.call(block))
        try:
            if await _first(task, interrupt):
                return task.result()
            return ToolResult("Interrupted by the user while the tool ran.", True)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
