"""Where a local ``ash-ray start`` runs Ray, and how another driver authenticates to it.

Ray 2.60 turns token authentication on for every new local cluster, but a driver given an
explicit address sends no token unless ``RAY_AUTH_MODE=token`` is in its environment
before Ray reads its config. So ``ash-ray start`` writes ``<data_dir>/ray-cluster.json``
(mode 0600: it holds the token) and removes it on shutdown; ``connect()`` and
``ash-ray ps`` read it, and set Ray's auth variables for their own process, never
overriding ones the user set (a KubeRay driver pod gets its token from a mounted Secret).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

FILE_NAME = "ray-cluster.json"
AUTH_MODE_VAR = "RAY_AUTH_MODE"
TOKEN_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"


class ClusterInfo(BaseModel):
    """What a driver needs to join the Ray cluster of a running ``ash-ray start``."""

    model_config = ConfigDict(frozen=True)

    address: str
    auth_mode: Literal["token", "disabled"]
    token: str | None = None
    namespace: str
    url: str
    pid: int


def default_data_dir() -> Path:
    """``ASH_DATA_DIR`` or its default, without validating the rest of the settings.

    A driver only needs this one value; a stray bad ``ASH_*`` variable in its environment
    should not stop it from connecting.
    """
    from ash_ray.config import Settings

    given = os.environ.get("ASH_DATA_DIR")
    return Path(given).expanduser() if given else Path(Settings.model_fields["data_dir"].default)


def path_for(data_dir: Path) -> Path:
    return Path(data_dir) / FILE_NAME


def _current_auth() -> tuple[Literal["token", "disabled"], str | None]:
    """This process's Ray auth mode and token (call after ``ray.init``)."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

    if not is_token_auth_enabled():
        return "disabled", None
    return "token", AuthenticationTokenLoader.instance().get_raw_token() or None


def write(settings: Any, ray: Any) -> Path:
    """Record this process's Ray cluster in the data dir, readable by its owner only."""
    mode, token = _current_auth()
    info = ClusterInfo(
        address=ray.get_runtime_context().gcs_address,
        auth_mode=mode,
        token=token,
        namespace=settings.namespace,
        url=f"http://{settings.host}:{settings.port}",
        pid=os.getpid(),
    )
    path = path_for(settings.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file left over from a crash
    with os.fdopen(fd, "w") as f:
        f.write(info.model_dump_json(indent=2))
    os.replace(tmp, path)  # readers never see half a file
    return path


def remove(data_dir: Path) -> None:
    """Delete the file if this process wrote it (another ``start`` may own it now)."""
    path = path_for(data_dir)
    info = _load(path)
    if info is not None and info.pid == os.getpid():
        path.unlink(missing_ok=True)


def _load(path: Path) -> ClusterInfo | None:
    try:
        return ClusterInfo.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read(data_dir: Path | None = None) -> ClusterInfo | None:
    """The running local cluster's info; None when absent or left by a killed process."""
    info = _load(path_for(data_dir or default_data_dir()))
    return info if info is not None and _alive(info.pid) else None


def driver_address(
    address: str | None, data_dir: Path | None = None
) -> tuple[str, ClusterInfo | None]:
    """The address a driver should join, and the local cluster info that goes with it.

    An explicit ``address`` wins, then ``ASH_RAY_ADDRESS``, then ``RAY_ADDRESS`` (Ray reads
    it for ``"auto"``), then a local ``ash-ray start``'s file, then ``"auto"``. The file's
    token is used only for the address it names.
    """
    info = read(data_dir)
    explicit = address or os.environ.get("ASH_RAY_ADDRESS")
    if explicit:
        return explicit, info if info is not None and info.address == explicit else None
    if os.environ.get("RAY_ADDRESS"):
        return "auto", None
    if info is not None:
        return info.address, info
    return "auto", None


def prepare_auth(info: ClusterInfo | None) -> None:
    """Set Ray's token variables in this process before ``ray.init``; the user's win.

    Token mode is turned on when the cluster file says so, or when the environment already
    carries a token (``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``, e.g. from a Kubernetes
    Secret) but not the mode, which Ray itself only infers for ``address="auto"``.
    """
    env = os.environ
    changed = False
    if info is not None and info.auth_mode == "token" and info.token:
        if TOKEN_VAR not in env and TOKEN_PATH_VAR not in env:
            env[TOKEN_VAR] = info.token
            changed = True
    wants_token = (info is not None and info.auth_mode == "token") or (
        TOKEN_VAR in env or TOKEN_PATH_VAR in env
    )
    if AUTH_MODE_VAR not in env and wants_token:
        env[AUTH_MODE_VAR] = "token"
        changed = True
    if changed:
        # Ray caches its config and token when imported: re-read both, as Ray's own
        # authentication_token_setup._enable_token_auth does.
        from ray._raylet import (  # type: ignore[attr-defined]
            AuthenticationTokenLoader,
            Config,
        )

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def prepare_driver(address: str | None, data_dir: Path | None = None) -> str:
    """:func:`driver_address` plus :func:`prepare_auth`: the address to pass to ``ray.init``."""
    resolved, info = driver_address(address, data_dir)
    prepare_auth(info)
    if resolved.rsplit(":", 1)[0] in ("127.0.0.1", "localhost"):
        _stay_on_loopback()
    return resolved


def _stay_on_loopback() -> None:
    """Keep Ray from rewriting a loopback GCS address to this host's outward IP.

    ``ash-ray start`` binds every Ray service to 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
    =0); a driver without that variable would dial ``<node ip>:<port>`` and never connect.
    Ray reads it when imported, so the module constant is set too.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
