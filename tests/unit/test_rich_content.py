"""Rich message content: what is accepted, what is refused (and how the 400 names it),
and the Read tool handing images and PDFs to the model as blocks."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ash_ray.content import IMAGE_MAX_BYTES, MAX_BLOCKS, prompt_text, with_text
from ash_ray.models import MessageCreate

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 24
GIF = b"GIF89a" + b"\x00" * 24
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def source(data: bytes | str, media_type: str) -> dict[str, Any]:
    encoded = data if isinstance(data, str) else b64(data)
    return {"type": "base64", "media_type": media_type, "data": encoded}


def image(data: bytes | str, media_type: str) -> dict[str, Any]:
    return {"type": "image", "source": source(data, media_type)}


def pdf(data: bytes | str = PDF, media_type: str = "application/pdf") -> dict[str, Any]:
    return {"type": "document", "source": source(data, media_type)}


def refused(content: Any) -> str:
    with pytest.raises(ValidationError) as info:
        MessageCreate(content=content)
    return str(info.value.errors()[0]["msg"])


def test_string_and_blocks_pass_through_in_api_form() -> None:
    assert MessageCreate(content="hello").content == "hello"
    blocks = [
        {"type": "text", "text": "what is in these?"},
        image(PNG, "image/png"),
        image(JPEG, "image/jpeg"),
        image(GIF, "image/gif"),
        image(WEBP, "image/webp"),
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {**pdf(), "title": "report"},
    ]
    assert MessageCreate(content=blocks).content == blocks


def test_wrong_image_media_type_is_refused() -> None:
    msg = refused([image(PNG, "image/bmp")])
    assert "block 0 (image)" in msg and "'image/bmp' is not supported" in msg
    assert "image/png" in msg  # says what would do


def test_media_type_that_lies_about_the_bytes_is_refused() -> None:
    msg = refused([{"type": "text", "text": "x"}, image(PNG, "image/jpeg")])
    assert "block 1 (image)" in msg and "not image/jpeg" in msg and "image/png" in msg


def test_document_must_be_a_pdf() -> None:
    assert "'text/plain' is not supported" in refused([pdf(b"hello", "text/plain")])
    assert "not application/pdf" in refused([pdf(PNG)])


def test_bad_base64_is_refused() -> None:
    assert "not valid base64" in refused([image("@@not-base64@@", "image/png")])
    assert "not valid base64" in refused([pdf("%%")])


def test_too_many_blocks_are_refused() -> None:
    ok = [{"type": "text", "text": "x"}] * MAX_BLOCKS
    assert len(MessageCreate(content=ok).content) == MAX_BLOCKS
    too_many = refused([*ok, {"type": "text", "text": "y"}])
    assert f"{MAX_BLOCKS + 1} blocks; at most {MAX_BLOCKS}" in too_many


def test_other_refusals_name_the_problem() -> None:
    assert "empty list" in refused([])
    assert "type must be text, image or document" in refused([{"type": "audio", "data": "x"}])
    assert "at least 1 character" in refused([{"type": "text", "text": ""}])
    url = refused([{"type": "image", "source": {"type": "url", "url": "file:///etc/passwd"}}])
    assert "source.url" in url
    assert "Extra inputs" in refused([{"type": "text", "text": "x", "cache_control": {}}])


def test_oversized_image_is_refused() -> None:
    big = PNG + b"\x00" * IMAGE_MAX_BYTES
    assert "over the" in refused([image(big, "image/png")])


def test_prompt_helpers_for_hooks() -> None:
    blocks = [{"type": "text", "text": "a"}, image(PNG, "image/png"), {"type": "text", "text": "b"}]
    assert prompt_text(blocks) == "a\nb"
    assert prompt_text("plain") == "plain"
    assert with_text("p", "ctx") == "p\n\nctx"
    assert with_text(blocks, "ctx")[-1] == {"type": "text", "text": "ctx"}


# ---------------------------------------------------------------- the Read tool


async def test_read_returns_images_and_pdfs_as_blocks(tmp_path: Path) -> None:
    from ash_ray.agent import (
        BUILTIN_TOOLS,
        PermissionPolicy,
        PermissionRules,
        ToolContext,
        run_tool,
    )
    from ash_ray.agent.spec import load_agent
    from ash_ray.config import load_settings
    from ash_ray.sandbox import create_sandbox

    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "CLAUDE.md").write_text("prompt")
    box = create_sandbox(load_settings(data_dir=tmp_path / "data"), tmp_path / "data" / "s")
    try:
        ctx = ToolContext(
            sandbox=box, spec=load_agent(agent), policy=PermissionPolicy(PermissionRules()),
            default_timeout_s=10.0, max_write_bytes=1024,
        )
        (box.workspace / "shot.png").write_bytes(PNG)
        (box.workspace / "paper.pdf").write_bytes(PDF)
        (box.workspace / "huge.gif").write_bytes(GIF + b"\x00" * IMAGE_MAX_BYTES)
        shot = await run_tool(ctx, BUILTIN_TOOLS["Read"], {"file_path": "shot.png"})
        assert shot.content == [image(PNG, "image/png")]
        paper = await run_tool(ctx, BUILTIN_TOOLS["Read"], {"file_path": "paper.pdf"})
        assert paper.content == [pdf()]
        huge = await run_tool(ctx, BUILTIN_TOOLS["Read"], {"file_path": "huge.gif"})
        assert huge.is_error and "over the" in str(huge.content)
    finally:
        await box.close()


# ---------------------------------------------------------------- through the agent loop


async def _turn(loop: Any, conversation: list[dict[str, Any]], prompt: Any) -> list[Any]:
    import asyncio

    from ash_ray.agent import TurnOptions

    return [e async for e in loop.run_turn(conversation, prompt, TurnOptions(), asyncio.Event())]


async def test_blocks_reach_the_model_and_stay_in_the_conversation(
    tmp_path: Path, client: Any, fake: Any
) -> None:
    from ash_ray.agent import AgentLoop, load_agent
    from ash_ray.config import load_settings
    from ash_ray.sandbox import create_sandbox
    from ash_ray.testing.fake_anthropic import Reply, tool_use

    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "CLAUDE.md").write_text("prompt")
    settings = load_settings(data_dir=tmp_path / "data", default_model="claude-sonnet-4-6")
    box = create_sandbox(settings, tmp_path / "data" / "s")
    loop = AgentLoop(client, load_agent(agent), box, settings, session_id="s1")
    try:
        blocks = [{"type": "text", "text": "look"}, image(PNG, "image/png"), pdf()]
        prompt = MessageCreate(content=blocks).content
        conversation: list[dict[str, Any]] = []
        events = await _turn(loop, conversation, prompt)
        # The model got the blocks as they were sent; its answer says so.
        sent = fake.message_requests[-1]["messages"][0]["content"]
        assert [b["type"] for b in sent] == ["text", "image", "document"]
        assert sent[1]["source"] == image(PNG, "image/png")["source"]
        assert events[-1].data["result"] == "echo: look [saw: image/png, application/pdf]"
        # The conversation (what a cold resume reloads) keeps them; the prompt message too.
        assert conversation[0] == {"role": "user", "content": prompt}
        assert events[0].data["message"]["content"] == prompt

        # The Read tool shows an image to the model as an image block.
        (box.workspace / "shot.png").write_bytes(PNG)
        fake.script(Reply([tool_use("Read", {"file_path": "shot.png"}, id="toolu_r")]))
        events = await _turn(loop, conversation, "read the screenshot")
        result = fake.message_requests[-1]["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and result["content"] == [image(PNG, "image/png")]
        assert events[-1].data["result"] == "tool said:  [saw: image/png]"
    finally:
        await loop.aclose()
        await box.close()
