"""One Ray cluster, one Serve app and one fake model per test session, all on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray

from ash_ray import app
from ash_ray.config import Settings, load_settings
from ash_ray.testing.fake_anthropic import FakeAnthropic
from ash_ray.testing.ports import free_port
from tests.helpers import PYTHON_DIRS, wait_for
from tests.integration.browser import CHROMIUM, CHROMIUM_ARGS

# test modules import these
__all__ = ["API_KEY", "CREDENTIAL_KEY", "MODEL_KEY", "Target", "wait_for"]

API_KEY = "test-ash-key"
MODEL_KEY = "sk-ant-test-model-key"
CREDENTIAL_KEY = "test-credential-key-seals-stored-model-keys"


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(port=0, api_key=MODEL_KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeAnthropic) -> Settings:
    return load_settings(
        data_dir=tmp_path_factory.mktemp("ash-data"),
        port=free_port(run=2),  # direct ingress takes consecutive ports
        proxy_port=free_port(),
        api_key=API_KEY,
        credential_key=CREDENTIAL_KEY,
        anthropic_api_key=MODEL_KEY,
        anthropic_base_url=fake_model.url,
        warm_pool_size=1,
        max_sandboxes=8,
        session_num_cpus=0.01,
        sweep_interval_s=3600,
        dashboard=False,
        sse_heartbeat_s=1,
        sandbox_extra_ro_paths=PYTHON_DIRS,
    )


@pytest.fixture(scope="session")
def ray_cluster(settings: Settings) -> Iterator[None]:
    # Serve direct ingress as `ash-ray start` runs it; the range holds a second port for
    # the Postgres app's replica (tests reach that app through the Serve proxy).
    app.prepare_ray_env(settings)
    os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(settings.port + 2)
    ray.init(
        address="local",
        namespace=settings.namespace,
        include_dashboard=False,
        log_to_driver=False,
        num_cpus=2,
    )
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def server(ray_cluster: None, settings: Settings) -> str:
    app.ensure_registry(settings)
    app.start_serve(settings)
    url = f"http://127.0.0.1:{settings.port}"
    wait_for(lambda: _healthy(url), timeout_s=120, what="ash-ray /health")
    return url


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture()
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="session")
def agent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("agents") / "helper"
    root.mkdir()
    (root / "CLAUDE.md").write_text("You are a helpful test agent.\n")
    (root / "notes.txt").write_text("seed file\n")
    return root


@pytest.fixture(scope="session")
def agent(server: str, agent_dir: Path) -> str:
    r = httpx.post(
        server + "/api/agents",
        json={"name": "helper", "path": str(agent_dir)},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return "helper"


@pytest.fixture(autouse=True)
def _reset_model(fake_model: FakeAnthropic) -> None:
    fake_model.reset()


# --- the same product on Postgres: a second app on the shared cluster, under /pg ---


@pytest.fixture(scope="session")
def pg_server(server: str, settings: Settings, postgres_url: str) -> str:
    from ray import serve

    pg_settings = settings.model_copy(
        update={
            "namespace": "ash-pg",
            "database_url": postgres_url,
            "data_dir": settings.data_dir / "pg-node",
        }
    )
    serve.run(app.application(pg_settings), name="ash-pg", route_prefix="/pg", blocking=False)
    url = f"http://127.0.0.1:{settings.serve_proxy_port}/pg"
    wait_for(lambda: _healthy(url), timeout_s=120, what="ash-ray on Postgres /health")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, server: str, agent_dir: Path) -> Iterator[Target]:
    """The product on each store: an HTTP client, its Ray namespace and an agent."""
    url = server if request.param == "sqlite" else request.getfixturevalue("pg_server")
    namespace = "ash" if request.param == "sqlite" else "ash-pg"
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    ) as client:
        r = client.post("/api/agents", json={"name": "helper", "path": str(agent_dir)})
        assert r.status_code == 201, r.text
        yield Target(client, namespace, "helper", request.param)


@dataclass
class Target:
    http: httpx.Client
    namespace: str
    agent: str
    store: str


# The console's end-to-end tests: one headless Chromium per test module, started on
# first use; a fresh context (empty session storage) per test.
# Module scope: Playwright's sync API runs an event loop in this thread while it is open,
# and pytest-asyncio's tests in later modules need the thread's loop free again.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package `chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server: str) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh browser context (empty session storage) on the console."""
    context = browser.new_context(
        base_url=server, viewport={"width": 1280, "height": 860}, accept_downloads=True
    )
    context.set_default_timeout(20_000)
    # expect() has its own 5 s default: too short on a loaded 2-core CI machine.
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
