"""An OTLP/HTTP transport on the standard library's ``http.client``.

Why: the OTLP exporter's default transport imports ``requests``, which cost 60-90 ms of
cold start on the benchmark machine, three times the whole budget of this library. The
exporter keeps its encoding, retry and deadline logic; only the socket work is done here.
One keep-alive connection per (scheme, host, port) is reused across invocations.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport


@dataclass(frozen=True, slots=True)
class StdlibHTTPResult(BaseHTTPResult):
    body: bytes = b""
    response_headers: Mapping[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        return self.response_headers


class _CaseInsensitiveHeaders(dict[str, str]):
    """Response headers keyed in lower case, as ``BaseHTTPResult.headers`` requires."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class StdlibHTTPTransport(BaseHTTPTransport):
    """Keep-alive HTTP/1.1 POSTs with a per-request timeout."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._lock = threading.Lock()

    def _connection(
        self, scheme: str, host: str, port: int, timeout: float | None
    ) -> http.client.HTTPConnection:
        key = (scheme, host, port)
        conn = self._connections.get(key)
        if conn is None:
            if scheme == "https":
                import ssl  # only TLS endpoints pay for the ssl import

                cafile = os.environ.get("OTEL_EXPORTER_OTLP_CERTIFICATE") or None
                ctx = ssl.create_default_context(cafile=cafile)
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            self._connections[key] = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        port = parts.port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        with self._lock:
            conn = self._connection(scheme, parts.hostname or "localhost", port, timeout)
            try:
                conn.request(method, path, body=data, headers=headers or {})
                response = conn.getresponse()
                body = response.read()
            except Exception as error:  # noqa: BLE001 - every failure becomes a result
                conn.close()
                return StdlibHTTPResult(error=error)
            if response.will_close:
                conn.close()
        return StdlibHTTPResult(
            status_code=response.status,
            reason=response.reason,
            body=body,
            response_headers=_CaseInsensitiveHeaders(
                (k.lower(), v) for k, v in response.getheaders()
            ),
        )

    def is_connection_error(self, exception: Exception | None) -> bool:
        """Socket-level failures (refused, reset, timeout, stale keep-alive) may be retried."""
        return isinstance(exception, (OSError, http.client.HTTPException))

    def close(self) -> None:
        with self._lock:
            for conn in self._connections.values():
                conn.close()
            self._connections.clear()
