"""Test ports come from outside the ranges Ray's processes draw theirs from."""

from __future__ import annotations

import socket

from ash_ray.testing.ports import HIGH, LOW, free_port


def test_a_run_of_ports_is_free_and_outside_rays_ranges() -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    for _ in range(20):
        port = free_port(run=3)
        assert LOW <= port and port + 2 <= HIGH < ephemeral_low
        socks = [socket.socket() for _ in range(3)]
        try:
            for k, s in enumerate(socks):
                s.bind(("127.0.0.1", port + k))
        finally:
            for s in socks:
                s.close()
