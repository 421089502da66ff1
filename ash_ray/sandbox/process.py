"""ProcessSandbox: run tool commands as confined child processes of the server.

Every :meth:`ProcessSandbox.run` is one ``bash -c`` process tree, started in its own
session (so its process group can be killed as one) and, when available, inside
bubblewrap and a per-sandbox cgroup. When the command's shell exits, whatever it left
running in the background is killed too: a command never outlives its call, so the
next one starts from a clean slate and nothing escapes the wall-clock limit.

What each layer stops is documented in :mod:`ash_ray.sandbox.env`,
:mod:`ash_ray.sandbox.limits`, :mod:`ash_ray.sandbox.cgroups` and
:mod:`ash_ray.sandbox.bwrap`. With ``isolation == "none"`` the tools still refuse paths
outside the workspace (:meth:`resolve`), but a Bash command can read anything the
server user can, including ``/proc/<server pid>/environ``: use it for trusted agents
or development only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from ash_ray.config import Settings
from ash_ray.errors import SandboxError
from ash_ray.sandbox.base import ExecResult, resolve_in_workspace
from ash_ray.sandbox.bwrap import (
    LAUNCH_ENV,
    bwrap_argv,
    find_bwrap,
    probe_bwrap,
    unshare_net_prefix,
)
from ash_ray.sandbox.cgroups import SandboxCgroup, discover
from ash_ray.sandbox.env import sandbox_env
from ash_ray.sandbox.limits import build_rlimits, child_setup, detect_limit_mode

logger = logging.getLogger(__name__)

OUTPUT_CAP_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024
_DRAIN_GRACE_S = 1.0
# Longest stdout line a spawned process may write (an MCP message with an image).
_SPAWN_LINE_LIMIT = 64 * 1024 * 1024


class _Capture:
    """Collects one output stream up to a cap, then keeps draining so the child never blocks."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(_READ_CHUNK):
            room = self.cap - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if len(chunk) > room:
                self.truncated = True

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class ProcessSandbox:
    """The :class:`~ash_ray.sandbox.base.Sandbox` of one session (see module doc)."""

    def __init__(
        self,
        settings: Settings,
        workspace: Path,
        *,
        sandbox_id: str,
        env: dict[str, str],
        network: bool,
        isolation: str,
        limit_mode: str,
        bwrap: str | None = None,
        net_prefix: list[str] | None = None,
        output_cap_bytes: int = OUTPUT_CAP_BYTES,
    ) -> None:
        self._settings = settings
        self._workspace = workspace
        self._sandbox_id = sandbox_id
        self._env = env
        self._network = network
        self._isolation = isolation
        self._limit_mode = limit_mode
        self._bwrap = bwrap
        self._net_prefix = net_prefix or []
        self._output_cap = output_cap_bytes
        self._bash = shutil.which("bash", path=LAUNCH_ENV["PATH"]) or "/bin/bash"
        self._cgroup: SandboxCgroup | None = None
        self._active = 0
        self._procs: set[asyncio.subprocess.Process] = set()
        self._closed = False

    # -- the Sandbox protocol

    @property
    def sandbox_id(self) -> str:
        return self._sandbox_id

    @property
    def workspace(self) -> Path:
        return self._workspace

    @property
    def isolation(self) -> str:
        return self._isolation

    @property
    def limit_mode(self) -> str:
        return self._limit_mode

    @property
    def network(self) -> bool:
        return self._network

    def resolve(self, path: str) -> Path:
        """Confine ``path`` to the workspace (see :func:`resolve_in_workspace`)."""
        return resolve_in_workspace(self._workspace, path)

    async def run(
        self, command: str, *, timeout_s: float | None = None, cwd: str | None = None
    ) -> ExecResult:
        """Run ``bash -c command`` in the workspace (or ``cwd`` inside it) under all limits.

        Raises SandboxError only when the process cannot be started at all; a failing,
        killed or timed-out command is an ExecResult.
        """
        if self._closed:
            raise SandboxError("sandbox is closed", sandbox_id=self._sandbox_id)
        workdir = self.resolve(cwd) if cwd else self._workspace
        limit_s = timeout_s if timeout_s and timeout_s > 0 else self._settings.sandbox_timeout_s
        argv, launch_env = self._argv(command, workdir)
        cgroup = self._acquire_cgroup()
        try:
            rlimits = build_rlimits(self._settings, self._limit_mode)
            setup = functools.partial(child_setup, rlimits, cgroup.join_files if cgroup else ())
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=workdir,
                    env=launch_env,
                    start_new_session=True,
                    preexec_fn=setup,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise SandboxError(
                    f"could not start sandboxed command: {exc}", sandbox_id=self._sandbox_id
                ) from exc
            self._procs.add(proc)
            try:
                return await self._supervise(proc, limit_s, cgroup)
            finally:
                self._procs.discard(proc)
        finally:
            await self._release_cgroup()

    async def spawn(self, command: str, *, env: dict[str, str] | None = None) -> SpawnedProcess:
        """Start ``bash -c command`` under the same limits, with stdin/stdout/stderr pipes.

        For long-lived helpers (MCP stdio servers, hooks fed JSON on stdin): the process
        keeps the sandbox's cgroup until :meth:`SpawnedProcess.kill`, and :meth:`close`
        kills it. ``env`` is added to the sandbox's allowlisted environment.
        """
        if self._closed:
            raise SandboxError("sandbox is closed", sandbox_id=self._sandbox_id)
        extra = dict(env or {})
        argv, launch_env = self._argv(command, self._workspace, extra)
        cgroup = self._acquire_cgroup()
        try:
            rlimits = build_rlimits(self._settings, self._limit_mode)
            setup = functools.partial(child_setup, rlimits, cgroup.join_files if cgroup else ())
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self._workspace,
                env=launch_env,
                start_new_session=True,
                preexec_fn=setup,
                limit=_SPAWN_LINE_LIMIT,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            await self._release_cgroup()
            raise SandboxError(
                f"could not start sandboxed process: {exc}", sandbox_id=self._sandbox_id
            ) from exc
        self._procs.add(proc)
        return SpawnedProcess(self, proc)

    async def _forget(self, proc: asyncio.subprocess.Process) -> None:
        if proc in self._procs:
            self._procs.discard(proc)
            await self._release_cgroup()

    async def close(self) -> None:
        """Kill every running command and remove the cgroup. Idempotent."""
        self._closed = True
        for proc in list(self._procs):
            _killpg(proc)
        if self._cgroup is not None:
            cgroup, self._cgroup = self._cgroup, None
            await cgroup.remove()

    # -- internals

    def _argv(
        self, command: str, workdir: Path, extra_env: dict[str, str] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        shell = [self._bash, "-c", command]
        env = {**self._env, **extra_env} if extra_env else self._env
        if self._isolation == "bwrap" and self._bwrap:
            argv = bwrap_argv(
                self._bwrap,
                workspace=self._workspace,
                # Per run: the snapshot dir may appear after the sandbox was made.
                hidden=_hidden_dirs(self._settings),
                env=env,
                network=self._network,
                cwd=workdir,
                command=shell,
            )
            return argv, dict(LAUNCH_ENV)
        prefix = [] if self._network else self._net_prefix
        return [*prefix, *shell], dict(env)

    async def _supervise(
        self, proc: asyncio.subprocess.Process, limit_s: float, cgroup: SandboxCgroup | None
    ) -> ExecResult:
        out, err = _Capture(self._output_cap), _Capture(self._output_cap)
        readers = [
            asyncio.create_task(out.drain(proc.stdout)),
            asyncio.create_task(err.drain(proc.stderr)),
        ]
        timed_out = False
        try:
            if not await _exited_within(proc, limit_s):
                timed_out = True
                logger.info("sandbox %s: command timed out after %.1fs", self._sandbox_id, limit_s)
        finally:
            # Also on cancellation (an interrupted turn): nothing may outlive the call.
            _killpg(proc)
            if cgroup is not None and self._active == 1:
                await cgroup.kill()
            # Bounded: asyncio's wait also waits for the pipes, which an escaped process
            # could hold; the readers below are bounded the same way.
            with contextlib.suppress(ProcessLookupError, TimeoutError):
                await asyncio.wait_for(proc.wait(), _DRAIN_GRACE_S)
            _, pending = await asyncio.wait(readers, timeout=_DRAIN_GRACE_S)
            for task in pending:
                # A process that escaped the group and the cgroup still holds the pipe.
                task.cancel()
        stderr = err.text()
        if cgroup is not None and cgroup.oom_killed():
            stderr += (
                f"\n[sandbox] killed: out of memory (limit {self._settings.sandbox_memory_mb} MiB)"
            )
        code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        return ExecResult(
            exit_code=code,
            stdout=out.text(),
            stderr=stderr,
            timed_out=timed_out,
            truncated=out.truncated or err.truncated,
        )

    def _acquire_cgroup(self) -> SandboxCgroup | None:
        """Create the sandbox cgroup for the first of concurrent runs; share it after."""
        self._active += 1
        if self._limit_mode == "rlimit" or self._cgroup is not None:
            return self._cgroup
        mib = 1024 * 1024
        try:
            self._cgroup = SandboxCgroup.create(
                discover(),
                self._limit_mode,
                self._sandbox_id,
                memory_bytes=self._settings.sandbox_memory_mb * mib,
                max_procs=self._settings.sandbox_max_procs,
            )
        except OSError as exc:
            self._active -= 1
            raise SandboxError(
                f"could not create the {self._limit_mode} cgroup of sandbox: {exc}",
                sandbox_id=self._sandbox_id,
            ) from exc
        return self._cgroup

    async def _release_cgroup(self) -> None:
        """Remove the cgroup when the last concurrent run ends (kills leftovers first)."""
        self._active -= 1
        if self._active == 0 and self._cgroup is not None:
            cgroup, self._cgroup = self._cgroup, None
            await cgroup.remove()


class SpawnedProcess:
    """A process started by :meth:`ProcessSandbox.spawn`; :meth:`kill` ends its group."""

    def __init__(self, sandbox: ProcessSandbox, proc: asyncio.subprocess.Process) -> None:
        self._sandbox = sandbox
        self.proc = proc

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def kill(self) -> None:
        """Kill the process group and give the cgroup back. Idempotent."""
        _killpg(self.proc)
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            await asyncio.wait_for(self.proc.wait(), _DRAIN_GRACE_S)
        await self._sandbox._forget(self.proc)


async def _exited_within(proc: asyncio.subprocess.Process, limit_s: float) -> bool:
    """Wait for the shell itself to exit; False on timeout.

    ``proc.wait()`` cannot be used: asyncio also waits for the pipes to close, which a
    background child holding stdout delays until it ends (``sleep 100 &``).
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    pause = 0.002
    while proc.returncode is None:
        remaining = end - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.05)
    return True


def _killpg(proc: asyncio.subprocess.Process) -> None:
    # start_new_session made the child a group leader: its pid is the group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _hidden_dirs(settings: Settings) -> list[Path]:
    """Existing dirs to cover with an empty tmpfs: the data dir and the snapshot dir."""
    out: list[Path] = []
    for path in (settings.data_dir, settings.snapshot_dir):
        real = Path(os.path.realpath(path))
        covered = any(real == h or h in real.parents for h in out)
        if real.is_dir() and real != Path("/") and not covered:
            out.append(real)
    return out


def _safe_id(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:64].strip(".")
    return cleaned or uuid.uuid4().hex


def create_sandbox(
    settings: Settings,
    workspace: Path,
    *,
    extra_env: dict[str, str] | None = None,
    network: bool | None = None,
    sandbox_id: str | None = None,
) -> ProcessSandbox:
    """Build the sandbox of one session over ``workspace`` (created if missing).

    ``network=None`` follows ``settings.sandbox_network``. Raises SandboxError when the
    settings demand something this machine cannot do: bwrap required but missing or
    refused, an explicit cgroup mode that is not writable, or a network cut with neither
    bwrap nor ``unshare --net`` usable.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    root = workspace.resolve()
    net = settings.sandbox_network if network is None else network
    limit_mode = detect_limit_mode(settings)
    isolation, bwrap = _choose_isolation(settings, net)
    net_prefix: list[str] | None = None
    if not net and isolation == "none":
        net_prefix = unshare_net_prefix()
        if net_prefix is None:
            raise SandboxError(
                "network cut requested but neither bwrap nor `unshare --net` works here; "
                "install bubblewrap or set ASH_SANDBOX_NETWORK=true"
            )
    return ProcessSandbox(
        settings,
        root,
        sandbox_id=_safe_id(sandbox_id or uuid.uuid4().hex),
        env=sandbox_env(root, extra_env),
        network=net,
        isolation=isolation,
        limit_mode=limit_mode,
        bwrap=bwrap,
        net_prefix=net_prefix,
    )


def _choose_isolation(settings: Settings, network: bool) -> tuple[str, str | None]:
    wanted = settings.sandbox_isolation
    if wanted == "none":
        return "none", None
    bwrap = find_bwrap()
    reason = "bwrap is not on PATH" if bwrap is None else probe_bwrap(bwrap, network)
    if reason is None:
        return "bwrap", bwrap
    if wanted == "bwrap":
        raise SandboxError(
            f"ASH_SANDBOX_ISOLATION=bwrap but bubblewrap cannot run here: {reason}; "
            "install bubblewrap (and allow user namespaces) or use auto",
            isolation="bwrap",
        )
    logger.warning("sandbox runs WITHOUT filesystem isolation: %s", reason)
    return "none", None
