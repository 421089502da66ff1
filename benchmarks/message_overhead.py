"""Overhead of ash-ray on one message: time to first token and to `done`.

Baseline: the same streaming request made directly with the `anthropic` SDK to the same
fake Messages API (same delays, same conversation length): ash-ray's own request (its
system prompt and tool definitions, taken from what it sent), and a minimal one (the design
floor sends that; each path's overhead is over the direct call of its own request).
ash-ray path: HTTP POST to the ingress replica (Serve direct ingress), session worker
(agent loop + SDK), SSE back; the same through the Serve proxy, and the Ray-native path
without HTTP, for comparison. The design floor (`_token_floor.py`): the same HTTP/SSE
path through a Serve app and an actor with the SDK, nothing of ash-ray.

    python benchmarks/message_overhead.py [--n 50] [--first-token-ms 50] [--chunk-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import _token_floor
import anthropic
import httpx
import ray
from _floors import request_params
from _harness import HEADER, local_ash, make_agent, pct, row

from ash_ray.names import REGISTRY_NAME
from ash_ray.testing.fake_anthropic import FakeAnthropic

PROMPT = "Please answer with a sentence of a reasonable length for the benchmark."


MINIMAL = {"model": "claude-sonnet-4-6", "max_tokens": 1024, "system": "bench"}


async def direct(fake: FakeAnthropic, n: int, params: dict) -> tuple[list[float], list[float]]:
    client = anthropic.AsyncAnthropic(api_key="bench", base_url=fake.url, max_retries=0)
    conversation: list[dict] = []
    ttft, total = [], []
    for _ in range(n):
        conversation.append({"role": "user", "content": PROMPT})
        t0 = time.perf_counter()
        first = None
        async with client.messages.stream(**params, messages=conversation) as stream:
            async for event in stream:
                if first is None and event.type == "content_block_delta":
                    first = time.perf_counter()
            final = await stream.get_final_message()
        total.append((time.perf_counter() - t0) * 1000)
        ttft.append(((first or time.perf_counter()) - t0) * 1000)
        conversation.append({"role": "assistant", "content": final.model_dump()["content"]})
    await client.close()
    return ttft, total


def through_ash(url: str, sid: str, n: int) -> tuple[list[float], list[float]]:
    ttft, total = [], []
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(n):
            body = {"content": PROMPT, "includePartialMessages": True}
            t0 = time.perf_counter()
            first = None
            done = None
            with http.stream("POST", f"/api/sessions/{sid}/messages", json=body) as r:
                event = ""
                # Read to the end of the stream (it closes right after `done`), as a client
                # does, so that the connection is kept for the next message.
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                        if first is None and event == "text_delta":
                            first = time.perf_counter()
                    elif line.startswith("data: ") and event == "done" and done is None:
                        done = time.perf_counter()
            total.append(((done or time.perf_counter()) - t0) * 1000)
            ttft.append(((first or time.perf_counter()) - t0) * 1000)
    return ttft, total


def through_ray(sid: str, namespace: str, n: int) -> tuple[list[float], list[float]]:
    """Ray-native path (no HTTP): the worker's streaming generator from this driver."""
    registry = ray.get_actor(REGISTRY_NAME, namespace=namespace)
    handle = ray.get(registry.live_handle.remote(sid))
    ttft, total = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        first = None
        options = {"include_partial_messages": True}
        for ref in handle.ask_stream.options(num_returns="streaming").remote(PROMPT, options):
            _seq, type_, _data = ray.get(ref)
            if first is None and type_ == "text_delta":
                first = time.perf_counter()
        total.append((time.perf_counter() - t0) * 1000)
        ttft.append(((first or time.perf_counter()) - t0) * 1000)
    return ttft, total


