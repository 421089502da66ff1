"""Try to break each sandbox layer: environment, filesystem, processes, memory, time, network.

Tests that need bubblewrap or a writable cgroup are marked ``sandbox``. Outside CI they
skip when the machine lacks the feature; under ``CI=true`` they fail instead, so that
a CI image without bubblewrap cannot pass by skipping.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ash_ray.config import load_settings
from ash_ray.errors import PathOutsideWorkspace
from ash_ray.sandbox import ProcessSandbox, available_limit_modes, create_sandbox
from ash_ray.sandbox.bwrap import find_bwrap, probe_bwrap
from ash_ray.sandbox.cgroups import SandboxCgroup, discover, owned_name, sweep_orphans
from tests.helpers import require, wait_for_async

PY = sys.executable
# The sandbox shows only system dirs of the host; the test interpreter may live in a
# home dir (pyenv) or a venv, so its installation is made visible explicitly.
PY_DIRS = sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)})


def require_bwrap() -> None:
    bwrap = find_bwrap()
    require(bwrap is not None, "bubblewrap (bwrap) is not installed")
    assert bwrap is not None
    require(probe_bwrap(bwrap) is None, "bubblewrap cannot create namespaces here")


def require_pids_limit() -> None:
    # Root is exempt from RLIMIT_NPROC: only a pids cgroup stops a root fork bomb.
    modes = available_limit_modes()
    require(
        modes[0] != "rlimit" or os.geteuid() != 0,
        "running as root without a writable pids cgroup: nothing limits process count",
    )


def require_cgroup() -> None:
    require(available_limit_modes()[0] != "rlimit", "no writable memory/pids cgroup")


def processes_with(token: str) -> list[int]:
    """Pids whose command line contains ``token`` (to prove nothing was left running)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                # Reading the cmdline of a process stuck in the kernel (state D, e.g. at
                # a memory limit left by another test) can block: skip those.
                stat = entry.joinpath("stat").read_text()
                if stat.rsplit(")", 1)[-1].split()[0] == "D":
                    continue
                if token in entry.joinpath("cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def exists(path: str) -> bool:
    return Path(path).exists()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / "sessions" / name).mkdir(parents=True)
    (data / "sessions" / "b" / "secret.txt").write_text("other session secret")
    (data / "ash.db").write_text("database")
    return data


@pytest.fixture
async def closing(data_dir: Path) -> AsyncIterator[Callable[..., ProcessSandbox]]:
    """Factory of sandboxes over session ``a`` of ``data_dir``; closes them afterwards."""
    made: list[ProcessSandbox] = []

    def _make(**overrides: Any) -> ProcessSandbox:
        network = overrides.pop("network", None)
        extra_env = overrides.pop("extra_env", None)
        fields: dict[str, Any] = {
            "data_dir": data_dir,
            "sandbox_timeout_s": 20.0,
            "sandbox_extra_ro_paths": PY_DIRS,
            **overrides,
        }
        settings = load_settings(**fields)
        workspace = data_dir / "sessions" / "a"
        sandbox = create_sandbox(settings, workspace, network=network, extra_env=extra_env)
        made.append(sandbox)
        return sandbox

    yield _make
    for sandbox in made:
        await sandbox.close()


# ---------------------------------------------------------------- environment


