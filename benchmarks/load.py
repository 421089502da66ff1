"""Load run (issues 10, 14): N sessions x M messages at concurrency C against a real server.

Starts `ash-ray start` as a subprocess of its own (fake model in this process, loopback
only, fresh data dir), so that the server's CPU and memory are measured apart from the
load generator's. Each of C workers takes the next session: creates it, sends its M
messages one after another over SSE, checks that every acknowledged message is stored,
then stops the session (its worker is freed) unless --keep. Prints one table.

With --warm, the run has phases: first every session is created and runs one turn (its
worker is bound and warm), the server is left to settle (the pool refilled), then only
the M x N turns are measured, CPU included, and the sessions are checked and stopped
after. The server's CPU per turn is then the turns' own, without worker start-ups.
--py-spy DIR also records the ingress replica, the registry and the busiest session
worker with py-spy during the measured phase and prints their top functions (the
profiler costs CPU: take the CPU figures from a run without it). --ray-floor then runs
the same load against the Ray floor (`_ray_floor_app.py`: Serve set up as ash-ray's and an
actor a session, nothing else) and prints both side by side. The floor's sessions, and the
SDK floor's turns, send the fixed part of ash-ray's own model request (its system prompt
and tool definitions) with their conversations: the model gets the same bytes from all.
--saves-floor also runs it making the two saves a turn that ash-ray's contract needs (the
prompt committed before ``session_start`` acknowledges it, the reply before ``done``, by
one store actor on SQLite): the floor of any design that keeps what it acknowledged.

The load client and the fake model (one process) run at nice -10 (--client-nice; its
Linux autogroup too), the server at the default: they stand for clients and a model API
on other machines. At the server's priority on 2 shared cores the client waited for a
CPU most of a run, and that wait was most of the measured first-event tail.

    python benchmarks/load.py [--sessions 40] [--messages 5] [--concurrency 8]
                              [--database-url postgresql://...] [--keep]
                              [--warm] [--py-spy DIR] [--ray-floor] [--saves-floor]
                              [--client-nice -10]

Figures: errors (HTTP errors, failed streams, ``error`` events), lost messages
(acknowledged user messages missing from GET .../messages), latency percentiles of
create, first event and done, CPU seconds of the server's processes per turn (Ray's
daemons, Serve, registry and session workers, sampled every second: a worker's last
second before it exits is missed) beside the floor (the same turns sent straight to the
fake model with the `anthropic` SDK from one process: its CPU per turn), and the
server's memory (RSS and PSS summed over its processes, at the peak of 1 s samples and
at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from _floors import RayFloor, direct_turns, request_params
from _harness import CLIENT_NICE, client_ahead, make_agent
from _load_report import Measured, Stats, floor_table, table
from _server import MODEL_KEY, Profiles, Sampler, Server, memory_mb

from ash_ray.testing.fake_anthropic import FakeAnthropic

# ---------------------------------------------------------------------- the load


async def turn(http: httpx.AsyncClient, sid: str, content: str, stats: Stats,
               first_ms: list[float] | None = None, also: list[float] | None = None) -> None:
    """One message over SSE; counted as sent when acknowledged (the stream started)."""
    t0 = time.perf_counter()
    first = None
    sent: list[float] = []

    async def trace(event: str, _info: object) -> None:  # httpcore's request trace
        if event == "http11.send_request_headers.started":
            sent.append(time.perf_counter())

    async with http.stream(
        "POST", f"/api/sessions/{sid}/messages", json={"content": content},
        extensions={"trace": trace},
    ) as r:
        if sent:  # how long the request waited in this process before it went out
            stats.client_wait_ms.append((sent[0] - t0) * 1000)
        if r.status_code != 200:
            stats.errors.append(f"message {r.status_code}: {(await r.aread())[:200]!r}")
            return
        stats.sent.setdefault(sid, []).append(content)
        last = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                if first is None:
                    first = time.perf_counter()
                last = line[7:]
                if last == "error":
                    stats.errors.append(f"error event in session {sid}")
    if first is not None:
        (stats.first_ms if first_ms is None else first_ms).append((first - t0) * 1000)
        if also is not None:
            also.append((first - t0) * 1000)
        if first_ms is None:
            stats.first_at.append((t0, (first - t0) * 1000))
    if last != "done":
        stats.errors.append(f"stream of session {sid} ended with {last!r}")
    elif first_ms is None:
        stats.done_ms.append((time.perf_counter() - t0) * 1000)
        stats.turns += 1


async def create(http: httpx.AsyncClient, stats: Stats) -> str | None:
    t0 = time.perf_counter()
    r = await http.post("/api/sessions", json={"agent": "load"})
    if r.status_code != 201:
        stats.errors.append(f"create {r.status_code}: {r.text[:200]}")
        return None
    stats.create_ms.append((time.perf_counter() - t0) * 1000)
    return str(r.json()["session"]["id"])


async def messages(http: httpx.AsyncClient, sid: str, count: int, stats: Stats) -> None:
    for i in range(count):
        also = stats.later_ms if i else stats.opening_ms
        await turn(http, sid, f"load message {i} of {sid}", stats, also=also)


async def check_and_stop(http: httpx.AsyncClient, sid: str, keep: bool, stats: Stats) -> None:
    """Every acknowledged message is stored; then the session is stopped (unless keep)."""
    r = await http.get(f"/api/sessions/{sid}/messages", params={"limit": 10_000})
    stored = {_prompt(m["content"]) for m in r.json()["messages"] if m["role"] == "user"}
    stats.lost += sum(1 for c in stats.sent.get(sid, []) if c not in stored)
    if not keep:
        r = await http.post(f"/api/sessions/{sid}/stop")
        if r.status_code != 200:
            stats.errors.append(f"stop {r.status_code}: {r.text[:200]}")


def _prompt(content: str) -> str:
    """The text of a stored user message (the SDK message's JSON, or older: the text)."""
    data: Any = json.loads(content)
    if isinstance(data, dict):
        data = (data.get("message") or {}).get("content", "")
    if isinstance(data, list):
        data = "".join(b.get("text", "") for b in data if isinstance(b, dict))
    return str(data)


async def each(items: list[str], concurrency: int, stats: Stats,
               work: Callable[[str], Awaitable[None]]) -> float:
    """``work`` on every item, ``concurrency`` at a time; returns the wall time."""
    queue = list(reversed(items))

    async def worker() -> None:
        while queue:
            item = queue.pop()
            try:
                await work(item)
            except httpx.HTTPError as exc:
                stats.errors.append(f"{type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


def client(url: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency * 2)
    return httpx.AsyncClient(base_url=url, timeout=300, limits=limits)


async def run_cold(url: str, args: argparse.Namespace, stats: Stats) -> float:
    """Each session created, its messages sent, checked and stopped, all in one phase."""

    async def one_session(_n: str) -> None:
        sid = await create(http, stats)
        if sid is not None:
            await messages(http, sid, args.messages, stats)
            await check_and_stop(http, sid, args.keep, stats)

    async with client(url, args.concurrency) as http:
        return await each([str(n) for n in range(args.sessions)], args.concurrency, stats,
                          one_session)


async def warm_up(url: str, args: argparse.Namespace, stats: Stats) -> list[str]:
    """--warm, before the measured phase: create every session, one turn in each."""
    sids: list[str] = []

    async def one_session(_n: str) -> None:
        sid = await create(http, stats)
        if sid is not None:
            sids.append(sid)
            await turn(http, sid, f"warm-up of {sid}", stats, stats.warm_first_ms)

    async with client(url, args.concurrency) as http:
        await each([str(n) for n in range(args.sessions)], args.concurrency, stats, one_session)
    return sids


async def run_warm(url: str, sids: list[str], args: argparse.Namespace, stats: Stats) -> float:
    async with client(url, args.concurrency) as http:
        return await each(sids, args.concurrency, stats,
                          lambda sid: messages(http, sid, args.messages, stats))


async def finish(url: str, sids: list[str], args: argparse.Namespace, stats: Stats) -> None:
    async with client(url, args.concurrency) as http:
        await each(sids, args.concurrency, stats,
                   lambda sid: check_and_stop(http, sid, args.keep, stats))


def run(
    server: Server, args: argparse.Namespace, stats: Stats, profile: bool
) -> tuple[float, Sampler]:
    """The load; with --warm its set-up first, then the measured phase alone."""
    if not args.warm:
        with Sampler(server) as sampler:
            wall = asyncio.run(run_cold(server.url, args, stats))
        return wall, sampler
    sids = asyncio.run(warm_up(server.url, args, stats))
    print(f"{len(sids)} sessions warm; settling ...", file=sys.stderr)
    idle = server.settle()
    print(f"server idle at {idle:.2f} CPUs; measuring ...", file=sys.stderr)
    client0 = time.process_time()
    with Sampler(server) as sampler:
        if profile:
            with Profiles(server, Path(args.py_spy)) as profiles:
                wall = asyncio.run(run_warm(server.url, sids, args, stats))
            print(profiles.summary())
        else:
            wall = asyncio.run(run_warm(server.url, sids, args, stats))
    asyncio.run(finish(server.url, sids, args, stats))
    sampler.idle_cpus = idle
    sampler.client_s = time.process_time() - client0
    return wall, sampler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--keep", action="store_true", help="leave sessions live at the end")
    parser.add_argument("--warm", action="store_true",
                        help="create the sessions and run one turn each before measuring")
    parser.add_argument("--py-spy", metavar="DIR", default="",
                        help="with --warm: profile the measured phase into DIR")
    parser.add_argument("--ray-floor", action="store_true",
                        help="also run the same load against the Ray floor app (_floors.py)")
    parser.add_argument("--saves-floor", action="store_true",
                        help="also against the Ray floor app making a turn's two saves")
    parser.add_argument("--client-nice", type=int, default=CLIENT_NICE,
                        help="the load client's and fake model's nice (0: the server's)")
    args = parser.parse_args()
    args.client = client_ahead(args.client_nice)
    print(args.client, file=sys.stderr)
    load_before = os.getloadavg()[0]
    with FakeAnthropic(port=0, api_key=MODEL_KEY) as fake:
        ash = measure(Server(fake.url, args.database_url), args, bool(args.py_spy))
        request = request_params(fake.message_requests)  # what ash-ray's sessions sent
        floors = [
            (label, measure(RayFloor(fake.url, request, saves), args, False))
            for label, saves, wanted in (
                ("Ray floor: Serve + an actor a session", False, args.ray_floor),
                ("Ray floor + a turn's two saves", True, args.saves_floor),
            )
            if wanted
        ]
        direct = direct_turns(fake.url, max(ash.stats.turns, 1), args.concurrency, request)
    print(table(args, ash.stats, ash.wall, ash.sampler, ash.end, ash.nprocs, direct,
                (load_before, os.getloadavg()[0])))
    if floors:
        print(floor_table(ash, floors, direct, cold=not args.warm))
    return 1 if ash.stats.errors or ash.stats.lost else 0


def measure(server: Server, args: argparse.Namespace, profile: bool) -> Measured:
    """The load against one server (started, loaded, stopped)."""
    stats = Stats()
    try:
        print(f"starting {' '.join(server.command()[1:3])} (log: {server.log}) ...",
              file=sys.stderr)
        server.start()
        agent = make_agent(server.root)
        r = httpx.post(f"{server.url}/api/agents", json={"name": "load", "path": str(agent)})
        r.raise_for_status()
        wall, sampler = run(server, args, stats, profile)
        procs = server.processes()
        return Measured(stats, wall, sampler, memory_mb(procs), len(procs))
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
