"""Rendering a session's SSE events in a terminal with ``rich``: markdown as it streams,
each tool call as a panel with its input and result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax

Frame = tuple[int | None, str, Any]
RESULT_LINES = 20  # of a tool's output shown under its call


def frames(lines: Iterator[str]) -> Iterator[Frame]:
    seq: int | None = None
    event = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield seq, event, json.loads("\n".join(data))
            seq, event, data = None, "message", []
        elif line.startswith(":"):
            continue  # heartbeat
        elif line.startswith("id:"):
            seq = int(line[3:].strip())
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


class TurnView:
    """Renders one stream of events; remembers the last sequence number for re-attach."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.text = ""
        self.streamed = False
        self.last_seq = 0
        self.done = False
        self.said = False  # this turn showed some text
        self.tools: dict[str, str] = {}

    def show(self, frame: Frame) -> None:
        seq, event, data = frame
        if seq is not None:
            if seq <= self.last_seq:
                return  # already shown (a re-attach overlaps what we saw)
            self.last_seq = seq
        handler = getattr(self, f"on_{event}", None)
        if handler is not None:
            handler(data)

    def on_session_start(self, _data: Any) -> None:
        self.done = False
        self.said = False

    def on_text_delta(self, data: dict[str, Any]) -> None:
        self.streamed = self.said = True
        self.text += data.get("delta", "")
        if self.live is None:
            self.live = Live(
                console=self.console, refresh_per_second=12, vertical_overflow="visible"
            )
            self.live.start()
        self.live.update(Markdown(self.text))

    def on_thinking_delta(self, data: dict[str, Any]) -> None:
        self.flush()
        self.console.print(data.get("delta", ""), style="dim italic", end="")

    def on_message(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "assistant":
            if not self.streamed:  # the turn ran without partial messages
                for block in (msg.get("message") or {}).get("content", []):
                    if block.get("type") == "text":
                        self.on_text_delta({"delta": block["text"]})
            self.flush()
            self.streamed = False
        elif msg.get("type") == "result" and msg.get("subtype") not in (None, "success"):
            self.console.print(f"[yellow]turn ended: {msg['subtype'].replace('_', ' ')}[/]")

    def on_tool_use(self, data: dict[str, Any]) -> None:
        self.flush()
        name = data.get("name", "?")
        self.tools[data.get("id", "")] = name
        body = Syntax(json.dumps(data.get("input"), indent=2), "json", word_wrap=True)
        panel = Panel(body, title=f"tool {name}", title_align="left", border_style="cyan")
        self.console.print(panel)

    def on_tool_result(self, data: dict[str, Any]) -> None:
        content = data.get("content")
        if not isinstance(content, str):
            content = "\n".join(
                b.get("text", f"[{b.get('type')}]") for b in content or [] if isinstance(b, dict)
            )
        lines = content.splitlines()
        if len(lines) > RESULT_LINES:
            lines = [*lines[:RESULT_LINES], f"... {len(lines) - RESULT_LINES} more lines"]
        name = self.tools.get(data.get("tool_use_id", ""), "tool")
        error = bool(data.get("is_error"))
        self.console.print(
            Panel(
                "\n".join(lines) or "(no output)",
                title=f"{name} {'failed' if error else 'result'}",
                title_align="left",
                border_style="red" if error else "green",
            ),
            markup=False,
        )

    def on_turn_complete(self, data: dict[str, Any]) -> None:
        if not self.said and data.get("result"):
            self.on_text_delta({"delta": data["result"]})
        self.flush()

    def on_error(self, data: dict[str, Any]) -> None:
        self.flush()
        self.console.print(f"error: {data.get('error') or data}", style="bold red", markup=False)

    def on_done(self, _data: Any) -> None:
        self.flush()
        self.done = True

    def flush(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            if not self.console.is_terminal:
                self.console.line()  # Live ends its last line only on a terminal
        self.text = ""
