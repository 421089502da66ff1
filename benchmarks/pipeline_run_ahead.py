"""How far a lazily consumed ``PipelineSessions.map`` runs ahead of its consumer.

Two consumers of the same map, each with the default bound (``max_rows_ahead`` =
2 x concurrency x batch_size) and with the bound lifted (``max_rows_ahead`` = every row):

- fast: ``iter_batches`` read as fast as it comes; rows per second (wall time includes
  starting the map and session workers). The bound must not slow it down.
- slow: reads one batch, then stops reading until the model has had no new prompt for
  ``--quiet-s``; reports how many rows' turns had started by then, then reads the rest.

    python benchmarks/pipeline_run_ahead.py [--rows 120] [--concurrency 4] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import psutil
import ray.data
from _harness import local_ash
from pipeline_throughput import HEADER, Measured, Result, deploy

from ash_ray.pipeline import PipelineSessions
from ash_ray.testing.fake_anthropic import FakeAnthropic


def rows_asked(fake: FakeAnthropic, tag: str) -> int:
    """Distinct rows ``"<tag> <n>"`` whose prompt reached the model."""
    found = re.compile(rf"{tag} (\d+)")
    return len({m.group(1) for b in fake.message_requests for m in found.finditer(
        str(b["messages"][-1]))})


def until_quiet(read: object, quiet_s: float) -> int:
    """``read()`` once it has kept one value for ``quiet_s``."""
    assert callable(read)
    value, since = read(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.1)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
    return int(value)


def one_run(args: argparse.Namespace, fake: FakeAnthropic, namespace: str, run: int,
            bound: int | None, slow: bool, results: list[Result]) -> str:
    tag = f"run{run}"
    ds = ray.data.from_items([{"prompt": f"{tag} {i}: answer briefly"} for i in range(args.rows)],
                             override_num_blocks=args.rows // args.batch_size)
    label = f"{'slow' if slow else 'fast'} consumer, max_rows_ahead={bound or 'default'}"
    note = ""
    with Measured(results, label, args.rows).run() as m, PipelineSessions(
        "bench", concurrency=args.concurrency, namespace=namespace
    ) as stage:
        out = stage.map(ds, batch_size=args.batch_size, max_rows_ahead=bound)
        batches = iter(out.iter_batches(batch_size=args.batch_size))
        got = [next(batches)]
        if slow:
            paused = until_quiet(lambda: rows_asked(fake, tag), args.quiet_s)
            note = f"{label}: {paused} of {args.rows} rows asked after 1 batch read"
        got += list(batches)
        m.failed = args.rows - sum(isinstance(a, str) for b in got for a in b["answer"])
    return note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="fast runs of each kind")
    parser.add_argument("--quiet-s", type=float, default=8)
    parser.add_argument("--first-token-ms", type=float, default=20)
    args = parser.parse_args()

    fake = FakeAnthropic(first_token_delay_s=args.first_token_ms / 1000, chunk_delay_s=0.001)
    fake.start()
    results: list[Result] = []
    notes: list[str] = []
    print(HEADER, flush=True)
    try:
        with local_ash(anthropic_base_url=fake.url, anthropic_api_key="bench",
                       max_sandboxes=args.concurrency + 2) as (url, settings):
            deploy(url, Path(tempfile.mkdtemp(prefix="ash-bench-ahead-")))
            runs = [(b, False) for _ in range(args.repeat) for b in (None, args.rows)]
            runs += [(None, True), (args.rows, True)]
            for run, (bound, slow) in enumerate(runs):
                notes.append(one_run(args, fake, settings.namespace, run, bound, slow, results))
    finally:
        fake.stop()
    print(f"\nrun-ahead: {args.rows} prompts, concurrency {args.concurrency}, batch_size "
          f"{args.batch_size} (default bound {2 * args.concurrency * args.batch_size} rows), "
          f"{psutil.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")
    print(HEADER)
    for result in results:
        print(result.line())
    print("\n" + "\n".join(n for n in notes if n))


if __name__ == "__main__":
    main()
