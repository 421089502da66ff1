"""Break-out suite: attacks on one session's sandbox, each followed by another session's work.

Most attacks drive the sandbox API directly (fast) with the running server's settings,
so the data dir, the other sessions' workspaces, Ray's session dir and ports are the
real ones; the last ones go through the server (HTTP exec, a Bash tool turn of the fake
model). After every attack a bystander (another sandbox, or another session's turn)
must still work. The tally is printed at the end of the module:
``break-out suite: N attacks tried, N contained``. Loopback and test-made namespaces
only: nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from ash_ray.config import Settings
from ash_ray.sandbox import ProcessSandbox, available_limit_modes, create_sandbox
from ash_ray.sandbox.netns import node_addresses
from tests.helpers import require
from tests.integration.conftest import API_KEY, MODEL_KEY
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray

TALLY: dict[str, bool] = {}  # attack -> contained


@contextmanager
def attack(name: str) -> Iterator[None]:
    """Count ``name`` as tried; contained only if the block's assertions all hold."""
    assert name not in TALLY, f"attack {name!r} counted twice"
    TALLY[name] = False
    yield
    TALLY[name] = True


@pytest.fixture(scope="module", autouse=True)
def _tally(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    contained = sum(TALLY.values())
    line = f"break-out suite: {len(TALLY)} attacks tried, {contained} contained"
    escaped = sorted(name for name, ok in TALLY.items() if not ok)
    if escaped:
        line += f"; NOT contained: {', '.join(escaped)}"
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\n{line}")
    else:
        print(line)


@pytest.fixture
async def boxes(server: str, settings: Settings) -> AsyncIterator[Callable[..., ProcessSandbox]]:
    """Sandboxes over fresh workspaces of the server's data dir, with its settings.

    The shared test server shows the test interpreter's install to its sandboxes (for
    MCP servers written in Python); these attacks run on the default view, without it.
    """
    made: list[ProcessSandbox] = []

    def make(**fields: Any) -> ProcessSandbox:
        network = fields.pop("network", None)
        defaults = {"sandbox_timeout_s": 20.0, "sandbox_extra_ro_paths": []}
        tuned = settings.model_copy(update={**defaults, **fields})
        ws = settings.workspaces_dir / f"breakout-{uuid.uuid4().hex[:8]}"
        box = create_sandbox(tuned, ws, network=network)
        made.append(box)
        return box

    yield make
    for box in made:
        await box.close()


@pytest.fixture
async def bystander(boxes: Callable[..., ProcessSandbox]) -> AsyncIterator[Callable[[], Any]]:
    """Another session's sandbox: ``await check()`` proves it still works."""
    other = boxes()
    (other.workspace / "mark").write_text("mine\n")
    assert other.isolation == "bwrap", "the break-out suite needs bubblewrap"

    async def check() -> None:
        started = time.monotonic()
        result = await other.run("echo alive && cat mark && echo x > w && cat w")
        assert result.ok and result.stdout == "alive\nmine\nx\n", result
        assert time.monotonic() - started < 10

    yield check


def processes_with(token: str, *, leading: bool = False) -> list[int]:
    """Pids whose command line contains ``token`` (starts with it, if ``leading``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                stat = entry.joinpath("stat").read_text()
                if stat.rsplit(")", 1)[-1].split()[0] == "D":
                    continue
                cmdline = entry.joinpath("cmdline").read_bytes().decode(errors="replace")
                if cmdline.startswith(token) if leading else token in cmdline:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def eventually(check: Callable[[], bool], deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.05)


def reachable_from_host(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def connect(host: str, port: int) -> str:
    return f"timeout 3 bash -c 'exec 3<>/dev/tcp/{host}/{port}' && echo REACHED-{port}"


# ---------------------------------------------------------------- secrets and files


async def test_env_secrets(
    boxes: Any, bystander: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "ANTHROPIC_API_KEY": "sk-ant-breakout-secret",
        "ASH_API_KEY": "ash-breakout-secret",
        "DATABASE_URL": "postgresql://breakout:secret@db/ash",
        "AWS_SECRET_ACCESS_KEY": "aws-breakout-secret",
        "RAY_AUTH_TOKEN": "ray-breakout-token",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    with attack("env secrets"):
        box = boxes()
        result = await box.run("env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'")
        assert result.ok
        for value in secrets.values():
            assert value not in result.stdout
    await bystander()


async def test_host_home_and_ray_token(boxes: Any, bystander: Any) -> None:
    canary = Path.home() / f".ash-breakout-{uuid.uuid4().hex[:8]}"
    canary.write_text("home-canary-secret\n")
    token = Path.home() / ".ray" / "auth_token"
    try:
        with attack("host home dirs and Ray's token"):
            box = boxes()
            result = await box.run(
                f"cat {canary} $HOME/../../root/.ray/auth_token {token} ~root/.ray/auth_token; "
                "ls -a /root /home"
            )
            assert "home-canary-secret" not in result.stdout
            assert not (await box.run("test -e /root || test -e /home")).ok
            if token.is_file():
                assert token.read_text().strip() not in result.stdout
    finally:
        canary.unlink()
    await bystander()


async def test_ray_session_dir(boxes: Any, bystander: Any, ray_cluster: None) -> None:
    node = ray._private.worker._global_node
    session_dir = Path(node.get_session_dir_path())
    assert (session_dir / "logs").is_dir()
    with attack("Ray's session dir"):
        box = boxes()
        result = await box.run(
            f"ls -R {session_dir} /tmp/ray; cat {session_dir}/logs/*; ls /tmp/ray/session_latest"
        )
        assert result.exit_code != 0
        assert "raylet" not in result.stdout and "gcs_server" not in result.stdout
        assert "sockets" not in result.stdout
    await bystander()


async def test_data_dir_and_other_workspaces(
    boxes: Any, bystander: Any, http: httpx.Client, agent: str, settings: Settings
) -> None:
    other = await asyncio.to_thread(new_session, http, agent)
    exec_url = f"/api/sessions/{other}/exec"
    r = await asyncio.to_thread(http.post, exec_url, json={"command": "echo ws-secret > s.txt"})
    assert r.status_code == 200 and r.json()["exitCode"] == 0, r.text
    other_ws = settings.workspaces_dir / other
    assert (other_ws / "s.txt").read_text() == "ws-secret\n"
    with attack("data dir and other workspaces"):
        box = boxes()
        result = await box.run(
            f"cat {other_ws}/s.txt; ls -a {settings.workspaces_dir}; ls -aR {settings.data_dir}; "
            f"cat {settings.data_dir}/*.db*; echo pwned > {other_ws}/s.txt; "
            f"mkdir -p {other_ws}/x"
        )
        assert "ws-secret" not in result.stdout and other not in result.stdout
        assert "SQLite" not in result.stdout
        assert (other_ws / "s.txt").read_text() == "ws-secret\n"
        assert not (other_ws / "x").exists()
    await bystander()
    r = await asyncio.to_thread(http.post, exec_url, json={"command": "cat s.txt"})
    assert r.json()["stdout"] == "ws-secret\n"


async def test_server_proc(boxes: Any, bystander: Any) -> None:
    with attack("/proc of the server"):
        box = boxes()
        pids = await box.run("ls /proc | grep -c '^[0-9]'")
        assert int(pids.stdout) < 10, pids  # its own pid namespace
        result = await box.run(
            f"cat /proc/{os.getpid()}/cmdline /proc/{os.getpid()}/environ; "
            "cat /proc/*/cmdline | tr '\\0' ' '; ls /proc/1/root/root"
        )
        # /proc/1 is the sandbox's own bwrap; nothing of the server's processes shows.
        assert "test_breakout.py" not in result.stdout and MODEL_KEY not in result.stdout
        assert "raylet" not in result.stdout and "ray::" not in result.stdout
    await bystander()


# ---------------------------------------------------------------- resources


async def test_fork_bomb(boxes: Any, bystander: Any) -> None:
    modes = available_limit_modes()
    require(modes[0] != "rlimit" or os.geteuid() != 0, "root without a pids cgroup")
    token = uuid.uuid4().hex[:10]
    with attack("fork bomb"):
        box = boxes(sandbox_max_procs=64)
        started = time.monotonic()
        result = await box.run(f"b_{token}() {{ b_{token} | b_{token} & }}; b_{token}", timeout_s=5)
        assert result.exit_code is not None and time.monotonic() - started < 15
        await eventually(lambda: not processes_with(f"b_{token}"))
    await bystander()


async def test_memory_bomb(boxes: Any, bystander: Any) -> None:
    with attack("memory bomb"):
        box = boxes(sandbox_memory_mb=256)
        hog = await box.run("python3 -c \"b = bytearray(1536 * 1024 * 1024); print('survived')\"")
        assert "MemoryError" in hog.stderr and "survived" not in hog.stdout, hog
        if box.limit_mode != "rlimit":
            # Each under RLIMIT_AS, together over the cgroup's limit: the tree is capped.
            many = await box.run(
                "for i in 1 2 3 4 5 6; do head -c 200m /dev/zero | tail > /dev/null & done; "
                "wait; echo finished", timeout_s=30
            )
            assert not many.timed_out and "out of memory" in many.stderr, many
    await bystander()


async def test_disk_fill(boxes: Any, bystander: Any) -> None:
    with attack("disk fill"):
        box = boxes(sandbox_file_size_mb=8, sandbox_memory_mb=128)
        result = await box.run("head -c 64m /dev/zero > big.bin", timeout_s=30)
        assert result.exit_code != 0
        assert (box.workspace / "big.bin").stat().st_size <= 8 * 1024 * 1024
        # /tmp is the sandbox's own tmpfs: memory, capped by its size and the cgroup.
        tmp = await box.run(
            "for i in $(seq 40); do head -c 7m /dev/zero > /tmp/f$i || exit 3; done", timeout_s=30
        )
        assert not tmp.ok and not tmp.timed_out, tmp
        assert "No space left" in tmp.stderr or "out of memory" in tmp.stderr, tmp
        assert not (await box.run("test -e /tmp/f1")).ok  # gone with the command
        assert not (await box.run("head -c 1m /dev/zero > /fill")).ok  # / is read-only
    await bystander()


async def test_cpu_burn(boxes: Any, bystander: Any) -> None:
    with attack("CPU burn"):
        box = boxes()
        token = uuid.uuid4().hex[:10]
        burn = asyncio.create_task(
            box.run(f"for i in 1 2 3 4; do (exec -a burn_{token} bash -c 'while :; do :; done') & "
                    "done; wait", timeout_s=4)
        )
        await eventually(lambda: len(processes_with(f"burn_{token}", leading=True)) >= 4)
        await bystander()  # while it burns
        result = await burn
        assert result.timed_out
        await eventually(lambda: not processes_with(f"burn_{token}"))
    await bystander()


async def test_background_processes_left_behind(boxes: Any, bystander: Any) -> None:
    token = str(700_000 + int(uuid.uuid4().int % 90_000))
    with attack("background processes left behind"):
        box = boxes()
        result = await box.run(
            f"nohup sleep {token} >/dev/null 2>&1 & setsid sleep {token}1 >/dev/null 2>&1 & "
            f"(sleep {token}2 &) ; disown -a; echo started"
        )
        assert result.ok and result.stdout == "started\n"
        await eventually(lambda: not processes_with(f"sleep {token}"))
    await bystander()


async def test_timeout(boxes: Any, bystander: Any) -> None:
    with attack("timeout"):
        box = boxes()
        started = time.monotonic()
        result = await box.run("trap '' TERM INT; sleep 300", timeout_s=1)
        assert result.timed_out and time.monotonic() - started < 6
    await bystander()


# ---------------------------------------------------------------- network


@pytest.fixture
async def host_listener() -> AsyncIterator[int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "0.0.0.0", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_egress_to_a_host_port(boxes: Any, bystander: Any, host_listener: int) -> None:
    targets = ["127.0.0.1", "10.0.2.2", *node_addresses()]
    assert all(reachable_from_host(h, host_listener) for h in targets if h != "10.0.2.2")
    with attack("egress to a host port"):
        for egress in (True, False):
            box = boxes(network=egress)
            for host in targets:
                result = await box.run(connect(host, host_listener))
                assert "REACHED" not in result.stdout, (egress, host, result)
    await bystander()


async def test_egress_to_ray_and_server_ports(
    boxes: Any, bystander: Any, ray_cluster: None, settings: Settings, fake_model: Any
) -> None:
    node = ray._private.worker._global_node
    gcs_host, gcs_port = node.gcs_address.rsplit(":", 1)
    ports = {
        "GCS": (gcs_host, int(gcs_port)),
        "raylet": (node.node_ip_address, node.node_manager_port),
        "ash-ray HTTP": ("127.0.0.1", settings.port),
        "model endpoint": ("127.0.0.1", int(fake_model.url.rsplit(":", 1)[1].split("/")[0])),
        "dashboard": ("127.0.0.1", 8265),
    }
    live = {name: hp for name, hp in ports.items() if reachable_from_host(*hp)}
    assert {"GCS", "ash-ray HTTP", "model endpoint"} <= set(live), live
    with attack("egress to Ray's and the server's ports"):
        box = boxes(network=True)
        for name, (host, port) in live.items():
            for target in {host, "127.0.0.1", "10.0.2.2", *node_addresses()}:
                result = await box.run(connect(target, port))
                assert "REACHED" not in result.stdout, (name, target, result)
    await bystander()


# ---------------------------------------------------------------- through the server


def bash_turn(http: httpx.Client, sid: str, command: str) -> tuple[str, bool]:
    frames = send(http, sid, f"TOOL Bash {json.dumps({'command': command})}")
    result = next(f[2] for f in frames if f[1] == "tool_result")
    assert frames[-1][1] == "done"
    return json.dumps(result["content"]), bool(result["is_error"])


def another_session_turn_works(http: httpx.Client, agent: str) -> None:
    sid = new_session(http, agent)
    out, is_error = bash_turn(http, sid, "echo still-serving")
    assert "still-serving" in out and not is_error
    r = http.post(f"/api/sessions/{sid}/exec", json={"command": "echo exec-ok"})
    assert r.status_code == 200 and r.json()["stdout"] == "exec-ok\n"


def test_exec_over_http_cannot_reach_secrets_or_ports(
    http: httpx.Client, agent: str, settings: Settings
) -> None:
    sid = new_session(http, agent)
    command = (
        "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; "
        f"cat {Path.home()}/.ray/auth_token /root/.ray/auth_token; ls /tmp/ray; "
        f"{connect('127.0.0.1', settings.port)}; {connect('10.0.2.2', settings.port)}"
    )
    with attack("HTTP exec: secrets, token, server port"):
        r = http.post(f"/api/sessions/{sid}/exec", json={"command": command, "timeout": 20000})
        assert r.status_code == 200, r.text
        body = r.json()
        text = body["stdout"] + body["stderr"]
        assert MODEL_KEY not in text and API_KEY not in text
        assert "REACHED" not in text and "session_latest" not in text
    another_session_turn_works(http, agent)


def test_a_tool_process_holds_no_descriptor_of_its_worker(
    http: httpx.Client, agent: str
) -> None:
    """Inside a Ray worker, a child inherited the worker's descriptors (close_fds did not
    hold): the core worker's and the raylet's log files, writable, and Ray's pipes. Only
    the command's own stdin, stdout and stderr may reach it."""
    sid = new_session(http, agent)
    command = 'for f in /proc/self/fd/*; do echo "$f -> $(readlink "$f")"; done'
    with attack("descriptors inherited from the worker (Ray's log files)"):
        r = http.post(f"/api/sessions/{sid}/exec", json={"command": command, "timeout": 20000})
        assert r.status_code == 200, r.text
        lines = [line for line in r.json()["stdout"].splitlines() if " -> " in line]
        fds = {line.split(" -> ")[0].rsplit("/", 1)[-1] for line in lines}
        targets = [line.split(" -> ")[1] for line in lines]
        assert fds <= {"0", "1", "2", "3"}, lines  # 3: the glob's own directory
        assert not [t for t in targets if t.startswith("/tmp") or "ray" in t], lines
    another_session_turn_works(http, agent)


def test_bash_tool_bombs_then_another_session_turn(http: httpx.Client, agent: str) -> None:
    require(
        available_limit_modes()[0] != "rlimit" or os.geteuid() != 0, "root without a pids cgroup"
    )
    sid = new_session(http, agent)
    with attack("Bash tool: fork bomb and memory bomb"):
        started = time.monotonic()
        r = http.post(
            f"/api/sessions/{sid}/exec",
            json={"command": "f() { f | f & }; f", "timeout": 3000},
        )
        assert r.status_code == 200, r.text
        out, _ = bash_turn(
            http, sid, "python3 -c \"b = bytearray(8 * 1024 ** 3); print('survived')\""
        )
        assert "MemoryError" in out and "survived" not in out, out
        assert time.monotonic() - started < 60
        # The attacked session itself is still usable.
        out, is_error = bash_turn(http, sid, "echo recovered")
        assert "recovered" in out and not is_error
    another_session_turn_works(http, agent)
