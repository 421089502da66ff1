"""A small MCP server (the official SDK's MCPServer) for the MCP tests: stdio or HTTP."""

import os
import sys

from mcp.server.mcpserver import Image, MCPServer
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


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def picture() -> Image:
    """A 1x1 PNG."""
    return Image(data=PIXEL, format="png")


PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf000000030101005c5dd6d60000000049454e44ae426082"
)


@server.tool()
def die() -> str:
    """Kills the server."""
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) > 2:
        server.run("sse", host="127.0.0.1", port=int(sys.argv[1]))
    elif len(sys.argv) > 1:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
