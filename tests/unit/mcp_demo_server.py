"""A small MCP server (the official SDK's MCPServer) for the MCP tests: stdio or HTTP."""

import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("demo")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def echo(text: str) -> str:
    """Echo text back."""
    return "echo:" + text


@server.tool()
def token() -> str:
    """The DEMO_TOKEN of the server's environment, and whether it sees the API key."""
    return f"{os.environ.get('DEMO_TOKEN')}|{'ANTHROPIC_API_KEY' in os.environ}"


@server.tool()
def boom() -> str:
    """Always fails."""
    raise ValueError("kaboom")


@server.tool()
def die() -> str:
    """Kills the server."""
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
