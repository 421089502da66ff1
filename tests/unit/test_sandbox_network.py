"""What a sandboxed command can reach: an outside host yes (egress on), the node never.

"Outside" is a network namespace this test creates, joined to the node by a veth pair
on a /30 of 198.18.0.0/15 (the benchmarking range): no packet leaves the machine.
Connections are made with bash's ``/dev/tcp`` so that nothing but bash runs inside.
Needs root (``ip netns``), bubblewrap and slirp4netns; skips without them, except
under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ash_ray.config import load_settings
from ash_ray.sandbox import create_sandbox, describe_isolation, netns
from ash_ray.sandbox.bwrap import find_bwrap, probe_bwrap
from ash_ray.sandbox.netns import find_egress_tools, node_addresses
from tests.helpers import require

OUTSIDE_PORT = 8080
pytestmark = pytest.mark.sandbox

SERVE = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"outside-ok\\n")
    c.close()
"""


def require_egress() -> None:
    bwrap = find_bwrap()
    require(bwrap is not None and probe_bwrap(bwrap) is None, "bubblewrap unusable")
    require(find_egress_tools() is not None, "slirp4netns / nsenter / ip missing")


@dataclass(frozen=True)
class Outside:
    """A host in its own namespace: ``addr`` answers ``outside-ok`` on OUTSIDE_PORT."""

    addr: str
    node_side: str  # the node's own address on the veth (must be refused)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def outside() -> Iterator[Outside]:
    require(os.geteuid() == 0 and shutil.which("ip") is not None, "needs root and iproute2")
    tag = secrets.token_hex(3)
    ns, host_if, peer_if = f"ash-out-{tag}", f"ao{tag}", f"ap{tag}"
    third, fourth = secrets.randbelow(256), secrets.randbelow(64) * 4
    base = f"198.18.{third}."
    node_side, addr = f"{base}{fourth + 1}", f"{base}{fourth + 2}"
    _ip("netns", "add", ns)
    server: subprocess.Popen[str] | None = None
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", ns)
        _ip("addr", "add", f"{node_side}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", peer_if)
        _ip("-n", ns, "link", "set", peer_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SERVE, str(OUTSIDE_PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield Outside(addr=addr, node_side=node_side)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
async def node_listener() -> AsyncIterator[int]:
    """A port the node listens on at every address (as Ray's GCS does on the node IP)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"node-secret\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "0.0.0.0", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Any] = []

    def _make(network: bool = True, **fields: Any) -> Any:
        settings = load_settings(data_dir=tmp_path / "data", sandbox_timeout_s=20.0, **fields)
        box = create_sandbox(settings, tmp_path / "data" / "sessions" / "a", network=network)
        made.append(box)
        return box

    yield _make
    for box in made:
        await box.close()


def fetch(host: str, port: int) -> str:
    """A command printing what ``host:port`` says, or failing within 3 s."""
    return f"timeout 3 bash -c 'exec 3<>/dev/tcp/{host}/{port} && head -n1 <&3'"


async def test_egress_reaches_an_outside_host(make: Any, outside: Outside) -> None:
    require_egress()
    box = make(network=True)
    assert box.network_mode == "isolated-egress"
    result = await box.run(fetch(outside.addr, OUTSIDE_PORT))
    assert result.ok and result.stdout == "outside-ok\n", result
    # DNS goes to slirp4netns' forwarder: the host's resolver may be on its loopback.
    assert (await box.run("cat /etc/resolv.conf")).stdout.startswith("nameserver 10.0.2.3")


async def test_egress_off_reaches_nothing_but_loopback(make: Any, outside: Outside) -> None:
    require_egress()
    box = make(network=False)
    assert box.network_mode == "loopback-only"
    result = await box.run(fetch(outside.addr, OUTSIDE_PORT))
    assert result.exit_code != 0 and "outside-ok" not in result.stdout
    # Its own loopback works (a tool may run a local server for its tests).
    own = await box.run(
        "python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 & "
        "for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null && break; "
        "sleep 0.1; done; timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/8000' && echo own-ok"
    )
    if shutil.which("python3", path="/usr/bin:/bin"):
        assert "own-ok" in own.stdout, own


async def test_node_ports_are_refused_with_egress_on(
    make: Any, outside: Outside, node_listener: int
) -> None:
    require_egress()
    box = make(network=True)
    targets = [
        "127.0.0.1",  # the sandbox's own loopback, not the node's
        "10.0.2.2",  # slirp4netns' gateway = the node's loopback, disabled
        outside.node_side,  # the node's address on the veth
        *node_addresses(),  # every other address of the node
    ]
    for host in targets:
        result = await box.run(fetch(host, node_listener))
        assert result.exit_code != 0, (host, result)
        assert "node-secret" not in result.stdout, host
    # The fence is in place and the command cannot take it down.
    routes = await box.run("ip route")
    assert f"prohibit {outside.node_side}" in routes.stdout
    removed = await box.run(f"ip route del prohibit {outside.node_side}")
    assert removed.exit_code != 0
    assert (await box.run(fetch(outside.addr, OUTSIDE_PORT))).stdout == "outside-ok\n"


async def test_egress_deny_setting_cuts_a_network(make: Any, outside: Outside) -> None:
    require_egress()
    box = make(network=True, sandbox_egress_deny=[f"{outside.addr}/32"])
    result = await box.run(fetch(outside.addr, OUTSIDE_PORT))
    assert result.exit_code != 0 and "outside-ok" not in result.stdout


def my_slirps() -> list[int]:
    """slirp4netns processes started by this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1]
        if comm == "slirp4netns" and int(rest.split()[1]) == os.getpid():
            found.append(int(entry.name))
    return found


async def test_slirp_stops_with_the_command(make: Any) -> None:
    require_egress()
    box = make(network=True)
    running = asyncio.create_task(box.run("sleep 2"))
    for _ in range(200):
        if my_slirps():
            break
        await asyncio.sleep(0.01)
    assert my_slirps(), "no slirp4netns while the command runs"
    await asyncio.gather(running, *(box.run("true") for _ in range(3)))
    assert my_slirps() == []


async def test_a_cancel_landing_as_a_handshake_step_ends_stops_the_command(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn interrupted while the sandbox wires its network must not run the command.

    The cancellation is made to land in the very loop pass where a handshake read ends:
    Python 3.11's ``asyncio.wait_for`` returned the read's result and dropped such a
    cancellation, so the command ran on to its timeout (a flaky CI failure).
    """
    require_egress()
    box = make(network=True)
    marker = box.workspace / "ran"
    run: asyncio.Task[Any] | None = None
    real_read = netns._read_pipe

    async def read_then_cancel(fd: int, stop: bytes) -> bytes:
        data = await real_read(fd, stop)
        if run is not None and not run.cancelling():
            asyncio.get_running_loop().call_soon(run.cancel)
        return data

    monkeypatch.setattr(netns, "_read_pipe", read_then_cancel)
    run = asyncio.create_task(box.run("touch ran; sleep 30"))
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(15):  # the lost cancellation ran the command for 20 s
            await run
    assert not marker.exists()  # the command was never released
    assert my_slirps() == []


def test_describe_isolation_reports_what_is_in_force(tmp_path: Path) -> None:
    require_egress()
    info = describe_isolation(load_settings(data_dir=tmp_path))
    assert info["filesystem"] == "bwrap" and info["network"] == "isolated-egress"
    assert info["egress"] is True and info["degraded"] == []
    assert info["limits"] in ("cgroup2", "cgroup1", "rlimit")
    off = describe_isolation(load_settings(data_dir=tmp_path, sandbox_network=False))
    assert off["network"] == "loopback-only" and off["egress"] is False
    bare = describe_isolation(load_settings(data_dir=tmp_path, sandbox_isolation="none"))
    assert bare["filesystem"] == "none" and bare["network"] == "host"
