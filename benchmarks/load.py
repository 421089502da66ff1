"""Load run (issue 10): N sessions x M messages at concurrency C against a real server.

Starts `ash-ray start` as a subprocess of its own (fake model in this process, loopback
only, fresh data dir), so that the server's CPU and memory are measured apart from the
load generator's. Each of C workers takes the next session: creates it, sends its M
messages one after another over SSE, checks that every acknowledged message is stored,
then stops the session (its worker is freed) unless --keep. Prints one table.

    python benchmarks/load.py [--sessions 40] [--messages 5] [--concurrency 8]
                              [--database-url postgresql://...] [--keep]

Figures: errors (HTTP errors, failed streams, ``error`` events), lost messages
(acknowledged user messages missing from GET .../messages), latency percentiles of
create, first event and done, CPU seconds of the server's processes per turn (Ray's
daemons, Serve, registry and session workers, sampled every second: a worker's last
second before it exits is missed) and the server's memory (RSS and PSS summed over its
processes, at the peak of 1 s samples and at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from _harness import free_port, free_port_run, make_agent, pct

from ash_ray.testing.fake_anthropic import FakeAnthropic

MODEL_KEY = "sk-ant-load-model-key"


@dataclass
class Stats:
    create_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    done_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    acked: int = 0
    lost: int = 0
    turns: int = 0


# ---------------------------------------------------------------------- the server


class Server:
    """`ash-ray start` in its own session, on free loopback ports and a fresh data dir."""

    def __init__(self, model_url: str, database_url: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ash-load-"))
        self.port = free_port_run(2)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "ASH_DATA_DIR": str(self.root / "data"),
            "ASH_PORT": str(self.port),
            "ASH_PROXY_PORT": str(free_port()),
            "ASH_DASHBOARD": "false",
            "ASH_NAMESPACE": f"ash-load-{uuid.uuid4().hex[:8]}",
            "ANTHROPIC_BASE_URL": model_url,
            "ANTHROPIC_API_KEY": MODEL_KEY,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }
        if database_url:
            self.env["ASH_DATABASE_URL"] = database_url
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 240) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ash_ray", "start"], env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            time.sleep(0.5)
        raise SystemExit(f"server not healthy in {timeout_s}s:\n{self.log.read_text()[-3000:]}")

    def processes(self) -> list[psutil.Process]:
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def stop(self) -> None:
        """SIGTERM (drain), then SIGKILL of whatever is left of its process tree."""
        if self.proc is None:
            return
        tree = self.processes()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(tree, timeout=30)


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
    return out


def memory_mb(procs: list[psutil.Process]) -> tuple[float, float]:
    rss = pss = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
    return rss / 2**20, pss / 2**20


class Sampler:
    """The server's processes sampled every second on a thread: peak RSS/PSS, and the
    CPU time each process was last seen with (session workers exit during the run)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = (0.0, 0.0)
        self.before = cpu_seconds(server.processes())
        self.cpu = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            procs = self.server.processes()
            self.cpu.update(cpu_seconds(procs))
            rss, pss = memory_mb(procs)
            self.peak = (max(self.peak[0], rss), max(self.peak[1], pss))

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def cpu_used(self) -> float:
        return sum(t - self.before.get(pid, 0.0) for pid, t in self.cpu.items())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# ---------------------------------------------------------------------- the load


async def turn(http: httpx.AsyncClient, sid: str, content: str, stats: Stats) -> bool:
    """One message over SSE; True when acknowledged (the stream started)."""
    t0 = time.perf_counter()
    first = None
    acked = False
    async with http.stream(
        "POST", f"/api/sessions/{sid}/messages", json={"content": content}
    ) as r:
        if r.status_code != 200:
            stats.errors.append(f"message {r.status_code}: {(await r.aread())[:200]!r}")
            return False
        acked = True
        last = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                if first is None:
                    first = time.perf_counter()
                last = line[7:]
                if last == "error":
                    stats.errors.append(f"error event in session {sid}")
    if first is not None:
        stats.first_ms.append((first - t0) * 1000)
    if last == "done":
        stats.done_ms.append((time.perf_counter() - t0) * 1000)
        stats.turns += 1
    else:
        stats.errors.append(f"stream of session {sid} ended with {last!r}")
    return acked


