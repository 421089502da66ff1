"""Permission rules: parsing, matching, deny-wins, allow restricts, session tool lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ash_ray.agent.pathglob import glob_match
from ash_ray.agent.permissions import (
    PermissionPolicy,
    PermissionRules,
    Rule,
    bash_segments,
    relative_target,
)

WS = Path("/ws")


def policy(
    allow: Sequence[str] = (), deny: Sequence[str] = (), **kw: Sequence[str]
) -> PermissionPolicy:
    rules = PermissionRules.from_settings({"allow": list(allow), "deny": list(deny)})
    return PermissionPolicy(rules, **kw)


def bash(p: PermissionPolicy, command: str) -> str | None:
    return p.check("Bash", {"command": command}, WS)


def test_rule_parsing() -> None:
    assert Rule.parse("Bash") == Rule("Bash")
    assert Rule.parse("Bash(*)") == Rule("Bash")
    assert Rule.parse("Bash()") == Rule("Bash")
    assert Rule.parse(" Bash(npm test:*) ") == Rule("Bash", "npm test:*")
    assert Rule.parse("WebFetch(domain:example.com)") == Rule("WebFetch", "domain:example.com")
    assert Rule.parse("mcp__github__list") == Rule("mcp__github__list")
    assert str(Rule.parse("Read(./docs/**)")) == "Read(./docs/**)"
    for bad in ("", "Bash(", "(x)", "Bash(x) y"):
        with pytest.raises(ValueError):
            Rule.parse(bad)


def test_bash_segments() -> None:
    assert bash_segments("npm test") == ["npm test"]
    assert bash_segments("git status && rm -rf x; echo 'a && b' | wc -l") == [
        "git status",
        "rm -rf x",
        "echo a && b",
        "wc -l",
    ]
    assert bash_segments("echo $(rm -rf /)") == ["echo $", "rm -rf /"]
    assert bash_segments("echo `rm x`") == ["echo", "rm x"]
    assert bash_segments("ls\nrm y") == ["ls", "rm y"]
    assert bash_segments("echo 'unbalanced") == ["echo 'unbalanced"]


def test_bash_prefix_exact_and_glob() -> None:
    p = policy(allow=["Bash(npm test:*)", "Bash(git status)", "Bash(npm run *)"])
    assert bash(p, "npm test") is None
    assert bash(p, "npm test -- --watch") is None
    assert bash(p, "git status") is None
    assert bash(p, "npm run build") is None
    assert bash(p, "npm testing") is not None
    assert bash(p, "git status --short") is not None
    assert bash(p, "git push") is not None
    # Every part of a compound command must be allowed.
    assert bash(p, "npm test && git push") is not None
    assert bash(p, "git status; npm test") is None


def test_deny_wins_and_catches_any_part() -> None:
    p = policy(allow=["Bash"], deny=["Bash(rm:*)", "Bash(curl:*)"])
    assert bash(p, "ls -la") is None
    reason = bash(p, "rm -rf /")
    assert reason is not None and "denied" in reason and "Bash(rm:*)" in reason
    assert bash(p, "ls && rm -rf x") is not None
    assert bash(p, "echo $(curl http://x)") is not None
    assert bash(p, "echo `rm x`") is not None
    assert bash(p, "rmdir x") is None  # prefix means a whole word


def test_tools_not_mentioned_stay_allowed() -> None:
    p = policy(allow=["Bash(npm test:*)"])
    assert p.check("Write", {"file_path": "x", "content": ""}, WS) is None
    assert p.check("Read", {"file_path": "/ws/a"}, WS) is None
    assert bash(p, "ls") is not None


def test_path_rules() -> None:
    p = policy(allow=["Read(./docs/**)", "Edit(src/*.py)"], deny=["Read(.env)", "Edit(//etc/**)"])
    assert p.check("Read", {"file_path": "docs/a/b.md"}, WS) is None
    assert p.check("Read", {"file_path": "/ws/docs/x.md"}, WS) is None
    assert p.check("Read", {"file_path": "src/main.py"}, WS) is not None
    assert p.check("Edit", {"file_path": "src/main.py"}, WS) is None
    assert p.check("Edit", {"file_path": "src/sub/main.py"}, WS) is not None  # * is one level
    # Edit rules cover Write too.
    assert p.check("Write", {"file_path": "src/new.py", "content": ""}, WS) is None
    assert p.check("Write", {"file_path": "README.md", "content": ""}, WS) is not None
    # A pattern without a slash matches at any depth (.gitignore style); deny wins.
    p2 = policy(deny=["Read(.env)"])
    assert p2.check("Read", {"file_path": "deep/dir/.env"}, WS) is not None
    assert p2.check("Read", {"file_path": ".env"}, WS) is not None
    assert p2.check("Read", {"file_path": "env.txt"}, WS) is None
    # Read rules cover the other readers: a Grep of a denied dir is refused...
    p3 = policy(deny=["Read(secrets/**)"])
    assert p3.check("Grep", {"pattern": "x", "path": "secrets"}, WS) is not None
    # ...and a Grep of everything runs but skips what is denied.
    assert p3.check("Grep", {"pattern": "x"}, WS) is None
    assert not p3.path_allowed("Grep", "secrets/key.pem")
    assert p3.path_allowed("Grep", "src/a.py")
    # Allow rules filter walkers instead of refusing them.
    assert p.check("Glob", {"pattern": "**"}, WS) is None
    assert p.path_allowed("Glob", "docs/x.md") and not p.path_allowed("Glob", "src/a.py")


def test_skill_rules() -> None:
    p = policy(deny=["Skill(dangerous)"])
    assert p.check("Skill", {"skill": "dangerous"}, WS) is not None
    assert p.check("Skill", {"skill": "fine"}, WS) is None


def test_unknown_tool_rules_are_ignored() -> None:
    p = policy(allow=["WebFetch(domain:example.com)", "mcp__x__y"], deny=["Task"])
    assert bash(p, "ls") is None
    assert p.offered(["Bash", "Read"]) == ["Bash", "Read"]


def test_session_allowed_and_disallowed_tools() -> None:
    p = policy(allowed_tools=["Read", "Bash(git status)"])
    assert p.offered(["Bash", "Read", "Write", "Skill"]) == ["Bash", "Read"]
    assert bash(p, "git status") is None
    assert bash(p, "ls") is not None
    write = p.check("Write", {"file_path": "a", "content": ""}, WS)
    assert write is not None and "not available" in write
    p = policy(disallowed_tools=["Write", "Bash(rm:*)"])
    assert p.offered(["Bash", "Write", "Edit"]) == ["Bash", "Edit"]
    assert bash(p, "rm x") is not None and bash(p, "ls") is None
    # Session rules add to the agent's.
    p = policy(allow=["Bash(ls:*)"], disallowed_tools=["Bash(ls -la:*)"])
    assert bash(p, "ls") is None and bash(p, "ls -la") is not None


def test_relative_target() -> None:
    assert relative_target(WS, "a/b") == "a/b"
    assert relative_target(WS, "/ws/a/../b") == "b"
    assert relative_target(WS, ".") == "."
    assert relative_target(WS, "~/x") == "x"
    assert relative_target(WS, "../etc/passwd") == "/etc/passwd"
    assert relative_target(WS, "/wsx/a") == "/wsx/a"


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/*.py", "a.py", True),
        ("**/*.py", "a/b/c.py", True),
        ("*.py", "a/b.py", False),
        ("src/**", "src", True),
        ("src/**", "src/a/b", True),
        ("src/**", "srcx/a", False),
        ("*.{ts,tsx}", "a.tsx", True),
        ("*.{ts,tsx}", "a.js", False),
        ("file?.txt", "file1.txt", True),
        ("[ab].txt", "b.txt", True),
        ("[!ab].txt", "b.txt", False),
        ("a+b(c).txt", "a+b(c).txt", True),
    ],
)
def test_glob_dialect(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


def test_mcp_rules_cover_servers_and_tools() -> None:
    p = policy(deny=["mcp__github__delete_repo"], allow=["mcp__notes"])
    assert p.check("mcp__github__delete_repo", {}, WS) is not None
    assert p.check("mcp__github__create_issue", {}, WS) is None
    assert p.check("mcp__notes__read", {}, WS) is None
    removed = policy(disallowed_tools=["mcp__github__*"])
    assert removed.offered(["mcp__github__a", "mcp__notes__b", "Read"]) == ["mcp__notes__b", "Read"]
    only = policy(allowed_tools=["mcp__notes", "Read"])
    assert only.offered(["mcp__github__a", "mcp__notes__b", "Read", "Bash"]) == [
        "mcp__notes__b",
        "Read",
    ]


def test_webfetch_domain_rules() -> None:
    p = policy(allow=["WebFetch(domain:example.com)"], deny=["WebFetch(domain:bad.example.com)"])
    fetch = lambda url: p.check("WebFetch", {"url": url}, WS)  # noqa: E731
    assert fetch("https://example.com/a") is None and fetch("https://docs.example.com/") is None
    assert fetch("https://bad.example.com/") is not None
    assert fetch("https://example.org/") is not None
    assert fetch("https://notexample.com/") is not None


def test_modes() -> None:
    rules = PermissionRules.from_settings({"deny": ["Bash"], "allow": ["Write(out/**)"]})
    bypass = PermissionPolicy(rules, mode="bypassPermissions", disallowed_tools=["Read"])
    assert bypass.check("Bash", {"command": "ls"}, WS) is None
    assert bypass.check("Read", {"file_path": "x"}, WS) is not None  # session lists still apply
    edits = PermissionPolicy(rules, mode="acceptEdits")
    assert edits.check("Write", {"file_path": "src/x"}, WS) is None
    assert edits.check("Bash", {"command": "ls"}, WS) is not None
    default = PermissionPolicy(rules, mode="nonsense")
    assert default.mode == "default" and default.check("Write", {"file_path": "src/x"}, WS)
