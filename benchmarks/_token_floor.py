"""The floor of ash-ray's design for the first token (issue 14), for message_overhead.py.

A Serve app set up as ash-ray's ingress (direct ingress, handlers on the replica's loop)
and one Ray actor holding an `anthropic` client and the conversation; a message is one
Ray streaming call that yields ``session_start`` and then each text delta as it comes,
framed as SSE by the ingress. Nothing is saved, no tools are offered, no agent loop runs:
what HTTP, Ray and the SDK cost on this machine, measured in the same run as ash-ray.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations.
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ray
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from ray import serve

ROUTE = "/token-floor"


def _frame(type_: str, data: dict[str, Any]) -> bytes:
    return f"event: {type_}\ndata: {json.dumps(data)}\n\n".encode()


@ray.remote(num_cpus=0)
class FloorSession:
    def __init__(self, model_url: str) -> None:
        import anthropic

        self.client = anthropic.AsyncAnthropic(api_key="bench", base_url=model_url,
                                               max_retries=0)
        self.conversation: list[dict[str, Any]] = []

    async def turn(self, content: str) -> AsyncIterator[bytes]:
        self.conversation.append({"role": "user", "content": content})
        yield _frame("session_start", {})
        async with self.client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=1024, messages=self.conversation
        ) as stream:
            async for text in stream.text_stream:
                yield _frame("text_delta", {"text": text})
            final = await stream.get_final_message()
        self.conversation.append(
            {"role": "assistant", "content": [b.model_dump() for b in final.content]}
        )
        yield _frame("done", {})


api = FastAPI()


@serve.deployment(
    max_ongoing_requests=1000,
    ray_actor_options={
        "num_cpus": 0,
        "runtime_env": {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}},
    },
)
@serve.ingress(api)
class TokenFloor:
    def __init__(self, model_url: str) -> None:
        self.session = FloorSession.remote(model_url)  # type: ignore[attr-defined]

    @api.post("/")
    async def message(self, request: Request) -> StreamingResponse:
        content = (await request.json())["content"]
        items = self.session.turn.options(num_returns="streaming").remote(content)

        async def frames() -> AsyncIterator[bytes]:
            async for ref in items:
                yield await ref

        return StreamingResponse(frames(), media_type="text/event-stream")


def deploy(model_url: str) -> None:
    serve.run(TokenFloor.bind(model_url), name="token-floor", route_prefix=ROUTE)


def first_tokens(url: str, prompt: str, n: int) -> tuple[list[float], list[float]]:
    """(first text delta, done) in ms for ``n`` messages, over HTTP/SSE as a client reads."""
    ttft, total = [], []
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(n):
            t0 = time.perf_counter()
            first = done = None
            with http.stream("POST", f"{ROUTE}/", json={"content": prompt}) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"token floor at {url}: {r.status_code} {r.read()[:200]!r}")
                for line in r.iter_lines():
                    if first is None and line == "event: text_delta":
                        first = time.perf_counter()
                    elif line == "event: done":
                        done = time.perf_counter()
            total.append(((done or time.perf_counter()) - t0) * 1000)
            ttft.append(((first or time.perf_counter()) - t0) * 1000)
    return ttft, total
