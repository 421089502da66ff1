"""A fake Anthropic Messages API: real HTTP on 127.0.0.1, for tests and benchmarks.

The real ``anthropic`` SDK talks to it (``base_url=fake.url``). It serves
``POST /v1/messages`` (JSON or, with ``"stream": true``, SSE exactly as the real API
frames it) and ``POST /v1/messages/count_tokens``, accepts ``x-api-key`` or
``Authorization: Bearer`` (checked only when ``api_key`` is set), answers scripted
replies in order and otherwise follows the default rules of
:mod:`ash_ray.testing.fake_replies`. Every ``/v1`` request is recorded.

Other processes (Ray actors) drive it over HTTP: ``POST /_fake/script``
(``{"replies": [...]}``), ``POST /_fake/reset``, ``GET /_fake/requests``,
``POST /_fake/config`` (``first_token_delay_s``, ``chunk_delay_s``, ``chunk_chars``,
``context_window_tokens``),
``GET /_fake/health``, and the hold/release latches of :mod:`ash_ray.testing.fake_holds`
(``POST /_fake/hold``, ``/_fake/hold/wait``, ``/_fake/release``);
:class:`FakeAnthropicRemote` wraps them.

To order events, tests hold a reply and release it (``with fake.hold("marker") as h:
... h.wait_seen() ... h.release()``); delays are for benchmarks, never for ordering.

It is a threaded stdlib server with keep-alive and chunked SSE: cheap per request, so
it can stand in for the model in latency benchmarks. Run it alone with
``python -m ash_ray.testing.fake_anthropic --port 8123``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import threading
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any

from ash_ray.testing.fake_cache import PromptCache
from ash_ray.testing.fake_holds import DEFAULT_HOLD_S, Hold, HoldPoint
from ash_ray.testing.fake_http import RecordedRequest, Server, State
from ash_ray.testing.fake_replies import (
    Block,
    ErrorReply,
    Reply,
    Scriptable,
    Timing,
    text,
    thinking,
    to_json,
    to_reply,
    tool_use,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Block",
    "ErrorReply",
    "FakeAnthropic",
    "FakeAnthropicRemote",
    "Hold",
    "RecordedRequest",
    "RemoteHold",
    "Reply",
    "text",
    "thinking",
    "tool_use",
]


class FakeAnthropic:
    """The fake Messages API server, run in a background thread of this process."""

    def __init__(
        self,
        port: int = 0,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        first_token_delay_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        chunk_chars: int = 16,
        max_requests: int = 100_000,
        context_window_tokens: int | None = None,
    ) -> None:
        """``max_requests`` bounds the recorded requests (the oldest are dropped);
        ``context_window_tokens`` refuses longer requests (see fake_cache)."""
        self.host = host
        self.port = port
        timing = Timing(first_token_delay_s, chunk_delay_s, chunk_chars)
        self._state = State(api_key, timing, max_requests, PromptCache(context_window_tokens))
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL for the SDK: ``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeAnthropic:
        """Bind (port 0: any free port) and serve in a daemon thread."""
        if self._server is None:
            self._server = Server((self.host, self.port), self._state)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},  # how long stop() waits for the loop
                name=f"fake-anthropic-{self.port}",
                daemon=True,
            )
            self._thread.start()
            logger.info("fake Anthropic API at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        self._state.holds.release_all()  # parked handler threads end too
        server.shutdown()
        for conn in list(server.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def script(self, *replies: Scriptable) -> None:
        """Queue replies, answered in order: Reply, ErrorReply, a str (text) or a block list."""
        items = [to_reply(r) for r in replies]
        with self._state.lock:
            self._state.queue.extend(items)

    def hold(
        self, marker: str | None = None, *, at: HoldPoint = "first_token",
        timeout_s: float = DEFAULT_HOLD_S,
    ) -> Hold:
        """Hold the next reply (whose newest message contains ``marker``, when given)
        at ``at`` until ``release()``; see :mod:`ash_ray.testing.fake_holds`."""
        return self._state.holds.add(marker, at, timeout_s)

    def release_all(self) -> None:
        """Release every hold (pending ones will catch nothing)."""
        self._state.holds.release_all()

    def configure(
        self,
        *,
        first_token_delay_s: float | None = None,
        chunk_delay_s: float | None = None,
        chunk_chars: int | None = None,
        context_window_tokens: int | None = None,
    ) -> None:
        """Change the default delays and text chunk size of replies that set none,
        and the context window (None: unchanged)."""
        with self._state.lock:
            if context_window_tokens is not None:
                self._state.cache.context_window_tokens = context_window_tokens
            timing = self._state.timing
            if first_token_delay_s is not None:
                timing.first_token_delay_s = first_token_delay_s
            if chunk_delay_s is not None:
                timing.chunk_delay_s = chunk_delay_s
            if chunk_chars is not None:
                timing.chunk_chars = chunk_chars

    def reset(self) -> None:
        """Forget scripted replies, recorded requests and holds; restore the initial delays."""
        with self._state.lock:
            self._state.reset()

    @property
    def pending(self) -> int:
        """Scripted replies not answered yet."""
        return len(self._state.queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every /v1 request so far (a copy), oldest first."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def message_requests(self) -> list[dict[str, Any]]:
        """Bodies of the ``POST /v1/messages`` requests so far."""
        return [r.body for r in self.requests if r.path == "/v1/messages"]


def _call(url: str, method: str, body: Any = None, timeout_s: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 408:  # a hold not seen in time
            raise TimeoutError(json.loads(exc.read())["error"]["message"]) from None
        raise


class RemoteHold:
    """A :class:`Hold` on a fake in another process (waits are long polls, not loops)."""

    def __init__(self, url: str, state: dict[str, Any]) -> None:
        self._url = url
        self.id = str(state["id"])
        self.marker = state.get("marker")
        self.at = state.get("at")
        self.request: dict[str, Any] | None = None

    def _wait(self, until: str, timeout_s: float) -> dict[str, Any]:
        body = {"id": self.id, "until": until, "timeout_s": timeout_s}
        state: dict[str, Any] = _call(
            self._url + "/_fake/hold/wait", "POST", body, timeout_s=timeout_s + 10
        )
        return state

    def wait_seen(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Block until the request arrived; returns the hold's state."""
        return self._wait("seen", timeout_s)

    def wait_held(self, timeout_s: float = 30.0) -> dict[str, Any]:
        return self._wait("held", timeout_s)

    async def wait_seen_async(self, timeout_s: float = 30.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.wait_seen, timeout_s)

    def release(self) -> None:
        _call(self._url + "/_fake/release", "POST", {"id": self.id})

    def __enter__(self) -> RemoteHold:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class FakeAnthropicRemote:
    """Drives a fake running in another process through its ``/_fake`` endpoints."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return _call(self.url + path, method, body, self.timeout_s)

    def hold(
        self, marker: str | None = None, *, at: HoldPoint = "first_token",
        timeout_s: float = DEFAULT_HOLD_S,
    ) -> RemoteHold:
        """Like :meth:`FakeAnthropic.hold`, on the remote fake."""
        body = {"marker": marker, "at": at, "timeout_s": timeout_s}
        return RemoteHold(self.url, self._call("POST", "/_fake/hold", body))

    def release_all(self) -> None:
        self._call("POST", "/_fake/release", {})

    def script(self, *replies: Scriptable) -> None:
        """Queue replies on the remote fake, like :meth:`FakeAnthropic.script`."""
        self._call("POST", "/_fake/script", {"replies": [to_json(to_reply(r)) for r in replies]})

    def configure(self, **timing: float | int) -> None:
        """Set ``first_token_delay_s``, ``chunk_delay_s``, ``chunk_chars`` and/or
        ``context_window_tokens``."""
        self._call("POST", "/_fake/config", timing)

    def reset(self) -> None:
        """Forget scripted replies and recorded requests, restore delays, on the remote fake."""
        self._call("POST", "/_fake/reset", {})

    @property
    def requests(self) -> list[RecordedRequest]:
        """The remote fake's recorded requests."""
        return [RecordedRequest(**r) for r in self._call("GET", "/_fake/requests")]

    def healthy(self) -> bool:
        """True when the remote fake answers."""
        try:
            return bool(self._call("GET", "/_fake/health")["ok"])
        except OSError:
            return False


def main(argv: list[str] | None = None) -> None:
    """``python -m ash_ray.testing.fake_anthropic``: serve until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--api-key", default=None, help="require this key (default: any)")
    parser.add_argument("--first-token-delay-ms", type=float, default=0.0)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--chunk-chars", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    fake = FakeAnthropic(
        args.port,
        args.api_key,
        host=args.host,
        first_token_delay_s=args.first_token_delay_ms / 1000,
        chunk_delay_s=args.chunk_delay_ms / 1000,
        chunk_chars=args.chunk_chars,
    )
    with fake:
        logger.info("serving the fake Anthropic API at %s (Ctrl-C to stop)", fake.url)
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    logger.info("fake Anthropic API stopped")


if __name__ == "__main__":
    main()
