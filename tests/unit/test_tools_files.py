"""Built-in tools on a real sandbox: happy paths, errors, and escapes refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ash_ray.agent import BUILTIN_TOOLS, PermissionPolicy, ToolContext, ToolResult, run_tool
from ash_ray.agent.spec import load_agent
from ash_ray.agent.tools import SKILL_TOOL, available_tools
from ash_ray.config import load_settings
from ash_ray.sandbox import ProcessSandbox, create_sandbox


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[ProcessSandbox]:
    settings = load_settings(data_dir=tmp_path / "data")
    box = create_sandbox(settings, tmp_path / "data" / "sessions" / "s")
    ws = box.workspace
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / "src" / "main.py").write_text("import os\n\ndef main():\n    return 42\n")
    (ws / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'TODO'\n")
    (ws / "README.md").write_text("# Title\nTODO: write docs\n")
    (ws / "notes.txt").write_text("\n".join(f"line {i}" for i in range(1, 11)) + "\n")
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text("TODO in git internals\n")
    yield box
    await box.close()


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    root = tmp_path / "agent"
    skill = root / ".claude" / "skills" / "review"
    skill.mkdir(parents=True)
    (root / "CLAUDE.md").write_text("prompt")
    (skill / "SKILL.md").write_text("---\nname: review\ndescription: Review code\n---\nCheck X.\n")
    return root


def context(
    sandbox: ProcessSandbox,
    agent_dir: Path,
    allow: Sequence[str] = (),
    deny: Sequence[str] = (),
) -> ToolContext:
    from ash_ray.agent import PermissionRules

    rules = PermissionRules.from_settings({"allow": list(allow), "deny": list(deny)})
    return ToolContext(
        sandbox=sandbox,
        spec=load_agent(agent_dir),
        policy=PermissionPolicy(rules),
        default_timeout_s=10.0,
        max_write_bytes=1024 * 1024,
    )


async def call(ctx: ToolContext, name: str, **args: Any) -> ToolResult:
    tool = SKILL_TOOL if name == "Skill" else BUILTIN_TOOLS[name]
    return await run_tool(ctx, tool, args)


async def test_read(sandbox: ProcessSandbox, agent_dir: Path) -> None:
    ctx = context(sandbox, agent_dir)
    result = await call(ctx, "Read", file_path="src/main.py")
    assert not result.is_error
    assert result.content.splitlines()[0] == "     1\timport os"
    assert result.content.splitlines()[3] == "     4\t    return 42"
    window = await call(
        ctx, "Read", file_path=str(sandbox.workspace / "notes.txt"), offset=3, limit=2
    )
    assert window.content.splitlines()[:2] == ["     3\tline 3", "     4\tline 4"]
    assert "more lines" in window.content
    missing = await call(ctx, "Read", file_path="nope.txt")
    assert missing.is_error and "does not exist" in missing.content
    directory = await call(ctx, "Read", file_path="src")
    assert directory.is_error and "directory" in directory.content
    (sandbox.workspace / "empty").write_text("")
    assert "empty" in (await call(ctx, "Read", file_path="empty")).content
    (sandbox.workspace / "blob.bin").write_bytes(b"\x00\x01\x02")
    assert "binary" in (await call(ctx, "Read", file_path="blob.bin")).content


async def test_write_and_edit(sandbox: ProcessSandbox, agent_dir: Path) -> None:
    ctx = context(sandbox, agent_dir)
    result = await call(ctx, "Write", file_path="out/new.txt", content="alpha\nbeta\nalpha\n")
    assert not result.is_error and "created" in result.content
    path = sandbox.workspace / "out" / "new.txt"
    assert path.read_text() == "alpha\nbeta\nalpha\n"
    again = await call(ctx, "Write", file_path="out/new.txt", content="alpha\nbeta\nalpha\n")
    assert "updated" in again.content

    edited = await call(ctx, "Edit", file_path="out/new.txt", old_string="beta", new_string="BETA")
    assert not edited.is_error and "2\tBETA" in edited.content
    assert path.read_text() == "alpha\nBETA\nalpha\n"
    ambiguous = await call(ctx, "Edit", file_path="out/new.txt", old_string="alpha", new_string="x")
    assert ambiguous.is_error and "2 times" in ambiguous.content
    assert path.read_text() == "alpha\nBETA\nalpha\n"
    everywhere = await call(
        ctx, "Edit", file_path="out/new.txt", old_string="alpha", new_string="x", replace_all=True
    )
    assert not everywhere.is_error and path.read_text() == "x\nBETA\nx\n"
    absent = await call(ctx, "Edit", file_path="out/new.txt", old_string="zzz", new_string="y")
    assert absent.is_error and "not found" in absent.content
    same = await call(ctx, "Edit", file_path="out/new.txt", old_string="x", new_string="x")
    assert same.is_error
    too_big = await call(ctx, "Write", file_path="big", content="x" * (2 * 1024 * 1024))
    assert too_big.is_error and not (sandbox.workspace / "big").exists()


async def test_input_validation(sandbox: ProcessSandbox, agent_dir: Path) -> None:
    ctx = context(sandbox, agent_dir)
    missing = await call(ctx, "Write", file_path="a")
    assert missing.is_error and "content" in missing.content
    wrong = await call(ctx, "Read", file_path=42)
    assert wrong.is_error and "file_path" in wrong.content
    # Extra parameters a Claude Code-trained model may send are ignored.
    assert not (await call(ctx, "Bash", command="true", run_in_background=False)).is_error
    assert (await run_tool(ctx, BUILTIN_TOOLS["LS"], "not a dict")).is_error


async def test_glob(sandbox: ProcessSandbox, agent_dir: Path) -> None:
    ctx = context(sandbox, agent_dir)
    result = await call(ctx, "Glob", pattern="**/*.py")
    ws = sandbox.workspace
    assert sorted(result.content.splitlines()) == [
        str(ws / "src/main.py"),
        str(ws / "src/pkg/util.py"),
    ]
    top = await call(ctx, "Glob", pattern="*.py", path="src")
    assert top.content == str(ws / "src/main.py")
    assert (await call(ctx, "Glob", pattern="*.rs")).content == "No files found"
    assert (await call(ctx, "Glob", pattern="../*")).is_error
    assert (await call(ctx, "Glob", pattern="/etc/*")).is_error
    assert (await call(ctx, "Glob", pattern="*", path="..")).is_error


async def test_grep(sandbox: ProcessSandbox, agent_dir: Path) -> None:
    ctx = context(sandbox, agent_dir)
    ws = sandbox.workspace
    files = await call(ctx, "Grep", pattern="TODO")
    assert sorted(files.content.splitlines()) == [
        str(ws / "README.md"),
        str(ws / "src/pkg/util.py"),
    ]
    content = await call(ctx, "Grep", pattern=r"return \d+", output_mode="content")
    assert content.content == f"{ws / 'src/main.py'}:4:    return 42"
    only_py = await call(ctx, "Grep", pattern="todo", glob="*.py", **{"-i": True})
    assert only_py.content == str(ws / "src/pkg/util.py")
    counted = await call(ctx, "Grep", pattern="line", path="notes.txt", output_mode="count")
    assert counted.content == f"{ws / 'notes.txt'}:10"
    assert (await call(ctx, "Grep", pattern="nothing-like-this")).content == "No matches found"
    bad = await call(ctx, "Grep", pattern="(unclosed")
    assert bad.is_error and "regular expression" in bad.content


async def test_ls(sandbox: ProcessSandbox, agent_dir: Path) -> None:
    ctx = context(sandbox, agent_dir)
    listing = (await call(ctx, "LS")).content.splitlines()
    assert listing[0] == f"{sandbox.workspace}/"
    assert "  - src/" in listing and "  - README.md" in listing
    ignored = (await call(ctx, "LS", ignore=["*.md"])).content
    assert "README.md" not in ignored
    assert (await call(ctx, "LS", path="src/pkg")).content.endswith("  - util.py")
    assert (await call(ctx, "LS", path="../")).is_error


async def test_traversal_and_escaping_symlinks_are_refused(
    sandbox: ProcessSandbox, agent_dir: Path, tmp_path: Path
) -> None:
    ctx = context(sandbox, agent_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TODO top secret")
    ws = sandbox.workspace
    (ws / "leak").symlink_to(outside / "secret.txt")
    (ws / "dirleak").symlink_to(outside)
    for name, args in [
        ("Read", {"file_path": "../x"}),
        ("Read", {"file_path": "../../outside/secret.txt"}),
        ("Read", {"file_path": "leak"}),
        ("Read", {"file_path": "dirleak/secret.txt"}),
        ("Write", {"file_path": "../escaped.txt", "content": "x"}),
        ("Write", {"file_path": "dirleak/planted.txt", "content": "x"}),
        ("Edit", {"file_path": "leak", "old_string": "TODO", "new_string": "DONE"}),
        ("LS", {"path": "dirleak"}),
        ("Grep", {"pattern": "x", "path": "/etc"}),
    ]:
        result = await call(ctx, name, **args)
        assert result.is_error, (name, args, result)
        assert "outside the workspace" in result.content
    assert not (ws.parent / "escaped.txt").exists()
    assert not (outside / "planted.txt").exists()
    assert (outside / "secret.txt").read_text() == "TODO top secret"
    # Walks do not follow the links out: the secret is not searched or listed.
    grep = await call(ctx, "Grep", pattern="top secret")
    assert grep.content == "No matches found"
    glob = await call(ctx, "Glob", pattern="**/secret.txt")
    assert glob.content == "No files found"


async def test_read_rules_filter_walkers(sandbox: ProcessSandbox, agent_dir: Path) -> None:
    ctx = context(sandbox, agent_dir, deny=["Read(src/pkg/**)"])
    grep = await call(ctx, "Grep", pattern="TODO")
    assert grep.content == str(sandbox.workspace / "README.md")
    glob = await call(ctx, "Glob", pattern="**/*.py")
    assert "util.py" not in glob.content and "main.py" in glob.content


async def test_bash_tool(sandbox: ProcessSandbox, agent_dir: Path) -> None:
    ctx = context(sandbox, agent_dir)
    ok = await call(ctx, "Bash", command="echo hi; echo warn >&2")
    assert ok == ToolResult("hi\nwarn", False)
    failed = await call(ctx, "Bash", command="echo partial; exit 3")
    assert failed.is_error and failed.content == "partial\nExit code 3"
    slow = await call(ctx, "Bash", command="sleep 30", timeout=1000)
    assert slow.is_error and "timed out after 1s" in slow.content
    quiet = await call(ctx, "Bash", command="true")
    assert quiet == ToolResult("(no output)", False)
    long = await call(ctx, "Bash", command="head -c 100000 /dev/zero | tr '\\0' a")
    assert len(long.content) < 31_000 and "characters truncated" in long.content


async def test_skill_tool(sandbox: ProcessSandbox, agent_dir: Path) -> None:
    ctx = context(sandbox, agent_dir)
    assert [t.name for t in available_tools(ctx.spec)][-1] == "Skill"
    result = await call(ctx, "Skill", skill="review")
    assert not result.is_error and result.content.endswith("Check X.\n")
    unknown = await call(ctx, "Skill", skill="nope")
    assert unknown.is_error and "review" in unknown.content