@pytest.mark.parametrize("isolation", ["none", "auto"])
async def test_env_has_no_secrets(
    closing: Any, monkeypatch: pytest.MonkeyPatch, isolation: str
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-parent-secret")
    monkeypatch.setenv("ASH_API_KEY", "ash-parent-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-parent-secret")
    sandbox = closing(
        sandbox_isolation=isolation,
        extra_env={"FOO": "bar", "ASH_DATABASE_URL": "postgresql://leak", "LD_PRELOAD": ""},
    )
    result = await sandbox.run("env")
    assert result.ok, result
    assert "FOO=bar" in result.stdout
    assert f"HOME={sandbox.workspace}" in result.stdout
    for secret in ("sk-ant-parent-secret", "ash-parent-secret", "aws-parent-secret", "leak"):
        assert secret not in result.stdout


@pytest.mark.sandbox
async def test_server_environ_is_invisible_under_bwrap(
    closing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_bwrap()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-parent-secret")
    sandbox = closing()
    assert sandbox.isolation == "bwrap"
    result = await sandbox.run(f"cat /proc/*/environ /proc/{os.getpid()}/environ | tr '\\0' '\\n'")
    assert "sk-ant-parent-secret" not in result.stdout


# ---------------------------------------------------------------- filesystem


@pytest.mark.sandbox
async def test_filesystem_outside_workspace_is_read_only(closing: Any, data_dir: Path) -> None:
    require_bwrap()
    sandbox = closing()
    marker = f"ash-{uuid.uuid4().hex}"
    result = await sandbox.run(f"echo x > /etc/{marker}; echo x > /usr/{marker}")
    assert result.exit_code != 0
    assert "Read-only file system" in result.stderr
    assert not exists(f"/etc/{marker}") and not exists(f"/usr/{marker}")
    # Root in the sandbox has no capabilities, so it cannot remount / read-write.
    result = await sandbox.run(f"mount -o remount,rw / ; touch /etc/{marker}")
    assert result.exit_code != 0
    assert not exists(f"/etc/{marker}")
    caps = await sandbox.run("grep CapEff /proc/self/status")
    assert caps.stdout.split()[-1].strip("0") == ""
    # The workspace itself is writable.
    assert (await sandbox.run("echo hi > mine.txt && cat mine.txt")).stdout == "hi\n"
    assert (sandbox.workspace / "mine.txt").read_text() == "hi\n"


@pytest.mark.sandbox
async def test_other_sessions_and_data_dir_are_invisible(closing: Any, data_dir: Path) -> None:
    require_bwrap()
    sandbox = closing()
    other = data_dir / "sessions" / "b"
    result = await sandbox.run(f"cat {other}/secret.txt; ls {other}; cat {data_dir}/ash.db")
    assert "other session secret" not in result.stdout
    assert "database" not in result.stdout
    assert result.exit_code != 0
    listing = await sandbox.run(f"ls -a {data_dir}/sessions")
    assert "b" not in listing.stdout.split()
    result = await sandbox.run(f"mkdir -p {other} && echo pwned > {other}/pwned.txt")
    assert not (other / "pwned.txt").exists()
    result = await sandbox.run(f"echo pwned > {data_dir}/ash.db")
    assert (data_dir / "ash.db").read_text() == "database"


@pytest.mark.sandbox
async def test_snapshot_dir_outside_data_dir_is_invisible(closing: Any, data_dir: Path) -> None:
    require_bwrap()
    snaps = data_dir.parent / "snaps"
    sandbox = closing(snapshot_url=str(snaps))
    snaps.mkdir()  # created after the sandbox: still hidden
    (snaps / "b.tar.gz").write_text("other workspace archive")
    result = await sandbox.run(f"cat {snaps}/b.tar.gz")
    assert result.exit_code != 0 and "archive" not in result.stdout


async def test_cwd_is_confined(closing: Any) -> None:
    sandbox = closing(sandbox_isolation="none")
    (sandbox.workspace / "sub").mkdir()
    assert (await sandbox.run("pwd", cwd="sub")).stdout.strip() == str(sandbox.workspace / "sub")
    with pytest.raises(PathOutsideWorkspace):
        await sandbox.run("pwd", cwd="..")


# ---------------------------------------------------------------- limits


@pytest.mark.sandbox
@pytest.mark.parametrize("isolation", ["none", "auto"])
async def test_process_count_is_limited(closing: Any, isolation: str) -> None:
    require_pids_limit()
    sandbox = closing(sandbox_isolation=isolation, sandbox_max_procs=32)
    # A bounded fork bomb: counts how many children it gets before fork is refused.
    script = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(300):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "    print('all', n)\n"
        "except OSError as exc:\n"
        "    print('refused', n, exc.errno)\n"
    )
    (sandbox.workspace / "bomb.py").write_text(script)
    result = await sandbox.run(f"{PY} bomb.py", timeout_s=30)
    assert result.stdout.startswith("refused"), result
    assert int(result.stdout.split()[1]) < 32
    # The children were killed with the command; the sandbox works afterwards.
    assert (await sandbox.run("echo alive")).stdout == "alive\n"


@pytest.mark.sandbox
async def test_real_fork_bomb_is_contained(closing: Any) -> None:
    require_pids_limit()
    require_cgroup()
    sandbox = closing(sandbox_max_procs=64)
    token = uuid.uuid4().hex[:12]
    bomb = f"bomb_{token}"
    result = await sandbox.run(f"{bomb}() {{ {bomb} | {bomb} & }}; {bomb}; sleep 2", timeout_s=5)
    assert result.exit_code is not None
    await wait_for_async(lambda: not processes_with(f"bomb_{token}"), 5, what="no bomb left")
    assert (await sandbox.run("echo alive")).stdout == "alive\n"


async def test_single_process_memory_hog_is_stopped(closing: Any) -> None:
    sandbox = closing(sandbox_isolation="none", sandbox_memory_mb=256)
    result = await sandbox.run(f"{PY} -c \"b = b'x' * (600 * 1024 * 1024); print('survived')\"")
    assert result.exit_code != 0
    assert "survived" not in result.stdout


@pytest.mark.sandbox
async def test_memory_of_the_whole_tree_is_limited(closing: Any) -> None:
    require_cgroup()
    sandbox = closing(sandbox_memory_mb=256)
    # Each child stays under RLIMIT_AS; together they exceed the cgroup limit.
    child = f"{PY} -c \"import time; b = b'x' * (100 * 1024 * 1024); time.sleep(3); print('ok')\""
    result = await sandbox.run(f"for i in 1 2 3 4; do {child} & done; wait", timeout_s=30)
    assert result.stdout.count("ok") < 4, result
    assert "out of memory" in result.stderr


@pytest.mark.parametrize("isolation", ["none", "auto"])
async def test_wall_timeout_kills_the_whole_group(closing: Any, isolation: str) -> None:
    sandbox = closing(sandbox_isolation=isolation)
    token = str(300_000 + int(uuid.uuid4().int % 90_000))
    started = time.monotonic()
    result = await sandbox.run(f"sleep {token} & sleep {token}1 & sleep 100", timeout_s=1)
    assert time.monotonic() - started < 5
    assert result.timed_out and not result.ok
    await wait_for_async(lambda: not processes_with(f"sleep {token}"), 5, what="no sleep left")


@pytest.mark.parametrize("isolation", ["none", "auto"])
async def test_background_processes_do_not_outlive_the_command(
    closing: Any, isolation: str
) -> None:
    sandbox = closing(sandbox_isolation=isolation)
    token = str(400_000 + int(uuid.uuid4().int % 90_000))
    started = time.monotonic()
    result = await sandbox.run(f"sleep {token} & echo started")
    assert result.ok and result.stdout == "started\n"
    assert time.monotonic() - started < 5
    await wait_for_async(lambda: not processes_with(f"sleep {token}"), 5, what="no sleep left")


@pytest.mark.sandbox
async def test_cgroup_lives_while_commands_run(closing: Any) -> None:
    require_cgroup()
    sandbox = closing()
    places = discover()
    parents = [p for p in (places.v2, places.v1_memory, places.v1_pids) if p is not None]
    dirs = [parent / owned_name(sandbox.sandbox_id) for parent in parents]
    slow = asyncio.create_task(sandbox.run("sleep 0.5; cat /proc/self/cgroup"))
    fast = await sandbox.run("cat /proc/self/cgroup")
    assert sandbox.sandbox_id in fast.stdout  # the command ran inside the sandbox cgroup
    assert all(d.is_dir() for d in dirs)  # shared with the still-running command
    assert sandbox.sandbox_id in (await slow).stdout
    assert not any(d.exists() for d in dirs)  # removed with the last command


def _a_gone_pid() -> int:
    """The pid of a process that has exited (a lost worker's)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _cgroup_with_a_process(name: str, token: str) -> tuple[SandboxCgroup, subprocess.Popen[bytes]]:
    """A sandbox cgroup called ``name`` with a ``sleep`` in it, as a tool's process."""
    cgroup = SandboxCgroup.create(
        discover(), available_limit_modes()[0], name, memory_bytes=256 << 20, max_procs=16
    )
    proc = subprocess.Popen(["sleep", token])
    for join in cgroup.join_files:
        Path(join).write_text(str(proc.pid))
    return cgroup, proc


@pytest.mark.sandbox
async def test_a_sandbox_left_by_a_lost_worker_is_killed_by_the_next_worker(
    tmp_path: Path,
) -> None:
    # A worker killed inside bubblewrap's set-up leaves its tool's process behind (it
    # waits forever); the next worker on the node to make a cgroup sweeps it away, and
    # leaves the sandboxes of workers that still run alone.
    require_cgroup()
    token = str(800_000 + int(uuid.uuid4().int % 90_000))
    orphan, left = _cgroup_with_a_process(f"pid{_a_gone_pid()}-{uuid.uuid4()}", token)
    live, running = _cgroup_with_a_process(owned_name(str(uuid.uuid4())), token)
    try:
        assert await sweep_orphans(discover(), available_limit_modes()[0]) >= 1
        assert left.wait(timeout=5) == -9
        assert not any(d.exists() for d in orphan.dirs)
        assert running.poll() is None and all(d.is_dir() for d in live.dirs)
    finally:
        await live.remove()
        await orphan.remove()
    assert running.wait(timeout=5) == -9


@pytest.mark.sandbox
async def test_setsid_escape_is_killed_by_the_cgroup(closing: Any) -> None:
    require_cgroup()
    sandbox = closing(sandbox_isolation="none")
    token = str(500_000 + int(uuid.uuid4().int % 90_000))
    result = await sandbox.run(f"setsid sleep {token} > /dev/null 2>&1 < /dev/null & echo ok")
    assert result.ok
    await wait_for_async(lambda: not processes_with(f"sleep {token}"), 5, what="no sleep left")


WORKER = """
import asyncio, os, sys
from pathlib import Path
from ash_ray.config import load_settings
from ash_ray.sandbox import create_sandbox
settings = load_settings(data_dir=sys.argv[1], sandbox_isolation="none", sandbox_timeout_s=600,
                         sandbox_limits="rlimit")
box = create_sandbox(settings, Path(sys.argv[1]) / "ws", network=True)
asyncio.run(box.run(os.environ["ASH_TEST_COMMAND"]))
"""


async def test_a_command_dies_with_its_worker(tmp_path: Path) -> None:
    # No bwrap (whose --die-with-parent acts only once it runs) and no cgroup: only the
    # sandbox's own set-up ties the command to the worker that a SIGKILL takes away.
    token = str(700_000 + int(uuid.uuid4().int % 90_000))
    running = f"sleep\0{token}"  # bash execs the command: its argv, NUL-separated
    worker = await asyncio.create_subprocess_exec(
        PY, "-c", WORKER, str(tmp_path),  # the command in the env: not in its cmdline
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
             "ASH_TEST_COMMAND": f"sleep {token}"},
    )
    try:
        await wait_for_async(lambda: bool(processes_with(running)), 30,
                             what="the command running")
    finally:
        worker.kill()
        await worker.wait()
    await wait_for_async(lambda: not processes_with(running), 5,
                         what="the command gone with its worker")


