"""``ash-ray chat`` and ``ash-ray session files|exec|tail|logs``: the terminal console.

Turns stream over SSE and render with ``rich``: markdown as it arrives, each tool call with
its input and result. Ctrl-C during a turn interrupts the turn (``POST .../interrupt``) and
follows the stream to its end; it does not leave the program. Errors say what to do next.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from ash_ray.chat_render import Frame, TurnView, frames

__all__ = ["Api", "TurnView", "chat", "frames", "run_turn", "tail"]
DEFAULT_URL = "http://127.0.0.1:4100"


class Api:
    """HTTP calls whose failures become one line saying what went wrong and what to do."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float = 60) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._send(method, path, **kw)
        return resp.json() if resp.content else {}

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise SystemExit(self.unreachable(exc)) from None
        if resp.status_code >= 400:
            raise SystemExit(advice(resp.status_code, _error_text(resp), path))
        return resp

    def unreachable(self, exc: Exception) -> str:
        return (
            f"error: cannot reach ash-ray at {self.url} ({exc}).\n"
            "  Is the server running? Start one with `ash-ray start`, or point at yours with "
            "--url or ASH_URL."
        )

    def stream(self, method: str, path: str, **kw: Any) -> Iterator[Frame]:
        """SSE frames of a request, as (id, event, data)."""
        timeout = httpx.Timeout(60, read=None)  # a turn may think for a long time
        try:
            with self.http.stream(method, path, timeout=timeout, **kw) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise SystemExit(advice(resp.status_code, _error_text(resp), path))
                yield from frames(resp.iter_lines())
        except httpx.HTTPError as exc:
            raise SystemExit(self.unreachable(exc)) from None


# Download chunk size: large enough that the progress bar costs nothing.
_CHUNK = 256 * 1024


