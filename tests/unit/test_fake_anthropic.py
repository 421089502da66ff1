"""The fake Messages API, driven by the real anthropic SDK (sync and async)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from ash_ray.testing.fake_anthropic import (
    ErrorReply,
    FakeAnthropic,
    FakeAnthropicRemote,
    Reply,
    text,
    thinking,
    tool_use,
)
from ash_ray.testing.ports import free_port
from tests.helpers import wait_for

KEY = "sk-ant-test"
USER_HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as server:
        yield server


@pytest.fixture
def client(fake: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key=KEY, max_retries=0)


@pytest.fixture
def aclient(fake: FakeAnthropic) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.url, api_key=KEY, max_retries=0)


def test_text_reply_with_usage_and_the_request_recorded(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.script("hello there")
    tools = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]
    msg = client.messages.create(
        model="claude-x", max_tokens=64, system="be brief", tools=tools, messages=USER_HI
    )  # type: ignore[arg-type]
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "hello there"  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn" and msg.model == "claude-x"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg.usage.cache_read_input_tokens == 0
    (req,) = fake.requests
    assert req.path == "/v1/messages"
    # SDK versions differ in which header carries api_key; the fake takes either.
    assert KEY in (req.headers.get("x-api-key"), req.headers.get("authorization", "")[7:])
    assert req.body["system"] == "be brief" and req.body["tools"] == tools
    assert fake.message_requests == [req.body]


def test_streamed_tool_use_is_assembled_by_the_sdk(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    args = {"command": "ls -la /tmp && echo done", "timeout": 30, "flags": [1, 2, 3]}
    fake.script(Reply([text("Let me look."), tool_use("Bash", args, id="toolu_x")]))
    with client.messages.stream(model="m", max_tokens=64, messages=USER_HI) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds.count("input_json") >= 3  # the JSON came in several pieces
    assert final.stop_reason == "tool_use"
    block = final.content[1]
    assert block.type == "tool_use" and block.id == "toolu_x" and block.name == "Bash"
    assert block.input == args
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 1


def test_sse_wire_format(fake: FakeAnthropic) -> None:
    fake.script(Reply([thinking("hmm"), text("a" * 40)]))
    body = {"model": "m", "max_tokens": 8, "messages": USER_HI, "stream": True}
    resp = httpx.post(fake.url + "/v1/messages", json=body, headers={"x-api-key": KEY})
    assert resp.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in resp.text.split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    datas = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in frames]
    assert names == [d["type"] for d in datas]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start_usage = datas[0]["message"]["usage"]
    assert {"input_tokens", "output_tokens", "cache_creation_input_tokens",
            "cache_read_input_tokens"} <= set(start_usage)  # fmt: skip
    deltas = [d["delta"]["type"] for d in datas if d["type"] == "content_block_delta"]
    assert deltas == ["thinking_delta", "signature_delta"] + ["text_delta"] * 3
    assert datas[-2]["delta"]["stop_reason"] == "end_turn"
    assert datas[-2]["usage"]["output_tokens"] > 1


async def test_async_sdk_streaming_and_not(
    fake: FakeAnthropic, aclient: anthropic.AsyncAnthropic
) -> None:
    fake.script(Reply([thinking("first think"), text("then answer")]), "plain")
    async with aclient.messages.stream(model="m", max_tokens=64, messages=USER_HI) as stream:
        streamed = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert streamed == "then answer"
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "first think"  # type: ignore[union-attr]
    msg = await aclient.messages.create(model="m", max_tokens=64, messages=USER_HI)
    assert msg.content[0].text == "plain"  # type: ignore[union-attr]


def test_default_rules_drive_a_tool_loop(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    ask = 'please read it\nTOOL Read {"file_path": "notes.txt"}'
    first = client.messages.create(
        model="m", max_tokens=64, messages=[{"role": "user", "content": ask}]
    )
    assert first.stop_reason == "tool_use"
    call = first.content[0]
    assert call.type == "tool_use" and call.name == "Read"
    assert call.input == {"file_path": "notes.txt"}
    conversation = [
        {"role": "user", "content": ask},
        {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id,
                 "content": [{"type": "text", "text": "the notes"}]},
            ],
        },
    ]  # fmt: skip
    with client.messages.stream(model="m", max_tokens=64, messages=conversation) as stream:
        second = stream.get_final_message()
    assert second.content[0].text == "tool said: the notes"  # type: ignore[union-attr]
    assert fake.message_requests[-1]["messages"] == conversation  # the whole history was sent
    echo = client.messages.create(model="m", max_tokens=8, messages=USER_HI)
    assert echo.content[0].text == "echo: hi"  # type: ignore[union-attr]


def test_scripted_errors_surface_as_sdk_errors(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.script(ErrorReply(529, "overloaded_error", "Overloaded"), ErrorReply(500, "api_error"))
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        client.messages.create(model="m", max_tokens=8, messages=USER_HI)
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError):
        with client.messages.stream(model="m", max_tokens=8, messages=USER_HI) as stream:
            stream.get_final_message()
    fake.script(ErrorReply(in_stream=True))
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with client.messages.stream(model="m", max_tokens=8, messages=USER_HI) as stream:
            stream.get_final_message()
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="m", max_tokens=8, messages=[])
    assert fake.pending == 0


def test_auth_is_required_when_configured(fake: FakeAnthropic) -> None:
    wrong = anthropic.Anthropic(base_url=fake.url, api_key="nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model="m", max_tokens=8, messages=USER_HI)
    bearer = anthropic.Anthropic(base_url=fake.url, auth_token=KEY, max_retries=0)
    assert bearer.messages.create(model="m", max_tokens=8, messages=USER_HI).content
    assert fake.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    body = {"model": "m", "max_tokens": 8, "messages": USER_HI}
    for headers, status in (({"x-api-key": KEY}, 200), ({"x-api-key": "nope"}, 401), ({}, 401)):
        resp = httpx.post(fake.url + "/v1/messages", json=body, headers=headers)
        assert resp.status_code == status
    assert resp.json()["error"]["type"] == "authentication_error"
    with FakeAnthropic() as open_fake:  # no key configured: anyone may call
        anyone = anthropic.Anthropic(base_url=open_fake.url, api_key="whatever", max_retries=0)
        assert anyone.messages.count_tokens(model="m", messages=USER_HI).input_tokens > 0


def test_delays_per_server_and_per_reply(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    # The delays themselves are under test (benchmarks model latency with them); nothing
    # here orders events by them.
    fake.configure(first_token_delay_s=0.3)
    started = time.monotonic()
    with client.messages.stream(model="m", max_tokens=8, messages=USER_HI) as stream:
        next(iter(stream.text_stream))
        assert time.monotonic() - started >= 0.3
    fake.reset()  # back to no delay
    fake.script(Reply([text("x" * 64)], chunk_delay_s=0.05))  # 4 chunks: 3 gaps
    started = time.monotonic()
    client.messages.create(model="m", max_tokens=8, messages=USER_HI)
    assert 0.15 <= time.monotonic() - started < 2


def test_http_control_for_other_processes(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    remote = FakeAnthropicRemote(fake.url)
    assert remote.healthy()
    remote.script("from afar", Reply([tool_use("Bash", {"command": "pwd"})]), ErrorReply(500))
    assert fake.pending == 3
    assert client.messages.create(model="m", max_tokens=8, messages=USER_HI).content[0].text == (
        "from afar"  # type: ignore[union-attr]
    )
    assert client.messages.create(model="m", max_tokens=8, messages=USER_HI).stop_reason == (
        "tool_use"
    )
    assert [r.path for r in remote.requests] == ["/v1/messages"] * 2
    remote.reset()
    assert fake.pending == 0 and remote.requests == []
    remote.configure(first_token_delay_s=0.2)
    started = time.monotonic()
    client.messages.create(model="m", max_tokens=8, messages=USER_HI)
    assert time.monotonic() - started >= 0.2


def test_cli_serves_until_terminated() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ash_ray.testing.fake_anthropic", "--port", str(port),
         "--chunk-delay-ms", "1"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],  # the checkout, in case it is not installed
    )  # fmt: skip
    try:
        remote = FakeAnthropicRemote(f"http://127.0.0.1:{port}", timeout_s=1)

        def up() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            return remote.healthy()

        wait_for(up, timeout_s=20, what="the fake to come up")
        client = anthropic.Anthropic(base_url=remote.url, api_key="any", max_retries=0)
        msg = client.messages.create(model="m", max_tokens=8, messages=USER_HI)
        assert msg.content[0].text == "echo: hi"  # type: ignore[union-attr]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}" in err


# ---------------------------------------------------------------- hold/release latches


def _stream_in_thread(
    client: anthropic.Anthropic, prompt: str
) -> tuple[threading.Thread, list[str], list[str]]:
    """Stream a reply in a thread: (thread, text pieces so far, raw event types so far)."""
    pieces: list[str] = []
    events: list[str] = []

    def run() -> None:
        messages = [{"role": "user", "content": prompt}]
        with client.messages.stream(model="m", max_tokens=64, messages=messages) as stream:  # type: ignore[arg-type]
            for event in stream:
                events.append(event.type)
                if event.type == "text":
                    pieces.append(event.text)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, pieces, events


def test_hold_before_the_first_token_until_released(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.script("the held answer")
    with fake.hold() as hold:
        thread, pieces, events = _stream_in_thread(client, "hello")
        assert hold.wait_seen()["messages"][0]["content"] == "hello"
        hold.wait_held()
        wait_for(lambda: "message_start" in events, timeout_s=10, what="message_start")
        assert pieces == [] and thread.is_alive()  # no token while held
        hold.release()
        thread.join(10)
    assert "".join(pieces) == "the held answer"
    assert events[-1] == "message_stop"


def test_hold_before_message_stop_lets_the_text_through(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.script("all of the text")
    hold = fake.hold(at="message_stop")
    thread, pieces, events = _stream_in_thread(client, "hello")
    hold.wait_held()
    wait_for(lambda: "".join(pieces) == "all of the text", timeout_s=10, what="the whole text")
    assert "message_stop" not in events and thread.is_alive()
    hold.release()
    thread.join(10)
    assert events[-1] == "message_stop"


def test_hold_by_marker_lets_other_requests_through(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    hold = fake.hold("MARKER-B")
    thread, pieces, _ = _stream_in_thread(client, "prompt MARKER-B")
    hold.wait_held()
    other = client.messages.create(model="m", max_tokens=8, messages=USER_HI)
    assert other.content[0].text == "echo: hi"  # type: ignore[union-attr]
    assert pieces == []
    hold.release()
    thread.join(10)
    assert "".join(pieces) == "echo: prompt MARKER-B"
    assert not hold.matches({"messages": [{"role": "user", "content": "hi"}]})


def test_hold_a_non_streaming_request_and_reset_releases_it(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    hold = fake.hold()
    answers: list[str] = []
    thread = threading.Thread(
        target=lambda: answers.append(
            client.messages.create(model="m", max_tokens=8, messages=USER_HI).content[0].text  # type: ignore[union-attr]
        )
    )
    thread.start()
    hold.wait_held()
    assert answers == []
    fake.reset()  # a test that forgot to release must not wedge the fake
    thread.join(10)
    assert answers == ["echo: hi"] and hold.released
    with pytest.raises(TimeoutError, match="not seen"):
        fake.hold("never sent").wait_seen(timeout_s=0.1)


async def test_hold_from_an_async_test(fake: FakeAnthropic) -> None:
    aclient = anthropic.AsyncAnthropic(base_url=fake.url, api_key=KEY, max_retries=0)
    with fake.hold("async-marker") as hold:
        task = asyncio.create_task(
            aclient.messages.create(
                model="m", max_tokens=8, messages=[{"role": "user", "content": "async-marker"}]
            )
        )
        await hold.wait_seen_async()
        assert not task.done()
        hold.release()
        msg = await asyncio.wait_for(task, 10)
    assert msg.content[0].text == "echo: async-marker"  # type: ignore[union-attr]


def test_hold_over_http_for_other_processes(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    remote = FakeAnthropicRemote(fake.url)
    with remote.hold("remote-marker", at="message_stop") as hold:
        thread, pieces, events = _stream_in_thread(client, "remote-marker")
        assert hold.wait_seen()["seen"] is True
        state = hold.wait_held()
        assert state["held"] and not state["released"]
        assert thread.is_alive() and "message_stop" not in events
        hold.release()
        thread.join(10)
    assert "".join(pieces) == "echo: remote-marker" and events[-1] == "message_stop"
    with pytest.raises(TimeoutError, match="not seen"):
        remote.hold("never sent").wait_seen(timeout_s=0.1)
    remote.release_all()
    resp = httpx.post(fake.url + "/_fake/hold", json={"at": "somewhere"})
    assert resp.status_code == 400 and "token:N" in resp.text


def test_hold_in_the_middle_of_a_block(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("0123456789abcdef" * 3)  # three text deltas of 16 characters
    with fake.hold(at="token:2") as hold:
        thread, pieces, events = _stream_in_thread(client, "hello")
        hold.wait_held()
        wait_for(lambda: len(pieces) == 2, timeout_s=10, what="two deltas")
        assert "".join(pieces) == "0123456789abcdef" * 2 and thread.is_alive()
        hold.release()
        thread.join(10)
    assert len(pieces) == 3 and events[-1] == "message_stop"
