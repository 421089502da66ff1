"""CPU priority: session work yields to the processes that answer the API.

Ray starts every worker at nice 15, the registry and the ingress replica included, so 50
session workers starting at once (seconds of CPU each) starved the processes that answer
creates and health probes (a burst's creates took seconds). Session workers starting or
waiting in the pool now run at nice 19; bound to a session, they (and the tool commands
they run) run at 10, ahead of the ones starting; the registry and the ingress at 0. Where
the OS does not allow raising a priority (not root, no CAP_SYS_NICE), the registry and
the ingress stay at Ray's 15 and session workers at 19.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import psutil
import ray

from ash_ray.config import Settings
from ash_ray.names import REGISTRY_NAME
from ash_ray.priority import CONTROL_NICE, SERVING_NICE, SESSION_NICE
from tests.helpers import wait_for
from tests.integration.sse import new_session


def thread_nices(pid: int) -> set[int]:
    """The nice value of every thread of ``pid`` (Linux keeps one per thread)."""
    out: set[int] = set()
    tasks = Path(f"/proc/{pid}/task")
    for task in tasks.iterdir() if tasks.is_dir() else ():  # (none: the process ended)
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
    http: httpx.Client, agent: str, settings: Settings
) -> None:
    root = os.geteuid() == 0  # root may raise a priority
    serving = SERVING_NICE if root else SESSION_NICE
    sid = new_session(http, agent)
    r = http.post(f"/api/sessions/{sid}/exec", json={"command": "nice", "timeout": 20000})
    assert r.status_code == 200, r.text
    assert r.json()["stdout"].strip() == str(serving), r.json()

    registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
    handle = ray.get(registry.live_handle.remote(sid))
    bound = int(ray.get(handle.describe.remote())["pid"])
    assert thread_nices(bound) == {serving}, bound
    # Released, its worker waits in the pool (or is retired) behind the serving ones.
    # (Other tests' registries have workers of their own: only this one is checked.)
    http.delete(f"/api/sessions/{sid}")
    wait_for(lambda: thread_nices(bound) in ({SESSION_NICE}, set()), what="back to 19")

    control = CONTROL_NICE if root else 15
    for role in ("Registry", "AshIngress"):
        procs = processes_titled(role)
        assert procs, f"no {role} process found"
        for proc in procs:
            assert thread_nices(proc.pid) == {control}, (role, thread_nices(proc.pid))