def _error_text(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error", resp.text))
    except ValueError:
        return resp.text


def advice(status: int, message: str, path: str) -> str:
    """The server's error plus the next step a person can take."""
    hint = ""
    low = message.lower()
    if status == 401:
        hint = "Pass the server's key with --api-key or set ASH_API_KEY."
    elif (status == 404 and message == "Not Found") or status == 405:
        hint = "This server does not have that route yet: upgrade ash-ray on the server."
    elif status == 404 and "agent" in low:
        hint = "List agents with `ash-ray agent list`, or deploy one with `ash-ray deploy DIR`."
    elif status == 404 and "session" in low:
        hint = "List sessions with `ash-ray session list`."
    elif status == 400 and "session is" in low:
        hint = "Resume it with `ash-ray session resume ID` (or `ash-ray chat --session ID`)."
    elif status == 410:
        hint = "An ended session cannot come back: `ash-ray session fork ID` copies it."
    elif status == 503:
        hint = "The server is at capacity or restarting: retry shortly, or end idle sessions."
    return f"error: {status} on {path}: {message}" + (f"\n  {hint}" if hint else "")


# ---------------------------------------------------------------------- chat


def run_turn(api: Api, session_id: str, content: str, view: TurnView) -> None:
    """Send one message and render its turn; Ctrl-C interrupts the turn, not the program."""
    body = {"content": content, "includePartialMessages": True}
    try:
        for frame in api.stream("POST", f"/api/sessions/{session_id}/messages", json=body):
            view.show(frame)
    except KeyboardInterrupt:
        view.flush()
        api.call("POST", f"/api/sessions/{session_id}/interrupt")
        view.console.print("[yellow]interrupted; finishing the turn ...[/]")
    if not view.done:  # interrupted, or the connection dropped: follow the rest
        tail(api, session_id, view)


def tail(api: Api, session_id: str, view: TurnView) -> None:
    """Re-attach to a session's events after the last one shown, until its turn is done."""
    path = f"/api/sessions/{session_id}/stream"
    try:
        for frame in api.stream("GET", path, params={"after": view.last_seq}):
            view.show(frame)
    except KeyboardInterrupt:
        view.flush()
        view.console.print(
            f"[yellow]stopped following; the turn goes on. `ash-ray session tail {session_id}` "
            "shows the rest.[/]"
        )


def open_session(api: Api, agent: str | None, session_id: str | None, console: Console) -> str:
    if session_id:
        session = api.call("GET", f"/api/sessions/{session_id}")["session"]
        if session["status"] in ("paused", "stopped"):
            console.print(f"[dim]session was {session['status']}: resuming[/]")
            api.call("POST", f"/api/sessions/{session_id}/resume")
        return session_id
    if not agent:
        raise SystemExit("error: name an agent (`ash-ray chat AGENT`) or a session (--session ID)")
    session = api.call("POST", "/api/sessions", json={"agent": agent})["session"]
    console.print(
        f"[dim]session {session['id']} on {agent}; come back with "
        f"`ash-ray chat --session {session['id']}`[/]",
        soft_wrap=True,  # a command to copy: never broken over lines
    )
    return str(session["id"])


HELP = "Commands: /exit (or Ctrl-D), /files, /history, /help. Ctrl-C interrupts a turn."


def chat(
    api: Api,
    session_id: str,
    console: Console,
    ask: Callable[[str], str] | None = None,
) -> int:
    """The interactive loop; ``ask`` reads a line (tests pass their own)."""
    ask = ask or (lambda prompt: console.input(prompt))
    console.print(f"[dim]{HELP}[/]")
    view = TurnView(console)
    view.last_seq = _last_seq(api, session_id)
    while True:
        try:
            line = ask("[bold cyan]you>[/] ").strip()
        except EOFError:
            console.print()
            return 0
        except KeyboardInterrupt:
            console.print("\n[dim](Ctrl-D or /exit leaves)[/]")
            continue
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return 0
        if line == "/help":
            console.print(HELP)
        elif line == "/files":
            list_files(api, session_id, console)
        elif line == "/history":
            tail(api, session_id, TurnView(console))
        else:
            run_turn(api, session_id, line, view)


def _last_seq(api: Api, session_id: str) -> int:
    events = api.call("GET", f"/api/sessions/{session_id}/events", params={"limit": 100_000})
    return max((e["sequence"] for e in events["events"]), default=0)


# ---------------------------------------------------------------------- session helpers


def list_files(api: Api, session_id: str, console: Console) -> None:
    body = api.call("GET", f"/api/sessions/{session_id}/files")
    table = Table("path", "size", "modified", title=f"workspace ({body.get('source', '?')})")
    for f in body["files"]:
        table.add_row(f["path"], str(f["size"]), str(f.get("modifiedAt", "")))
    console.print(table)


def download_file(api: Api, session_id: str, path: str, dest: Path, console: Console) -> Path:
    """Raw bytes of a workspace file into ``dest``, with a progress bar."""
    url = f"/api/sessions/{session_id}/files/{path.lstrip('/')}"
    return download(api, url, path, dest, console)


def download(api: Api, url: str, label: str, dest: Path, console: Console) -> Path:
    """Stream ``GET url`` into ``dest`` with a progress bar named ``label``."""
    with _progress(console) as progress:
        try:
            with api.http.stream("GET", url, timeout=httpx.Timeout(60, read=None)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise SystemExit(advice(resp.status_code, _error_text(resp), url))
                total = int(resp.headers.get("content-length", 0)) or None
                task = progress.add_task(label, total=total)
                with open(dest, "wb") as out:
                    for chunk in resp.iter_bytes(_CHUNK):
                        out.write(chunk)
                        progress.advance(task, len(chunk))
        except httpx.HTTPError as exc:
            raise SystemExit(api.unreachable(exc)) from None
    return dest


def upload_files(
    api: Api, session_id: str, files: list[Path], target: str, console: Console
) -> list[dict[str, Any]]:
    """Upload local files into the workspace, one request each so progress is real."""
    results = []
    with _progress(console) as progress:
        task = progress.add_task("upload", total=sum(f.stat().st_size for f in files))
        for f in files:
            body = {
                "files": [{"path": f.name, "content": base64.b64encode(f.read_bytes()).decode()}],
                "targetPath": target,
            }
            results += api.call("POST", f"/api/sessions/{session_id}/files", json=body).get(
                "files", []
            )
            progress.advance(task, f.stat().st_size)
    return results


def _progress(console: Console) -> Progress:
    return Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), console=console, transient=True,
    )


def exec_command(api: Api, session_id: str, command: str, console: Console) -> int:
    result = api.call(
        "POST", f"/api/sessions/{session_id}/exec", json={"command": command}, timeout=330
    )
    if result.get("stdout"):
        console.out(result["stdout"], end="", highlight=False)
    if result.get("stderr"):
        Console(stderr=True).out(result["stderr"], end="", highlight=False)
    return int(result.get("exitCode", 1))


