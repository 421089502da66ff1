"""Memory of live sessions (issue 14): PSS and RSS a session worker, at 1, 20 and 50 live.

Against a local ash-ray (fake model, loopback). Each session gets one short turn (so its
worker has run the agent loop once) and is then left idle. Printed beside it, from the
same run:

- floors: a bare Ray actor (what any Ray worker process costs), and a bare Ray actor that
  imported the ``anthropic`` SDK and made a client (what any worker running the agent
  loop with the real SDK costs, the design keeping the model key in the session actor);
- the idle server by role (GCS, raylet, Ray's agents, Serve, registry, warm pool), beside
  the floor of the same roles: a plain Ray cluster with Serve and an empty deployment,
  started and stopped first in this same run;
- live sessions per GiB of PSS.

PSS is what a process really costs the node: its private pages plus its share of the
pages it shares (libraries, Ray's shared code).

    python benchmarks/memory.py [--counts 1,20,50]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
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
# (cmdline marker, role): the first marker found names a process of the cluster.
ROLES = (
    ("gcs_server", "GCS"),
    ("raylet", "raylet"),
    ("SessionWorker", "session workers (warm pool)"),
    ("Registry", "registry"),
    ("ServeController", "Serve controller"),
    ("ProxyActor", "Serve proxy"),
    ("ServeReplica", "Serve replica (ingress)"),
    ("dashboard", "Ray agents (dashboard agent, runtime env)"),
    ("runtime_env", "Ray agents (dashboard agent, runtime env)"),
    ("log_monitor", "Ray log monitor"),
    ("ray::IDLE", "idle Ray workers"),
)


@ray.remote(num_cpus=0.01)
class _Bare:
    def pid(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0.01)
class _BareSdk:
    """A Ray actor that imported the SDK and made a client, as every session worker must."""

    def __init__(self) -> None:
        import anthropic

        self.client = anthropic.AsyncAnthropic(api_key="floor", base_url="http://127.0.0.1:9")
        gc.collect()

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


def by_role() -> dict[str, float]:
    """PSS MiB of this driver's cluster, summed per role (see ROLES)."""
    out: dict[str, float] = collections.defaultdict(float)
    for pid in cluster_pids():
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        role = next((name for marker, name in ROLES if marker in cmd), None)
        if role is None:
            role = "other: " + " ".join(Path(a).name for a in cmd.split()[:3])[:60]
        pss = mem(pid)[1]
        if pss == pss:
            out[role] += pss
    return dict(out)


def floor_server() -> dict[str, float]:
    """A plain Ray cluster with Serve and an empty deployment: PSS per role, then stopped."""
    from ray import serve

    @serve.deployment
    class Empty:
        async def __call__(self, request: object) -> str:
            return "ok"

    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        serve.run(Empty.bind(), name="empty", route_prefix="/")
        time.sleep(5)  # as long as the ash-ray server is given to settle below
        return by_role()
    finally:
        serve.shutdown()
        ray.shutdown()


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


def floors() -> list[str]:
    """The floor rows: a bare Ray actor, and one that imported the SDK."""
    rows = []
    for name, cls in (("floor: bare Ray actor", _Bare),
                      ("floor: bare Ray actor + anthropic client", _BareSdk)):
        actor = cls.remote()  # type: ignore[attr-defined]
        rss, pss = mem(ray.get(actor.pid.remote()))
        rows.append(line(name, [rss], [pss]))
        ray.kill(actor)
    return rows


class Sessions:
    """Live sessions grown to each count; one short turn each, then left idle."""

    def __init__(self, http: httpx.Client, namespace: str) -> None:
        self.http, self.namespace = http, namespace
        self.sids: list[str] = []
        self.notes: list[str] = []

    def grow_to(self, n: int, limit: int) -> str | None:
        if n > limit:
            self.notes.append(f"{n} live sessions do not fit: the limit is {limit}")
            n = limit
        while len(self.sids) < n:
            r = self.http.post("/api/sessions", json={"agent": "b"})
            if r.status_code != 201:
                self.notes.append(f"create {len(self.sids) + 1} answered {r.status_code}: {r.text}")
                break
            self.sids.append(r.json()["session"]["id"])
            one_turn(self.http, self.sids[-1])
        bound = settle(self.namespace, len(self.sids))
        time.sleep(2)
        m = [mem(pid) for pid in bound]
        rss = [r for r, _ in m if r == r]
        pss = [s for _, s in m if s == s]
        if not pss:
            self.notes.append(f"with {len(self.sids)} live sessions none answered describe")
            return None
        per_gib = 1024 / statistics.median(pss)
        return line(f"idle session worker, {len(self.sids)} live", rss, pss,
                    f"{per_gib:.1f} sessions per GiB of PSS; {len(bound)} measured")

    def end_all(self) -> None:
        for sid in self.sids:
            with contextlib.suppress(httpx.HTTPError):
                self.http.delete(f"/api/sessions/{sid}")


def print_roles(ours: dict[str, float], floor: dict[str, float]) -> None:
    print("\n| idle server, by role (PSS MiB) | ash-ray | floor: Ray + Serve, empty app |")
    print("|---|---:|---:|")
    for role in sorted(set(ours) | set(floor), key=lambda r: -ours.get(r, 0.0)):
        print(f"| {role} | {ours.get(role, 0.0):.0f} | {floor.get(role, 0.0):.0f} |")
    print(f"| **total** | **{sum(ours.values()):.0f}** | **{sum(floor.values()):.0f}** |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="1,20,50")
    args = ap.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    load_before = os.getloadavg()
    floor_roles = floor_server()
    fake = FakeAnthropic(port=free_port()).start()
    root = Path(tempfile.mkdtemp(prefix="ash-bench-agents-"))
    with (
        local_ash(anthropic_base_url=fake.url, anthropic_api_key="bench") as (url, settings),
        httpx.Client(base_url=url, timeout=600) as http,
    ):
        http.post("/api/agents", json={"name": "b", "path": str(make_agent(root))})
        time.sleep(5)  # the warm pool fills, as after a server start
        roles = by_role()
        rows = floors()
        _b, pooled = worker_pids(settings.namespace)
        if pooled:
            p = [mem(pid) for pid in pooled]
            rows.append(line("pooled session worker (unbound)", [r for r, _ in p],
                             [s for _, s in p]))
        live = Sessions(http, settings.namespace)
        limit = http.get("/health").json()["pool"]["maxCapacity"]
        for n in counts:
            row = live.grow_to(n, limit)
            if row:
                rows.append(row)
                print(row, flush=True)
        total = total_pss(cluster_pids())
        live.end_all()
    print(f"\nmemory, {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB; "
          f"load average before {load_before[0]:.2f} after {os.getloadavg()[0]:.2f}; "
          f"warm pool {settings.warm_pool_size}\n")
    print("| process                                    |    n | RSS MiB  | PSS MiB  |"
          " max PSS  | note")
    print("|--------------------------------------------|-----:|---------:|---------:|"
          "---------:|------")
    print("\n".join(rows))
    print_roles(roles, floor_roles)
    print(f"\nwith {len(live.sids)} live sessions the cluster holds {total:.0f} MiB PSS")
    for note in live.notes:
        print("note:", note)


if __name__ == "__main__":
    main()
