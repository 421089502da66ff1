"""Throughput of ``run_prompts``: rows per second and CPU per row, beside the floor.

For each concurrency, the same prompts go (1) through ``run_prompts`` (Ray Data map
workers, one session each, a full agent turn per row) and (2) straight to the fake model
with the ``anthropic`` SDK from ``concurrency`` Ray tasks: the floor, what calling the model
costs without ash-ray. Wall time includes start-up (map workers, sessions), as a user sees
it. CPU is the user+system time of this process and every process under it (Ray's, the
fake model's threads included), sampled while the run lasts, divided by the rows.

    python benchmarks/pipeline_throughput.py [--rows 200] [--concurrency 4 8 16]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def measured(results: list[Result], name: str, rows: int) -> Iterator[None]:
    with CpuMeter() as cpu:
        t0 = time.perf_counter()
        yield
        wall = time.perf_counter() - t0
    results.append((name, rows, wall, cpu.seconds))


Result = tuple[str, int, float, float]  # run, rows, wall s, CPU s


def run(args: argparse.Namespace, fake: FakeAnthropic, root: Path) -> list[Result]:
    results: list[Result] = []
    with local_ash(
        anthropic_base_url=fake.url, anthropic_api_key="bench",
        max_sandboxes=max(args.concurrency) + 2,
    ) as (url, _settings):
        httpx.post(
            url + "/api/agents", json={"name": "bench", "path": str(make_agent(root))}
        ).raise_for_status()
        prompts = [f"row {i}: answer briefly" for i in range(args.rows)]
        for conc in args.concurrency:
            chunks = [prompts[i::conc] for i in range(conc)]
            with measured(results, f"floor: SDK from {conc} Ray tasks", args.rows):
                assert sum(ray.get([ask_directly.remote(fake.url, c) for c in chunks])) == args.rows
            ds = ray.data.from_items([{"prompt": p} for p in prompts],
                                     override_num_blocks=max(conc * 2, 8))
            with measured(results, f"run_prompts concurrency={conc}", args.rows):
                out = run_prompts(ds, "bench", concurrency=conc, batch_size=args.batch_size)
                answered = out.filter(lambda r: r["error"] is None).count()
            assert answered == args.rows, f"{args.rows - answered} rows failed"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--first-token-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    fake = FakeAnthropic(first_token_delay_s=args.first_token_ms / 1000, chunk_delay_s=0.001)
    fake.start()
    try:
        results = run(args, fake, Path(tempfile.mkdtemp(prefix="ash-bench-pipeline-")))
    finally:
        fake.stop()
    print(f"\npipeline throughput: {args.rows} prompts, model first token "
          f"{args.first_token_ms} ms, {psutil.cpu_count()} cores (wall includes start-up)\n")
    print(f"| {'run':<36} | {'rows':>5} | {'wall s':>7} | {'rows/s':>7} | {'CPU ms/row':>10} |")
    print(f"|{'-' * 38}|{'-' * 7}|{'-' * 9}|{'-' * 9}|{'-' * 12}|")
    for name, rows, wall, cpu in results:
        print(f"| {name:<36} | {rows:>5} | {wall:>7.2f} | {rows / wall:>7.1f} | "
              f"{cpu * 1000 / rows:>10.1f} |")



if __name__ == "__main__":
    main()
