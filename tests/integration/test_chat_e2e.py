"""``ash-ray chat`` and the session helpers against a real server with the fake model."""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Iterator

import httpx
import pexpect
import pytest
from rich.console import Console

from ash_ray import chat
from tests.integration.conftest import API_KEY
from tests.integration.sse import new_session

pytestmark = [pytest.mark.ray, pytest.mark.slow]

HOLD = 'TOOL Bash {"command": "until [ -f go ]; do sleep 0.05; done; echo released"}'


ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def pat(text: str) -> str:
    """A pattern of ``text`` as a terminal shows it: styles may sit between characters."""
    return ANSI.join(re.escape(c) for c in text)


def console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=100, force_terminal=False, color_system=None), buf


def lines(*items: str) -> Iterator[str]:
    yield from items


def test_chat_renders_text_and_tool_calls_then_session_helpers(server: str, agent: str) -> None:
    api = chat.Api(server, API_KEY)
    con, out = console()
    sid = chat.open_session(api, agent, None, con)
    assert f"ash-ray chat --session {sid}" in out.getvalue()
    said = lines("hello terminal", 'TOOL Bash {"command": "echo hi > out.txt"}', "/exit")
    assert chat.chat(api, sid, con, ask=lambda _prompt: next(said)) == 0
    text = out.getvalue()
    assert "echo: hello terminal" in text
    assert "tool Bash" in text and "echo hi > out.txt" in text
    assert "tool said:" in text

    # exec, tail (history replay), and the routes this server may lack.
    con, out = console()
    assert chat.exec_command(api, sid, "cat out.txt", con) == 0
    assert out.getvalue() == "hi\n"
    con, out = console()
    chat.tail(api, sid, chat.TurnView(con))
    assert out.getvalue().count("echo: hello terminal") == 1
    assert "tool Bash" in out.getvalue()

    listing = httpx.get(f"{server}/api/sessions/{sid}/files",
                        headers={"Authorization": f"Bearer {API_KEY}"})
    if listing.status_code == 404:
        with pytest.raises(SystemExit, match="does not have that route yet"):
            chat.list_files(api, sid, con)
    else:
        chat.list_files(api, sid, con)
        assert "out.txt" in out.getvalue()


def test_errors_say_what_to_do_next(server: str, agent: str) -> None:
    con, _ = console()
    with pytest.raises(SystemExit, match="--api-key or set ASH_API_KEY"):
        chat.open_session(chat.Api(server, "wrong-key"), agent, None, con)
    with pytest.raises(SystemExit, match="ash-ray start"):
        chat.open_session(chat.Api("http://127.0.0.1:9", API_KEY), agent, None, con)
    api = chat.Api(server, API_KEY)
    with pytest.raises(SystemExit, match="ash-ray session list"):
        chat.open_session(api, None, "00000000-0000-4000-8000-000000000000", con)
    with pytest.raises(SystemExit, match="ash-ray deploy DIR"):
        chat.open_session(api, "no-such-agent", None, con)


def test_ctrl_c_interrupts_the_turn_not_the_program(
    server: str, agent: str, http: httpx.Client
) -> None:
    env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm", "COLUMNS": "100",
           "ASH_API_KEY": API_KEY, "PYTHONPATH": os.getcwd()}
    sid = new_session(http, agent)
    proc = pexpect.spawn(
        sys.executable, ["-m", "ash_ray.chat", "--url", server, "--session", sid],
        env=env, encoding="utf-8", timeout=60, dimensions=(40, 100),
    )
    try:
        proc.expect(pat("you> "))
        proc.sendline(HOLD)
        proc.expect(pat("tool Bash"))
        # The tool now waits on its latch: Ctrl-C must stop the turn, and only the turn.
        proc.sendintr()
        proc.expect(pat("interrupted; finishing the turn"))
        proc.expect(pat("Bash failed"))
        proc.expect(pat("turn ended: interrupted"))
        proc.expect(pat("you> "))
        assert proc.isalive()
        proc.sendline("still here")
        proc.expect(pat("echo: still here"))
        proc.expect(pat("you> "))
        proc.sendeof()
        proc.expect(pexpect.EOF)
    finally:
        proc.close(force=True)
    assert proc.exitstatus == 0, proc.before
    events = http.get(f"/api/sessions/{sid}/events").json()["events"]
    assert any('"subtype": "interrupted"' in e["data"] or '"interrupted"' in e["data"]
               for e in events)
