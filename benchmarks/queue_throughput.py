"""Queue throughput: items per minute at ASH_QUEUE_CONCURRENCY=4 with the fake model.

Three ways to run the same N prompts, on one local ash-ray: queue items that each open a
new session; queue items spread round-robin over 4 existing sessions; and, as the
baseline, the same prompts sent straight to those 4 sessions by 4 client threads
(POST .../messages). Every queue item is claimed, run and saved as the worker does in
production (lease, turn, messages, usage).

    python benchmarks/queue_throughput.py [--n 40] [--first-token-ms 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from _harness import local_ash, make_agent

from ash_ray.testing.fake_anthropic import FakeAnthropic


def _drain(http: httpx.Client, ids: list[str], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    left = set(ids)
    while left and time.monotonic() < deadline:
        for item_id in list(left):
            status = http.get(f"/api/queue/{item_id}").json()["item"]["status"]
            if status in ("completed", "failed", "cancelled"):
                assert status == "completed", (item_id, status)
                left.discard(item_id)
        time.sleep(0.05)
    assert not left, f"{len(left)} items not done"


def _queue(http: httpx.Client, n: int, sessions: list[str] | None) -> float:
    t0 = time.perf_counter()
    ids = []
    for i in range(n):
        body = {"agentName": "b", "prompt": f"item {i}"}
        if sessions:
            body["sessionId"] = sessions[i % len(sessions)]
        ids.append(http.post("/api/queue", json=body).json()["item"]["id"])
    _drain(http, ids)
    return time.perf_counter() - t0


def _direct(url: str, n: int, sessions: list[str]) -> float:
    def worker(k: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            for i in range(k, n, len(sessions)):
                r = http.post(f"/api/sessions/{sessions[k]}/messages",
                              json={"content": f"direct {i}"})
                assert r.status_code == 200, r.text

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(sessions)) as pool:
        list(pool.map(worker, range(len(sessions))))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--first-token-ms", type=float, default=50)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ash-bench-agents-"))
    fake = FakeAnthropic(first_token_delay_s=args.first_token_ms / 1000, chunk_delay_s=0.001)
    fake.start()
    rows = []
    try:
        with local_ash(
            anthropic_base_url=fake.url, anthropic_api_key="fake", queue_concurrency=4,
            max_sandboxes=16, warm_pool_size=4,
        ) as (url, _settings), httpx.Client(base_url=url, timeout=120) as http:
            http.post("/api/agents", json={"name": "b", "path": str(make_agent(root))})
            _queue(http, 4, None)  # warm up: workers, sessions, the store
            sessions = [http.post("/api/sessions", json={"agent": "b"}).json()["session"]["id"]
                        for _ in range(4)]
            for name, run in (
                ("queue, a new session per item", lambda: _queue(http, args.n, None)),
                ("queue, 4 existing sessions", lambda: _queue(http, args.n, sessions)),
                ("direct POST messages, 4 threads, 4 sessions",
                 lambda: _direct(url, args.n, sessions)),
            ):
                secs = run()
                rows.append((name, secs))
    finally:
        fake.stop()
    print(f"\nqueue throughput, {args.n} prompts, concurrency 4, fake model first token "
          f"{args.first_token_ms:.0f} ms\n")
    print(f"| {'mode':<44} | {'seconds':>8} | {'items/min':>9} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 11}|")
    for name, secs in rows:
        print(f"| {name:<44} | {secs:>8.2f} | {args.n / secs * 60:>9.0f} |")


if __name__ == "__main__":
    main()
