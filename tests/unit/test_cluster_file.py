"""The cluster file: which address a driver joins, and when its token applies."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ash_ray import cluster_file
from ash_ray.cluster_file import ClusterInfo

ADDRESS = "127.0.0.1:40123"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ASH_RAY_ADDRESS", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                "RAY_AUTH_TOKEN_PATH", "ASH_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)


def put(data_dir: Path, pid: int | None = None, address: str = ADDRESS) -> ClusterInfo:
    info = ClusterInfo(address=address, auth_mode="token", token="t0k", namespace="ash",
                       url="http://127.0.0.1:4100", pid=pid or os.getpid())
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster_file.path_for(data_dir).write_text(info.model_dump_json())
    return info


def test_no_file_means_auto(tmp_path: Path) -> None:
    assert cluster_file.driver_address(None, tmp_path) == ("auto", None)


def test_a_running_start_is_found(tmp_path: Path) -> None:
    info = put(tmp_path)
    assert cluster_file.driver_address(None, tmp_path) == (ADDRESS, info)


def test_data_dir_comes_from_ash_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = put(tmp_path / "d")
    monkeypatch.setenv("ASH_DATA_DIR", str(tmp_path / "d"))
    assert cluster_file.driver_address(None) == (ADDRESS, info)


def test_a_file_left_by_a_dead_process_is_ignored(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    put(tmp_path, pid=dead.pid)
    assert cluster_file.driver_address(None, tmp_path) == ("auto", None)


def test_explicit_addresses_win_and_get_the_token_only_for_their_own_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = put(tmp_path)
    assert cluster_file.driver_address(ADDRESS, tmp_path) == (ADDRESS, info)
    assert cluster_file.driver_address("10.0.0.9:6379", tmp_path) == ("10.0.0.9:6379", None)
    monkeypatch.setenv("ASH_RAY_ADDRESS", "10.0.0.8:6379")
    assert cluster_file.driver_address(None, tmp_path) == ("10.0.0.8:6379", None)
    monkeypatch.delenv("ASH_RAY_ADDRESS")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")  # Ray resolves it for "auto"
    assert cluster_file.driver_address(None, tmp_path) == ("auto", None)


def test_the_users_auth_variables_are_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/var/run/ray-auth/auth_token")
    cluster_file.prepare_auth(put(tmp_path))
    assert "RAY_AUTH_TOKEN" not in os.environ
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == "/var/run/ray-auth/auth_token"


def test_write_is_owner_only_and_remove_only_removes_our_own(tmp_path: Path) -> None:
    path = cluster_file.path_for(tmp_path)
    path.write_text("{}")
    path.chmod(0o644)  # left over, too open: rewritten 0600
    settings = SimpleNamespace(namespace="ash", host="127.0.0.1", port=4100, data_dir=tmp_path)
    ray = SimpleNamespace(get_runtime_context=lambda: SimpleNamespace(gcs_address=ADDRESS))
    assert cluster_file.write(settings, ray) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cluster_file.read(tmp_path) is not None
    assert cluster_file.read(tmp_path).address == ADDRESS  # type: ignore[union-attr]

    put(tmp_path, pid=1)  # another start took over the data dir
    cluster_file.remove(tmp_path)
    assert path.exists()
    put(tmp_path)
    cluster_file.remove(tmp_path)
    assert not path.exists()
