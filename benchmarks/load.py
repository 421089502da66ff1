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
profiler costs CPU: take the CPU figures from a run without it).

    python benchmarks/load.py [--sessions 40] [--messages 5] [--concurrency 8]
                              [--database-url postgresql://...] [--keep]
                              [--warm] [--py-spy DIR]

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
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _harness import make_agent, pct
from _server import MODEL_KEY, Profiles, Sampler, Server, memory_mb

from ash_ray.testing.fake_anthropic import FakeAnthropic


@dataclass
class Stats:
    create_ms: list[float] = field(default_factory=list)
    warm_first_ms: list[float] = field(default_factory=list)  # --warm: each session's first turn
    first_ms: list[float] = field(default_factory=list)
    # (seconds since the first message was sent, its first event in ms): the timeline
    first_at: list[tuple[float, float]] = field(default_factory=list)
    done_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: dict[str, list[str]] = field(default_factory=dict)  # acknowledged, by session
    lost: int = 0
    turns: int = 0

    @property
    def acked(self) -> int:
        return sum(len(s) for s in self.sent.values())


# ---------------------------------------------------------------------- the load


async def turn(http: httpx.AsyncClient, sid: str, content: str, stats: Stats,
               first_ms: list[float] | None = None) -> None:
    """One message over SSE; counted as sent when acknowledged (the stream started)."""
    t0 = time.perf_counter()
    first = None
    async with http.stream(
        "POST", f"/api/sessions/{sid}/messages", json={"content": content}
    ) as r:
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
        await turn(http, sid, f"load message {i} of {sid}", stats)


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


# ---------------------------------------------------------------------- the floor

_DIRECT = """
import asyncio, json, resource, sys, time
import anthropic

async def main(url, key, n, concurrency):
    client = anthropic.AsyncAnthropic(api_key=key, base_url=url, max_retries=0)
    first, done = [], []
    queue = list(range(n))

    async def one(k):
        t0 = time.perf_counter()
        async with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=1024,
            messages=[{"role": "user", "content": f"load message {k}"}],
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

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def direct_turns(model_url: str, n: int, concurrency: int) -> dict:
    """The same short turns sent straight to the fake model with the anthropic SDK, in a
    process of their own: its CPU per turn is the floor of a session worker's."""
    out = subprocess.run(
        [sys.executable, "-c", _DIRECT, model_url, MODEL_KEY, str(n), str(concurrency)],
        check=True, capture_output=True, text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------- the table


def _pair(mb: tuple[float, float]) -> str:
    return f"{mb[0]:>6.0f} / {mb[1]:>5.0f}"


def _timeline(stats: Stats, window_s: float = 10.0) -> list[str]:
    """First event by when the message was sent: where in the run the slow ones were."""
    if not stats.first_at:
        return []
    start = min(t for t, _ in stats.first_at)
    buckets: dict[int, list[float]] = {}
    for t, ms in stats.first_at:
        buckets.setdefault(int((t - start) // window_s), []).append(ms)
    lines = ["", "| sent at (s) | messages | first event p50 | p95 | max |",
             "|---|---:|---:|---:|---:|"]
    for k in sorted(buckets):
        ms = buckets[k]
        lines.append(f"| {k * window_s:.0f}-{(k + 1) * window_s:.0f} | {len(ms)} | "
                     f"{pct(ms, 50):.0f} | {pct(ms, 95):.0f} | {max(ms):.0f} |")
    return lines


def table(args: argparse.Namespace, stats: Stats, wall_s: float, sampler: Sampler,
          mem_end: tuple[float, float], nprocs: int, direct: dict,
          load: tuple[float, float]) -> str:
    turns = max(stats.turns, 1)
    cpu_s = sampler.cpu_used()
    direct_ms = direct["cpu_s"] / max(len(direct["done"]), 1) * 1000
    # --warm: the server's idle rate (measured before) times the measured wall.
    busy_ms = (cpu_s - sampler.idle_cpus * wall_s) / turns * 1000
    client_ms = sampler.client_s / turns * 1000
    lines = [
        f"load: {args.sessions} sessions x {args.messages} messages at concurrency "
        f"{args.concurrency}{' (warm: measured after one turn each)' if args.warm else ''}, "
        f"store {'postgres' if args.database_url else 'sqlite'}, fake model, loopback; "
        f"measured wall {wall_s:.1f}s, {stats.turns / wall_s:.1f} turns/s; "
        f"{os.cpu_count()} CPUs, load average before {load[0]:.2f} after {load[1]:.2f}",
        "",
        f"| {'measurement':<40} |     n |     p50 |     p95 |     p99 |     max |",
        f"|{'-' * 42}|------:|--------:|--------:|--------:|--------:|",
    ]
    rows = [("create session (ms)", stats.create_ms)]
    if args.warm:
        rows.append(("warm-up turn: first event (ms)", stats.warm_first_ms))
    rows += [
        ("message: first event (ms)", stats.first_ms),
        ("message: done (ms)", stats.done_ms),
        ("floor: SDK straight to model, first (ms)", direct["first"]),
        ("floor: SDK straight to model, done (ms)", direct["done"]),
    ]
    for name, values in rows:
        cells = " | ".join(f"{pct(values, q):>7.1f}" for q in (50, 95, 99, 100))
        lines.append(f"| {name:<40} | {len(values):>5} | {cells} |")
    lines += [
        "",
        "| figure                                     |        value |",
        "|--------------------------------------------|-------------:|",
        f"| errors                                     | {len(stats.errors):>12} |",
        f"| acknowledged messages                      | {stats.acked:>12} |",
        f"| lost messages                              | {stats.lost:>12} |",
        f"| turns measured                             | {stats.turns:>12} |",
        f"| server CPU ms per turn                     | {cpu_s / turns * 1000:>12.1f} |",
        f"| same, less the idle server's CPU           | {busy_ms:>12.1f} |",
        f"| floor: SDK CPU ms per turn, straight       | {direct_ms:>12.1f} |",
        f"| load client + fake model CPU ms per turn   | {client_ms:>12.1f} |",
        f"| server CPU seconds total                   | {cpu_s:>12.1f} |",
        f"| server memory at peak, RSS / PSS (MB)      | {_pair(sampler.peak)} |",
        f"| server memory at end, RSS / PSS (MB)       | {_pair(mem_end)} |",
        f"| server processes at end                    | {nprocs:>12} |",
        f"| session worker processes started           | {sampler.session_workers():>12} |",
    ]
    lines += _timeline(stats)
    lines += ["", "server CPU seconds by process (measured phase):"]
    for name, seconds in sampler.by_name()[:8]:
        lines.append(f"  {seconds:8.2f}  {name}")
    if stats.errors:
        lines += ["", "first errors:", *(f"  {e}" for e in stats.errors[:5])]
    return "\n".join(lines)


def run(server: Server, args: argparse.Namespace, stats: Stats) -> tuple[float, Sampler]:
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
        if args.py_spy:
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
    args = parser.parse_args()
    stats = Stats()
    load_before = os.getloadavg()[0]
    with FakeAnthropic(port=0, api_key=MODEL_KEY) as fake:
        server = Server(fake.url, args.database_url)
        try:
            print(f"starting ash-ray start (log: {server.log}) ...", file=sys.stderr)
            server.start()
            agent = make_agent(server.root)
            r = httpx.post(f"{server.url}/api/agents", json={"name": "load", "path": str(agent)})
            r.raise_for_status()
            wall, sampler = run(server, args, stats)
            procs = server.processes()
            end = memory_mb(procs)
            direct = direct_turns(fake.url, max(stats.turns, 1), args.concurrency)
            print(table(args, stats, wall, sampler, end, len(procs), direct,
                        (load_before, os.getloadavg()[0])))
        finally:
            server.stop()
    return 1 if stats.errors or stats.lost else 0


if __name__ == "__main__":
    sys.exit(main())
