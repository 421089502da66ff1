"""WebFetch's private-address check holds where the socket is opened (DNS rebinding).

No traffic leaves the machine: the resolver is the test's, and the one "public"
address is mapped onto a loopback server by the socket backend the test passes in.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest

from ash_ray.agent.fetch import fetch_url
from ash_ray.agent.file_tools import ToolFailure

PUBLIC = "93.184.216.34"  # a public address; never connected to (see _MapPublic)


class _Echo(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Echo.hits.append(self.path)
        if self.path == "/to-evil":
            self.send_response(302)
            self.send_header("Location", "http://evil.test/secret")
            self.end_headers()
            return
        body = f"host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    _Echo.hits = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


class _MapPublic(httpcore.AsyncNetworkBackend):
    """Opens sockets with httpcore's backend, the PUBLIC address mapped to loopback."""

    def __init__(self, port: int) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.port = port
        self.connected: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append(host)
        if host == PUBLIC:
            host, port = "127.0.0.1", self.port
        return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def rebinding(first: str, then: str) -> tuple[Any, list[str]]:
    """A resolver answering ``first`` to the first question about a name, ``then`` after."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return [first if asked.count(host) == 1 else then]

    return resolve, asked


def allowed(url: str) -> str | None:
    return None


async def test_rebinding_to_loopback_is_refused_at_the_connect(server: int) -> None:
    resolve, asked = rebinding(PUBLIC, "127.0.0.1")
    sockets = _MapPublic(server)
    with pytest.raises(ToolFailure, match=r"127\.0\.0\.1"):
        await fetch_url(
            "http://rebind.test/page", allowed, allow_private=False, resolve=resolve,
            sockets=sockets,
        )
    assert asked == ["rebind.test", "rebind.test"]  # the check, then the connect's own
    assert sockets.connected == [] and _Echo.hits == []


async def test_redirect_to_a_rebinding_name_is_refused(server: int) -> None:
    names = {"public.test": [PUBLIC]}
    evil, asked = rebinding(PUBLIC, "127.0.0.1")

    async def resolve(host: str, port: int) -> list[str]:
        return names.get(host) or await evil(host, port)

    sockets = _MapPublic(server)
    with pytest.raises(ToolFailure, match=r"evil\.test"):
        await fetch_url(
            "http://public.test/to-evil", allowed, allow_private=False, resolve=resolve,
            sockets=sockets,
        )
    assert sockets.connected == [PUBLIC] and _Echo.hits == ["/to-evil"]
    assert asked == ["evil.test", "evil.test"]


async def test_connects_to_the_checked_address_with_the_urls_host(server: int) -> None:
    resolve, _ = rebinding(PUBLIC, PUBLIC)
    sockets = _MapPublic(server)
    response, body, truncated = await fetch_url(
        f"http://site.test:{server}/page", allowed, allow_private=False, resolve=resolve,
        sockets=sockets,
    )
    assert response.status_code == 200 and not truncated
    assert body.decode() == f"host=site.test:{server}"
    assert sockets.connected == [PUBLIC]


async def test_private_addresses_allowed_when_configured(server: int) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    _, body, _ = await fetch_url(
        f"http://site.test:{server}/page", allowed, allow_private=True, resolve=resolve
    )
    assert body.decode() == f"host=site.test:{server}"


async def test_permission_rules_are_asked_on_every_hop(server: int) -> None:
    seen: list[str] = []

    def check(url: str) -> str | None:
        seen.append(url)
        return "denied: not WebFetch(domain:public.test)" if "evil.test" in url else None

    async def resolve(host: str, port: int) -> list[str]:
        return [PUBLIC]

    with pytest.raises(ToolFailure, match="denied"):
        await fetch_url(
            "http://public.test/to-evil", check, allow_private=False, resolve=resolve,
            sockets=_MapPublic(server),
        )
    assert seen == ["http://public.test/to-evil", "http://evil.test/secret"]
