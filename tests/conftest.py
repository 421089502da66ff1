"""Shared fixtures. Each concern has its own section; keep them apart."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ash_ray.testing.postgres import TempPostgres

# --- postgres ---
# One throwaway cluster per test run (tests using it carry the `postgres` marker).
# If it cannot start, tests skip with the reason, or fail when CI=true.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TempPostgres]:
    """The run's TempPostgres (started on first use, stopped and deleted at the end)."""
    server = TempPostgres()
    try:
        server.start()
    except Exception as exc:
        reason = f"throwaway Postgres could not start: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: TempPostgres) -> str:
    """URL of the run's shared database (tests see each other's rows)."""
    return postgres_server.url


@pytest.fixture
def postgres_db_url(postgres_server: TempPostgres) -> Iterator[str]:
    """URL of a fresh, empty database for this test only (dropped afterwards)."""
    url = postgres_server.create_database()
    print(f"postgres database for this test: {url}")  # shown when the test fails
    yield url
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    try:
        postgres_server.drop_database(name)
    except Exception as exc:  # a leftover database in a throwaway cluster is harmless
        print(f"could not drop {name}: {exc}")


# --- end postgres ---
