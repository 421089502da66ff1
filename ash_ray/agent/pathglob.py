"""The one glob dialect of permission rules and file tools, on ``wcmatch``.

One dialect everywhere, so that ``Read(./docs/**)`` in settings.json, ``Glob
**/*.py`` and Grep's ``glob`` agree: ``**`` spans directories, ``*`` and ``?`` stay
inside one path segment (and match dotfiles), ``[abc]``/``[!abc]`` are character
classes and ``{a,b}`` an alternation. Paths are workspace-relative POSIX paths.
"""

from __future__ import annotations

import functools

from wcmatch import glob

# No NEGATE/EXTGLOB: a leading "!" or "+(" in a file name is literal, as Claude Code's.
FLAGS = glob.GLOBSTAR | glob.BRACE | glob.DOTGLOB | glob.FORCEUNIX


@functools.lru_cache(maxsize=512)
def compile_glob(pattern: str) -> glob.WcMatcher:
    """A matcher whose ``match(path)`` is True when the whole relative path matches.

    A pattern ending in ``/**`` also matches the directory itself, so that ``docs/**``
    covers listing ``docs``.
    """
    patterns = [pattern, pattern[:-3]] if pattern.endswith("/**") else [pattern]
    return glob.compile(patterns, flags=FLAGS)


def glob_match(pattern: str, path: str) -> bool:
    """True when the relative POSIX ``path`` matches ``pattern`` as a whole."""
    return bool(compile_glob(pattern).match(path))
