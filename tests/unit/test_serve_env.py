"""How `ash-ray start`/`serve` prepare Ray's environment for Serve direct ingress."""

from __future__ import annotations

import os
import socket

import pytest

from ash_ray import app
from ash_ray.config import load_settings
from ash_ray.errors import AshError
from ash_ray.testing.ports import free_port


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in app.DIRECT_INGRESS_KEYS:
        monkeypatch.delenv(key, raising=False)


def test_direct_ingress_gives_the_replica_exactly_ash_port() -> None:
    port = free_port()
    settings = load_settings(port=port)
    app.prepare_ray_env(settings)
    assert os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] == str(port)
    assert os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] == str(port + 1)
    assert settings.serve_proxy_port == port + 1


def test_values_inherited_from_another_instance_are_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", "1")
    monkeypatch.setenv("RAY_SERVE_ENABLE_DIRECT_INGRESS", "1")
    port = free_port()
    app.prepare_ray_env(load_settings(port=port))
    assert os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] == str(port)
    app.prepare_ray_env(load_settings(port=port, direct_ingress=False))
    assert not any(key in os.environ for key in app.DIRECT_INGRESS_KEYS)


def test_a_port_another_process_listens_on_fails_early_naming_it() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(AshError, match=f"ASH_PORT {port} is in use"):
            app.prepare_ray_env(load_settings(port=port))


def test_proxy_port_must_differ_from_ash_port() -> None:
    with pytest.raises(AshError, match="ASH_PROXY_PORT"):
        load_settings(port=5000, proxy_port=5000)
