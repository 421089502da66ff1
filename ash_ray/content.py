"""Rich message content: the blocks a prompt may carry, validated at the edge.

``POST .../messages`` takes ``content`` as a string or as up to :data:`MAX_BLOCKS`
Messages-API blocks: ``text``, ``image`` (base64 or URL) and ``document`` (a PDF, base64).
They reach the model as they are (the API's input form), and the conversation keeps
them, so a cold resume sends them again. What the model API would refuse (a media type
it does not take, data that is not base64 or not what its media type says, an image over
its size limit) is refused here with a 400 naming the block, before a turn starts.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

MAX_BLOCKS = 20  # Ash: an array of at most 20 blocks
TEXT_MAX = 500_000  # Ash: a string prompt of at most 500,000 characters
IMAGE_MAX_BYTES = 5 * 1024 * 1024  # the Messages API's limit per image (decoded)
PDF_MAX_BYTES = 32 * 1024 * 1024  # the Messages API's limit per PDF (decoded)
URL_MAX = 4096

ImageMediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
IMAGE_MEDIA_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/gif", "image/webp")


def sniff(data: bytes) -> str | None:
    """The media type the bytes' signature says (of those the model takes), if any."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def decode_base64(data: str) -> bytes:
    """Strict base64 (the API refuses anything else); ValueError says why."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("data is not valid base64") from None


def check_media(data: str, media_type: str, max_bytes: int) -> None:
    """Base64 that decodes, within ``max_bytes``, whose bytes are what ``media_type`` says."""
    raw = decode_base64(data)
    if not raw:
        raise ValueError("data is empty")
    if len(raw) > max_bytes:
        raise ValueError(
            f"{media_type} data is {len(raw)} bytes, over the {max_bytes}-byte limit"
        )
    found = sniff(raw)
    if found != media_type:
        raise ValueError(
            f"data is not {media_type}"
            + (f" (its bytes are {found})" if found else " (unrecognised bytes)")
        )


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Base64Image(_Block):
    type: Literal["base64"]
    media_type: ImageMediaType
    data: str

    @field_validator("data")
    @classmethod
    def _data(cls, value: str, info: Any) -> str:
        media_type = info.data.get("media_type")
        if media_type is not None:  # a wrong media type is its own error
            check_media(value, media_type, IMAGE_MAX_BYTES)
        return value


class UrlSource(_Block):
    type: Literal["url"]
    url: Annotated[str, StringConstraints(max_length=URL_MAX, pattern=r"^https?://\S+$")]


class Base64Pdf(_Block):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str

    @field_validator("data")
    @classmethod
    def _data(cls, value: str) -> str:
        check_media(value, "application/pdf", PDF_MAX_BYTES)
        return value


class TextBlock(_Block):
    type: Literal["text"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=TEXT_MAX)]


class ImageBlock(_Block):
    type: Literal["image"]
    source: Annotated[Base64Image | UrlSource, Field(discriminator="type")]


class Citations(_Block):
    enabled: bool


class DocumentBlock(_Block):
    type: Literal["document"]
    source: Annotated[Base64Pdf | UrlSource, Field(discriminator="type")]
    title: Annotated[str, StringConstraints(max_length=500)] | None = None
    context: Annotated[str, StringConstraints(max_length=TEXT_MAX)] | None = None
    citations: Citations | None = None


ContentBlock = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]
Blocks = Annotated[list[ContentBlock], Field(min_length=1, max_length=MAX_BLOCKS)]
PromptText = Annotated[str, StringConstraints(min_length=1, max_length=TEXT_MAX)]
# What a turn takes as its prompt: a string, or blocks in the API's input form.
Prompt = str | list[dict[str, Any]]


def api_content(content: str | list[BaseModel]) -> Prompt:
    """The prompt in the Messages API's input form (JSON-ready)."""
    if isinstance(content, str):
        return content
    return [b.model_dump(mode="json", exclude_none=True) for b in content]


def prompt_text(prompt: Prompt) -> str:
    """The text of a prompt (its text blocks joined): what hooks and titles read."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(b["text"] for b in prompt if b.get("type") == "text")


def with_text(prompt: Prompt, extra: str) -> Prompt:
    """The prompt with ``extra`` text after it (hook context)."""
    if isinstance(prompt, str):
        return prompt + "\n\n" + extra
    return [*prompt, {"type": "text", "text": extra}]


_BLOCKS: TypeAdapter[list[Any]] = TypeAdapter(Blocks)


def _where(loc: tuple[Any, ...]) -> str:
    # loc is (index, block type, field, ...); under "source" comes the union's tag.
    fields = [str(p) for p in loc[2:]]
    if fields[:1] == ["source"] and len(fields) > 2:
        del fields[1]
    return ".".join(fields)


def parse_blocks(value: list[Any]) -> Prompt:
    """Validated blocks in API input form; PydanticCustomError names the first bad one."""
    if not value:
        raise PydanticCustomError("content_blocks", "content must not be an empty list")
    if len(value) > MAX_BLOCKS:
        raise PydanticCustomError(
            "content_blocks",
            "content has {n} blocks; at most {max} are allowed",
            {"n": len(value), "max": MAX_BLOCKS},
        )
    try:
        blocks = _BLOCKS.validate_python(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"]
        index = loc[0] if loc and isinstance(loc[0], int) else 0
        kind = value[index].get("type") if isinstance(value[index], dict) else None
        where = _where(loc)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid" and not where:
            msg = "type must be text, image or document"
        elif err["type"] == "literal_error" and where.endswith("media_type"):
            allowed = IMAGE_MEDIA_TYPES if kind == "image" else ("application/pdf",)
            msg = f"media_type {err['input']!r} is not supported; use one of {', '.join(allowed)}"
        raise PydanticCustomError(
            "content_blocks",
            "content block {i} ({kind}): {where}{msg}",
            {"i": index, "kind": kind or "?", "where": f"{where}: " if where else "", "msg": msg},
        ) from None
    return api_content(blocks)