def show_logs(api: Api, session_id: str, after: int, console: Console) -> None:
    body = api.call("GET", f"/api/sessions/{session_id}/logs", params={"after": after})
    styles = {"stderr": "red", "system": "dim"}
    for line in body.get("logs", []):
        console.print(
            f"{line.get('ts', '')} [{line['level']}] {line['text']}",
            style=styles.get(line["level"]), markup=False, highlight=False,
        )


# ---------------------------------------------------------------------- CLI wiring


def _api(args: argparse.Namespace) -> Api:
    url = getattr(args, "url", None) or os.environ.get("ASH_URL", DEFAULT_URL)
    return Api(url, getattr(args, "api_key", None) or os.environ.get("ASH_API_KEY") or None)


def cmd_chat(args: argparse.Namespace) -> int:
    console = Console()
    api = _api(args)
    session_id = open_session(api, args.agent, args.session, console)
    return chat(api, session_id, console)


def cmd_session_files(args: argparse.Namespace) -> int:
    console, api = Console(), _api(args)
    if args.upload:
        for r in upload_files(api, args.id, [Path(p) for p in args.upload], args.target, console):
            ok = r.get("written")
            console.print(f"{'uploaded' if ok else 'failed'} {r['path']} {r.get('error', '')}")
    elif args.path:
        dest = Path(args.out or Path(args.path).name)
        download_file(api, args.id, args.path, dest, console)
        console.print(f"saved {args.path} to {dest}")
    else:
        list_files(api, args.id, console)
    return 0


def cmd_session_exec(args: argparse.Namespace) -> int:
    return exec_command(_api(args), args.id, " ".join(args.command), Console())


def cmd_session_tail(args: argparse.Namespace) -> int:
    view = TurnView(Console())
    view.last_seq = args.after
    tail(_api(args), args.id, view)
    return 0


def cmd_session_logs(args: argparse.Namespace) -> int:
    show_logs(_api(args), args.id, args.after, Console())
    return 0


def add_chat_parser(sub: Any) -> None:
    """``ash-ray chat [AGENT | --session ID]`` on the CLI's subcommands."""
    cp = sub.add_parser("chat", help="chat with an agent in the terminal (Ctrl-C interrupts)")
    cp.add_argument("agent", nargs="?", help="start a new session on this agent")
    cp.add_argument("--session", help="continue this session instead")
    cp.set_defaults(func=cmd_chat)


def add_session_parsers(ssub: Any) -> None:
    """``ash-ray session files|exec|tail|logs`` on the ``session`` subcommands."""
    f = ssub.add_parser("files", help="list, download (PATH) or upload (--upload) files")
    f.add_argument("id")
    f.add_argument("path", nargs="?")
    f.add_argument("-o", "--out", help="where to save PATH (default: its name, here)")
    f.add_argument("--upload", nargs="+", metavar="LOCAL")
    f.add_argument("--target", default=".", help="workspace folder for --upload")
    f.set_defaults(func=cmd_session_files)
    e = ssub.add_parser("exec", help="run a shell command in the session's sandbox")
    e.add_argument("id")
    e.add_argument("command", nargs=argparse.REMAINDER)
    e.set_defaults(func=cmd_session_exec)
    t = ssub.add_parser("tail", help="re-attach to a session's events (until its turn ends)")
    t.add_argument("id")
    t.add_argument("--after", type=int, default=0)
    t.set_defaults(func=cmd_session_tail)
    lg = ssub.add_parser("logs", help="the sandbox's tool output and system lines")
    lg.add_argument("id")
    lg.add_argument("--after", type=int, default=-1)
    lg.set_defaults(func=cmd_session_logs)


def main(argv: list[str] | None = None) -> int:
    """``python -m ash_ray.chat [AGENT | --session ID]``: the chat without the full CLI."""
    p = argparse.ArgumentParser(prog="ash-ray chat")
    p.add_argument("--url", default=os.environ.get("ASH_URL", DEFAULT_URL))
    p.add_argument("--api-key", default=os.environ.get("ASH_API_KEY") or None)
    p.add_argument("agent", nargs="?", help="start a new session on this agent")
    p.add_argument("--session", help="continue this session instead")
    return cmd_chat(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
