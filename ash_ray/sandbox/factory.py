"""Building a session's sandbox from the settings and what this machine can do."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from ash_ray.config import Settings
from ash_ray.errors import SandboxError
from ash_ray.sandbox.bwrap import unshare_net_prefix
from ash_ray.sandbox.env import sandbox_env
from ash_ray.sandbox.isolation import choose_isolation, choose_network
from ash_ray.sandbox.limits import detect_limit_mode
from ash_ray.sandbox.process import ProcessSandbox


def _safe_id(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:64].strip(".")
    return cleaned or uuid.uuid4().hex


def create_sandbox(
    settings: Settings,
    workspace: Path,
    *,
    extra_env: dict[str, str] | None = None,
    network: bool | None = None,
    sandbox_id: str | None = None,
) -> ProcessSandbox:
    """Build the sandbox of one session over ``workspace`` (created if missing).

    ``network=None`` follows ``settings.sandbox_network`` (egress on or off). Raises
    SandboxError when the settings demand something this machine cannot do: bwrap
    required but missing or refused, an explicit cgroup mode that is not writable, or
    a network cut with neither bwrap nor ``unshare --net`` usable. Egress that
    slirp4netns cannot provide degrades to loopback only (logged, and reported by
    :func:`~ash_ray.sandbox.isolation.describe_isolation`), never to the host's network.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    root = workspace.resolve()
    egress = settings.sandbox_network if network is None else network
    limit_mode = detect_limit_mode(settings)
    isolation, bwrap = choose_isolation(settings)
    mode, _reason = choose_network(settings, isolation, bwrap, egress)
    net_prefix: list[str] | None = None
    if mode == "loopback-only" and isolation == "none":
        net_prefix = unshare_net_prefix()
        if net_prefix is None:
            raise SandboxError(
                "network cut requested but neither bwrap nor `unshare --net` works here; "
                "install bubblewrap or set ASH_SANDBOX_NETWORK=true"
            )
    return ProcessSandbox(
        settings,
        root,
        sandbox_id=_safe_id(sandbox_id or uuid.uuid4().hex),
        env=sandbox_env(root, extra_env),
        network_mode=mode,
        isolation=isolation,
        limit_mode=limit_mode,
        bwrap=bwrap,
        net_prefix=net_prefix,
    )
