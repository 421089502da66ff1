"""The network of a sandbox: its own namespace, with or without egress.

Under bubblewrap every command runs in a fresh network namespace (``--unshare-net``),
so the node's loopback (Ray's GCS and dashboard, Postgres, ash-ray itself), its
abstract unix sockets and its interfaces are simply not there. Then:

* ``loopback-only``: nothing more; the namespace has its own ``lo`` and no route out.
* ``isolated-egress``: slirp4netns (user-mode TCP/IP, what rootless Podman uses) gives
  the namespace a ``tap0`` with a default route. Its connections leave from the
  server's namespace as ordinary sockets, so two holes are closed before the command
  starts: ``--disable-host-loopback`` refuses the gateway address that maps to the
  node's 127.0.0.1, and a ``prohibit`` route in the sandbox's namespace refuses each
  of the node's own addresses (Ray binds the node IP) plus ``sandbox_egress_deny``
  (link-local by default: cloud metadata services hand out credentials). The command
  has no capabilities, so it cannot remove those routes. IPv6 is not offered.
* ``host``: only without bubblewrap (``sandbox_isolation=none`` or no usable bwrap),
  where a command shares the server's network. Reported, never chosen silently.

The handshake: bwrap is started with ``--info-fd`` (it writes the sandbox's pid), and
the command is wrapped in a few lines of shell that say "ready" on one pipe and wait
for "go" on another before they exec it. "Ready" means bwrap has finished its own
setup (its loopback configuration races with slirp4netns' otherwise, and bwrap's
``--block-fd`` is read too late to help). Then slirp4netns attaches to that pid and
signals ``--ready-fd``, the routes go in with ``nsenter ... ip``, and "go" releases
the command. ``--exit-fd`` stops slirp4netns when the server closes its end, also
when the server dies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import ipaddress
import itertools
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ash_ray.errors import SandboxError

logger = logging.getLogger(__name__)

NetworkMode = Literal["isolated-egress", "loopback-only", "host"]
SLIRP_DNS = "10.0.2.3"
RESOLV_CONF = f"nameserver {SLIRP_DNS}\noptions timeout:2 attempts:2\n"
ATTACH_TIMEOUT_S = 10.0
_MTU = "65520"


@dataclass(frozen=True)
class EgressTools:
    """Binaries the egress handshake runs (all found on PATH)."""

    slirp: str
    nsenter: str
    ip: str


def find_egress_tools() -> EgressTools | None:
    """slirp4netns, nsenter and ip, or None when one is missing."""
    paths = [shutil.which(name) for name in ("slirp4netns", "nsenter", "ip")]
    if any(p is None for p in paths):
        return None
    slirp, nsenter, ip = (str(p) for p in paths)
    return EgressTools(slirp=slirp, nsenter=nsenter, ip=ip)


def node_addresses(fib_trie: Path = Path("/proc/net/fib_trie")) -> list[str]:
    """The node's own IPv4 addresses (the kernel's LOCAL routes), loopback excluded."""
    try:
        lines = fib_trie.read_text().splitlines()
    except OSError:
        return []
    found: set[str] = set()
    for prev, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line and "|--" in prev:
            addr = prev.split("|--", 1)[1].strip()
            if not addr.startswith("127."):
                found.add(addr)
    return sorted(found)


def deny_routes(extra: Sequence[str]) -> list[str]:
    """``ip -batch`` lines that make the node's addresses and ``extra`` unreachable."""
    nets = {ipaddress.ip_network(a) for a in node_addresses()}
    nets |= {ipaddress.ip_network(c, strict=False) for c in extra}
    return [f"route add prohibit {n}" for n in sorted(nets, key=str) if n.version == 4]


@functools.cache
def resolv_conf_path() -> Path:
    """A resolv.conf naming slirp4netns' DNS forwarder, bound over /etc/resolv.conf.

    The host's may name a loopback resolver (127.0.0.53, 127.0.0.11) that does not
    exist in the sandbox's namespace.
    """
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"ash-sandbox-{os.geteuid()}"
    base.mkdir(mode=0o755, exist_ok=True)
    path = base / "resolv.conf"
    if not path.is_file() or path.read_text() != RESOLV_CONF:
        tmp = base / f".resolv.{os.getpid()}"
        tmp.write_text(RESOLV_CONF)
        tmp.chmod(0o644)
        tmp.replace(path)
    return path


def _nsenter_argv(tools: EgressTools, pid: int) -> list[str]:
    argv = [tools.nsenter, f"--target={pid}", "--net"]
    if os.geteuid() != 0:
        # bwrap made a user namespace too; its owner has CAP_NET_ADMIN inside it.
        argv += ["--user", "--preserve-credentials"]
    return [*argv, tools.ip, "-batch", "-"]


def _slirp_argv(tools: EgressTools, pid: int, ready_w: int, exit_r: int) -> list[str]:
    argv = [tools.slirp, "--configure", f"--mtu={_MTU}", "--disable-host-loopback"]
    argv += ["--enable-seccomp", f"--ready-fd={ready_w}", f"--exit-fd={exit_r}"]
    if os.geteuid() != 0:
        argv.append(f"--userns-path=/proc/{pid}/ns/user")
    return [*argv, str(pid), "tap0"]


