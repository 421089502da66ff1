"""Which isolation a sandbox gets on this machine, and the summary ``/health`` shows.

Two choices, both probed once per process:

* filesystem: bubblewrap (allowlisted read-only root, own pid/ipc/uts/net namespaces;
  see :mod:`ash_ray.sandbox.bwrap`) or none (trusted agents, development);
* network (see :mod:`ash_ray.sandbox.netns`): ``isolated-egress`` when egress is on
  and slirp4netns works, ``loopback-only`` when egress is off or slirp4netns is
  unusable (degraded, never to the host's network), ``host`` only without bubblewrap.
"""

from __future__ import annotations

import logging
from typing import Any

from ash_ray.config import Settings
from ash_ray.errors import SandboxError
from ash_ray.sandbox.bwrap import base_argv, find_bwrap, probe_bwrap, unshare_net_prefix
from ash_ray.sandbox.limits import detect_limit_mode
from ash_ray.sandbox.netns import NetworkMode, probe_egress

logger = logging.getLogger(__name__)


def choose_isolation(settings: Settings) -> tuple[str, str | None]:
    """``("bwrap", path)`` or ``("none", None)``; SandboxError if bwrap is required but broken."""
    wanted = settings.sandbox_isolation
    if wanted == "none":
        return "none", None
    bwrap = find_bwrap()
    extra = tuple(settings.sandbox_extra_ro_paths)
    reason = "bwrap is not on PATH" if bwrap is None else probe_bwrap(bwrap, extra)
    if reason is None:
        return "bwrap", bwrap
    if wanted == "bwrap":
        raise SandboxError(
            f"ASH_SANDBOX_ISOLATION=bwrap but bubblewrap cannot run here: {reason}; "
            "install bubblewrap (and allow user namespaces) or use auto",
            isolation="bwrap",
        )
    logger.warning("sandbox runs WITHOUT filesystem isolation: %s", reason)
    return "none", None


def choose_network(
    settings: Settings, isolation: str, bwrap: str | None, egress: bool
) -> tuple[NetworkMode, str | None]:
    """The network mode for these choices, and why it is weaker than asked (or None)."""
    if isolation != "bwrap" or bwrap is None:
        # Without bwrap, `unshare --net` can still cut the network (create_sandbox
        # fails if even that is impossible); egress then shares the host's network.
        if egress:
            return "host", "no bubblewrap: tools share the server's network"
        return "loopback-only", None
    if not egress:
        return "loopback-only", None
    reason = probe_egress(bwrap, tuple(base_argv(bwrap, settings.sandbox_extra_ro_paths)))
    if reason is None:
        return "isolated-egress", None
    logger.warning("sandbox egress unavailable, tools get loopback only: %s", reason)
    return "loopback-only", f"egress unavailable: {reason}"


def describe_isolation(settings: Settings) -> dict[str, Any]:
    """What a default sandbox gets here, for ``/health``.

    ``{"filesystem": "bwrap" | "none" | "unavailable", "network": "isolated-egress" |
    "loopback-only" | "host" | "unavailable", "egress": bool (the setting),
    "limits": "cgroup2" | "cgroup1" | "rlimit" | "unavailable", "degraded": [reasons]}``.
    Never raises: a setting this machine cannot honour shows as ``unavailable`` with
    its reason (sessions then fail to start with the same message).
    """
    degraded: list[str] = []
    try:
        limits = detect_limit_mode(settings)
    except SandboxError as exc:
        limits = "unavailable"
        degraded.append(str(exc))
    try:
        filesystem, bwrap = choose_isolation(settings)
    except SandboxError as exc:
        degraded.append(str(exc))
        return _summary("unavailable", "unavailable", settings, limits, degraded)
    if filesystem == "none" and settings.sandbox_isolation == "auto":
        degraded.append("bubblewrap unusable: no filesystem isolation")
    mode, reason = choose_network(settings, filesystem, bwrap, settings.sandbox_network)
    network: str = mode
    if reason:
        degraded.append(reason)
    if network == "loopback-only" and filesystem == "none" and unshare_net_prefix() is None:
        network = "unavailable"
        degraded.append("network cut requested but `unshare --net` does not work here")
    return _summary(filesystem, network, settings, limits, degraded)


def _summary(
    filesystem: str, network: str, settings: Settings, limits: str, degraded: list[str]
) -> dict[str, Any]:
    return {
        "filesystem": filesystem,
        "network": network,
        "egress": settings.sandbox_network,
        "limits": limits,
        "degraded": degraded,
    }
