"""Filesystem and network isolation with bubblewrap (or ``unshare --net`` without it).

Mount layout inside the sandbox, in this order (later mounts cover earlier ones):

1. ``/`` read-only, a fresh ``/dev``, ``/proc`` of a new pid namespace (the server's
   processes and their environments are invisible) and an empty ``/tmp``;
2. an empty tmpfs over the data dir (and the snapshot dir), which hides the database,
   the agents and every other session's workspace;
3. the workspace bound read-write at its own path.

``--cap-drop ALL`` matters when the server runs as root: bwrap keeps every
capability for a root caller, and a sandbox with CAP_SYS_ADMIN can simply remount
``/`` read-write. ``--clearenv`` plus ``--setenv`` hand the allowlisted environment to
the command only; bwrap itself runs with a minimal environment, so a user-supplied
``LD_PRELOAD`` never reaches the (possibly privileged) bwrap process.

Whether bwrap works is probed once per process with the exact flags we use (inside
some containers user or mount namespaces are refused); the reason it does not is
logged.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
LAUNCH_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def find_bwrap() -> str | None:
    """Path of the bwrap binary on PATH, if any."""
    return shutil.which("bwrap")


def _namespace_flags(network: bool) -> list[str]:
    flags = [
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        "ash-sandbox",
        "--cap-drop",
        "ALL",
    ]
    if not network:
        flags.append("--unshare-net")
    return flags


def bwrap_argv(
    bwrap: str,
    *,
    workspace: Path,
    hidden: Sequence[Path],
    env: Mapping[str, str],
    network: bool,
    cwd: Path,
    command: Sequence[str],
) -> list[str]:
    """The bwrap command line that runs ``command`` in ``workspace`` (see module doc)."""
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # A hidden dir inside the workspace must be mounted after it, one that holds the
    # workspace (the data dir) before it, so that the workspace shows through.
    inner = [h for h in hidden if h == workspace or workspace in h.parents]
    outer = [h for h in hidden if h not in inner]
    for path in outer:
        argv += ["--tmpfs", str(path)]
    argv += ["--bind", str(workspace), str(workspace)]
    for path in inner:
        if path != workspace:
            argv += ["--tmpfs", str(path)]
    argv += _namespace_flags(network)
    argv += ["--clearenv"]
    for name, value in env.items():
        argv += ["--setenv", name, value]
    argv += ["--chdir", str(cwd), "--", *command]
    return argv


def _run_probe(argv: list[str]) -> str | None:
    """None when ``argv`` exits 0, else why not."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            env=LAUNCH_ENV,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
    return None


@functools.lru_cache(maxsize=8)
def probe_bwrap(bwrap: str, network: bool) -> str | None:
    """None when bwrap works here with our flags (with or without a network cut)."""
    true = shutil.which("true") or "/bin/true"
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--tmpfs", "/tmp", *_namespace_flags(network), "--clearenv", "--", true]
    reason = _run_probe(argv)
    if reason:
        logger.warning("bubblewrap at %s unusable (network=%s): %s", bwrap, network, reason)
    return reason


def unshare_net_prefix() -> list[str] | None:
    """Command prefix that cuts the network without bwrap, or None if impossible here."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    # Non-root callers need a user namespace to be allowed a network namespace.
    prefix = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--net", "--map-root-user"]
    return [*prefix, "--"] if _probe_unshare(tuple(prefix)) is None else None


@functools.lru_cache(maxsize=2)
def _probe_unshare(prefix: tuple[str, ...]) -> str | None:
    reason = _run_probe([*prefix, "--", shutil.which("true") or "/bin/true"])
    if reason:
        logger.warning("unshare --net unusable: %s", reason)
    return reason
