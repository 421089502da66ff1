"""Share of input tokens served from the prompt cache: a 10-tool-call turn, a 20-turn session.

The agent loop runs directly (no Ray, no HTTP) over a local sandbox against the fake
Messages API, whose usage follows the real API's prefix-cache accounting
(:mod:`ash_ray.testing.fake_cache`). Tools really run (Read, Grep, Bash in the sandbox),
so tool results have realistic sizes. Baseline in the same run: the loop with only the
system prompt cached (what the loop did before conversation caching). "agent's 1st
session" starts from an empty cache; "a later session" is another session of the same
agent, whose tools and agent prompt an earlier session already cached (the usual case
of a deployed agent). "saved" is the estimated cost saved against the baseline (list
prices, :mod:`ash_ray.agent.pricing`).

    python benchmarks/cache_share.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import anthropic

from ash_ray.agent import AgentLoop, TurnOptions, load_agent
from ash_ray.agent.pricing import cost_usd
from ash_ray.config import load_settings
from ash_ray.models import Usage
from ash_ray.sandbox import create_sandbox
from ash_ray.testing.fake_anthropic import FakeAnthropic, tool_use

MODEL = "claude-sonnet-4-6"


class SystemOnlyLoop(AgentLoop):
    """The baseline: a breakpoint on the system prompt only, none on messages or tools."""

    def _request(self, turn: Any, conversation: list[dict[str, Any]]) -> dict[str, Any]:
        request = super()._request(turn, conversation)
        mark = ', "cache_control": {"type": "ephemeral"}'
        text = json.dumps(request["messages"]).replace(mark, "")
        tools = [{k: v for k, v in t.items() if k != "cache_control"} for t in request["tools"]]
        return {**request, "messages": json.loads(text), "tools": tools}


def make_workspace(root: Path) -> None:
    """A small project for the tools to read: a few modules of a few KB each."""
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    for n in range(6):
        body = "\n".join(
            f"def function_{n}_{i}(value: int) -> int:\n    return value * {i} + {n}\n"
            for i in range(40)
        )
        (src / f"module_{n}.py").write_text(f'"""Module {n}."""\n\n{body}\n')


def tool_steps(n: int) -> list[list[dict[str, Any]]]:
    """n realistic tool calls: reads, greps and shell commands in turn."""
    steps = []
    for i in range(n):
        if i % 3 == 0:
            steps.append([tool_use("Read", {"file_path": f"src/module_{i % 6}.py", "limit": 60})])
        elif i % 3 == 1:
            grep = {"pattern": f"function_{i % 6}_1", "output_mode": "content"}
            steps.append([tool_use("Grep", grep)])
        else:
            steps.append([tool_use("Bash", {"command": "ls -la src && wc -l src/*.py"})])
    return steps


async def run(loop_class: type[AgentLoop], fake: FakeAnthropic, root: Path, scenario: str) -> Usage:
    """One session of ``scenario`` (``turn`` or ``session``); its summed usage."""
    settings = load_settings(data_dir=root / "data", default_model=MODEL)
    agent = root / "agent"
    agent.mkdir(parents=True, exist_ok=True)
    (agent / "CLAUDE.md").write_text("You are a careful coding agent. " * 20)
    sandbox = create_sandbox(settings, root / "data" / "sessions" / scenario)
    make_workspace(sandbox.workspace)
    client = anthropic.AsyncAnthropic(base_url=fake.url, api_key="bench", max_retries=0)
    loop = loop_class(client, load_agent(agent), sandbox, settings)
    conversation: list[dict[str, Any]] = []
    total = Usage()

    async def turn(prompt: str) -> None:
        nonlocal total
        async for event in loop.run_turn(conversation, prompt, TurnOptions(), asyncio.Event()):
            if event.type == "message" and event.data.get("type") == "result":
                total = total.add(Usage.model_validate(event.data["usage"]))

    if scenario == "turn":
        fake.script(*tool_steps(10), "All ten steps are done; the modules look consistent.")
        await turn("Review the project in src/: read the modules, search and list them.")
    else:
        for t in range(20):
            fake.script(*tool_steps(1 + t % 2), f"Turn {t}: done, nothing else to change.")
            await turn(f"Step {t}: look at module {t % 6} and tell me what it does.")
    await client.close()
    return total


COLUMNS = (("scenario", 52), ("input", 8), ("read", 8), ("written", 7), ("uncached", 8),
           ("read %", 6), ("USD", 7), ("saved", 6))  # fmt: skip


def line(name: str, usage: Usage, base: Usage) -> str:
    total = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    share = usage.cache_read_input_tokens / total if total else 0.0
    cost, base_cost = cost_usd(MODEL, usage), cost_usd(MODEL, base)
    cells = [name, str(total), str(usage.cache_read_input_tokens),
             str(usage.cache_creation_input_tokens), str(usage.input_tokens), f"{share:.1%}",
             f"{cost:.4f}", f"{1 - cost / base_cost if base_cost else 0:.1%}"]  # fmt: skip
    return (
        "| "
        + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS, strict=True))
        )
        + " |"
    )


async def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None).parse_args()
    print("| " + " | ".join(n.ljust(w) if i == 0 else n.rjust(w)
                            for i, (n, w) in enumerate(COLUMNS)) + " |")  # fmt: skip
    print("|" + "|".join("-" * (w + 2) for _, w in COLUMNS) + "|")
    with FakeAnthropic() as fake, tempfile.TemporaryDirectory() as tmp:
        for scenario, name in (("turn", "10-tool-call turn"), ("session", "20-turn session")):
            fake.reset()  # an empty cache
            base = await run(SystemOnlyLoop, fake, Path(tmp) / f"base-{scenario}", scenario)
            fake.reset()
            cold = await run(AgentLoop, fake, Path(tmp) / f"cold-{scenario}", scenario)
            # Another session of the same agent: tools + agent prompt are in the cache.
            warm = await run(AgentLoop, fake, Path(tmp) / f"warm-{scenario}", scenario)
            print(line(f"{name}: system prompt only (before)", base, base))
            print(line(f"{name}: conversation, agent's 1st session", cold, base))
            print(line(f"{name}: conversation, a later session", warm, base))


if __name__ == "__main__":
    asyncio.run(main())
