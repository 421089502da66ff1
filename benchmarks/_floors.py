"""Floors for benchmarks/load.py, measured in the same run as ash-ray.

- The SDK straight to the fake model from one process: the CPU and latency of the model
  call alone (no HTTP server, no Ray).
- The Ray floor (``_ray_floor_app.py``): one Ray Serve ingress replica set up as ash-ray's, one
  Ray actor a session with the SDK, the reply streamed over a Ray streaming generator:
  the parts ash-ray's design puts on a turn's path, without ash-ray's own work (saving,
  sandbox, agent loop, registry). With ``saves``, plus the two saves a turn the contract
  needs (a store actor committing to SQLite): the floor of any design that keeps it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _server import MODEL_KEY, Server

APP = Path(__file__).with_name("_ray_floor_app.py")


def request_params(requests: list[dict[str, Any]]) -> dict[str, Any]:
    """The fixed part of the last recorded model request (model, max_tokens, system
    prompt, tools): what a floor sends to send what ash-ray sent."""
    body = requests[-1]
    return {k: body[k] for k in ("model", "max_tokens", "system", "tools") if k in body}


class RayFloor(Server):
    """The Ray floor app in its own process tree and Ray cluster, like `ash-ray start`;
    its sessions send ``request`` (see request_params) with their conversations."""

    def __init__(self, model_url: str, request: dict[str, Any], saves: bool = False) -> None:
        super().__init__(model_url, "")
        self.saves = saves
        self.request_file = self.root / "request.json"
        self.request_file.write_text(json.dumps(request))

    def command(self) -> list[str]:
        return [sys.executable, str(APP), str(self.port), self.env["ASH_PROXY_PORT"],
                self.env["ANTHROPIC_BASE_URL"], MODEL_KEY, str(self.request_file),
                "saves" if self.saves else "none"]


_DIRECT = """
import asyncio, json, resource, sys, time
import anthropic

async def main(url, key, n, concurrency, request):
    client = anthropic.AsyncAnthropic(api_key=key, base_url=url, max_retries=0)
    first, done = [], []
    queue = list(range(n))

    async def one(k):
        t0 = time.perf_counter()
        async with client.messages.stream(
            **request, messages=[{"role": "user", "content": f"load message {k}"}],
        ) as stream:
            got = None
            async for _event in stream:
                got = got or time.perf_counter()
            await stream.get_final_message()
        first.append((got - t0) * 1000)
        done.append((time.perf_counter() - t0) * 1000)

    async def worker():
        while queue:
            await one(queue.pop())

    await one(-1)  # the SDK's first-request costs, as a warmed worker has paid them
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    print(json.dumps({"cpu_s": cpu, "first": first, "done": done}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                 json.loads(sys.argv[5])))
"""


def direct_turns(model_url: str, n: int, concurrency: int, request: dict[str, Any]) -> dict:
    """The same short turns, with ``request``'s fixed part, sent straight to the fake
    model with the anthropic SDK, in a process of their own: its CPU per turn is the
    floor of a session worker's."""
    out = subprocess.run(
        [sys.executable, "-c", _DIRECT, model_url, MODEL_KEY, str(n), str(concurrency),
         json.dumps(request)],
        check=True, capture_output=True, text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
