"""Run `ash-ray start` as a separate process (its own Ray cluster) for restart tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from ash_ray.testing.ports import free_port
from tests.helpers import wait_for


class AshProcess:
    def __init__(self, data_dir: Path, port: int, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            **env,
            "ASH_DATA_DIR": str(data_dir),
            "ASH_PORT": str(port),
            "ASH_PROXY_PORT": str(free_port()),
            "ASH_DASHBOARD": "false",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"server-{port}.log"

    def start(self, timeout_s: float = 180) -> AshProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ash_ray", "start"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log.read_text()[-4000:]}")
            try:
                return httpx.get(self.url + "/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(healthy, timeout_s, interval_s=0.5, what=f"{self.url}/health")
        except AssertionError as exc:
            self.kill()
            raise AssertionError(f"{exc}\nserver log:\n{self.log.read_text()[-4000:]}") from None
        return self

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM, as Kubernetes sends it; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server and every process of its Ray cluster."""
        if self.proc is None:
            return
        # Ray's own daemons start their own sessions: collect the whole tree first, as a
        # container runtime would kill every process of the pod.
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(tree, timeout=30)
        self.proc.wait(30)
        self.proc = None
