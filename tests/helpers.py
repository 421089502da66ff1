"""Helpers every test module may use: the one way to poll, and free loopback ports.

Polling is for state the product does not announce (a process exiting, a row appearing).
To order events against the model, hold its reply instead (``fake_model.hold()``).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(what: str, timeout_s: float, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout_s}s waiting for {what}: last saw {last!r}")


def wait_for(
    predicate: Callable[[], T], timeout_s: float = 30, interval_s: float = 0.05, what: str = ""
) -> T:
    """Call ``predicate()`` until it returns something truthy, and return that.

    Fails with an AssertionError naming ``what`` (and the last value) after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise _timed_out(what or repr(predicate), timeout_s, last)
        time.sleep(interval_s)


def settled(read: Callable[[], T], quiet_s: float) -> Callable[[], tuple[T] | None]:
    """A :func:`wait_for` predicate: ``(value,)`` once ``read()`` has kept one value for
    ``quiet_s`` (for "it stopped making progress", which nothing announces), else None."""
    seen: list[tuple[T, float]] = []

    def check() -> tuple[T] | None:
        value, now = read(), time.monotonic()
        if not seen or seen[-1][0] != value:
            seen[:] = [(value, now)]
            return None
        return (value,) if now - seen[-1][1] >= quiet_s else None

    return check


async def wait_for_async(
    predicate: Callable[[], T | Awaitable[T]],
    timeout_s: float = 30,
    interval_s: float = 0.05,
    what: str = "",
) -> T:
    """:func:`wait_for` for async tests; ``predicate`` may be a plain or an async function."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise _timed_out(what or repr(predicate), timeout_s, last)
        await asyncio.sleep(interval_s)


# Sandboxes show only the host's system dirs; the test interpreter (and the `mcp` SDK that
# the tests' MCP servers import) may live in a home dir (pyenv) or a venv, so tests whose
# sandboxes run it make its installation visible, read-only.
PYTHON_DIRS = sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)})


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip when ``condition`` is false, except in CI where that is a failure."""
    if condition:
        return
    import pytest

    if in_ci():
        pytest.fail(f"CI=true but the sandbox feature is missing: {reason}")
    pytest.skip(reason)