async def one_session(http: httpx.AsyncClient, messages: int, keep: bool, stats: Stats) -> None:
    t0 = time.perf_counter()
    r = await http.post("/api/sessions", json={"agent": "load"})
    if r.status_code != 201:
        stats.errors.append(f"create {r.status_code}: {r.text[:200]}")
        return
    stats.create_ms.append((time.perf_counter() - t0) * 1000)
    sid = r.json()["session"]["id"]
    sent = []
    for i in range(messages):
        content = f"load message {i} of {sid}"
        if await turn(http, sid, content, stats):
            sent.append(content)
    stats.acked += len(sent)
    r = await http.get(f"/api/sessions/{sid}/messages")
    stored = {json.loads(m["content"]) for m in r.json()["messages"] if m["role"] == "user"}
    stats.lost += sum(1 for c in sent if c not in stored)
    if not keep:
        r = await http.post(f"/api/sessions/{sid}/stop")
        if r.status_code != 200:
            stats.errors.append(f"stop {r.status_code}: {r.text[:200]}")


async def run_load(url: str, args: argparse.Namespace, stats: Stats) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(args.sessions):
        queue.put_nowait(n)
    limits = httpx.Limits(max_connections=args.concurrency * 2)

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            try:
                await one_session(http, args.messages, args.keep, stats)
            except httpx.HTTPError as exc:
                stats.errors.append(f"{type(exc).__name__}: {exc}")

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(args.concurrency)))
        return time.perf_counter() - t0


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


def table(args: argparse.Namespace, stats: Stats, wall_s: float, cpu_s: float,
          mem_peak: tuple[float, float], mem_end: tuple[float, float], nprocs: int,
          direct: dict, load: tuple[float, float]) -> str:
    turns = max(stats.turns, 1)
    direct_ms = direct["cpu_s"] / max(len(direct["done"]), 1) * 1000
    lines = [
        f"load: {args.sessions} sessions x {args.messages} messages at concurrency "
        f"{args.concurrency}, store {'postgres' if args.database_url else 'sqlite'}, "
        f"fake model, loopback; wall {wall_s:.1f}s, {stats.turns / wall_s:.1f} turns/s; "
        f"{os.cpu_count()} CPUs, load average before {load[0]:.2f} after {load[1]:.2f}",
        "",
        "| measurement                         |     n |     p50 |     p95 |     p99 |     max |",
        "|-------------------------------------|------:|--------:|--------:|--------:|--------:|",
    ]
    for name, values in (
        ("create session (ms)", stats.create_ms),
        ("message: first event (ms)", stats.first_ms),
        ("message: done (ms)", stats.done_ms),
        ("floor: SDK straight to model, first (ms)", direct["first"]),
        ("floor: SDK straight to model, done (ms)", direct["done"]),
    ):
        cells = " | ".join(f"{pct(values, q):>7.1f}" for q in (50, 95, 99, 100))
        lines.append(f"| {name:<35} | {len(values):>5} | {cells} |")
    lines += [
        "",
        "| figure                                     |        value |",
        "|--------------------------------------------|-------------:|",
        f"| errors                                     | {len(stats.errors):>12} |",
        f"| acknowledged messages                      | {stats.acked:>12} |",
        f"| lost messages                              | {stats.lost:>12} |",
        f"| turns completed                            | {stats.turns:>12} |",
        f"| server CPU ms per turn                     | {cpu_s / turns * 1000:>12.1f} |",
        f"| floor: SDK CPU ms per turn, straight       | {direct_ms:>12.1f} |",
        f"| server CPU seconds total                   | {cpu_s:>12.1f} |",
        f"| server memory at peak, RSS / PSS (MB)      | {_pair(mem_peak)} |",
        f"| server memory at end, RSS / PSS (MB)       | {_pair(mem_end)} |",
        f"| server processes at end                    | {nprocs:>12} |",
    ]
    if stats.errors:
        lines += ["", "first errors:", *(f"  {e}" for e in stats.errors[:5])]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--keep", action="store_true", help="leave sessions live at the end")
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
            with Sampler(server) as sampler:
                wall = asyncio.run(run_load(server.url, args, stats))
            procs = server.processes()
            end = memory_mb(procs)
            direct = direct_turns(fake.url, max(stats.turns, 1), args.concurrency)
            print(table(args, stats, wall, sampler.cpu_used(), sampler.peak, end, len(procs),
                        direct, (load_before, os.getloadavg()[0])))
        finally:
            server.stop()
    return 1 if stats.errors or stats.lost else 0


if __name__ == "__main__":
    sys.exit(main())