def serve_floor(urls: list[str], n: int) -> list[list[float]]:
    """Baseline: a trivial streaming FastAPI app (8 SSE frames) at each of ``urls``."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from ray import serve

    api = FastAPI()

    @serve.deployment(
        ray_actor_options={
            "num_cpus": 0,
            "runtime_env": {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}},
        }
    )
    @serve.ingress(api)
    class Floor:
        @api.post("/")
        async def stream(self) -> StreamingResponse:
            async def frames():  # type: ignore[no-untyped-def]
                for i in range(8):
                    yield f"id: {i}\nevent: text_delta\ndata: {{}}\n\n".encode()

            return StreamingResponse(frames(), media_type="text/event-stream")

    serve.run(Floor.bind(), name="floor", route_prefix="/floor")
    results = []
    for url in urls:
        out = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(n + 5):
                t0 = time.perf_counter()
                with http.stream("POST", "/floor/") as r:
                    for _ in r.iter_lines():
                        pass
                if i >= 5:
                    out.append((time.perf_counter() - t0) * 1000)
        results.append(out)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--first-token-ms", type=float, default=20.0)
    ap.add_argument("--chunk-ms", type=float, default=1.0)
    args = ap.parse_args()

    fake = FakeAnthropic(first_token_delay_s=args.first_token_ms / 1000,
                         chunk_delay_s=args.chunk_ms / 1000).start()
    root = Path(tempfile.mkdtemp(prefix="ash-bench-agents-"))
    with local_ash(apps=3, anthropic_base_url=fake.url, anthropic_api_key="bench") as (
        url, settings
    ):
        proxy_url = f"http://127.0.0.1:{settings.serve_proxy_port}"
        with httpx.Client(base_url=url, timeout=60) as http:
            http.post("/api/agents", json={"name": "bench", "path": str(make_agent(root))})
            # One session a path, so that every path carries a conversation of the same length.
            sid, sid_proxy, sid_ray = (
                http.post("/api/sessions", json={"agent": "bench"}).json()["session"]["id"]
                for _ in range(3)
            )
        _token_floor.deploy(fake.url)  # the second app: direct ingress on port + 1
        floor_url = f"http://127.0.0.1:{settings.port + 1}"
        _token_floor.first_tokens(floor_url, PROMPT, args.warmup)
        through_ash(url, sid, args.warmup)
        through_ash(proxy_url, sid_proxy, args.warmup)
        through_ray(sid_ray, settings.namespace, args.warmup)
        own = request_params(fake.message_requests)
        asyncio.run(direct(fake, args.warmup, own))
        asyncio.run(direct(fake, args.warmup, MINIMAL))
        # Interleave the paths in rounds so that machine noise hits all alike.
        paths = {
            "direct": lambda k: asyncio.run(direct(fake, k, own)),
            "minimal": lambda k: asyncio.run(direct(fake, k, MINIMAL)),
            "ash": lambda k: through_ash(url, sid, k),
            "proxy": lambda k: through_ash(proxy_url, sid_proxy, k),
            "ray": lambda k: through_ray(sid_ray, settings.namespace, k),
            "floor": lambda k: _token_floor.first_tokens(floor_url, PROMPT, k),
        }
        ttft: dict[str, list[float]] = {name: [] for name in paths}
        total: dict[str, list[float]] = {name: [] for name in paths}
        rounds = 5
        for _ in range(rounds):
            for name, run in paths.items():
                t, tot = run(args.n // rounds)
                ttft[name] += t
                total[name] += tot
        floor_direct, floor_proxy = serve_floor(
            [f"http://127.0.0.1:{settings.port + 2}", proxy_url], args.n
        )
        registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
        ray_call = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            ray.get(registry.ping.remote())
            ray_call.append((time.perf_counter() - t0) * 1000)
    fake.stop()
    print(f"\nmessage overhead: model first-token delay {args.first_token_ms} ms, "
          f"chunk delay {args.chunk_ms} ms, {len(total['ash'])} messages per path\n")
    print(f"ash-ray's request: {len(own.get('tools', []))} tools, system prompt of "
          f"{len(json.dumps(own.get('system')))} characters\n")
    print(HEADER)
    for label, values in (("first token", ttft), ("done", total)):
        print(row(f"direct SDK, ash-ray's request: {label}", values["direct"]))
        print(row(f"direct SDK, minimal request: {label}", values["minimal"]))
        print(row(f"ash-ray HTTP/SSE: {label}", values["ash"]))
        print(row(f"ash-ray via the Serve proxy: {label}", values["proxy"]))
        print(row(f"ray-native ask_stream (no HTTP): {label}", values["ray"]))
        print(row(f"design floor, Serve + actor + SDK: {label}", values["floor"]))
    print(row("baseline: trivial 8-frame SSE app, direct", floor_direct))
    print(row("baseline: trivial 8-frame SSE app, proxy", floor_proxy))
    print(row("baseline: one Ray actor call (registry ping)", ray_call))
    print()
    print(json.dumps({
        "overhead_first_token_p50_ms": round(pct(ttft["ash"], 50) - pct(ttft["direct"], 50), 2),
        "design_floor_first_token_p50_ms": round(
            pct(ttft["floor"], 50) - pct(ttft["minimal"], 50), 2
        ),
        "overhead_first_token_p50_ms_over_minimal": round(
            pct(ttft["ash"], 50) - pct(ttft["minimal"], 50), 2
        ),
        "overhead_done_p50_ms": round(pct(total["ash"], 50) - pct(total["direct"], 50), 2),
        "overhead_done_p95_ms": round(pct(total["ash"], 95) - pct(total["direct"], 95), 2),
    }))


if __name__ == "__main__":
    main()
