"""Events persisted per second through the registry's write-behind, per store.

Session workers send the registry batches of events (about one batch per 20 ms while a
turn streams). Here C concurrent callers (Ray actors, like workers) each send B batches of
E events; the figure is events committed per second. Baseline in the same run: the same
batches written straight to the store from one process, without Ray or the registry.

    python benchmarks/registry_events.py [--callers 8] [--batches 50] [--events 50]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from _harness import free_port

from ash_ray import app
from ash_ray.config import load_settings
from ash_ray.models import EventRecord, SessionRecord, WriteBatch, new_id, utcnow
from ash_ray.names import REGISTRY_NAME
from ash_ray.store import open_store


def _batches(session_id: str, count: int, size: int) -> list[WriteBatch]:
    now = utcnow()
    rec = SessionRecord(id=session_id, agent_name="bench", sandbox_id=session_id,
                        status="active", created_at=now, last_active_at=now)
    out, seq = [], 0
    for _ in range(count):
        events = []
        for _ in range(size):
            seq += 1
            events.append(EventRecord(session_id=session_id, seq=seq, type="text_delta",
                                      data={"delta": "some streamed text"}, created_at=now))
        out.append(WriteBatch(sessions=[rec.model_copy(update={"last_seq": seq})],
                              events=events))
    return out


@ray.remote(num_cpus=0.01)
class Caller:
    def __init__(self, namespace: str, batches: list[WriteBatch]) -> None:
        self.registry = ray.get_actor(REGISTRY_NAME, namespace=namespace)
        self.batches = batches

    def ready(self) -> bool:
        return True

    async def run(self) -> float:
        t0 = time.perf_counter()
        for batch in self.batches:
            await self.registry.record.remote(batch, {})
        return time.perf_counter() - t0


def through_registry(settings: Any, callers: int, batches: int, size: int) -> float:
    app.ensure_registry(settings)
    actors = [Caller.remote(settings.namespace, _batches(new_id(), batches, size))
              for _ in range(callers)]
    ray.get([a.run.remote() for a in actors])  # warm-up: workers started, path exercised
    actors = [Caller.remote(settings.namespace, _batches(new_id(), batches, size))
              for _ in range(callers)]
    ray.get([a.ready.remote() for a in actors])  # actor start-up is not part of the figure
    t0 = time.perf_counter()
    ray.get([a.run.remote() for a in actors])
    return callers * batches * size / (time.perf_counter() - t0)


async def direct(settings: Any, callers: int, batches: int, size: int) -> float:
    store = open_store(settings)
    await store.open()
    work = [_batches(new_id(), batches, size) for _ in range(callers)]
    t0 = time.perf_counter()
    for per_caller in work:
        for batch in per_caller:
            await store.write(batch)
    elapsed = time.perf_counter() - t0
    await store.close()
    return callers * batches * size / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--callers", type=int, default=8)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--events", type=int, default=50)
    args = ap.parse_args()
    from tests.pg import TempPostgres

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    rows = []
    with TempPostgres(durable=True) as pg:
        for kind, url in (("sqlite", ""), ("postgres", pg.url)):
            data = Path(tempfile.mkdtemp(prefix="ash-bench-"))
            settings = load_settings(data_dir=data, port=free_port(), database_url=url,
                                     namespace=f"bench-{kind}", warm_pool_size=0)
            base = asyncio.run(direct(settings, args.callers, args.batches, args.events))
            reg = through_registry(settings, args.callers, args.batches, args.events)
            rows.append((kind, base, reg))
    ray.shutdown()
    print(f"\nevents persisted per second: {args.callers} callers x {args.batches} batches "
          f"x {args.events} events\n")
    print(f"| {'store':<9} | {'baseline: store.write, one process':>36} | "
          f"{'through the registry (Ray)':>28} |")
    print(f"|{'-' * 11}|{'-' * 38}|{'-' * 30}|")
    for kind, base, reg in rows:
        print(f"| {kind:<9} | {base:>36,.0f} | {reg:>28,.0f} |")


if __name__ == "__main__":
    main()