async def test_cancelled_run_kills_the_command(closing: Any) -> None:
    sandbox = closing()
    token = str(600_000 + int(uuid.uuid4().int % 90_000))
    task = asyncio.create_task(sandbox.run(f"sleep {token}"))
    await wait_for_async(lambda: bool(processes_with(f"sleep {token}")), 5, what="sleep running")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for_async(lambda: not processes_with(f"sleep {token}"), 5, what="no sleep left")


async def test_file_size_limit(closing: Any) -> None:
    sandbox = closing(sandbox_file_size_mb=1)
    result = await sandbox.run("head -c 3000000 /dev/zero > big.bin")
    assert result.exit_code != 0
    assert (sandbox.workspace / "big.bin").stat().st_size <= 1024 * 1024


async def test_output_is_capped(closing: Any) -> None:
    sandbox = closing()
    result = await sandbox.run("head -c 3000000 /dev/zero | tr '\\0' a; echo done >&2")
    assert result.truncated
    assert len(result.stdout) == 1024 * 1024
    assert result.stderr == "done\n"


# ---------------------------------------------------------------- network


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.mark.sandbox
async def test_host_loopback_is_unreachable_whatever_the_network_setting(
    closing: Any, listener: int
) -> None:
    require_bwrap()
    connect = f"{PY} -c \"import socket; socket.create_connection(('127.0.0.1', {listener}), 3)\""
    for egress in (True, False):
        box = closing(network=egress)
        assert box.isolation == "bwrap"
        result = await box.run(connect)
        assert result.exit_code != 0, (egress, result)
        assert "ConnectionRefusedError" in result.stderr
    assert (await closing(network=False).run("echo ok")).stdout == "ok\n"


@pytest.mark.sandbox
async def test_network_cut_without_bwrap(closing: Any, listener: int) -> None:
    connect = f"{PY} -c \"import socket; socket.create_connection(('127.0.0.1', {listener}), 3)\""
    # Without bwrap, egress on means the host's network (reported as such).
    open_box = closing(sandbox_isolation="none", network=True)
    assert open_box.network_mode == "host"
    result = await open_box.run(connect)
    assert result.ok, result
    cut_box = closing(sandbox_isolation="none", network=False)
    assert not cut_box.network and cut_box.network_mode == "loopback-only"
    result = await cut_box.run(connect)
    assert result.exit_code != 0
    assert "Error" in result.stderr


@pytest.mark.sandbox
async def test_network_setting_is_the_default(closing: Any, listener: int) -> None:
    require_bwrap()
    sandbox = closing(sandbox_network=False)
    assert not sandbox.network and sandbox.isolation == "bwrap"
    assert sandbox.network_mode == "loopback-only"
    result = await sandbox.run("ls /proc/sys/net/ipv4/conf")  # its interfaces
    assert sorted(result.stdout.split()) == ["all", "default", "lo"], result
