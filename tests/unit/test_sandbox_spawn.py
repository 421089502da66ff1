"""Sandbox.spawn: a long-lived process with pipes, under the sandbox's limits and env."""

from __future__ import annotations

from pathlib import Path

import pytest

from ash_ray.config import load_settings
from ash_ray.errors import SandboxError
from ash_ray.sandbox import create_sandbox


async def test_spawn_talks_over_pipes_and_is_killed(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    sandbox = create_sandbox(settings, tmp_path / "data" / "sessions" / "s", extra_env={"A": "1"})
    spawned = await sandbox.spawn('echo "$A$B"; exec cat', env={"B": "2"})
    assert await spawned.proc.stdout.readline() == b"12\n"
    spawned.proc.stdin.write(b"ping\n")
    await spawned.proc.stdin.drain()
    assert await spawned.proc.stdout.readline() == b"ping\n"
    await spawned.kill()
    assert spawned.returncode is not None
    still = await sandbox.spawn("exec sleep 60")
    await sandbox.close()  # closing the sandbox kills what it spawned
    await still.proc.wait()
    assert still.returncode is not None
    with pytest.raises(SandboxError):
        await sandbox.spawn("true")


async def test_spawned_process_sees_only_the_sandbox_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    settings = load_settings(data_dir=tmp_path / "data")
    sandbox = create_sandbox(settings, tmp_path / "data" / "sessions" / "s")
    spawned = await sandbox.spawn("env")
    out, _ = await spawned.proc.communicate()
    await spawned.kill()
    await sandbox.close()
    assert b"sk-secret" not in out and b"HOME=" in out
