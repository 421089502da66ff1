"""What a session worker process loads before its first turn: every module costs each
live session its memory and each new worker its start time (issue 14)."""

from __future__ import annotations

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
