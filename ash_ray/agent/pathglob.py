"""Glob patterns over workspace-relative POSIX paths, shared by rules and file tools.

One dialect everywhere, so that ``Read(./docs/**)`` in settings.json, ``Glob
**/*.py`` and Grep's ``glob`` agree: ``**`` spans directories, ``*`` and ``?`` stay
inside one path segment, ``[abc]`` is a character class and ``{a,b}`` an alternation.
"""

from __future__ import annotations

import functools
import re


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    depth = 0  # open {…} groups, where "," separates alternatives
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    out.extend(")" * depth)
    return "".join(out)


@functools.lru_cache(maxsize=512)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` to a regex matching a whole relative path.

    A pattern ending in ``/**`` also matches the directory itself, so that
    ``docs/**`` covers listing ``docs``.
    """
    regex = _translate(pattern)
    if pattern.endswith("/**"):
        regex = f"(?:{regex}|{_translate(pattern[:-3])})"
    try:
        return re.compile(f"(?s:{regex})\\Z")
    except re.error:
        return re.compile(re.escape(pattern) + "\\Z")


def glob_match(pattern: str, path: str) -> bool:
    """True when the relative POSIX ``path`` matches ``pattern`` as a whole."""
    return compile_glob(pattern).match(path) is not None
