"""Agent bundles, the node cache and the CLI's env merge, without Ray."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from ash_ray.agent import bundle
from ash_ray.deploy_cli import agent_env, batches, collect
from ash_ray.errors import InvalidInput, PayloadTooLarge, StoreError
from ash_ray.models import AgentRef
from ash_ray.session import agent_cache

LIMITS = bundle.Limits(max_file_bytes=1000, max_total_bytes=1500, max_files=3)


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "", "a\\b", "a/\x00"])
def test_paths_that_could_escape_are_refused_by_name(bad: str) -> None:
    with pytest.raises(InvalidInput) as err:
        bundle.clean_path(bad)
    assert repr(bad[:200]) in str(err.value)


def test_paths_are_normalized() -> None:
    assert bundle.clean_path("./a//b/./c.txt") == "a/b/c.txt"


def test_upload_checks_base64_and_limits() -> None:
    ok = bundle.decode_upload([("a.sh", base64.b64encode(b"#!/bin/sh\n").decode())], LIMITS)
    assert ok["a.sh"].data == b"#!/bin/sh\n" and ok["a.sh"].mode == 0o755
    with pytest.raises(InvalidInput, match=r"'b\.txt' is not valid base64"):
        bundle.decode_upload([("b.txt", "%%%")], LIMITS)
    with pytest.raises(PayloadTooLarge, match="'big'"):
        bundle.decode_upload([("big", base64.b64encode(b"x" * 1001).decode())], LIMITS)
    files = {f"f{i}": bundle.AgentFile(b"x") for i in range(4)}
    with pytest.raises(PayloadTooLarge, match="4 files"):
        LIMITS.check_total(files)


def test_folder_skips_caches_and_escaping_links(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    root = tmp_path / "agent"
    for d in ("node_modules/x", ".git", "src/__pycache__", ".venv/bin"):
        (root / d).mkdir(parents=True)
        (root / d / "f").write_text("skip")
    (root / "CLAUDE.md").write_text("p")
    (root / "src" / "main.py").write_text("code")
    (root / "src" / "main.pyc").write_text("skip")
    os.symlink(outside, root / "leak.txt")
    os.symlink(root / "CLAUDE.md", root / "alias.md")
    files = bundle.read_folder(root, bundle.Limits(10**6, 10**6, 100))
    assert sorted(files) == ["CLAUDE.md", "alias.md", "src/main.py"]


def test_pack_unpack_round_trip_keeps_modes() -> None:
    files = {"b/x.sh": bundle.AgentFile(b"#!", 0o755, 100), "a": bundle.AgentFile(b"1", 0o644, 5)}
    data = bundle.pack(files)
    back = bundle.unpack(data)
    assert back["b/x.sh"].mode & 0o777 == 0o755 and back["a"].data == b"1"


async def test_cache_fetches_once_and_checks_the_digest(tmp_path: Path) -> None:
    data = bundle.pack({"CLAUDE.md": bundle.AgentFile(b"hi")})
    ref = AgentRef(name="bot", version=2, sha256=hashlib.sha256(data).hexdigest())
    calls = []

    async def fetch() -> bytes:
        calls.append(1)
        return data

    folder = await agent_cache.materialize(tmp_path, ref, fetch)
    assert folder.name == "bot" and (folder / "CLAUDE.md").read_text() == "hi"
    assert await agent_cache.materialize(tmp_path, ref, fetch) == folder
    assert len(calls) == 1
    wrong = ref.model_copy(update={"version": 3, "sha256": "0" * 64})
    with pytest.raises(StoreError, match="sha256"):
        await agent_cache.materialize(tmp_path, wrong, fetch)
    assert not agent_cache.folder_of(tmp_path, wrong).exists()


def test_cli_env_files_and_flags_win_in_ash_order(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("A=1\nB=1\nC=1\n")
    (tmp_path / ".env.local").write_text("B=2\nC=2\n")
    assert agent_env(tmp_path, ["C=3", "D=x=y"]) == {"A": "1", "B": "2", "C": "3", "D": "x=y"}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        agent_env(tmp_path, ["nope"])
    (tmp_path / "CLAUDE.md").write_text("p")
    assert [f["path"] for f in collect(tmp_path)] == ["CLAUDE.md"], ".env files stay home"


def test_cli_batches_split_by_size() -> None:
    items = [{"path": str(i), "content": "x" * 100} for i in range(5)]
    parts = batches(items, limit=300)
    assert [len(p) for p in parts] == [2, 2, 1] and [i for p in parts for i in p] == items
