"""OTLP/HTTP sending: endpoint configuration, a keep-alive HTTP/1.1 connection,
compression and the exporter's retry policy, for already encoded request bodies.

This replaces ``OTLPSpanExporter``/``OTLPMetricExporter``/``OTLPLogExporter`` on the
library's own path (their module chain and protobuf were most of the cold start, see
``_encode``). It reads the same variables the same way: ``OTEL_EXPORTER_OTLP_ENDPOINT``
(plus ``/v1/<signal>``) or the per-signal endpoint used as is, headers (W3C-baggage style,
URL-decoded, keys lower-cased), ``gzip``/``deflate`` compression, the CA certificate and
the client certificate/key, generic or per signal. The timeout is the library's flush
share, not ``OTEL_EXPORTER_OTLP_TIMEOUT``, as before.

Retries follow the exporter (``opentelemetry.exporter.otlp.common.http``): a connection
error is retried once at once (a stale keep-alive connection), 429/502/503/504 and
connection errors are retried with exponential backoff or ``Retry-After`` while that fits
the deadline, 2xx/3xx is success, anything else fails. Failures are logged, never raised.

The HTTP/1.1 client is a small one on ``socket`` (``_Connection``): ``http.client`` imports
``email.parser`` and ``ssl``, about 12 ms of cold start here, for one POST with a small
response. (The Lambda runtime client defers ``http.client`` for the same reason.)
"""

from __future__ import annotations

import _socket
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC
from urllib.parse import urlsplit

from obsloop_instrument._log import logger

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from typing import Any

    _Result = tuple[int | None, str | None, str | None, Exception | None]
    """(status, reason, Retry-After, error) of one request."""

_logger = logger(__name__)

DEFAULT_ENDPOINT = "http://localhost:4318"
MAX_REQUEST_SIZE = 64 * 1024 * 1024  # the exporter's default, before compression
_MAX_RETRIES = 6
_JITTER = 0.2
_RETRYABLE = frozenset({429, 502, 503, 504})
_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics", "logs": "v1/logs"}


def _user_agent() -> str:
    """The exporter's product token (same release train as the API), plus this library."""
    from opentelemetry.version import __version__  # already loaded by the pipeline

    return f"OTel-OTLP-Exporter-Python/{__version__} obsloop-instrument"


def _env(env: Mapping[str, str], signal: str, name: str) -> str | None:
    """``OTEL_EXPORTER_OTLP_<SIGNAL>_<NAME>``, else ``OTEL_EXPORTER_OTLP_<NAME>``."""
    return env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}") or env.get(
        f"OTEL_EXPORTER_OTLP_{name}"
    )


