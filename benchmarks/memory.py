"""Memory of live sessions (issue 14): PSS and RSS a session worker, at 1, 20 and 50 live.

Against a local ash-ray (fake model, loopback). Each session gets one short turn (so its
worker has run the agent loop once) and is then left idle. Printed beside it, from the
same run: a bare Ray actor (the floor a Ray worker process costs), the idle server
(every process of the cluster, the warm pool included, before any session), and live
sessions per GiB of PSS. PSS is what a process really costs the node: its private pages
plus its share of the pages it shares (libraries, Ray's shared code).

    python benchmarks/memory.py [--counts 1,20,50]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import ray
from _harness import free_port, local_ash, make_agent

from ash_ray.handles import RegistryClient
from ash_ray.testing.fake_anthropic import FakeAnthropic

MiB = 2**20


@ray.remote(num_cpus=0.01)
class _Bare:
    def pid(self) -> int:
        return os.getpid()


def mem(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process in MiB; (nan, nan) when it is gone."""
    try:
        info = psutil.Process(pid).memory_full_info()
    except psutil.Error:
        return float("nan"), float("nan")
    return info.rss / MiB, getattr(info, "pss", info.rss) / MiB


def cluster_pids() -> list[int]:
    """Every process of the local cluster this driver started (not the driver itself)."""
    return [p.pid for p in psutil.Process().children(recursive=True)]


def total_pss(pids: list[int]) -> float:
    return sum(p for _r, p in (mem(pid) for pid in pids) if p == p)


def worker_pids(namespace: str) -> tuple[list[int], list[int]]:
    """(bound, pooled) session worker pids: bound from the registry's view of its live
    sessions, pooled = the other ``ray::SessionWorker`` processes of this cluster."""
    rows = RegistryClient(namespace).describe_all().get(60)
    bound = [int(r["pid"]) for r in rows if r.get("bound")]
    pooled = []
    for pid in cluster_pids():
        with contextlib.suppress(psutil.Error):
            if "SessionWorker" in " ".join(psutil.Process(pid).cmdline()) and pid not in bound:
                pooled.append(pid)
    return bound, pooled


def one_turn(http: httpx.Client, sid: str) -> None:
    with http.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "hi"}) as r:
        assert r.status_code == 200, r.read()
        for _line in r.iter_lines():
            pass


def settle(namespace: str, want: int, timeout_s: float = 60) -> list[int]:
    """The bound workers' pids once ``want`` answer (or whatever answers in timeout_s)."""
    deadline = time.monotonic() + timeout_s
    bound: list[int] = []
    while time.monotonic() < deadline:
        bound, _pooled = worker_pids(namespace)
        if len(bound) >= want:
            break
        time.sleep(1)
    return bound


def line(name: str, rss: list[float], pss: list[float], note: str = "") -> str:
    return (f"| {name:<42} | {len(rss):>4} | {statistics.median(rss):>8.1f} | "
            f"{statistics.median(pss):>8.1f} | {max(pss):>8.1f} | {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="1,20,50")
    args = ap.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    fake = FakeAnthropic(port=free_port()).start()
    root = Path(tempfile.mkdtemp(prefix="ash-bench-agents-"))
    rows: list[str] = []
    notes: list[str] = []
    load_before = os.getloadavg()
    with (
        local_ash(anthropic_base_url=fake.url, anthropic_api_key="bench") as (url, settings),
        httpx.Client(base_url=url, timeout=600) as http,
    ):
        http.post("/api/agents", json={"name": "b", "path": str(make_agent(root))})
        time.sleep(5)  # the warm pool fills, as after a server start
        idle_pss = total_pss(cluster_pids())
        bare = _Bare.remote()
        bare_pid = ray.get(bare.pid.remote())
        b_rss, b_pss = mem(bare_pid)
        rows.append(line("bare Ray actor (floor)", [b_rss], [b_pss]))
        ray.kill(bare)
        _b, pooled = worker_pids(settings.namespace)
        if pooled:
            p = [mem(pid) for pid in pooled]
            rows.append(line("pooled session worker (unbound)", [r for r, _ in p],
                             [s for _, s in p]))
        sids: list[str] = []
        limit = http.get("/health").json()["pool"]["maxCapacity"]
        for n in counts:
            if n > limit:
                notes.append(f"{n} live sessions do not fit: the limit is {limit}")
                n = limit
            while len(sids) < n:
                r = http.post("/api/sessions", json={"agent": "b"})
                if r.status_code != 201:
                    notes.append(f"create {len(sids) + 1} answered {r.status_code}: {r.text}")
                    break
                sids.append(r.json()["session"]["id"])
                one_turn(http, sids[-1])
            bound = settle(settings.namespace, len(sids))
            time.sleep(2)
            m = [mem(pid) for pid in bound]
            rss = [r for r, _ in m if r == r]
            pss = [s for _, s in m if s == s]
            if not pss:
                notes.append(f"with {len(sids)} live sessions none answered describe")
                continue
            per_gib = 1024 / statistics.median(pss)
            rows.append(line(f"idle session worker, {len(sids)} live", rss, pss,
                             f"{per_gib:.1f} sessions per GiB of PSS; {len(bound)} measured"))
            print(rows[-1], flush=True)
        total = total_pss(cluster_pids())
        for sid in sids:
            with contextlib.suppress(httpx.HTTPError):
                http.delete(f"/api/sessions/{sid}")
    print(f"\nmemory, {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB; "
          f"load average before {load_before[0]:.2f} after {os.getloadavg()[0]:.2f}; "
          f"warm pool {settings.warm_pool_size}\n")
    print("| process                                    |    n | RSS MiB  | PSS MiB  |"
          " max PSS  | note")
    print("|--------------------------------------------|-----:|---------:|---------:|"
          "---------:|------")
    print("\n".join(rows))
    print(f"\nidle server (Ray, Serve, registry, warm pool; before any session): "
          f"{idle_pss:.0f} MiB PSS; with {len(sids)} live sessions: {total:.0f} MiB PSS")
    for note in notes:
        print("note:", note)


if __name__ == "__main__":
    main()
