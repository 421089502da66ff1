"""Fuzzing the running server: schemathesis over every operation, then hand-made bad input.

Every answer must be below 500 and match /openapi.json (status code, content type, body
schema); schema-invalid requests must be refused with a 4xx. Counts are printed (run with
``-s``) so that a report can quote them.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.integration.conftest import API_KEY
from tests.integration.sse import new_session, send

pytestmark = pytest.mark.ray

AUTH = {"Authorization": f"Bearer {API_KEY}"}
POSITIVE_EXAMPLES = 30  # per operation, with random ids (mostly 404s past validation)
NEGATIVE_EXAMPLES = 20  # per operation that takes parameters or a body
LIVE_EXAMPLES = 25  # per read-only/config operation, on a real session
# Operations that may run on a real session without side effects a fuzzer should cause
# (no turns, no commands, no lifecycle changes: those get random ids).
LIVE_SAFE = {
    "GET /api/sessions/{session_id}",
    "GET /api/sessions/{session_id}/messages",
    "GET /api/sessions/{session_id}/events",
    "GET /api/sessions/{session_id}/stream",
    "PATCH /api/sessions/{session_id}/config",
    "POST /api/sessions/{session_id}/interrupt",
}
BUDGET_S = 150  # the whole schemathesis pass; the test fails rather than run on


class Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.server_errors = 0
        self.failures: list[str] = []

    def __str__(self) -> str:
        return f"requests sent: {self.sent}, 5xx seen: {self.server_errors}"


def _has_input(op: Any) -> bool:
    return bool(op.path_parameters or op.query or op.headers or op.body)


def _fuzz(
    op: Any, mode: GenerationMode, examples: int, tally: Tally, http: requests.Session,
    base_url: str, **fixed: Any,
) -> None:
    @settings(
        max_examples=examples, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
    )
    @given(case=op.as_strategy(generation_mode=mode, **fixed))
    def run(case: Any) -> None:
        # The real key replaces a generated one; a case that drops the header keeps it off.
        auth = AUTH if "Authorization" in (case.headers or {}) else {}
        tally.sent += 1
        response = case.call(base_url=base_url, session=http, headers=auth, timeout=30)
        tally.server_errors += response.status_code >= 500
        if response.status_code == 413:
            # A generated body over the size limit: refusing it is right, whatever else
            # it breaks (schemathesis does not count 413 as a rejection). The 413's own
            # shape is checked by the hand-made requests below.
            return
        case.validate_response(
            response, headers=auth, excluded_checks=[positive_data_acceptance]
        )

    try:
        run()
    except Exception as exc:  # every failing operation is reported at the end
        tally.failures.append(f"{op.label} [{mode}]: {str(exc)[:1200]}")


@pytest.fixture(scope="module")
def live_session(http_module: httpx.Client, agent: str) -> str:
    return new_session(http_module, agent)


@pytest.fixture(scope="module")
def http_module(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as client:
        yield client


def test_schemathesis_every_operation(
    server: str, http_module: httpx.Client, live_session: str
) -> None:
    schema = schemathesis.openapi.from_url(server + "/openapi.json")
    tally = Tally()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19
    with requests.Session() as http:
        for op in operations:
            assert time.monotonic() - started < BUDGET_S, f"over {BUDGET_S}s; {tally}"
            _fuzz(op, GenerationMode.POSITIVE, POSITIVE_EXAMPLES, tally, http, server)
            if _has_input(op):
                _fuzz(op, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, tally, http, server)
            if op.label in LIVE_SAFE:
                _fuzz(op, GenerationMode.POSITIVE, LIVE_EXAMPLES, tally, http, server,
                      path_parameters={"session_id": live_session})
    print(f"\nschemathesis: {len(operations)} operations, {tally}, "
          f"{time.monotonic() - started:.0f}s")
    assert not tally.failures, "\n\n".join(tally.failures)
    assert tally.server_errors == 0
    assert tally.sent >= 1000, tally
    # What the fuzzer stored can be read back, and the session still works.
    assert http_module.get("/api/sessions").status_code == 200
    assert http_module.get(f"/api/sessions/{live_session}").status_code == 200


# ---------------------------------------------------------------- hand-made bad input


def _raw(server: str, head: bytes, chunks: Iterator[bytes] = iter(())) -> tuple[int, bytes]:
    """Send bytes as they are (no client-side checks) and read the status and body."""
    url = urlsplit(server)
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed: read what it said
        reply = b""
        while not reply.count(b"\r\n\r\n") or len(reply) < 16:
            part = sock.recv(65536)
            if not part:
                break
            reply += part
        sock.settimeout(2)
        try:
            while part := sock.recv(65536):
                reply += part
        except (TimeoutError, ConnectionResetError):
            pass
    status = int(reply.split(b" ", 2)[1])
    return status, reply.partition(b"\r\n\r\n")[2]


def _chunked(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = b"x" * min(size, total - sent)
        sent += len(piece)
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def _head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {API_KEY}",
             *headers, "", ""]
    return "\r\n".join(lines).encode()


class Checker:
    """Counts hand-made requests and checks each answer: a 4xx in our error shape."""

    def __init__(self) -> None:
        self.sent = 0
        self.server_errors = 0

    def error(self, r: httpx.Response, status: int | tuple[int, ...], says: str = "") -> None:
        self.sent += 1
        self.server_errors += r.status_code >= 500
        wanted = (status,) if isinstance(status, int) else status
        assert r.status_code in wanted, (r.request.url, r.status_code, r.text[:300])
        body = r.json()
        assert body["statusCode"] == r.status_code and isinstance(body["error"], str)
        assert says.lower() in body["error"].lower(), body

    def raw(self, status: int, body: bytes, says: str = "") -> None:
        self.sent += 1
        self.server_errors += status >= 500
        assert 400 <= status < 500, (status, body[:300])
        if says:
            assert says.encode() in body, body[:300]


def test_hand_made_bad_inputs(server: str, http_module: httpx.Client, live_session: str) -> None:
    http, sid, c = http_module, live_session, Checker()
    js = {"Content-Type": "application/json"}
    # Malformed JSON.
    for body in (b"{", b"[]", b"null", b'"x"', b"\xff\xfe\x00", b"NaN", b'{"agent": 1}',
                 b"[" * 100_000 + b"]" * 100_000, b'{"agent": "helper", "agent": [1]}'):
        c.error(http.post("/api/sessions", content=body, headers=js), 400)
    c.error(http.post("/api/sessions", content=b'{"agent":"x"}',
                      headers={"Content-Type": "text/plain"}), (400, 404))
    # Bodies over the limit: declared, and chunked (no Content-Length) far past it.
    c.error(http.post("/api/sessions", content=b"x" * (11 << 20), headers=js), 413, "limit")
    status, body = _raw(server, _head("POST", "/api/sessions", "Content-Type: application/json",
                                      "Transfer-Encoding: chunked"), _chunked(60 << 20))
    c.raw(status, body, "limit")
    assert status == 413
    status, body = _raw(server, _head("POST", "/api/agents", "Content-Length: 99999999999999"))
    c.raw(status, body)
    assert status == 413
    # Huge numbers, in queries, headers and bodies.
    for path, params in (
        ("/api/sessions", {"offset": str(2**64)}), ("/api/sessions", {"limit": "1e3"}),
        ("/api/sessions", {"limit": str(10**30)}), (f"/api/sessions/{sid}/events",
                                                    {"after": str(2**64)}),
        (f"/api/sessions/{sid}/messages", {"after": "-1"}),
        (f"/api/sessions/{sid}/stream", {"after": str(2**63)}),
    ):
        c.error(http.get(path, params=params), 400)
    for value in (str(2**64), "-1", "1e3", "0x10", "1 2"):
        c.error(http.get(f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": value}), 400,
                "Last-Event-ID")
    for body in (b'{"content": "hi", "maxTurns": 1e400}', b'{"content": "hi", "maxTurns": '
                 + b"9" * 5000 + b"}", b'{"content": "hi", "maxBudgetUsd": Infinity}'):
        c.error(http.post(f"/api/sessions/{sid}/messages", content=body, headers=js), 400)
    c.error(http.post(f"/api/sessions/{sid}/exec", json={"command": "true", "timeout": 1e308}),
            400)
    # Long strings and path-like fields.
    c.error(http.post("/api/agents", json={"name": "a", "path": "/x" * 50_000}), 400, "path")
    c.error(http.post("/api/agents", json={"name": "a" * 10_000, "path": "/"}), 400, "name")
    c.error(http.post("/api/sessions", json={"agent": "a" * 100_000}), 400, "agent")
    c.error(http.get("/api/agents/" + "a" * 5000), 400)
    c.error(http.post(f"/api/sessions/{sid}/exec", json={"command": "echo " + "x" * 300_000}),
            400, "102400")
    c.error(http.patch(f"/api/sessions/{sid}/config", json={"model": "m" * 100_000}), 400)
    # Unicode and NUL.
    c.error(http.post("/api/sessions", json={"agent": "\u202eevil\U0001f600"}), 404)
    c.error(http.post("/api/sessions", content=b'{"agent": "\\ud800"}', headers=js), 400)
    c.error(http.post("/api/agents", json={"name": "\u00f1", "path": "/"}), 400)
    c.error(http.post("/api/agents", json={"name": "ok", "path": "/tmp/\x00/x"}), 400, "NUL")
    c.error(http.post(f"/api/sessions/{sid}/exec", json={"command": "echo \x00"}), 400, "NUL")
    c.error(http.patch(f"/api/sessions/{sid}/config", json={"extraEnv": {"A": "\x00"}}), 400)
    c.error(http.get("/api/sessions/%F0%9F%98%80"), 400, "UUID")
    # Traversal.
    c.error(http.post("/api/agents", json={"name": "t", "path": "../../../../etc"}), 400)
    c.error(http.get("/api/agents/..%2F..%2Fetc%2Fpasswd"), (400, 404))
    c.error(http.get("/api/agents/.."), (400, 404))
    # Header injection: CR/LF smuggled into values never reach a response header.
    status, body = _raw(server, _head("GET", f"/api/sessions/{sid}/stream",
                                      "Last-Event-ID: 1\rX-Injected: yes"))
    c.raw(status, body)
    r = http.get("/api/agents/x%0d%0aX-Injected:%20yes")
    c.error(r, 400)
    assert "x-injected" not in r.headers
    # Null where a value is required; then the store still reads back every session.
    c.error(http.patch(f"/api/sessions/{sid}/config", json={"extraEnv": {"1A": "x"}}), 400)
    assert http.patch(f"/api/sessions/{sid}/config", json={"extraEnv": None}).status_code == 200
    assert http.get("/api/sessions").status_code == 200
    print(f"\nhand-made bad inputs: requests sent: {c.sent}, 5xx seen: {c.server_errors}")
    assert c.server_errors == 0
    # After all of it the session still runs a turn.
    frames = send(http, sid, "still there?")
    assert frames[-1][1] == "done"
    assert json.dumps(frames)  # the stream is well-formed frames
