"""The environment a sandboxed command sees: an allowlist, never the server's own.

Only ``PATH``, ``LANG`` and ``TERM`` are taken from the server process; ``HOME`` is the
workspace. The agent's and session's ``extra_env`` is added on top because the user
asked for it explicitly, except names that carry ash-ray's or the model's own secrets
(``ANTHROPIC_*``, ``ASH_*``, ``DATABASE_URL``): those are dropped even from
``extra_env`` so that no configuration mistake can hand the model key to a tool.
Cloud credentials (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``) never come from the server
environment; a user who puts them in ``extra_env`` means the agent to have them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

INHERITED_VARS: tuple[str, ...] = ("PATH", "LANG", "TERM")
SECRET_PREFIXES: tuple[str, ...] = ("ANTHROPIC_", "ASH_")
SECRET_NAMES: frozenset[str] = frozenset({"DATABASE_URL"})
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEFAULTS = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "TERM": "dumb"}


def is_secret_name(name: str) -> bool:
    """True for variable names that must never enter a sandbox."""
    upper = name.upper()
    return upper in SECRET_NAMES or upper.startswith(SECRET_PREFIXES)


def sandbox_env(
    workspace: Path,
    extra_env: Mapping[str, str] | None = None,
    parent: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Build the environment of a sandboxed command.

    ``parent`` defaults to the server's environment; only the allowlisted names are
    read from it.
    """
    source = os.environ if parent is None else parent
    env = {name: source.get(name) or _DEFAULTS[name] for name in INHERITED_VARS}
    env["HOME"] = str(workspace)
    dropped = []
    for name, value in (extra_env or {}).items():
        if is_secret_name(name):
            dropped.append(name)
            continue
        env[name] = str(value)
    if dropped:
        logger.warning("dropped secret variables from sandbox extra_env: %s", sorted(dropped))
    return env
