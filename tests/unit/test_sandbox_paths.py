"""Path confinement, the environment allowlist and limit-mode selection (no bwrap needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ash_ray.config import load_settings
from ash_ray.errors import PathOutsideWorkspace, SandboxError
from ash_ray.sandbox import (
    ExecResult,
    Sandbox,
    available_limit_modes,
    create_sandbox,
    detect_limit_mode,
    resolve_in_workspace,
    sandbox_env,
)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("x")
    return root


def test_relative_and_absolute_inside(ws: Path) -> None:
    assert resolve_in_workspace(ws, "sub/f.txt") == ws.resolve() / "sub" / "f.txt"
    assert resolve_in_workspace(ws, str(ws / "sub")) == ws.resolve() / "sub"
    assert resolve_in_workspace(ws, ".") == ws.resolve()
    assert resolve_in_workspace(ws, "") == ws.resolve()
    assert resolve_in_workspace(ws, "~/sub") == ws.resolve() / "sub"
    # Not existing yet is fine: Write creates it.
    assert resolve_in_workspace(ws, "new/dir/x") == ws.resolve() / "new" / "dir" / "x"
    # `..` that stays inside is fine.
    assert resolve_in_workspace(ws, "sub/../sub/f.txt") == ws.resolve() / "sub" / "f.txt"


@pytest.mark.parametrize("path", ["../x", "sub/../../x", "/etc/passwd", "~/../x", "a\x00b"])
def test_escapes_are_refused(ws: Path, path: str) -> None:
    with pytest.raises(PathOutsideWorkspace):
        resolve_in_workspace(ws, path)


def test_sibling_with_common_prefix_is_outside(tmp_path: Path, ws: Path) -> None:
    (tmp_path / "ws2").mkdir()
    with pytest.raises(PathOutsideWorkspace):
        resolve_in_workspace(ws, str(tmp_path / "ws2" / "f"))


def test_escaping_symlinks_are_refused(tmp_path: Path, ws: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    (ws / "link").symlink_to(outside / "secret")
    (ws / "dirlink").symlink_to(outside)
    (ws / "dangling").symlink_to(outside / "not-yet")
    (ws / "inner").symlink_to(ws / "sub")
    for path in ("link", "dirlink/secret", "dirlink/new-file", "dangling", "sub/../dirlink"):
        with pytest.raises(PathOutsideWorkspace):
            resolve_in_workspace(ws, path)
    # A link that stays inside resolves to its target.
    assert resolve_in_workspace(ws, "inner/f.txt") == ws.resolve() / "sub" / "f.txt"


def test_workspace_behind_a_symlink(tmp_path: Path, ws: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(ws)
    assert resolve_in_workspace(alias, "sub") == ws.resolve() / "sub"
    assert resolve_in_workspace(alias, str(ws / "sub")) == ws.resolve() / "sub"


def test_error_names_the_path(ws: Path) -> None:
    with pytest.raises(PathOutsideWorkspace) as info:
        resolve_in_workspace(ws, "../evil")
    assert "../evil" in str(info.value)
    assert info.value.fields["path"] == "../evil"


def test_env_allowlist() -> None:
    parent = {
        "PATH": "/bin",
        "LANG": "en_US.UTF-8",
        "TERM": "xterm",
        "ANTHROPIC_API_KEY": "sk-secret",
        "ASH_API_KEY": "k",
        "ASH_DATABASE_URL": "postgresql://u:p@h/d",
        "DATABASE_URL": "postgresql://u:p@h/d",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "GOOGLE_APPLICATION_CREDENTIALS": "/g.json",
        "AZURE_CLIENT_SECRET": "az",
        "RANDOM": "r",
    }
    env = sandbox_env(Path("/ws"), None, parent)
    assert env == {"PATH": "/bin", "LANG": "en_US.UTF-8", "TERM": "xterm", "HOME": "/ws"}


def test_extra_env_is_kept_but_secrets_are_stripped() -> None:
    extra = {
        "FOO": "bar",
        "AWS_REGION": "eu-west-1",
        "ANTHROPIC_API_KEY": "sk",
        "anthropic_base_url": "http://x",
        "ASH_API_KEY": "k",
        "DATABASE_URL": "postgresql://x",
    }
    env = sandbox_env(Path("/ws"), extra, {})
    assert env["FOO"] == "bar"
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["PATH"] and env["LANG"] and env["TERM"]
    for name in ("ANTHROPIC_API_KEY", "anthropic_base_url", "ASH_API_KEY", "DATABASE_URL"):
        assert name not in env


def test_detect_limit_mode_auto_is_strongest() -> None:
    modes = available_limit_modes()
    assert modes[-1] == "rlimit"
    assert detect_limit_mode(load_settings(sandbox_limits="auto")) == modes[0]
    assert detect_limit_mode(load_settings(sandbox_limits="rlimit")) == "rlimit"


def test_explicit_unavailable_limit_mode_raises() -> None:
    missing = [m for m in ("cgroup2", "cgroup1") if m not in available_limit_modes()]
    if not missing:
        pytest.skip("every cgroup mode is available here")
    with pytest.raises(SandboxError):
        detect_limit_mode(load_settings(sandbox_limits=missing[0]))


def test_bwrap_required_but_missing_fails_at_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    settings = load_settings(data_dir=tmp_path / "data", sandbox_isolation="bwrap")
    with pytest.raises(SandboxError, match="bwrap"):
        create_sandbox(settings, tmp_path / "ws")


def test_exec_result_and_protocol(tmp_path: Path) -> None:
    assert ExecResult(0, "", "").ok
    assert not ExecResult(0, "", "", timed_out=True).ok
    assert not ExecResult(1, "", "").ok
    settings = load_settings(data_dir=tmp_path / "data", sandbox_isolation="none")
    sandbox = create_sandbox(settings, tmp_path / "new-ws", sandbox_id="a/b")
    assert isinstance(sandbox, Sandbox)
    assert sandbox.workspace == (tmp_path / "new-ws").resolve()
    assert sandbox.workspace.is_dir()
    assert "/" not in sandbox.sandbox_id
    assert sandbox.isolation == "none"
    assert os.path.isabs(sandbox.resolve("x"))
