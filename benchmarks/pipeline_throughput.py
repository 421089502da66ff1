"""Throughput of ``run_prompts``: rows per second and CPU per row, beside the floor.

For each concurrency, the same prompts go (1) straight to the fake model with the
``anthropic`` SDK from ``concurrency`` Ray tasks: the floor, what calling the model costs
without ash-ray; and (2) through ``run_prompts`` (Ray Data map workers, one session each,
a full agent turn per row). Wall time includes start-up (map workers, sessions), as a user
sees it. CPU is the user+system time of this process and every process under it (Ray's,
the fake model's threads included), sampled while the run lasts, divided by the rows.

Last, backpressure: a second ash-ray with fewer session slots (``ASH_MAX_SANDBOXES``)
than map workers, one session a row. Rows wait for a slot; the run reports how many
failed or came out twice, the most live sandboxes ``/health`` saw, and any /health answer
that was not 200.

    python benchmarks/pipeline_throughput.py [--rows 200] [--concurrency 4 8 16]
        [--over-rows 24 --over-concurrency 8 --over-capacity 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import psutil
import ray
import ray.data
from _harness import local_ash, make_agent

from ash_ray.pipeline import run_prompts
from ash_ray.testing.fake_anthropic import FakeAnthropic


class CpuMeter:
    """CPU seconds of this process tree while it runs (processes that come and go included)."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            used = t.user + t.system
            self.first.setdefault(proc.pid, used)
            self.last[proc.pid] = used

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


@ray.remote(num_cpus=0.05)
def ask_directly(base_url: str, prompts: list[str]) -> int:
    """The floor: the prompts, one after another, to the model with the anthropic SDK."""
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key="bench", max_retries=0)
    for prompt in prompts:
        with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=256,
            messages=[{"role": "user", "content": prompt}],
        ) as stream:
            stream.get_final_message()
    return len(prompts)


class Result(NamedTuple):
    run: str
    rows: int
    failed: int  # rows with an error, or missing from the output
    wall_s: float
    cpu_s: float

    def line(self) -> str:
        return (f"| {self.run:<44} | {self.rows:>5} | {self.failed:>6} | {self.wall_s:>7.2f} | "
                f"{self.rows / self.wall_s:>7.1f} | {self.cpu_s * 1000 / self.rows:>10.1f} |")


HEADER = (
    f"| {'run':<44} | {'rows':>5} | {'failed':>6} | {'wall s':>7} | {'rows/s':>7} | "
    f"{'CPU ms/row':>10} |\n"
    f"|{'-' * 46}|{'-' * 7}|{'-' * 8}|{'-' * 9}|{'-' * 9}|{'-' * 12}|"
)


class Measured:
    """Wall and CPU time of a block; ``failed`` is set inside it."""

    def __init__(self, results: list[Result], name: str, rows: int) -> None:
        self.results, self.name, self.rows, self.failed = results, name, rows, 0

    @contextmanager
    def run(self) -> Iterator[Measured]:
        with CpuMeter() as cpu:
            t0 = time.perf_counter()
            yield self
            wall = time.perf_counter() - t0
        result = Result(self.name, self.rows, self.failed, wall, cpu.seconds)
        self.results.append(result)
        print(result.line(), flush=True)  # a run cut short still shows what it measured


def answered(out: ray.data.Dataset) -> int:
    return int(out.filter(lambda r: r["error"] is None).count())


def deploy(url: str, root: Path) -> None:
    httpx.post(
        url + "/api/agents", json={"name": "bench", "path": str(make_agent(root))}
    ).raise_for_status()


