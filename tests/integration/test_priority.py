"""CPU priority: session work yields to the processes that answer the API.

Ray starts every worker at nice 15, the registry and the ingress replica included, so 50
session workers starting at once (seconds of CPU each) starved the processes that answer
creates and health probes (a burst's creates took seconds). Session workers, and the tool
commands they run, now run at nice 19; the registry and the ingress at 0 where the OS
allows it (root here), else at Ray's 15.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import psutil

from ash_ray.priority import CONTROL_NICE, SESSION_NICE
from tests.integration.sse import new_session


def thread_nices(pid: int) -> set[int]:
    """The nice value of every thread of ``pid`` (Linux keeps one per thread)."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # a thread that just ended
        out.add(int(stat.rsplit(")", 1)[1].split()[16]))
    return out


def processes_titled(needle: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        title = " ".join(proc.info["cmdline"] or [])
        if title.startswith("ray::") and needle in title:
            found.append(proc)
    return found


def test_session_work_runs_below_the_registry_and_the_ingress(
    http: httpx.Client, agent: str
) -> None:
    sid = new_session(http, agent)
    r = http.post(f"/api/sessions/{sid}/exec", json={"command": "nice", "timeout": 20000})
    assert r.status_code == 200, r.text
    assert r.json()["stdout"].strip() == str(SESSION_NICE), r.json()

    workers = processes_titled("SessionWorker")
    assert workers, "no session worker process found"
    for proc in workers:
        assert thread_nices(proc.pid) == {SESSION_NICE}, proc.pid

    control = CONTROL_NICE if os.geteuid() == 0 else 15  # root may raise a priority
    for role in ("Registry", "AshIngress"):
        procs = processes_titled(role)
        assert procs, f"no {role} process found"
        for proc in procs:
            assert thread_nices(proc.pid) == {control}, (role, thread_nices(proc.pid))
