"""One streamed model call that an interrupt can cut short between any two events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic

from ash_ray.agent.messages import AgentEvent, api_block, delta_event, stream_event_message


@dataclass
class Reply:
    """What one streamed model call produced (filled by the pump task)."""

    snapshot: Any = None
    final: Any = None
    stopped: set[int] = field(default_factory=set)
    interrupted: bool = False

    @property
    def message(self) -> Any:
        return self.final if self.final is not None else self.snapshot

    def kept_blocks(self) -> list[dict[str, Any]]:
        """The reply's blocks in API input form; of a cut-off reply, its finished text."""
        if self.final is not None:
            return [api_block(b) for b in self.final.content]
        if self.snapshot is None:
            return []
        # Cut off mid-stream: only finished text survives; a half tool call cannot run.
        return [
            api_block(b)
            for i, b in enumerate(self.snapshot.content)
            if i in self.stopped and b.type == "text" and b.text
        ]


async def first(task: asyncio.Future[Any], interrupt: asyncio.Event) -> bool:
    """Wait for ``task`` or ``interrupt``; True when the task finished (it wins a tie)."""
    if interrupt.is_set():
        return False
    waiter = asyncio.ensure_future(interrupt.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return task.done()


def _open(client: anthropic.AsyncAnthropic, request: dict[str, Any]) -> Any:
    """The SDK stream manager; ``betas`` go through ``client.beta`` (the anthropic-beta header)."""
    betas = request.get("betas")
    if betas:
        return client.beta.messages.stream(**request)
    return client.messages.stream(**{k: v for k, v in request.items() if k != "betas"})


async def stream_reply(
    client: anthropic.AsyncAnthropic,
    request: dict[str, Any],
    include_partial: bool,
    interrupt: asyncio.Event,
    reply: Reply,
) -> AsyncIterator[AgentEvent]:
    """Stream one call into ``reply``; stops on interrupt. With ``include_partial`` it
    yields, per raw stream event, its granular delta event (as Ash names them) and then
    the SDK ``stream_event`` message.

    API errors raise here, before or after some deltas.
    """
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def watch() -> None:
        # One waiter for the whole stream, not one per event: the interrupt joins the
        # queue, so the reader below waits on the queue alone.
        await interrupt.wait()
        queue.put_nowait(("interrupt", None))

    async def pump() -> None:
        # A separate task so an interrupt can abandon the stream between any two
        # events (cancelling it closes the HTTP response).
        try:
            async with _open(client, request) as stream:
                async for event in stream:
                    reply.snapshot = stream.current_message_snapshot
                    if event.type == "content_block_stop":
                        reply.stopped.add(event.index)
                    await queue.put(("event", event))
                await queue.put(("final", await stream.get_final_message()))
        except Exception as exc:
            await queue.put(("error", exc))

    task, watcher = asyncio.create_task(pump()), asyncio.create_task(watch())
    try:
        while True:
            # An event already queued still loses to an interrupt set before it is read.
            got: tuple[str, Any] = ("interrupt", None)
            if not interrupt.is_set():
                got = await queue.get()
            kind, item = got
            if kind == "interrupt":
                reply.interrupted = True
                return
            if kind == "error":
                raise item
            if kind == "final":
                reply.final = item
                return
            if include_partial and (message := stream_event_message(item)) is not None:
                if (delta := delta_event(item)) is not None:
                    yield delta
                yield AgentEvent("message", message)
    finally:
        task.cancel()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(task, watcher, return_exceptions=True)
