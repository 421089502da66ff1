"""The fake model's prompt-cache accounting and context window, through the real SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from ash_ray.testing.fake_anthropic import FakeAnthropic
from ash_ray.testing.fake_cache import UNCACHED_TOKENS, PromptCache, block_tokens

CC = {"type": "ephemeral"}
SYSTEM = "You are a test agent. " * 40


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def sdk(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.url, api_key="k", max_retries=0) as client:
        yield client


def ask(sdk: anthropic.Anthropic, messages: list[dict[str, Any]], system: Any = None) -> Any:
    system = (
        system if system is not None else [{"type": "text", "text": SYSTEM, "cache_control": CC}]
    )
    return sdk.messages.create(model="m", max_tokens=10, system=system, messages=messages).usage  # type: ignore[arg-type]


def user(text: str, cached: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if cached:
        block["cache_control"] = CC
    return {"role": "user", "content": [block]}


def test_first_request_writes_then_the_same_prefix_is_read(sdk: anthropic.Anthropic) -> None:
    first = ask(sdk, [user("hello")])
    system_tokens = block_tokens({"type": "text", "text": SYSTEM})
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation_input_tokens == system_tokens
    assert first.input_tokens > UNCACHED_TOKENS  # the message is after the last breakpoint
    second = ask(sdk, [user("something else")])
    assert second.cache_read_input_tokens == system_tokens
    assert second.cache_creation_input_tokens == 0


def test_a_prefix_is_read_only_if_a_breakpoint_wrote_it(sdk: anthropic.Anthropic) -> None:
    # No breakpoint at all: nothing is cached, ever.
    plain = [{"type": "text", "text": SYSTEM}]
    ask(sdk, [user("a")], system=plain)
    again = ask(sdk, [user("a")], system=plain)
    assert again.cache_read_input_tokens == 0 and again.cache_creation_input_tokens == 0
    # A breakpoint on the message writes system + message; the next call reads all of it.
    conv = [user("first question", cached=True)]
    wrote = ask(sdk, conv)
    conv2 = [user("first question"), {"role": "assistant", "content": "answer"},
             user("next", cached=True)]  # fmt: skip
    read = ask(sdk, conv2)
    assert read.cache_read_input_tokens == wrote.cache_creation_input_tokens
    assert read.cache_creation_input_tokens > 0  # the new turn, written for the next call
    total = read.input_tokens + read.cache_read_input_tokens + read.cache_creation_input_tokens
    assert read.cache_read_input_tokens / total > 0.5


def test_a_changed_prefix_misses(sdk: anthropic.Anthropic) -> None:
    ask(sdk, [user("q", cached=True)])
    other = [{"type": "text", "text": SYSTEM + "!", "cache_control": CC}]
    changed = ask(sdk, [user("q", cached=True)], system=other)
    assert changed.cache_read_input_tokens == 0


def test_context_window_refuses_like_the_real_api(
    fake: FakeAnthropic, sdk: anthropic.Anthropic
) -> None:
    fake.configure(context_window_tokens=100)
    fake.script("never sent")
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(sdk, [user("x" * 1000)])
    assert caught.value.status_code == 400
    assert "prompt is too long:" in str(caught.value) and "> 100 maximum" in str(caught.value)
    assert fake.pending == 1  # the scripted reply was not consumed
    fake.reset()  # back to no window
    assert ask(sdk, [user("x" * 1000)]).input_tokens > 100


def test_lookback_is_limited_to_20_blocks() -> None:
    cache = PromptCache()
    blocks = [{"type": "text", "text": f"b{i}"} for i in range(30)]
    first = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [*blocks[:5], {**blocks[5], "cache_control": CC}]}
        ],
    }
    assert isinstance(cache.account(first), dict)
    near = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [*blocks[:25], {**blocks[25], "cache_control": CC}]}
        ],
    }
    far = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [*blocks[:29], {**blocks[29], "cache_control": CC}]}
        ],
    }
    assert cache.account(near)["cache_read_input_tokens"] > 0  # type: ignore[index]
    cache2 = PromptCache()
    cache2.account(first)
    assert cache2.account(far)["cache_read_input_tokens"] == 0  # type: ignore[index]