def throughput(args: argparse.Namespace, fake: FakeAnthropic, root: Path,
               results: list[Result]) -> None:
    """Each concurrency: the floor, then ``run_prompts`` (worker mode) on the same prompts."""
    with local_ash(
        anthropic_base_url=fake.url, anthropic_api_key="bench",
        max_sandboxes=max(args.concurrency) + 2,
    ) as (url, settings):
        deploy(url, root)
        prompts = [f"row {i}: answer briefly" for i in range(args.rows)]
        for conc in args.concurrency:
            chunks = [prompts[i::conc] for i in range(conc)]
            with Measured(results, f"floor: SDK from {conc} Ray tasks", args.rows).run() as m:
                m.failed = args.rows - sum(
                    ray.get([ask_directly.remote(fake.url, c) for c in chunks])
                )
            ds = ray.data.from_items([{"prompt": p} for p in prompts],
                                     override_num_blocks=max(conc * 2, 8))
            with Measured(results, f"run_prompts concurrency={conc}", args.rows).run() as m:
                out = run_prompts(ds, "bench", concurrency=conc, batch_size=args.batch_size,
                                  namespace=settings.namespace)
                m.failed = args.rows - answered(out)


class HealthWatch:
    """Polls /health while a run lasts: the most live sandboxes seen, and any answer
    that was not 200 (a 5xx here would mean the server broke under the load)."""

    def __init__(self, url: str, interval_s: float = 0.25) -> None:
        self.url = url
        self.interval_s = interval_s
        self.most = 0
        self.bad: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(self.interval_s):
                try:
                    r = client.get(self.url + "/health")
                except httpx.HTTPError:
                    self.bad.append(0)
                    continue
                if r.status_code != 200:
                    self.bad.append(r.status_code)
                else:
                    self.most = max(self.most, int(r.json()["activeSandboxes"]))

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def over_capacity(args: argparse.Namespace, fake: FakeAnthropic, root: Path,
                  results: list[Result]) -> str:
    """Backpressure: more map workers than session slots, one session a row. Creates
    that find no slot wait (the pipeline retries the registry's AtCapacity); every row
    must still be answered, once. Returns a line on what /health saw meanwhile."""
    conc, cap, rows = args.over_concurrency, args.over_capacity, args.over_rows
    with local_ash(
        anthropic_base_url=fake.url, anthropic_api_key="bench",
        max_sandboxes=cap, warm_pool_size=0,
    ) as (url, settings):
        deploy(url, root)
        prompts = [f"over {i}: answer briefly" for i in range(rows)]
        ds = ray.data.from_items([{"prompt": p} for p in prompts], override_num_blocks=conc)
        name = f"over capacity: c={conc}, {cap} slots, per row"
        with HealthWatch(url) as watch, Measured(results, name, rows).run() as m:
            out = run_prompts(ds, "bench", concurrency=conc, session_per="row",
                              batch_size=1, namespace=settings.namespace,
                              capacity_wait_s=args.capacity_wait_s)
            got = out.take_all()
            m.failed = rows - sum(1 for r in got if r["error"] is None)
            twice = len(got) - len({r["prompt"] for r in got})
            errors = sorted({str(r["error"])[:300] for r in got if r["error"] is not None})
    return (f"over capacity: at most {watch.most} live sandboxes seen (limit {cap}); "
            f"{len(got)} output rows for {rows} prompts ({twice} duplicated); "
            f"/health answers other than 200: {watch.bad or 'none'}; "
            f"row errors: {errors or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--first-token-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--over-rows", type=int, default=24,
                        help="rows of the over-capacity run (each starts a session worker)")
    parser.add_argument("--over-concurrency", type=int, default=8)
    parser.add_argument("--over-capacity", type=int, default=2, help="ASH_MAX_SANDBOXES")
    parser.add_argument("--capacity-wait-s", type=float, default=300)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()

    fake = FakeAnthropic(first_token_delay_s=args.first_token_ms / 1000, chunk_delay_s=0.001)
    fake.start()
    root = Path(tempfile.mkdtemp(prefix="ash-bench-pipeline-"))
    results: list[Result] = []
    print(HEADER, flush=True)
    try:
        if not args.skip_throughput:
            throughput(args, fake, root, results)
        note = over_capacity(args, fake, root, results)
    finally:
        fake.stop()
    print(f"\npipeline throughput: {args.rows} prompts, model first token "
          f"{args.first_token_ms} ms, {psutil.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} (wall includes start-up)\n")
    print(HEADER)
    for result in results:
        print(result.line())
    print(f"\n{note}")


if __name__ == "__main__":
    main()