async def _read_pipe(fd: int, stop: bytes) -> bytes:
    """Read pipe ``fd`` until EOF or until ``stop`` appears, then close it.

    Event-loop native (no thread), so a cancelled or timed-out read leaves nothing
    blocked on an fd that is then closed and reused.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    try:
        data = b""
        while stop not in data:
            chunk = await reader.read(4096)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        transport.close()


@dataclass
class EgressHandshake:
    """The pipes between one starting bwrap and its slirp4netns (see module doc)."""

    tools: EgressTools
    deny: list[str]
    info_r: int = -1
    info_w: int = -1
    ready_r: int = -1
    ready_w: int = -1
    go_r: int = -1
    go_w: int = -1
    _exit_w: int = -1
    _slirp: asyncio.subprocess.Process | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.info_r, self.info_w = os.pipe()
        self.ready_r, self.ready_w = os.pipe()
        self.go_r, self.go_w = os.pipe()

    def bwrap_flags(self) -> list[str]:
        return ["--info-fd", str(self.info_w)]

    def wrap(self, bash: str, command: str) -> list[str]:
        """``bash -c command`` behind the ready/go handshake (the fds are closed first)."""
        ready, go = self.ready_w, self.go_r
        script = (
            f"printf 1 >&{ready}; exec {ready}>&-; "
            f"read -rn1 _ <&{go} || exit 125; exec {go}<&-; "
            'exec "$0" -c "$1"'
        )
        return [bash, "-c", script, bash, command]

    def child_fds(self) -> tuple[int, ...]:
        return (self.info_w, self.ready_w, self.go_r)

    def spawned(self) -> None:
        """Close the child's ends in the server once bwrap has them."""
        self._close("info_w", "ready_w", "go_r")

    async def attach(self) -> None:
        """Wire the started bwrap's namespace to slirp4netns, then release the command.

        Raises SandboxError (the caller kills bwrap): the command never runs with a
        half-configured network. Returns without egress when bwrap failed before the
        command started: its error is then the command's stderr.
        """
        raw = await self._read("info_r", b"}")
        try:
            pid = int(json.loads(raw)["child-pid"])
        except (ValueError, KeyError, TypeError) as exc:
            if not raw:
                return
            raise SandboxError(f"bwrap did not report its pid: {raw!r}") from exc
        if await self._read("ready_r", b"1") != b"1":
            return
        async with asyncio.timeout(ATTACH_TIMEOUT_S):
            await self._start_slirp(pid)
        async with asyncio.timeout(ATTACH_TIMEOUT_S):
            await self._add_routes(pid)
        os.write(self.go_w, b"1")
        self._close("go_w")

    async def _read(self, name: str, stop: bytes) -> bytes:
        fd = getattr(self, name)
        setattr(self, name, -1)
        async with asyncio.timeout(ATTACH_TIMEOUT_S):
            return await _read_pipe(fd, stop)

    async def _start_slirp(self, pid: int) -> None:
        ready_r, ready_w = os.pipe()
        exit_r, self._exit_w = os.pipe()
        try:
            self._slirp = await asyncio.create_subprocess_exec(
                *_slirp_argv(self.tools, pid, ready_w, exit_r),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(ready_w, exit_r),
            )
        finally:
            os.close(ready_w)
            os.close(exit_r)
        if await _read_pipe(ready_r, b"1") != b"1":
            err = b""
            if self._slirp.stderr is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        err = await self._slirp.stderr.read(4096)
            raise SandboxError(f"slirp4netns failed: {err.decode(errors='replace').strip()}")

    async def _add_routes(self, pid: int) -> None:
        if not self.deny:
            return
        proc = await asyncio.create_subprocess_exec(
            *_nsenter_argv(self.tools, pid),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate("\n".join(self.deny).encode() + b"\n")
        if proc.returncode != 0:
            raise SandboxError(f"could not fence the sandbox network: {err.decode().strip()}")

    async def close(self) -> None:
        """Stop slirp4netns and close every pipe end still open. Idempotent."""
        self._close("info_r", "info_w", "ready_r", "ready_w", "go_r", "go_w", "_exit_w")
        slirp, self._slirp = self._slirp, None
        if slirp is not None and slirp.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                slirp.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await slirp.wait()

    def _close(self, *names: str) -> None:
        for name in names:
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                with contextlib.suppress(OSError):
                    os.close(fd)


@functools.lru_cache(maxsize=4)
def probe_egress(bwrap: str, base_argv: tuple[str, ...]) -> str | None:
    """None when the whole egress handshake works here (run once, with ``true``)."""
    tools = find_egress_tools()
    if tools is None:
        return "slirp4netns, nsenter or ip (iproute2) is not installed"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing"
    # Its own thread and loop: callers may be inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _probe(tools, [bwrap, *base_argv])).result()


async def _probe(tools: EgressTools, base: list[str]) -> str | None:
    shake = EgressHandshake(tools, deny=deny_routes(()))
    true = shutil.which("true") or "/bin/true"
    bash = shutil.which("bash") or "/bin/bash"
    argv = [*base, *shake.bwrap_flags(), "--", *shake.wrap(bash, true)]
    proc = await asyncio.create_subprocess_exec(
        *argv, pass_fds=shake.child_fds(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    shake.spawned()
    try:
        await shake.attach()
        async with asyncio.timeout(ATTACH_TIMEOUT_S):
            _, err = await proc.communicate()
        if proc.returncode != 0:
            return err.decode(errors="replace").strip() or f"exit {proc.returncode}"
        return None
    except (SandboxError, OSError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await shake.close()
