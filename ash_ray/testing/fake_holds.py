"""Hold/release latches of the fake Messages API: tests order events without delays.

A :class:`Hold` catches the next ``POST /v1/messages`` request (or the next one whose
newest message contains a marker) and parks its reply at a point of the stream until the
test releases it:

- ``at="first_token"``: after the headers and ``message_start``, before the first
  content token (a turn that is "thinking");
- ``at="message_stop"``: after every content token and ``message_delta``, before
  ``message_stop`` (a turn whose text streamed but which has not finished);
- ``at="token:N"``: before the N-th content token, counting from 0 (a reply cut in the
  middle of a block; ``token:0`` is ``first_token``).

A non-streaming request is held before its body, whatever ``at`` says. ``seen`` is set
when the request arrives, ``held`` when the reply is parked. A hold releases itself after
``timeout_s`` (a test that fails before releasing must not wedge the fake), and
``FakeAnthropic.reset()``/``stop()`` release every hold.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from types import TracebackType
from typing import Any, Literal

logger = logging.getLogger(__name__)

HoldPoint = Literal["first_token", "message_stop"] | str  # or "token:N"
HOLD_POINTS = ("first_token", "message_stop", "token:N")
# Long enough for any test step, short enough that a forgotten hold does not wedge a run.
DEFAULT_HOLD_S = 300.0


def before_token(at: str) -> int | None:
    """The token a hold point parks before (None for message_stop); ValueError if bad."""
    if at == "message_stop":
        return None
    if at == "first_token":
        return 0
    number = at.removeprefix("token:")
    if at.startswith("token:") and number.isdigit():
        return int(number)
    raise ValueError(f"hold at {at!r}: choose one of {', '.join(HOLD_POINTS)}")


class Hold:
    """One latch on one reply. Use as a context manager so it is released on the way out."""

    def __init__(self, hold_id: str, marker: str | None, at: HoldPoint, timeout_s: float) -> None:
        self.before_token = before_token(at)  # None: hold at message_stop
        self.id = hold_id
        self.marker = marker
        self.at: HoldPoint = at
        self.timeout_s = timeout_s
        self.request: dict[str, Any] | None = None  # the body of the request it caught
        self._seen = threading.Event()
        self._held = threading.Event()
        self._released = threading.Event()

    @property
    def seen(self) -> bool:
        """The request arrived (its reply is now held or about to be)."""
        return self._seen.is_set()

    @property
    def held(self) -> bool:
        """The reply is parked at its hold point."""
        return self._held.is_set()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def matches(self, body: dict[str, Any]) -> bool:
        """True for any request without a marker; else when the newest message holds it."""
        if self.marker is None:
            return True
        messages = body.get("messages") or [{}]
        return self.marker in json.dumps(messages[-1], ensure_ascii=False)

    def wait_seen(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Block until the request arrived; returns its body. TimeoutError otherwise."""
        self._wait(self._seen, "seen", timeout_s)
        assert self.request is not None
        return self.request

    def wait_held(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Block until the reply is parked at its hold point; returns the request body."""
        self._wait(self._held, "held", timeout_s)
        assert self.request is not None
        return self.request

    async def wait_seen_async(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """:meth:`wait_seen` for async tests (waits in a thread, the loop keeps running)."""
        return await asyncio.to_thread(self.wait_seen, timeout_s)

    async def wait_held_async(self, timeout_s: float = 30.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.wait_held, timeout_s)

    def release(self) -> None:
        """Let the reply go on (safe to call twice, or before the request arrives)."""
        self._released.set()

    def state(self) -> dict[str, Any]:
        """The JSON form the control endpoints answer with."""
        return {"id": self.id, "marker": self.marker, "at": self.at, "seen": self.seen,
                "held": self.held, "released": self.released}  # fmt: skip

    def _wait(self, event: threading.Event, what: str, timeout_s: float) -> None:
        if not event.wait(timeout_s):
            raise TimeoutError(f"hold {self.id} (marker {self.marker!r}) not {what} "
                               f"after {timeout_s}s")  # fmt: skip

    # ---- the server side

    def catch(self, body: dict[str, Any]) -> None:
        self.request = body
        self._seen.set()

    def park(self) -> None:
        """Called by the handler thread at the hold point: wait for release()."""
        self._held.set()
        if not self._released.wait(self.timeout_s):
            logger.warning("fake-anthropic: hold %s never released; going on", self.id)

    def __enter__(self) -> Hold:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Holds:
    """The holds of one fake server: pending ones wait for a request, all are kept by id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: list[Hold] = []
        self._by_id: dict[str, Hold] = {}

    def add(self, marker: str | None, at: HoldPoint, timeout_s: float) -> Hold:
        with self._lock:
            hold = Hold(f"hold-{next(self._ids)}", marker, at, timeout_s)
            self._pending.append(hold)
            self._by_id[hold.id] = hold
        return hold

    def claim(self, body: dict[str, Any]) -> Hold | None:
        """The first pending hold this request matches (it stops pending), or None."""
        with self._lock:
            hold = next((h for h in self._pending if h.matches(body)), None)
            if hold is not None:
                self._pending.remove(hold)
        if hold is not None:
            hold.catch(body)
        return hold

    def get(self, hold_id: str) -> Hold | None:
        with self._lock:
            return self._by_id.get(hold_id)

    def release_all(self) -> None:
        """Release every hold and forget them (pending ones will catch nothing)."""
        with self._lock:
            holds = list(self._by_id.values())
            self._pending.clear()
            self._by_id.clear()
        for hold in holds:
            hold.release()
