"""Filesystem and network isolation with bubblewrap (or ``unshare --net`` without it).

The sandbox's root is an empty tmpfs on which only an allowlist of the host is
mounted, read-only: the system dirs (``/usr``, ``/bin``, ``/lib*``, ``/sbin``,
``/etc`` minus its secrets) and ``sandbox_extra_ro_paths``. Everything else is simply
absent: home directories (``/root`` with Ray's ``~/.ray`` token, ``/home/*``),
``/var`` and ``/run`` (Kubernetes service-account tokens, the docker socket),
``/opt``, ``/srv``, ``/mnt``, ``/sys``. On top, in this order (later mounts cover
earlier ones):

1. a fresh ``/dev``, ``/proc`` of a new pid namespace (the server's processes and
   their environments are invisible), empty ``/tmp`` and ``/var/tmp`` (Ray's session
   dir ``/tmp/ray`` with its sockets and logs is not there);
2. ``/dev/null`` over the secret files of ``/etc`` (shadow, ssh host keys) and an
   empty tmpfs over ``/etc/ssl/private``; with egress, a resolv.conf naming
   slirp4netns' DNS forwarder;
3. an empty tmpfs over the data dir (and the snapshot dir), which hides the database,
   the agents and every other session's workspace, wherever they live;
4. the workspace bound read-write at its own path; then bwrap's root and the empty
   tmpfs mounts are made read-only, so only the workspace, ``/tmp`` and ``/var/tmp``
   (capped at ``sandbox_memory_mb``) are writable.

Every command gets its own network namespace (``--unshare-net``); what it may reach
from there is :mod:`ash_ray.sandbox.netns`' business.

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
import glob
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
LAUNCH_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
VISIBLE_PATHS: tuple[str, ...] = (
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
)
# Files of /etc replaced by /dev/null and dirs replaced by an empty tmpfs.
ETC_SECRET_GLOBS: tuple[str, ...] = (
    "/etc/shadow*", "/etc/gshadow*", "/etc/security/opasswd", "/etc/ssh/ssh_host_*key",
    "/etc/sudoers", "/etc/krb5.keytab",
)
ETC_SECRET_DIRS: tuple[str, ...] = ("/etc/ssl/private", "/etc/sudoers.d")


def find_bwrap() -> str | None:
    """Path of the bwrap binary on PATH, if any."""
    return shutil.which("bwrap")


def _namespace_flags() -> list[str]:
    return [
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--hostname",
        "ash-sandbox",
        "--cap-drop",
        "ALL",
    ]


def _mount_visible(paths: Sequence[str]) -> list[str]:
    """Read-only binds of ``paths`` that exist (a symlink, as in merged /usr, stays one)."""
    argv: list[str] = []
    for path in paths:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            argv += ["--ro-bind", path, path]
    return argv


def _mask_etc_secrets() -> list[str]:
    argv: list[str] = []
    for pattern in ETC_SECRET_GLOBS:
        for path in sorted(glob.glob(pattern)):
            if os.path.isfile(path) and not os.path.islink(path):
                argv += ["--ro-bind", "/dev/null", path]
    for path in ETC_SECRET_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            argv += ["--tmpfs", path, "--remount-ro", path]
    return argv


@functools.cache
def _supports_size(bwrap: str) -> bool:
    """bwrap >= 0.8 can cap a tmpfs (``--size``); older ones refuse the flag."""
    try:
        out = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
            env=LAUNCH_ENV, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return "--size" in out.stdout


def base_argv(
    bwrap: str, extra_visible: Sequence[str] = (), tmp_size_mb: int | None = None
) -> list[str]:
    """Root layout and namespaces shared by every command (and the probes).

    ``tmp_size_mb`` caps /tmp and /var/tmp (tmpfs is memory; it is charged to the
    sandbox's memory cgroup too, but rlimit mode has none).
    """
    argv = _mount_visible([*VISIBLE_PATHS, *extra_visible])
    argv += ["--dev", "/dev", "--proc", "/proc"]
    size = []
    if tmp_size_mb and _supports_size(bwrap):
        size = ["--size", str(tmp_size_mb * 1024 * 1024)]
    argv += [*size, "--tmpfs", "/tmp", *size, "--tmpfs", "/var/tmp"]
    return [*argv, *_mask_etc_secrets(), *_namespace_flags()]


def hidden_dirs(*dirs: Path) -> list[Path]:
    """Existing ``dirs`` (data dir, snapshot dir) to cover with an empty tmpfs."""
    out: list[Path] = []
    for path in dirs:
        real = Path(os.path.realpath(path))
        covered = any(real == h or h in real.parents for h in out)
        if real.is_dir() and real != Path("/") and not covered:
            out.append(real)
    return out


def bwrap_argv(
    bwrap: str,
    *,
    workspace: Path,
    hidden: Sequence[Path],
    env: Mapping[str, str],
    cwd: Path,
    command: Sequence[str],
    extra_visible: Sequence[str] = (),
    tmp_size_mb: int | None = None,
    resolv_conf: Path | None = None,
    handshake: Sequence[str] = (),
) -> list[str]:
    """The bwrap command line that runs ``command`` in ``workspace`` (see module doc).

    ``resolv_conf`` is bound over /etc/resolv.conf; ``handshake`` are the
    ``--info-fd``/``--block-fd`` flags of an egress handshake.
    """
    argv = [bwrap, *base_argv(bwrap, extra_visible, tmp_size_mb)]
    if resolv_conf is not None:
        argv += ["--ro-bind", str(resolv_conf), "/etc/resolv.conf"]
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
    # The empty tmpfs mounts (bwrap's root among them) would otherwise be writable
    # and unbounded; the workspace and /tmp are separate mounts and stay writable.
    for path in [Path("/"), *outer, *(h for h in inner if h != workspace)]:
        argv += ["--remount-ro", str(path)]
    argv += [*handshake, "--clearenv"]
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
def probe_bwrap(bwrap: str, extra_visible: tuple[str, ...] = ()) -> str | None:
    """None when bwrap works here with our flags (own network namespace included)."""
    true = shutil.which("true") or "/bin/true"
    reason = _run_probe(
        [bwrap, *base_argv(bwrap, extra_visible, 16), "--remount-ro", "/", "--clearenv", "--", true]
    )
    if reason:
        logger.warning("bubblewrap at %s unusable: %s", bwrap, reason)
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
