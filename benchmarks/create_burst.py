"""Session create under a burst and at a steady rate, and cold resume at that rate (issue 14).

Against a local ash-ray (fake model, loopback, default pool and capacity settings):

- burst: ``--burst`` creates sent at once; every answer's status and latency, then one
  message to each of those sessions at once (first event and done: what the user waits
  for when the session's worker starts after the 201);
- steady: ``--rate`` creates per second for ``--steady-s`` seconds, each session stopped
  ``--hold-s`` after its 201 (so that the node does not run out of memory);
- cold resume: the stopped sessions resumed at the same rate.

The floor, from the same run: an empty HTTP request (``GET /health``) and one call to a
running Ray actor.

    python benchmarks/create_burst.py [--burst 50] [--rate 5] [--steady-s 60]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import ray
from _harness import free_port, local_ash, make_agent, pct

from ash_ray.testing.fake_anthropic import FakeAnthropic


@ray.remote(num_cpus=0.01)
class _Echo:
    def ping(self) -> bool:
        return True


Rows = list[tuple[str, list[float], str]]


def fmt(rows: Rows) -> str:
    lines = [
        "| measurement                                  |    n |    p50 ms |    p95 ms |"
        "    max ms | note",
        "|----------------------------------------------|-----:|----------:|----------:|"
        "----------:|------",
    ]
    for name, values, note in rows:
        cells = " | ".join(f"{pct(values, q):>9.1f}" for q in (50, 95, 100))
        lines.append(f"| {name:<44} | {len(values):>4} | {cells} | {note}")
    return "\n".join(lines)


async def timed(call: Any) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    r = await call
    return (time.perf_counter() - t0) * 1000, r


async def first_and_done(http: httpx.AsyncClient, sid: str) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    first = None
    last = ""
    async with http.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "hi"}) as r:
        if r.status_code != 200:
            return float("nan"), float("nan"), f"message {r.status_code}"
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                first = first or time.perf_counter()
                last = line[7:]
    end = time.perf_counter()
    if first is None:
        return float("nan"), float("nan"), "no event"
    return (first - t0) * 1000, (end - t0) * 1000, "" if last == "done" else f"ended {last}"


async def burst(http: httpx.AsyncClient, n: int, rows: Rows, codes: collections.Counter) -> None:
    results = await asyncio.gather(
        *(timed(http.post("/api/sessions", json={"agent": "b"})) for _ in range(n))
    )
    ok = [ms for ms, r in results if r.status_code == 201]
    codes.update(f"burst create {r.status_code}" for _ms, r in results)
    rows.append((f"burst: {n} creates at once (201)", ok, f"{len(ok)}/{n} answered 201"))
    show(rows[-1:])
    sids = [r.json()["session"]["id"] for _ms, r in results if r.status_code == 201]
    t0 = time.perf_counter()
    turns = await asyncio.gather(*(first_and_done(http, sid) for sid in sids))
    wall = time.perf_counter() - t0
    bad = [e for *_x, e in turns if e]
    codes.update(bad)
    rows.append(("burst: first message, first event", [f for f, _d, e in turns if not e],
                 f"{len(bad)} errors"))
    rows.append(("burst: first message, done", [d for _f, d, e in turns if not e],
                 f"all {len(sids)} sessions answered in {wall:.1f}s"))
    show(rows[-2:])
    await asyncio.gather(*(http.delete(f"/api/sessions/{sid}") for sid in sids))


async def steady(
    http: httpx.AsyncClient, rate: float, seconds: float, hold_s: float, rows: Rows,
    codes: collections.Counter,
) -> list[str]:
    created: list[float] = []
    sids: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        ms, r = await timed(http.post("/api/sessions", json={"agent": "b"}))
        codes[f"steady create {r.status_code}"] += 1
        if r.status_code != 201:
            return
        created.append(ms)
        sid = r.json()["session"]["id"]
        await asyncio.sleep(hold_s)
        r = await http.post(f"/api/sessions/{sid}/stop")
        codes[f"steady stop {r.status_code}"] += 1
        sids.append(sid)

    start = time.perf_counter()
    for k in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    rows.append((f"steady: {rate:g} creates/s for {seconds:g}s (201)", created,
                 f"{len(created)}/{len(tasks)} answered 201"))
    show(rows[-1:])
    return sids


async def cold_resumes(
    http: httpx.AsyncClient, sids: list[str], rate: float, rows: Rows,
    codes: collections.Counter,
) -> None:
    resumed: list[float] = []

    async def one(sid: str) -> None:
        ms, r = await timed(http.post(f"/api/sessions/{sid}/resume"))
        codes[f"cold resume {r.status_code}"] += 1
        if r.status_code == 200:
            resumed.append(ms)
        await http.delete(f"/api/sessions/{sid}")

    start = time.perf_counter()
    tasks = []
    for k, sid in enumerate(sids):
        await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(sid)))
    await asyncio.gather(*tasks)
    rows.append((f"cold resume at {rate:g}/s (200)", resumed,
                 f"{len(resumed)}/{len(sids)} answered 200"))
    show(rows[-1:])


async def floor(http: httpx.AsyncClient, rows: Rows) -> None:
    empty = []
    for _ in range(50):
        ms, _r = await timed(http.get("/health"))
        empty.append(ms)
    echo = _Echo.remote()
    await echo.ping.remote()
    calls = []
    for _ in range(50):
        t0 = time.perf_counter()
        await echo.ping.remote()
        calls.append((time.perf_counter() - t0) * 1000)
    rows.append(("floor: empty HTTP request (GET /health)", empty, ""))
    rows.append(("floor: one Ray actor call", calls, ""))
    show(rows[-2:])


def show(rows: Rows) -> None:
    """Each phase as it ends, in case a later one does not (a loaded machine)."""
    print(fmt(rows).splitlines()[-1] if len(rows) == 1 else "\n".join(
        fmt(rows).splitlines()[2:]), f"  [{time.strftime('%H:%M:%S')}, load "
        f"{os.getloadavg()[0]:.1f}]", flush=True)


async def main_async(url: str, args: argparse.Namespace) -> tuple[Rows, collections.Counter]:
    rows: Rows = []
    codes: collections.Counter = collections.Counter()
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        await floor(http, rows)
        if args.burst:
            await burst(http, args.burst, rows, codes)
            await asyncio.sleep(args.settle_s)
        if args.steady_s:
            sids = await steady(http, args.rate, args.steady_s, args.hold_s, rows, codes)
            await asyncio.sleep(args.settle_s)
            await cold_resumes(http, sids[: args.resumes], args.rate, rows, codes)
        await floor(http, rows)
    return rows, codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--steady-s", type=float, default=60.0)
    ap.add_argument("--hold-s", type=float, default=2.0, help="stop a session this long after")
    ap.add_argument("--resumes", type=int, default=100, help="cold resumes at --rate")
    ap.add_argument("--settle-s", type=float, default=10.0, help="pause between phases")
    args = ap.parse_args()
    fake = FakeAnthropic(port=free_port()).start()
    root = Path(tempfile.mkdtemp(prefix="ash-bench-agents-"))
    load_before = os.getloadavg()
    with local_ash(anthropic_base_url=fake.url, anthropic_api_key="bench") as (url, settings):
        httpx.post(url + "/api/agents", json={"name": "b", "path": str(make_agent(root))})
        time.sleep(3)  # the warm pool fills once, as after a server start
        rows, codes = asyncio.run(main_async(url, args))
    print(f"\ncreate burst/steady, {os.cpu_count()} CPUs, load average before "
          f"{load_before[0]:.2f} after {os.getloadavg()[0]:.2f}; warm pool "
          f"{settings.warm_pool_size}, max sandboxes {settings.max_sandboxes}\n")
    print(fmt(rows))
    print("\nanswers:", dict(codes))


if __name__ == "__main__":
    main()
