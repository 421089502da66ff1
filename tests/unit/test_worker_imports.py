"""What a session worker process loads before its first turn: every module costs each
live session its memory and each new worker its start time (issue 14)."""

from __future__ import annotations

import json
import subprocess
import sys

# Loaded on use only: WebFetch's client (httpx, with its CLI's click, rich and pygments),
# the MCP SDK (with starlette and uvicorn), and HTML to markdown.
ON_USE_ONLY = ("httpx", "httpcore", "click", "rich", "pygments", "mcp", "starlette",
               "uvicorn", "bs4", "markdownify")


def test_a_session_worker_does_not_load_what_it_uses_only_on_demand() -> None:
    code = (
        "import sys, ash_ray.session.actor\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({ON_USE_ONLY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# The agent's side: the SDK (its types are about 50 MiB), the agent loop, the registry and
# the session worker. An ingress replica (every node runs one) and the jobs actor need none.
AGENT_SIDE = ("anthropic", "ash_ray.agent", "ash_ray.registry", "ash_ray.session.actor")


def loaded(module: str, names: tuple[str, ...]) -> list[str]:
    code = (
        f"import json, sys, {module}\n"
        f"print(json.dumps(sorted(n for n in {names!r} if n in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def test_an_ingress_replica_does_not_load_the_agent_side() -> None:
    assert loaded("ash_ray.ingress", AGENT_SIDE) == []


def test_the_jobs_actor_loads_the_sdk_only_to_judge() -> None:
    assert loaded("ash_ray.jobs.actor", AGENT_SIDE) == []


def test_resolving_the_registry_loads_no_sdk() -> None:
    """Ray imports an actor's class module to make a handle of it by name: every ingress
    replica, CLI call and driver that finds the registry imports ``ash_ray.registry.actor``.
    It reads agent folders and bundles, but runs no agent loop."""
    assert loaded("ash_ray.registry.actor", ("anthropic", "ash_ray.agent.loop")) == []


def test_the_worker_class_loads_the_sdk_only_in_a_worker() -> None:
    """The registry imports the session worker's class to create workers; the agent side
    (the loop, the SDK) loads in the worker's constructor."""
    assert loaded("ash_ray.session.actor", ("anthropic", "ash_ray.agent.loop")) == []
    assert loaded("ash_ray.app", ("anthropic", "ash_ray.agent.loop")) == []
