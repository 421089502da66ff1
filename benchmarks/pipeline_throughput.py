"""Throughput of ``run_prompts``: rows per second by concurrency and session mode.

Baseline: the same prompts asked one after another on one session from the driver
(``session.run``), no Ray Data. Then Ray Data pipelines with 1, 2 and 4 map workers, one
session per worker and one per row. Start-up (map workers, sessions) is part of the wall
time, as a user sees it; the model's delay is fixed by the fake.

    python benchmarks/pipeline_throughput.py [--rows 40] [--first-token-ms 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import ray
import ray.data
from _harness import local_ash, make_agent

from ash_ray.pipeline import connect, run_prompts
from ash_ray.testing.fake_anthropic import FakeAnthropic


def table_row(name: str, rows: int, seconds: float) -> str:
    return f"| {name:<40} | {rows:>5} | {seconds:>8.2f} | {rows / seconds:>7.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--first-token-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    fake = FakeAnthropic(first_token_delay_s=args.first_token_ms / 1000, chunk_delay_s=0.001)
    fake.start()
    root = Path(tempfile.mkdtemp(prefix="ash-bench-pipeline-"))
    results: list[str] = []
    try:
        with local_ash(
            anthropic_base_url=fake.url, anthropic_api_key="bench", max_sandboxes=16
        ) as (url, _settings):
            httpx.post(
                url + "/api/agents", json={"name": "bench", "path": str(make_agent(root))}
            ).raise_for_status()
            prompts = [{"prompt": f"row {i}: answer briefly"} for i in range(args.rows)]

            ash = connect()
            with ash.session("bench") as session:
                t0 = time.perf_counter()
                for p in prompts:
                    session.run(p["prompt"])
                results.append(table_row("driver, one session, sequential", args.rows,
                                         time.perf_counter() - t0))  # fmt: skip

            for per in ("worker", "row"):
                for conc in args.concurrency:
                    ds = ray.data.from_items(prompts, override_num_blocks=max(conc * 2, 4))
                    t0 = time.perf_counter()
                    out = run_prompts(ds, "bench", concurrency=conc, session_per=per)
                    seconds = time.perf_counter() - t0
                    assert out.count() == args.rows
                    results.append(table_row(f"run_prompts session_per={per} conc={conc}",
                                             args.rows, seconds))  # fmt: skip
    finally:
        fake.stop()

    print(f"\npipeline throughput: {args.rows} rows, model first token "
          f"{args.first_token_ms} ms (wall time includes start-up)\n")  # fmt: skip
    print(f"| {'run':<40} | {'rows':>5} | {'wall s':>8} | {'rows/s':>7} |")
    print(f"|{'-' * 42}|{'-' * 7}|{'-' * 10}|{'-' * 9}|")
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
