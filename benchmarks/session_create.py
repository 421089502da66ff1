"""Session create latency as a user sees it: sequential POST /api/sessions, default pool.

Creates come back to back (no waiting for the pool to refill), so this mixes warm-pool
hits with misses the way a burst does; `session_lifecycle.py` separates the two.
Baseline in the same run: a bare Ray actor start on the same cluster.

    python benchmarks/session_create.py [--n 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import ray
from _harness import HEADER, local_ash, make_agent, row


@ray.remote(num_cpus=0.01)
class _Bare:
    def ready(self) -> bool:
        return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--pause-ms", type=float, default=0.0, help="think time between creates")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ash-bench-agents-"))
    created, bare = [], []
    with local_ash() as (url, settings), httpx.Client(base_url=url, timeout=120) as http:
        http.post("/api/agents", json={"name": "b", "path": str(make_agent(root))})
        time.sleep(2)  # let the warm pool fill once, as after a server start
        for _ in range(args.n):
            t0 = time.perf_counter()
            r = http.post("/api/sessions", json={"agent": "b"})
            created.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 201, r.text
            time.sleep(args.pause_ms / 1000)
        for _ in range(min(args.n, 10)):
            t0 = time.perf_counter()
            ray.get(_Bare.remote().ready.remote())
            bare.append((time.perf_counter() - t0) * 1000)
        hits = http.get("/health").json()["pool"]["preWarmHits"]
    print(f"\nsession create, {args.n} sequential creates, warm pool size "
          f"{settings.warm_pool_size}: {hits} pool hits\n")
    print(HEADER)
    print(row("POST /api/sessions (201)", created))
    print(row("baseline: bare Ray actor start", bare))


if __name__ == "__main__":
    main()
