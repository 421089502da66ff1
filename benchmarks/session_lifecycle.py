"""Session create (pool hit / miss), warm resume, cold resume with history, per store.

Each figure is measured over HTTP against a local ash-ray, p50/p95 over --n runs. The
baseline row is a bare Ray actor start on the same cluster (what a pool miss pays).

    python benchmarks/session_lifecycle.py [--n 20] [--store sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import ray
from _harness import HEADER, local_ash, make_agent, row

from ash_ray.names import REGISTRY_NAME
from ash_ray.testing.fake_anthropic import FakeAnthropic


@ray.remote(num_cpus=0.01)
class _Bare:
    def ready(self) -> bool:
        return True


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def _wait_pool(http: httpx.Client, want: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if http.get("/health").json()["poolReady"] >= want:
            return
        time.sleep(0.05)


def _ok(r: httpx.Response) -> dict:
    assert r.status_code < 300, r.text
    return dict(r.json())


def run(store: str, n: int, database_url: str) -> None:
    fake = FakeAnthropic().start()
    root = Path(tempfile.mkdtemp(prefix="ash-bench-agents-"))
    overrides = {"anthropic_base_url": fake.url, "anthropic_api_key": "bench",
                 "warm_pool_size": 2, "max_sandboxes": 200}
    if database_url:
        overrides["database_url"] = database_url
    rows = []
    with local_ash(**overrides) as (url, _settings), httpx.Client(base_url=url, timeout=60) as h:
        _ok(h.post("/api/agents", json={"name": "b", "path": str(make_agent(root))}))
        hit, miss, warm, cold, bare, ping = [], [], [], [], [], []
        first_turn: list[float] = []
        later_turns: list[float] = []

        def create() -> str:
            return str(_ok(h.post("/api/sessions", json={"agent": "b"}))["session"]["id"])

        def end_all(ids: list[str]) -> None:
            # Each phase ends its sessions: dozens of idle actors would load 2 cores.
            for sid in ids:
                _ok(h.delete(f"/api/sessions/{sid}"))
            ids.clear()

        made: list[str] = []
        for _ in range(n):
            _wait_pool(h, 2)
            t0 = time.perf_counter()
            made.append(create())
            hit.append((time.perf_counter() - t0) * 1000)
            if len(made) >= 4:
                end_all(made)
        end_all(made)
        for _ in range(n):
            # Drain the pool first so that this create must start a worker.
            while h.get("/health").json()["poolReady"]:
                made.append(create())
            t0 = time.perf_counter()
            made.append(create())
            miss.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            actor = _Bare.remote()
            ray.get(actor.ready.remote())
            bare.append((time.perf_counter() - t0) * 1000)
            ray.kill(actor)
            end_all(made)
        sid = create()
        _wait_pool(h, 2)  # a refill starting actors would share the 2 cores with the figures
        for _ in range(n):
            _ok(h.post(f"/api/sessions/{sid}/pause"))
            warm.append(_timed(lambda: _ok(h.post(f"/api/sessions/{sid}/resume"))))
        registry = ray.get_actor(REGISTRY_NAME, namespace=_settings.namespace)
        warm_ray, health_http = [], []
        for _ in range(n):
            ray.get(registry.pause.remote(sid))
            warm_ray.append(_timed(lambda: ray.get(registry.resume.remote(sid))))
            health_http.append(_timed(lambda: _ok(h.get("/health"))))
            ping.append(_timed(lambda: ray.get(registry.ping.remote())))
        for i in range(n):
            cid = _ok(h.post("/api/sessions", json={"agent": "b"}))["session"]["id"]
            for turn in range(3):
                body = {"content": f"turn {turn} of {i}"}
                t0 = time.perf_counter()
                with h.stream("POST", f"/api/sessions/{cid}/messages", json=body) as r:
                    r.read()
                (first_turn if turn == 0 else later_turns).append(
                    (time.perf_counter() - t0) * 1000
                )
            _ok(h.post(f"/api/sessions/{cid}/stop"))
            _wait_pool(h, 2)
            cold.append(_timed(lambda cid=cid: _ok(h.post(f"/api/sessions/{cid}/resume"))))
            msgs = _ok(h.get(f"/api/sessions/{cid}/messages"))["messages"]
            prompts = [m for m in msgs if m["role"] == "user"]
            assert len(prompts) == 3, "cold resume lost the conversation"
            _ok(h.delete(f"/api/sessions/{cid}"))
        rows = [
            row(f"{store}: create, warm pool hit", hit),
            row(f"{store}: create, pool miss (new actor)", miss),
            row(f"{store}: baseline: bare Ray actor start", bare),
            row(f"{store}: warm resume (after pause)", warm),
            row(f"{store}: warm resume, registry call from a driver", warm_ray),
            row(f"{store}: baseline: GET /health (HTTP floor)", health_http),
            row(f"{store}: baseline: registry ping (Ray call floor)", ping),
            row(f"{store}: cold resume, 3-turn history kept", cold),
            row(f"{store}: first turn of a new session (to done)", first_turn),
            row(f"{store}: baseline: its 2nd and 3rd turns", later_turns),
        ]
    fake.stop()
    print("\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    if args.store != "both":
        run(args.store, args.n, args.database_url)
        return
    print(f"\nsession lifecycle over HTTP, n={args.n} each\n")
    print(HEADER)
    # One process per store: each gets its own Ray cluster and registry.
    me = [sys.executable, __file__, "--n", str(args.n)]
    subprocess.run([*me, "--store", "sqlite"], check=True)
    from tests.pg import TempPostgres

    with TempPostgres() as pg:
        subprocess.run([*me, "--store", "postgres", "--database-url", pg.url], check=True)


if __name__ == "__main__":
    main()
