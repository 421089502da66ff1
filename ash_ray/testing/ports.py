"""Free TCP ports on 127.0.0.1 for tests and benchmarks, outside the ranges Ray draws from.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range (32768-60999 on
Linux), the same range Ray's own processes take their ports from when a cluster starts; and
Ray's workers take 10002-19999. A port picked there and used seconds later can be gone. These
come from 20000-32767 instead, each checked free when picked.
"""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20000, 32767


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(run: int = 1) -> int:
    """A port p free on 127.0.0.1 right now, with p+1 .. p+run-1 free too."""
    for _ in range(500):
        port = random.randint(LOW, HIGH - run + 1)
        if all(_is_free(port + k) for k in range(run)):
            return port
    raise RuntimeError(f"no {run} consecutive free ports in {LOW}-{HIGH} on 127.0.0.1")
