"""Who may call the admin port (8888) and the ClickHouse HTTP interface (8123).

Both ports are for programs (Prometheus, probes, Grafana's server-side plugin, ``obsloop
query``), never for web pages: a page can POST ``text/plain`` to ``127.0.0.1`` without a
CORS preflight, and a DNS name rebound to ``127.0.0.1`` reaches the port with the page's own
host name. So a request carrying a browser ``Origin`` that is not allowed, or a
cross-site ``Sec-Fetch-Site``, or a ``Host`` that is neither an IP address, ``localhost``
nor an allowed name, is refused with 403 before any handler runs. Programs send no
``Origin`` and dial an address or a configured service name, so they pass.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _host_name(host: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8123`` -> ``::1``), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def browser_guard(section: str, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> Middleware:
    """An aiohttp middleware refusing browser-driven requests; ``section`` names the
    configuration section in the refusal (``admin``, ``clickhouse_http``)."""
    hosts = {name.strip().lower().rstrip(".") for name in allowed_hosts} | {"localhost"}
    origins = {origin.strip().rstrip("/").lower() for origin in allowed_origins}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed_origin = origin is not None and origin.strip().rstrip("/").lower() in origins
        if origin is not None and not allowed_origin:
            return _forbidden(f"requests from web pages are refused: the Origin is not in {section}.allowed_origins")
        if request.headers.get("Sec-Fetch-Site", "none") in ("cross-site", "same-site") and not allowed_origin:
            return _forbidden(f"cross-site requests are refused: the Origin is not in {section}.allowed_origins")
        host = request.headers.get("Host")
        if host is not None:
            name = _host_name(host).rstrip(".")
            if not (_is_ip(name) or name in hosts):
                return _forbidden(f"unknown Host: add the name this port is reached by to {section}.allowed_hosts")
        return await handler(request)

    return guard


def _forbidden(message: str) -> web.Response:
    return web.Response(status=403, text=f"{message}\n", content_type="text/plain")


def header_bytes(value: str) -> bytes:
    """A header value as bytes to compare; never raises, whatever bytes the client sent
    (aiohttp decodes headers as UTF-8 with ``surrogateescape``)."""
    return value.encode("utf-8", "surrogatepass")


def bearer_matches(request: web.Request, token: SecretStr) -> bool:
    """Whether ``Authorization`` is ``Bearer <token>``, compared in constant time on bytes."""
    presented = header_bytes(request.headers.get("Authorization", ""))
    expected = b"Bearer " + token.get_secret_value().encode()
    return hmac.compare_digest(presented, expected)
