"""Shared fixtures. Each concern has its own section; keep them apart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import in_ci
from tests.pg import TempPostgres

# --- CI: what needs real infrastructure never skips ---
# Locally, a test that needs Ray, Postgres, bubblewrap or a browser may skip when the
# machine lacks it. With CI=true such a skip is a failure: CI must run everything.

NEEDS_INFRASTRUCTURE = ("ray", "postgres", "sandbox", "browser")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    needs = [m for m in NEEDS_INFRASTRUCTURE if item.get_closest_marker(m) is not None]
    if needs:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI=true: a test that needs {', '.join(needs)} skipped: {reason}"


# --- postgres ---
# One throwaway cluster per test run (tests using it carry the `postgres` marker).
# If it cannot start, tests skip with the reason (a failure when CI=true, see above).


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TempPostgres]:
    """The run's TempPostgres (started on first use, stopped and deleted at the end)."""
    server = TempPostgres()
    try:
        server.start()
    except Exception as exc:
        pytest.skip(f"throwaway Postgres could not start: {exc}")
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
