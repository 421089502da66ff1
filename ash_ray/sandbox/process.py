"""ProcessSandbox: run tool commands as confined child processes of the server.

Every :meth:`ProcessSandbox.run` is one ``bash -c`` process tree, started in its own
session (so its process group can be killed as one) and, when available, inside
bubblewrap and a per-sandbox cgroup. When the command's shell exits, whatever it left
running in the background is killed too: a command never outlives its call, so the
next one starts from a clean slate and nothing escapes the wall-clock limit.

What each layer stops is documented in :mod:`ash_ray.sandbox.env`,
:mod:`ash_ray.sandbox.limits`, :mod:`ash_ray.sandbox.cgroups`,
:mod:`ash_ray.sandbox.bwrap` and :mod:`ash_ray.sandbox.netns` (docs/security.md sums
them up). With ``isolation == "none"`` the tools still refuse paths
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
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from ash_ray.config import Settings
from ash_ray.errors import SandboxError
from ash_ray.sandbox.base import ExecResult, resolve_in_workspace
from ash_ray.sandbox.bwrap import LAUNCH_ENV, bwrap_argv, hidden_dirs
from ash_ray.sandbox.cgroups import SandboxCgroup, discover, owned_name, sweep_orphans_once
from ash_ray.sandbox.children import Capture as _Capture
from ash_ray.sandbox.children import exited_within as _exited_within
from ash_ray.sandbox.children import killpg as _killpg
from ash_ray.sandbox.children import start as _start
from ash_ray.sandbox.limits import build_rlimits, child_setup
from ash_ray.sandbox.netns import (
    EgressHandshake,
    NetworkMode,
    deny_routes,
    find_egress_tools,
    resolv_conf_path,
)

logger = logging.getLogger(__name__)

OUTPUT_CAP_BYTES = 1024 * 1024
_DRAIN_GRACE_S = 1.0
# Longest stdout line a spawned process may write (an MCP message with an image).
_SPAWN_LINE_LIMIT = 64 * 1024 * 1024


class ProcessSandbox:
    """The :class:`~ash_ray.sandbox.base.Sandbox` of one session (see module doc)."""

    def __init__(
        self,
        settings: Settings,
        workspace: Path,
        *,
        sandbox_id: str,
        env: dict[str, str],
        network_mode: NetworkMode,
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
        self._network_mode = network_mode
        self._isolation = isolation
        self._limit_mode = limit_mode
        self._bwrap = bwrap
        self._net_prefix = net_prefix or []
        self._output_cap = output_cap_bytes
        self._bash = shutil.which("bash", path=LAUNCH_ENV["PATH"]) or "/bin/bash"
        self._cgroup: SandboxCgroup | None = None
        self._active = 0
        self._procs: set[asyncio.subprocess.Process] = set()
        self._spawned: set[SpawnedProcess] = set()
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
        return self._network_mode != "loopback-only"

    @property
    def network_mode(self) -> NetworkMode:
        return self._network_mode

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
        shake = self._handshake()
        try:
            argv, launch_env = self._argv(command, workdir, shake)
            return await self._launch(argv, launch_env, workdir, limit_s, shake)
        finally:
            if shake is not None:
                await shake.close()

    async def close(self) -> None:
        """Kill every running command and remove the cgroup. Idempotent."""
        self._closed = True
        for spawned in list(self._spawned):
            await spawned.kill()  # also stops its slirp4netns
        for proc in list(self._procs):
            _killpg(proc)
        if self._cgroup is not None:
            cgroup, self._cgroup = self._cgroup, None
            await cgroup.remove()

    # -- internals

    async def _launch(
        self,
        argv: list[str],
        launch_env: dict[str, str],
        workdir: Path,
        limit_s: float,
        shake: EgressHandshake | None,
    ) -> ExecResult:
        cgroup = await self._acquire_cgroup()
        try:
            keep = shake.child_fds() if shake else ()
            setup = self._child_setup(cgroup, keep)
            try:
                proc = await _start(
                    *argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=workdir,
                    env=launch_env,
                    start_new_session=True,
                    preexec_fn=setup,
                    pass_fds=keep,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise SandboxError(
                    f"could not start sandboxed command: {exc}", sandbox_id=self._sandbox_id
                ) from exc
            self._procs.add(proc)
            try:
                if shake is not None:
                    await self._attach(shake, proc)
                return await self._supervise(proc, limit_s, cgroup)
            finally:
                self._procs.discard(proc)
        finally:
            await self._release_cgroup()

    async def spawn(self, command: str, *, env: dict[str, str] | None = None) -> SpawnedProcess:
        """Start ``bash -c command`` under the same limits, with stdin/stdout/stderr pipes.

        For long-lived helpers (MCP stdio servers, hooks fed JSON on stdin): the process
        keeps the sandbox's cgroup (and its egress, when on) until
        :meth:`SpawnedProcess.kill`, and :meth:`close` kills it. ``env`` is added to the
        sandbox's allowlisted environment.
        """
        if self._closed:
            raise SandboxError("sandbox is closed", sandbox_id=self._sandbox_id)
        shake = self._handshake()
        argv, launch_env = self._argv(command, self._workspace, shake, dict(env or {}))
        cgroup = await self._acquire_cgroup()
        try:
            keep = shake.child_fds() if shake else ()
            setup = self._child_setup(cgroup, keep)
            proc = await _start(
                *argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self._workspace,
                env=launch_env,
                start_new_session=True,
                preexec_fn=setup,
                pass_fds=keep,
                limit=_SPAWN_LINE_LIMIT,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            await self._release_cgroup()
            if shake is not None:
                await shake.close()
            raise SandboxError(
                f"could not start sandboxed process: {exc}", sandbox_id=self._sandbox_id
            ) from exc
        self._procs.add(proc)
        spawned = SpawnedProcess(self, proc, shake)
        self._spawned.add(spawned)
        if shake is not None:
            try:
                await self._attach(shake, proc)
            except BaseException:
                await spawned.kill()
                raise
        return spawned

    async def _forget(self, proc: asyncio.subprocess.Process) -> None:
        if proc in self._procs:
            self._procs.discard(proc)
            await self._release_cgroup()

    def _child_setup(
        self, cgroup: SandboxCgroup | None, keep: tuple[int, ...]
    ) -> Callable[[], None]:
        """What a child runs between fork and exec (see :func:`child_setup`)."""
        rlimits = build_rlimits(self._settings, self._limit_mode)
        join = cgroup.join_files if cgroup else ()
        return functools.partial(child_setup, rlimits, join, tuple(keep), os.getpid())

    def _handshake(self) -> EgressHandshake | None:
        """Pipes to wire this run's network namespace to slirp4netns (egress only)."""
        if self._network_mode != "isolated-egress" or self._isolation != "bwrap":
            return None
        tools = find_egress_tools()
        if tools is None:
            raise SandboxError("slirp4netns disappeared", sandbox_id=self._sandbox_id)
        # Per run: the node's addresses may change while the sandbox lives.
        return EgressHandshake(tools, deny_routes(self._settings.sandbox_egress_deny))

    async def _attach(self, shake: EgressHandshake, proc: asyncio.subprocess.Process) -> None:
        shake.spawned()
        try:
            await shake.attach()
        except BaseException as exc:
            # Also on cancellation. The command never ran: it waits on the block fd.
            _killpg(proc)
            if isinstance(exc, SandboxError | OSError | TimeoutError):
                raise SandboxError(
                    f"could not set up the sandbox network: {exc}", sandbox_id=self._sandbox_id
                ) from exc
            raise

    def _argv(
        self,
        command: str,
        workdir: Path,
        shake: EgressHandshake | None,
        extra_env: dict[str, str] | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        shell = shake.wrap(self._bash, command) if shake else [self._bash, "-c", command]
        env = {**self._env, **extra_env} if extra_env else self._env
        if self._isolation == "bwrap" and self._bwrap:
            argv = bwrap_argv(
                self._bwrap,
                workspace=self._workspace,
                # Per run: the snapshot dir may appear after the sandbox was made.
                hidden=hidden_dirs(self._settings.data_dir, self._settings.snapshot_dir),
                env=env,
                cwd=workdir,
                command=shell,
                extra_visible=self._settings.sandbox_extra_ro_paths,
                tmp_size_mb=self._settings.sandbox_memory_mb,
                resolv_conf=resolv_conf_path() if shake else None,
                handshake=shake.bwrap_flags() if shake else (),
            )
            return argv, dict(LAUNCH_ENV)
        prefix = self._net_prefix if self._network_mode == "loopback-only" else []
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
                async with asyncio.timeout(_DRAIN_GRACE_S):
                    await proc.wait()
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

    async def _acquire_cgroup(self) -> SandboxCgroup | None:
        """Create the sandbox cgroup for the first of concurrent runs; share it after."""
        await sweep_orphans_once(self._limit_mode)  # (no await below: no race on _cgroup)
        self._active += 1
        if self._limit_mode == "rlimit" or self._cgroup is not None:
            return self._cgroup
        mib = 1024 * 1024
        try:
            self._cgroup = SandboxCgroup.create(
                discover(),
                self._limit_mode,
                owned_name(self._sandbox_id),
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

    def __init__(
        self,
        sandbox: ProcessSandbox,
        proc: asyncio.subprocess.Process,
        shake: EgressHandshake | None = None,
    ) -> None:
        self._sandbox = sandbox
        self.proc = proc
        self._shake = shake

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def kill(self) -> None:
        """Kill the process group and give the cgroup back. Idempotent."""
        _killpg(self.proc)
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            async with asyncio.timeout(_DRAIN_GRACE_S):
                await self.proc.wait()
        if self._shake is not None:
            shake, self._shake = self._shake, None
            await shake.close()
        self._sandbox._spawned.discard(self)
        await self._sandbox._forget(self.proc)
