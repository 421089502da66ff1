"""Shutdown of the server commands: the exit deadline, and Ray's daemons out of our group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = """
import os, signal, sys, time
from ash_ray.supervise import Shutdown
stop = Shutdown({grace})
stop.drained = {drained}
print("ready", flush=True)
assert stop.wait()
print("draining", flush=True)
{after}
"""


def _run(grace: float, drained: bool, after: str, signals: int = 1) -> tuple[int, float, str]:
    code = textwrap.dedent(SCRIPT).format(grace=grace, drained=drained, after=after)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    started = time.monotonic()
    for n in range(signals):
        os.killpg(proc.pid, 15)  # the whole group, as systemd does
        if n + 1 < signals:
            assert proc.stdout.readline().strip() == "draining"
    proc.wait(30)
    return proc.returncode, time.monotonic() - started, proc.stdout.read()


def test_a_hung_shutdown_ends_at_the_deadline_failing_when_not_drained() -> None:
    code, took, out = _run(1.0, False, "time.sleep(60)")
    assert code == 1 and 0.9 <= took < 5, (code, took)
    assert "draining" in out


def test_a_hung_shutdown_after_the_drain_ends_cleanly_at_the_deadline() -> None:
    code, took, _ = _run(1.0, True, "time.sleep(60)")
    assert code == 0 and took < 5


def test_a_prompt_shutdown_is_not_cut_short() -> None:
    code, took, _ = _run(5.0, True, "sys.exit(0)")
    assert code == 0 and took < 4


def test_a_second_signal_exits_at_once() -> None:
    code, took, _ = _run(60.0, False, "time.sleep(60)", signals=2)
    assert code == 143 and took < 10


def test_ray_processes_start_in_their_own_session() -> None:
    pytest.importorskip("ray")
    from ray._private import services

    from ash_ray.supervise import isolate_ray_processes

    isolate_ray_processes()
    isolate_ray_processes()  # twice is harmless
    child = services.ConsolePopen(["sleep", "5"])
    try:
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        child.kill()
        child.wait()
