"""Shared set-up of the benchmarks: a local ash-ray (Ray + Serve + registry) and a fake model.

Benchmarks print tables; they are scripts, not tests. Each keeps a baseline in the same run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray

from ash_ray import app
from ash_ray.config import Settings, load_settings
from ash_ray.testing.ports import free_port

CLIENT_NICE = -10


def client_ahead(nice: int = CLIENT_NICE) -> str:
    """Run this process (the load client, and the fake model in its thread) ahead of the
    server, as if on another machine: on 2 shared cores at a server's default priority it
    waited for a CPU most of a run (a cold load run's thread spent 76 s of 113 runnable and
    not running), and its own wait showed up as the server's latency. Threads started
    after this inherit it; :func:`server_priority` puts the server back. With Linux's
    autogroups (a new session is a scheduling group of its own, and a thread's nice only
    counts inside its group) the group's nice is set too. Returns what was done."""
    done = []
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/autogroup") as f:  # "/autogroup-1 nice 0"
            before = f.read().split()[-1]
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
        atexit.register(_set_autogroup_nice, before)  # the group is the caller's shell's too
        done.append("autogroup")
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        done.append("thread")
    except OSError:
        return "load client at the default priority (raising it needs CAP_SYS_NICE)"
    return f"load client at nice {nice} ({', '.join(done)})"


def _set_autogroup_nice(nice: str) -> None:
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as f:
        f.write(nice)


def server_priority() -> None:
    """For a server started from :func:`client_ahead`'s process (a ``preexec_fn``): back to
    the default nice (a new session also makes it a new autogroup, at nice 0)."""
    os.setpriority(os.PRIO_PROCESS, 0, 0)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def row(name: str, values_ms: list[float]) -> str:
    return (
        f"| {name:<44} | {len(values_ms):>4} | {pct(values_ms, 50):>9.2f} | "
        f"{pct(values_ms, 95):>9.2f} | {statistics.fmean(values_ms):>9.2f} |"
    )


HEADER = (
    f"| {'measurement':<44} | {'n':>4} | {'p50 ms':>9} | {'p95 ms':>9} | {'mean ms':>9} |\n"
    f"|{'-' * 46}|{'-' * 6}|{'-' * 11}|{'-' * 11}|{'-' * 11}|"
)


@contextmanager
def local_ash(apps: int = 1, **overrides: Any) -> Iterator[tuple[str, Settings]]:
    """Start ash-ray in this process on a fresh data dir; yield (url, settings).

    ``apps``: how many Serve apps the benchmark will run (each ingress takes a port).
    """
    data = Path(tempfile.mkdtemp(prefix="ash-bench-"))
    settings = load_settings(
        # one direct-ingress port an app
        data_dir=data, port=free_port(run=apps), proxy_port=free_port(), dashboard=False,
        session_num_cpus=0.01, **overrides,
    )
    app.prepare_ray_env(settings)
    os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(settings.port + apps)
    ray.init(address="local", namespace=settings.namespace, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    try:
        app.ensure_registry(settings)
        app.start_serve(settings)
        url = f"http://127.0.0.1:{settings.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url, settings
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def make_agent(root: Path) -> Path:
    folder = root / "bench-agent"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "CLAUDE.md").write_text("You are a benchmark agent.\n")
    return folder
