"""WebSearch and WebFetch, as the agent loop offers them.

WebSearch is Anthropic's server-side tool (:data:`WEB_SEARCH_TOOL`): the API runs the
searches, and its ``server_tool_use`` / ``web_search_tool_result`` blocks come back in
the reply like any other content. WebFetch runs in the worker (:mod:`.fetch`, with its
SSRF checks); it is imported on the first fetch, so that a worker that never fetches
does not load httpx and what it pulls in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ash_ray.agent.tools import ToolContext

WEB_SEARCH_TOOL: dict[str, Any] = {
    "type": "web_search_20250305",
    "name": "web_search",
    "max_uses": 5,
}


async def web_fetch(ctx: ToolContext, args: dict[str, Any]) -> str:
    """The WebFetch tool: see :func:`ash_ray.agent.fetch.web_fetch`."""
    from ash_ray.agent import fetch

    return await fetch.web_fetch(ctx, args)
