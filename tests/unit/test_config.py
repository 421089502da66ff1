"""Settings: a bad value stops the start with the variable named; pod roles for `serve`."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from ash_ray.config import load_settings
from ash_ray.errors import ConfigError
from ash_ray.node import role


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASH_PORT", "not-a-port")
    monkeypatch.setenv("ASH_MAX_SANDBOXES", "-1")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "ASH_PORT" in str(exc.value) and "ASH_MAX_SANDBOXES" in str(exc.value)


def test_database_url_must_be_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASH_DATABASE_URL", "mysql://x")
    with pytest.raises(ConfigError, match="ASH_DATABASE_URL"):
        load_settings()


def test_defaults_and_anthropic_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("ASH_API_KEY", "")
    s = load_settings()
    assert s.port == 4100 and s.store_kind == "sqlite" and not s.auth_enabled
    assert s.anthropic_base_url == "http://127.0.0.1:9999"
    assert pickle.loads(pickle.dumps(s)) == s  # settings travel to Ray actors


def test_cockroach_style_url_selects_postgres() -> None:
    s = load_settings(database_url="postgresql://ash@db:26257/ash?sslmode=verify-full")
    assert s.store_kind == "postgres"


@pytest.mark.parametrize(
    ("pod", "given", "expected"),
    [("ash-0", "auto", "head"), ("ash-2", "auto", "worker"), ("", "auto", "head"),
     ("ash-3", "head", "head"), ("ash-0", "worker", "worker")],
)
def test_pod_role(pod: str, given: str, expected: str) -> None:
    assert role(load_settings(pod_name=pod, ray_role=given)) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////tmp/x.db", "/tmp/x.db"),  # four slashes: absolute, as in SQLAlchemy
        ("sqlite:/srv/ash.db", "/srv/ash.db"),
        ("sqlite:///rel/x.db", "/data/rel/x.db"),  # relative: under data_dir
        ("sqlite:x.db", "/data/x.db"),
        ("sqlite:", "/data/ash.db"),
        ("", "/data/ash.db"),
    ],
)
def test_sqlite_url_paths(url: str, expected: str) -> None:
    settings = load_settings(data_dir="/data", database_url=url)
    assert str(settings.sqlite_path) == expected


async def test_sqlite_url_with_an_absolute_path_opens_that_file(tmp_path: Path) -> None:
    from ash_ray.store import open_store

    target = tmp_path / "elsewhere" / "x.db"
    target.parent.mkdir()
    settings = load_settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{target}")
    async with open_store(settings):
        assert target.is_file()


def test_sqlite_url_with_a_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="ASH_DATABASE_URL"):
        load_settings(database_url="sqlite://host/x.db")
