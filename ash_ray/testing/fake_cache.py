"""Prompt-cache accounting and a context window for the fake Messages API.

The real API prices a request's input in three parts: ``cache_read_input_tokens`` (the
longest prefix an earlier request wrote to the cache), ``cache_creation_input_tokens``
(from there up to the request's last ``cache_control`` breakpoint, now written) and
``input_tokens`` (after the last breakpoint). :class:`PromptCache` does the same with
deterministic token counts (a block's canonical JSON characters / 4):

- the prefix runs tools, then system, then messages, block by block; a breakpoint is a
  block carrying ``cache_control``; ``cache_control`` itself does not count;
- ``UNCACHED_TOKENS`` of framing after the last block are never cached;
- a prefix is read from the cache only if an earlier request wrote exactly that prefix
  at one of its breakpoints (looking back up to 20 blocks from each breakpoint, as the
  API does); the model is part of the key; there is no minimum length and no expiry;
- a request over ``context_window_tokens`` is refused like the real API refuses it:
  400 ``invalid_request_error`` "prompt is too long: N tokens > M maximum".

It also answers the summarization requests of :mod:`ash_ray.agent.compact` when no
reply is scripted: "Summary of the earlier conversation: " then the user's requests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from typing import Any

LOOKBACK_BLOCKS = 20
# The real API never reports 0 input tokens: the turn framing after the last breakpoint.
UNCACHED_TOKENS = 3
_SUMMARY_REQUEST = re.compile(
    r"<conversation-to-summarize>\n(.*)\n</conversation-to-summarize>", re.S
)


def block_tokens(block: Any) -> int:
    """Tokens of one prefix block: its JSON without ``cache_control``, / 4, at least 1."""
    if isinstance(block, dict):
        block = {k: v for k, v in block.items() if k != "cache_control"}
    return max(1, len(json.dumps(block, sort_keys=True, separators=(",", ":"))) // 4)


def prefix_blocks(body: dict[str, Any]) -> list[tuple[Any, bool]]:
    """The request's prefix as ``(block, is_breakpoint)`` in cache order."""
    out: list[tuple[Any, bool]] = []
    for tool in body.get("tools") or []:
        out.append((tool, bool(isinstance(tool, dict) and tool.get("cache_control"))))
    system = body.get("system")
    if isinstance(system, str) and system:
        out.append(({"type": "text", "text": system}, False))
    elif isinstance(system, list):
        out += [(b, bool(isinstance(b, dict) and b.get("cache_control"))) for b in system]
    for message in body.get("messages") or []:
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        # The role is part of what the model sees: fold it into the first block's key.
        for i, block in enumerate(blocks):
            marked = bool(isinstance(block, dict) and block.get("cache_control"))
            out.append(({"role": message.get("role"), "block": block} if i == 0 else block, marked))
    return out


def _strip(block: Any) -> Any:
    if isinstance(block, dict):
        inner = block.get("block")
        if isinstance(inner, dict) and "cache_control" in inner:
            block = {**block, "block": {k: v for k, v in inner.items() if k != "cache_control"}}
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


class PromptCache:
    """Prefixes written so far, by hash (callers hold the server lock)."""

    def __init__(
        self, context_window_tokens: int | None = None, max_entries: int = 100_000
    ) -> None:
        self.entries: OrderedDict[str, None] = OrderedDict()
        self.max_entries = max_entries
        self.initial_window = context_window_tokens
        self.context_window_tokens = context_window_tokens

    def clear(self) -> None:
        """Forget every cached prefix and restore the initial context window."""
        self.entries.clear()
        self.context_window_tokens = self.initial_window

    def account(self, body: dict[str, Any]) -> dict[str, int] | str:
        """The usage of ``body`` (and the cache written), or the too-long error message."""
        blocks = prefix_blocks(body)
        cumulative, hashes = [0], [hashlib.sha256(str(body.get("model")).encode())]
        for block, _ in blocks:
            cumulative.append(cumulative[-1] + block_tokens(_strip(block)))
            digest = hashes[-1].copy()
            digest.update(json.dumps(_strip(block), sort_keys=True).encode())
            hashes.append(digest)
        keys = [h.hexdigest() for h in hashes]
        total = cumulative[-1] + UNCACHED_TOKENS
        window = self.context_window_tokens
        if window is not None and total > window:
            return f"prompt is too long: {total} tokens > {window} maximum"
        # keys[i] is the prefix ending after block i-1; a breakpoint on block i ends at i+1.
        ends = [i + 1 for i, (_, marked) in enumerate(blocks) if marked]
        read = 0
        for end in ends:
            for at in range(end, max(0, end - LOOKBACK_BLOCKS) - 1, -1):
                if at > read and keys[at] in self.entries:
                    read = at
                    break
        last = ends[-1] if ends else 0
        for end in ends:
            self.entries[keys[end]] = None
            self.entries.move_to_end(keys[end])
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return {
            "input_tokens": total - cumulative[last],
            "cache_read_input_tokens": cumulative[read],
            "cache_creation_input_tokens": cumulative[last] - cumulative[read] if last else 0,
        }


def summary_reply(said: str) -> str | None:
    """The fake's summary when ``said`` is a compaction request, else None."""
    found = _SUMMARY_REQUEST.search(said)
    if not found:
        return None
    asks = [
        line[len("user: ") :][:80]
        for line in found.group(1).splitlines()
        if line.startswith("user: ")
    ]
    return "Summary of the earlier conversation: the user asked: " + " | ".join(asks or ["nothing"])
