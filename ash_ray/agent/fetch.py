"""WebFetch's client: fetch a URL from the worker and hand the model its text (markdown).

The model chooses the URL, so the fetch is an SSRF risk: unless
``ASH_WEBFETCH_ALLOW_PRIVATE=true``, a host whose DNS answer holds any loopback,
private, link-local, multicast, reserved or unspecified address is refused, and the
check is repeated on every redirect (followed by hand, at most ``MAX_REDIRECTS``),
together with the ``WebFetch(domain:x)`` permission rules. The check that counts is
made where the connection is opened (:class:`_CheckedBackend`, httpcore's network
backend): the name is resolved once there, every address checked, and the socket
connected to one of those very addresses, so a DNS answer that changes between a
check and the connect (rebinding) cannot slip a private address in. The URL's host
still goes in the Host header and in TLS (SNI and certificate check). A sandbox with
its network cut refuses WebFetch altogether. Responses are capped in size and time.

Imported on a WebFetch call only (:func:`ash_ray.agent.web.web_fetch`): httpx brings
its CLI's click, rich and pygments, which a session worker that never fetches should
not carry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from ash_ray.agent.file_tools import ToolFailure

if TYPE_CHECKING:
    from ash_ray.agent.tools import ToolContext

MAX_FETCH_BYTES = 5 * 1024 * 1024
FETCH_TIMEOUT_S = 30.0
MAX_REDIRECTS = 10
USER_AGENT = "ash-ray-webfetch/1.0"


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


# (host, port) -> the addresses to connect to; tests pass their own.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the system resolver (getaddrinfo)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ToolFailure(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def _checked_addresses(
    host: str, port: int, resolve: Resolver, allow_private: bool
) -> list[str]:
    addresses = await resolve(host, port)
    if not addresses:
        raise ToolFailure(f"cannot resolve {host}: no address")
    if not allow_private:
        for address in addresses:
            if _forbidden(address):
                raise ToolFailure(
                    f"WebFetch refuses {host}: it resolves to the private, loopback or "
                    f"link-local address {address}"
                )
    return addresses


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses it resolved and checked itself (module doc)."""

    def __init__(
        self,
        resolve: Resolver,
        allow_private: bool,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._inner = inner or httpcore.AnyIOBackend()
        self._resolve = resolve
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _checked_addresses(host, port, self._resolve, self._allow_private)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ToolFailure("WebFetch does not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a :class:`_CheckedBackend`.

    httpx has no parameter for httpcore's network backend, so the pool it builds is
    replaced by one built the same way (no proxy: the client never trusts the env).
    """

    def __init__(self, backend: _CheckedBackend) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), network_backend=backend
        )


async def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_FETCH_BYTES:
            return bytes(body[:MAX_FETCH_BYTES]), True
    return bytes(body), False


def _as_text(response: httpx.Response, body: bytes) -> str:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and not (kind.startswith("text/") or "json" in kind or "xml" in kind):
        raise ToolFailure(f"WebFetch reads text pages only; {response.url} is {kind}")
    text = body.decode(response.encoding or "utf-8", errors="replace")
    if kind in ("text/html", "application/xhtml+xml") or (not kind and "<html" in text[:1000]):
        # Imported here: every session worker would pay them at start (0.1 s, 8 MiB).
        from bs4 import BeautifulSoup
        from markdownify import MarkdownConverter

        soup = BeautifulSoup(text, "html.parser")
        for tag in soup(["script", "style", "noscript", "template"]):
            tag.decompose()  # their text is code, not content
        return str(MarkdownConverter(heading_style="ATX").convert_soup(soup)).strip()
    return text


async def fetch_url(
    url: str,
    check: Callable[[str], str | None],
    *,
    allow_private: bool,
    resolve: Resolver = system_resolve,
    sockets: httpcore.AsyncNetworkBackend | None = None,
) -> tuple[httpx.Response, bytes, bool]:
    """GET ``url``, following redirects by hand: (response, body, truncated).

    ``check(url)`` is the permission rules' refusal for a URL (None: allowed), asked
    before every hop. Every connection goes through :class:`_CheckedBackend`, which
    opens sockets with ``sockets`` (httpcore's own backend unless a test maps them).
    """
    backend = _CheckedBackend(resolve, allow_private, sockets)
    async with httpx.AsyncClient(
        transport=_CheckedTransport(backend),
        follow_redirects=False,
        trust_env=False,
        timeout=FETCH_TIMEOUT_S,
        headers={"User-Agent": USER_AGENT},
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            if reason := check(url):
                raise ToolFailure(reason)
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ToolFailure(f"WebFetch only fetches http(s) URLs with a host, not {url!r}")
            # An early, clear refusal; the one that counts is made again at the connect.
            port = parts.port or (443 if parts.scheme == "https" else 80)
            await _checked_addresses(parts.hostname, port, resolve, allow_private)
            async with client.stream("GET", url) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(str(response.url), response.headers["location"])
                    continue
                body, truncated = await _read_capped(response)
                return response, body, truncated
    raise ToolFailure(f"WebFetch stopped after {MAX_REDIRECTS} redirects")


async def web_fetch(ctx: ToolContext, args: dict[str, Any]) -> str:
    """Fetch ``url`` (see module doc); ``prompt`` says what the model wants from it."""
    if not ctx.sandbox.network:
        raise ToolFailure("WebFetch is not available: this agent's network is cut")
    url = str(args["url"]).strip()
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            response, body, truncated = await fetch_url(
                url,
                lambda hop: ctx.policy.check("WebFetch", {"url": hop}, ctx.sandbox.workspace),
                allow_private=bool(ctx.settings and ctx.settings.webfetch_allow_private),
            )
    except TimeoutError:
        raise ToolFailure(f"WebFetch timed out after {FETCH_TIMEOUT_S:g}s: {url}") from None
    except httpx.HTTPError as exc:
        raise ToolFailure(f"WebFetch failed for {url}: {type(exc).__name__}: {exc}") from None
    if response.status_code >= 400:
        raise ToolFailure(f"{url} answered HTTP {response.status_code}")
    text = _as_text(response, body)
    note = f"\n\n[truncated at {MAX_FETCH_BYTES} bytes]" if truncated else ""
    prompt = str(args.get("prompt") or "").strip()
    head = f"Content of {response.url}" + (f" (for: {prompt})" if prompt else "")
    return f"{head}:\n\n{text}{note}"
