"""What the query-surface attack tests share: raw HTTP (odd header bytes included) and a
local listener standing in for an exfiltration target, which must receive nothing."""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit


def send(url: str, method: str = "POST", path: str = "/", body: bytes | None = None,
         headers: Mapping[str, str | bytes] | None = None) -> tuple[int, bytes]:
    """One request to ``url`` + ``path``; header values may be bytes (sent as they are)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class _RecordingServer(http.server.ThreadingHTTPServer):
    def __init__(self, listener: Listener, handler: type) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.listener = listener

    def verify_request(self, request: object, client_address: object) -> bool:
        self.listener.connections += 1  # any protocol: HTTP, ClickHouse native, MySQL, ...
        return True


class Listener:
    """A listener on 127.0.0.1 that counts every connection it gets and answers HTTP."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[str] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                listener.requests.append(self.requestline)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"stolen\n")

            do_POST = do_PUT = do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = _RecordingServer(self, Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@contextmanager
def listening() -> Iterator[Listener]:
    listener = Listener()
    listener.thread.start()
    try:
        yield listener
    finally:
        listener.server.shutdown()
        listener.server.server_close()
