"""The HTTP side of the fake Messages API: a threaded stdlib server with keep-alive.

Responses are built by :mod:`ash_ray.testing.fake_replies`; the public face is
:class:`ash_ray.testing.fake_anthropic.FakeAnthropic`. Streams use chunked transfer
encoding so connections stay open between requests, and a stream without delays goes
out in a single write: per-request cost stays well under a millisecond.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ash_ray.testing.fake_cache import PromptCache
from ash_ray.testing.fake_holds import DEFAULT_HOLD_S, Hold, Holds
from ash_ray.testing.fake_replies import (
    AnyReply,
    ErrorReply,
    Reply,
    Timing,
    default_reply,
    error_frame,
    message_body,
    new_id,
    sse_frames,
    to_reply,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received: path without query, lower-cased headers, JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class State:
    """What the handler threads share, behind one lock."""

    def __init__(
        self,
        api_key: str | None,
        timing: Timing,
        max_requests: int,
        cache: PromptCache | None = None,
    ) -> None:
        self.api_key = api_key
        self.cache = cache or PromptCache()
        self.initial_timing = replace(timing)
        self.timing = timing
        self.lock = threading.Lock()
        self.queue: deque[AnyReply] = deque()
        self.requests: deque[RecordedRequest] = deque(maxlen=max_requests)
        self.holds = Holds()

    def reset(self) -> None:
        """Under ``lock``: back to the state right after start (every hold released)."""
        self.holds.release_all()
        self.queue.clear()
        self.requests.clear()
        self.timing = replace(self.initial_timing)
        self.cache.clear()


class Server(ThreadingHTTPServer):
    """One thread per connection; remembers open connections so stop() can cut them."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: State) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.connections: set[socket.socket] = set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (or stop() cutting them off) is routine, not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            logger.debug("fake-anthropic: connection from %s dropped", client_address)
        else:
            logger.exception("fake-anthropic: error serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake-anthropic: " + format, *args)

    # ------------------------------------------------------------ responses

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", new_id("req_"))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, error: ErrorReply) -> None:
        headers = {}
        if error.should_retry is not None:
            headers["x-should-retry"] = "true" if error.should_retry else "false"
        self._json(error.status, error.body(), headers)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    # ------------------------------------------------------------ routing

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        state = self.server.state
        if path == "/_fake/requests":
            with state.lock:
                recorded = [asdict(r) for r in state.requests]
            self._json(200, recorded)
        elif path == "/_fake/health":
            self._json(200, {"ok": True, "pending": len(state.queue)})
        else:
            self._error(ErrorReply(404, "not_found_error", f"no route GET {path}"))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            self._error(ErrorReply(400, "invalid_request_error", f"body is not JSON: {exc}"))
            return
        if path.startswith("/_fake/"):
            if not isinstance(body, dict):
                self._error(ErrorReply(400, "invalid_request_error", "body must be an object"))
                return
            self._control(path, body)
            return
        state = self.server.state
        headers = {k.lower(): v for k, v in self.headers.items()}
        with state.lock:
            state.requests.append(RecordedRequest("POST", path, headers, body))
        if not self._authorized(headers):
            self._error(ErrorReply(401, "authentication_error", "invalid x-api-key"))
        elif path == "/v1/messages":
            self._messages(body, length)
        elif path == "/v1/messages/count_tokens":
            if self._valid(body, ("model", "messages")):
                self._json(200, {"input_tokens": max(1, length // 4)})
        else:
            self._error(ErrorReply(404, "not_found_error", f"no route POST {path}"))

    def _authorized(self, headers: dict[str, str]) -> bool:
        expected = self.server.state.api_key
        if expected is None:
            return True
        given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix(
            "Bearer "
        )
        return hmac.compare_digest(given.encode(), expected.encode())

    def _valid(self, body: Any, required: tuple[str, ...]) -> bool:
        missing = [k for k in required if not isinstance(body, dict) or k not in body]
        if not missing and not (isinstance(body["messages"], list) and body["messages"]):
            missing = ["messages (a non-empty list)"]
        if missing:
            self._error(ErrorReply(400, "invalid_request_error", f"missing {', '.join(missing)}"))
        return not missing

    def _control(self, path: str, body: dict[str, Any]) -> None:
        state = self.server.state
        if path.startswith(("/_fake/hold", "/_fake/release")):
            self._hold_control(path, body)
            return
        with state.lock:
            if path == "/_fake/script":
                try:
                    state.queue.extend(to_reply(r) for r in body.get("replies", []))
                except (TypeError, ValueError) as exc:
                    self._error(ErrorReply(400, "invalid_request_error", str(exc)))
                    return
            elif path == "/_fake/reset":
                state.reset()
            elif path == "/_fake/config":
                for key in ("first_token_delay_s", "chunk_delay_s", "chunk_chars"):
                    if body.get(key) is not None:
                        setattr(state.timing, key, type(getattr(state.timing, key))(body[key]))
                if "context_window_tokens" in body:
                    state.cache.context_window_tokens = body["context_window_tokens"]
            else:
                self._error(ErrorReply(404, "not_found_error", f"no route POST {path}"))
                return
            pending = len(state.queue)
        self._json(200, {"ok": True, "pending": pending})

    def _hold_control(self, path: str, body: dict[str, Any]) -> None:
        """``/_fake/hold`` adds a hold, ``/_fake/hold/wait`` waits (408 on timeout) for
        ``until`` (seen or held), ``/_fake/release`` releases one ``id`` or all."""
        holds = self.server.state.holds
        if path == "/_fake/hold":
            at, timeout_s = str(body.get("at", "first_token")), body.get("timeout_s")
            try:
                hold = holds.add(body.get("marker"), at, float(timeout_s or DEFAULT_HOLD_S))
            except ValueError as exc:
                self._error(ErrorReply(400, "invalid_request_error", str(exc)))
                return
            self._json(200, hold.state())
            return
        found = holds.get(str(body.get("id")))
        if path == "/_fake/release" and "id" not in body:
            holds.release_all()
            self._json(200, {"ok": True})
        elif found is None or path not in ("/_fake/release", "/_fake/hold/wait"):
            self._error(ErrorReply(404, "not_found_error", f"no hold {body.get('id')!r} at {path}"))
        elif path == "/_fake/release":
            found.release()
            self._json(200, found.state())
        else:
            wait = found.wait_held if body.get("until") == "held" else found.wait_seen
            try:
                wait(float(body.get("timeout_s", 30.0)))
            except TimeoutError as exc:
                self._error(ErrorReply(408, "timeout_error", str(exc)))
                return
            self._json(200, found.state())

    # ------------------------------------------------------------ /v1/messages

    def _messages(self, body: dict[str, Any], length: int) -> None:
        if not self._valid(body, ("model", "max_tokens", "messages")):
            return
        state = self.server.state
        with state.lock:
            # Token counts and cache hits come from fake_cache, as the real API would report.
            usage = state.cache.account(body)
            if isinstance(usage, str):  # over the context window: refused, nothing consumed
                reply: AnyReply = ErrorReply(400, "invalid_request_error", usage)
            else:
                reply = state.queue.popleft() if state.queue else default_reply(body)
            timing = (state.timing.for_reply(reply) if isinstance(reply, Reply) else (0.0, 0.0),
                      state.timing.chunk_chars)  # fmt: skip
        (first_delay, chunk_delay), chunk_chars = timing
        hold = state.holds.claim(body)
        input_tokens = usage if isinstance(usage, dict) else 1
        if not body.get("stream") or (isinstance(reply, ErrorReply) and not reply.in_stream):
            if hold is not None:
                hold.park()
            if isinstance(reply, ErrorReply):
                self._error(reply)
                return
            delay = first_delay
            if chunk_delay:  # as long as the same reply would take to stream
                tokens = sum(tok for _, tok in sse_frames(reply, body["model"], 1, chunk_chars))
                delay += chunk_delay * max(0, tokens - 1)
            if delay:
                time.sleep(delay)
            self._json(200, message_body(reply, body["model"], input_tokens))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", new_id("req_"))
        self.end_headers()
        try:
            if isinstance(reply, ErrorReply):
                self._chunk(next(sse_frames(Reply([]), body["model"], input_tokens))[0])
                if hold is not None:
                    hold.park()
                self._chunk(error_frame(reply))
            elif first_delay == 0 and chunk_delay == 0 and hold is None:
                frames = list(sse_frames(reply, body["model"], input_tokens, chunk_chars))
                self._chunk(b"".join(frame for frame, _ in frames))  # one write: fastest
            else:
                frames = list(sse_frames(reply, body["model"], input_tokens, chunk_chars))
                self._stream_slowly(frames, (first_delay, chunk_delay), hold)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-stream

    def _stream_slowly(
        self, frames: list[tuple[bytes, bool]], delays: tuple[float, float], hold: Hold | None
    ) -> None:
        """Frame by frame, with the delays and the hold (the last frame is message_stop)."""
        tokens = 0
        for index, (frame, is_token) in enumerate(frames):
            if is_token:
                if hold is not None and hold.before_token == tokens:
                    hold.park()
                time.sleep(delays[0] if tokens == 0 else delays[1])
                tokens += 1
            # A hold past the reply's last token holds before message_stop.
            at = None if hold is None else hold.before_token
            if index == len(frames) - 1 and hold is not None and (at is None or at >= tokens):
                hold.park()
            self._chunk(frame)