def _headers(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    from opentelemetry.util.re import parse_env_headers

    return dict(parse_env_headers(raw, liberal=True))


class OtlpHttpExporter:
    """POSTs encoded OTLP requests of one signal to its endpoint."""

    def __init__(self, signal: str, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.signal = signal
        endpoint = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        if not endpoint:
            base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
            endpoint = f"{base.removesuffix('/')}/{_PATHS[signal]}"
        self.endpoint = endpoint
        parts = urlsplit(endpoint)
        self._scheme = parts.scheme or "http"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._scheme == "https" else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

        compression = (_env(env, signal, "COMPRESSION") or "none").strip().lower()
        if compression not in ("none", "gzip", "deflate"):
            _logger.warning("Unsupported compression type: %s", compression)
            compression = "none"
        self._compression = compression
        headers = {"content-type": "application/x-protobuf", "user-agent": _user_agent()}
        headers.update(_headers(_env(env, signal, "HEADERS")))
        if compression != "none" and "content-encoding" not in headers:
            headers["content-encoding"] = compression
        self._headers = headers
        self._certificate = _env(env, signal, "CERTIFICATE")
        self._client_key = _env(env, signal, "CLIENT_KEY")
        self._client_certificate = _env(env, signal, "CLIENT_CERTIFICATE")

        host = self._host if ":" not in self._host else f"[{self._host}]"
        default_port = 443 if self._scheme == "https" else 80
        authority = host if self._port == default_port else f"{host}:{self._port}"
        head = [f"POST {self._path} HTTP/1.1", f"host: {authority}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        self._request_head = "\r\n".join(head).encode("latin-1")
        self._conn: _Connection | None = None
        self._lock = threading.Lock()

    # -- connection -----------------------------------------------------------------------

    def _open(self, timeout: float) -> _Connection:
        ssl_context = None
        if self._scheme == "https":
            import ssl  # only TLS endpoints pay for the ssl import

            ssl_context = ssl.create_default_context(cafile=self._certificate or None)
            if self._client_certificate:
                ssl_context.load_cert_chain(self._client_certificate, self._client_key or None)
        return _Connection(self._host, self._port, timeout, ssl_context)

    def _post(self, data: bytes, timeout: float) -> _Result:
        """One POST: (status, reason, Retry-After, error)."""
        deadline = time.monotonic() + timeout
        try:
            if self._conn is None:
                self._conn = self._open(timeout)
            self._conn.send(self._request_head, data, deadline)
        except Exception as error:  # noqa: BLE001 - every failure becomes a result
            self._drop()
            return None, None, None, error
        return self._receive(_Pending(data, deadline, None))

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def connect(self, timeout: float) -> None:
        """Open the connection ahead of the first export (errors are left to the export)."""
        with self._lock:
            if self._conn is None:
                try:
                    self._conn = self._open(timeout)
                except Exception:  # noqa: BLE001 - the first export retries and reports
                    self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def after_fork(self) -> None:
        """In a forked child: a lock of its own, and the parent's connection let go (its
        file descriptor closed here only: the parent keeps using the connection)."""
        self._lock = threading.Lock()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:  # noqa: SIM105 - not contextlib.suppress: no contextlib import for this
                conn.close()
            except OSError:
                pass

    # -- export ---------------------------------------------------------------------------

    def _compress(self, data: bytes) -> bytes:
        if self._compression == "gzip":
            import gzip

            return gzip.compress(data, mtime=0)
        if self._compression == "deflate":
            import zlib

            return zlib.compress(data)
        return data

    def export(self, data: bytes, timeout: float) -> bool:
        """Send one encoded request within ``timeout`` seconds; whether it was accepted."""
        pending = self.start(data, timeout)
        return pending is not None and self.finish(pending)

    def start(self, data: bytes, timeout: float) -> _Pending | None:
        """Send the request without waiting for the response; ``finish`` completes it.

        Lets the flush have every signal's request in flight at once (one round trip for
        all, not one each). Holds this exporter until ``finish``; ``None`` if dropped.
        """
        if 0 < MAX_REQUEST_SIZE < len(data):
            _logger.warning(
                "Dropping %s batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                self.signal,
                len(data),
                MAX_REQUEST_SIZE,
            )
            return None
        data = self._compress(data)
        deadline = time.monotonic() + timeout
        # The lock may be held by the set-up's ``connect`` (an endpoint slow to answer the
        # TCP handshake): waited for within the deadline only.
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            return _Pending(data, deadline, TimeoutError("export deadline exceeded"), False)
        error = None
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("export deadline exceeded")
            if self._conn is None:
                self._conn = self._open(remaining)
            self._conn.send(self._request_head, data, deadline)
        except Exception as failure:  # noqa: BLE001 - every failure becomes a result
            self._drop()
            error = failure
        return _Pending(data, deadline, error)

    def finish(self, pending: _Pending) -> bool:
        """Read the response to ``start``'s request, retrying as the exporter does."""
        if not pending.locked:
            _logger.error(
                "Failed to export %s batch due to timeout, max retries or shutdown.", self.signal
            )
            return False
        try:
            return self._complete(pending)
        finally:
            self._lock.release()

    def _receive(self, pending: _Pending) -> _Result:
        if pending.error is not None:
            return None, None, None, pending.error
        try:
            status, reason, headers, keep_alive = self._conn.read_response(pending.deadline)  # type: ignore[union-attr]
        except Exception as error:  # noqa: BLE001 - every failure becomes a result
            self._drop()
            return None, None, None, error
        if not keep_alive:
            self._drop()
        return status, reason, headers.get("retry-after"), None

    def _complete(self, pending: _Pending) -> bool:
        deadline = pending.deadline
        for retry in range(_MAX_RETRIES):
            if retry == 0:
                status, reason, retry_after, error = self._receive(pending)
            else:
                remaining = max(deadline - time.monotonic(), 0.0)
                status, reason, retry_after, error = self._post(pending.data, remaining)
            if error is not None and (remaining := deadline - time.monotonic()) > 0:
                # A stale keep-alive connection: retried at once, on a new connection.
                status, reason, retry_after, error = self._post(pending.data, remaining)
            if status is not None and 200 <= status < 400:
                return True
            retryable = status in _RETRYABLE if status is not None else error is not None
            if not retryable:
                _logger.error(
                    "Failed to export %s batch code: %s, reason: %s",
                    self.signal,
                    status,
                    reason or error or "unknown",
                )
                return False
            import random  # only on a retry

            backoff = 2**retry * random.uniform(1 - _JITTER, 1 + _JITTER)
            if status is not None and retry_after is not None:
                backoff = _retry_after_seconds(retry_after, backoff)
            if retry + 1 == _MAX_RETRIES or backoff > deadline - time.monotonic():
                _logger.error(
                    "Failed to export %s batch due to timeout, max retries or shutdown.",
                    self.signal,
                )
                return False
            _logger.warning(
                "Transient error %s encountered while exporting %s batch, retrying in %.2fs.",
                reason or error,
                self.signal,
                backoff,
            )
            time.sleep(backoff)
        return False


class _Pending:
    """An export whose first request was sent (or failed to be).

    ``locked``: whether it holds the exporter's lock (``finish`` releases it).
    """

    __slots__ = ("data", "deadline", "error", "locked")

    def __init__(
        self, data: bytes, deadline: float, error: Exception | None, locked: bool = True
    ) -> None:
        self.data, self.deadline, self.error, self.locked = data, deadline, error, locked


def _retry_after_seconds(value: str, default: float) -> float:
    """``Retry-After`` as delay-seconds or an HTTP-date (RFC 9110); ``default`` if invalid."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds and seconds != float("inf") else default
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:

        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - time.time(), 0.0)


def _create_connection(address: bytes | str, port: int, timeout: float) -> Any:
    """``socket.create_connection`` on the C module ``_socket``.

    Why: the ``socket`` module builds its ``IntEnum`` classes (address families, socket
    kinds, flags) and imports ``selectors`` at import, about 2.4 ms of the cold start here;
    this client needs none of it. Same behaviour: every address ``getaddrinfo`` gives is
    tried in turn, each connection attempt bounded by ``timeout``, the last error raised.
    """
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in _socket.getaddrinfo(
        address, port, 0, _socket.SOCK_STREAM
    ):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as failure:
            sock.close()
            error = failure
            continue
        return sock
    raise error if error is not None else OSError("getaddrinfo returned no address")


class ProtocolError(Exception):
    """A response this client cannot read (treated as a connection error: retried)."""


_MAX_HEAD = 65536


class _Connection:
    """One keep-alive HTTP/1.1 connection: ``POST`` with a body, read the whole response.

    Responses are read by ``Content-Length``, chunked transfer coding, or to the end of the
    connection; interim 1xx responses are skipped. Every socket operation is bounded by
    the request's deadline.
    """

    def __init__(self, host: str, port: int, timeout: float, ssl_context: Any = None) -> None:
        # An ASCII host as bytes: a str one makes the socket module load the idna codec.
        address = host.encode("ascii") if host.isascii() else host
        if ssl_context is None:
            sock = _create_connection(address, port, timeout)
        else:  # ``ssl`` wraps only ``socket.socket`` objects (and imports ``socket`` anyway)
            import socket

            # typeshed types the host as str only; socket takes bytes too (as above)
            sock = socket.create_connection((address, port), timeout=timeout)  # type: ignore[arg-type]
        try:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._buffer = b""

    def close(self) -> None:
        self._sock.close()

    def _settimeout(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("export deadline exceeded")
        self._sock.settimeout(remaining)

    def _fill(self, deadline: float) -> bool:
        """Read more into the buffer; False at the end of the connection."""
        self._settimeout(deadline)
        chunk = self._sock.recv(65536)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        while (index := self._buffer.find(marker)) < 0:
            if len(self._buffer) > _MAX_HEAD:
                raise ProtocolError("response head too long")
            if not self._fill(deadline):
                raise ProtocolError("connection closed by the server")
        line, self._buffer = self._buffer[:index], self._buffer[index + len(marker) :]
        return line

    def _skip(self, length: int, deadline: float) -> None:
        while len(self._buffer) < length:
            if not self._fill(deadline):
                raise ProtocolError("connection closed inside the response body")
        self._buffer = self._buffer[length:]

    def send(self, head: bytes, body: bytes, deadline: float) -> None:
        """Send a request: ``head`` (request line and header fields) and ``body``."""
        self._settimeout(deadline)
        self._buffer = b""
        self._sock.sendall(
            head + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    def read_response(self, deadline: float) -> tuple[int, str, dict[str, str], bool]:
        """(status, reason, lower-cased headers, whether the connection stays usable)."""
        while True:
            status_line, *fields = (
                self._read_until(b"\r\n\r\n", deadline).decode("latin-1").split("\r\n")
            )
            version, _, rest = status_line.partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/") or not code.isdigit():
                raise ProtocolError(f"bad status line {status_line!r}")
            status = int(code)
            if not 100 <= status < 200:
                break  # else an interim response (100 Continue): the final one follows
        headers: dict[str, str] = {}
        for field in fields:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = (
            "close" not in connection
            if version != "HTTP/1.0"
            else "keep-alive" in connection
        )
        if status in (204, 304):
            return status, reason, headers, keep_alive
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self._read_until(b"\r\n", deadline).split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n", deadline):  # trailer fields
                        pass
                    break
                self._skip(size + 2, deadline)
        elif "content-length" in headers:
            self._skip(int(headers["content-length"]), deadline)
        else:  # delimited by the end of the connection
            while self._fill(deadline):
                self._buffer = b""
            keep_alive = False
        return status, reason, headers, keep_alive
