"""The server under load: `ash-ray start` in a process tree of its own, the CPU time and
memory of that tree, and py-spy profiles of its busiest processes (benchmarks/load.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import psutil
from _harness import free_port, server_priority

MODEL_KEY = "sk-ant-load-model-key"


class Server:
    """`ash-ray start` in its own session, on free loopback ports and a fresh data dir."""

    def __init__(self, model_url: str, database_url: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ash-load-"))
        self.port = free_port(run=2)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "ASH_DATA_DIR": str(self.root / "data"),
            "ASH_PORT": str(self.port),
            "ASH_PROXY_PORT": str(free_port()),
            "ASH_DASHBOARD": "false",
            "ASH_NAMESPACE": f"ash-load-{uuid.uuid4().hex[:8]}",
            "ANTHROPIC_BASE_URL": model_url,
            "ANTHROPIC_API_KEY": MODEL_KEY,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }
        if database_url:
            self.env["ASH_DATABASE_URL"] = database_url
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ash_ray", "start"]

    def start(self, timeout_s: float = 240) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=server_priority,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            time.sleep(0.5)
        raise SystemExit(f"server not healthy in {timeout_s}s:\n{self.log.read_text()[-3000:]}")

    def processes(self) -> list[psutil.Process]:
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def settle(self, timeout_s: float = 180) -> float:
        """Wait until the server's CPU use is down to its idle rate (the workers started
        for the pool, binds and turn writes finished): under 0.1 CPU plus 0.005 a process
        for 2 s running. Returns that rate (CPUs), what the server uses doing nothing."""
        deadline = time.monotonic() + timeout_s
        quiet, rate = 0, 0.0
        before = sum(cpu_seconds(self.processes()).values())
        while time.monotonic() < deadline and quiet < 2:
            time.sleep(1.0)
            procs = self.processes()
            now = sum(cpu_seconds(procs).values())
            rate, before = now - before, now
            quiet = quiet + 1 if rate < 0.1 + 0.005 * len(procs) else 0
        return rate

    def stop(self) -> None:
        """SIGTERM (drain), then SIGKILL of whatever is left of its process tree."""
        if self.proc is None:
            return
        tree = self.processes()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(tree, timeout=30)


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
    return out


def memory_mb(procs: list[psutil.Process]) -> tuple[float, float]:
    rss = pss = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
    return rss / 2**20, pss / 2**20


class Sampler:
    """The server's processes sampled every second on a thread: peak RSS/PSS, and the
    CPU time each process was last seen with (session workers exit during the run)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = (0.0, 0.0)
        self.before = cpu_seconds(server.processes())
        self.cpu = dict(self.before)
        self.names: dict[int, str] = {}
        self.idle_cpus = 0.0  # the server's CPU use doing nothing, when measured
        self.client_s = 0.0  # --warm: the load client's and the fake model's CPU (one process)
        # every second: (perf_counter, CPU seconds used since the last sample by role)
        self.seconds: list[tuple[float, Counter[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            procs = self.server.processes()
            now, last = time.perf_counter(), dict(self.cpu)
            self.cpu.update(cpu_seconds(procs))
            used: Counter[str] = Counter()
            for p in procs:
                # The latest title: a worker process is `python ...`, then `ray::IDLE`,
                # then its actor's name.
                with contextlib.suppress(psutil.Error):
                    title = " ".join(p.cmdline())
                    self.names[p.pid] = _kind(title) or p.name()
                    used[_role(title)] += self.cpu.get(p.pid, 0.0) - last.get(p.pid, 0.0)
            self.seconds.append((now, used))
            rss, pss = memory_mb(procs)
            self.peak = (max(self.peak[0], rss), max(self.peak[1], pss))

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def cpu_used(self) -> float:
        return sum(t - self.before.get(pid, 0.0) for pid, t in self.cpu.items())

    def by_name(self) -> list[tuple[str, float]]:
        """CPU seconds used by each kind of process (summed by name), most first."""
        totals: Counter[str] = Counter()
        for pid, t in self.cpu.items():
            totals[self.names.get(pid, str(pid))] += t - self.before.get(pid, 0.0)
        return totals.most_common()

    def session_workers(self) -> int:
        """Session worker processes seen during the run (each one a process start)."""
        return sum(1 for pid, name in self.names.items() if name == SESSION_KIND and
                   pid not in self.before)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


SESSION_KIND = "ray::SessionWorker"


def _kind(cmdline: str) -> str:
    """A process's kind from its command line: Ray's title without the actor's name and
    method (``ray::ash-session-<id>:SessionWorker.ask`` is a session worker)."""
    name = cmdline.split(" ")[0]
    if not name.startswith("ray::"):
        return name
    name = name.split(".")[0]  # ray::<Actor>.<method>: the actor
    return "ray::" + name.rsplit(":", 1)[-1] if name.count(":") > 2 else name


def _role(title: str) -> str:
    """What a process is doing, for the timeline: a session worker starting (a new
    process, ``ray::IDLE``, or its actor's ``__init__``) is apart from one serving."""
    name = title.split(" ")[0]
    ray_titled = name.startswith("ray::")
    if name == "ray::IDLE" or name.endswith(".__init__") or (
        not ray_titled and "default_worker" in title
    ):
        return "start"
    if not ray_titled:  # Ray's daemons, the driver
        return "ray"
    for role, needle in ROLES.items():
        if needle in name:
            return role
    # the floors' actors (_ray_floor_app.py): a session each, and one store
    actor = name.split(".")[0].rsplit(":", 1)[-1]
    return {"Session": "session", "Store": "registry"}.get(actor, "ray")


# Ray names a worker process after its actor: `ray::<Class>...` (Serve: ServeReplica).
ROLES = {
    "ingress": "ServeReplica",
    "registry": "Registry",
    "session": "SessionWorker",
}


def find_role(procs: list[psutil.Process], needle: str) -> psutil.Process | None:
    """The busiest process whose command line names ``needle`` (CPU time so far)."""
    found = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if needle in " ".join(p.cmdline()):
                t = p.cpu_times()
                found.append((t.user + t.system, p))
    return max(found, key=lambda f: f[0])[1] if found else None


class Profiles:
    """py-spy recording the ingress replica, the registry and the busiest session worker
    while the measured phase runs (raw collapsed stacks, one file a role)."""

    def __init__(self, server: Server, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.spies: dict[str, subprocess.Popen[bytes]] = {}
        procs = server.processes()
        # PY_SPY_ARGS="--native" (blocking): Ray's C++ and Cython frames too.
        extra = os.environ.get("PY_SPY_ARGS", "--nonblocking").split()
        for role, needle in ROLES.items():
            proc = find_role(procs, needle)
            if proc is None:
                print(f"py-spy: no {role} process ({needle})", file=sys.stderr)
                continue
            out = folder / f"{role}.txt"
            self.spies[role] = subprocess.Popen(
                ["py-spy", "record", "--pid", str(proc.pid), "--format", "raw",
                 "--rate", "200", *extra, "-o", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

    def __enter__(self) -> Profiles:
        return self

    def __exit__(self, *exc: object) -> None:
        for spy in self.spies.values():
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in self.spies.values():
            spy.wait(60)

    def summary(self, top: int = 12) -> str:
        return "\n\n".join(
            summarize(self.folder / f"{role}.txt", role, top) for role in self.spies
        )


# Leaf frames of threads that wait (in C: locks, queues, Ray's task loop, the thread
# of a C function): py-spy without --native cannot tell them from work, so they are
# left out and the percentages are of the samples in Python code.
WAITING = (
    "Condition.wait", "Queue.get", "Event.wait", "_connection_worker_thread",
    "Worker.main_loop", "Thread.run", "_worker (",
)


def summarize(path: Path, title: str, top: int = 12) -> str:
    """Top functions of a raw py-spy profile: self and inclusive share of the samples
    in Python code (waiting threads left out), in %."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = left_out = 0
    for line in path.read_text().splitlines() if path.exists() else []:
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [_short(f) for f in stack.split(";")[1:]]  # the first is the thread
        if not frames or frames[-1].startswith(WAITING):
            left_out += n
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [
        f"{title}: {total} samples in Python code ({left_out} of waiting threads left out)",
        "  self%  incl%  function",
    ]
    share = 100 / max(total, 1)
    for name, n in own.most_common(top):
        lines.append(f"  {n * share:5.1f}  {incl[name] * share:5.1f}  {name}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`fn (path/to/mod.py:12)` -> `fn (mod.py)`."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = file.split("/")
    return f"{name} ({'/'.join(parts[-2:])})"
